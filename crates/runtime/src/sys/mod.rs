//! Raw system calls the runtime needs that have no safe wrapper in `std`.
//!
//! This is the only module that calls `libc` functions taking raw pointers or raw fds.
//! Every function returns `io::Result` and takes owned or borrowed fds where it can.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod task;
pub(crate) use task::*;

/// Turns a libc return value of -1 into the thread's errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A path as a NUL-terminated string; paths with interior NULs are invalid input.
pub(crate) fn cstr(p: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn opt_cstr(p: Option<&OsStr>) -> io::Result<Option<CString>> {
    p.map(cstr).transpose()
}

/// mount(2). `source`, `fstype` and `data` may be absent.
pub(crate) fn mount(
    source: Option<&OsStr>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = opt_cstr(source)?;
    let target = cstr(target)?;
    let fstype = opt_cstr(fstype.map(OsStr::new))?;
    let data = opt_cstr(data.map(OsStr::new))?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or points into a CString that lives until the
    // call returns; mount(2) does not keep them.
    cvt(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    })?;
    Ok(())
}

/// umount2(2).
pub(crate) fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a valid NUL-terminated string alive for the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// pivot_root(2) with both arguments the same path: the old root is stacked under the new
/// one and can be lazily unmounted from ".", which needs no directory inside the rootfs.
pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstr(new_root)?;
    let put_old = cstr(put_old)?;
    // SAFETY: both are valid NUL-terminated strings alive for the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })?;
    Ok(())
}

/// `struct open_how` for openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub(crate) const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2): opens `path` relative to `dirfd` with `resolve` restrictions.
pub(crate) fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let path = cstr(path)?;
    let how = OpenHow {
        flags: u64::from((flags | libc::O_CLOEXEC).cast_unsigned()),
        mode: u64::from(mode),
        resolve,
    };
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a properly laid out open_how whose
        // size we pass; both outlive the call. The fd returned is new and owned by us.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match cvt_long(ret) {
            // SAFETY: the kernel just returned this fd to us; nobody else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// openat(2) relative to a directory fd.
pub(crate) fn openat(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let path = cstr(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call; the returned fd is new.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// open(2) of an absolute host path.
pub(crate) fn open(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let path = cstr(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call; the returned fd is new.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mkdirat(2).
pub(crate) fn mkdirat(dirfd: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::mkdirat(dirfd.as_raw_fd(), name.as_ptr(), mode) })?;
    Ok(())
}

/// mknodat(2).
pub(crate) fn mknodat(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    dev: libc::dev_t,
) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::mknodat(dirfd.as_raw_fd(), name.as_ptr(), mode, dev) })?;
    Ok(())
}

/// symlinkat(2).
pub(crate) fn symlinkat(target: &OsStr, dirfd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let target = cstr(target)?;
    let name = cstr(name)?;
    // SAFETY: both strings are NUL-terminated and alive for the call.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dirfd.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// fchownat(2) with AT_EMPTY_PATH on the fd itself.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd with an empty, static C string.
    cvt(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// fstatat(2) with AT_EMPTY_PATH on the fd itself.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value for a plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    cvt(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &raw mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// fstatfs(2): the filesystem magic of an fd.
pub(crate) fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero `statfs` is a valid value for a plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer and `fd` a valid descriptor for the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &raw mut st) })?;
    Ok(st.f_type)
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: forever). True if readable.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd for the call.
        match cvt(unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) }) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// prctl(2) with integer arguments.
pub(crate) fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every option the runtime uses takes integer arguments only.
    cvt(unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// prctl(PR_CAP_AMBIENT, op, cap).
pub(crate) fn prctl_ambient(op: libc::c_ulong, cap: libc::c_ulong) -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            op,
            cap,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// capset(2) for the calling thread with 64-bit masks.
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [(v & 0xffff_ffff) as u32, (v >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: header and a two-element data array (the v3 layout) are valid for the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) })?;
    Ok(())
}

/// sethostname(2) / setdomainname(2).
pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes, alive for the call.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

pub(crate) fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes, alive for the call.
    cvt(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// setresuid/setresgid/setgroups: raw syscalls that change only the calling thread; the
/// process is single-threaded here.
pub(crate) fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    Ok(())
}

pub(crate) fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    Ok(())
}

pub(crate) fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe the `groups` slice, alive for the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
    Ok(())
}

/// setrlimit(2) via prlimit on ourselves.
pub(crate) fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit64 for the call; the old-limit pointer is null.
    cvt(unsafe {
        libc::prlimit64(
            0,
            resource as libc::__rlimit_resource_t,
            &raw const lim,
            std::ptr::null_mut(),
        )
    })?;
    Ok(())
}

/// umask(2).
pub(crate) fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) };
}

/// chdir(2) and fchdir(2).
pub(crate) fn chdir(path: &Path) -> io::Result<()> {
    let path = cstr(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::chdir(path.as_ptr()) })?;
    Ok(())
}

/// chroot(2).
pub(crate) fn chroot(path: &Path) -> io::Result<()> {
    let path = cstr(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::chroot(path.as_ptr()) })?;
    Ok(())
}

/// setsid(2); EPERM (already a group leader) is not an error for us.
pub(crate) fn setsid() {
    // SAFETY: setsid takes no arguments; failure only means we already lead a session.
    unsafe { libc::setsid() };
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): every fd from `first` up is closed on exec.
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall with integer arguments; it only sets flags on our own fds.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
    })?;
    Ok(())
}

/// Clears FD_CLOEXEC on an fd that must survive execve.
pub(crate) fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_SETFD and an integer argument on an fd number we were handed.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
    Ok(())
}

/// dup3(2) onto a fixed number (0, 1, 2 for the console).
pub(crate) fn dup2(fd: BorrowedFd<'_>, to: RawFd) -> io::Result<()> {
    // SAFETY: dup3 onto a fixed fd number; the caller intends to replace it.
    cvt(unsafe { libc::dup3(fd.as_raw_fd(), to, 0) })?;
    Ok(())
}

/// execve(2). Only returns on failure.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into CStrings that
    // outlive the call; on success the process image is replaced.
    unsafe { libc::execve(path.as_ptr(), args.as_ptr(), env.as_ptr()) };
    io::Error::last_os_error()
}

/// mkfifo(3).
pub(crate) fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let path = cstr(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) })?;
    Ok(())
}

/// ioctl(TIOCGPTPEER): opens the pty peer of a master without a path lookup.
pub(crate) fn ptmx_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: ioctl on a pty master with integer flags; the returned fd is new.
    let fd = cvt(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl(TIOCSPTLCK, 0): unlocks a pty master so its peer can be opened.
pub(crate) fn unlockpt(master: BorrowedFd<'_>) -> io::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &raw const unlock) })?;
    Ok(())
}

/// ioctl(TIOCSCTTY): makes `fd` the controlling terminal of this session.
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: ioctl with an integer argument on a valid tty fd.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// ioctl(TIOCSWINSZ).
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) })?;
    Ok(())
}

/// ioctl(TIOCGWINSZ); None when `fd` is not a terminal.
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    // SAFETY: an all-zero winsize is a valid plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &raw mut ws) };
    (ret == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends `data` plus the given fds over a unix socket with SCM_RIGHTS.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let space = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let cmsg_space = unsafe { libc::CMSG_SPACE(space as u32) } as usize;
    let mut cbuf = vec![0u8; cmsg_space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space;
        // SAFETY: msg_control points at `cbuf`, which is CMSG_SPACE bytes long, so the
        // first header and its data fit; the fd array is copied byte-wise.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(space as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), space);
        }
    }
    // SAFETY: `msg` points at live iovec and control buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message and up to 4 fds sent with SCM_RIGHTS.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    const MAX_FDS: usize = 4;
    let space = MAX_FDS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let cmsg_space = unsafe { libc::CMSG_SPACE(space as u32) } as usize;
    let mut cbuf = vec![0u8; cmsg_space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the stated sizes for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: we walk the control buffer the kernel filled, with the CMSG_* macros, and
    // take ownership of each fd it passed us exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                let count = len / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n, fds))
}

/// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int out-array for the call.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: the kernel just returned both fds to us; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int out-array for the call.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned both fds to us; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Immediately ends the calling (forked) process without running destructors or atexit
/// handlers that belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Process start time (clock ticks since boot, field 22 of /proc/PID/stat), to tell a
/// container's init from a later process that reused its pid. None if it is gone.
pub(crate) fn process_start_time(pid: libc::pid_t) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}
