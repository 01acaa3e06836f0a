//! Load compiled filters into forked children and check what the kernel does.
//!
//! No root needed: each child sets no_new_privs before installing, which is all
//! seccomp asks of an unprivileged process. The child runs only raw syscalls between
//! fork and `_exit` (the notify test also allocates, see there), so forking from the
//! multi-threaded test harness is safe.

use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_seccomp::{Filter, compile, docker_default, send_listener};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

/// errno after a failed libc call, for the child's exit code.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(255)
}

/// Exit code of a child whose filter failed to load.
const INSTALL_FAILED: i32 = 200;

/// Fork; the child sets no_new_privs, installs `filter`, runs `body` and exits with
/// its return value. The parent runs `parent` with the child's pid (and gets the
/// child reaped even if `parent` fails), then returns how the child ended.
fn run_child(
    filter: &Filter,
    body: impl FnOnce(Option<OwnedFd>) -> i32,
    parent: impl FnOnce(Pid) -> Result<()>,
) -> Result<WaitStatus> {
    // SAFETY: the child only makes raw syscalls and calls `_exit`; it never returns
    // into the test harness, whose other threads do not exist in the child.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            // SAFETY: prctl with integer arguments touches no memory of ours.
            let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = match (nnp, filter.install()) {
                (0, Ok(listener)) => body(listener),
                _ => INSTALL_FAILED,
            };
            // SAFETY: `_exit` ends the child without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let outcome = parent(child);
            if outcome.is_err() {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            }
            let status = waitpid(child, None).context("waitpid")?;
            outcome?;
            Ok(status)
        }
    }
}

fn exited(status: WaitStatus, code: i32) -> Result<()> {
    match status {
        WaitStatus::Exited(_, c) if c == code => Ok(()),
        other => bail!("child ended with {other:?}, expected exit code {code}"),
    }
}

fn no_parent(_: Pid) -> Result<()> {
    Ok(())
}

#[test]
fn denied_syscall_returns_configured_errno() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("denied");
    let path = CString::new(target.to_str().context("utf-8 temp path")?)?;
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV }]
    })))?;
    let status = run_child(
        &filter,
        |_| {
            // SAFETY: `path` is a NUL-terminated string alive for the call.
            match unsafe { libc::mkdir(path.as_ptr(), 0o755) } {
                0 => 0,
                _ => errno(),
            }
        },
        no_parent,
    )?;
    exited(status, libc::EXDEV)?;
    ensure!(!target.exists(), "mkdir went through the filter");
    Ok(())
}

#[test]
fn default_action_uses_default_errno_ret() -> Result<()> {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EBADFD,
        "syscalls": [{ "names": ["exit_group", "exit"], "action": "SCMP_ACT_ALLOW" }]
    })))?;
    let status = run_child(
        &filter,
        // SAFETY: getppid takes no arguments.
        |_| match unsafe { libc::syscall(libc::SYS_getppid) } {
            -1 => errno(),
            _ => 0,
        },
        no_parent,
    )?;
    exited(status, libc::EBADFD)
}

#[test]
fn kill_actions_end_the_child_with_sigsys() -> Result<()> {
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
    ] {
        let filter = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": action }]
        })))?;
        // SAFETY: getppid takes no arguments.
        let status = run_child(
            &filter,
            |_| unsafe { libc::syscall(libc::SYS_getppid) } as i32,
            no_parent,
        )?;
        match status {
            WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
            other => bail!("{action}: child ended with {other:?}, expected SIGSYS"),
        }
    }
    Ok(())
}

#[test]
fn argument_conditions_filter_calls() -> Result<()> {
    const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["personality"], "action": "SCMP_ACT_ERRNO",
              "args": [{ "index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_NE" }] },
            { "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
              "args": [{ "index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                         "op": "SCMP_CMP_MASKED_EQ" }] },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::E2BIG,
              "args": [{ "index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT" }] }
        ]
    })))?;
    let status = run_child(&filter, |_| argument_probe(), no_parent)?;
    exited(status, 0)
}

/// Runs in the child: 0 when every call got what the filter promises, else the
/// number of the first failed check.
fn argument_probe() -> i32 {
    // SAFETY: personality with an integer argument; 0xffffffff only queries.
    if unsafe { libc::personality(0xffff_ffff) } < 0 {
        return 1;
    }
    // SAFETY: as above; the filter must refuse the change.
    if unsafe { libc::personality(8) } != -1 || errno() != libc::EPERM {
        return 2;
    }
    let sigchld = libc::SIGCHLD as libc::c_ulong;
    let newuser = libc::CLONE_NEWUSER as libc::c_ulong;
    // SAFETY: raw clone with a NULL stack behaves like fork; the filter refuses it.
    if unsafe { libc::syscall(libc::SYS_clone, newuser | sigchld, 0, 0, 0, 0) } != -1
        || errno() != libc::EACCES
    {
        return 3;
    }
    // SAFETY: fork-like raw clone; the new child only calls `_exit`.
    match unsafe { libc::syscall(libc::SYS_clone, sigchld, 0, 0, 0, 0) } {
        // SAFETY: `_exit` in the grandchild, which must not return into the probe.
        0 => unsafe { libc::_exit(0) },
        -1 => return 4,
        pid => {
            let mut st = 0;
            // SAFETY: waiting for the grandchild just created; `st` is a local.
            if unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) } < 0 {
                return 5;
            }
        }
    }
    // getpid ignores its arguments, but seccomp sees the full 64-bit registers.
    // SAFETY: getpid with extra integer arguments, which the kernel ignores.
    if unsafe { libc::syscall(libc::SYS_getpid, 0, 0x1_0000_0000u64) } < 0 {
        return 6;
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_getpid, 0, 0x1_0000_0001u64) } != -1
        || errno() != libc::E2BIG
    {
        return 7;
    }
    0
}

/// Wait until `fd` is readable, failing rather than hanging if the child is stuck.
fn wait_readable(fd: RawFd, what: &str) -> Result<()> {
    // SAFETY: `fd` stays open for this call (owned by the caller).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(Duration::from_secs(30)).context("timeout")?;
    ensure!(poll(&mut fds, timeout)? == 1, "no {what} within 30 s");
    Ok(())
}

/// Receive the listener fd and state JSON an agent gets on `listenerPath`.
fn accept_listener(sock: &UnixListener) -> Result<(OwnedFd, serde_json::Value)> {
    wait_readable(sock.as_raw_fd(), "connection from the child")?;
    let (conn, _) = sock.accept()?;
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed these fds in this process; we own them.
            fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
        }
    }
    let len = msg.bytes;
    let state = serde_json::from_slice(&buf[..len]).context("state JSON")?;
    Ok((fd.context("no fd in SCM_RIGHTS")?, state))
}

/// Receive one notification on `listener` and answer it with `val`.
fn answer_one(listener: &OwnedFd, child: Pid, val: i64) -> Result<()> {
    wait_readable(listener.as_raw_fd(), "seccomp notification")?;
    // SAFETY: all-zero is a valid seccomp_notif (plain integers), as RECV requires.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes one seccomp_notif into `req`, which is large enough.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    ensure!(rc == 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    ensure!(
        req.data.nr == libc::SYS_mkdir as i32,
        "notified nr {}",
        req.data.nr
    );
    ensure!(req.pid == child.as_raw() as u32, "notified pid {}", req.pid);
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val,
        error: 0,
        flags: 0,
    };
    // SAFETY: SEND reads one seccomp_notif_resp from `resp`.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    };
    ensure!(rc == 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
    Ok(())
}

#[test]
fn notify_listener_receives_the_notification() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sock_path = dir.path().join("agent.sock");
    let sock = UnixListener::bind(&sock_path)?;
    let target = dir.path().join("notified");
    let path = CString::new(target.to_str().context("utf-8 temp path")?)?;
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "listenerMetadata": "berth-test",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
    })))?;
    ensure!(filter.uses_notify());
    let state =
        br#"{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":0,"metadata":"berth-test","state":{}}"#;
    let status = run_child(
        &filter,
        |listener| {
            // send_listener allocates (socket path, cmsg buffer): glibc makes malloc
            // usable in a child after fork, and nothing else here takes a lock.
            let Some(listener) = listener else { return 10 };
            if send_listener(&sock_path, std::os::fd::AsFd::as_fd(&listener), state).is_err() {
                return 11;
            }
            drop(listener);
            // SAFETY: `path` is a NUL-terminated string alive for the call.
            let rc = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
            if rc == 42 { 0 } else { 12 }
        },
        |child| {
            let (listener, state) = accept_listener(&sock)?;
            ensure!(state["fds"] == json!(["seccompFd"]), "state {state}");
            ensure!(state["metadata"] == "berth-test", "state {state}");
            answer_one(&listener, child, 42)
        },
    )?;
    exited(status, 0)?;
    ensure!(!target.exists(), "the notified mkdir ran anyway");
    Ok(())
}

#[test]
fn docker_default_blocks_namespaces_and_keyrings_but_runs_programs() -> Result<()> {
    let filter = compile(&docker_default(&[]))?;
    let sh = CString::new("/bin/sh")?;
    let argv0 = CString::new("sh")?;
    let dash_c = CString::new("-c")?;
    let script = CString::new("echo ok >/dev/null && ls / >/dev/null && /bin/true")?;
    let argv = [
        argv0.as_ptr(),
        dash_c.as_ptr(),
        script.as_ptr(),
        std::ptr::null(),
    ];
    let status = run_child(
        &filter,
        |_| {
            // SAFETY: unshare with an integer flag; the filter refuses it.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != -1 || errno() != libc::EPERM {
                return 2;
            }
            // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL); the filter refuses it.
            if unsafe { libc::syscall(libc::SYS_keyctl, 1, 0) } != -1 || errno() != libc::EPERM {
                return 3;
            }
            // SAFETY: clone3 with a NULL struct; Docker's profile answers ENOSYS first.
            if unsafe { libc::syscall(libc::SYS_clone3, 0, 0) } != -1 || errno() != libc::ENOSYS {
                return 4;
            }
            // SAFETY: `sh` and `argv` are NUL-terminated and outlive the call; on
            // success execv does not return.
            unsafe { libc::execv(sh.as_ptr(), argv.as_ptr()) };
            5
        },
        no_parent,
    )?;
    exited(status, 0)
}

/// A syscall through the i386 entry (`int 0x80`), which the kernel reports to
/// seccomp as AUDIT_ARCH_I386 even from a 64-bit process. Returns -errno on failure.
#[cfg(target_arch = "x86_64")]
fn syscall_i386(nr: u32, arg0: u32) -> i32 {
    let ret: u32;
    // SAFETY: `int 0x80` with integer arguments only (no pointers are passed, so
    // the 32-bit truncation of registers cannot make the kernel touch our memory).
    // LLVM reserves rbx, so the argument is swapped in and out around the call;
    // eax returns the result and r8-r11 are declared clobbered.
    unsafe {
        std::arch::asm!(
            "xchg {a}, rbx",
            "int 0x80",
            "xchg {a}, rbx",
            a = inout(reg) u64::from(arg0) => _,
            inlateout("eax") nr => ret,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret.cast_signed()
}

/// A raw 64-bit `syscall` with number `nr` and no arguments. Returns -errno on
/// failure.
#[cfg(target_arch = "x86_64")]
fn syscall_raw(nr: u64) -> i64 {
    let ret: u64;
    // SAFETY: a syscall with no arguments; rcx and r11 are clobbered by the
    // instruction and declared so.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr => ret,
            out("rcx") _, out("r11") _, options(nostack));
    }
    ret.cast_signed()
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compat_abis_are_filtered_with_their_own_numbers() -> Result<()> {
    const I386_GETPID: u32 = 20;
    const I386_MKDIR: u32 = 39;
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV }]
    })))?;
    let status = run_child(
        &filter,
        |_| {
            // i386 getpid (20) is refused through the i386 table...
            if syscall_i386(I386_GETPID, 0) != -libc::EXDEV {
                return 1;
            }
            // ...and i386 number 39 is mkdir there (x86_64's getpid): it reaches
            // the kernel, which faults on the NULL path.
            if syscall_i386(I386_MKDIR, 0) != -libc::EFAULT {
                return 2;
            }
            // SAFETY: getpid takes no arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } != -1 || errno() != libc::EXDEV {
                return 3;
            }
            0
        },
        no_parent,
    )?;
    exited(status, 0)?;
    // x32 numbers arrive on the x86_64 audit arch; with SCMP_ARCH_X32 unlisted they
    // are a bad arch, and the process is killed.
    let x32_getpid = 39 | 0x4000_0000;
    let status = run_child(&filter, |_| syscall_raw(x32_getpid) as i32, no_parent)?;
    match status {
        WaitStatus::Signaled(_, Signal::SIGSYS, _) => Ok(()),
        other => bail!("x32 syscall: child ended with {other:?}, expected SIGSYS"),
    }
}
