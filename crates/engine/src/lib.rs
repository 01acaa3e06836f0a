//! berth-engine: containers as a person uses them. It owns the metadata store (SQLite),
//! turning an image's config plus Docker-style flags into an OCI spec, the per-container
//! monitor (stdio, json-file logs, exit codes, `--rm`, restart policies, the attach
//! socket), volumes and exec. It does not parse arguments or print tables (the `berth` CLI does), and it uses
//! `berth-image` for rootfs mounts, `berth-runtime` for the container itself and (later)
//! `berth-net` for bridge networks. The entry point is [`Engine`]: `open`, then `create`,
//! `start`, `stop`, `remove`, …; the monitor binary calls [`monitor_main`].
#![deny(unsafe_code)]

mod attach;
mod attach_client;
mod container;
mod copy;
mod copyup;
mod db;
mod exec;
mod fault;
mod inspect;
mod lifecycle;
mod logs;
mod monitor;
mod names;
mod network;
mod prepare;
mod record;
mod serve;
mod spec;
mod sys;
mod time;
mod user;
mod volume;

use std::io;

pub use attach::AttachError;
pub use attach_client::{AttachEnd, AttachOptions, DEFAULT_DETACH_KEYS, check_detach_keys};
pub use berth_net;
pub use berth_runtime::trace;
pub use container::{Attached, CreateRequest, Engine};
pub use copy::{CopyOptions, CopyStreamError};
pub use copyup::CopyUpError;
pub use db::DbError;
pub use exec::ExecRequest;
pub use logs::{LogEntry, LogFilter, filter as filter_logs, read_entries as read_log};
pub use monitor::monitor_main;
pub use network::{
    DEFAULT_NETWORK, NetFlags, NetOptions, NetworkError, NetworkMode,
    parse_mode as parse_network_mode, parse_publish,
};
pub use record::{
    Config, ContainerRecord, HostConfig, MountPoint, RestartPolicy, State, Status, Ulimit,
};
pub use spec::{DEFAULT_CAPS, SpecBuildError};
pub use time::{
    format as format_time, human as human_duration, now as now_time, parse as parse_time,
};
pub use user::UserError;
pub use volume::{ANONYMOUS_LABEL, Volume, VolumeError};

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Image(#[from] berth_image::StoreError),
    #[error(transparent)]
    Rootfs(#[from] berth_image::RootfsError),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::container::ContainerError),
    #[error(transparent)]
    Spec(#[from] SpecBuildError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    CopyUp(#[from] CopyUpError),
    #[error(transparent)]
    CopyStream(#[from] copy::CopyStreamError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("{op}")]
    Io { op: String, source: io::Error },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error(
        "You cannot remove a running container {0}. Stop the container before attempting removal or force remove"
    )]
    RemoveRunning(String),
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("invalid --{flag} value `{value}`: use host, private or container:<name|id>")]
    InvalidMode { flag: &'static str, value: String },
    #[error("no command specified")]
    NoCommand,
    #[error("exec: \"{path}\": {why}")]
    CannotExecute { path: String, why: &'static str },
    #[error(
        "--init needs berth's init, `{0}` (berth-runtime, installed next to berth); it is missing"
    )]
    InitMissing(std::path::PathBuf),
    #[error("{message}")]
    StartFailed { code: i32, message: String },
    #[error("the monitor of container `{0}` exited before reporting")]
    MonitorLost(String),
}

impl EngineError {
    /// Docker's exit status for this failure: 127 for a command that is not found, 126
    /// for one that cannot be executed, 125 for the engine's own errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::StartFailed { code, .. } => *code,
            EngineError::CannotExecute { .. } => 126,
            EngineError::Runtime(e) => runtime_exit_code(&e.to_string()),
            _ => 125,
        }
    }
}

/// Maps a runtime error's text to Docker's exit codes (the init reports exec failures as
/// text across the sync pipe).
fn runtime_exit_code(msg: &str) -> i32 {
    if msg.contains("not found in $PATH")
        || msg.contains("No such file or directory") && msg.contains("exec")
    {
        127
    } else if msg.contains("exec")
        && (msg.contains("ermission denied") || msg.contains("is a directory"))
    {
        126
    } else {
        125
    }
}

/// An error and its sources, joined with `: ` (for the monitor's one-line report).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

pub(crate) fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let op = op.into();
    move |source| EngineError::Io { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(
            runtime_exit_code("container init: executable file `x` not found in $PATH"),
            127
        );
        assert_eq!(
            runtime_exit_code("exec `/etc`: Permission denied (os error 13)"),
            126
        );
        assert_eq!(runtime_exit_code("cgroup: bad"), 125);
    }
}
