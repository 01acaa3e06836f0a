//! What the runtime proposes and advertises: the default config.json of `spec` and the
//! runtime-spec features document of `features`.

use oci_spec::runtime::Spec;
use serde_json::json;

/// The config.json `spec` writes: busybox-friendly `sh` on a terminal, the usual
/// namespaces, mounts, masked and read-only paths, and a conservative capability set.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = if rootless {
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    };
    if let Some(p) = spec.process_mut().as_mut() {
        p.set_terminal(Some(true));
    }
    spec.set_hostname(Some("berth".into()));
    spec
}

/// The runtime-spec `features` document.
pub fn features() -> serde_json::Value {
    let namespaces: Vec<&str> = [
        "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
    ]
    .to_vec();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::mount::known_options(),
        "linux": {
            "namespaces": namespaces,
            "capabilities": crate::caps::all_names(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": berth_seccomp::features(),
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": { "org.opencontainers.runc.version": "berth" }
    })
}
