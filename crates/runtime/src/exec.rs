//! `exec`: a new process inside a running container — every namespace of its init, its
//! cgroup, and the process's own user, capabilities, rlimits and seccomp.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use crate::container::{ChildEnv, ContainerError, serve_child};
use crate::init::{self, InitCtx};
use crate::namespace::NsPlan;
use crate::process;
use crate::state::{self, StateRoot, Status};
use crate::sync::{self, Msg};
use crate::{console, spec, sys};

/// Flags of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// A started exec'd process: its pid (our child if we are its subreaper) and its pty.
#[derive(Debug)]
pub struct Execed {
    pub pid: i32,
    pub console: Option<OwnedFd>,
}

/// Starts `opts.process` in container `id`.
pub fn exec(root: &StateRoot, id: &str, opts: &ExecOptions) -> Result<Execed, ContainerError> {
    let saved = root.load(id)?;
    let status = state::status_of(root, &saved);
    if status != Status::Running && status != Status::Created {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what: "cannot exec in a container that is not running",
        });
    }
    let plan = spec::load_bundle(&saved.bundle)?;
    let prepared = process::prepare(&opts.process)?;
    let ns = NsPlan::of_process(saved.pid)?;
    let seccomp = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(berth_seccomp::compile)
        .transpose()?;
    let terminal = opts.process.terminal().unwrap_or(false);
    let ctx = InitCtx {
        spec: &plan.spec,
        rootfs: &plan.rootfs,
        ns: &ns,
        prepared: &prepared,
        fifo: None,
        no_pivot: false,
        new_keyring: false,
        preserve_fds: opts.preserve_fds,
        terminal,
        console_size: opts.process.console_size().map(|b| {
            (
                u16::try_from(b.height()).unwrap_or(24),
                u16::try_from(b.width()).unwrap_or(80),
            )
        }),
        seccomp: seccomp.as_ref(),
        user_ns: saved.user_ns,
        cgroup_mounts: Vec::new(),
        cgroup: &saved.cgroup,
    };
    let (parent, child) = sync::pair().map_err(|source| ContainerError::Io {
        op: "socketpair".into(),
        source,
    })?;
    let (stage1, parent) =
        init::fork_stage1(&ctx, parent, child).map_err(|source| ContainerError::Io {
            op: "fork".into(),
            source,
        })?;
    let result = (|| -> Result<i32, ContainerError> {
        parent.wait_for(&Msg::Joined { map: false }, "joined")?;
        parent.send(&Msg::Go)?;
        Ok(parent.recv_pid("exec pid")?)
    })();
    let _ = sys::waitpid(stage1, 0);
    let pid = result?;
    let env = ChildEnv {
        id,
        bundle: &saved.bundle,
        annotations: saved.annotations.clone(),
        hooks: None,
        seccomp: plan
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref()),
    };
    let master = serve_child(&parent, pid, &env)?;
    let master = match (&opts.console_socket, master) {
        (Some(path), Some(m)) => {
            console::send_to_socket(path, std::os::fd::AsFd::as_fd(&m))?;
            None
        }
        (_, m) => m,
    };
    if let Some(p) = &opts.pid_file {
        std::fs::write(p, pid.to_string()).map_err(|source| ContainerError::Io {
            op: format!("write `{}`", p.display()),
            source,
        })?;
    }
    Ok(Execed {
        pid,
        console: master,
    })
}
