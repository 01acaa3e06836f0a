//! `linux.resources` → a plan of cgroup file writes, one writer per resource.
//!
//! Each resource is written by one function for both versions; the v1/v2 difference is
//! the [`Knob`] table (file names) and small value conversions. The plan is computed
//! before anything is written, so [`validate`] and [`Cgroup::apply`](crate::Cgroup::apply)
//! refuse the same configs.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::cgroupfs::CgroupDir;
use crate::devices::{self, DeviceRule};
use crate::error::CgroupError;
use crate::hierarchy::{Flavor, Hierarchy};

/// A controller, as far as finding its directory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctrl {
    Cpu,
    Cpuacct,
    Cpuset,
    Memory,
    Devices,
    Freezer,
    Blkio,
    Pids,
    Hugetlb,
    NetCls,
    NetPrio,
    Rdma,
    /// v2 core files (`cgroup.*`) and `unified` keys: always the v2 directory.
    Core,
}

/// Where a controller lives on v2.
#[derive(Clone, Copy)]
enum V2Home {
    /// A controller listed in `cgroup.controllers`.
    Named(&'static str),
    /// Part of every v2 cgroup (freezer, device filter).
    Core,
    /// No v2 counterpart.
    Absent,
}

/// Controller names on each version: one row per controller.
const CONTROLLERS: &[(Ctrl, Option<&str>, V2Home)] = &[
    (Ctrl::Cpu, Some("cpu"), V2Home::Named("cpu")),
    (Ctrl::Cpuacct, Some("cpuacct"), V2Home::Named("cpu")),
    (Ctrl::Cpuset, Some("cpuset"), V2Home::Named("cpuset")),
    (Ctrl::Memory, Some("memory"), V2Home::Named("memory")),
    (Ctrl::Devices, Some("devices"), V2Home::Core),
    (Ctrl::Freezer, Some("freezer"), V2Home::Core),
    (Ctrl::Blkio, Some("blkio"), V2Home::Named("io")),
    (Ctrl::Pids, Some("pids"), V2Home::Named("pids")),
    (Ctrl::Hugetlb, Some("hugetlb"), V2Home::Named("hugetlb")),
    (Ctrl::NetCls, Some("net_cls"), V2Home::Absent),
    (Ctrl::NetPrio, Some("net_prio"), V2Home::Absent),
    (Ctrl::Rdma, Some("rdma"), V2Home::Named("rdma")),
    (Ctrl::Core, None, V2Home::Core),
];

impl Ctrl {
    fn row(self) -> (Option<&'static str>, V2Home) {
        let (_, v1, v2) = CONTROLLERS
            .iter()
            .find(|(c, _, _)| *c == self)
            .copied()
            .unwrap_or((self, None, V2Home::Absent));
        (v1, v2)
    }

    /// The name used in errors: the v1 name, or `cgroup` for the v2 core.
    pub(crate) fn name(self) -> &'static str {
        self.row().0.unwrap_or("cgroup")
    }
}

/// The item of `items` that carries `ctrl`: a v1 hierarchy naming it first, else the v2 one.
pub(crate) fn locate<T>(
    items: &[T],
    ctrl: Ctrl,
    key: impl Fn(&T) -> (Flavor, &[String]),
) -> Option<&T> {
    let (v1, v2) = ctrl.row();
    let has = |cs: &[String], n: &str| cs.iter().any(|c| c == n);
    if let Some(n) = v1
        && let Some(t) = items.iter().find(|t| {
            let (f, cs) = key(t);
            f == Flavor::V1 && has(cs, n)
        })
    {
        return Some(t);
    }
    items.iter().find(|t| {
        let (f, cs) = key(t);
        f == Flavor::V2
            && match v2 {
                V2Home::Named(n) => has(cs, n),
                V2Home::Core => true,
                V2Home::Absent => false,
            }
    })
}

/// One file write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) ctrl: Ctrl,
    pub(crate) file: String,
    pub(crate) value: String,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Write(Write),
    /// Two limits whose valid order depends on the current values (v1 memory and
    /// memory+swap, cpu period and quota): try in order, and reversed if refused.
    Pair(Write, Write),
    /// The first write whose file exists (io.bfq.weight before io.weight); `optional`
    /// means none existing is fine.
    FirstOf {
        writes: Vec<Write>,
        optional: bool,
    },
    /// The v2 device filter.
    DeviceFilter(Vec<DeviceRule>),
}

/// What the v2 side of a knob does.
#[derive(Clone, Copy)]
enum V2File {
    File(&'static str),
    /// v2 has no such setting and runc ignores it (swappiness, OOM killer).
    Ignored,
    /// v2 has no such setting and a value is an error (realtime scheduling).
    Refused,
}

/// A setting written to one file: its config.json field and its file on each version.
struct Knob {
    ctrl: Ctrl,
    field: &'static str,
    v1: &'static str,
    v2: V2File,
}

const fn knob(ctrl: Ctrl, field: &'static str, v1: &'static str, v2: V2File) -> Knob {
    Knob {
        ctrl,
        field,
        v1,
        v2,
    }
}

use V2File::{File, Ignored, Refused};
const MEM_LIMIT: Knob = knob(
    Ctrl::Memory,
    "memory.limit",
    "memory.limit_in_bytes",
    File("memory.max"),
);
const MEM_SWAP: Knob = knob(
    Ctrl::Memory,
    "memory.swap",
    "memory.memsw.limit_in_bytes",
    File("memory.swap.max"),
);
const MEM_RESERVATION: Knob = knob(
    Ctrl::Memory,
    "memory.reservation",
    "memory.soft_limit_in_bytes",
    File("memory.low"),
);
const MEM_SWAPPINESS: Knob = knob(
    Ctrl::Memory,
    "memory.swappiness",
    "memory.swappiness",
    Ignored,
);
const MEM_OOM: Knob = knob(
    Ctrl::Memory,
    "memory.disableOOMKiller",
    "memory.oom_control",
    Ignored,
);
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
const PIDS_MAX: Knob = knob(Ctrl::Pids, "pids.limit", "pids.max", File("pids.max"));
const BLKIO_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weight",
    "blkio.weight",
    File("io.weight"),
);
const BLKIO_BFQ_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weight",
    "blkio.bfq.weight",
    File("io.bfq.weight"),
);
const BLKIO_LEAF_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.leafWeight",
    "blkio.leaf_weight",
    Ignored,
);
const BLKIO_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.weight_device",
    File("io.weight"),
);
const BLKIO_BFQ_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.bfq.weight_device",
    File("io.bfq.weight"),
);
const BLKIO_LEAF_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.leaf_weight_device",
    Ignored,
);
const NET_CLASSID: Knob = knob(Ctrl::NetCls, "network.classID", "net_cls.classid", Ignored);
const NET_PRIO: Knob = knob(
    Ctrl::NetPrio,
    "network.priorities",
    "net_prio.ifpriomap",
    Ignored,
);
const RDMA_MAX: Knob = knob(Ctrl::Rdma, "rdma", "rdma.max", File("rdma.max"));

/// Throttles: config field, v1 file, v2 `io.max` key.
const THROTTLES: &[(&str, &str, &str)] = &[
    (
        "blockIO.throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
        "rbps",
    ),
    (
        "blockIO.throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
        "wbps",
    ),
    (
        "blockIO.throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
        "riops",
    ),
    (
        "blockIO.throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
        "wiops",
    ),
];

/// Answers which flavor (if any) carries a controller.
pub(crate) type FlavorOf<'a> = &'a dyn Fn(Ctrl) -> Option<Flavor>;

/// Collects the steps of a plan.
struct Planner<'a> {
    flavor_of: FlavorOf<'a>,
    steps: Vec<Step>,
}

impl Planner<'_> {
    /// The flavor and file of `k`, or `None` when v2 ignores it.
    fn file(&self, k: &Knob) -> Result<Option<(Flavor, &'static str)>, CgroupError> {
        let fl = (self.flavor_of)(k.ctrl).ok_or_else(|| CgroupError::ControllerMissing {
            controller: k.ctrl.name().to_owned(),
            file: k.v1.to_owned(),
        })?;
        match (fl, k.v2) {
            (Flavor::V1, _) => Ok(Some((fl, k.v1))),
            (Flavor::V2, File(f)) => Ok(Some((fl, f))),
            (Flavor::V2, Ignored) => Ok(None),
            (Flavor::V2, Refused) => Err(CgroupError::InvalidResource {
                field: k.field,
                value: String::new(),
                reason: "not supported on cgroup v2",
            }),
        }
    }

    fn write(
        &self,
        k: &Knob,
        value: impl Fn(Flavor) -> String,
    ) -> Result<Option<Write>, CgroupError> {
        Ok(self.file(k)?.map(|(fl, file)| Write {
            ctrl: k.ctrl,
            file: file.to_owned(),
            value: value(fl),
        }))
    }

    fn push(&mut self, w: Option<Write>) {
        if let Some(w) = w {
            self.steps.push(Step::Write(w));
        }
    }

    fn push_pair(&mut self, a: Option<Write>, b: Option<Write>) {
        match (a, b) {
            (Some(a), Some(b)) => self.steps.push(Step::Pair(a, b)),
            (a, b) => {
                self.push(a);
                self.push(b);
            }
        }
    }

    fn flavor(&self, ctrl: Ctrl, file: &str) -> Result<Flavor, CgroupError> {
        (self.flavor_of)(ctrl).ok_or_else(|| CgroupError::ControllerMissing {
            controller: ctrl.name().to_owned(),
            file: file.to_owned(),
        })
    }
}

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> CgroupError {
    CgroupError::InvalidResource {
        field,
        value: value.to_string(),
        reason,
    }
}

/// A limit where -1 means none: v1 spells it `-1`, v2 `max`.
fn limit(fl: Flavor, v: i64) -> String {
    match (v, fl) {
        (-1, Flavor::V1) => "-1".to_owned(),
        (-1, Flavor::V2) => "max".to_owned(),
        _ => v.to_string(),
    }
}

/// Checks a byte limit: 0 means unset (as in runc), -1 unlimited, else positive.
fn byte_limit(field: &'static str, v: Option<i64>) -> Result<Option<i64>, CgroupError> {
    match v {
        None | Some(0) => Ok(None),
        Some(v) if v < -1 => Err(invalid(field, v, "must be -1 (unlimited) or positive")),
        Some(v) => Ok(Some(v)),
    }
}

/// Builds the plan for `r`. `unified` is the v2 hierarchy's controller list, if mounted.
pub(crate) fn plan(
    r: &LinuxResources,
    flavor_of: FlavorOf<'_>,
    unified: Option<&[String]>,
) -> Result<Vec<Step>, CgroupError> {
    let mut p = Planner {
        flavor_of,
        steps: Vec::new(),
    };
    if let Some(d) = r.devices() {
        let rules = devices::parse_rules(d)?;
        match p.flavor(Ctrl::Devices, "devices.allow")? {
            Flavor::V1 => p
                .steps
                .extend(devices::v1_writes(&rules).into_iter().map(Step::Write)),
            Flavor::V2 => p.steps.push(Step::DeviceFilter(rules)),
        }
    }
    if let Some(m) = r.memory() {
        plan_memory(m, &mut p)?;
    }
    if let Some(c) = r.cpu() {
        plan_cpu(c, &mut p)?;
    }
    if let Some(pids) = r.pids() {
        // 0 is "unset" (runc), negative is unlimited.
        let l = pids.limit();
        if l != 0 {
            let w = p.write(
                &PIDS_MAX,
                |_| if l > 0 { l.to_string() } else { "max".into() },
            )?;
            p.push(w);
        }
    }
    if let Some(b) = r.block_io() {
        plan_blkio(b, &mut p)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        if size.is_empty() || !size.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                "hugepageLimits.pageSize",
                size,
                "must look like `2MB`",
            ));
        }
        let fl = p.flavor(Ctrl::Hugetlb, "hugetlb")?;
        let file = match fl {
            Flavor::V1 => format!("hugetlb.{size}.limit_in_bytes"),
            Flavor::V2 => format!("hugetlb.{size}.max"),
        };
        let value = limit(
            fl,
            byte_limit("hugepageLimits.limit", Some(h.limit()))?.unwrap_or(-1),
        );
        p.steps.push(Step::Write(Write {
            ctrl: Ctrl::Hugetlb,
            file,
            value,
        }));
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            let w = p.write(&NET_CLASSID, |_| id.to_string())?;
            p.push(w);
        }
        for prio in n.priorities().iter().flatten() {
            let w = p.write(&NET_PRIO, |_| {
                format!("{} {}", prio.name(), prio.priority())
            })?;
            p.push(w);
        }
    }
    for (dev, lim) in r.rdma().iter().flatten() {
        let num = |v: Option<u32>| v.map_or("max".to_owned(), |v| v.to_string());
        let value = format!(
            "{dev} hca_handle={} hca_object={}",
            num(lim.hca_handles()),
            num(lim.hca_objects())
        );
        let w = p.write(&RDMA_MAX, |_| value.clone())?;
        p.push(w);
    }
    if let Some(u) = r.unified() {
        plan_unified(u, unified, &mut p)?;
    }
    Ok(p.steps)
}

fn plan_memory(m: &LinuxMemory, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let lim = byte_limit("memory.limit", m.limit())?;
    let mut swap = byte_limit("memory.swap", m.swap())?;
    // runc: an unlimited memory with no swap setting means unlimited swap too.
    if lim == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    if let (Some(l), Some(s)) = (lim, swap)
        && l > 0
        && s > 0
        && s < l
    {
        return Err(invalid(
            "memory.swap",
            s,
            "memory+swap must be >= memory.limit",
        ));
    }
    let fl = p.flavor(Ctrl::Memory, "memory.limit_in_bytes")?;
    let lim_w = match lim {
        Some(l) => p.write(&MEM_LIMIT, |fl| limit(fl, l))?,
        None => None,
    };
    match (fl, swap) {
        (Flavor::V1, s) => {
            let swap_w = match s {
                Some(s) => p.write(&MEM_SWAP, |fl| limit(fl, s))?,
                None => None,
            };
            p.push_pair(lim_w, swap_w);
        }
        (Flavor::V2, s) => {
            // v2 limits swap alone: memory.swap.max = (memory+swap) - memory.
            if let Some(s) = s {
                let v = match (s, lim) {
                    (-1, _) => -1,
                    (s, Some(l)) if l > 0 => s - l,
                    _ => {
                        return Err(invalid(
                            "memory.swap",
                            s,
                            "a swap limit needs a memory limit",
                        ));
                    }
                };
                let w = p.write(&MEM_SWAP, |fl| limit(fl, v))?;
                // No swap accounting: an unlimited swap is what the host has anyway.
                p.steps.extend(w.map(|w| Step::FirstOf {
                    writes: vec![w],
                    optional: v == -1,
                }));
            }
            p.push(lim_w);
        }
    }
    if let Some(r) = byte_limit("memory.reservation", m.reservation())? {
        let w = p.write(&MEM_RESERVATION, |fl| limit(fl, r))?;
        p.push(w);
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid("memory.swappiness", s, "must be 0..=100"));
        }
        let w = p.write(&MEM_SWAPPINESS, |_| s.to_string())?;
        p.push(w);
    }
    if m.disable_oom_killer() == Some(true) {
        let w = p.write(&MEM_OOM, |_| "1".into())?;
        p.push(w);
    }
    Ok(())
}

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

/// blkio weight (10..=1000) → io.weight (1..=10000), as runc converts.
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

fn plan_cpu(c: &LinuxCpu, p: &mut Planner<'_>) -> Result<(), CgroupError> {
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

fn plan_blkio(b: &LinuxBlockIo, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let check = |field, w: u16| {
        if (10..=1000).contains(&w) {
            Ok(w)
        } else {
            Err(invalid(field, w, "must be 10..=1000"))
        }
    };
    if let Some(w) = b.weight() {
        let w = check("blockIO.weight", w)?;
        let bfq = p.write(&BLKIO_BFQ_WEIGHT, |_| w.to_string())?;
        let plain = p.write(&BLKIO_WEIGHT, |fl| match fl {
            Flavor::V1 => w.to_string(),
            Flavor::V2 => blkio_to_io_weight(w).to_string(),
        })?;
        let (first, second) = match p.flavor(Ctrl::Blkio, "blkio.weight")? {
            Flavor::V1 => (plain, bfq),
            Flavor::V2 => (bfq, plain),
        };
        let writes = first.into_iter().chain(second).collect();
        p.steps.push(Step::FirstOf {
            writes,
            optional: false,
        });
    }
    if let Some(w) = b.leaf_weight() {
        let w = check("blockIO.leafWeight", w)?;
        let w = p.write(&BLKIO_LEAF_WEIGHT, |_| w.to_string())?;
        p.push(w);
    }
    for d in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", d.major(), d.minor());
        if let Some(w) = d.weight() {
            let w = check("blockIO.weightDevice.weight", w)?;
            let bfq = p.write(&BLKIO_BFQ_WEIGHT_DEV, |_| format!("{dev} {w}"))?;
            let plain = p.write(&BLKIO_WEIGHT_DEV, |fl| match fl {
                Flavor::V1 => format!("{dev} {w}"),
                Flavor::V2 => format!("{dev} {}", blkio_to_io_weight(w)),
            })?;
            let (first, second) = match p.flavor(Ctrl::Blkio, "blkio.weight_device")? {
                Flavor::V1 => (plain, bfq),
                Flavor::V2 => (bfq, plain),
            };
            let writes = first.into_iter().chain(second).collect();
            p.steps.push(Step::FirstOf {
                writes,
                optional: false,
            });
        }
        if let Some(w) = d.leaf_weight() {
            let w = check("blockIO.weightDevice.leafWeight", w)?;
            let w = p.write(&BLKIO_LEAF_WEIGHT_DEV, |_| format!("{dev} {w}"))?;
            p.push(w);
        }
    }
    let lists = [
        b.throttle_read_bps_device(),
        b.throttle_write_bps_device(),
        b.throttle_read_iops_device(),
        b.throttle_write_iops_device(),
    ];
    for ((_, v1_file, v2_key), list) in THROTTLES.iter().zip(lists) {
        for t in list.iter().flatten() {
            let dev = format!("{}:{}", t.major(), t.minor());
            let (file, value) = match p.flavor(Ctrl::Blkio, v1_file)? {
                Flavor::V1 => (v1_file.to_string(), format!("{dev} {}", t.rate())),
                Flavor::V2 => {
                    let rate = if t.rate() == 0 {
                        "max".to_owned()
                    } else {
                        t.rate().to_string()
                    };
                    ("io.max".to_owned(), format!("{dev} {v2_key}={rate}"))
                }
            };
            p.steps.push(Step::Write(Write {
                ctrl: Ctrl::Blkio,
                file,
                value,
            }));
        }
    }
    Ok(())
}

/// `unified` keys are written as given to the v2 directory, after everything else.
fn plan_unified(
    u: &std::collections::HashMap<String, String>,
    unified: Option<&[String]>,
    p: &mut Planner<'_>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<_> = u.iter().collect();
    keys.sort();
    for (k, v) in keys {
        let Some(controllers) = unified else {
            return Err(CgroupError::UnifiedWithoutV2 { key: k.clone() });
        };
        let Some((ctrl, _)) = k.split_once('.').filter(|_| !k.contains('/')) else {
            return Err(invalid(
                "unified",
                k,
                "key must be a file name like `memory.high`",
            ));
        };
        if ctrl != "cgroup" && !controllers.iter().any(|c| c == ctrl) {
            return Err(CgroupError::ControllerMissing {
                controller: ctrl.to_owned(),
                file: k.clone(),
            });
        }
        if matches!(
            k.as_str(),
            "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control"
        ) {
            return Err(invalid("unified", k, "is managed by the runtime"));
        }
        p.steps.push(Step::Write(Write {
            ctrl: Ctrl::Core,
            file: k.clone(),
            value: v.clone(),
        }));
    }
    Ok(())
}

/// Checks `r` against the host's hierarchies without touching anything: values out of
/// range, swap below the memory limit, v2-only keys on v1, controllers the host lacks.
pub fn validate(r: &LinuxResources, h: &Hierarchy) -> Result<(), CgroupError> {
    let flavor_of =
        |c: Ctrl| locate(&h.mounts, c, |m| (m.flavor, m.controllers.as_slice())).map(|m| m.flavor);
    let unified = h
        .mounts
        .iter()
        .find(|m| m.flavor == Flavor::V2)
        .map(|m| m.controllers.as_slice());
    plan(r, &flavor_of, unified).map(|_| ())
}

/// Performs `steps`; `open` gives the directory carrying a controller.
pub(crate) fn execute(
    steps: &[Step],
    open: &dyn Fn(Ctrl) -> Result<CgroupDir, CgroupError>,
) -> Result<(), CgroupError> {
    let write = |w: &Write| open(w.ctrl)?.write(&w.file, &w.value);
    for s in steps {
        match s {
            Step::Write(w) => write(w)?,
            Step::Pair(a, b) => {
                if write(a).is_err() {
                    write(b)?;
                    write(a)?;
                } else {
                    write(b)?;
                }
            }
            Step::FirstOf { writes, optional } => {
                let Some(first) = writes.first() else {
                    continue;
                };
                let dir = open(first.ctrl)?;
                match writes.iter().find(|w| dir.has(&w.file)) {
                    Some(w) => dir.write(&w.file, &w.value)?,
                    None if *optional => {}
                    // Nothing exists: report the preferred file.
                    None => dir.write(&first.file, &first.value)?,
                }
            }
            Step::DeviceFilter(rules) => {
                let dir = open(Ctrl::Devices)?;
                devices::install_filter(&dir, rules)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
