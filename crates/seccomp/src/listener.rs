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

#[cfg(test)]
mod tests {
    use std::io::{IoSliceMut, Read, Write};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{ControlMessageOwned, recvmsg};

    use super::*;

    #[test]
    fn listener_fd_and_state_arrive_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&path).expect("bind agent socket");
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        let state = br#"{"fds":["seccompFd"]}"#;
        send(&path, writer.as_fd(), state).expect("send listener");
        drop(writer);
        let (conn, _) = agent.accept().expect("accept");
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let len = msg.bytes;
        let fds: Vec<RawFd> = msg
            .cmsgs()
            .expect("cmsgs")
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds,
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(&buf[..len], state);
        assert_eq!(fds.len(), 1);
        // SAFETY: SCM_RIGHTS installed this fd in our process; nothing else owns it.
        let received = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        // The received fd is the pipe's write end: data written to it comes out.
        std::fs::File::from(received)
            .write_all(b"x")
            .expect("write");
        let mut out = [0u8; 1];
        reader.read_exact(&mut out).expect("read");
        assert_eq!(&out, b"x");
    }

    #[test]
    fn missing_agent_and_empty_state_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_r, w) = std::io::pipe().expect("pipe");
        let missing = dir.path().join("none.sock");
        let err = send(&missing, w.as_fd(), b"{}").expect_err("no agent");
        assert!(matches!(err, ListenerError::Connect { .. }));
        assert!(err.to_string().contains("none.sock"));
        let err = send(&missing, w.as_fd(), b"").expect_err("empty state");
        assert!(matches!(err, ListenerError::EmptyState { .. }));
    }
}
