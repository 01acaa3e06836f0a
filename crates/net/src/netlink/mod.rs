//! A small synchronous netlink client: one socket per protocol, a message builder with
//! nested attributes, and an attribute walker. rtnetlink (`route`) and nftables (`nft`)
//! build their messages on top of it. No async runtime, no background threads.

pub(crate) mod attr;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, sockopt,
};
use nix::sys::time::TimeVal;

pub(crate) use attr::{AttrIter, MsgBuilder};

/// `struct nlmsghdr` length.
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;

/// Errors of the netlink transport itself, or an errno the kernel answered with.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Creating or binding the socket failed.
    #[error("open netlink socket")]
    Open(#[source] Errno),
    /// Sending a request failed.
    #[error("send netlink request")]
    Send(#[source] Errno),
    /// Receiving an answer failed (includes the receive timeout).
    #[error("receive netlink answer")]
    Recv(#[source] Errno),
    /// The kernel refused a request.
    #[error("kernel refused `{what}`")]
    Kernel {
        /// The request, e.g. "add link `bveth1234`".
        what: String,
        /// The errno the kernel returned.
        #[source]
        errno: Errno,
    },
    /// The kernel answered with something that does not parse.
    #[error("malformed netlink answer to `{what}`")]
    Malformed {
        /// The request that was answered.
        what: String,
    },
}

impl NetlinkError {
    /// The errno the kernel answered with, if the kernel refused a request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// One netlink answer message: its type, flags, sequence number and payload.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) kind: u16,
    pub(crate) seq: u32,
    pub(crate) payload: Vec<u8>,
}

/// A netlink socket bound in the network namespace of the thread that opened it.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens a socket of `protocol` with a receive timeout so a lost answer cannot hang.
    pub(crate) fn open(protocol: SockProtocol) -> Result<Self, NetlinkError> {
        let fd = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .map_err(NetlinkError::Open)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NetlinkError::Open)?;
        let timeout = TimeVal::from(libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        });
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(NetlinkError::Open)?;
        Ok(Self {
            fd,
            seq: std::process::id().wrapping_mul(7919),
            buf: vec![0; 64 * 1024],
        })
    }

    /// The next sequence number to stamp on a message.
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends raw bytes (one message or a batch).
    pub(crate) fn send_raw(&self, bytes: &[u8]) -> Result<(), NetlinkError> {
        let sent = send(self.fd.as_fd().as_raw_fd(), bytes, MsgFlags::empty())
            .map_err(NetlinkError::Send)?;
        if sent == bytes.len() {
            Ok(())
        } else {
            Err(NetlinkError::Send(Errno::EMSGSIZE))
        }
    }

    /// Receives one datagram and splits it into messages.
    pub(crate) fn recv_messages(&mut self, what: &str) -> Result<Vec<Answer>, NetlinkError> {
        // MSG_TRUNC makes recv return the datagram's real length, so a cut one is caught.
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(NetlinkError::Recv(e)),
            }
        };
        if n > self.buf.len() {
            return Err(NetlinkError::Recv(Errno::EMSGSIZE));
        }
        split_messages(&self.buf[..n], what)
    }

    /// Sends one request with `NLM_F_ACK` and waits for its acknowledgement.
    pub(crate) fn request(&mut self, msg: MsgBuilder, what: &str) -> Result<(), NetlinkError> {
        let seq = self.next_seq();
        let bytes = msg.finish(seq, NLM_F_REQUEST | NLM_F_ACK);
        self.send_raw(&bytes)?;
        loop {
            for answer in self.recv_messages(what)? {
                if answer.seq != seq {
                    continue;
                }
                if answer.kind == NLMSG_ERROR {
                    return check_ack(&answer.payload, what);
                }
            }
        }
    }

    /// Sends a request that has one answer (e.g. a get) and returns the answer's payload.
    pub(crate) fn get(&mut self, msg: MsgBuilder, what: &str) -> Result<Vec<u8>, NetlinkError> {
        let seq = self.next_seq();
        self.send_raw(&msg.finish(seq, NLM_F_REQUEST))?;
        loop {
            for answer in self.recv_messages(what)? {
                if answer.seq != seq {
                    continue;
                }
                if answer.kind == NLMSG_ERROR {
                    // An acknowledgement without data is not an answer either.
                    check_ack(&answer.payload, what)?;
                    return Err(NetlinkError::Malformed {
                        what: what.to_owned(),
                    });
                }
                return Ok(answer.payload);
            }
        }
    }

    /// Sends a dump request and collects the payloads of every answer until `NLMSG_DONE`.
    pub(crate) fn dump(
        &mut self,
        msg: MsgBuilder,
        what: &str,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        let seq = self.next_seq();
        let bytes = msg.finish(seq, NLM_F_REQUEST | NLM_F_DUMP);
        self.send_raw(&bytes)?;
        let mut out = Vec::new();
        loop {
            for answer in self.recv_messages(what)? {
                if answer.seq != seq {
                    continue;
                }
                match answer.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        check_ack(&answer.payload, what)?;
                        return Ok(out);
                    }
                    _ => out.push(answer.payload),
                }
            }
        }
    }
}

/// Splits one datagram into messages, checking every length against the buffer.
pub(crate) fn split_messages(mut data: &[u8], what: &str) -> Result<Vec<Answer>, NetlinkError> {
    let malformed = || NetlinkError::Malformed {
        what: what.to_owned(),
    };
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().map_err(|_| malformed())?) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(malformed());
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes(data[8..12].try_into().map_err(|_| malformed())?);
        out.push(Answer {
            kind,
            seq,
            payload: data[NLMSG_HDRLEN..len].to_vec(),
        });
        let aligned = attr::align4(len).min(data.len());
        data = &data[aligned..];
    }
    Ok(out)
}

/// Reads the errno of an `NLMSG_ERROR` payload: 0 is an acknowledgement.
pub(crate) fn check_ack(payload: &[u8], what: &str) -> Result<(), NetlinkError> {
    let code = payload
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| NetlinkError::Malformed {
            what: what.to_owned(),
        })?;
    if code == 0 {
        Ok(())
    } else {
        Err(NetlinkError::Kernel {
            what: what.to_owned(),
            errno: Errno::from_raw(-code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + payload.len()).unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn splits_two_messages_and_reads_acks() {
        let mut data = message(NLMSG_ERROR, 7, &0i32.to_ne_bytes());
        data.extend(message(NLMSG_ERROR, 8, &(-17i32).to_ne_bytes()));
        let answers = split_messages(&data, "x").unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[1].seq, 8);
        assert!(check_ack(&answers[0].payload, "x").is_ok());
        let err = check_ack(&answers[1].payload, "x").unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EEXIST));
    }

    #[test]
    fn rejects_length_past_buffer() {
        let mut data = message(NLMSG_DONE, 1, &[0; 4]);
        data[0] = 200;
        assert!(split_messages(&data, "x").is_err());
    }
}
