//! `berth attach` and `start -a`/`-i`/`-ai` through the real `berth` binary (root): live
//! output and input over the monitor's attach socket, a pty session with the window size
//! and ctrl-p ctrl-q, exit codes, signal proxying, two clients at once, Docker's error for
//! a stopped container. Each test checks that `rm -f` leaves nothing behind, the attach
//! socket's directory included.

mod engine;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use engine::{Env, can_run, err, out, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// An `attach` (or `start`) process with piped stdio; its output collected by a thread.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<String>>,
}

impl Session {
    fn spawn(env: &Env, args: &[&str]) -> Result<Session> {
        let mut child = env
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let seen = Arc::new(Mutex::new(String::new()));
        for mut r in [
            Box::new(child.stdout.take().context("stdout")?) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = r.read(&mut buf) {
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Session { child, stdin, seen })
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    fn has(&self, want: &str) -> bool {
        self.seen().contains(want)
    }

    fn wait_output(&self, want: &str) -> Result<()> {
        wait_for(
            &format!("`{want}` from attach (got {:?})", self.seen()),
            || Ok(self.has(want)),
        )
    }

    fn write(&mut self, text: &str) -> Result<()> {
        let w = self.stdin.as_mut().context("stdin closed")?;
        w.write_all(text.as_bytes())?;
        w.flush()?;
        Ok(())
    }

    /// Its exit code, waiting at most 30 s.
    fn exit_code(&mut self) -> Result<Option<i32>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("attach did not end; saw {:?}", self.seen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `rm -f` of everything leaves nothing, and no attach socket directory either.
fn assert_clean(env: &Env) -> Result<()> {
    env.assert_clean_after_rm(&[])?;
    let left: Vec<_> = fs::read_dir(env.runroot().join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "attach directories left: {left:?}");
    Ok(())
}

fn running(env: &Env, name: &str) -> Result<bool> {
    Ok(env
        .ok(&["inspect", "--format", "{{.State.Running}}", name])?
        .trim()
        == "true")
}

#[test]
fn attach_sends_input_and_sees_only_live_output() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo before; cat",
    ])?;
    let id = id.trim();
    wait_for("the first line in the log", || {
        Ok(env.ok(&["logs", "c1"])?.contains("before"))
    })?;
    let sock = env
        .runroot()
        .join("containers")
        .join(id)
        .join("attach.sock");
    let mode = fs::metadata(&sock).context("the attach socket")?;
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let mut s = Session::spawn(&env, &["attach", "c1"])?;
    s.write("hello\n")?;
    s.wait_output("hello")?;
    s.write("later\n")?;
    s.wait_output("later")?;
    assert!(
        !s.has("before"),
        "attach shows live output, not the log: {:?}",
        s.seen()
    );
    // Our stdin's end leaves the container's stdin open (Docker's attach): cat runs on.
    drop(s.stdin.take());
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(&env, "c1")?);
    assert_eq!(
        s.child.try_wait()?,
        None,
        "attach stays attached after stdin's EOF"
    );
    // The container's end ends the attach, with its code (SIGKILL: 137).
    env.ok(&["kill", "c1"])?;
    assert_eq!(s.exit_code()?, Some(137), "{:?}", s.seen());
    assert!(
        !running(&env, "c1")?,
        "the exit is recorded when attach returns"
    );
    assert!(!sock.exists(), "the socket goes with the container's exit");
    let o = env.berth(&["attach", "c1"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("You cannot attach to a stopped container, start it first"),
        "{}",
        err(&o)
    );
    env.ok(&["create", "--name", "new", "busybox", "true"])?;
    let o = env.berth(&["attach", "new"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("You cannot attach to a stopped container"),
        "{}",
        err(&o)
    );
    let o = env.berth(&["attach", "--detach-keys", "ctrl-1", "new"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("invalid detach keys"), "{}", err(&o));
    assert_clean(&env)
}

#[test]
fn two_clients_both_see_the_output_and_the_exit_code() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let script = "while read l; do echo \"got $l\"; [ \"$l\" = bye ] && exit 3; done";
    env.ok(&[
        "run", "-d", "-i", "--name", "c1", "busybox", "sh", "-c", script,
    ])?;
    let watcher = Session::spawn(&env, &["attach", "--no-stdin", "c1"])?;
    let mut typist = Session::spawn(&env, &["attach", "c1"])?;
    // The watcher is attached once it sees what the typist sends.
    let mut n = 0;
    wait_for("the watcher to see input", || {
        n += 1;
        typist.write(&format!("sync-{n}\n"))?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(watcher.has("got sync-"))
    })?;
    typist.write("both\n")?;
    watcher.wait_output("got both")?;
    typist.wait_output("got both")?;
    typist.write("bye\n")?;
    let mut watcher = watcher;
    assert_eq!(typist.exit_code()?, Some(3), "{:?}", typist.seen());
    assert_eq!(watcher.exit_code()?, Some(3), "{:?}", watcher.seen());
    assert!(watcher.has("got bye"));
    assert_clean(&env)
}

#[test]
fn sig_proxy_forwards_signals_without_a_tty() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let script = "trap 'echo got-term; exit 9' TERM; while true; do echo tick; sleep 0.1; done";
    env.ok(&["run", "-d", "--name", "c1", "busybox", "sh", "-c", script])?;
    let mut s = Session::spawn(&env, &["attach", "c1"])?;
    s.wait_output("tick")?;
    let pid = Pid::from_raw(i32::try_from(s.child.id())?);
    kill(pid, Signal::SIGTERM)?;
    assert_eq!(s.exit_code()?, Some(9), "{:?}", s.seen());
    assert!(s.has("got-term"));
    // Without the proxy our SIGTERM ends only the attach.
    env.ok(&["start", "c1"])?;
    let mut s = Session::spawn(&env, &["attach", "--sig-proxy=false", "c1"])?;
    s.wait_output("tick")?;
    kill(Pid::from_raw(i32::try_from(s.child.id())?), Signal::SIGTERM)?;
    assert_eq!(s.exit_code()?, None, "killed by the signal itself");
    assert!(running(&env, "c1")?);
    assert_clean(&env)
}

#[test]
fn start_ai_and_start_i_round_trip() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let script = "read l; echo \"got $l\"; exit 5";
    env.ok(&[
        "create", "-i", "--name", "c1", "busybox", "sh", "-c", script,
    ])?;
    for flags in [&["-ai"][..], &["-i"], &["-a", "-i"]] {
        let mut args = vec!["start"];
        args.extend_from_slice(flags);
        args.push("c1");
        let mut s = Session::spawn(&env, &args)?;
        s.write("ping\n")?;
        assert_eq!(s.exit_code()?, Some(5), "{flags:?}: {:?}", s.seen());
        assert!(s.has("got ping"), "{flags:?}: {:?}", s.seen());
    }
    // `start -a` alone leaves the container's stdin open, for a later `attach`.
    let mut s = Session::spawn(&env, &["start", "-a", "c1"])?;
    wait_for("the container to run", || running(&env, "c1"))?;
    let mut a = Session::spawn(&env, &["attach", "c1"])?;
    let mut n = 0;
    wait_for("input through attach", || {
        n += 1;
        a.write(&format!("via-attach-{n}\n"))?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(s.has("got via-attach-"))
    })?;
    assert_eq!(s.exit_code()?, Some(5), "{:?}", s.seen());
    assert_eq!(a.exit_code()?, Some(5), "{:?}", a.seen());
    assert_clean(&env)
}

/// Reads from the pty master until `want` shows up (or 20 s pass).
fn read_until(master: &OwnedFd, seen: &mut String, want: &str) -> Result<()> {
    engine::read_pty(master, seen, want, Duration::from_secs(20))
}

/// Types `line` into the pty again and again (input before the attach is connected is
/// lost) until `want` shows up; at most 20 s.
fn type_until(master: &OwnedFd, seen: &mut String, line: &str, want: &str) -> Result<()> {
    let mut m = fs::File::from(master.try_clone()?);
    for _ in 0..40 {
        m.write_all(line.as_bytes())?;
        if engine::read_pty(master, seen, want, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
    }
    bail!("no `{want}` on the pty after typing {line:?}; got {seen:?}")
}

/// `attach NAME` with its stdio on a new pty of `rows`x`cols`; the child and the master.
fn attach_on_pty(env: &Env, name: &str, rows: u16, cols: u16) -> Result<(Child, OwnedFd)> {
    let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None)?;
    let slave = fs::File::from(pty.slave);
    let child = env
        .cmd(&["attach", name])
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave)
        .spawn()?;
    Ok((child, pty.master))
}

fn wait_exit(child: &mut Child) -> Result<Option<i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("attach did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn attach_on_a_pty_resizes_detaches_and_returns_the_exit_code() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    env.ok(&["run", "-dit", "--name", "t1", "busybox", "sh"])?;
    wait_for("the shell to run", || running(&env, "t1"))?;
    let (mut child, master) = attach_on_pty(&env, "t1", 33, 97)?;
    let mut m = fs::File::from(master.try_clone()?);
    let mut seen = String::new();
    // The window size is sent on attach, and on SIGWINCH.
    type_until(&master, &mut seen, "echo size-$(stty size)\n", "size-33 97")?;
    set_winsize(&master, &winsize(40, 120))?;
    kill(Pid::from_raw(i32::try_from(child.id())?), Signal::SIGWINCH)?;
    type_until(
        &master,
        &mut seen,
        "echo size-$(stty size)\n",
        "size-40 120",
    )?;
    m.write_all(b"echo sum-$((40+2))\n")?;
    read_until(&master, &mut seen, "sum-42")?;
    // ctrl-p ctrl-q detaches; the container runs on.
    m.write_all(&[0x10, 0x11])?;
    assert_eq!(wait_exit(&mut child)?, Some(0), "{seen:?}");
    assert!(running(&env, "t1")?);
    // Attach again and end the shell: attach exits with its code.
    let (mut child, master) = attach_on_pty(&env, "t1", 24, 80)?;
    let mut m = fs::File::from(master.try_clone()?);
    let mut seen = String::new();
    type_until(&master, &mut seen, "echo again-$((2+3))\n", "again-5")?;
    m.write_all(b"exit 3\n")?;
    assert_eq!(wait_exit(&mut child)?, Some(3), "{seen:?}");
    assert_eq!(
        out(&env.berth(&["inspect", "--format", "{{.State.ExitCode}}", "t1"])),
        "3"
    );
    assert_clean(&env)
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// TIOCSWINSZ on the pty master (what a terminal emulator does on a resize).
fn set_winsize(master: &OwnedFd, ws: &nix::pty::Winsize) -> Result<()> {
    nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, nix::pty::Winsize);
    use std::os::fd::AsRawFd;
    // SAFETY: `master` is an open pty fd owned by the caller and `ws` points to a live
    // Winsize for the duration of the call; TIOCSWINSZ only reads it.
    unsafe { tiocswinsz(master.as_raw_fd(), ws) }?;
    Ok(())
}

#[test]
fn run_it_detaches_with_its_detach_keys() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let o = env.berth(&["run", "-it", "--detach-keys", "ctrl-", "busybox", "sh"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("invalid detach keys"), "{}", err(&o));
    assert!(
        env.ids()?.is_empty(),
        "checked before the container is created"
    );
    let pty = nix::pty::openpty(Some(&winsize(24, 80)), None)?;
    let slave = fs::File::from(pty.slave);
    let args = [
        "run",
        "-it",
        "--name",
        "r1",
        "--detach-keys",
        "ctrl-x,x",
        "busybox",
        "sh",
    ];
    let mut child = env
        .cmd(&args)
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave)
        .spawn()?;
    let master = pty.master;
    let mut seen = String::new();
    type_until(&master, &mut seen, "echo hi-$((1+1))\n", "hi-2")?;
    // ctrl-x alone is passed on (the shell ignores it); ctrl-x x detaches.
    let mut m = fs::File::from(master.try_clone()?);
    m.write_all(&[0x18, b'x'])?;
    assert_eq!(wait_exit(&mut child)?, Some(0), "{seen:?}");
    assert!(running(&env, "r1")?);
    let (mut child, master) = attach_on_pty(&env, "r1", 24, 80)?;
    let mut seen = String::new();
    type_until(&master, &mut seen, "echo back-$((2*3))\n", "back-6")?;
    fs::File::from(master.try_clone()?).write_all(b"exit 4\n")?;
    assert_eq!(wait_exit(&mut child)?, Some(4), "{seen:?}");
    assert_clean(&env)
}

#[test]
fn a_killed_monitor_leaves_no_socket_behind() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env.ok(&["run", "-d", "-i", "busybox", "sleep", "1000"])?;
    let dir = env.runroot().join("containers").join(id.trim());
    assert!(dir.join("attach.sock").exists());
    let monitors = env.monitors();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    kill(Pid::from_raw(monitors[0]), Signal::SIGKILL)?;
    wait_for("the monitor to die", || Ok(env.monitors().is_empty()))?;
    // The init runs on without its monitor: nobody serves the socket any more.
    let o = env.berth(&["attach", id.trim()]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(err(&o).contains("connect to the monitor"), "{}", err(&o));
    assert_clean(&env)?;
    assert!(!dir.exists());
    Ok(())
}
