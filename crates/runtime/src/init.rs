//! The forked side of create and exec, as two short lists of steps.
//!
//! Process model: the runtime (parent) forks **stage-1**, which joins the namespaces given
//! by path, makes a new user namespace and asks the parent to write its id maps, then
//! unshares the remaining new namespaces and forks the **init** (pid 1 of a new pid
//! namespace), reports its pid and exits. The init sets up the rootfs, pivots, reports
//! `Ready`, blocks on `exec.fifo` until `start`, then drops privileges and execs.
//! For `exec` the same stage-1 joins the container's namespaces and the last process
//! skips the rootfs steps.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::namespace::{self, NsPlan};
use crate::process::{self, Prepared};
use crate::sync::{Channel, Msg};
use crate::{console, rootfs, sys};

/// What the forked processes need, all resolved before the first fork.
pub(crate) struct InitCtx<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub ns: &'a NsPlan,
    pub prepared: &'a Prepared,
    /// Some for a container's init (waits on the fifo); None for exec.
    pub fifo: Option<&'a Path>,
    pub no_pivot: bool,
    /// Join a new anonymous session keyring, so the container does not share the
    /// caller's (runc's default; `--no-new-keyring` turns it off).
    pub new_keyring: bool,
    pub preserve_fds: u32,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub seccomp: Option<&'a berth_seccomp::Filter>,
    /// Whether the container runs in a user namespace (created or joined).
    pub user_ns: bool,
    /// What a `type: cgroup` mount in config.json makes on this host.
    pub cgroup_mounts: Vec<berth_cgroups::CgroupMount>,
    /// The cgroup stage-1 moves itself into, first thing (the container's, also for exec).
    pub cgroup: &'a berth_cgroups::Cgroup,
}

/// Forks stage-1 (which never returns) and gives back its pid and our end of the sync
/// socket (`parent`; stage-1 keeps only `child`). Stage-1 is born in the container's v2 cgroup when
/// the kernel can do that (clone3 `CLONE_INTO_CGROUP`, Linux 5.7+) and moves itself into
/// the other hierarchies (see [`berth_cgroups::Cgroup::join_self`]): no process has to
/// write its pid into a `cgroup.procs`, which costs a 5-15 ms RCU grace period.
pub(crate) fn fork_stage1(
    ctx: &InitCtx<'_>,
    parent: Channel,
    child: Channel,
) -> std::io::Result<(i32, Channel)> {
    let unified = ctx
        .cgroup
        .unified_path()
        .and_then(|p| sys::open_path_dir(p).ok());
    // On an older kernel, or where the kernel will not place us there: fork and join.
    let forked = unified
        .as_ref()
        .and_then(|dir| sys::fork_into_cgroup(dir.as_fd()).ok());
    let in_unified = forked.is_some();
    let forked = match forked {
        Some(f) => f,
        None => sys::fork()?,
    };
    match forked {
        sys::Forked::Child => {
            drop(parent);
            drop(unified);
            stage1(ctx, &child, in_unified)
        }
        sys::Forked::Parent(pid) => {
            drop(child);
            Ok((pid, parent))
        }
    }
}

/// Runs a forked stage to completion: on error, tells the parent and exits non-zero.
fn run_stage(chan: &Channel, f: impl FnOnce() -> Result<(), String>) -> ! {
    match f() {
        Ok(()) => sys::exit_now(0),
        Err(why) => {
            let _ = chan.send(&Msg::Failed(why));
            sys::exit_now(1)
        }
    }
}

/// Stage-1, in the first forked child. Never returns.
fn stage1(ctx: &InitCtx<'_>, chan: &Channel, in_unified: bool) -> ! {
    run_stage(chan, || {
        reset_signals();
        // Not dumpable: processes already in the container (exec, joined namespaces) may
        // not open our /proc/PID/exe, mem or fds while we run inside (CVE-2019-5736).
        sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(|e| format!("set non-dumpable: {e}"))?;
        // Into the container's cgroup before anything else: host paths and host
        // privileges are only ours until we join namespaces.
        ctx.cgroup
            .join_self(in_unified)
            .map_err(|e| format!("join the container's cgroup: {e}"))?;
        crate::trace::mark("stage-1: cgroup joined");
        // Joined namespaces first (user first among them), while we still hold host
        // privileges to enter them.
        ctx.ns.join_all().map_err(|e| e.to_string())?;
        // A new user namespace must exist, and be mapped from outside, before the other
        // namespaces so that they are owned by it.
        let new_user = ctx.ns.creates(libc::CLONE_NEWUSER);
        if new_user {
            sys::unshare(libc::CLONE_NEWUSER)
                .map_err(|e| format!("unshare user namespace: {e}"))?;
        }
        chan.send(&Msg::Joined { map: new_user })
            .map_err(|e| e.to_string())?;
        chan.wait_for(&Msg::Go, "go").map_err(|e| e.to_string())?;
        if new_user {
            sys::setresgid(0).map_err(|e| format!("become root in user namespace: {e}"))?;
            sys::setresuid(0).map_err(|e| format!("become root in user namespace: {e}"))?;
        }
        let rest = ctx.ns.new_flags & !libc::CLONE_NEWUSER;
        if rest != 0 {
            sys::unshare(rest).map_err(|e| format!("unshare namespaces: {e}"))?;
        }
        crate::trace::mark("stage-1: namespaces made");
        if ctx.ns.creates(libc::CLONE_NEWTIME)
            && let Some(linux) = ctx.spec.linux()
        {
            namespace::write_time_offsets(linux).map_err(|e| e.to_string())?;
        }
        // The init must be a child of this process so that it lands in the new pid (and
        // time) namespace. It shares our end of the socket, so it waits on a pipe until
        // InitPid is sent: the runtime must see the pid before anything the init says.
        let (turn_r, turn_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        match sys::fork().map_err(|e| format!("fork init: {e}"))? {
            sys::Forked::Child => {
                drop(turn_w);
                let mut b = [0u8; 1];
                // One byte or EOF (stage-1 gone): either way our pid has been reported or
                // the runtime has already failed the create.
                let _ = std::io::Read::read(&mut std::fs::File::from(turn_r), &mut b);
                if ctx.fifo.is_some() {
                    container_init(ctx, chan)
                } else {
                    exec_init(ctx, chan)
                }
            }
            sys::Forked::Parent(pid) => {
                drop(turn_r);
                let sent = chan.send(&Msg::InitPid(pid)).map_err(|e| e.to_string());
                let _ = std::io::Write::write_all(&mut std::fs::File::from(turn_w), b"1");
                sent
            }
        }
    })
}

/// Undo what the runtime's own process set up: blocked signals and Rust's ignored SIGPIPE
/// would otherwise be inherited by the container's program.
fn reset_signals() {
    // SAFETY: an all-zero sigset is valid and sigemptyset initialises it; restoring the
    // default SIGPIPE disposition and an empty mask is async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The container's init (pid 1). Never returns.
fn container_init(ctx: &InitCtx<'_>, chan: &Channel) -> ! {
    run_stage(chan, || {
        sys::setsid();
        // Hold the fifo before the host's paths disappear with pivot_root.
        let fifo_path = ctx.fifo.unwrap_or(Path::new(""));
        let fifo = sys::open(fifo_path, libc::O_PATH, 0)
            .map_err(|e| format!("open `{}`: {e}", fifo_path.display()))?;
        if !ctx.ns.creates(libc::CLONE_NEWNS) {
            return Err(
                "a new mount namespace is required (add {\"type\":\"mount\"} to linux.namespaces)"
                    .into(),
            );
        }
        crate::trace::mark("init: up");
        rootfs::prepare(ctx.spec, ctx.rootfs, ctx.user_ns, &ctx.cgroup_mounts)
            .map_err(|e| e.to_string())?;
        crate::trace::mark("init: mounts made");
        // prestart and createRuntime run in the runtime; createContainer here, in the
        // container's namespaces but before pivot_root, so its path is the host's.
        let state = run_creation_hooks(ctx, chan)?;
        set_names(ctx.spec)?;
        if ctx.new_keyring {
            join_new_session_keyring()?;
        }
        rootfs::enter(ctx.rootfs, ctx.no_pivot).map_err(|e| e.to_string())?;
        crate::trace::mark("init: pivoted");
        rootfs::write_sysctls(ctx.spec).map_err(|e| e.to_string())?;
        let master = open_console(ctx)?;
        rootfs::finish(ctx.spec).map_err(|e| e.to_string())?;
        if let Some(m) = &master {
            chan.send_with_fd(&Msg::Console, Some(m.as_fd()))
                .map_err(|e| e.to_string())?;
        }
        drop(master);
        crate::trace::mark("init: paths masked");
        let exe = prepare_process(ctx, chan)?;
        crate::trace::mark("init: process prepared");
        chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
        // The runtime that created us may be gone: the container's stderr is the only
        // place left to report a failure.
        let after_ready = wait_for_start(&fifo).and_then(|()| {
            drop(fifo);
            if let Some(state) = &state {
                run_hooks_here(
                    "startContainer",
                    ctx.spec
                        .hooks()
                        .as_ref()
                        .and_then(|h| h.start_container().as_ref()),
                    state,
                )?;
            }
            exec_now(ctx, &exe)
        });
        if let Err(why) = &after_ready {
            eprintln!("berth-runtime: container init: {why}");
        }
        after_ready
    })
}

/// An exec'd process: already in every namespace of the container. Never returns.
fn exec_init(ctx: &InitCtx<'_>, chan: &Channel) -> ! {
    run_stage(chan, || {
        let master = open_console(ctx)?;
        if let Some(m) = &master {
            chan.send_with_fd(&Msg::Console, Some(m.as_fd()))
                .map_err(|e| e.to_string())?;
        }
        drop(master);
        let exe = prepare_process(ctx, chan)?;
        chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
        exec_now(ctx, &exe)
    })
}

/// Asks the runtime to run prestart/createRuntime hooks, then runs createContainer hooks.
/// Returns the state JSON for later hooks, or None when the config has no hooks.
fn run_creation_hooks(ctx: &InitCtx<'_>, chan: &Channel) -> Result<Option<String>, String> {
    let Some(hooks) = ctx.spec.hooks().as_ref() else {
        return Ok(None);
    };
    chan.send(&Msg::Hooks).map_err(|e| e.to_string())?;
    let state = match chan.recv("hooks done").map_err(|e| e.to_string())? {
        (Msg::HooksDone(state), _) => state,
        (other, _) => return Err(format!("expected hooks done, got {other:?}")),
    };
    run_hooks_here("createContainer", hooks.create_container().as_ref(), &state)?;
    Ok(Some(state))
}

fn run_hooks_here(
    kind: &'static str,
    hooks: Option<&Vec<oci_spec::runtime::Hook>>,
    state: &str,
) -> Result<(), String> {
    crate::hooks::run_all(kind, hooks, state.as_bytes()).map_err(|e| e.to_string())
}
/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a fresh anonymous session keyring. Kernels
/// or seccomp profiles without keyrings (ENOSYS, EPERM, EACCES) leave the old one, as runc.
fn join_new_session_keyring() -> Result<(), String> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a null name pointer creates an anonymous keyring; no memory of
    // ours is read or written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES)
        ) {
            return Err(format!("join a new session keyring: {e}"));
        }
    }
    Ok(())
}

fn set_names(spec: &Spec) -> Result<(), String> {
    if let Some(h) = spec.hostname() {
        sys::sethostname(h).map_err(|e| format!("set hostname `{h}`: {e}"))?;
    }
    if let Some(d) = spec.domainname() {
        sys::setdomainname(d).map_err(|e| format!("set domainname `{d}`: {e}"))?;
    }
    Ok(())
}

fn open_console(ctx: &InitCtx<'_>) -> Result<Option<OwnedFd>, String> {
    if !ctx.terminal {
        return Ok(None);
    }
    console::setup_in_container(ctx.console_size)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A cwd reached through a leaked fd would lie outside the root; getcwd then fails or
/// does not start with `/` (CVE-2024-21626).
fn check_cwd_inside_root(cwd: &Path) -> Result<(), String> {
    match std::env::current_dir() {
        Ok(p) if p.starts_with("/") && !p.to_string_lossy().starts_with("(unreachable)") => Ok(()),
        _ => Err(format!(
            "cwd `{}` is outside the container's root",
            cwd.display()
        )),
    }
}

/// Blocks until `start` opens the fifo for reading, then signals it by writing one byte.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), String> {
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(fifo)
    ));
    let f = sys::open(&path, libc::O_WRONLY, 0).map_err(|e| format!("open exec fifo: {e}"))?;
    let mut f = std::fs::File::from(f);
    std::io::Write::write_all(&mut f, b"0").map_err(|e| format!("write exec fifo: {e}"))
}

/// Everything before execve that can fail, done while the runtime still listens: cwd,
/// the executable, scheduler, rlimits, seccomp, user and capabilities. A seccomp listener
/// goes to the runtime, which hands it to `listenerPath` from the host's side.
fn prepare_process(ctx: &InitCtx<'_>, chan: &Channel) -> Result<std::ffi::CString, String> {
    let p = ctx.prepared;
    process::enter_cwd(p).map_err(|e| e.to_string())?;
    check_cwd_inside_root(&p.cwd)?;
    let exe = process::find_executable(p).map_err(|e| e.to_string())?;
    if let Some(proc) = ctx.spec.process().as_ref() {
        process::apply_sched(proc).map_err(|e| e.to_string())?;
    }
    process::apply_rlimits(p).map_err(|e| e.to_string())?;
    // Without no_new_privs the filter must go in while we still hold CAP_SYS_ADMIN.
    let early_seccomp = !p.no_new_privs;
    if early_seccomp {
        install_seccomp(ctx, chan)?;
    }
    process::apply_user_and_caps(p, setgroups_allowed(ctx)).map_err(|e| e.to_string())?;
    process::apply_no_new_privs(p).map_err(|e| e.to_string())?;
    if !early_seccomp {
        install_seccomp(ctx, chan)?;
    }
    Ok(exe)
}

/// Only stdio and the fds the caller asked to preserve survive exec (CVE-2024-21626).
fn exec_now(ctx: &InitCtx<'_>, exe: &std::ffi::CString) -> Result<(), String> {
    sys::cloexec_from(3 + ctx.preserve_fds).map_err(|e| format!("close fds: {e}"))?;
    for fd in 3..3 + ctx.preserve_fds {
        let _ = sys::clear_cloexec(fd as i32);
    }
    Err(process::exec(ctx.prepared, exe).to_string())
}

fn setgroups_allowed(ctx: &InitCtx<'_>) -> bool {
    if !ctx.user_ns {
        return true;
    }
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

fn install_seccomp(ctx: &InitCtx<'_>, chan: &Channel) -> Result<(), String> {
    let Some(filter) = ctx.seccomp else {
        return Ok(());
    };
    let listener = filter
        .install()
        .map_err(|e| format!("install seccomp filter: {}", error_chain(&e)))?;
    if let Some(fd) = listener {
        chan.send_with_fd(&Msg::SeccompListener, Some(fd.as_fd()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}
