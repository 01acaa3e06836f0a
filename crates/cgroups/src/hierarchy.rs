//! Which cgroup filesystems are mounted where, found from `/proc/self/mountinfo`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;

/// The cgroup layout of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Only v1 hierarchies.
    V1,
    /// Only the unified (v2) hierarchy.
    V2,
    /// v1 hierarchies for controllers plus a cgroup2 mount (e.g. `/sys/fs/cgroup/unified`).
    Hybrid,
}

/// How a hierarchy spells its files: the v1 or the v2 interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Flavor {
    V1,
    V2,
}

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mount {
    pub(crate) flavor: Flavor,
    pub(crate) mount_point: PathBuf,
    /// The mount's root inside the hierarchy (mountinfo field 4).
    pub(crate) root: String,
    /// v1: the controllers in the mount options (`cpu`, `name=systemd`);
    /// v2: the contents of the root's `cgroup.controllers`.
    pub(crate) controllers: Vec<String>,
    /// This process's cgroup in the hierarchy, from `/proc/self/cgroup`.
    pub(crate) own: Option<String>,
    /// Symlinks beside a v1 mount point that point at it (`cpu` -> `cpu,cpuacct`).
    pub(crate) aliases: Vec<String>,
}

/// The cgroup hierarchies of a host: pass it to [`Cgroup::new`](crate::Cgroup::new).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub(crate) mounts: Vec<Mount>,
}

/// Controllers a v1 mount option may name; other options (`rw`, `xattr`) are not.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl Hierarchy {
    /// Whether the host is v1, v2 or hybrid.
    pub fn version(&self) -> CgroupVersion {
        let v1 = self.mounts.iter().any(|m| m.flavor == Flavor::V1);
        let v2 = self.mounts.iter().any(|m| m.flavor == Flavor::V2);
        match (v1, v2) {
            (true, true) => CgroupVersion::Hybrid,
            (false, true) => CgroupVersion::V2,
            _ => CgroupVersion::V1,
        }
    }

    /// Where the cgroup2 hierarchy is mounted, if it is.
    pub fn unified_mount(&self) -> Option<&Path> {
        self.mounts
            .iter()
            .find(|m| m.flavor == Flavor::V2)
            .map(|m| m.mount_point.as_path())
    }
}

/// Finds the hierarchies of this process from `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    detect_at(
        Path::new("/proc/self/mountinfo"),
        Path::new("/proc/self/cgroup"),
    )
}

/// [`detect`] over other files, e.g. a fake tree in a tempdir. The v2 controller list is
/// read from `<mount point>/cgroup.controllers` (empty if missing).
pub fn detect_at(mountinfo: &Path, proc_cgroup: &Path) -> Result<Hierarchy, CgroupError> {
    let text = read_proc(mountinfo)?;
    let own = match fs::read_to_string(proc_cgroup) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(CgroupError::ReadProc {
                path: proc_cgroup.to_path_buf(),
                source,
            });
        }
    };
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some(mut m) = parse_mountinfo_line(line) else {
            continue;
        };
        // A hierarchy mounted twice (bind mounts) is used at its first mount point.
        if mounts
            .iter()
            .any(|o| o.flavor == m.flavor && o.controllers == m.controllers)
        {
            continue;
        }
        if m.flavor == Flavor::V2 {
            m.controllers = fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else {
            m.aliases = find_aliases(&m.mount_point);
        }
        m.own = own_cgroup(&own, &m);
        mounts.push(m);
    }
    // With the v2 mount listed before v1 ones the lookups would still prefer v1 (see
    // `Cgroup::locate`), but keep v1 first for stable output.
    mounts.sort_by_key(|m| m.flavor == Flavor::V2);
    if mounts.is_empty() {
        return Err(CgroupError::NoHierarchy {
            mountinfo: mountinfo.to_path_buf(),
        });
    }
    Ok(Hierarchy { mounts })
}

fn read_proc(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::ReadProc {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses one mountinfo line into a cgroup mount, or `None` for other filesystems.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_opts = post.next().unwrap_or("");
    let root = unescape(pre.get(3)?);
    let mount_point = PathBuf::from(unescape(pre.get(4)?));
    let (flavor, controllers) = match fstype {
        "cgroup2" => (Flavor::V2, Vec::new()),
        "cgroup" => {
            let c: Vec<String> = super_opts
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect();
            if c.is_empty() {
                return None;
            }
            (Flavor::V1, c)
        }
        _ => return None,
    };
    Some(Mount {
        flavor,
        mount_point,
        root,
        controllers,
        own: None,
        aliases: Vec::new(),
    })
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in `m`, relative to the mount's root.
fn own_cgroup(proc_cgroup: &str, m: &Mount) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match m.flavor {
            Flavor::V2 => ctrls.is_empty(),
            Flavor::V1 => {
                let mut a: Vec<&str> = ctrls.split(',').collect();
                let mut b: Vec<&str> = m.controllers.iter().map(String::as_str).collect();
                a.sort_unstable();
                b.sort_unstable();
                a == b
            }
        };
        if matches {
            let rel = path.strip_prefix(m.root.as_str()).unwrap_or(path);
            return Some(format!("/{}", rel.trim_start_matches('/')));
        }
    }
    None
}

/// Names of symlinks beside `mount_point` that point at it (`cpu` -> `cpu,cpuacct`).
fn find_aliases(mount_point: &Path) -> Vec<String> {
    let (Some(parent), Some(name)) = (mount_point.parent(), mount_point.file_name()) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == name))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory
";
    const SELF: &str = "4:memory:/user/x\n2:cpuacct:/\n1:cpu:/\n9:name=systemd:/a\n0::/u\n";

    fn detect_text(mountinfo: &str, own: &str) -> Hierarchy {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("mountinfo"), mountinfo).unwrap();
        fs::write(dir.path().join("cgroup"), own).unwrap();
        detect_at(&dir.path().join("mountinfo"), &dir.path().join("cgroup")).unwrap()
    }

    #[test]
    fn detects_hybrid_with_own_cgroups() {
        let h = detect_text(HYBRID, SELF);
        assert_eq!(h.version(), CgroupVersion::Hybrid);
        // The v2 controller list comes from the (real) mount point; only v1 is fixed here.
        let names: Vec<_> = h.mounts[..4]
            .iter()
            .map(|m| m.controllers.join(","))
            .collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "name=systemd"]);
        assert_eq!(h.mounts[4].flavor, Flavor::V2);
        assert_eq!(h.mounts[2].own.as_deref(), Some("/user/x"));
        assert_eq!(h.mounts[3].own.as_deref(), Some("/a"));
        assert_eq!(h.mounts[4].own.as_deref(), Some("/u"));
        assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn detects_pure_v1_and_v2() {
        let v2 = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(detect_text(v2, "0::/\n").version(), CgroupVersion::V2);
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = detect_text(v1, "1:cpuacct,cpu:/z\n");
        assert_eq!(h.version(), CgroupVersion::V1);
        assert_eq!(h.mounts[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h.mounts[0].own.as_deref(), Some("/z"));
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("m"), "1 0 0:1 / / rw - ext4 /dev/sda rw\n").unwrap();
        let err = detect_at(&dir.path().join("m"), &dir.path().join("none")).unwrap_err();
        assert!(matches!(err, CgroupError::NoHierarchy { .. }));
    }

    #[test]
    fn own_cgroup_is_relative_to_mount_root() {
        let mi = "41 31 0:38 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = detect_text(mi, "0::/ns/inner\n");
        assert_eq!(h.mounts[0].own.as_deref(), Some("/inner"));
        assert_eq!(h.mounts[0].root, "/ns");
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/a\04"), r"/a\04");
    }

    #[test]
    fn reads_v2_controllers_and_v1_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), "cpu memory\n").unwrap();
        fs::create_dir_all(root.join("cpu,cpuacct")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
        let mi = format!(
            "1 0 0:1 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 / {r}/unified rw - cgroup2 cgroup2 rw\n",
            r = root.display()
        );
        let h = detect_text(&mi, "");
        assert_eq!(h.mounts[0].aliases, ["cpu"]);
        assert_eq!(h.mounts[1].controllers, ["cpu", "memory"]);
    }
}
