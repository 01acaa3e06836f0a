//! The bench's own cgroup parent, `berth-bench-<pid>`, under which every runtime's
//! containers get their `cgroupsPath`; removed from every hierarchy at the end.

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The parent cgroup name of this bench process.
pub fn parent_name() -> String {
    format!("berth-bench-{}", std::process::id())
}

/// Removes `name` (and the empty cgroups below it) from every hierarchy under `root`:
/// the v2 root itself and each v1 controller mount. Returns the dirs that could not be
/// removed (a cgroup that still has processes).
pub fn remove_parent(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut hierarchies = vec![root.to_owned()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut left = Vec::new();
    for h in hierarchies {
        let dir = h.join(name);
        if dir.is_dir() {
            remove_tree(&dir, &mut left);
        }
    }
    left
}

/// Removes this bench's parent from the real cgroup root.
pub fn remove_own_parent() -> Vec<PathBuf> {
    remove_parent(Path::new(CGROUP_ROOT), &parent_name())
}

/// Depth-first rmdir (cgroupfs dirs hold only control files, which rmdir ignores).
fn remove_tree(dir: &Path, left: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), left);
            }
        }
    }
    if std::fs::remove_dir(dir).is_err() {
        left.push(dir.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_parent_from_each_hierarchy_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "memory/bb/crun-plain",
            "pids/bb/runc-plain/x",
            "bb",
            "memory/other",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let left = remove_parent(r, "bb");
        assert!(left.is_empty(), "{left:?}");
        assert!(!r.join("memory/bb").exists());
        assert!(!r.join("pids/bb").exists());
        assert!(!r.join("bb").exists());
        assert!(r.join("memory/other").exists());
    }

    #[test]
    fn reports_what_it_cannot_remove() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cpu/bb");
        std::fs::create_dir_all(&dir).unwrap();
        // A regular file stands in for a cgroup that still has members.
        std::fs::write(dir.join("busy"), "1").unwrap();
        let left = remove_parent(root.path(), "bb");
        assert_eq!(left, vec![dir]);
    }
}
