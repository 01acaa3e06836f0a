//! berth-seccomp: OCI `linux.seccomp` profiles compiled to classic BPF by berth's own
//! compiler (pure Rust, no libseccomp), loaded with `seccomp(2)`.
//!
//! It owns: profile validation, syscall name tables (x86_64, x86, x32, aarch64, arm),
//! BPF code generation with libseccomp/runc semantics, installing the filter, handing
//! a notify listener to the agent at `listenerPath`, and berth's default profile
//! (Docker's rules). It does not own no_new_privs, capabilities or the container
//! process state: the runtime sets those and calls in. Entry points: [`compile`]
//! (before fork, all errors), then [`Filter::install`] in the child right before
//! execve, then [`send_listener`] when the filter [`Filter::uses_notify`].
//! README.md explains why berth compiles its own BPF.

mod arch;
mod bpf;
mod codegen;
mod docker;
mod listener;
mod plan;
mod sys;
mod table;

#[cfg(test)]
mod compile_tests;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;

pub use listener::ListenerError;
pub use plan::ProfileError;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// Errors from compiling, installing or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The compiled program is longer than the kernel accepts.
    #[error("seccomp program of {len} instructions exceeds the kernel limit of 4096")]
    ProgramTooLong { len: usize },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed (EACCES: neither no_new_privs nor
    /// CAP_SYS_ADMIN; EINVAL: a flag this kernel does not know).
    #[error("load seccomp filter with flags {flags:#x}")]
    Load {
        flags: u32,
        #[source]
        source: std::io::Error,
    },
    /// Handing the listener to the agent failed.
    #[error(transparent)]
    Listener(#[from] ListenerError),
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<bpf::Insn>,
    flags: u32,
    notify: bool,
}

/// Compile an OCI seccomp profile. Every profile error surfaces here, before fork.
///
/// Syscall names unknown on an architecture are skipped (as runc does);
/// architectures berth has no table for are left out (they can never be the
/// running task's arch on the hosts berth builds for).
pub fn compile(p: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let plan = plan::plan(p)?;
    let program = codegen::generate(&plan);
    if program.len() > MAX_INSNS {
        return Err(SeccompError::ProgramTooLong { len: program.len() });
    }
    Ok(Filter {
        program,
        flags: plan.flags,
        notify: plan.notify,
    })
}

impl Filter {
    /// Load the filter into the calling thread (with TSYNC: all its threads). The
    /// caller must have set no_new_privs or hold CAP_SYS_ADMIN. Returns the notify
    /// listener when a rule uses `SCMP_ACT_NOTIFY`. Allocates nothing, so it is fine
    /// in a child after fork.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        sys::set_mode_filter(&self.program, self.flags, self.notify).map_err(|source| {
            SeccompError::Load {
                flags: self.flags,
                source,
            }
        })
    }

    /// Whether a rule uses `SCMP_ACT_NOTIFY` (so [`Filter::install`] returns a listener).
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never, for a compiled filter).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// `SECCOMP_FILTER_FLAG_*` bits passed to the kernel.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The program as the kernel's `struct sock_filter` array in native byte order
    /// (what `seccomp_export_bpf` writes), for inspection and comparisons.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.program.len() * 8);
        for i in &self.program {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }
}

/// Send the listener fd to `path` (a unix stream socket) with SCM_RIGHTS, together
/// with the runtime-spec "container process state" JSON (ociVersion, fds
/// `["seccompFd"]`, pid, metadata, state), e.g. a serialized
/// `oci_spec::runtime::ContainerProcessState`.
///
/// `listenerPath` is a host path, so call this from a process in the host's mount
/// namespace (runc: the container's init passes the fd to the runtime over its sync
/// socket right after [`Filter::install`], and the runtime sends it on). Called in
/// the container after pivot_root, the path would resolve inside the container, and
/// the connect and sendmsg would themselves be subject to the new filter.
pub fn send_listener(
    path: &Path,
    listener: BorrowedFd<'_>,
    process_state_json: &[u8],
) -> Result<(), SeccompError> {
    Ok(listener::send(path, listener, process_state_json)?)
}

/// Docker's default profile as OCI `LinuxSeccomp`, with its capability- and
/// arch-conditional parts resolved for `caps` (names like `CAP_SYS_ADMIN` or
/// `SYS_ADMIN`, or `ALL`) and this machine's architecture.
pub fn docker_default(caps: &[String]) -> LinuxSeccomp {
    docker::docker_default(caps)
}

/// The `linux.seccomp` object of `berth-runtime features` (runtime-spec
/// features.md): actions, operators, archs and flags berth knows, and the flags this
/// kernel supports.
pub fn features() -> serde_json::Value {
    let archs: Vec<&str> = arch::Abi::ALL.iter().map(|a| a.oci_name()).collect();
    let known: Vec<&str> = plan::FLAGS.iter().map(|f| f.2).collect();
    let supported: Vec<&str> = plan::FLAGS
        .iter()
        .filter(|f| {
            // WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER.
            let probe = if f.2.ends_with("WAIT_KILLABLE_RECV") {
                f.1 | plan::FLAG_NEW_LISTENER
            } else {
                f.1
            };
            sys::flags_supported(probe)
        })
        .map(|f| f.2)
        .collect();
    serde_json::json!({
        "enabled": true,
        "actions": plan::action_names().collect::<Vec<_>>(),
        "operators": plan::OPERATORS.iter().map(|o| o.1).collect::<Vec<_>>(),
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}
