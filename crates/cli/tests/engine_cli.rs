//! The engine through the real `berth` binary (root): Docker's demos, 50 concurrent
//! containers, kill -9 faults, bad input. Each test uses its own `--root`/`--runroot` and
//! checks that `rm -f` leaves no record, cgroup, mount, monitor or directory behind.

mod engine;

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine::{Env, can_run, err, out, wait_for};

#[test]
fn demo_run_rm_echo_hello() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let o = env.berth(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "hello");
    let o = env.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    // A container ended by signal N exits 128+N (sh as pid 1 ignores most signals, so
    // SIGKILL from outside).
    env.ok(&["run", "-d", "--name", "s1", "busybox", "sleep", "1000"])?;
    env.ok(&["kill", "s1"])?;
    assert_eq!(env.ok(&["wait", "s1"])?.trim(), "137");
    env.assert_clean_after_rm(&[])
}

/// Reads from the pty master until `want` shows up (or 20 s pass).
fn read_until(master: &OwnedFd, seen: &mut String, want: &str) -> Result<()> {
    engine::read_pty(master, seen, want, Duration::from_secs(20))
}

#[test]
fn run_rm_it_sh_on_a_pty() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let pty = nix::pty::openpty(None, None)?;
    let slave = fs::File::from(pty.slave);
    let mut child = env
        .cmd(&["run", "--rm", "-it", "busybox", "sh"])
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave)
        .spawn()?;
    let master = pty.master;
    let mut seen = String::new();
    read_until(&master, &mut seen, "# ")?;
    let mut m = fs::File::from(master.try_clone()?);
    m.write_all(b"tty; echo sum-$((40+2))\n")?;
    read_until(&master, &mut seen, "sum-42")?;
    assert!(
        seen.contains("/dev/pts/0"),
        "stdin is the container's pty: {seen:?}"
    );
    m.write_all(b"exit 7\n")?;
    let status = child.wait()?;
    assert_eq!(status.code(), Some(7), "{seen:?}");
    env.assert_clean_after_rm(&[])
}

#[test]
fn detached_ps_logs_exec_inspect_stop_rm() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let script = "echo out-line; echo err-line >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done";
    let id = env
        .ok(&["run", "-d", "--name", "web", "busybox", "sh", "-c", script])?
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = env.ok(&["ps"])?;
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    wait_for("logs", || {
        Ok(env.ok(&["logs", "web"])?.contains("out-line"))
    })?;
    let o = env.berth(&["logs", "web"]);
    assert!(
        err(&o).contains("err-line"),
        "stderr goes to stderr: {}",
        err(&o)
    );
    let o = env.berth(&["exec", "web", "sh", "-c", "echo exec-ok; exit 4"]);
    assert_eq!((out(&o).as_str(), o.status.code()), ("exec-ok", Some(4)));
    let o = env.berth(&["exec", "web", "nonexistent-cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    let pid: i32 = env
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])?
        .trim()
        .parse()?;
    assert!(pid > 1);
    let theirs = fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    let ours = fs::read_link("/proc/self/ns/pid")?;
    assert_ne!(theirs, ours, "the container has its own pid namespace");
    assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", "web"])?.trim(), id);
    let cfg: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "-f", "{{json .Config}}", "web"])?)?;
    assert_eq!(cfg["Cmd"][0], "sh");
    let o = env.berth(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("You cannot remove a running container"),
        "{}",
        err(&o)
    );
    env.ok(&["stop", "web"])?;
    assert!(env.ok(&["logs", "web"])?.contains("bye"));
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web"
        ])?
        .trim(),
        "exited 0"
    );
    assert!(
        env.ok(&["ps"])?.lines().count() == 1,
        "not listed without -a"
    );
    assert!(env.ok(&["ps", "-a"])?.contains("Exited (0)"));
    let o = env.berth(&["exec", "web", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    env.ok(&["rm", "web"])?;
    env.assert_clean_after_rm(&[id])
}

#[test]
fn memory_limit_oom_kill_is_reported() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let o = env.berth(&[
        "run",
        "--name",
        "oom",
        "--memory=7m",
        "busybox",
        "sh",
        "-c",
        "head -c 7500000 /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", err(&o));
    let s = env.ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "oom",
    ])?;
    assert_eq!(s.trim(), "true 137");
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "oom"])?
        .trim()
        .to_string();
    env.ok(&["rm", "oom"])?;
    env.assert_clean_after_rm(&[id])
}

#[test]
fn pid_namespaces_host_and_container() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let me = std::process::id().to_string();
    let o = env.ok(&["run", "--rm", "--pid=host", "busybox", "ps", "-o", "pid"])?;
    assert!(
        o.lines().any(|l| l.trim() == me),
        "--pid=host sees the test process"
    );
    let o = env.ok(&["run", "--rm", "busybox", "ps", "-o", "pid"])?;
    assert!(!o.lines().any(|l| l.trim() == me));
    let id = env.ok(&["run", "-d", "--name", "target", "busybox", "sleep", "1000"])?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--pid=container:target",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ])?;
    assert!(
        o.contains("sleep 1000"),
        "sees the other container's process: {o}"
    );
    env.assert_clean_after_rm(&[id.trim().to_string()])
}

#[test]
fn capabilities_follow_cap_add_and_cap_drop() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let capeff = |args: &[&str]| -> Result<u64> {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "grep", "CapEff", "/proc/self/status"]);
        let o = env.ok(&a)?;
        let hex = o.split_whitespace().nth(1).context("CapEff line")?;
        Ok(u64::from_str_radix(hex, 16)?)
    };
    let def = capeff(&[])?;
    assert_eq!(def, 0xa80425fb, "Docker's default set");
    assert_eq!(capeff(&["--cap-drop=all"])?, 0);
    assert_eq!(capeff(&["--cap-add=NET_ADMIN"])?, def | 1 << 12);
    assert_eq!(capeff(&["--cap-drop=chown"])?, def & !1);
    env.assert_clean_after_rm(&[])
}

#[test]
fn bind_mounts_and_named_volumes() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let host = env.dir.path().join("hostdir");
    fs::create_dir_all(&host)?;
    fs::write(host.join("in"), "from-host")?;
    let bind = format!("{}:/h", host.display());
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /h/in; echo back > /h/out",
    ])?;
    assert_eq!(o.trim(), "from-host");
    assert_eq!(fs::read_to_string(host.join("out"))?.trim(), "back");
    let ro = format!("{}:/h:ro", host.display());
    let o = env.berth(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "echo x > /h/new",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    assert!(!host.join("new").exists());
    env.ok(&[
        "run",
        "--name",
        "w1",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ])?;
    env.ok(&["rm", "-v", "w1"])?;
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "cat",
        "/data/f",
    ])?;
    assert_eq!(o.trim(), "kept", "a named volume survives rm");
    env.assert_clean_after_rm(&[])
}

#[test]
fn fifty_concurrent_run_d_then_rm() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let children: Vec<_> = (0..50)
        .map(|i| {
            env.cmd(&[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "busybox",
                "sleep",
                "1000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::new();
    for c in children {
        let o = c.wait_with_output()?;
        assert!(o.status.success(), "run -d failed: {}", err(&o));
        ids.push(out(&o));
    }
    let listed = env.ids()?;
    assert_eq!(listed.len(), 50);
    for id in &ids {
        assert!(listed.contains(id), "{id} not listed");
    }
    assert_eq!(env.monitors().len(), 50, "one monitor each");
    let rms: Vec<_> = ids
        .chunks(10)
        .map(|ch| {
            let mut a = vec!["rm", "-f"];
            a.extend(ch.iter().map(String::as_str));
            env.cmd(&a)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for c in rms {
        let o = c.wait_with_output()?;
        assert!(o.status.success(), "rm -f failed: {}", err(&o));
    }
    let left = env.leftovers(&ids);
    assert!(left.is_empty(), "left behind: {left}");
    Ok(())
}

#[test]
fn kill_9_of_the_monitor() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&["run", "-d", "--name", "m1", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let monitors = env.monitors();
    assert_eq!(monitors.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitors[0]),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("the monitor to die", || Ok(env.monitors().is_empty()))?;
    // The container itself still runs: ps says so.
    let ps = env.ok(&["ps", "--format", "{{.Names}} {{.State}}"])?;
    assert_eq!(ps.trim(), "m1 running");
    // Its init dies too: now ps must say exited.
    let pid: i32 = env
        .ok(&["inspect", "-f", "{{.State.Pid}}", "m1"])?
        .trim()
        .parse()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("ps to report the exit", || {
        Ok(env.ok(&["ps", "-a", "--format", "{{.State}}"])?.trim() == "exited")
    })?;
    assert!(env.ok(&["ps", "-q"])?.trim().is_empty());
    env.ok(&["rm", "-f", "m1"])?;
    env.assert_clean_after_rm(&[id])
}

#[test]
fn kill_9_of_a_rm_monitor_after_it_reported_the_exit() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    // A `--rm` monitor reports the exit once the container is gone for every command
    // (record, name, mount, image hold) and deletes the runtime's cgroups and state
    // after. Crash it right between the two (fault injection, see engine/src/fault.rs).
    let o = env
        .cmd(&[
            "run", "--rm", "--name", "fx", "busybox", "sh", "-c", "exit 3",
        ])
        .env("BERTH_FAULT", "monitor-exit-reported")
        .output()?;
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    wait_for("the monitor to die", || Ok(env.monitors().is_empty()))?;
    assert!(env.ids()?.is_empty(), "the container is still listed");
    let trash: Vec<String> = fs::read_dir(env.root().join("trash"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    assert_eq!(
        trash.len(),
        1,
        "the crash leaves the directory in the trash"
    );
    let id = trash[0].clone();
    assert!(
        env.runroot().join("runtime").join(&id).exists(),
        "the runtime's state is still there to finish with"
    );
    // The name is free again.
    env.ok(&["create", "--name", "fx", "busybox", "true"])?;
    // `container prune` (as any `rm`) finishes the removal (and removes the new `fx`).
    env.ok(&["container", "prune", "-f"])?;
    assert!(!env.runroot().join("runtime").join(&id).exists());
    env.assert_clean_after_rm(&[id])
}

#[test]
fn kill_9_of_berth_run_after_it_mounted_for_its_monitor() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    // `berth run` claims the record and mounts the rootfs while its monitor execs, then
    // hands the record over. Killed right before the hand-over, the monitor gets nothing
    // and does both itself: the container runs, on one rootfs mount, not two.
    let o = env
        .cmd(&["run", "-d", "--name", "ho", "busybox", "sleep", "1000"])
        .env("BERTH_FAULT", "hand-off-mounted")
        .output()?;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(9),
        "berth run should have died at the fault point: {}",
        err(&o)
    );
    wait_for("the container to run", || {
        Ok(env.ok(&["ps", "--format", "{{.Names}} {{.State}}"])?.trim() == "ho running")
    })?;
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "ho"])?
        .trim()
        .to_string();
    let rootfs = env.runroot().join("containers").join(&id).join("rootfs");
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let n = mounts
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(rootfs.to_str().unwrap_or_default()))
        .count();
    assert_eq!(n, 1, "rootfs mounted {n} times");
    assert_eq!(env.ok(&["exec", "ho", "echo", "in"])?.trim(), "in");
    env.ok(&["rm", "-f", "ho"])?;
    env.assert_clean_after_rm(&[id])
}

#[test]
fn kill_9_of_berth_run_mid_start() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    // Kill `berth run` at different points of its start; whatever state each one is
    // left in, ps must agree with the processes and rm -f must clean it all.
    for (i, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80].iter().enumerate() {
        let name = format!("k{i}");
        let mut c = env
            .cmd(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(*delay_ms));
        let _ = c.kill();
        let _ = c.wait();
    }
    // Let monitors that were already spawned finish their start.
    std::thread::sleep(Duration::from_millis(500));
    let rows = env.ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.State}}"])?;
    let mut ids = Vec::new();
    for line in rows.lines() {
        let (id, state) = line.split_once(' ').context("row")?;
        ids.push(id.to_string());
        let pid: i32 = env
            .ok(&["inspect", "-f", "{{.State.Pid}}", id])?
            .trim()
            .parse()?;
        match state {
            "running" => assert!(
                fs::metadata(format!("/proc/{pid}")).is_ok(),
                "{id} listed running but pid {pid} is gone"
            ),
            "created" | "exited" => assert_eq!(pid, 0, "{id} {state} but has pid {pid}"),
            s => bail!("unexpected state {s} for {id}"),
        }
    }
    for id in &ids {
        env.ok(&["rm", "-f", id])?;
    }
    env.assert_clean_after_rm(&ids)
}

#[test]
fn bad_input_gives_docker_messages_and_codes() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let o = env.berth(&["run", "--rm", "--pull=never", "nosuchimage", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("nosuchimage"), "{}", err(&o));
    let o = env.berth(&["run", "-m", "7x", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("invalid argument \"7x\" for \"-m, --memory\" flag: invalid size: '7x'"),
        "{}",
        err(&o)
    );
    let o = env.berth(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(o.status.code(), Some(125));
    env.ok(&["create", "--name", "dup", "busybox", "true"])?;
    let o = env.berth(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("Conflict. The container name \"/dup\" is already in use"),
        "{}",
        err(&o)
    );
    let o = env.berth(&["run", "--rm", "busybox", "no-such-binary"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(err(&o).contains("not found"), "{}", err(&o));
    env.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "1000"])?;
    let o = env.berth(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("You cannot remove a running container"),
        "{}",
        err(&o)
    );
    env.ok(&["stop", "-t", "0", "busy"])?;
    let o = env.berth(&["exec", "busy", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    let o = env.berth(&["rm", "nosuch"]);
    assert!(err(&o).contains("No such container: nosuch"), "{}", err(&o));
    env.assert_clean_after_rm(&[])
}
