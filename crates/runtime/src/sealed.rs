//! Running the runtime from a sealed, anonymous copy of its own binary, so that a process
//! in a container can never reach the host's file through /proc/PID/exe (CVE-2019-5736).
//!
//! `exec` enters a running container whose processes could try to grab our executable
//! while we are inside; the copy lives in a memfd sealed against every write, and it is
//! what /proc/PID/exe then points at.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

const MARKER: &str = "_BERTH_RUNTIME_SEALED";

/// True if this process already runs from a sealed copy.
pub fn is_sealed() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// Re-executes this process from a sealed memfd copy of /proc/self/exe, with the same
/// arguments and environment (plus a marker). Returns only on failure.
pub fn reexec_sealed() -> io::Error {
    match sealed_copy() {
        Ok(fd) => exec_fd(&fd),
        Err(e) => e,
    }
}

fn sealed_copy() -> io::Result<OwnedFd> {
    let name = c"berth-runtime";
    // SAFETY: `name` is a valid C string; the returned fd is new and owned by us.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut dst = std::fs::File::from(fd);
    let mut src = std::fs::File::open("/proc/self/exe")?;
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl with an integer argument on a memfd we own.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(dst))
}

fn exec_fd(fd: &OwnedFd) -> io::Error {
    let to_c = |v: Vec<u8>| CString::new(v).ok();
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|a| to_c(a.into_vec()))
        .collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            to_c(kv)
        })
        .collect();
    envp.extend(to_c(format!("{MARKER}=1").into_bytes()));
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: argv/envp are NULL-terminated arrays of pointers into CStrings that live
    // until the call; execveat with AT_EMPTY_PATH executes the memfd itself.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}
