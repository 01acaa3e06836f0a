//! Harness for the engine's CLI tests: a throwaway berth instance (temp `--root` and
//! `--runroot`) with a busybox image imported from Debian's busybox-static, and checks
//! that nothing is left behind (records, cgroups, mounts, monitors, directories).
#![allow(dead_code)]

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when the test may run (root, a static busybox); under CI it must.
pub fn can_run() -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("needs root")
    } else if !Path::new("/bin/busybox").exists() {
        Some("needs /bin/busybox (apt-get install busybox-static)")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("cannot run under CI: {w}")
        }
        Some(w) => {
            eprintln!("SKIP: {w}");
            false
        }
    }
}

/// A busybox rootfs tarball, made once and kept in cargo's scratch dir for tests
/// (`CARGO_TARGET_TMPDIR`, under `target/`); built in a per-process directory that is
/// removed, then renamed into place so concurrent test binaries agree.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tar = scratch.join("engine-busybox.tar");
        if tar.exists() {
            return tar;
        }
        let dir = scratch.join(format!("engine-busybox-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let ok = Command::new(workspace().join("scripts/busybox-bundle.sh"))
            .arg(&dir)
            .arg("/bin/true")
            .stdout(Stdio::null())
            .status()
            .expect("busybox-bundle.sh");
        assert!(ok.success(), "busybox-bundle.sh failed");
        let tmp = dir.with_extension("tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(dir.join("rootfs"))
            .arg("-cf")
            .arg(&tmp)
            .arg(".")
            .status()
            .expect("tar");
        assert!(ok.success(), "tar failed");
        fs::rename(&tmp, &tar).expect("rename the tarball into place");
        let _ = fs::remove_dir_all(&dir);
        tar
    })
}

/// One berth instance in temp dirs.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Result<Env> {
        let dir = tempfile::Builder::new().prefix("berth-engine-").tempdir()?;
        let env = Env { dir };
        let o = env.berth(&["import", &busybox_tar().to_string_lossy(), "busybox"]);
        if !o.status.success() {
            bail!("import: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(env)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn runroot(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.runroot())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run berth")
    }

    /// Runs berth, expecting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.berth(args);
        if !o.status.success() {
            bail!(
                "berth {args:?} failed ({:?}): {}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    pub fn ids(&self) -> Result<Vec<String>> {
        Ok(self
            .ok(&["ps", "-aq", "--no-trunc"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Monitors serving this instance.
    pub fn monitors(&self) -> Vec<i32> {
        let root = self.root();
        let want = root.to_string_lossy();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            if cmd.contains("berth-monitor") && cmd.contains(want.as_ref()) && !zombie {
                out.push(pid);
            }
        }
        out
    }

    /// Entries in `<root>/trash`: directories of removed containers not yet deleted.
    fn trash(&self) -> Vec<std::ffi::OsString> {
        fs::read_dir(self.root().join("trash"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect()
    }

    /// Everything this instance may leave on the host, as text (empty = clean).
    pub fn leftovers(&self, ids: &[String]) -> String {
        // A `run --rm` monitor deletes the container's files just after reporting the
        // exit: give such stragglers a moment before calling anything a leak.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while (!self.monitors().is_empty() || !self.trash().is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut left = Vec::new();
        let trash = self.trash();
        if !trash.is_empty() {
            left.push(format!("trash {trash:?}"));
        }
        if let Ok(v) = self.ids()
            && !v.is_empty()
        {
            left.push(format!("records: {v:?}"));
        }
        for id in ids {
            for ctrl in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = ctrl.path().join("berth").join(id);
                if p.exists() {
                    left.push(format!("cgroup {}", p.display()));
                }
            }
        }
        let tmp = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let n = mounts.lines().filter(|l| l.contains(&tmp)).count();
        if n > 0 {
            left.push(format!("{n} mounts under {tmp}"));
        }
        let m = self.monitors();
        if !m.is_empty() {
            left.push(format!("monitors {m:?}"));
        }
        for (what, dir) in [
            ("container dirs", self.root().join("containers")),
            ("run dirs", self.runroot().join("containers")),
            ("runtime state", self.runroot().join("runtime")),
        ] {
            let names: Vec<_> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            if !names.is_empty() {
                left.push(format!("{what} {names:?}"));
            }
        }
        left.join("; ")
    }

    /// Removes every container and asserts nothing is left of `ids`.
    pub fn assert_clean_after_rm(&self, ids: &[String]) -> Result<()> {
        for id in self.ids()? {
            self.ok(&["rm", "-f", &id])?;
        }
        let left = self.leftovers(ids);
        if !left.is_empty() {
            bail!("left behind: {left}");
        }
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Best effort, also when a test failed half-way.
        if let Ok(ids) = self.ids() {
            for id in ids {
                let _ = self.berth(&["rm", "-f", &id]);
            }
        }
        // Each root gets its own bridge and nft table (default `bridge` network): remove
        // them with the root.
        let _ = self.berth(&["network", "reset"]);
        for pid in self.monitors() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let tmp = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in mounts.lines().rev() {
            if let Some(mp) = l.split(' ').nth(4)
                && mp.contains(&tmp)
            {
                let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// stdout as a trimmed string.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ctx<T>(r: Option<T>, what: &str) -> Result<T> {
    r.context(what.to_string())
}

/// Polls `f` every 50 ms until it is true; fails after 30 s naming `what`.
pub fn wait_for(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f()? {
        if std::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// Reads from a pty master into `seen` until `want` shows up (or `limit` passes).
pub fn read_pty(
    master: &OwnedFd,
    seen: &mut String,
    want: &str,
    limit: std::time::Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        if std::time::Instant::now() > deadline {
            bail!("no `{want}` on the pty; got {seen:?}");
        }
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16))? == 0 {
            continue;
        }
        match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(0) | Err(_) => bail!("pty closed before `{want}`; got {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    Ok(())
}
