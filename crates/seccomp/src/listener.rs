//! Hand a seccomp listener fd to the agent at `listenerPath` (runtime-spec:
//! SCM_RIGHTS over a unix stream socket, with the container process state JSON).

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};

/// Failures sending the listener fd.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The agent socket could not be reached.
    #[error("connect to seccomp agent socket `{path}`")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state message must carry at least one byte (stream sockets drop
    /// ancillary data sent with no payload).
    #[error("send seccomp listener to `{path}`: empty process state")]
    EmptyState { path: PathBuf },
    /// sendmsg or the rest of the payload failed.
    #[error("send seccomp listener to `{path}`")]
    Send {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn send(
    path: &Path,
    listener: BorrowedFd<'_>,
    state: &[u8],
) -> Result<(), ListenerError> {
    if state.is_empty() {
        return Err(ListenerError::EmptyState { path: path.into() });
    }
    let send_err = |source: std::io::Error| ListenerError::Send {
        path: path.into(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ListenerError::Connect {
        path: path.into(),
        source,
    })?;
    let fds = [listener.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(state)];
    let sent = sendmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| send_err(e.into()))?;
    // A stream socket may take part of a large state; the fd went with the first byte.
    stream.write_all(&state[sent..]).map_err(send_err)?;
    Ok(())
}
