//! Attaching to a running container after its start: the monitor listens on a unix
//! SEQPACKET socket, `<runroot>/containers/<id>/attach.sock` (directory 0700, socket 0600),
//! served from its single-threaded poll loop (serve.rs). Each message is one frame: a
//! one-byte tag, then the payload. The monitor sends the container's output
//! (`Stdout`/`Stderr`) to every client and, once the init has exited and its output is
//! drained, `Exit` with the exit code; clients send `Stdin` data and pty `Resize`s. A
//! client that goes away just stops receiving: the container's stdin stays open (Docker
//! closes it only for the client that started the container, `run -i`/`start -ai`).
//! The socket and its directory go when the container exits (or with `rm`/`refresh`
//! after a crash). The client end is attach_client.rs.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, accept4, bind, listen, recv,
    send, socket,
};

use crate::container::Engine;

/// The socket's file name inside the container's runroot directory.
const SOCKET_NAME: &str = "attach.sock";

/// How many clients may be attached at once; more are refused (closed at once).
const MAX_CLIENTS: usize = 64;

/// The largest frame: a tag and the monitor's 32 KiB read buffer.
pub(crate) const MAX_FRAME: usize = 1 + 32 * 1024;

/// The one-byte tags that start every frame.
pub(crate) const TAG_STDIN: u8 = 0;
pub(crate) const TAG_STDOUT: u8 = 1;
pub(crate) const TAG_STDERR: u8 = 2;
const TAG_EXIT: u8 = 3;
const TAG_RESIZE: u8 = 4;

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("You cannot attach to a stopped container, start it first")]
    Stopped(String),
    #[error("You cannot attach to a paused container, unpause it first")]
    Paused(String),
    #[error(
        "invalid detach keys `{0}`: use single characters or ctrl-<a-z, @, [, \\, ], ^, _>, separated by commas"
    )]
    DetachKeys(String),
    #[error("listen on `{path}`")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connect to the monitor of container `{id}` at `{path}`")]
    Connect {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} for container `{id}`")]
    Io {
        op: &'static str,
        id: String,
        source: std::io::Error,
    },
}

/// One message on the attach socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Stdin(&'a [u8]),
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    Exit(i32),
    Resize { rows: u16, cols: u16 },
}

impl<'a> Frame<'a> {
    /// Parses one received message; `None` for an unknown tag or a short payload.
    pub(crate) fn parse(msg: &'a [u8]) -> Option<Frame<'a>> {
        let (&tag, rest) = msg.split_first()?;
        Some(match tag {
            TAG_STDIN => Frame::Stdin(rest),
            TAG_STDOUT => Frame::Stdout(rest),
            TAG_STDERR => Frame::Stderr(rest),
            TAG_EXIT => Frame::Exit(i32::from_le_bytes(rest.try_into().ok()?)),
            TAG_RESIZE => {
                let b: [u8; 4] = rest.try_into().ok()?;
                Frame::Resize {
                    rows: u16::from_le_bytes([b[0], b[1]]),
                    cols: u16::from_le_bytes([b[2], b[3]]),
                }
            }
            _ => return None,
        })
    }

    /// The frame as one message.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (tag, payload): (u8, Vec<u8>) = match self {
            Frame::Stdin(d) => (TAG_STDIN, d.to_vec()),
            Frame::Stdout(d) => (TAG_STDOUT, d.to_vec()),
            Frame::Stderr(d) => (TAG_STDERR, d.to_vec()),
            Frame::Exit(c) => (TAG_EXIT, c.to_le_bytes().to_vec()),
            Frame::Resize { rows, cols } => {
                let mut p = rows.to_le_bytes().to_vec();
                p.extend_from_slice(&cols.to_le_bytes());
                (TAG_RESIZE, p)
            }
        };
        let mut msg = Vec::with_capacity(1 + payload.len());
        msg.push(tag);
        msg.extend_from_slice(&payload);
        msg
    }
}

impl Engine {
    /// Removes a container's run directory (after a crash of its monitor, or `rm`), once
    /// its rootfs is unmounted: never recursively, so a rootfs still mounted (an unmount
    /// that failed) is left alone, with the directory.
    pub(crate) fn remove_run_dir(&self, id: &str) {
        let _ = crate::prepare::remove_shallow(&self.run_dir(id));
    }
}

/// A unix socket address for `name` in the directory `dir` refers to, through
/// `/proc/self/fd`: the real path may be longer than a socket address holds (108 bytes).
fn address_in(dir: &OwnedFd, name: &str) -> nix::Result<UnixAddr> {
    UnixAddr::new(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()).as_str())
}

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(f.into())
}

/// Connects to a monitor's attach socket in `dir` (blocking I/O).
pub(crate) fn connect(dir: &Path) -> std::io::Result<OwnedFd> {
    let d = open_dir(dir)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    nix::sys::socket::connect(sock.as_raw_fd(), &address_in(&d, SOCKET_NAME)?)?;
    Ok(sock)
}

/// Sends one message, whole; false if the peer is gone.
pub(crate) fn send_msg(fd: BorrowedFd<'_>, msg: &[u8]) -> bool {
    loop {
        match send(fd.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return true,
            Err(nix::Error::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Receives one message into `buf`; `None` once the peer is gone (or on an error).
pub(crate) fn recv_msg(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Option<usize> {
    loop {
        match recv(fd.as_raw_fd(), buf, MsgFlags::empty()) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
            Err(_) => return None,
        }
    }
}

/// The monitor's end: the listening socket and the clients attached through it. Dropping
/// it removes the socket and its directory.
#[derive(Debug)]
pub(crate) struct Hub {
    listener: OwnedFd,
    /// `None` marks a client that went away, dropped at the next [`Hub::compact`].
    clients: Vec<Option<OwnedFd>>,
    dir: PathBuf,
}

impl Hub {
    /// Makes `dir` (0700) and listens on its socket (0600), replacing a stale one.
    pub(crate) fn listen(dir: &Path) -> Result<Hub, AttachError> {
        let path = dir.join(SOCKET_NAME);
        let err = |source: std::io::Error| AttachError::Listen {
            path: path.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        // A directory left by a crash keeps whatever mode it had: set ours.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        let _ = fs::remove_file(&path);
        let d = open_dir(dir).map_err(err)?;
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let listener = socket(AddressFamily::Unix, SockType::SeqPacket, flags, None)
            .map_err(|e| err(e.into()))?;
        let addr = address_in(&d, SOCKET_NAME).map_err(|e| err(e.into()))?;
        bind(listener.as_raw_fd(), &addr).map_err(|e| err(e.into()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(err)?;
        let backlog = Backlog::new(16).map_err(|e| err(e.into()))?;
        listen(&listener, backlog).map_err(|e| err(e.into()))?;
        Ok(Hub {
            listener,
            clients: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// The listening socket, to poll.
    pub(crate) fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The attached clients by index, to poll.
    pub(crate) fn clients(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.as_fd())))
    }

    /// Accepts the waiting clients (their sockets block: output is never dropped).
    pub(crate) fn accept(&mut self) {
        while let Ok(c) = accept4(self.listener.as_fd(), SockFlag::SOCK_CLOEXEC) {
            if self.clients.len() < MAX_CLIENTS {
                self.clients.push(Some(c));
            }
        }
    }

    /// Drops the clients that went away (indexes change).
    pub(crate) fn compact(&mut self) {
        self.clients.retain(Option::is_some);
    }

    /// Receives one message from client `i` into `buf`; `None` when it went away.
    pub(crate) fn receive(&mut self, i: usize, buf: &mut [u8]) -> Option<usize> {
        let slot = self.clients.get_mut(i)?;
        let n = recv_msg(slot.as_ref()?.as_fd(), buf);
        if n.is_none() {
            *slot = None;
        }
        n
    }

    /// Sends one message to every client, forgetting those that went away.
    pub(crate) fn broadcast(&mut self, msg: &[u8]) {
        for slot in &mut self.clients {
            if let Some(c) = slot
                && !send_msg(c.as_fd(), msg)
            {
                *slot = None;
            }
        }
    }

    /// Tells every client the container's exit code.
    pub(crate) fn exited(&mut self, code: i32) {
        self.broadcast(&Frame::Exit(code).encode());
    }
}

impl Drop for Hub {
    /// Removes the socket; the directory is the container's run directory, which holds
    /// its rootfs mount point too and goes with the container.
    fn drop(&mut self) {
        let _ = fs::remove_file(self.dir.join(SOCKET_NAME));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Stdin(b"ls\n"),
            Frame::Stdout(b"out"),
            Frame::Stderr(b""),
            Frame::Exit(-3),
            Frame::Exit(137),
            Frame::Resize { rows: 24, cols: 80 },
        ] {
            assert_eq!(Frame::parse(&f.encode()), Some(f));
        }
        assert_eq!(Frame::parse(&[]), None);
        assert_eq!(Frame::parse(&[9, 1]), None);
        assert_eq!(Frame::parse(&[TAG_EXIT, 1, 2]), None);
        assert_eq!(Frame::parse(&[TAG_RESIZE, 1, 2, 3]), None);
    }

    #[test]
    fn hub_serves_clients_through_a_long_path() {
        let tmp = tempfile::tempdir().unwrap();
        // Longer than a socket address holds.
        let dir = tmp.path().join("x".repeat(120)).join("c");
        let mut hub = Hub::listen(&dir).unwrap();
        let mode = fs::metadata(dir.join(SOCKET_NAME)).unwrap().permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
        let a = connect(&dir).unwrap();
        let b = connect(&dir).unwrap();
        hub.accept();
        assert_eq!(hub.clients().count(), 2);
        hub.broadcast(&Frame::Stdout(b"hi").encode());
        let mut buf = [0u8; 64];
        for c in [&a, &b] {
            let n = recv_msg(c.as_fd(), &mut buf).unwrap();
            assert_eq!(Frame::parse(&buf[..n]), Some(Frame::Stdout(b"hi")));
        }
        assert!(send_msg(a.as_fd(), &Frame::Stdin(b"x").encode()));
        let n = hub.receive(0, &mut buf).unwrap();
        assert_eq!(Frame::parse(&buf[..n]), Some(Frame::Stdin(b"x")));
        drop(a);
        assert_eq!(hub.receive(0, &mut buf), None);
        hub.compact();
        assert_eq!(hub.clients().count(), 1);
        drop(hub);
        // The socket goes with the hub; the directory (the container's run directory)
        // stays for its owner to remove.
        assert!(!dir.join(SOCKET_NAME).exists());
        assert!(dir.is_dir());
    }
}
