//! The few raw syscalls the bench needs beyond std and nix: pidfd waits with a timeout,
//! `wait4` for the child's rusage, and a mount namespace with the cgroup2 mount hidden.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;

/// How a reaped child ended, and the peak RSS the kernel recorded for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reaped {
    /// Exit code, or 128 + signal number when a signal ended it (the shell convention).
    pub(crate) code: i32,
    /// `ru_maxrss` of the child (and of the descendants it waited for), in KiB.
    pub(crate) maxrss_kib: u64,
}

/// Outcome of [`wait_child`].
#[derive(Debug)]
pub(crate) enum Waited {
    Exited(Reaped),
    /// Still running after the timeout; it was sent SIGKILL and reaped.
    TimedOut,
}

/// Opens a pidfd for `pid`, which must be alive or an unreaped zombie.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout` for our child `pid` to end and reaps it with `wait4`, so the
/// rusage it returns is the child's own. On timeout the child is killed and reaped.
pub(crate) fn wait_child(pid: i32, pidfd: &OwnedFd, timeout: Duration) -> io::Result<Waited> {
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ready = loop {
        match nix::poll::poll(&mut fds, ms) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if ready == 0 {
        // Kill through the pidfd so a recycled pid can never be hit.
        // SAFETY: the pidfd is open and owned by the caller; a null siginfo is allowed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(pidfd),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        wait4(pid)?;
        return Ok(Waited::TimedOut);
    }
    wait4(pid).map(Waited::Exited)
}

/// Blocking `wait4` on one child.
fn wait4(pid: i32) -> io::Result<Reaped> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are live locals the kernel writes before returning.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Reaped {
        code,
        maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// Reaps every zombie child that is ready (orphans reparented to us as subreaper).
pub(crate) fn reap_ready_children() {
    loop {
        // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if rc <= 0 {
            break;
        }
    }
}

/// Makes this process the reaper of orphaned descendants, so a container's init (whose
/// parent, the runtime, exits after `create`) becomes our child and can be waited for.
pub(crate) fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Returns a mount namespace that is a private copy of ours with `hidden` (a mount point)
/// lazily unmounted. It is made on a short-lived thread (unshare of a mount namespace
/// unshares the thread's fs too, so the rest of the process keeps its namespace) and
/// stays alive through the returned fd.
pub(crate) fn mount_ns_without(hidden: &'static CStr) -> io::Result<File> {
    std::thread::spawn(move || -> io::Result<File> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
        // Private first: the unmount below must not propagate back to the host.
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        nix::mount::umount2(hidden, MntFlags::MNT_DETACH)?;
        File::open("/proc/thread-self/ns/mnt")
    })
    .join()
    .map_err(|_| io::Error::other("mount namespace thread panicked"))?
}

/// Runs `f` on a short-lived thread that has entered the mount namespace `ns` (it
/// unshares its fs first, which setns of a mount namespace requires); the rest of the
/// process keeps its namespace.
pub(crate) fn in_mount_ns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<T> {
            nix::sched::unshare(CloneFlags::CLONE_FS)?;
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("mount namespace thread panicked"))?
    })
}

/// Switches the calling process into the mount namespace `ns`. Called between fork and
/// exec, so it only makes the setns syscall (async-signal-safe, no allocation).
pub(crate) fn enter_mount_ns(ns: i32) -> io::Result<()> {
    // SAFETY: setns takes an fd and flag by value; `ns` is kept open by the parent's
    // `Runtime` for as long as commands are spawned from it.
    let rc = unsafe { libc::setns(ns, libc::CLONE_NEWNS) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
