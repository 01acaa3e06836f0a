//! What to mount at a container's `type: cgroup` mount point (with a cgroup namespace).

use std::path::PathBuf;

use nix::mount::MsFlags;

use crate::cgroup::Cgroup;
use crate::hierarchy::{CgroupVersion, Flavor};

/// One step of making the container's cgroup mount, relative to its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Path under the mount destination (empty: the destination itself).
    pub dest: PathBuf,
    /// A mount or a symlink.
    pub kind: CgroupMountKind,
}

/// What [`CgroupMount`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMountKind {
    /// mount(2) with these arguments; add `MS_RDONLY` if config.json asks for `ro`.
    Mount {
        /// mount source.
        source: String,
        /// filesystem type: `cgroup2`, `cgroup` or `tmpfs`.
        fstype: String,
        /// flags: nosuid, nodev, noexec.
        flags: MsFlags,
        /// data: v1 controller list (`cpu,cpuacct`, `name=systemd`), or tmpfs mode.
        data: Option<String>,
    },
    /// A symlink to `target` (a sibling name), as the host has (`cpu` -> `cpu,cpuacct`).
    Symlink {
        /// The link's target.
        target: String,
    },
}

impl Cgroup {
    /// v2: one cgroup2 mount. v1 and hybrid: a tmpfs, then one cgroup mount per v1
    /// hierarchy at its host name (and the host's symlinks to it), and on hybrid the
    /// cgroup2 mount at its host name (`unified`).
    pub fn container_mounts(&self) -> Vec<CgroupMount> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mount = |dest: PathBuf, fstype: &str, data: Option<String>| CgroupMount {
            dest,
            kind: CgroupMountKind::Mount {
                source: if fstype == "tmpfs" { "tmpfs" } else { "cgroup" }.to_owned(),
                fstype: fstype.to_owned(),
                flags,
                data,
            },
        };
        if self.version == CgroupVersion::V2 {
            return vec![mount(PathBuf::new(), "cgroup2", None)];
        }
        let mut out = vec![mount(PathBuf::new(), "tmpfs", Some("mode=755".to_owned()))];
        for d in &self.dirs {
            let Some(name) = d.mount_point.file_name().map(PathBuf::from) else {
                continue;
            };
            match d.flavor {
                Flavor::V1 => {
                    out.push(mount(name.clone(), "cgroup", Some(d.controllers.join(","))));
                    for a in &d.aliases {
                        out.push(CgroupMount {
                            dest: PathBuf::from(a),
                            kind: CgroupMountKind::Symlink {
                                target: name.to_string_lossy().into_owned(),
                            },
                        });
                    }
                }
                Flavor::V2 => out.push(mount(name, "cgroup2", None)),
            }
        }
        out
    }
}
