//! berth's default profile: Docker's default seccomp rules (profiles/docker-default.json,
//! embedded), resolved for the native architecture and a capability set the way
//! Docker resolves them, so `--cap-add SYS_ADMIN` and friends behave the same.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

/// The profile data, in berth's layout (see its `_comment`).
const DOCKER_DEFAULT_JSON: &str = include_str!("../profiles/docker-default.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    /// Rust `target_arch` name -> the OCI architectures its containers may use.
    arch_groups: BTreeMap<String, Vec<Arch>>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    action: LinuxSeccompAction,
    names: Vec<String>,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    /// Kept only when every one of these capabilities is held.
    #[serde(default)]
    require_caps: Vec<String>,
    /// Dropped when any of these capabilities is held.
    #[serde(default)]
    forbid_caps: Vec<String>,
    /// Kept only on these native architectures.
    #[serde(default)]
    only_arches: Vec<String>,
    /// Dropped on these native architectures.
    #[serde(default)]
    except_arches: Vec<String>,
}

impl Rule {
    fn applies(&self, arch: &str, caps: &CapSet) -> bool {
        (self.only_arches.is_empty() || self.only_arches.iter().any(|a| a == arch))
            && !self.except_arches.iter().any(|a| a == arch)
            && self.require_caps.iter().all(|c| caps.has(c))
            && !self.forbid_caps.iter().any(|c| caps.has(c))
    }
}

/// Capability names as callers give them: `CAP_SYS_ADMIN`, `SYS_ADMIN`, any case, or
/// `ALL`.
struct CapSet {
    all: bool,
    names: Vec<String>,
}

impl CapSet {
    fn new(caps: &[String]) -> CapSet {
        let names: Vec<String> = caps
            .iter()
            .map(|c| {
                let c = c.trim().to_ascii_uppercase();
                if c.starts_with("CAP_") || c == "ALL" {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        CapSet {
            all: names.iter().any(|c| c == "ALL"),
            names,
        }
    }

    fn has(&self, cap: &str) -> bool {
        self.all || self.names.iter().any(|c| c == cap)
    }
}

/// Docker's default profile for a container holding `caps`, on this machine.
pub(crate) fn docker_default(caps: &[String]) -> LinuxSeccomp {
    docker_default_for(std::env::consts::ARCH, caps)
}

fn docker_default_for(arch: &str, caps: &[String]) -> LinuxSeccomp {
    let profile: Profile = serde_json::from_str(DOCKER_DEFAULT_JSON)
        .expect("embedded docker-default.json parses (checked by unit tests)");
    let caps = CapSet::new(caps);
    let syscalls: Vec<LinuxSyscall> = profile
        .rules
        .into_iter()
        .filter(|r| r.applies(arch, &caps))
        .map(|r| {
            let mut b = LinuxSyscallBuilder::default()
                .names(r.names)
                .action(r.action);
            if let Some(e) = r.errno_ret {
                b = b.errno_ret(e);
            }
            if !r.args.is_empty() {
                b = b.args(r.args);
            }
            b.build().expect("all LinuxSyscall fields have defaults")
        })
        .collect();
    let mut b = LinuxSeccompBuilder::default()
        .default_action(profile.default_action)
        .syscalls(syscalls);
    if let Some(e) = profile.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if let Some(archs) = profile.arch_groups.get(arch) {
        b = b.architectures(archs.clone());
    }
    b.build().expect("all LinuxSeccomp fields have defaults")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_for(p: &LinuxSeccomp, action: LinuxSeccompAction) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == action)
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_resolves_for_x86_64() {
        let p = docker_default_for("x86_64", &[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let allowed = names_for(&p, LinuxSeccompAction::ScmpActAllow);
        for name in ["read", "execve", "arch_prctl", "modify_ldt", "personality"] {
            assert!(allowed.iter().any(|n| n == name), "{name} not allowed");
        }
        for name in ["unshare", "mount", "keyctl", "set_tls", "reboot", "setns"] {
            assert!(!allowed.iter().any(|n| n == name), "{name} allowed");
        }
        // Without CAP_SYS_ADMIN: clone only without namespace flags, clone3 ENOSYS.
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone"])
            .expect("clone rule");
        assert!(clone.args().is_some());
        let errno = names_for(&p, LinuxSeccompAction::ScmpActErrno);
        assert_eq!(errno, ["clone3"]);
    }

    #[test]
    fn capabilities_switch_rules_like_docker() {
        let p = docker_default_for("x86_64", &["sys_admin".into(), "CAP_SYS_PTRACE".into()]);
        let allowed = names_for(&p, LinuxSeccompAction::ScmpActAllow);
        for name in ["unshare", "mount", "setns", "clone3", "kcmp", "pidfd_getfd"] {
            assert!(allowed.iter().any(|n| n == name), "{name} not allowed");
        }
        assert!(names_for(&p, LinuxSeccompAction::ScmpActErrno).is_empty());
        let all = docker_default_for("x86_64", &["ALL".into()]);
        let allowed = names_for(&all, LinuxSeccompAction::ScmpActAllow);
        assert!(allowed.iter().any(|n| n == "reboot"));
    }

    #[test]
    fn arch_conditions_follow_the_native_arch() {
        let arm = docker_default_for("aarch64", &[]);
        let allowed = names_for(&arm, LinuxSeccompAction::ScmpActAllow);
        assert!(allowed.iter().any(|n| n == "set_tls"));
        assert!(!allowed.iter().any(|n| n == "arch_prctl"));
        let s390 = docker_default_for("s390x", &[]);
        let clone_arg = s390
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone"])
            .and_then(|s| s.args().clone())
            .expect("clone rule with args");
        assert_eq!(clone_arg[0].index(), 1);
    }
}
