//! A fake cgroupfs in a tempdir for unit tests: mount points, a mountinfo naming them,
//! and the files the kernel would create in each new cgroup.

use std::fs;
use std::path::{Path, PathBuf};

use crate::hierarchy::{Hierarchy, detect_at};

/// Files a v1 hierarchy shows in every cgroup, by controller.
const V1_FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "cpu.cfs_burst_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
            "cpu.idle",
            "cpu.stat",
        ],
    ),
    (
        "cpuacct",
        &["cpuacct.usage", "cpuacct.usage_percpu", "cpuacct.stat"],
    ),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "memory.stat",
            "memory.usage_in_bytes",
        ],
    ),
    ("devices", &["devices.allow", "devices.deny"]),
    ("freezer", &["freezer.state"]),
    (
        "blkio",
        &[
            "blkio.weight",
            "blkio.weight_device",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ],
    ),
    ("pids", &["pids.max", "pids.current"]),
    ("hugetlb", &["hugetlb.2MB.limit_in_bytes"]),
    ("name=systemd", &[]),
];

/// Files of a v2 cgroup with every controller enabled.
const V2_FILES: &[&str] = &[
    "cgroup.controllers",
    "cgroup.subtree_control",
    "cgroup.freeze",
    "cgroup.events",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpu.stat",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "memory.high",
    "memory.stat",
    "memory.events",
    "memory.current",
    "pids.max",
    "pids.current",
    "io.weight",
    "io.max",
    "io.stat",
    "hugetlb.2MB.max",
];

pub(crate) struct FakeFs {
    pub(crate) dir: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    V1,
    V2,
    /// v1 controllers without hugetlb; hugetlb on the cgroup2 mount.
    Hybrid,
}

impl FakeFs {
    pub(crate) fn new(layout: Layout) -> FakeFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FakeFs { dir };
        let mut mountinfo = String::new();
        if layout != Layout::V2 {
            for (c, _) in V1_FILES {
                if layout == Layout::Hybrid && *c == "hugetlb" {
                    continue;
                }
                let name = c.trim_start_matches("name=");
                let mp = fs.root().join(name);
                fs::create_dir_all(&mp).expect("mkdir");
                mountinfo += &format!("1 1 0:1 / {} rw - cgroup cgroup rw,{c}\n", mp.display());
                fs.populate_v1(&mp, c);
            }
            fs::write(fs.root().join("cpuset/cpuset.cpus"), "0-3\n").expect("write");
            fs::write(fs.root().join("cpuset/cpuset.mems"), "0\n").expect("write");
        }
        if layout != Layout::V1 {
            let mp = fs.root().join("unified");
            fs::create_dir_all(&mp).expect("mkdir");
            mountinfo += &format!("2 1 0:2 / {} rw - cgroup2 cgroup2 rw\n", mp.display());
            let controllers = if layout == Layout::V2 {
                "cpuset cpu io memory hugetlb pids"
            } else {
                "hugetlb"
            };
            fs.populate_v2(&mp, controllers);
        }
        fs::write(fs.root().join("mountinfo"), mountinfo).expect("write");
        fs::write(
            fs.root().join("self-cgroup"),
            "4:memory:/own\n0::/user/own\n",
        )
        .expect("write");
        fs
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn hierarchy(&self) -> Hierarchy {
        detect_at(
            &self.root().join("mountinfo"),
            &self.root().join("self-cgroup"),
        )
        .expect("detect")
    }

    fn populate_v1(&self, dir: &Path, controller: &str) {
        for (c, files) in V1_FILES {
            if *c == controller {
                for f in *files {
                    fs::write(dir.join(f), "").expect("write");
                }
            }
        }
        fs::write(dir.join("cgroup.procs"), "").expect("write");
        fs::write(dir.join("tasks"), "").expect("write");
    }

    fn populate_v2(&self, dir: &Path, controllers: &str) {
        for f in V2_FILES {
            fs::write(dir.join(f), "").expect("write");
        }
        fs::write(dir.join("cgroup.controllers"), controllers).expect("write");
        fs::write(dir.join("cgroup.procs"), "").expect("write");
    }

    /// Makes `rel` (and its parents) in every hierarchy as the kernel would: with files.
    pub(crate) fn precreate(&self, h: &Hierarchy, rel: &str) {
        for m in &h.mounts {
            let mut cur = m.mount_point.clone();
            for part in rel.split('/').filter(|p| !p.is_empty()) {
                cur.push(part);
                if cur.is_dir() {
                    continue;
                }
                fs::create_dir(&cur).expect("mkdir");
                match m.flavor {
                    crate::hierarchy::Flavor::V1 => {
                        for c in &m.controllers {
                            self.populate_v1(&cur, c);
                        }
                    }
                    crate::hierarchy::Flavor::V2 => {
                        let ctrls = fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                            .unwrap_or_default();
                        self.populate_v2(&cur, &ctrls);
                    }
                }
            }
        }
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
}
