//! The container lifecycle: create, start, state, kill, delete, pause, resume, update,
//! processes and stats. Each public function is one runtime command.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cgroups::Cgroup;
use oci_spec::runtime::LinuxResources;

use crate::init::{self, InitCtx};
use crate::namespace::{self, NamespaceError, NsPlan};
use crate::process::{self, ProcessError};
use crate::spec::{self, SpecError};
use crate::state::{self, Saved, StateDoc, StateError, StateRoot, Status};
use crate::sync::{self, Channel, Msg, SyncError};
use crate::{console, hooks, signal, sys};

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] berth_cgroups::CgroupError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] berth_seccomp::SeccompError),
    #[error("container init: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error("{op}: {source}")]
    Io { op: String, source: io::Error },
    #[error("container `{id}` is {status}; {what}")]
    WrongState {
        id: String,
        status: Status,
        what: &'static str,
    },
    #[error("the runtime must be single-threaded to fork a container (it has {0} threads)")]
    Threads(usize),
    #[error(transparent)]
    Signal(#[from] signal::SignalError),
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Io { op, source }
}

/// Flags of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The spec, already parsed by a caller that just wrote it to `<bundle>/config.json`
    /// (the engine): saves reading and parsing it again. It must be what the file holds —
    /// hooks and other tools read the file.
    pub spec: Option<oci_spec::runtime::Spec>,
}

/// What `create` hands back: the init's pid and, for a terminal without a console socket,
/// the pty master for the caller to serve.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    pub console: Option<OwnedFd>,
}

/// `create`: sets the container up and leaves its init waiting for `start`.
pub fn create(root: &StateRoot, opts: &CreateOptions) -> Result<Created, ContainerError> {
    spec::validate_id(&opts.id)?;
    let plan = match &opts.spec {
        Some(s) => {
            let bundle = std::fs::canonicalize(&opts.bundle).map_err(|source| SpecError::Read {
                path: opts.bundle.clone(),
                source,
            })?;
            spec::plan_from_spec(s.clone(), bundle)?
        }
        None => spec::load_bundle(&opts.bundle)?,
    };
    check_single_threaded()?;
    let linux = plan.spec.linux().as_ref();
    let proc = plan
        .spec
        .process()
        .as_ref()
        .ok_or(SpecError::Missing { field: "process" })?;
    let prepared = process::prepare(proc)?;
    let ns = NsPlan::from_linux(linux)?;
    let seccomp = linux
        .and_then(|l| l.seccomp().as_ref())
        .map(berth_seccomp::compile)
        .transpose()?;
    crate::trace::mark("runtime: bundle loaded");
    let hierarchy = berth_cgroups::detect()?;
    let cgroups_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = Cgroup::new(&hierarchy, cgroups_path.as_deref(), &opts.id)?;
    let resources = linux.map(effective_resources);
    if let Some(r) = &resources {
        berth_cgroups::validate(r, &hierarchy)?;
    }
    if proc.terminal().unwrap_or(false)
        && opts.console_socket.is_none()
        && !console_allowed_without_socket()
    {
        return Err(ContainerError::Io {
            op: "process.terminal needs --console-socket".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    // From here on the host changes: the guard undoes everything if a later step fails.
    let dir = root.create_dir(&opts.id)?;
    let mut guard = CreateGuard {
        root,
        id: &opts.id,
        cgroup: &cgroup,
        pid: None,
        armed: true,
    };
    // Recorded before anything else is made, so a create that crashes from here on
    // leaves a record `delete` can clean up (cgroup included).
    let me = std::process::id().cast_signed();
    let mut saved = Saved {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        creator: Some((me, sys::process_start_time(me).map_or(0, |(s, _)| s))),
        bundle: plan.bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: state::owner_name(),
        annotations: plan.spec.annotations().clone().unwrap_or_default(),
        cgroup: cgroup.clone(),
        user_ns: ns.creates(libc::CLONE_NEWUSER) || ns.joins(libc::CLONE_NEWUSER),
        resources: resources.clone(),
        hooks: plan.spec.hooks().clone(),
    };
    root.save(&saved)?;
    crate::trace::mark("runtime: state saved");
    cgroup.create()?;
    if let Some(r) = &resources {
        cgroup.apply(r)?;
    }
    crate::trace::mark("runtime: cgroup made");
    let fifo = dir.join(state::FIFO);
    sys::mkfifo(&fifo, 0o600).map_err(io_err(format!("mkfifo `{}`", fifo.display())))?;
    // Writable by the container's user, whoever it is (the umask trimmed mkfifo's mode).
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(io_err(format!("chmod `{}`", fifo.display())))?;
    if let Some((uid, gid)) = linux.and_then(namespace::host_root_ids) {
        // The init, root of its own user namespace, must be able to open the fifo.
        std::os::unix::fs::chown(&fifo, Some(uid), Some(gid))
            .map_err(io_err(format!("chown `{}`", fifo.display())))?;
    }
    let user_ns = saved.user_ns;
    let ctx = InitCtx {
        spec: &plan.spec,
        rootfs: &plan.rootfs,
        ns: &ns,
        prepared: &prepared,
        fifo: Some(&fifo),
        no_pivot: opts.no_pivot,
        new_keyring: !opts.no_new_keyring,
        preserve_fds: opts.preserve_fds,
        terminal: proc.terminal().unwrap_or(false),
        console_size: proc
            .console_size()
            .map(|b| (clamp_u16(b.height()), clamp_u16(b.width()))),
        seccomp: seccomp.as_ref(),
        user_ns,
        cgroup_mounts: cgroup.container_mounts(),
        cgroup: &cgroup,
    };
    let env = ChildEnv {
        id: &opts.id,
        bundle: &plan.bundle,
        annotations: plan.spec.annotations().clone().unwrap_or_default(),
        hooks: plan.spec.hooks().as_ref(),
        seccomp: linux.and_then(|l| l.seccomp().as_ref()),
    };
    let (pid, console) = spawn(&ctx, linux, &mut guard, &env)?;
    crate::trace::mark("runtime: init ready");
    if let Some(adj) = proc.oom_score_adj() {
        write_oom_score_adj(pid, adj)?;
    }
    let console = match (&opts.console_socket, console) {
        (Some(path), Some(master)) => {
            console::send_to_socket(path, master.as_fd())?;
            None
        }
        (_, c) => c,
    };
    saved.pid = pid;
    saved.pid_start = sys::process_start_time(pid).map_or(0, |(s, _)| s);
    saved.creator = None;
    root.save(&saved)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    guard.armed = false;
    Ok(Created { pid, console })
}

/// config.json's resources plus, as runc does, the device rules every container needs
/// (the standard /dev nodes, after the config's own rules so a deny-all does not hide
/// them) and read-write-mknod access to each of `linux.devices`.
fn effective_resources(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    let mut r = linux.resources().clone().unwrap_or_default();
    let mut devices = r.devices().clone().unwrap_or_default();
    devices.extend(berth_cgroups::default_allowed_devices());
    for d in linux.devices().iter().flatten() {
        devices.push(d.into());
    }
    r.set_devices(Some(devices));
    r
}

/// Whether a terminal may be served by the caller itself (`run` in the foreground).
fn console_allowed_without_socket() -> bool {
    true
}

fn clamp_u16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Forks stage-1, answers its requests, and returns the init's pid once it is `Ready`.
fn spawn(
    ctx: &InitCtx<'_>,
    linux: Option<&oci_spec::runtime::Linux>,
    guard: &mut CreateGuard<'_>,
    env: &ChildEnv<'_>,
) -> Result<(i32, Option<OwnedFd>), ContainerError> {
    let (parent, child) = sync::pair().map_err(io_err("socketpair"))?;
    let (stage1, parent) = init::fork_stage1(ctx, parent, child).map_err(io_err("fork"))?;
    let result = drive_stage1(&parent, stage1, linux);
    // Stage-1 exits right after reporting the init's pid (or failing); reap it.
    let _ = sys::waitpid(stage1, 0);
    let init_pid = result?;
    guard.pid = Some(init_pid);
    let console = serve_child(&parent, init_pid, env)?;
    Ok((init_pid, console))
}

/// What the runtime needs to answer a child's requests: hooks and the state they see.
pub(crate) struct ChildEnv<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub annotations: std::collections::HashMap<String, String>,
    pub hooks: Option<&'a oci_spec::runtime::Hooks>,
    pub seccomp: Option<&'a oci_spec::runtime::LinuxSeccomp>,
}

impl ChildEnv<'_> {
    fn state(&self, pid: i32, status: &str) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "status": status,
            "pid": pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        })
    }
}

/// Answers the init (or exec'd process) until it is `Ready`: runs prestart and
/// createRuntime hooks, hands a seccomp listener to its agent, keeps the pty master.
pub(crate) fn serve_child(
    chan: &Channel,
    pid: i32,
    env: &ChildEnv<'_>,
) -> Result<Option<OwnedFd>, ContainerError> {
    let mut console = None;
    loop {
        let (msg, fd) = chan.recv("ready")?;
        match msg {
            Msg::Ready => return Ok(console),
            Msg::Console => console = fd,
            Msg::Hooks => {
                let state = env.state(pid, "creating").to_string();
                if let Some(h) = env.hooks {
                    hooks::run_all("prestart", h.prestart().as_ref(), state.as_bytes())?;
                    hooks::run_all(
                        "createRuntime",
                        h.create_runtime().as_ref(),
                        state.as_bytes(),
                    )?;
                }
                chan.send(&Msg::HooksDone(state))?;
            }
            Msg::SeccompListener => {
                let (Some(fd), Some(sc)) = (fd, env.seccomp) else {
                    continue;
                };
                let Some(path) = sc.listener_path() else {
                    continue;
                };
                let body = serde_json::json!({
                    "ociVersion": "1.2.0",
                    "fds": ["seccompFd"],
                    "pid": pid,
                    "metadata": sc.listener_metadata().clone().unwrap_or_default(),
                    "state": env.state(pid, "creating"),
                });
                berth_seccomp::send_listener(path, fd.as_fd(), body.to_string().as_bytes())?;
            }
            other => {
                return Err(SyncError::Unexpected {
                    expected: "ready",
                    got: format!("{other:?}"),
                }
                .into());
            }
        }
    }
}

fn drive_stage1(
    chan: &Channel,
    stage1: i32,
    linux: Option<&oci_spec::runtime::Linux>,
) -> Result<i32, ContainerError> {
    let (msg, _) = chan.recv("joined")?;
    let Msg::Joined { map } = msg else {
        return Err(SyncError::Unexpected {
            expected: "joined",
            got: format!("{msg:?}"),
        }
        .into());
    };
    if map && let Some(linux) = linux {
        namespace::write_id_maps(stage1, linux)?;
    }
    chan.send(&Msg::Go)?;
    Ok(chan.recv_pid("init pid")?)
}

/// Undoes a half-made container: kills its init, removes its cgroup and state directory.
struct CreateGuard<'a> {
    root: &'a StateRoot,
    id: &'a str,
    cgroup: &'a Cgroup,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        let _ = kill_cgroup_and_wait(self.cgroup);
        let _ = self.cgroup.destroy();
        let _ = self.root.remove(self.id);
    }
}

fn write_oom_score_adj(pid: i32, adj: i32) -> Result<(), ContainerError> {
    // Written from the host's procfs by the runtime, never through the container's /proc.
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, adj.to_string()).map_err(io_err(format!("write `{path}`")))
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("tmp-berth");
    std::fs::write(&tmp, pid.to_string()).map_err(io_err(format!("write `{}`", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("rename to `{}`", path.display())))
}

fn check_single_threaded() -> Result<(), ContainerError> {
    match sys::thread_count() {
        Ok(n) if n > 1 => Err(ContainerError::Threads(n)),
        _ => Ok(()),
    }
}

/// Loads a container and checks that its status allows the operation.
fn require(
    root: &StateRoot,
    id: &str,
    allowed: impl Fn(Status) -> bool,
    what: &'static str,
) -> Result<Saved, ContainerError> {
    let saved = root.load(id)?;
    let status = state::status_of(root, &saved);
    if allowed(status) {
        Ok(saved)
    } else {
        Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what,
        })
    }
}

/// `start`: lets a created container's init exec its program.
pub fn start(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let saved = require(
        root,
        id,
        |s| s == Status::Created,
        "only a created container can be started",
    )?;
    let fifo = root.dir(id).join(state::FIFO);
    let stopped = || ContainerError::WrongState {
        id: id.into(),
        status: Status::Stopped,
        what: "its init exited before start",
    };
    // Take hold of the init first: once the fifo is open it may exec, exit and be reaped
    // by its parent before we look.
    let pidfd = sys::pidfd_open(saved.pid).map_err(|_| stopped())?;
    // Non-blocking open: if the init died meanwhile we must not hang.
    let fd = sys::open(&fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0)
        .map_err(io_err(format!("open `{}`", fifo.display())))?;
    let mut buf = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a valid stack buffer from an fd we own.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                buf.as_mut_ptr().cast(),
                1,
            )
        };
        if n == 1 {
            break;
        }
        if sys::poll_readable(pidfd.as_fd(), 0).unwrap_or(false) {
            return Err(stopped());
        }
        let _ = sys::poll_readable(fd.as_fd(), 10);
    }
    let _ = std::fs::remove_file(&fifo);
    if let Some(h) = saved.hooks.as_ref() {
        hooks::run_poststart(h, &state_json(root, &saved));
    }
    Ok(())
}

/// `state`: the runtime-spec state of one container.
pub fn state(root: &StateRoot, id: &str) -> Result<serde_json::Value, ContainerError> {
    let saved = root.load(id)?;
    Ok(state_value(root, &saved))
}

fn state_value(root: &StateRoot, s: &Saved) -> serde_json::Value {
    let status = state::status_of(root, s);
    let doc = StateDoc {
        oci_version: "1.2.0",
        id: &s.id,
        pid: if status == Status::Stopped { 0 } else { s.pid },
        status,
        bundle: &s.bundle,
        rootfs: &s.rootfs,
        created: &s.created,
        owner: &s.owner,
        annotations: &s.annotations,
    };
    serde_json::to_value(doc).unwrap_or_default()
}

pub(crate) fn state_json(root: &StateRoot, s: &Saved) -> Vec<u8> {
    serde_json::to_vec(&state_value(root, s)).unwrap_or_default()
}

/// `list`: the state of every container under the root.
pub fn list(root: &StateRoot) -> Vec<serde_json::Value> {
    root.ids()
        .iter()
        .filter_map(|id| root.load(id).ok())
        .map(|s| state_value(root, &s))
        .collect()
}

/// `kill`: sends a signal to the init, or with `all` to every process of the container.
pub fn kill(root: &StateRoot, id: &str, sig: &str, all: bool) -> Result<(), ContainerError> {
    let signo = signal::parse(sig)?;
    let saved = require(
        root,
        id,
        |s| s != Status::Stopped,
        "there is no process to signal",
    )?;
    if all {
        for pid in saved.cgroup.pids()? {
            let _ = sys::kill(pid, signo);
        }
        return Ok(());
    }
    let pidfd = sys::pidfd_open(saved.pid).map_err(io_err(format!("open pid {}", saved.pid)))?;
    sys::pidfd_send_signal(pidfd.as_fd(), signo)
        .map_err(io_err(format!("signal pid {}", saved.pid)))
}

/// `delete`: removes a stopped container; with `force`, kills it first in any state.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), ContainerError> {
    let saved = match root.load(id) {
        Ok(s) => s,
        // A directory without state.json is a create that crashed half-way: remove it.
        Err(StateError::NotFound(_))
            if force && root.dir(id).is_dir() && spec::validate_id(id).is_ok() =>
        {
            return Ok(root.remove(id)?);
        }
        Err(e) => return Err(e.into()),
    };
    let status = state::status_of(root, &saved);
    if status != Status::Stopped && !force {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what: "stop it first or use `delete --force`",
        });
    }
    if status == Status::Paused {
        let _ = saved.cgroup.thaw();
    }
    if state::init_alive(&saved) {
        let _ = sys::kill(saved.pid, libc::SIGKILL);
    }
    kill_cgroup_and_wait(&saved.cgroup)?;
    saved.cgroup.destroy()?;
    root.remove(id)?;
    if let Some(h) = saved.hooks.as_ref() {
        let mut stopped = state_value(root, &saved);
        stopped["status"] = "stopped".into();
        hooks::run_poststop(h, &serde_json::to_vec(&stopped).unwrap_or_default());
    }
    Ok(())
}

/// SIGKILLs every process in the cgroup and waits (bounded) until it is empty.
fn kill_cgroup_and_wait(cgroup: &Cgroup) -> Result<(), ContainerError> {
    if !cgroup.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = cgroup.pids().unwrap_or_default();
        if pids.is_empty() {
            return Ok(());
        }
        if cgroup.is_frozen().unwrap_or(false) {
            let _ = cgroup.thaw();
        }
        for pid in pids {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        if Instant::now() > deadline {
            return Err(ContainerError::Io {
                op: "wait for container processes to exit".into(),
                source: io::Error::from_raw_os_error(libc::ETIMEDOUT),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `pause` and `resume`, through the freezer.
pub fn pause(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let saved = require(
        root,
        id,
        |s| matches!(s, Status::Running | Status::Created),
        "only a running container can be paused",
    )?;
    Ok(saved.cgroup.freeze()?)
}

pub fn resume(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let saved = require(
        root,
        id,
        |s| s == Status::Paused,
        "only a paused container can be resumed",
    )?;
    Ok(saved.cgroup.thaw()?)
}

/// `ps`: pids of every process in the container.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, ContainerError> {
    let saved = root.load(id)?;
    Ok(saved.cgroup.pids()?)
}

/// `update`: applies new resources to a live container and remembers them.
pub fn update(root: &StateRoot, id: &str, r: &LinuxResources) -> Result<(), ContainerError> {
    let mut saved = require(
        root,
        id,
        |s| s != Status::Stopped,
        "a stopped container cannot be updated",
    )?;
    let hierarchy = berth_cgroups::detect()?;
    berth_cgroups::validate(r, &hierarchy)?;
    saved.cgroup.apply(r)?;
    saved.resources = Some(r.clone());
    root.save(&saved)?;
    Ok(())
}

/// `events --stats`: one stats sample, in runc's JSON shape.
pub fn stats(root: &StateRoot, id: &str) -> Result<serde_json::Value, ContainerError> {
    let saved = require(
        root,
        id,
        |s| s != Status::Stopped,
        "a stopped container has no stats",
    )?;
    let stats = saved.cgroup.stats()?;
    Ok(serde_json::json!({"type": "stats", "id": id, "data": stats}))
}

/// The OOM-kill counter of the container's memory cgroup (for `events`).
pub fn oom_kills(root: &StateRoot, id: &str) -> Result<u64, ContainerError> {
    let saved = root.load(id)?;
    Ok(saved.cgroup.oom_kill_count()?)
}

/// The current status of a container.
pub fn status(root: &StateRoot, id: &str) -> Result<Status, ContainerError> {
    let saved = root.load(id)?;
    Ok(state::status_of(root, &saved))
}

/// The saved record of a container (for exec and the CLI).
pub fn load(root: &StateRoot, id: &str) -> Result<Saved, ContainerError> {
    Ok(root.load(id)?)
}
