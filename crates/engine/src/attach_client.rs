//! `berth attach`: the client end of a monitor's attach socket (attach.rs). It copies the
//! container's output to our stdout/stderr, our stdin (through the detach-key matcher)
//! to the container, our terminal's size to its pty (on attach and on SIGWINCH), and
//! without a tty forwards the signals we receive (`--sig-proxy`). It ends with the
//! container's exit code, or when the detach keys are typed.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use berth_runtime::container;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use crate::EngineError;
use crate::attach::{AttachError, Frame, MAX_FRAME, TAG_STDIN, recv_msg, send_msg};
use crate::container::Engine;
use crate::record::{ContainerRecord, Status};

/// Docker's default detach sequence.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// What `attach` does.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Send our stdin to the container (if it was created with `-i`); `--no-stdin` clears it.
    pub stdin: bool,
    /// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 to the container (no tty only).
    pub sig_proxy: bool,
    /// `--detach-keys` (Docker's syntax); `None` or empty for ctrl-p,ctrl-q.
    pub detach_keys: Option<String>,
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this code.
    Exited(i32),
    /// The detach keys were typed; the container runs on.
    Detached,
}

/// Matches the detach sequence in the input stream (Docker's rules: a partial match is
/// held back, and sent on as typed once the next key does not match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DetachKeys {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachKeys {
    /// Parses `ctrl-p,ctrl-q`, `a,b`, …: single characters, or `ctrl-` and one of a-z,
    /// `@`, `[`, `\`, `]`, `^`, `_`.
    pub(crate) fn parse(spec: &str) -> Result<DetachKeys, AttachError> {
        let bad = || AttachError::DetachKeys(spec.to_string());
        let mut keys = Vec::new();
        for key in spec.split(',') {
            if let [b] = key.as_bytes() {
                keys.push(*b);
                continue;
            }
            let lower = key.to_ascii_lowercase();
            let Some([c]) = lower.strip_prefix("ctrl-").map(str::as_bytes) else {
                return Err(bad());
            };
            keys.push(match c {
                b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            });
        }
        Ok(DetachKeys { keys, matched: 0 })
    }

    /// Feeds typed input: appends what goes to the container to `out`; true once the
    /// whole sequence was typed (what follows it is dropped).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// Checks a `--detach-keys` value (Docker's syntax; empty means the default).
pub fn check_detach_keys(keys: &str) -> Result<(), AttachError> {
    if !keys.is_empty() {
        DetachKeys::parse(keys)?;
    }
    Ok(())
}

/// Docker's checks before attaching.
fn check_attachable(rec: &ContainerRecord) -> Result<(), AttachError> {
    match rec.state.status {
        Status::Paused => Err(AttachError::Paused(rec.name.clone())),
        _ if !rec.is_active() => Err(AttachError::Stopped(rec.name.clone())),
        _ => Ok(()),
    }
}

impl Engine {
    /// `attach`: serves our stdio for a running container until it exits (its code) or
    /// we detach. The caller puts the terminal in raw mode for a `-t` container.
    pub fn attach(&mut self, key: &str, opts: &AttachOptions) -> Result<AttachEnd, EngineError> {
        let keys = match opts.detach_keys.as_deref() {
            None | Some("") => DEFAULT_DETACH_KEYS,
            Some(k) => k,
        };
        let keys = DetachKeys::parse(keys)?;
        let rec = self.get(key)?;
        check_attachable(&rec)?;
        let dir = self.run_dir(&rec.id);
        let sock = match crate::attach::connect(&dir) {
            Ok(s) => s,
            Err(source) => {
                // It may have exited meanwhile.
                check_attachable(&self.get(&rec.id)?)?;
                let path = dir.join("attach.sock");
                return Err(AttachError::Connect {
                    id: rec.id,
                    path,
                    source,
                }
                .into());
            }
        };
        let tty = rec.config.tty;
        let sigfd = block_signals(tty, opts.sig_proxy && !tty).map_err(|e| AttachError::Io {
            op: "block signals",
            id: rec.id.clone(),
            source: e.into(),
        })?;
        let mut c = Client {
            sock,
            sigfd,
            stdin_open: opts.stdin && rec.config.open_stdin,
            keys,
        };
        if tty {
            c.send_size();
        }
        match c.serve(self, &rec.id)? {
            Some(end) => Ok(end),
            // The monitor went away without a word: what does the record say?
            None => Ok(AttachEnd::Exited(self.wait(&rec.id)?)),
        }
    }
}

/// Blocks the signals the client handles (SIGWINCH with a tty; the proxied ones) into a
/// signalfd.
pub(crate) fn block_signals(tty: bool, proxy: bool) -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    if tty {
        set.add(Signal::SIGWINCH);
    }
    if proxy {
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            set.add(s);
        }
    }
    set.thread_block()?;
    SignalFd::new(&set)
}

/// What is ready in one poll.
#[derive(Debug, Default)]
struct Ready {
    sock: bool,
    stdin: bool,
    signal: bool,
}

/// One attach session.
struct Client {
    sock: OwnedFd,
    sigfd: SignalFd,
    stdin_open: bool,
    keys: DetachKeys,
}

impl Client {
    /// Runs until the container exits (`Exited`), we detach, or the monitor goes away
    /// (`None`).
    fn serve(&mut self, engine: &Engine, id: &str) -> Result<Option<AttachEnd>, EngineError> {
        let mut buf = vec![0u8; MAX_FRAME];
        loop {
            let ready = self.wait();
            if ready.signal {
                self.on_signal(engine, id);
            }
            if ready.stdin && self.on_stdin(&mut buf) {
                return Ok(Some(AttachEnd::Detached));
            }
            if ready.sock {
                let Some(n) = recv_msg(self.sock.as_fd(), &mut buf) else {
                    return Ok(None);
                };
                match Frame::parse(&buf[..n]) {
                    Some(Frame::Stdout(d)) => write_all(std::io::stdout().lock(), d),
                    Some(Frame::Stderr(d)) => write_all(std::io::stderr().lock(), d),
                    Some(Frame::Exit(code)) => return Ok(Some(AttachEnd::Exited(code))),
                    _ => {}
                }
            }
        }
    }

    fn wait(&self) -> Ready {
        let stdin = std::io::stdin();
        let mut fds = vec![
            PollFd::new(self.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
        ];
        if self.stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            return Ready::default();
        }
        let is = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        Ready {
            sock: is(0),
            signal: is(1),
            stdin: is(2),
        }
    }

    /// Our stdin → the container; true when the detach keys were typed. At EOF we stop
    /// reading but stay attached (Docker's `attach`: the container's stdin stays open).
    fn on_stdin(&mut self, buf: &mut [u8]) -> bool {
        let n = match nix::unistd::read(std::io::stdin().as_fd(), &mut buf[1..]) {
            Ok(0) | Err(nix::Error::EBADF | nix::Error::EIO) => 0,
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            self.stdin_open = false;
            return false;
        }
        let mut msg = vec![TAG_STDIN];
        let detached = self.keys.feed(&buf[1..=n], &mut msg);
        if msg.len() > 1 {
            send_msg(self.sock.as_fd(), &msg);
        }
        detached
    }

    fn on_signal(&mut self, engine: &Engine, id: &str) {
        let Ok(Some(info)) = self.sigfd.read_signal() else {
            return;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            return;
        };
        if sig == Signal::SIGWINCH {
            self.send_size();
        } else {
            let _ = container::kill(&engine.runtime_root(), id, sig.as_str(), false);
        }
    }

    /// Our terminal's size → the container's pty.
    fn send_size(&self) {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let term: [BorrowedFd<'_>; 2] = [stdin.as_fd(), stdout.as_fd()];
        if let Some(ws) = term
            .iter()
            .find_map(|t| rustix::termios::tcgetwinsize(t).ok())
        {
            let f = Frame::Resize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            };
            send_msg(self.sock.as_fd(), &f.encode());
        }
    }
}

fn write_all(mut w: impl Write, data: &[u8]) {
    let _ = w.write_all(data);
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> Vec<u8> {
        DetachKeys::parse(s).unwrap().keys
    }

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(keys(DEFAULT_DETACH_KEYS), [16, 17]);
        assert_eq!(
            keys("a,CTRL-A,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_"),
            [b'a', 1, 0, 27, 28, 29, 30, 31]
        );
        for bad in ["", ",", "ab", "ctrl-", "ctrl-1", "ctrl-ab", "alt-x", "a,,b"] {
            assert!(DetachKeys::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn detach_keys_match_in_the_stream() {
        let mut k = DetachKeys::parse(DEFAULT_DETACH_KEYS).unwrap();
        let mut out = Vec::new();
        assert!(!k.feed(b"ls\n", &mut out));
        assert_eq!(out, b"ls\n");
        // A partial match is held back, then sent when the next key differs.
        out.clear();
        assert!(!k.feed(&[16], &mut out));
        assert!(out.is_empty());
        assert!(!k.feed(b"x", &mut out));
        assert_eq!(out, [16, b'x']);
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p goes through, the sequence detaches.
        out.clear();
        assert!(k.feed(&[b'a', 16, 16, 17, b'z'], &mut out));
        assert_eq!(out, [b'a', 16]);
        // Split across reads.
        out.clear();
        assert!(!k.feed(&[16], &mut out));
        assert!(k.feed(&[17], &mut out));
        assert!(out.is_empty());
        let mut one = DetachKeys::parse("q").unwrap();
        out.clear();
        assert!(one.feed(b"aq", &mut out));
        assert_eq!(out, b"a");
    }
}
