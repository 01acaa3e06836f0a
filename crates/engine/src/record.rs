//! The container record kept in the metadata store: what the user asked for (merged with
//! the image's config) and what happened to it since.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The effective process configuration: image config overlaid with the flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: String,
    pub stop_timeout: Option<u32>,
    pub image: String,
    /// Mount points the image declares (`VOLUME`); each gets an anonymous volume.
    pub volumes: Vec<String>,
    /// The image's `ExposedPorts` and `--expose`, as `PORT/PROTO`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
}

/// A restart policy, as Docker's `--restart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub name: String,
    pub maximum_retry_count: u32,
}

/// One `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A mount of a bind, named volume or tmpfs into the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub r#type: String,
    /// Host path (bind), volume name (volume) or empty (tmpfs).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Extra mount options (tmpfs `size=…`, `mode=…`).
    pub options: Vec<String>,
    /// For volumes: created for this container only (removed by `rm -v`).
    pub anonymous: bool,
}

/// Host-side settings: resources, security, namespaces, lifecycle.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub mounts: Vec<MountPoint>,
    /// `--volumes-from CONTAINER[:ro|:rw]` as given; their mounts were copied into
    /// `mounts` at create.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    pub read_only_rootfs: bool,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    pub cpuset_cpus: String,
    pub pids_limit: i64,
    pub ulimits: Vec<Ulimit>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `None`: Docker's default profile; `Some("unconfined")`; or a profile's JSON text.
    pub seccomp: Option<String>,
    pub no_new_privileges: bool,
    /// `""` (private), `host` or `container:<id>`.
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    /// `none`, `host`, `container:<id>` or a network's name (empty: `bridge`).
    pub network_mode: String,
    /// Aliases, `--ip`, `--dns`, `--add-host`, published ports, connected networks.
    #[serde(default)]
    pub net: crate::network::NetOptions,
    pub init: bool,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    /// `json-file` or `none`.
    pub log_driver: String,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl Status {
    /// Docker's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// What happened to the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init while it runs.
    pub pid: i32,
    /// The monitor process and its start time (from `/proc/PID/stat`), 0 when none.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
    pub error: String,
    /// Set by `stop`/`kill`: the monitor must not restart the container.
    pub stopped_by_user: bool,
    /// The rootfs overlay is mounted.
    pub mounted: bool,
}

/// One container as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image's id (config digest).
    pub image_id: String,
    pub config: Config,
    pub host_config: HostConfig,
    pub state: State,
    /// The rootfs has the image's init layer above the image's layers (see
    /// `berth_image::Store::init_layer`). Fixed at create, so the layers under a
    /// container's upper directory never change; false for containers of older berths.
    #[serde(default)]
    pub init_layer: bool,
}

impl ContainerRecord {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// True while a process of the container may be alive.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// The program and its arguments: entrypoint then cmd.
    pub fn argv(&self) -> Vec<String> {
        let mut v = self.config.entrypoint.clone();
        v.extend(self.config.cmd.iter().cloned());
        v
    }
}
