//! The raw `seccomp(2)` calls; the only place this crate talks to libc directly.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::bpf::Insn;

/// `SECCOMP_SET_MODE_FILTER`.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Load `prog` as a seccomp filter of the calling thread with `flags`. Returns the
/// listener fd when `flags` has `SECCOMP_FILTER_FLAG_NEW_LISTENER`. Allocates nothing.
pub(crate) fn set_mode_filter(
    prog: &[Insn],
    flags: u32,
    new_listener: bool,
) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    // SAFETY: `Insn` is `#[repr(C)]` with the same fields, sizes and order as
    // `struct sock_filter`; `fprog` points at `prog`, which is borrowed for the whole
    // call, and the kernel only reads (copies) the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &raw const fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if !new_listener {
        return Ok(None);
    }
    let fd = i32::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: with NEW_LISTENER a successful seccomp() returns a freshly opened
    // listener fd that nothing else in this process owns yet.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the running kernel accepts filter `flags`: with a NULL program the
/// kernel validates the flags first and then fails the copy with EFAULT, so EFAULT
/// means "known" and nothing is installed (libseccomp probes the same way).
pub(crate) fn flags_supported(flags: u32) -> bool {
    // SAFETY: a NULL program pointer is never dereferenced in user space; the
    // kernel's copy from it fails with EFAULT and no filter is installed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}
