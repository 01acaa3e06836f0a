//! Processes: fork (also straight into a cgroup with clone3), namespaces, waiting,
//! signals, the clock.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::{cvt, cvt_long, open};

/// fork(2). The caller must be single-threaded (the runtime CLI is) so the child may keep
/// allocating.
pub(crate) enum Forked {
    Parent(libc::pid_t),
    Child,
}

pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the runtime only forks from single-threaded processes (checked by the
    // caller), so the child inherits a consistent heap and no locks held by other threads.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// CLOCK_MONOTONIC in milliseconds (for [`crate::trace`]).
pub(crate) fn monotonic_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer for the call; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// Opens a directory as an `O_PATH` handle (for clone3's `cgroup` field).
pub(crate) fn open_path_dir(path: &Path) -> io::Result<OwnedFd> {
    open(path, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
}

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(2) through clone3(2) with `CLONE_INTO_CGROUP`: the child starts in the cgroup v2
/// directory `cgroup` instead of ours. Fails (ENOSYS, E2BIG, EOPNOTSUPP, ...) where the
/// kernel cannot; the caller then forks and joins. Same contract as [`fork`]: the
/// caller is single-threaded.
pub(crate) fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> io::Result<Forked> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed, alive for the call. With no
    // CLONE_VM and a zero stack the child gets a copy of our address space and continues
    // on its copy of this stack, exactly like fork(2). glibc's fork handlers do not run:
    // the caller is single-threaded, so no lock (malloc, stdio) can be held by another
    // thread; the one stale field, the thread's cached tid, is not used by what the
    // child runs (Rust code that forks again with glibc's fork, or execs).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// Number of threads in this process, from /proc/self/stat.
pub(crate) fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    after
        .split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// unshare(2).
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with integer flags.
    cvt(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// setns(2).
pub(crate) fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) })?;
    Ok(())
}

/// waitpid(2), retrying on EINTR. Returns the raw wait status.
pub(crate) fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<(libc::pid_t, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the call.
        match cvt(unsafe { libc::waitpid(pid, &raw mut status, flags) }) {
            Ok(p) => return Ok((p, status)),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Turns a wait status into a shell-style exit code (128+N for a signal).
pub(crate) fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// kill(2).
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// pidfd_open(2): a handle on a process that survives pid reuse.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the returned fd is new.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid pidfd with a null siginfo.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}
