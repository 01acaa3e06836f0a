//! CPU: shares/weight, quota and period, burst, realtime, idle, cpuset cpus and mems.

use oci_spec::runtime::LinuxCpu;

use super::{File, Knob, Planner, Refused, invalid, knob};
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::Flavor;

const CPU_SHARES: Knob = knob(Ctrl::Cpu, "cpu.shares", "cpu.shares", File("cpu.weight"));
const CPU_PERIOD: Knob = knob(
    Ctrl::Cpu,
    "cpu.period",
    "cpu.cfs_period_us",
    File("cpu.max"),
);
const CPU_QUOTA: Knob = knob(Ctrl::Cpu, "cpu.quota", "cpu.cfs_quota_us", File("cpu.max"));
const CPU_BURST: Knob = knob(
    Ctrl::Cpu,
    "cpu.burst",
    "cpu.cfs_burst_us",
    File("cpu.max.burst"),
);
const CPU_IDLE: Knob = knob(Ctrl::Cpu, "cpu.idle", "cpu.idle", File("cpu.idle"));
const CPU_RT_PERIOD: Knob = knob(Ctrl::Cpu, "cpu.realtimePeriod", "cpu.rt_period_us", Refused);
const CPU_RT_RUNTIME: Knob = knob(
    Ctrl::Cpu,
    "cpu.realtimeRuntime",
    "cpu.rt_runtime_us",
    Refused,
);
const CPUSET_CPUS: Knob = knob(Ctrl::Cpuset, "cpu.cpus", "cpuset.cpus", File("cpuset.cpus"));
const CPUSET_MEMS: Knob = knob(Ctrl::Cpuset, "cpu.mems", "cpuset.mems", File("cpuset.mems"));

/// cpu.shares (2..=262144) → cpu.weight (1..=10000), the quadratic mapping runc and crun
/// use: 2 → 1, 1024 → 100, 262144 → 10000, monotonic in between.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    #[allow(clippy::cast_precision_loss)] // shares < 2^18
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in 1..=10000
    let w = 10f64.powf(exponent).ceil() as u64;
    w.clamp(1, 10_000)
}

pub(super) fn plan_cpu(c: &LinuxCpu, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        let w = p.write(&CPU_SHARES, |fl| match fl {
            Flavor::V1 => s.to_string(),
            Flavor::V2 => shares_to_weight(s).to_string(),
        })?;
        p.push(w);
    }
    let quota = c.quota().filter(|q| *q != 0);
    if let Some(q) = quota.filter(|q| *q < -1) {
        return Err(invalid(
            "cpu.quota",
            q,
            "must be -1 (unlimited) or positive",
        ));
    }
    let period = c.period().filter(|v| *v != 0);
    if quota.is_some() || period.is_some() {
        match p.flavor(Ctrl::Cpu, "cpu.cfs_quota_us")? {
            Flavor::V1 => {
                let pw = period
                    .map(|v| p.write(&CPU_PERIOD, |_| v.to_string()))
                    .transpose()?;
                let qw = quota
                    .map(|q| p.write(&CPU_QUOTA, |_| q.to_string()))
                    .transpose()?;
                p.push_pair(pw.flatten(), qw.flatten());
            }
            Flavor::V2 => {
                let mut v = quota
                    .filter(|q| *q > 0)
                    .map_or("max".to_owned(), |q| q.to_string());
                if let Some(per) = period {
                    v = format!("{v} {per}");
                }
                let w = p.write(&CPU_QUOTA, |_| v.clone())?;
                p.push(w);
            }
        }
    }
    if let Some(b) = c.burst() {
        let w = p.write(&CPU_BURST, |_| b.to_string())?;
        p.push(w);
    }
    let rt_period = c.realtime_period().filter(|v| *v != 0);
    let rt_runtime = c.realtime_runtime().filter(|v| *v != 0);
    let pw = rt_period
        .map(|v| p.write(&CPU_RT_PERIOD, |_| v.to_string()))
        .transpose()?;
    let rw = rt_runtime
        .map(|v| p.write(&CPU_RT_RUNTIME, |_| v.to_string()))
        .transpose()?;
    p.push_pair(pw.flatten(), rw.flatten());
    if let Some(i) = c.idle() {
        if !(0..=1).contains(&i) {
            return Err(invalid("cpu.idle", i, "must be 0 or 1"));
        }
        let w = p.write(&CPU_IDLE, |_| i.to_string())?;
        p.push(w);
    }
    for (k, v) in [(&CPUSET_CPUS, c.cpus()), (&CPUSET_MEMS, c.mems())] {
        let Some(v) = v.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        {
            return Err(invalid(k.field, v, "must be a list like `0-2,4`"));
        }
        let w = p.write(k, |_| v.to_owned())?;
        p.push(w);
    }
    Ok(())
}
