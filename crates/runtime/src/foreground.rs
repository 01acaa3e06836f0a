//! Serving a container in the foreground (`run`, `exec` without `--detach`): the runtime is
//! the process's subreaper, forwards signals to it, copies a pty to and from its own stdio,
//! and returns its exit code.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::sys;

/// Signals forwarded to the container (plus SIGCHLD and SIGWINCH, handled here).
const FORWARDED: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGCHLD,
];

/// Blocks the forwarded signals and returns a signalfd for them. Call before forking the
/// container so no signal is lost; the forked stages unblock them again.
pub fn block_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset functions initialise and fill a zeroed sigset on our stack; sigprocmask
    // and signalfd only read it. The returned fd is new and owned by us.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for s in FORWARDED {
            libc::sigaddset(&raw mut set, *s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Makes orphaned descendants (the container's init, once stage-1 exits) our children.
pub fn become_subreaper() -> io::Result<()> {
    sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).map(|_| ())
}

/// Puts a terminal in raw mode and restores it on drop.
struct RawTerminal {
    fd: RawFd,
    saved: libc::termios,
}

impl RawTerminal {
    fn new(fd: BorrowedFd<'_>) -> Option<Self> {
        // SAFETY: an all-zero termios is a valid plain C struct, filled by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid out-pointer; `fd` is open.
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &raw mut t) } != 0 {
            return None;
        }
        let saved = t;
        // SAFETY: cfmakeraw edits the struct in place; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&raw mut t);
            libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw const t);
        }
        Some(Self {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same, still open, fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &raw const self.saved) };
    }
}

fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a valid buffer of the given length from an open fd.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writing from a valid buffer of the given length to an open fd.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Serves `pid` until it exits; returns its exit code (128+N if killed by signal N).
pub fn serve(pid: i32, sigfd: &OwnedFd, console: Option<&OwnedFd>) -> io::Result<i32> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let _raw = console.and_then(|_| RawTerminal::new(stdin.as_fd()));
    if let Some(m) = console
        && let Some((rows, cols)) = sys::get_winsize(stdin.as_fd())
    {
        let _ = sys::set_winsize(m.as_fd(), rows, cols);
    }
    let mut stdin_open = console.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![libc::pollfd {
            fd: sigfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(m) = console {
            fds.push(libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            if stdin_open {
                fds.push(libc::pollfd {
                    fd: stdin.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(m) = console {
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                match read_fd(m.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => {}
                    Ok(k) => write_all_fd(stdout.as_fd(), &buf[..k])?,
                }
            }
            if stdin_open && fds.len() > 2 && fds[2].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                match read_fd(stdin.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(k) => write_all_fd(m.as_fd(), &buf[..k])?,
                }
            }
        }
        if fds[0].revents & libc::POLLIN != 0
            && let Some(code) = handle_signal(pid, sigfd, console)?
        {
            if let Some(m) = console {
                drain(m.as_fd(), stdout.as_fd(), &mut buf);
            }
            return Ok(code);
        }
    }
}

/// Copies what is left in the pty after the process exited.
fn drain(master: BorrowedFd<'_>, out: BorrowedFd<'_>, buf: &mut [u8]) {
    while sys::poll_readable(master, 0).unwrap_or(false) {
        match read_fd(master, buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if write_all_fd(out, &buf[..k]).is_err() {
                    break;
                }
            }
        }
    }
}

/// Reads one signal; returns the exit code once `pid` has been reaped.
fn handle_signal(pid: i32, sigfd: &OwnedFd, console: Option<&OwnedFd>) -> io::Result<Option<i32>> {
    // SAFETY: an all-zero signalfd_siginfo is a valid plain C struct.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reading exactly one siginfo into a valid buffer of that size.
    let n = unsafe { libc::read(sigfd.as_raw_fd(), (&raw mut info).cast(), size) };
    if n != size as isize {
        return Ok(None);
    }
    let sig = info.ssi_signo as libc::c_int;
    match sig {
        libc::SIGCHLD => loop {
            match sys::waitpid(-1, libc::WNOHANG) {
                Ok((0, _)) | Err(_) => return Ok(None),
                Ok((p, status)) if p == pid => return Ok(Some(sys::exit_code(status))),
                Ok(_) => continue,
            }
        },
        libc::SIGWINCH => {
            if let Some(m) = console
                && let Some((rows, cols)) = sys::get_winsize(io::stdin().as_fd())
            {
                let _ = sys::set_winsize(m.as_fd(), rows, cols);
            }
            Ok(None)
        }
        other => {
            let _ = sys::kill(pid, other);
            Ok(None)
        }
    }
}
