//! Controllers and where they live: the v1 hierarchy that names one, or the v2 tree.

use crate::hierarchy::Flavor;

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
