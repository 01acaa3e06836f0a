//! The few raw calls the engine needs that have no safe wrapper: handing the monitor its
//! status pipe as fd 3 across exec, and taking it back in the monitor. All unsafe code of
//! the crate lives here.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The fd number the monitor finds its status pipe on.
pub(crate) const STATUS_FD: i32 = 3;

/// Arranges for `fd` to be fd 3 (without close-on-exec) in the child `cmd` spawns.
pub(crate) fn pass_status_fd(cmd: &mut Command, fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and
    // fcntl, which are async-signal-safe; `raw` stays open in the parent (which owns it)
    // until spawn returns, so it is open in the child too.
    unsafe {
        cmd.pre_exec(move || {
            if raw == STATUS_FD {
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of fd 3 in the monitor, if it is open; marks it close-on-exec so the
/// container never inherits it.
pub(crate) fn take_status_fd() -> Option<File> {
    // SAFETY: F_GETFD only queries whether fd 3 is open; it touches no memory.
    if unsafe { libc::fcntl(STATUS_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: as above; sets FD_CLOEXEC on an fd that is open.
    unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: fd 3 is open (checked above) and nothing else in the monitor owns it: the
    // monitor is a fresh exec whose only inherited fds are stdio and this pipe.
    Some(unsafe { File::from_raw_fd(STATUS_FD) })
}
