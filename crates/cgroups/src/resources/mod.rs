//! `linux.resources` → a plan of cgroup file writes, one writer per resource.
//!
//! Each resource is written by one function for both versions; the v1/v2 difference is
//! the [`Knob`] table (file names) and small value conversions. The plan is computed
//! before anything is written, so [`validate`] and [`Cgroup::apply`](crate::Cgroup::apply)
//! refuse the same configs.

mod blkio;
mod cpu;
mod memory;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxHugepageLimit, LinuxNetwork, LinuxResources};

use crate::cgroupfs::CgroupDir;
use crate::controller::{Ctrl, locate};
use crate::devices::{self, DeviceRule};
use crate::error::CgroupError;
use crate::hierarchy::{Flavor, Hierarchy};

#[cfg(test)]
pub(crate) use blkio::blkio_to_io_weight;
#[cfg(test)]
pub(crate) use cpu::shares_to_weight;

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
    /// The v1 device list: deny all, then the rules, unless `devices.list` already holds
    /// exactly their result (an `update` must not cut running processes off /dev/null).
    DeviceList(Vec<DeviceRule>),
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
const PIDS_MAX: Knob = knob(Ctrl::Pids, "pids.limit", "pids.max", File("pids.max"));
const NET_CLASSID: Knob = knob(Ctrl::NetCls, "network.classID", "net_cls.classid", Ignored);
const NET_PRIO: Knob = knob(
    Ctrl::NetPrio,
    "network.priorities",
    "net_prio.ifpriomap",
    Ignored,
);
const RDMA_MAX: Knob = knob(Ctrl::Rdma, "rdma", "rdma.max", File("rdma.max"));

/// Answers which flavor (if any) carries a controller.
pub(crate) type FlavorOf<'a> = &'a dyn Fn(Ctrl) -> Option<Flavor>;

/// Collects the steps of a plan.
struct Planner<'a> {
    flavor_of: FlavorOf<'a>,
    steps: Vec<Step>,
}

impl Planner<'_> {
    /// The write for `k`, or `None` when v2 has no such file and ignores the setting.
    fn write(
        &self,
        k: &Knob,
        value: impl Fn(Flavor) -> String,
    ) -> Result<Option<Write>, CgroupError> {
        let fl = self.flavor(k.ctrl, k.v1)?;
        let file = match (fl, k.v2) {
            (Flavor::V1, _) => k.v1,
            (Flavor::V2, File(f)) => f,
            (Flavor::V2, Ignored) => return Ok(None),
            (Flavor::V2, Refused) => {
                return Err(invalid(k.field, value(fl), "not supported on cgroup v2"));
            }
        };
        Ok(Some(Write {
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
        plan_devices(d, &mut p)?;
    }
    if let Some(m) = r.memory() {
        memory::plan_memory(m, &mut p)?;
    }
    if let Some(c) = r.cpu() {
        cpu::plan_cpu(c, &mut p)?;
    }
    if let Some(pids) = r.pids() {
        // 0 is "unset" (runc), negative is unlimited.
        let l = pids.limit();
        if l != 0 {
            let w = p.write(
                &PIDS_MAX,
                |_| {
                    if l > 0 { l.to_string() } else { "max".into() }
                },
            )?;
            p.push(w);
        }
    }
    if let Some(b) = r.block_io() {
        blkio::plan_blkio(b, &mut p)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        plan_hugetlb(h, &mut p)?;
    }
    if let Some(n) = r.network() {
        plan_network(n, &mut p)?;
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

/// v1: the allow/deny list; v2: the BPF filter built from the same rules.
fn plan_devices(d: &[LinuxDeviceCgroup], p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let rules = devices::parse_rules(d)?;
    match p.flavor(Ctrl::Devices, "devices.allow")? {
        Flavor::V1 => p.steps.push(Step::DeviceList(rules)),
        Flavor::V2 => p.steps.push(Step::DeviceFilter(rules)),
    }
    Ok(())
}

/// One page size: `hugetlb.<size>.limit_in_bytes` (v1) or `hugetlb.<size>.max` (v2).
/// Unlike other limits, 0 is a real limit here (no huge pages).
fn plan_hugetlb(h: &LinuxHugepageLimit, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let size = h.page_size();
    if size.is_empty() || !size.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "hugepageLimits.pageSize",
            size,
            "must look like `2MB`",
        ));
    }
    if h.limit() < -1 {
        return Err(invalid(
            "hugepageLimits.limit",
            h.limit(),
            "must be -1 (unlimited) or >= 0",
        ));
    }
    let fl = p.flavor(Ctrl::Hugetlb, "hugetlb")?;
    let file = match fl {
        Flavor::V1 => format!("hugetlb.{size}.limit_in_bytes"),
        Flavor::V2 => format!("hugetlb.{size}.max"),
    };
    p.steps.push(Step::Write(Write {
        ctrl: Ctrl::Hugetlb,
        file,
        value: limit(fl, h.limit()),
    }));
    Ok(())
}

/// net_cls and net_prio exist on v1 only; v2 ignores them (as runc and crun do).
fn plan_network(n: &LinuxNetwork, p: &mut Planner<'_>) -> Result<(), CgroupError> {
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

/// Performs `steps`; `open` gives the directory carrying a controller (the file name is
/// for the error if there is none).
pub(crate) fn execute(
    steps: &[Step],
    open: &dyn Fn(Ctrl, &str) -> Result<CgroupDir, CgroupError>,
) -> Result<(), CgroupError> {
    let write = |w: &Write| open(w.ctrl, &w.file)?.write(&w.file, &w.value);
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
                let dir = open(first.ctrl, &first.file)?;
                match writes.iter().find(|w| dir.has(&w.file)) {
                    Some(w) => dir.write(&w.file, &w.value)?,
                    None if *optional => {}
                    // Nothing exists: report the preferred file.
                    None => dir.write(&first.file, &first.value)?,
                }
            }
            Step::DeviceList(rules) => {
                let dir = open(Ctrl::Devices, "devices.list")?;
                if !devices::list_matches(&dir, rules)? {
                    for w in devices::v1_writes(rules) {
                        dir.write(&w.file, &w.value)?;
                    }
                }
            }
            Step::DeviceFilter(rules) => {
                let dir = open(Ctrl::Devices, "device filter")?;
                devices::install_filter(&dir, rules)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
