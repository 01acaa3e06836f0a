//! The seccomp profile for the `--seccomp` variant: either an OCI `linux.seccomp` object
//! as is, or a Docker-format profile (`archMap`, per-rule `includes`/`excludes`, as in
//! Docker's default and containers-common's `/usr/share/containers/seccomp.json`)
//! resolved for this host's architecture and the bundle's capabilities, the way Docker
//! and Podman turn it into `config.json`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("read seccomp profile `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse seccomp profile `{path}`")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("seccomp profile `{path}` has no `defaultAction`")]
    NoDefaultAction { path: PathBuf },
    #[error("seccomp profile `{path}` has no `archMap` entry for `{arch}`")]
    NoArch { path: PathBuf, arch: &'static str },
}

/// The host as a Docker profile names it.
#[derive(Debug, Clone)]
pub struct Host {
    /// Go's name of the architecture (`amd64`, `arm64`).
    pub go_arch: &'static str,
    /// libseccomp's name (`SCMP_ARCH_X86_64`).
    pub scmp_arch: &'static str,
    /// Kernel release as (major, minor).
    pub kernel: (u32, u32),
    /// The container's bounding capabilities.
    pub caps: Vec<String>,
}

impl Host {
    /// This machine, with the container's bounding capabilities `caps`.
    pub fn current(caps: Vec<String>) -> Self {
        let (go_arch, scmp_arch) = match std::env::consts::ARCH {
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            _ => ("amd64", "SCMP_ARCH_X86_64"),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Self {
            go_arch,
            scmp_arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
            caps,
        }
    }
}

/// Loads `path` and returns an OCI `linux.seccomp` object for `host`.
pub fn load(path: &Path, host: &Host) -> Result<Value, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let profile: Value = serde_json::from_str(&text).map_err(|source| ProfileError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if profile.get("defaultAction").is_none() {
        return Err(ProfileError::NoDefaultAction {
            path: path.to_owned(),
        });
    }
    if profile.get("archMap").is_none() {
        return Ok(profile);
    }
    resolve_docker(&profile, host).ok_or_else(|| ProfileError::NoArch {
        path: path.to_owned(),
        arch: host.scmp_arch,
    })
}

/// Resolves a Docker-format profile; `None` when `archMap` lacks the host.
fn resolve_docker(profile: &Value, host: &Host) -> Option<Value> {
    let arch = profile["archMap"]
        .as_array()?
        .iter()
        .find(|a| a["architecture"] == host.scmp_arch)?;
    let mut architectures = vec![arch["architecture"].clone()];
    if let Some(subs) = arch["subArchitectures"].as_array() {
        architectures.extend(subs.iter().cloned());
    }
    let rules = profile["syscalls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let syscalls: Vec<Value> = rules
        .iter()
        .filter(|rule| rule_applies(rule, host))
        .map(oci_rule)
        .collect();
    let mut out = Map::new();
    out.insert("defaultAction".into(), profile["defaultAction"].clone());
    if let Some(ret) = profile.get("defaultErrnoRet") {
        out.insert("defaultErrnoRet".into(), ret.clone());
    }
    out.insert("architectures".into(), json!(architectures));
    out.insert("syscalls".into(), json!(syscalls));
    Some(Value::Object(out))
}

/// Docker's rule filter: excluded arch, any excluded cap held, or a kernel at or above
/// an excluding `minKernel` drops the rule; so does a missing included arch, any
/// included cap not held, or a kernel below an including `minKernel`.
fn rule_applies(rule: &Value, host: &Host) -> bool {
    let (inc, exc) = (&rule["includes"], &rule["excludes"]);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kernel_at_least = |v: &Value| {
        v.as_str()
            .and_then(parse_kernel)
            .map(|min| host.kernel >= min)
    };
    let exc_arches = strings(&exc["arches"]);
    let inc_arches = strings(&inc["arches"]);
    let held = |c: &String| host.caps.contains(c);
    if exc_arches.iter().any(|a| a == host.go_arch)
        || strings(&exc["caps"]).iter().any(held)
        || kernel_at_least(&exc["minKernel"]) == Some(true)
    {
        return false;
    }
    (inc_arches.is_empty() || inc_arches.iter().any(|a| a == host.go_arch))
        && strings(&inc["caps"]).iter().all(held)
        && kernel_at_least(&inc["minKernel"]) != Some(false)
}

/// A Docker rule as an OCI `LinuxSyscall` (names, action, errnoRet, args).
fn oci_rule(rule: &Value) -> Value {
    let mut out = Map::new();
    for key in ["names", "action", "errnoRet"] {
        if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
        out.insert("args".into(), json!(args));
    }
    Value::Object(out)
}

/// "6.18.0-1-amd64" -> (6, 18).
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(caps: &[&str]) -> Host {
        Host {
            go_arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 18),
            caps: caps.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn docker_profile() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [
                { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"] },
                { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": [] }
            ],
            "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {} },
                { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64"] } },
                { "names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["arm64"] } },
                { "names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_CHROOT"] } },
                { "names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                  "excludes": { "caps": ["CAP_SYS_CHROOT"] } },
                { "names": ["old"], "action": "SCMP_ACT_ALLOW", "excludes": { "minKernel": "4.8" } },
                { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{ "index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] }
            ]
        })
    }

    fn names(v: &Value) -> Vec<(String, String)> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["names"][0].as_str().unwrap().into(),
                    r["action"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    #[test]
    fn docker_rules_follow_arch_caps_and_kernel() {
        let out = resolve_docker(&docker_profile(), &host(&["CAP_KILL"])).unwrap();
        assert_eq!(
            out["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(out["defaultErrnoRet"], json!(1));
        let got = names(&out);
        let want = [
            ("read", "SCMP_ACT_ALLOW"),
            ("arch_prctl", "SCMP_ACT_ALLOW"),
            ("chroot", "SCMP_ACT_ERRNO"),
            ("personality", "SCMP_ACT_ALLOW"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        assert_eq!(got, want);
        assert!(
            out["syscalls"][0].get("args").is_none(),
            "empty args dropped"
        );
        assert_eq!(out["syscalls"][3]["args"][0]["value"], json!(8));
    }

    #[test]
    fn held_cap_switches_rule() {
        let out = resolve_docker(&docker_profile(), &host(&["CAP_SYS_CHROOT"])).unwrap();
        assert!(names(&out).contains(&("chroot".into(), "SCMP_ACT_ALLOW".into())));
        assert!(!names(&out).contains(&("chroot".into(), "SCMP_ACT_ERRNO".into())));
    }

    #[test]
    fn oci_profile_passes_through_and_missing_arch_fails() {
        let dir = tempfile::tempdir().unwrap();
        let oci = dir.path().join("oci.json");
        std::fs::write(&oci, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#).unwrap();
        let v = load(&oci, &host(&[])).unwrap();
        assert_eq!(v["defaultAction"], json!("SCMP_ACT_ALLOW"));
        let mut h = host(&[]);
        h.scmp_arch = "SCMP_ARCH_RISCV64";
        let docker = dir.path().join("docker.json");
        std::fs::write(&docker, docker_profile().to_string()).unwrap();
        assert!(matches!(
            load(&docker, &h),
            Err(ProfileError::NoArch { .. })
        ));
    }

    #[test]
    fn kernel_release_parses() {
        assert_eq!(parse_kernel("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
    }
}
