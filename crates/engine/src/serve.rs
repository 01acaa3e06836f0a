//! The monitor's I/O: the container's stdio (pipes, or the pty the runtime made), copied
//! to the json-file log, to the `berth` process attached through inherited stdio (`run`,
//! `start -a`) and to the clients of the attach socket (`attach`, attach.rs); input from
//! the attached stdin and the clients; and the wait for the container's init.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{dup, dup2_stderr, dup2_stdin, dup2_stdout, pipe2};

use crate::attach::{Frame, Hub, TAG_STDERR, TAG_STDOUT};
use crate::attach_client::DetachKeys;
use crate::logs::LineWriter;
use crate::record::ContainerRecord;
use crate::{EngineError, io_err};

fn nix_io(op: &'static str) -> impl FnOnce(nix::Error) -> EngineError {
    move |e| io_err(op)(e.into())
}

/// The container's stdio as the monitor holds it.
#[derive(Debug)]
pub(crate) struct Stdio {
    /// The attached caller's stdin/stdout/stderr (dups of our own 0/1/2).
    attach_in: Option<OwnedFd>,
    attach_out: Option<OwnedFd>,
    attach_err: Option<OwnedFd>,
    /// Our ends of the container's pipes (not used with a pty).
    to_stdin: Option<OwnedFd>,
    from_stdout: Option<OwnedFd>,
    from_stderr: Option<OwnedFd>,
    /// The container's ends, closed once it is created.
    theirs: Vec<OwnedFd>,
    tty: bool,
    /// The detach keys on the attached stdin, and where to report a detach (the status
    /// pipe of the `berth` process attached).
    keys: Option<DetachKeys>,
    report: Option<File>,
}

impl Stdio {
    /// Saves our stdio (the attached caller's) and puts the container's ends of new pipes
    /// on fds 0-2, where the runtime's `create` passes them to the init.
    /// With `attach_stdin` false (`start -a`) the container's stdin pipe stays open for
    /// later attach clients, but our stdin is not read.
    pub(crate) fn redirect(
        rec: &ContainerRecord,
        attach: bool,
        attach_stdin: bool,
    ) -> Result<Stdio, EngineError> {
        let mut s = Stdio {
            attach_in: None,
            attach_out: None,
            attach_err: None,
            to_stdin: None,
            from_stdout: None,
            from_stderr: None,
            theirs: Vec::new(),
            tty: rec.config.tty,
            keys: None,
            report: None,
        };
        if attach {
            if rec.config.open_stdin && attach_stdin {
                s.attach_in = Some(dup(std::io::stdin()).map_err(nix_io("dup stdin"))?);
            }
            s.attach_out = Some(dup(std::io::stdout()).map_err(nix_io("dup stdout"))?);
            s.attach_err = Some(dup(std::io::stderr()).map_err(nix_io("dup stderr"))?);
        }
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(io_err("open `/dev/null`"))?;
        if s.tty {
            // The runtime gives the init the pty's slave side; ours stay quiet.
            for f in [dup2_stdin, dup2_stdout, dup2_stderr] {
                f(&null).map_err(nix_io("redirect stdio"))?;
            }
            return Ok(s);
        }
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        if rec.config.open_stdin {
            let (r, w) = pipe2(flags).map_err(nix_io("create stdin pipe"))?;
            dup2_stdin(&r).map_err(nix_io("redirect stdin"))?;
            s.to_stdin = Some(w);
            s.theirs.push(r);
        } else {
            dup2_stdin(&null).map_err(nix_io("redirect stdin"))?;
        }
        let (r, w) = pipe2(flags).map_err(nix_io("create stdout pipe"))?;
        dup2_stdout(&w).map_err(nix_io("redirect stdout"))?;
        s.from_stdout = Some(r);
        s.theirs.push(w);
        let (r, w) = pipe2(flags).map_err(nix_io("create stderr pipe"))?;
        dup2_stderr(&w).map_err(nix_io("redirect stderr"))?;
        s.from_stderr = Some(r);
        s.theirs.push(w);
        Ok(s)
    }

    /// Typing `keys` on the attached stdin detaches: the caller gets `detached` on
    /// `report` and is no longer served.
    pub(crate) fn detach_with(&mut self, keys: Option<DetachKeys>, report: Option<File>) {
        self.keys = keys;
        self.report = report;
    }

    /// After `create`: only the container holds its ends now, so EOF means it is done.
    pub(crate) fn after_create(mut self) -> Stdio {
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            let _ = dup2_stdin(&null);
            let _ = dup2_stdout(&null);
            let _ = dup2_stderr(&null);
        }
        self.theirs.clear();
        self
    }
}

/// Copies `data` to the attached fd; on error (the caller went away) stops attaching.
fn forward(fd: &mut Option<OwnedFd>, data: &[u8]) {
    let Some(f) = fd else { return };
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(f.as_fd(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::Error::EINTR) => {}
            Err(_) => {
                *fd = None;
                return;
            }
        }
    }
}

/// Reaps children; returns the init's exit code once it has exited.
fn reap(init: i32) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) if pid.as_raw() == init => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init => {
                code = Some(128 + sig as i32);
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// Indexes of the polled fds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    Signal,
    Out,
    Err,
    In,
    /// The attach socket has clients waiting.
    Accept,
    /// An attach client sent a frame (or went away).
    Client(usize),
}

/// The state of one `serve`: the container's output ends, the log writers, the exit code.
/// How long a container runs with nothing to serve before its monitor trims its memory.
const SETTLE_MS: u16 = 100;

struct Server {
    init: i32,
    s: Stdio,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    w_out: LineWriter,
    w_err: LineWriter,
    log: Option<File>,
    code: Option<i32>,
    /// The attach socket and its clients.
    hub: Option<Hub>,
    buf: Vec<u8>,
}

impl Server {
    /// Polls; returns the ready sources, or `None` once draining after the exit timed out.
    /// The first time the container has run for [`SETTLE_MS`] with nothing to do, calls
    /// `on_settle` (the monitor drops its database connection) and gives the memory of
    /// the monitor's start-up back (`settled`): not before, so a container that exits at
    /// once (`run --rm … true`) is reaped, and removed, without waiting for either.
    fn wait(
        &self,
        sigfd: &OwnedFd,
        idle_polls: &mut u32,
        settled: &mut bool,
        on_settle: &mut dyn FnMut(),
    ) -> Option<Vec<Src>> {
        let mut fds: Vec<(Src, BorrowedFd<'_>)> = vec![(Src::Signal, sigfd.as_fd())];
        if let Some(f) = &self.out {
            fds.push((Src::Out, f.as_fd()));
        }
        if let Some(f) = &self.err {
            fds.push((Src::Err, f.as_fd()));
        }
        if self.code.is_none()
            && let Some(f) = &self.s.attach_in
        {
            fds.push((Src::In, f.as_fd()));
        }
        if self.code.is_none()
            && let Some(h) = &self.hub
        {
            fds.push((Src::Accept, h.listener()));
            fds.extend(h.clients().map(|(i, f)| (Src::Client(i), f)));
        }
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(_, f)| PollFd::new(*f, PollFlags::POLLIN))
            .collect();
        // Once the init is gone, what is left in the pipes is drained with a bound: a
        // process outside the container's pid namespace may hold them open.
        let timeout = if self.code.is_some() {
            PollTimeout::from(200u16)
        } else if !*settled {
            PollTimeout::from(SETTLE_MS)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut pfds, timeout) {
            Ok(0) if self.code.is_none() => {
                *settled = true;
                on_settle();
                crate::sys::trim_heap();
                crate::sys::drop_clean_file_mappings();
                Some(Vec::new())
            }
            Ok(0) => {
                *idle_polls += 1;
                (*idle_polls <= 10).then(Vec::new)
            }
            Ok(_) => Some(
                pfds.iter()
                    .zip(&fds)
                    .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, (src, _))| *src)
                    .collect(),
            ),
            Err(_) => Some(Vec::new()),
        }
    }

    /// A signal: SIGWINCH resizes the pty, SIGCHLD reaps (and may end the container).
    fn on_signal(&mut self, sigfd: &OwnedFd) {
        let n = nix::unistd::read(sigfd.as_fd(), &mut self.buf[..128]).unwrap_or(0);
        // ssi_signo is the first field of signalfd_siginfo.
        let b = &self.buf;
        let signo = (n >= 4).then(|| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        if signo == Some(libc::SIGWINCH) {
            resize(&self.s, self.out.as_ref());
            return;
        }
        let reaped = reap(self.init);
        if self.code.is_none() {
            self.code = reaped;
        }
    }

    /// Output of the container: to the attached caller, the attach clients and the log.
    fn on_output(&mut self, src: Src) {
        let slot = if src == Src::Out {
            &mut self.out
        } else {
            &mut self.err
        };
        // Read behind a one-byte gap: the frame's tag goes there.
        let n = match slot
            .as_ref()
            .map(|f| nix::unistd::read(f.as_fd(), &mut self.buf[1..]))
        {
            Some(Ok(n)) if n > 0 => n,
            Some(Err(nix::Error::EINTR | nix::Error::EAGAIN)) => return,
            _ => {
                *slot = None;
                return;
            }
        };
        self.buf[0] = if src == Src::Out {
            TAG_STDOUT
        } else {
            TAG_STDERR
        };
        if let Some(h) = &mut self.hub {
            h.broadcast(&self.buf[..=n]);
        }
        let data = &self.buf[1..=n];
        if src == Src::Out {
            forward(&mut self.s.attach_out, data);
            self.w_out.push(data, &mut self.log);
        } else {
            forward(&mut self.s.attach_err, data);
            self.w_err.push(data, &mut self.log);
        }
    }

    /// A frame from attach client `i`: input for the container or its pty's new size.
    fn on_client(&mut self, i: usize) {
        let Some(h) = &mut self.hub else { return };
        let Some(n) = h.receive(i, &mut self.buf) else {
            return;
        };
        match Frame::parse(&self.buf[..n]) {
            Some(Frame::Stdin(data)) => write_input(&mut self.s, self.out.as_ref(), data),
            Some(Frame::Resize { rows, cols }) if self.s.tty => {
                if let Some(m) = &self.out {
                    let ws = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(m, ws);
                }
            }
            _ => {}
        }
    }
}

/// Serves the container until its init exits and its output is drained; returns the
/// exit code (128+N for signal N) and the attach socket, whose clients are told the code
/// once it is recorded.
pub(crate) fn serve(
    init: i32,
    sigfd: &OwnedFd,
    mut s: Stdio,
    console: Option<OwnedFd>,
    log: Option<File>,
    hub: Option<Hub>,
    on_settle: &mut dyn FnMut(),
) -> (i32, Option<Hub>) {
    let out = if s.tty { console } else { s.from_stdout.take() };
    let err = s.from_stderr.take();
    resize(&s, out.as_ref());
    let mut sv = Server {
        init,
        s,
        out,
        err,
        w_out: LineWriter::new("stdout"),
        w_err: LineWriter::new("stderr"),
        log,
        code: None,
        hub,
        buf: vec![0u8; crate::attach::MAX_FRAME],
    };
    let (mut idle_polls, mut settled) = (0, false);
    while sv.code.is_none() || sv.out.is_some() || sv.err.is_some() {
        let Some(ready) = sv.wait(sigfd, &mut idle_polls, &mut settled, on_settle) else {
            break;
        };
        for src in ready {
            match src {
                Src::Signal => sv.on_signal(sigfd),
                Src::Out | Src::Err => sv.on_output(src),
                Src::In => copy_input(&mut sv.s, sv.out.as_ref(), &mut sv.buf),
                Src::Accept => sv.hub.iter_mut().for_each(Hub::accept),
                Src::Client(i) => sv.on_client(i),
            }
        }
        sv.hub.iter_mut().for_each(Hub::compact);
    }
    sv.w_out.flush(&mut sv.log);
    sv.w_err.flush(&mut sv.log);
    (sv.code.unwrap_or(255), sv.hub)
}

/// Gives the container's pty the attached terminal's size.
fn resize(s: &Stdio, master: Option<&OwnedFd>) {
    if s.tty
        && let (Some(m), Some(a)) = (master, s.attach_in.as_ref().or(s.attach_out.as_ref()))
        && let Ok(ws) = rustix::termios::tcgetwinsize(a)
    {
        let _ = rustix::termios::tcsetwinsize(m, ws);
    }
}

/// Attached stdin → the container's stdin pipe or pty. EOF closes the pipe.
fn copy_input(s: &mut Stdio, console: Option<&OwnedFd>, buf: &mut [u8]) {
    let Some(input) = &s.attach_in else { return };
    let n = match nix::unistd::read(input.as_fd(), buf) {
        Ok(n) => n,
        Err(nix::Error::EINTR | nix::Error::EAGAIN) => return,
        Err(_) => 0,
    };
    if n == 0 {
        s.attach_in = None;
        s.to_stdin = None;
        return;
    }
    let Some(keys) = &mut s.keys else {
        write_input(s, console, &buf[..n]);
        return;
    };
    let mut input = Vec::with_capacity(n);
    let detached = keys.feed(&buf[..n], &mut input);
    write_input(s, console, &input);
    if detached {
        // The caller goes; the container runs on (its stdin stays open).
        s.attach_in = None;
        s.attach_out = None;
        s.attach_err = None;
        s.keys = None;
        if let Some(mut r) = s.report.take() {
            let _ = r.write_all(b"detached\n");
        }
    }
}

/// Input for the container: to its pty, or its stdin pipe (if it has one).
fn write_input(s: &mut Stdio, console: Option<&OwnedFd>, data: &[u8]) {
    let mut target = if s.tty {
        console.and_then(|c| dup(c).ok())
    } else {
        s.to_stdin.take()
    };
    forward(&mut target, data);
    if !s.tty {
        s.to_stdin = target;
    }
}
