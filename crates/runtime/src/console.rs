//! Consoles: a pty made inside the container's devpts, its peer opened with TIOCGPTPEER
//! (never by path), the master handed to the caller over `--console-socket` (SCM_RIGHTS,
//! as conmon and containerd expect) or proxied by `run` in the foreground.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::mount::{create_in_root, fd_path};
use crate::sys;

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        source: io::Error,
    },
    #[error("send console to `{path}`: {source}")]
    Send { path: PathBuf, source: io::Error },
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> ConsoleError {
    move |source| ConsoleError::Step { step, source }
}

/// In the init, after pivot_root: opens a new pty in the container's devpts, makes its peer
/// the controlling terminal and stdio, bind-mounts the peer on /dev/console, and returns
/// the master for the runtime.
pub(crate) fn setup_in_container(size: Option<(u16, u16)>) -> Result<OwnedFd, ConsoleError> {
    let master = sys::open(Path::new("/dev/pts/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0)
        .or_else(|_| sys::open(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0))
        .map_err(step("open /dev/pts/ptmx"))?;
    sys::unlockpt(master.as_fd()).map_err(step("unlock pty"))?;
    let peer = sys::ptmx_peer(master.as_fd()).map_err(step("open pty peer (TIOCGPTPEER)"))?;
    if let Some((rows, cols)) = size {
        sys::set_winsize(master.as_fd(), rows, cols).map_err(step("set console size"))?;
    }
    // /dev/console is the pty peer, bound from the fd we hold: no path in the container is
    // trusted for it (CVE-2025-52565).
    let root =
        sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(step("open /"))?;
    if let Ok(console) = create_in_root(root.as_fd(), Path::new("/dev/console"), true) {
        sys::mount(
            Some(fd_path(peer.as_fd()).as_os_str()),
            &fd_path(console.as_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(step("bind pty peer on /dev/console"))?;
    }
    sys::setsid();
    sys::set_controlling_tty(peer.as_fd()).map_err(step("set controlling terminal"))?;
    for fd in 0..3 {
        sys::dup2(peer.as_fd(), fd).map_err(step("dup pty peer to stdio"))?;
    }
    Ok(master)
}

/// Sends the pty master to a caller's unix socket with SCM_RIGHTS.
pub(crate) fn send_to_socket(path: &Path, master: BorrowedFd<'_>) -> Result<(), ConsoleError> {
    let err = |source| ConsoleError::Send {
        path: path.to_path_buf(),
        source,
    };
    let sock = UnixStream::connect(path).map_err(err)?;
    sys::send_with_fds(sock.as_fd(), b"/dev/ptmx", &[master.as_raw_fd()]).map_err(err)
}
