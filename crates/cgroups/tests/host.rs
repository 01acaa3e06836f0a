//! Root tests on the real host (this machine: v1 hybrid with cgroup2 at
//! /sys/fs/cgroup/unified). Every cgroup and process they make is removed by a guard.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_cgroups::{Cgroup, CgroupVersion, Hierarchy, detect, detect_at};
use oci_spec::runtime::LinuxResources;

/// Whether the test can run; under CI a test that cannot run fails.
fn can_run() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "root tests need root under CI"
    );
    eprintln!("SKIP: needs root");
    false
}

fn test_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "berth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills the processes and removes the cgroup, also when a test fails.
struct Guard {
    cg: Cgroup,
    children: Vec<Child>,
}

impl Guard {
    fn new(cg: Cgroup) -> Guard {
        Guard {
            cg,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, script: &str) -> Result<u32> {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .spawn()
            .context("spawn sh")?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    fn stop_children(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        self.stop_children();
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn resources(json: &str) -> Result<LinuxResources> {
    serde_json::from_str(json).context("resources json")
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// CPU ticks (utime + stime) of `pid` from /proc/<pid>/stat.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = read(std::path::Path::new(&format!("/proc/{pid}/stat")))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Waits (bounded) until `cond` holds; the bound is a safety net, not a timing assertion.
fn eventually(mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    for _ in 0..500 {
        if cond()? {
            return Ok(true);
        }
        sleep(Duration::from_millis(20));
    }
    Ok(false)
}

/// Runs `script` in `g`'s cgroup: the shell waits for a line on stdin, so it is in the
/// cgroup before it touches any device. Returns its exit code.
fn run_inside(g: &mut Guard, script: &str) -> Result<i32> {
    let pid = g.spawn(&format!("read x; {script}"))?;
    g.cg.add_pid(i32::try_from(pid)?)?;
    let child = g.children.last_mut().context("child")?;
    child.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let status = child.wait()?;
    status.code().context("exit code")
}

const DEVICE_CHECK: &str =
    "echo > /dev/null || exit 3; if head -c1 /dev/zero > /dev/null 2>&1; then exit 4; fi; exit 0";

#[test]
fn lifecycle_on_the_host_layout() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let h = detect()?;
    let id = test_id();
    let mut g = Guard::new(Cgroup::new(&h, None, &id)?);
    let r = resources(
        r#"{"memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"shares": 512, "quota": 10000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 32},
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
    )?;
    berth_cgroups::validate(&r, &h)?;
    g.cg.create()?;
    ensure!(g.cg.exists(), "created");
    g.cg.apply(&r)?;
    if h.version() != CgroupVersion::V2 {
        let mem =
            g.cg.paths()
                .into_iter()
                .find(|p| p.starts_with("/sys/fs/cgroup/memory"))
                .context("memory dir")?;
        ensure!(read(&mem.join("memory.limit_in_bytes"))?.trim() == "67108864");
        let pids =
            g.cg.paths()
                .into_iter()
                .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
                .context("pids dir")?;
        ensure!(read(&pids.join("pids.max"))?.trim() == "32");
        // The format the unchanged-list check parses.
        let dev =
            g.cg.paths()
                .into_iter()
                .find(|p| p.starts_with("/sys/fs/cgroup/devices"))
                .context("devices dir")?;
        ensure!(read(&dev.join("devices.list"))? == "c 1:3 rwm\n");
        g.cg.apply(&r)?;
        ensure!(read(&dev.join("devices.list"))? == "c 1:3 rwm\n");
    }

    // Devices: /dev/null allowed, /dev/zero denied (v1 list here, BPF on v2).
    ensure!(
        run_inside(&mut g, DEVICE_CHECK)? == 0,
        "device rules not enforced"
    );

    // A busy child: in the cgroup, counted, frozen and thawed.
    let pid = g.spawn("while :; do :; done")?;
    g.cg.add_pid(i32::try_from(pid)?)?;
    ensure!(g.cg.pids()?.contains(&i32::try_from(pid)?), "pid listed");
    let s = g.cg.stats()?;
    ensure!(
        s.pids.current >= 1 && s.pids.limit == 32,
        "pids stats {:?}",
        s.pids
    );
    ensure!(
        s.memory.usage.limit == 67_108_864,
        "memory limit {}",
        s.memory.usage.limit
    );
    let json = serde_json::to_value(&s)?;
    ensure!(json["memory"]["usage"]["limit"] == 67_108_864);

    g.cg.freeze()?;
    ensure!(g.cg.is_frozen()?, "frozen");
    let before = cpu_ticks(pid)?;
    sleep(Duration::from_millis(300));
    ensure!(cpu_ticks(pid)? == before, "a frozen process ran");
    g.cg.thaw()?;
    ensure!(!g.cg.is_frozen()?, "thawed");
    ensure!(
        eventually(|| Ok(cpu_ticks(pid)? > before))?,
        "thawed process never ran"
    );
    ensure!(g.cg.oom_kill_count()? == 0);

    g.stop_children();
    g.cg.destroy()?;
    ensure!(!g.cg.exists(), "dirs removed");
    Ok(())
}

#[test]
fn update_lowers_and_raises_limits() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let h = detect()?;
    if h.version() == CgroupVersion::V2 {
        eprintln!("SKIP: v1 memory+swap ordering is a v1 concern");
        return Ok(());
    }
    let g = Guard::new(Cgroup::new(
        &h,
        Some(&format!("/berth/{}", test_id())),
        "u",
    )?);
    g.cg.create()?;
    // Raising memory above the current memory+swap needs swap written first; the
    // reverse needs memory first. Both orders must work.
    g.cg.apply(&resources(
        r#"{"memory": {"limit": 33554432, "swap": 67108864}}"#,
    )?)?;
    g.cg.apply(&resources(
        r#"{"memory": {"limit": 134217728, "swap": 268435456}}"#,
    )?)?;
    g.cg.apply(&resources(
        r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#,
    )?)?;
    g.cg.apply(&resources(r#"{"memory": {"limit": -1}}"#)?)?;
    let s = g.cg.stats()?;
    ensure!(
        s.memory.usage.limit > 1 << 40,
        "unlimited, got {}",
        s.memory.usage.limit
    );
    Ok(())
}

/// A hierarchy with only the host's cgroup2 mount, to drive the v2 code on a hybrid host.
fn v2_only(h: &Hierarchy) -> Result<Option<(Hierarchy, tempfile::TempDir)>> {
    let Some(unified) = h.unified_mount() else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let mi = dir.path().join("mountinfo");
    std::fs::write(
        &mi,
        format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", unified.display()),
    )?;
    let v2 = detect_at(&mi, std::path::Path::new("/proc/self/cgroup"))?;
    Ok(Some((v2, dir)))
}

#[test]
fn v2_device_filter_freezer_and_update_on_cgroup2() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let Some((h, _dir)) = v2_only(&detect()?)? else {
        bail!("no cgroup2 mount on this host");
    };
    ensure!(h.version() == CgroupVersion::V2);
    let mut g = Guard::new(Cgroup::new(&h, Some(&format!("/{}", test_id())), "v2")?);
    g.cg.create()?;
    let deny_zero = resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
    )?;
    g.cg.apply(&deny_zero)?;
    ensure!(
        run_inside(&mut g, DEVICE_CHECK)? == 0,
        "BPF filter not enforced"
    );

    // update: the new program replaces the old one (with both attached, zero would stay
    // denied).
    let allow_zero = resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "access": "rwm"}]}"#,
    )?;
    g.cg.apply(&allow_zero)?;
    ensure!(
        run_inside(&mut g, DEVICE_CHECK)? == 4,
        "updated filter not in effect"
    );

    let pid = g.spawn("while :; do :; done")?;
    g.cg.add_pid(i32::try_from(pid)?)?;
    g.cg.freeze()?;
    ensure!(g.cg.is_frozen()?);
    let before = cpu_ticks(pid)?;
    sleep(Duration::from_millis(300));
    ensure!(cpu_ticks(pid)? == before, "a frozen process ran");
    g.cg.thaw()?;
    ensure!(
        eventually(|| Ok(cpu_ticks(pid)? > before))?,
        "thawed process never ran"
    );
    ensure!(g.cg.pids()? == [i32::try_from(pid)?]);
    Ok(())
}

#[test]
fn relative_path_and_crash_cleanup() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let h = detect()?;
    let rel = format!("{}/inner", test_id());
    let g = Guard::new(Cgroup::new(&h, Some(&rel), "r")?);
    // A crash before create: destroy must still succeed.
    g.cg.destroy()?;
    g.cg.create()?;
    // A sub-cgroup made by the container is removed with it.
    let first = g.cg.paths()[0].to_path_buf();
    std::fs::create_dir(first.join("child"))?;
    g.cg.destroy()?;
    ensure!(!g.cg.exists());
    // The relative path's own first level is not berth's: remove it by hand.
    for p in g.cg.paths() {
        let top = p.parent().context("parent")?;
        let _ = std::fs::remove_dir(top);
    }
    Ok(())
}
