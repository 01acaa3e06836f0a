//! Container record + resolved user + namespace joins → the OCI runtime spec
//! (`config.json`), with Docker's defaults: its capability set, its seccomp profile, masked
//! and read-only paths, `/dev/shm`, and `/etc/{hosts,hostname,resolv.conf}` bind-mounted
//! from files the engine writes.

use std::path::Path;

use serde_json::{Value, json};

use crate::record::{ContainerRecord, MountPoint};
use crate::user::Identity;

/// Why a spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecBuildError {
    #[error("invalid capability `{0}`")]
    Capability(String),
    #[error("invalid seccomp profile: {0}")]
    Seccomp(serde_json::Error),
    #[error("invalid spec: {0}")]
    Spec(serde_json::Error),
}

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A namespace to join instead of creating (`--pid=container:X`, `--network=host`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsJoin {
    /// OCI namespace type: `pid`, `network`, `ipc`, `uts`.
    pub kind: &'static str,
    /// `/proc/PID/ns/…`; `None` means the host's (the namespace is left out).
    pub path: Option<String>,
}

/// Normalises `net_admin`/`CAP_NET_ADMIN` to `CAP_NET_ADMIN`.
fn cap_name(s: &str) -> Result<String, SpecBuildError> {
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if berth_runtime::capability_names().contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(SpecBuildError::Capability(s.to_string()))
    }
}

/// The effective capability list from the defaults, `--cap-add`, `--cap-drop`, `--privileged`.
pub fn capabilities(rec: &ContainerRecord) -> Result<Vec<String>, SpecBuildError> {
    let all: Vec<String> = berth_runtime::capability_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let h = &rec.host_config;
    if h.privileged {
        return Ok(all);
    }
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Vec<String> = if is_all(&h.cap_drop) {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if is_all(&h.cap_add) {
        caps = all;
    } else {
        for c in &h.cap_add {
            let c = cap_name(c)?;
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    if !is_all(&h.cap_drop) {
        for c in &h.cap_drop {
            let c = cap_name(c)?;
            caps.retain(|x| *x != c);
        }
    }
    Ok(caps)
}

fn base_mounts(rec: &ContainerRecord, dir: &Path) -> Vec<Value> {
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let ro_sys = if rec.host_config.privileged {
        "rw"
    } else {
        "ro"
    };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", ro_sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", ro_sys]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": d("resolv.conf"), "options": ["rbind", "rprivate"]}),
        json!({"destination": "/etc/hostname", "type": "bind", "source": d("hostname"), "options": ["rbind", "rprivate"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": d("hosts"), "options": ["rbind", "rprivate"]}),
    ]
}

fn user_mount(m: &MountPoint, volume_path: &dyn Fn(&str) -> String) -> Value {
    let rw = if m.read_only { "ro" } else { "rw" };
    match m.r#type.as_str() {
        "tmpfs" => {
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string(), rw.to_string()];
            opts.extend(m.options.iter().cloned());
            json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
        }
        "volume" => json!({"destination": m.destination, "type": "bind",
            "source": volume_path(&m.source), "options": ["rbind", "rprivate", rw]}),
        _ => json!({"destination": m.destination, "type": "bind",
            "source": m.source, "options": ["rbind", "rprivate", rw]}),
    }
}

fn resources(rec: &ContainerRecord) -> Value {
    let h = &rec.host_config;
    let mut r = json!({});
    r["devices"] = if h.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([{"allow": false, "access": "rwm"}])
    };
    if h.memory > 0 {
        let swap = match h.memory_swap {
            0 => h.memory * 2,
            s => s,
        };
        r["memory"] = json!({"limit": h.memory, "swap": swap});
    }
    let mut cpu = json!({});
    if h.nano_cpus > 0 {
        cpu["period"] = json!(100_000u64);
        cpu["quota"] = json!(h.nano_cpus / 10_000);
    }
    if h.cpu_shares > 0 {
        cpu["shares"] = json!(h.cpu_shares);
    }
    if !h.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(h.cpuset_cpus);
    }
    if cpu != json!({}) {
        r["cpu"] = cpu;
    }
    if h.pids_limit != 0 {
        r["pids"] = json!({"limit": h.pids_limit});
    }
    r
}

fn namespaces(joins: &[NsJoin]) -> Vec<Value> {
    let mut out = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    for kind in ["pid", "network", "ipc", "uts"] {
        match joins.iter().find(|j| j.kind == kind) {
            None => out.push(json!({"type": kind})),
            Some(NsJoin { path: None, .. }) => {}
            Some(NsJoin {
                path: Some(p),
                kind,
            }) => out.push(json!({"type": kind, "path": p})),
        }
    }
    out
}

fn seccomp(rec: &ContainerRecord, caps: &[String]) -> Result<Option<Value>, SpecBuildError> {
    let h = &rec.host_config;
    match h.seccomp.as_deref() {
        _ if h.privileged => Ok(None),
        Some("unconfined") => Ok(None),
        Some(text) => {
            // Docker's profile format, which is a superset of the OCI one: pass it through
            // the OCI type so unknown fields are dropped and errors are reported here.
            let p: oci_spec::runtime::LinuxSeccomp =
                serde_json::from_str(text).map_err(SpecBuildError::Seccomp)?;
            serde_json::to_value(p)
                .map(Some)
                .map_err(SpecBuildError::Seccomp)
        }
        None => serde_json::to_value(berth_seccomp::docker_default(caps))
            .map(Some)
            .map_err(SpecBuildError::Seccomp),
    }
}

fn rlimits(rec: &ContainerRecord) -> Vec<Value> {
    // Like Docker: the engine's own open-files limit (a higher one needs `nr_open`).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard);
    let mut v = vec![json!({"type": "RLIMIT_NOFILE", "soft": nofile, "hard": nofile})];
    for u in &rec.host_config.ulimits {
        let ty = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        v.retain(|x| x["type"] != ty.as_str());
        v.push(json!({"type": ty, "soft": u.soft, "hard": u.hard}));
    }
    v
}

/// The cgroup under which every container of the engine gets its own (`/berth/<id>`).
pub const CGROUP_PARENT: &str = "berth";

/// Builds the spec. `dir` holds the engine-written `/etc` files; `volume_path` maps a
/// volume name to its host directory; `argv` is the process to run.
pub fn build(
    rec: &ContainerRecord,
    dir: &Path,
    id: &Identity,
    joins: &[NsJoin],
    argv: &[String],
    volume_path: &dyn Fn(&str) -> String,
) -> Result<oci_spec::runtime::Spec, SpecBuildError> {
    let c = &rec.config;
    let h = &rec.host_config;
    let caps = capabilities(rec)?;
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env.push(format!("HOSTNAME={}", c.hostname));
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let mut mounts = base_mounts(rec, dir);
    mounts.extend(h.mounts.iter().map(|m| user_mount(m, volume_path)));
    let cwd = if c.working_dir.is_empty() {
        "/"
    } else {
        &c.working_dir
    };
    let privileged = h.privileged;
    let mut linux = json!({
        // Absolute, so the runtime leaves the `/berth` parent in place when the last
        // container goes (as Docker leaves `/docker`): removing it with each `run --rm`
        // and making it again for the next put 20 more cgroup mkdirs and rmdirs on a
        // cgroup v1 host on every run.
        "cgroupsPath": format!("/{CGROUP_PARENT}/{}", rec.id),
        "resources": resources(rec),
        "namespaces": namespaces(joins),
        "maskedPaths": if privileged { vec![] } else { MASKED.to_vec() },
        "readonlyPaths": if privileged { vec![] } else { READONLY.to_vec() },
    });
    if let Some(s) = seccomp(rec, &caps)? {
        linux["seccomp"] = s;
    }
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": h.read_only_rootfs},
        "mounts": mounts,
        "process": {
            "terminal": c.tty,
            "user": {"uid": id.uid, "gid": id.gid, "additionalGids": id.additional_gids},
            "args": argv,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits(rec),
            "noNewPrivileges": h.no_new_privileges,
        },
        "linux": linux,
    });
    // A joined UTS namespace (`--uts=host`) keeps its own hostname.
    if !joins.iter().any(|j| j.kind == "uts") {
        spec["hostname"] = json!(c.hostname);
    }
    serde_json::from_value(spec).map_err(SpecBuildError::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Ulimit;

    fn ident() -> Identity {
        Identity {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        }
    }

    #[test]
    fn docker_defaults_and_flags() {
        let mut rec = ContainerRecord {
            id: "abc".into(),
            ..Default::default()
        };
        rec.config.hostname = "abc".into();
        rec.host_config.memory = 7 << 20;
        rec.host_config.cap_add = vec!["net_admin".into()];
        rec.host_config.cap_drop = vec!["CAP_CHOWN".into()];
        rec.host_config.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 20,
        }];
        let joins = [NsJoin {
            kind: "pid",
            path: None,
        }];
        let argv = vec!["true".to_string()];
        let spec = build(&rec, Path::new("/d"), &ident(), &joins, &argv, &|n| {
            n.into()
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        let eff = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert!(eff.contains(&json!("CAP_NET_ADMIN")));
        assert!(!eff.contains(&json!("CAP_CHOWN")));
        assert!(eff.contains(&json!("CAP_KILL")));
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], json!(7 << 20));
        // `/berth/<id>`, absolute: the `/berth` parent stays when the container goes.
        assert_eq!(
            v["linux"]["cgroupsPath"],
            json!(format!("/berth/{}", rec.id))
        );
        let ns: Vec<_> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect();
        assert!(!ns.contains(&"pid".to_string()));
        assert!(ns.contains(&"network".to_string()));
        assert!(v["linux"]["seccomp"].is_object());
        let rl = v["process"]["rlimits"].as_array().unwrap();
        assert_eq!(rl.len(), 1);
        assert_eq!(rl[0]["soft"], json!(10));
    }

    #[test]
    fn bad_capability_is_refused() {
        let mut rec = ContainerRecord::default();
        rec.host_config.cap_add = vec!["NOPE".into()];
        assert!(matches!(
            capabilities(&rec),
            Err(SpecBuildError::Capability(_))
        ));
    }
}
