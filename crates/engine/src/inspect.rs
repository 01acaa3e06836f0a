//! `inspect`: a container record in the shape of Docker's `ContainerJSON`, so Go-template
//! paths such as `.State.Pid`, `.Id` and `.Config.Env` work as users expect.

use serde_json::{Value, json};

use crate::container::Engine;
use crate::record::{ContainerRecord, Status};

impl Engine {
    /// Docker's inspect document for one record.
    pub fn inspect_value(&self, rec: &ContainerRecord) -> Value {
        let st = &rec.state;
        let argv = rec.argv();
        let mounts = self.mounts_json(rec);
        let zero = "0001-01-01T00:00:00Z";
        let or_zero = |s: &str| {
            if s.is_empty() {
                zero.to_string()
            } else {
                s.to_string()
            }
        };
        let mut host = serde_json::to_value(&rec.host_config).unwrap_or_default();
        host["AutoRemove"] = json!(rec.host_config.auto_remove);
        // An empty mode is the default network (the record predates `--network`).
        host["NetworkMode"] = json!(if rec.host_config.network_mode.is_empty() {
            crate::network::DEFAULT_NETWORK
        } else {
            &rec.host_config.network_mode
        });
        json!({
            "Id": rec.id,
            "Created": rec.created,
            "Path": argv.first().cloned().unwrap_or_default(),
            "Args": argv.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": st.status.as_str(),
                "Running": matches!(st.status, Status::Running | Status::Paused),
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": or_zero(&st.started_at),
                "FinishedAt": or_zero(&st.finished_at),
            },
            "Image": rec.image_id,
            "ResolvConfPath": self.run_dir(&rec.id).join("resolv.conf"),
            "HostnamePath": self.run_dir(&rec.id).join("hostname"),
            "HostsPath": self.run_dir(&rec.id).join("hosts"),
            "LogPath": self.log_path(&rec.id),
            "Name": format!("/{}", rec.name),
            "RestartCount": st.restart_count,
            "Driver": "overlay",
            "HostConfig": host,
            "Mounts": mounts,
            "NetworkSettings": self.network_settings(rec),
            "Config": {
                "Hostname": rec.config.hostname,
                "User": rec.config.user,
                "Tty": rec.config.tty,
                "OpenStdin": rec.config.open_stdin,
                "Env": rec.config.env,
                "Cmd": rec.config.cmd,
                "Entrypoint": rec.config.entrypoint,
                "WorkingDir": rec.config.working_dir,
                "Labels": rec.config.labels,
                "Image": rec.config.image,
                "StopSignal": rec.config.stop_signal,
                "StopTimeout": rec.config.stop_timeout,
                "ExposedPorts": exposed_ports(rec),
            },
        })
    }

    /// `Mounts`: volumes with their host path and name.
    fn mounts_json(&self, rec: &ContainerRecord) -> Vec<Value> {
        rec.host_config
            .mounts
            .iter()
            .map(|m| {
                let source = if m.r#type == "volume" {
                    self.volume_path(&m.source).to_string_lossy().into_owned()
                } else {
                    m.source.clone()
                };
                json!({
                    "Type": m.r#type,
                    "Name": if m.r#type == "volume" { m.source.clone() } else { String::new() },
                    "Source": source,
                    "Destination": m.destination,
                    "RW": !m.read_only,
                })
            })
            .collect()
    }
}

/// `Config.ExposedPorts`: `{"80/tcp": {}}`, or null when there are none.
fn exposed_ports(rec: &ContainerRecord) -> Value {
    if rec.config.exposed_ports.is_empty() {
        return Value::Null;
    }
    let keys = rec.config.exposed_ports.iter();
    Value::Object(keys.map(|k| (k.clone(), json!({}))).collect())
}
