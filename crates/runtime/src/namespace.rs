//! Namespaces: which to create, which to join by path, and the user-namespace id maps.
//!
//! Paths are opened in the runtime before any fork, so a bad path is an error of `create`
//! and the child only calls setns on fds it already holds.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::sys;

/// One line per namespace type: the OCI name, the clone flag and the /proc/PID/ns name.
/// The order is the order in which namespaces are joined: user first, so joining the
/// others is checked against the container's user namespace.
pub(crate) const NAMESPACES: &[(LinuxNamespaceType, libc::c_int, &str)] = &[
    (LinuxNamespaceType::User, libc::CLONE_NEWUSER, "user"),
    (LinuxNamespaceType::Ipc, libc::CLONE_NEWIPC, "ipc"),
    (LinuxNamespaceType::Uts, libc::CLONE_NEWUTS, "uts"),
    (LinuxNamespaceType::Network, libc::CLONE_NEWNET, "net"),
    (LinuxNamespaceType::Pid, libc::CLONE_NEWPID, "pid"),
    (LinuxNamespaceType::Mount, libc::CLONE_NEWNS, "mnt"),
    (LinuxNamespaceType::Cgroup, libc::CLONE_NEWCGROUP, "cgroup"),
    (LinuxNamespaceType::Time, libc::CLONE_NEWTIME, "time"),
];

/// Why a namespace could not be planned or entered.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open namespace `{path}`: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("join {kind} namespace: {source}")]
    Join {
        kind: &'static str,
        source: io::Error,
    },
    #[error("unshare namespaces: {0}")]
    Unshare(io::Error),
    #[error("write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Namespaces to join (opened fds) and to create (clone flags).
#[derive(Debug, Default)]
pub(crate) struct NsPlan {
    pub join: Vec<(libc::c_int, &'static str, OwnedFd)>,
    pub new_flags: libc::c_int,
}

impl NsPlan {
    /// From config.json's `linux.namespaces`.
    pub(crate) fn from_linux(linux: Option<&Linux>) -> Result<Self, NamespaceError> {
        let mut plan = NsPlan::default();
        let list = linux
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for (typ, flag, name) in NAMESPACES {
            let Some(ns) = list.iter().find(|n| n.typ() == *typ) else {
                continue;
            };
            match ns.path() {
                Some(path) => plan.join.push((*flag, name, open_ns(path)?)),
                None => plan.new_flags |= flag,
            }
        }
        Ok(plan)
    }

    /// Every namespace of a running process that differs from ours, for `exec`.
    pub(crate) fn of_process(pid: i32) -> Result<Self, NamespaceError> {
        let mut plan = NsPlan::default();
        for (_, flag, name) in NAMESPACES {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
            let (Ok(a), Ok(b)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if a.ino() != b.ino() || a.dev() != b.dev() {
                plan.join.push((*flag, name, open_ns(&theirs)?));
            }
        }
        Ok(plan)
    }

    pub(crate) fn creates(&self, flag: libc::c_int) -> bool {
        self.new_flags & flag != 0
    }

    pub(crate) fn joins(&self, flag: libc::c_int) -> bool {
        self.join.iter().any(|(f, _, _)| *f == flag)
    }

    /// Joins every namespace given by path, user namespace first.
    pub(crate) fn join_all(&self) -> Result<(), NamespaceError> {
        for (flag, name, fd) in &self.join {
            sys::setns(fd.as_fd(), *flag)
                .map_err(|source| NamespaceError::Join { kind: name, source })?;
        }
        Ok(())
    }
}

fn open_ns(path: &Path) -> Result<OwnedFd, NamespaceError> {
    sys::open(path, libc::O_RDONLY, 0).map_err(|source| NamespaceError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The text of a uid_map/gid_map file.
pub(crate) fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The host uid and gid that a new user namespace maps container root (0) to, if any.
pub(crate) fn host_root_ids(linux: &Linux) -> Option<(u32, u32)> {
    let find = |maps: &Option<Vec<LinuxIdMapping>>| {
        maps.iter().flatten().find_map(|m| {
            let (c, h, n) = (m.container_id(), m.host_id(), m.size());
            (c == 0 && n > 0).then_some(h)
        })
    };
    Some((find(linux.uid_mappings())?, find(linux.gid_mappings())?))
}

/// Writes the id maps of `pid`'s new user namespace, from outside it.
pub(crate) fn write_id_maps(pid: i32, linux: &Linux) -> Result<(), NamespaceError> {
    let write = |file: &str, text: String| {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
    };
    write(
        "uid_map",
        map_text(linux.uid_mappings().as_deref().unwrap_or(&[])),
    )?;
    write(
        "gid_map",
        map_text(linux.gid_mappings().as_deref().unwrap_or(&[])),
    )?;
    Ok(())
}

/// Writes time namespace offsets for the children of the calling process (after
/// unshare(CLONE_NEWTIME), before the first child is forked).
pub(crate) fn write_time_offsets(linux: &Linux) -> Result<(), NamespaceError> {
    let Some(offsets) = linux.time_offsets() else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    let path = PathBuf::from("/proc/self/timens_offsets");
    fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_separates_new_and_joined() {
        let linux: Linux = serde_json::from_str(
            r#"{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"},{"type":"mount"}]}"#,
        )
        .unwrap();
        let plan = NsPlan::from_linux(Some(&linux)).unwrap();
        assert!(plan.creates(libc::CLONE_NEWPID));
        assert!(plan.creates(libc::CLONE_NEWNS));
        assert!(!plan.creates(libc::CLONE_NEWNET));
        assert!(plan.joins(libc::CLONE_NEWNET));
    }

    #[test]
    fn bad_namespace_path_is_an_error_before_fork() {
        let linux: Linux =
            serde_json::from_str(r#"{"namespaces":[{"type":"ipc","path":"/nonexistent/ns"}]}"#)
                .unwrap();
        let err = NsPlan::from_linux(Some(&linux)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"));
    }

    #[test]
    fn id_maps_render_one_line_each() {
        let linux: Linux = serde_json::from_str(
            r#"{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}"#,
        )
        .unwrap();
        assert_eq!(
            map_text(linux.uid_mappings().as_ref().unwrap()),
            "0 100000 65536\n"
        );
    }
}
