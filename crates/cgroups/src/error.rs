//! The error type of every cgroup operation.

use std::io;
use std::path::PathBuf;

use crate::sys::BpfError;

/// A cgroup operation failed; each variant names the file or value involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading `/proc/self/mountinfo` or `/proc/self/cgroup` failed.
    #[error("read `{path}`")]
    ReadProc {
        /// The file read.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem found in `{mountinfo}`")]
    NoHierarchy {
        /// The mountinfo file searched.
        mountinfo: PathBuf,
    },
    /// A systemd-style `slice:prefix:name` path was given but there is no systemd driver.
    #[error(
        "cgroups path `{path}` is in systemd form (slice:prefix:name); berth has no systemd cgroup driver"
    )]
    SystemdPath {
        /// The path from config.json.
        path: String,
    },
    /// The cgroups path or container id cannot name a cgroup directory.
    #[error("cgroups path `{path}`: {reason}")]
    InvalidPath {
        /// The offending path or id.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A resource value is out of range or inconsistent.
    #[error("invalid {field} `{value}`: {reason}")]
    InvalidResource {
        /// The config.json field, e.g. `memory.swap`.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A resource needs a controller that no hierarchy provides.
    #[error("controller `{controller}` is not available for `{file}`")]
    ControllerMissing {
        /// Controller name.
        controller: String,
        /// The file that would have been written.
        file: String,
    },
    /// `unified` keys need a cgroup2 hierarchy.
    #[error("unified key `{key}` needs cgroup v2, which is not mounted")]
    UnifiedWithoutV2 {
        /// The key.
        key: String,
    },
    /// mkdir of a cgroup directory failed.
    #[error("mkdir `{path}`")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// rmdir of a cgroup directory failed.
    #[error("rmdir `{path}`")]
    Rmdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Opening a cgroup directory or file failed.
    #[error("open `{path}`")]
    Open {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("write `{value}` to `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The cause.
        source: io::Error,
    },
    /// Reading a cgroup file failed.
    #[error("read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A cgroup file held something unexpected.
    #[error("parse `{path}`: unexpected `{content}`")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending text.
        content: String,
    },
    /// The freezer did not reach the wanted state.
    #[error("freezer `{path}` did not reach `{state}`")]
    FreezeTimeout {
        /// The freezer file.
        path: PathBuf,
        /// The wanted state.
        state: &'static str,
    },
    /// Loading or attaching the v2 device filter failed.
    #[error("device filter on `{path}`")]
    DeviceFilter {
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        source: BpfError,
    },
}
