//! berth-cgroups: control groups v1, v2 and the hybrid layout behind one interface.
//!
//! It owns everything the OCI runtime does with cgroupfs: finding the hierarchies
//! ([`detect`]), turning `linux.cgroupsPath` into one directory per hierarchy
//! ([`Cgroup::new`]), creating and removing them, writing `linux.resources`
//! ([`Cgroup::apply`], also used by `update`), the v2 device filter (a BPF program),
//! the freezer, statistics in runc's `events --stats` shape, and the mounts that make a
//! `cgroup` mount work inside a container. It does not fork, enter namespaces or mount
//! anything: the runtime does that with the data returned here.
//!
//! Design: each resource has one writer (module `resources`) that emits a
//! plan of file writes; v1 and v2 differ only in data (file name, value conversion),
//! chosen per controller from the hierarchy that carries it. A hybrid host is therefore
//! not a third code path: memory may come out v1-spelled and hugetlb v2-spelled in the
//! same plan. [`validate`] runs the same planner without touching the system, so bad
//! values are rejected before the first mkdir.
//!
//! Entry points: [`detect`] → [`Cgroup::new`] → [`Cgroup::create`] → [`Cgroup::apply`] →
//! [`Cgroup::join_self`] (from the new process itself; [`Cgroup::add_pid`] for another
//! process); [`Cgroup::destroy`] on `delete` or stale-state cleanup.

mod cgroup;
mod cgroupfs;
mod controller;
mod devices;
mod error;
#[cfg(test)]
mod fake;
mod freezer;
mod hierarchy;
mod mounts;
mod resources;
mod stats;
mod sys;

pub use cgroup::Cgroup;
pub use devices::default_allowed_devices;
pub use error::CgroupError;
pub use hierarchy::{CgroupVersion, Hierarchy, detect, detect_at};
pub use mounts::{CgroupMount, CgroupMountKind};
pub use resources::validate;
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use sys::BpfError;
