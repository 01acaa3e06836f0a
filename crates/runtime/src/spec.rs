//! config.json → a validated [`Plan`]: every error in the bundle surfaces here, before the
//! first mkdir, cgroup or fork.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Why a bundle could not be turned into a plan.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parse `{path}`: field `{field}`: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("config.json: `{field}` is required")]
    Missing { field: &'static str },
    #[error("config.json: `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "rootfs `{path}` does not exist or is not a directory; check `root.path` in config.json"
    )]
    NoRootfs { path: PathBuf },
}

/// A bundle that has been read and checked. Everything later stages need comes from here.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Spec,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
}

/// Reads `<bundle>/config.json` and validates it.
pub fn load_bundle(bundle: &Path) -> Result<Plan, SpecError> {
    let bundle = fs::canonicalize(bundle).map_err(|source| SpecError::Read {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = bundle.join("config.json");
    let text = fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let spec = parse_spec(&path, &text)?;
    plan_from_spec(spec, bundle)
}

/// Parses config.json text, naming the offending field on error.
pub fn parse_spec(path: &Path, text: &[u8]) -> Result<Spec, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| SpecError::Parse {
        path: path.to_path_buf(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Validates a parsed spec against a bundle directory.
pub fn plan_from_spec(spec: Spec, bundle: PathBuf) -> Result<Plan, SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or(SpecError::Missing { field: "root" })?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(SpecError::NoRootfs { path: rootfs });
    }
    let rootfs = fs::canonicalize(&rootfs).map_err(|source| SpecError::Read {
        path: rootfs.clone(),
        source,
    })?;
    let process = spec
        .process()
        .as_ref()
        .ok_or(SpecError::Missing { field: "process" })?;
    if process.args().as_ref().is_none_or(Vec::is_empty) {
        return Err(SpecError::Missing {
            field: "process.args",
        });
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    validate_linux(&spec)?;
    validate_mounts(&spec)?;
    Ok(Plan {
        spec,
        bundle,
        rootfs,
    })
}

fn invalid(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn validate_linux(spec: &Spec) -> Result<(), SpecError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = Vec::new();
    for ns in &namespaces {
        if seen.contains(&ns.typ()) {
            return Err(invalid(
                "linux.namespaces",
                format!("namespace `{}` listed twice", ns.typ()),
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path()
            && !p.is_absolute()
        {
            return Err(invalid(
                "linux.namespaces.path",
                format!("`{}` must be absolute", p.display()),
            ));
        }
    }
    let has_new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_new_user && !has_maps {
        return Err(invalid(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if !has_new_user && has_maps {
        return Err(invalid(
            "linux.uidMappings",
            "mappings are given but no new user namespace is requested",
        ));
    }
    let has_uts = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts);
    if spec.hostname().is_some() && !has_uts {
        return Err(invalid(
            "hostname",
            "setting a hostname needs a uts namespace",
        ));
    }
    let has_time = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none());
    if linux.time_offsets().is_some() && !has_time {
        return Err(invalid(
            "linux.timeOffsets",
            "time offsets need a new time namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            if key.contains('/') || key.contains("..") || key.is_empty() {
                return Err(invalid("linux.sysctl", format!("bad key `{key}`")));
            }
        }
    }
    Ok(())
}

fn validate_mounts(spec: &Spec) -> Result<(), SpecError> {
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                "mounts.destination",
                format!("`{}` must be absolute", m.destination().display()),
            ));
        }
    }
    Ok(())
}

/// Container ids: what runc accepts — letters, digits, `_`, `+`, `-`, `.`, not `.`/`..`,
/// no `/`, so an id can never name a path outside the state root.
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "container id",
            format!("`{id}` is invalid: use letters, digits, `_`, `+`, `-` and `.` only"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_the_field() {
        let text = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}}"#;
        let err = parse_spec(Path::new("config.json"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("process.user.uid"), "{msg}");
    }

    #[test]
    fn malformed_json_is_reported() {
        let err = parse_spec(Path::new("c.json"), b"{\"ociVersion\": ").unwrap_err();
        assert!(err.to_string().starts_with("parse `c.json`"));
    }

    #[test]
    fn ids_that_name_paths_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0y"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a.b-c_d+e", "0123"] {
            assert!(validate_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn missing_rootfs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"nope"},"process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap();
        let err = plan_from_spec(spec, dir.path().to_path_buf()).unwrap_err();
        assert!(matches!(err, SpecError::NoRootfs { .. }), "{err}");
    }
}
