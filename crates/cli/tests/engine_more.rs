//! More of the engine through the `berth` binary (root): restart policies, `run -d --rm`,
//! `cp` both ways, `export`, `pause`, `rename`, `ps --filter/--format`, `logs --tail -t`,
//! `inspect` of an image.

mod engine;

use std::fs;
use std::time::Duration;

use anyhow::Result;
use engine::{Env, can_run, err, wait_for};

#[test]
fn restart_on_failure_and_detached_rm() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ])?;
    wait_for("two restarts and the final exit", || {
        let s = env.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
            "flaky",
        ])?;
        Ok(s.trim() == "exited 2 3")
    })?;
    assert_eq!(
        env.ok(&["logs", "flaky"])?.matches("run").count(),
        3,
        "ran three times"
    );
    env.ok(&["run", "-d", "--rm", "--name", "gone", "busybox", "true"])?;
    wait_for("run -d --rm to remove itself", || {
        Ok(!env
            .ok(&["ps", "-a", "--format", "{{.Names}}"])?
            .contains("gone"))
    })?;
    let o = env.berth(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("Conflicting options"), "{}", err(&o));
    env.assert_clean_after_rm(&[])
}

#[test]
fn cp_export_pause_rename_ps_logs_inspect() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "box",
            "-l",
            "tier=web",
            "busybox",
            "sh",
            "-c",
            "echo one; echo two; echo three; sleep 1000",
        ])?
        .trim()
        .to_string();
    let host = env.dir.path().join("in.txt");
    fs::write(&host, "copied-in")?;
    env.ok(&["cp", &host.to_string_lossy(), "box:/tmp/"])?;
    assert_eq!(env.ok(&["exec", "box", "cat", "/tmp/in.txt"])?, "copied-in");
    let out = env.dir.path().join("passwd");
    env.ok(&["cp", "box:/etc/passwd", &out.to_string_lossy()])?;
    assert!(fs::read_to_string(&out)?.starts_with("root:"));
    // A symlink inside the container that points at a host path stays inside it.
    env.ok(&[
        "exec",
        "box",
        "ln",
        "-s",
        "/etc/shadow-of-host",
        "/tmp/link",
    ])?;
    let o = env.berth(&["cp", "box:/tmp/link/x", &out.to_string_lossy()]);
    assert_ne!(o.status.code(), Some(0));
    let tar = env.dir.path().join("fs.tar");
    env.ok(&["export", "-o", &tar.to_string_lossy(), "box"])?;
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()?;
    assert!(String::from_utf8_lossy(&list.stdout).contains("bin/busybox"));
    env.ok(&["pause", "box"])?;
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "box"])?
            .trim(),
        "paused"
    );
    env.ok(&["unpause", "box"])?;
    env.ok(&["rename", "box", "crate"])?;
    let f = env.ok(&[
        "ps",
        "--filter",
        "label=tier=web",
        "--format",
        "{{.Names}} {{.State}}",
    ])?;
    assert_eq!(f.trim(), "crate running");
    assert!(
        env.ok(&["ps", "--filter", "name=nomatch", "-q"])?
            .trim()
            .is_empty()
    );
    wait_for("logs", || Ok(env.ok(&["logs", "crate"])?.contains("three")))?;
    assert_eq!(env.ok(&["logs", "--tail", "1", "crate"])?, "three\n");
    let t = env.ok(&["logs", "-t", "--tail", "1", "crate"])?;
    assert!(t.ends_with("Z three\n") && t.starts_with("20"), "{t}");
    let img = env.ok(&["inspect", "--type", "image", "-f", "{{.Os}}", "busybox"])?;
    assert_eq!(img.trim(), "linux");
    let top = env.ok(&["top", "crate"])?;
    assert!(top.contains("sleep 1000"), "{top}");
    env.assert_clean_after_rm(&[id])
}

#[test]
fn run_and_exec_flags_reach_the_container() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let envfile = env.dir.path().join("env");
    fs::write(&envfile, "# comment\nFROM_FILE=yes\n")?;
    let script = "echo $A $FROM_FILE; pwd; id -u; id -g; hostname; ulimit -n; \
                  cat /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \
                  grep NoNewPrivs /proc/self/status; touch /x 2>&1 | grep -c Read-only; \
                  touch /scratch/ok && echo tmpfs-ok; grep -c ' /scratch tmpfs' /proc/mounts";
    let o = env.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        &envfile.to_string_lossy(),
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "--hostname",
        "inner",
        "--ulimit",
        "nofile=100:200",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        script,
    ])?;
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(
        lines,
        [
            "1 yes",
            "/tmp",
            "65534",
            "65534",
            "inner",
            "100",
            "50",
            "50000",
            "NoNewPrivs:\t1",
            "1",
            "tmpfs-ok",
            "1"
        ],
        "{o}"
    );
    let o = env.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "from",
        "entrypoint",
    ])?;
    assert_eq!(o.trim(), "from entrypoint");
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(
        env.ok(&["run", "--rm", "--uts=host", "busybox", "hostname"])?,
        host_name
    );
    let ours = fs::read_link("/proc/self/ns/net")?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--network=host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ])?;
    assert_eq!(o.trim(), ours.to_string_lossy());
    let o = env.ok(&[
        "run",
        "--rm",
        "--network=none",
        "busybox",
        "ls",
        "/sys/class/net",
    ])?;
    assert_eq!(o.trim(), "lo");
    env.ok(&[
        "run", "-d", "--name", "netowner", "busybox", "sleep", "1000",
    ])?;
    let theirs = env.ok(&["exec", "netowner", "readlink", "/proc/self/ns/net"])?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--network=container:netowner",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ])?;
    assert_eq!(o, theirs);
    let o = env.ok(&[
        "exec",
        "-e",
        "B=2",
        "-w",
        "/etc",
        "-u",
        "65534",
        "netowner",
        "sh",
        "-c",
        "echo $B $(pwd) $(id -u)",
    ])?;
    assert_eq!(o.trim(), "2 /etc 65534");
    let o = env.ok(&[
        "exec",
        "-d",
        "netowner",
        "sh",
        "-c",
        "echo detached > /tmp/d",
    ])?;
    assert!(o.trim().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        env.ok(&["exec", "netowner", "cat", "/tmp/d"])?.trim(),
        "detached"
    );
    env.assert_clean_after_rm(&[])
}

#[test]
fn an_image_in_use_by_a_container_keeps_its_layers() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    env.ok(&[
        "create",
        "--name",
        "user",
        "--network",
        "none",
        "busybox",
        "true",
    ])?;
    let o = env.berth(&["rmi", "busybox"]);
    assert_eq!(
        o.status.code(),
        Some(125),
        "rmi of an image in use: {}",
        err(&o)
    );
    env.ok(&["start", "-a", "user"])?;
    env.ok(&["rm", "user"])?;
    env.ok(&["rmi", "busybox"])?;
    assert!(!env.ok(&["images"])?.contains("busybox"));
    Ok(())
}

#[test]
fn init_reaps_zombies_and_forwards_signals() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    // Two orphans exit while the program (then `sleep`, which never waits) runs: they are
    // reparented to pid 1. berth's init reaps them; without it they stay zombies.
    let prog = "sh -c 'sleep 0.1 & sleep 0.1 &'; exec sleep 1000";
    let zombies = |name: &str| -> Result<usize> {
        let ps = env.ok(&["exec", name, "ps", "-o", "stat"])?;
        Ok(ps
            .lines()
            .filter(|l| l.trim_start().starts_with('Z'))
            .count())
    };
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "with",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        prog,
    ])?;
    env.ok(&[
        "run",
        "-d",
        "--name",
        "without",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        prog,
    ])?;
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(zombies("with")?, 0, "zombies left under --init");
    assert_eq!(
        zombies("without")?,
        2,
        "control: without an init the orphans stay zombies"
    );
    let cmdline = env.ok(&["exec", "with", "cat", "/proc/1/cmdline"])?;
    assert!(cmdline.starts_with("/dev/init\0init\0--"), "{cmdline:?}");
    env.ok(&["rm", "-f", "with", "without"])?;
    // SIGTERM reaches the program through the init: a trap in it sees the signal.
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "trapper",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.05; done",
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["stop", "-t", "5", "trapper"])?;
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.ExitCode}}", "trapper"])?
            .trim(),
        "7"
    );
    assert!(env.ok(&["logs", "trapper"])?.contains("got-term"));
    env.ok(&["rm", "trapper"])?;
    Ok(())
}

/// The mount points an image lacks (busybox has no /etc/hosts, hostname, resolv.conf)
/// come from its init layer: starting a container makes nothing in its writable layer.
/// An image whose /etc is a symbolic link gets none there (the runtime makes them
/// through the link, in the upper directory) and works the same.
#[test]
fn mount_points_come_from_the_init_layer() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&["run", "-d", "--name", "il", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let upper = env.root().join("containers").join(&id).join("upper");
    let made: Vec<_> = fs::read_dir(&upper)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        made.is_empty(),
        "the start wrote into the upper dir: {made:?}"
    );
    assert_eq!(
        env.ok(&["exec", "il", "cat", "/etc/hostname"])?.trim(),
        &id[..12]
    );
    let hosts = env.ok(&["inspect", "-f", "{{.HostsPath}}", "il"])?;
    assert!(
        hosts
            .trim()
            .starts_with(env.runroot().to_str().unwrap_or_default()),
        "{hosts}"
    );
    // Restarted, the container gets the same layers (the record says so).
    env.ok(&["restart", "-t", "0", "il"])?;
    assert_eq!(
        env.ok(&["exec", "il", "cat", "/etc/hostname"])?.trim(),
        &id[..12]
    );
    env.ok(&["rm", "-f", "il"])?;

    // /etc -> usr/etc.
    let tree = env.dir.path().join("linked");
    fs::create_dir_all(&tree)?;
    let tar = |args: &[&str]| -> Result<()> {
        let ok = std::process::Command::new("tar")
            .args(args)
            .status()?
            .success();
        anyhow::ensure!(ok, "tar {args:?}");
        Ok(())
    };
    let tree_s = tree.to_string_lossy().into_owned();
    tar(&[
        "-C",
        &tree_s,
        "-xf",
        &engine::busybox_tar().to_string_lossy(),
    ])?;
    fs::create_dir_all(tree.join("usr"))?;
    fs::rename(tree.join("etc"), tree.join("usr/etc"))?;
    std::os::unix::fs::symlink("usr/etc", tree.join("etc"))?;
    let linked_tar = env.dir.path().join("linked.tar");
    tar(&["-C", &tree_s, "-cf", &linked_tar.to_string_lossy(), "."])?;
    env.ok(&["import", &linked_tar.to_string_lossy(), "linkedetc"])?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--hostname",
        "lnk",
        "linkedetc",
        "sh",
        "-c",
        "cat /etc/hostname; readlink /etc",
    ])?;
    assert_eq!(o.split_whitespace().collect::<Vec<_>>(), ["lnk", "usr/etc"]);
    env.assert_clean_after_rm(&[id])
}

/// A container started by a berth from before the rootfs mount point moved to the
/// runroot has its rootfs mounted at `<root>/containers/<id>/rootfs`. Made here by
/// binding the rootfs there and detaching it from the new place: `exec` and `cp` find it,
/// `rm -f` unmounts it.
#[test]
fn a_rootfs_at_the_old_place_is_used_and_unmounted() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&["run", "-d", "--name", "old", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let new = env.runroot().join("containers").join(&id).join("rootfs");
    let old = env.root().join("containers").join(&id).join("rootfs");
    fs::create_dir_all(&old)?;
    nix::mount::mount(
        Some(&new),
        &old,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )?;
    nix::mount::umount2(&new, nix::mount::MntFlags::MNT_DETACH)?;
    assert_eq!(
        env.ok(&["exec", "old", "cat", "/etc/hostname"])?.trim(),
        &id[..12]
    );
    let copied = env.dir.path().join("passwd");
    env.ok(&["cp", "old:/etc/passwd", &copied.to_string_lossy()])?;
    assert!(fs::read_to_string(&copied)?.starts_with("root:"));
    env.ok(&["rm", "-f", "old"])?;
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let p = old.to_string_lossy();
    assert!(!mounts.contains(p.as_ref()), "{p} still mounted");
    env.assert_clean_after_rm(&[id])
}
