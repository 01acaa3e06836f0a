//! Thin wrappers over the raw syscalls the image store needs. Every function takes the
//! directory fd it works relative to and returns `io::Result`; nothing here knows about
//! layers or images. This is the only module with `unsafe`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turn a `-1`/errno return into an `io::Result`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turn a raw syscall's `-1`/errno return into an `io::Result`.
fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from a name; names with NUL bytes are invalid input.
pub(crate) fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Wrap a fresh fd returned by a syscall.
fn own(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open-like syscall in this process and
    // nothing else holds it, so ownership passes to the OwnedFd exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The current directory as a dirfd (`AT_FDCWD`).
pub(crate) fn cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a sentinel, not an open fd: the kernel resolves it to the cwd on
    // each call and it can never be closed, so borrowing it for 'static is sound.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is a live fd borrowed for the call and `name` is NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    check(fd).map(own)
}

/// `openat2(dir, path, how)` with the given resolve flags.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let path = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: open_how is a plain C struct for which all-zero bytes are a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(flags | libc::O_CLOEXEC).unwrap_or_default();
    how.resolve = resolve;
    // SAFETY: `dir` is live, `path` is NUL-terminated and `how` points to a struct of the
    // size passed; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = check_long(ret)?;
    Ok(own(
        libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?
    ))
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `mknodat(dir, name, mode, dev)`.
pub(crate) fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) }).map(drop)
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and `dir` is live.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `linkat(from_dir, from, to_dir, to, 0)`: never follows a symlink at `from`.
pub(crate) fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both dir fds are live and both names are NUL-terminated.
    let ret = unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `unlinkat(dir, name, flags)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lchownat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    let ret = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(ret).map(drop)
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: `fd` is a live fd borrowed for the call.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `fd` is a live fd borrowed for the call.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// `fchmodat(dir, name, mode, 0)` for a node this process just created (not a symlink).
pub(crate) fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }).map(drop)
}

/// Seconds and nanoseconds since the epoch.
pub(crate) type Time = (i64, i64);

fn times((sec, nsec): Time) -> [libc::timespec; 2] {
    let ts = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    [ts, ts]
}

/// Set atime and mtime of `name` in `dir` without following a symlink.
pub(crate) fn lutimesat(dir: BorrowedFd<'_>, name: &CStr, mtime: Time) -> io::Result<()> {
    let t = times(mtime);
    // SAFETY: `dir` is live, `name` is NUL-terminated, `t` holds the two timespecs the
    // kernel reads.
    let ret = unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(ret).map(drop)
}

/// Set atime and mtime of an open file.
pub(crate) fn futimes(fd: BorrowedFd<'_>, mtime: Time) -> io::Result<()> {
    let t = times(mtime);
    // SAFETY: `fd` is live and `t` holds the two timespecs the kernel reads.
    check(unsafe { libc::futimens(fd.as_raw_fd(), t.as_ptr()) }).map(drop)
}

/// `fsetxattr(fd, name, value, 0)`.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `fd` is live, `name` is NUL-terminated, `value` is a live slice of the
    // length passed.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `lgetxattr(path, name)`: the attribute's value (at most 256 bytes), never following a
/// symbolic link at `path`.
pub(crate) fn lgetxattr(path: &Path, name: &CStr) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = cstr(path.as_os_str().as_bytes())?;
    let mut buf = [0u8; 256];
    // SAFETY: both strings are NUL-terminated and `buf` is a live, writable buffer of the
    // length passed; the kernel writes at most that many bytes.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = check_long(n as libc::c_long)?;
    Ok(buf[..n as usize].to_vec())
}

/// `syncfs(fd)`: flush the filesystem holding `fd`.
pub(crate) fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live fd borrowed for the call.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// `flock(fd, op)`.
pub(crate) fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is a live fd borrowed for the call.
        match check(unsafe { libc::flock(fd.as_raw_fd(), op) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map(drop),
        }
    }
}

/// The effective uid of this process.
pub(crate) fn geteuid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// `fsopen(fstype, FSOPEN_CLOEXEC)`: a filesystem context.
pub(crate) fn fsopen(fstype: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `fstype` is NUL-terminated; the call only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = check_long(ret)?;
    Ok(own(
        libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?
    ))
}

/// `fsconfig(ctx, FSCONFIG_SET_STRING, key, value)`.
pub(crate) fn fsconfig_set(
    ctx: BorrowedFd<'_>,
    key: &CStr,
    value: Option<&CStr>,
) -> io::Result<()> {
    let (cmd, value_ptr) = match value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: `ctx` is a live fs context fd; `key` and `value` (if any) are NUL-terminated
    // strings that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            cmd,
            key.as_ptr(),
            value_ptr,
            0,
        )
    };
    check_long(ret).map(drop)
}

/// `fsconfig(ctx, FSCONFIG_CMD_CREATE)` then `fsmount`: a detached mount.
pub(crate) fn fs_create_mount(ctx: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `ctx` is a live fs context fd; CMD_CREATE takes no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check_long(ret)?;
    // SAFETY: `ctx` is a live, created fs context fd; fsmount takes no pointers.
    let ret = unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    let fd = check_long(ret)?;
    Ok(own(
        libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?
    ))
}

/// `move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach a detached mount.
pub(crate) fn move_mount_to(mnt: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let target = cstr(target.as_os_str().as_bytes())?;
    let empty = c"";
    // SAFETY: `mnt` is a live mount fd; both paths are NUL-terminated and outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check_long(ret).map(drop)
}

/// `umount2(target, flags)`.
pub(crate) fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: `target` is NUL-terminated and outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `mount(source, target, fstype, flags, data)`.
pub(crate) fn mount(
    source: &CStr,
    target: &Path,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: &CStr,
) -> io::Result<()> {
    let target = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: all strings are NUL-terminated and outlive the call; the kernel only reads them.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    check(ret).map(drop)
}
