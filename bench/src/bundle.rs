//! The busybox bundle every runtime runs: one shared read-only rootfs, and one
//! `config.json` per (runtime, variant) derived from a base spec with the process set to
//! `true`, a cgroup path of the bench's own, and optionally a memory limit or seccomp.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Why the bundle could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("run `{script}` for `{dir}`")]
    Script {
        script: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{script}` failed for `{dir}` ({status})")]
    ScriptFailed {
        script: PathBuf,
        dir: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse `{path}`")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not an OCI runtime config (no `{field}` object)")]
    Shape { path: PathBuf, field: &'static str },
}

/// What one `config.json` changes from the base spec.
#[derive(Debug, Clone, Default)]
pub struct ConfigTweaks {
    /// `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// `linux.resources.memory.limit` and `.swap` (equal, so swap cannot hide a limit).
    pub memory_limit: Option<u64>,
    /// `linux.seccomp`, an OCI seccomp object.
    pub seccomp: Option<Value>,
}

/// A rootfs plus the base spec the per-runtime configs are made from.
#[derive(Debug)]
pub struct Bundle {
    rootfs: PathBuf,
    base: Value,
}

impl Bundle {
    /// Makes `dir/rootfs` and `dir/config.json` with `scripts/busybox-bundle.sh`, whose
    /// config comes from `spec_runtime spec`, and loads that config as the base.
    pub fn make(script: &Path, dir: &Path, spec_runtime: &Path) -> Result<Self, BundleError> {
        let status = Command::new(script)
            .arg(dir)
            .arg(spec_runtime)
            .status()
            .map_err(|source| BundleError::Script {
                script: script.to_owned(),
                dir: dir.to_owned(),
                source,
            })?;
        if !status.success() {
            return Err(BundleError::ScriptFailed {
                script: script.to_owned(),
                dir: dir.to_owned(),
                status,
            });
        }
        Self::load(dir)
    }

    /// Loads an existing bundle (`dir/rootfs`, `dir/config.json`).
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let base: Value = serde_json::from_str(&text).map_err(|source| BundleError::Parse {
            path: path.clone(),
            source,
        })?;
        for field in ["process", "root", "linux"] {
            if !base.get(field).is_some_and(Value::is_object) {
                return Err(BundleError::Shape { path, field });
            }
        }
        let rootfs =
            std::path::absolute(dir.join("rootfs")).map_err(|source| BundleError::Read {
                path: dir.join("rootfs"),
                source,
            })?;
        Ok(Self { rootfs, base })
    }

    /// The base spec's bounding capabilities (to pick the seccomp rules that apply).
    pub fn bounding_caps(&self) -> Vec<String> {
        self.base["process"]["capabilities"]["bounding"]
            .as_array()
            .map(|caps| {
                caps.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes `dir/config.json` (making `dir`) with `tweaks` applied; `dir` is then a
    /// bundle whose root is the shared rootfs.
    pub fn write_config(&self, dir: &Path, tweaks: &ConfigTweaks) -> Result<(), BundleError> {
        let write_err = |source| BundleError::Write {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let config = apply_tweaks(&self.base, &self.rootfs, tweaks);
        let path = dir.join("config.json");
        let text = serde_json::to_vec_pretty(&config).map_err(|source| BundleError::Parse {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| BundleError::Write { path, source })
    }
}

/// The base spec with `true` as a non-terminal process and `tweaks` applied.
fn apply_tweaks(base: &Value, rootfs: &Path, tweaks: &ConfigTweaks) -> Value {
    let mut config = base.clone();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    config["root"] = json!({ "path": rootfs, "readonly": true });
    let linux = &mut config["linux"];
    linux["cgroupsPath"] = json!(tweaks.cgroups_path);
    if let Some(limit) = tweaks.memory_limit {
        linux["resources"]["memory"] = json!({ "limit": limit, "swap": limit });
    }
    match &tweaks.seccomp {
        Some(profile) => linux["seccomp"] = profile.clone(),
        None => {
            if let Some(obj) = linux.as_object_mut() {
                obj.remove("seccomp");
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "process": { "terminal": true, "args": ["sh"],
                         "capabilities": { "bounding": ["CAP_KILL", "CAP_CHOWN"] } },
            "root": { "path": "rootfs", "readonly": true },
            "linux": { "resources": { "devices": [] }, "seccomp": { "defaultAction": "SCMP_ACT_ALLOW" } }
        })
    }

    #[test]
    fn tweaks_set_process_root_cgroup_and_memory() {
        let tweaks = ConfigTweaks {
            cgroups_path: "/b/x".into(),
            memory_limit: Some(1 << 20),
            seccomp: None,
        };
        let c = apply_tweaks(&base(), Path::new("/r"), &tweaks);
        assert_eq!(c["process"]["args"], json!(["true"]));
        assert_eq!(c["process"]["terminal"], json!(false));
        assert_eq!(c["root"]["path"], json!("/r"));
        assert_eq!(c["linux"]["cgroupsPath"], json!("/b/x"));
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], json!(1 << 20));
        assert_eq!(c["linux"]["resources"]["memory"]["swap"], json!(1 << 20));
        assert!(
            c["linux"].get("seccomp").is_none(),
            "base seccomp must be dropped"
        );
        assert_eq!(c["linux"]["resources"]["devices"], json!([]));
    }

    #[test]
    fn write_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), base().to_string()).unwrap();
        let bundle = Bundle::load(dir.path()).unwrap();
        assert_eq!(bundle.bounding_caps(), vec!["CAP_KILL", "CAP_CHOWN"]);
        let out = dir.path().join("v");
        let tweaks = ConfigTweaks {
            seccomp: Some(json!({ "defaultAction": "SCMP_ACT_ERRNO" })),
            ..ConfigTweaks::default()
        };
        bundle.write_config(&out, &tweaks).unwrap();
        let written: Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            written["linux"]["seccomp"]["defaultAction"],
            json!("SCMP_ACT_ERRNO")
        );
        assert_eq!(written["root"]["path"], json!(dir.path().join("rootfs")));
    }

    #[test]
    fn load_rejects_non_spec() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{\"process\":{}}").unwrap();
        assert!(matches!(
            Bundle::load(dir.path()),
            Err(BundleError::Shape { field: "root", .. })
        ));
    }
}
