//! The state directory: one directory per container under the runtime's `--root`, holding
//! `state.json` (written atomically) and `exec.fifo` while the container waits for `start`.
//!
//! The status is never stored: it is derived each time from the init process (alive, a
//! zombie or gone, checked against its start time so a reused pid is not mistaken for it),
//! the fifo and the freezer.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sys;

/// The runtime-spec statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// Start time of the init in clock ticks since boot, to detect pid reuse.
    pub pid_start: u64,
    /// While `pid` is 0: the `create` process (and its start time) still setting it up. A
    /// record whose creator is gone is a crashed create, reported as stopped so that
    /// `delete` removes its cgroup and directory.
    #[serde(default)]
    pub creator: Option<(i32, u64)>,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: berth_cgroups::Cgroup,
    /// Whether the init has its own user namespace (exec must then join it first).
    #[serde(default)]
    pub user_ns: bool,
    /// The resources last applied (config.json, then `update`).
    #[serde(default)]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// poststop hooks to run on delete.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// The runtime-spec state document (plus runc's extra fields).
#[derive(Debug, Serialize)]
pub struct StateDoc<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container `{0}` does not exist")]
    NotFound(String),
    #[error("container `{0}` already exists")]
    Exists(String),
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("state file `{path}` is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The runtime's `--root` directory.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const FIFO: &str = "exec.fifo";

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Makes the container's directory; fails if it exists (a duplicate id).
    pub(crate) fn create_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        let io_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { op, path, source }
        };
        fs::create_dir_all(&self.root).map_err(io_err("create state root", &self.root))?;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_string()))
            }
            Err(e) => Err(io_err("create state dir", &dir)(e)),
        }
    }

    /// Writes state.json atomically (temp file, rename).
    pub(crate) fn save(&self, s: &Saved) -> Result<(), StateError> {
        let dir = self.dir(&s.id);
        let tmp = dir.join(".state.json.tmp");
        let dst = dir.join(STATE_FILE);
        let io_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { op, path, source }
        };
        let body = serde_json::to_vec(s).map_err(|source| StateError::Corrupt {
            path: dst.clone(),
            source,
        })?;
        // Temp + rename keeps readers from ever seeing half a file. No fsync: the state
        // describes processes, which do not survive a power loss either, and it belongs on
        // a tmpfs (`/run`), as runc's does.
        let mut f = fs::File::create(&tmp).map_err(io_err("write", &tmp))?;
        f.write_all(&body).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err("rename", &dst))?;
        Ok(())
    }

    /// Reads a container's saved state.
    pub fn load(&self, id: &str) -> Result<Saved, StateError> {
        crate::spec::validate_id(id).map_err(|_| StateError::NotFound(id.to_string()))?;
        let path = self.dir(id).join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()));
            }
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Ids of every container directory (including ones still being created).
    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    /// Removes a container's directory and everything in it.
    pub(crate) fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                op: "remove",
                path: dir,
                source,
            }),
        }
    }
}

/// Whether the init recorded in `s` still runs (not gone, not a zombie, not a new process
/// that reused its pid).
pub(crate) fn init_alive(s: &Saved) -> bool {
    if s.pid == 0 {
        return false;
    }
    match sys::process_start_time(s.pid) {
        Some((start, state)) => start == s.pid_start && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Derives the status of a saved container.
pub(crate) fn status_of(root: &StateRoot, s: &Saved) -> Status {
    if s.pid == 0 {
        let creating = s.creator.is_some_and(|(pid, start)| {
            sys::process_start_time(pid).is_some_and(|(st, state)| st == start && state != 'Z')
        });
        return if creating {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    if !init_alive(s) {
        return Status::Stopped;
    }
    if root.dir(&s.id).join(FIFO).exists() {
        return Status::Created;
    }
    if s.cgroup.is_frozen().unwrap_or(false) {
        return Status::Paused;
    }
    Status::Running
}

/// Now as RFC 3339 in UTC with nanoseconds, as runc writes `created`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The user name of the calling uid, from /etc/passwd, or the number.
pub(crate) fn owner_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let u: u32 = f.nth(1)?.parse().ok()?;
            (u == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_651_200, 0), "2026-11-26T00:00:00.000000000Z");
    }
}
