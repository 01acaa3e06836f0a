//! The typed protocol between the runtime and the processes it forks: one `Msg` enum,
//! sent as JSON datagrams over a SOCK_SEQPACKET socketpair, with named send/wait calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::sys;

/// Every message either side may send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Msg {
    /// stage-1 → runtime: namespaces joined and, if `map`, a user namespace made that
    /// needs its uid/gid maps written from outside.
    Joined { map: bool },
    /// runtime → stage-1: maps written and cgroup joined; go on.
    Go,
    /// stage-1 → runtime: the init's pid as the runtime sees it.
    InitPid(i32),
    /// init → runtime: the pty master travels with this message.
    Console,
    /// init → runtime: the seccomp notify listener travels with this message.
    SeccompListener,
    /// init → runtime: namespaces and mounts are ready; run prestart/createRuntime hooks.
    Hooks,
    /// runtime → init: hooks done; the state JSON for the init's own hooks.
    HooksDone(String),
    /// init → runtime: set up and waiting for `start` (or, for exec, about to exec).
    Ready,
    /// child → runtime: a step failed; the child exits after sending this.
    Failed(String),
}

/// Why talking to the other side failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync socket: {0}")]
    Io(#[from] io::Error),
    #[error("sync socket: the other side exited before `{expected}`")]
    Closed { expected: &'static str },
    #[error("sync socket: expected `{expected}`, got {got:?}")]
    Unexpected { expected: &'static str, got: String },
    #[error("{0}")]
    ChildFailed(String),
}

/// One end of the socketpair.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// A new connected pair of channels.
pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = sys::seqpacket_pair()?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub(crate) fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        self.send_with_fd(msg, None)
    }

    pub(crate) fn send_with_fd(
        &self,
        msg: &Msg,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), SyncError> {
        let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
        let fds: Vec<i32> = fd.iter().map(AsRawFd::as_raw_fd).collect();
        sys::send_with_fds(self.fd.as_fd(), &body, &fds)?;
        Ok(())
    }

    /// Receives the next message and any fd sent with it; a child's `Failed` becomes an error.
    pub(crate) fn recv(&self, expected: &'static str) -> Result<(Msg, Option<OwnedFd>), SyncError> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, mut fds) = sys::recv_with_fds(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Err(SyncError::Closed { expected });
        }
        let msg: Msg = serde_json::from_slice(&buf[..n]).map_err(io::Error::other)?;
        if let Msg::Failed(why) = msg {
            return Err(SyncError::ChildFailed(why));
        }
        Ok((msg, fds.pop()))
    }

    /// Waits for `InitPid` and returns the pid.
    pub(crate) fn recv_pid(&self, expected: &'static str) -> Result<i32, SyncError> {
        match self.recv(expected)? {
            (Msg::InitPid(pid), _) => Ok(pid),
            (other, _) => Err(SyncError::Unexpected {
                expected,
                got: format!("{other:?}"),
            }),
        }
    }

    /// Waits for exactly `want`.
    pub(crate) fn wait_for(&self, want: &Msg, name: &'static str) -> Result<(), SyncError> {
        let (got, _) = self.recv(name)?;
        if &got == want {
            Ok(())
        } else {
            Err(SyncError::Unexpected {
                expected: name,
                got: format!("{got:?}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross_the_pair() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::InitPid(42)).unwrap();
        assert_eq!(b.recv("pid").unwrap().0, Msg::InitPid(42));
        let f = std::fs::File::open("/dev/null").unwrap();
        b.send_with_fd(&Msg::Console, Some(f.as_fd())).unwrap();
        let (m, fd) = a.recv("console").unwrap();
        assert_eq!(m, Msg::Console);
        assert!(fd.is_some());
        a.send(&Msg::Failed("boom".into())).unwrap();
        assert!(matches!(b.recv("x"), Err(SyncError::ChildFailed(w)) if w == "boom"));
        drop(a);
        assert!(matches!(b.recv("ready"), Err(SyncError::Closed { .. })));
    }
}
