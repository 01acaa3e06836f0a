//! Callers of berth-runtime: Podman (through conmon) and containerd's `ctr` drive the
//! runtime the way they drive runc, against a busybox image in the local registry.
//!
//! The runtime is `BERTH_CALLER_RUNTIME` (a path or a name in PATH, e.g. `runc` to prove
//! the harness), else this crate's `berth-runtime`. The registry is `BERTH_TEST_REGISTRY`
//! (set by scripts/test.sh), else one started here through scripts/registry.sh. containerd
//! is the one at `BERTH_CONTAINERD_ADDRESS` (started by .ci/setup.d/30-callers.sh), else
//! one started here with a temporary root. What this process starts it stops at exit.
//! The image is built from busybox-static with umoci and pushed with skopeo.
//!
//! Root only. Outside CI a missing tool is a SKIP; under `CI=true` it is a failure.
//! Tests run one at a time (one lock): they share Podman's and containerd's storage, and
//! this process is the child subreaper that reaps the conmon and shim processes that
//! Podman and containerd orphan when they daemonise.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Image repository inside the registry.
const REPO: &str = "berth-callers/busybox:latest";
/// containerd namespace the tests use.
const CTR_NS: &str = "berth-callers";
/// Limit for any one external command.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Everything the tests share, set up once per process.
struct Fixture {
    runtime: PathBuf,
    /// `HOST:PORT/berth-callers/busybox:latest`.
    image: String,
    /// containerd's socket.
    ctr_address: PathBuf,
    /// Podman's global flags for this machine (cgroupfs, file events, no network).
    ulimits: Vec<String>,
}

/// What this process started and must stop at exit.
#[derive(Default)]
struct Owned {
    registry: Option<(String, String)>,
    containerd: Option<(u32, PathBuf)>,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
static OWNED: Mutex<Owned> = Mutex::new(Owned {
    registry: None,
    containerd: None,
});
static SERIAL: Mutex<()> = Mutex::new(());

// --- fixture -----------------------------------------------------------------------------

/// Holds the one-test-at-a-time lock; on drop (also after a failed assertion) reaps the
/// orphans the test's callers left to us.
struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Serial {
    fn drop(&mut self) {
        reap_orphans();
    }
}

/// The shared fixture, or `None` when the tests cannot run here (SKIP; a panic under CI).
fn fixture() -> Option<(&'static Fixture, Serial)> {
    let serial = Serial(SERIAL.lock().unwrap_or_else(|e| e.into_inner()));
    match FIXTURE.get_or_init(set_up) {
        Ok(f) => Some((f, serial)),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("callers test cannot run under CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIP: {why}");
            None
        }
    }
}

fn set_up() -> Result<Fixture, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root".into());
    }
    for tool in [
        "podman",
        "conmon",
        "containerd",
        "ctr",
        "umoci",
        "skopeo",
        "script",
    ] {
        which(tool).ok_or_else(|| format!("`{tool}` not installed (see .ci/packages.txt)"))?;
    }
    let runtime = caller_runtime()?;
    // Orphans of Podman (conmon) and containerd (shims) become our children, so we can
    // reap them instead of leaving zombies to an init that may not reap.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER reads only its integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "set child subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `stop_owned` is an extern "C" fn without arguments, valid for the whole
    // life of the process; it only reads statics.
    unsafe { libc::atexit(stop_owned) };
    let registry = registry()?;
    let image = format!("{registry}/{REPO}");
    push_busybox(&image)?;
    let ctr_address = containerd()?;
    let (nofile, nproc) = ulimit_caps();
    let ulimits = vec![
        format!("--ulimit=nofile={nofile}:{nofile}"),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ];
    let f = Fixture {
        runtime,
        image,
        ctr_address,
        ulimits,
    };
    pull_images(&f)?;
    Ok(f)
}

/// `BERTH_CALLER_RUNTIME` made absolute, else the berth-runtime binary of this crate.
fn caller_runtime() -> Result<PathBuf, String> {
    match std::env::var_os("BERTH_CALLER_RUNTIME") {
        Some(rt) => {
            let p = PathBuf::from(&rt);
            if p.components().count() > 1 {
                Ok(std::path::absolute(p).map_err(|e| e.to_string())?)
            } else {
                which(&rt.to_string_lossy()).ok_or_else(|| format!("runtime {rt:?} not in PATH"))
            }
        }
        None => Ok(PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime"))),
    }
}

/// Podman's defaults for nofile/nproc (1048576) exceed this machine's hard limits and
/// the runtime lacks CAP_SYS_RESOURCE, so containers get the hard limits instead. Podman
/// runs itself (and conmon) with nproc 32768, which caps nproc further.
fn ulimit_caps() -> (u64, u64) {
    let hard = |res| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a live local the kernel fills in.
        let rc = unsafe { libc::getrlimit(res, &mut lim) };
        if rc == 0 { lim.rlim_max } else { 1024 }
    };
    (
        hard(libc::RLIMIT_NOFILE).min(1 << 20),
        hard(libc::RLIMIT_NPROC).min(32768),
    )
}

/// `BERTH_TEST_REGISTRY`, else a registry started through scripts/registry.sh.
fn registry() -> Result<String, String> {
    if let Ok(r) = std::env::var("BERTH_TEST_REGISTRY") {
        return Ok(r);
    }
    let script = repo_dir().join("scripts/registry.sh");
    let out = run(Command::new(&script).arg("start"), None)?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("registry.sh printed no {name}: {line}"))
    };
    let (addr, pid, dir) = (
        var("BERTH_TEST_REGISTRY")?,
        var("BERTH_TEST_REGISTRY_PID")?,
        var("BERTH_TEST_REGISTRY_DIR")?,
    );
    lock_owned().registry = Some((pid, dir));
    Ok(addr)
}

/// Builds a one-layer busybox image with umoci and pushes it with skopeo.
fn push_busybox(image: &str) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = tmp.path().join("oci");
    let tag = format!("{}:busybox", layout.display());
    let bundle = tmp.path().join("bundle");
    run(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
        None,
    )?;
    run(Command::new("umoci").args(["new", "--image", &tag]), None)?;
    run(
        Command::new("umoci")
            .args(["unpack", "--image", &tag])
            .arg(&bundle),
        None,
    )?;
    fill_rootfs(&bundle.join("rootfs"))?;
    run(
        Command::new("umoci")
            .args(["repack", "--image", &tag])
            .arg(&bundle),
        None,
    )?;
    let config = ["config", "--image", &tag, "--config.cmd", "sh"];
    let env = ["--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"];
    run(Command::new("umoci").args(config).args(env), None)?;
    let src = format!("oci:{tag}");
    let dst = format!("docker://{image}");
    run(
        Command::new("skopeo").args(["copy", "--dest-tls-verify=false", &src, &dst]),
        None,
    )?;
    Ok(())
}

/// The rootfs: static busybox, a link per applet, passwd/group and the usual dirs.
fn fill_rootfs(root: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("fill rootfs `{}`: {e}", root.display());
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).map_err(io)?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).map_err(io)?;
    let list = run(Command::new("/bin/busybox").arg("--list"), None)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(io)?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").map_err(io)?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n").map_err(io)
}

/// `BERTH_CONTAINERD_ADDRESS`, else a containerd started here with a temporary root.
fn containerd() -> Result<PathBuf, String> {
    if let Some(addr) = std::env::var_os("BERTH_CONTAINERD_ADDRESS") {
        return Ok(PathBuf::from(addr));
    }
    let dir = tempfile::Builder::new()
        .prefix("berth-callers-containerd.")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let sock = dir.join("state/containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{s}\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/root/opt\"\n",
        d = dir.display(),
        s = sock.display()
    );
    std::fs::write(dir.join("config.toml"), config).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start containerd: {e}"))?;
    lock_owned().containerd = Some((child.id(), dir.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ok = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .arg("version")
            .output();
        if ok.is_ok_and(|o| o.status.success()) {
            return Ok(sock);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    Err(format!("containerd did not come up: {log}"))
}

/// Pulls the image into Podman's and containerd's stores (plain HTTP registry).
fn pull_images(f: &Fixture) -> Result<(), String> {
    run(
        podman(f).args(["pull", "-q", "--tls-verify=false", &f.image]),
        None,
    )?;
    run(
        ctr(f).args(["images", "pull", "--plain-http", &f.image]),
        None,
    )?;
    Ok(())
}

/// Stops what this process started (registered with atexit).
extern "C" fn stop_owned() {
    let owned = lock_owned();
    if let Some((pid, dir)) = &owned.containerd {
        stop_pid(*pid);
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some((pid, dir)) = &owned.registry {
        let _ = Command::new(repo_dir().join("scripts/registry.sh"))
            .arg("stop")
            .env("BERTH_TEST_REGISTRY_PID", pid)
            .env("BERTH_TEST_REGISTRY_DIR", dir)
            .status();
        // As subreaper we adopted the registry when registry.sh exited: reap it.
        if let Ok(pid) = pid.parse::<i32>() {
            // SAFETY: waitpid takes integers only; ECHILD if it is not our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
    remove_podman_parent();
    // conmon and shims of failed tests may end only now; reap them rather than leave
    // zombies to init. Bounded: a caller still running is left to init.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if rc < 0 {
            break;
        }
        if rc == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Podman (cgroupfs manager) parks conmon in `libpod_parent/conmon` of every hierarchy
/// and keeps both; remove them where empty (a busy one is someone's running podman).
fn remove_podman_parent() {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    hierarchies.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for h in hierarchies {
        let parent = h.join("libpod_parent");
        let _ = std::fs::remove_dir(parent.join("conmon"));
        let _ = std::fs::remove_dir(parent);
    }
}

/// SIGTERM, up to 10 s to exit, then SIGKILL; reaps it (it is our child).
fn stop_pid(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill and waitpid take integers only; `pid` is our own unreaped child, so
    // the number cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        for _ in 0..200 {
            if libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn lock_owned() -> MutexGuard<'static, Owned> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

// --- commands ----------------------------------------------------------------------------

/// `podman` with this machine's settings and the runtime under test.
fn podman(f: &Fixture) -> Command {
    let mut c = Command::new("podman");
    c.args(["--cgroup-manager=cgroupfs", "--events-backend=file"])
        .arg("--runtime")
        .arg(&f.runtime);
    c
}

/// `podman run` named `name`, its id written to `cidfile`: no network, limits that fit,
/// the local image only.
fn podman_run(f: &Fixture, name: &str, cidfile: &Path, extra: &[&str]) -> Command {
    let mut c = podman(f);
    c.args(["run", "--network=none", "--pull=never", "--name", name])
        .arg("--cidfile")
        .arg(cidfile)
        .args(&f.ulimits)
        .args(extra);
    c
}

/// A container name for one test and a path for its id file.
struct Names {
    name: String,
    cidfile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Names {
    fn new(test: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self {
            name: format!("berth-callers-{test}-{}", std::process::id()),
            cidfile: dir.path().join("cid"),
            _dir: dir,
        }
    }

    /// Asserts that neither the name nor the id (once written) is left in a process
    /// or a mount.
    fn assert_gone(&self) {
        assert_gone(&self.name);
        if let Ok(id) = std::fs::read_to_string(&self.cidfile) {
            assert_gone(id.trim());
        }
    }
}

fn ctr(f: &Fixture) -> Command {
    let mut c = Command::new("ctr");
    c.arg("-a").arg(&f.ctr_address).args(["-n", CTR_NS]);
    c
}

/// Runs `cmd` (stdin from `input`) to completion within TIMEOUT; non-zero is an error.
fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<std::process::Output, String> {
    let out = run_status(cmd, input)?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

/// Runs `cmd` within TIMEOUT (killed after it) and returns its output whatever the status.
fn run_status(cmd: &mut Command, input: Option<&[u8]>) -> Result<std::process::Output, String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(data);
    }
    let readers = [
        drain(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        drain(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ];
    let status = wait_timeout(&mut child).map_err(|e| format!("{cmd:?}: {e}"))?;
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

fn drain(src: Option<Box<dyn Read + Send>>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = src {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits up to TIMEOUT; kills the child (by its handle) after that.
fn wait_timeout(child: &mut std::process::Child) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {TIMEOUT:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --- leak checks -------------------------------------------------------------------------

/// Waits (up to 10 s) until no process mentions `needle` in its command line and no mount
/// mentions it, reaping our zombie children meanwhile; panics naming what is left.
fn assert_gone(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        reap_orphans();
        let procs = processes_mentioning(needle);
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if procs.is_empty() && mounts.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind for `{needle}`: processes {procs:?}, mounts {mounts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| e.file_name().to_str() != Some(me.as_str()))
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Reaps zombie children that are orphans we adopted as subreaper (conmon, shims and
/// their containers' processes), never a child a `Command` of ours still waits for:
/// tests run one at a time, and every command has finished before this runs.
fn reap_orphans() {
    loop {
        // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if rc <= 0 {
            break;
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        PathBuf::from("/usr/libexec/podman"),
        PathBuf::from("/usr/sbin"),
    ];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// --- tests -------------------------------------------------------------------------------

#[test]
fn podman_run_rm_echo() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    let n = Names::new("echo");
    let out = run_status(
        podman_run(f, &n.name, &n.cidfile, &["--rm"]).args([&f.image, "echo", "hi"]),
        None,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "podman run failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    n.assert_gone();
}

#[test]
fn podman_run_exit_codes() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    for code in [0, 3, 42] {
        let n = Names::new(&format!("exit{code}"));
        let script = format!("exit {code}");
        let mut cmd = podman_run(f, &n.name, &n.cidfile, &["--rm"]);
        let out = run_status(cmd.args([&f.image, "sh", "-c", &script]), None).unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "stderr: {}",
            text(&out.stderr)
        );
        n.assert_gone();
    }
}

/// `podman run -it` on a real terminal (util-linux `script` makes the pty): the container
/// must see a tty on stdin and stdout, read a typed line and exit with its code.
#[test]
fn podman_run_it_pty() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    let n = Names::new("pty");
    let inner = "test -t 0 && test -t 1 && echo tty-ok; read line; echo got-$line; exit 5";
    let mut cmd = podman_run(f, &n.name, &n.cidfile, &["--rm", "-it"]);
    cmd.args([&f.image, "sh", "-c", inner]);
    let line = shell_words(&cmd);
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let (status, output) = converse(&mut script, "tty-ok", b"abc\n");
    assert!(
        output.contains("tty-ok"),
        "no tty in the container: {output}"
    );
    assert!(output.contains("got-abc"), "typed line not read: {output}");
    assert_eq!(status.code(), Some(5), "output: {output}");
    n.assert_gone();
}

/// Spawns `cmd`, waits for `prompt` in its output, then types `input`; returns the exit
/// status and all output.
fn converse(cmd: &mut Command, prompt: &str, input: &[u8]) -> (ExitStatus, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn script");
    let seen = std::sync::Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    let errs = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + TIMEOUT;
    let has_prompt = || text(&seen.lock().unwrap_or_else(|e| e.into_inner())).contains(prompt);
    while !has_prompt() && Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input);
    let status = wait_timeout(&mut child).unwrap_or_else(|e| panic!("script: {e}"));
    drop(stdin);
    let _ = reader.join();
    let mut all = text(&seen.lock().unwrap_or_else(|e| e.into_inner()));
    all.push_str(&text(&errs.join().unwrap_or_default()));
    (status, all)
}

/// A command line for `script -c` (every argument single-quoted).
fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes a Podman container when dropped, also when an assertion failed.
struct PodmanContainer<'a> {
    f: &'a Fixture,
    name: String,
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = run_status(
            podman(self.f).args(["rm", "-f", "-t", "0", &self.name]),
            None,
        );
    }
}

#[test]
fn podman_exec() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    let n = Names::new("exec");
    let container = PodmanContainer {
        f,
        name: n.name.clone(),
    };
    let mut cmd = podman_run(f, &n.name, &n.cidfile, &["-d"]);
    run(cmd.args([&f.image, "sleep", "1000"]), None).unwrap();
    let exec = |args: &[&str], input: Option<&[u8]>| {
        run_status(podman(f).arg("exec").args(args), input).unwrap()
    };
    let out = exec(&[&n.name, "echo", "hi"], None);
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    let out = exec(&[&n.name, "sh", "-c", "exit 4"], None);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    let out = exec(&["-i", &n.name, "cat"], Some(b"through stdin"));
    assert_eq!(
        text(&out.stdout),
        "through stdin",
        "stderr: {}",
        text(&out.stderr)
    );
    let out = exec(&[&n.name, "sh", "-c", "echo $$"], None);
    let pid = text(&out.stdout);
    assert!(
        !pid.trim().is_empty() && pid.trim() != "1",
        "exec pid {pid:?}"
    );
    // `exec -it` on a real terminal, as for `run -it`.
    let inner = "test -t 0 && echo exec-tty-ok; read line; echo got-$line; exit 6";
    let mut cmd = podman(f);
    cmd.args(["exec", "-it", &n.name, "sh", "-c", inner]);
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &shell_words(&cmd), "/dev/null"]);
    let (status, output) = converse(&mut script, "exec-tty-ok", b"xyz\n");
    assert!(output.contains("got-xyz"), "exec -it: {output}");
    assert_eq!(status.code(), Some(6), "exec -it: {output}");
    drop(container);
    n.assert_gone();
}

#[test]
fn ctr_run_rm() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    for (i, (script, code, want)) in [("echo hi", 0, "hi\n"), ("exit 3", 3, "")]
        .iter()
        .enumerate()
    {
        let id = format!("berth-callers-ctr{i}-{}", std::process::id());
        let out = run_status(
            ctr(f)
                .args(["run", "--rm", "--runc-binary"])
                .arg(&f.runtime)
                .args([&f.image, &id, "sh", "-c", script]),
            None,
        )
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(*code),
            "stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), *want, "stderr: {}", text(&out.stderr));
        assert_gone(&id);
    }
    remove_namespace_cgroups();
}

/// containerd puts each container at cgroupsPath `/<namespace>/<id>`; the runtime (like
/// runc) leaves the namespace's parent directory, which is the test's to remove.
fn remove_namespace_cgroups() {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for ctrl in rd.flatten() {
        let _ = std::fs::remove_dir(ctrl.path().join(CTR_NS));
    }
}

/// A program that exits at once is reaped by conmon or the shim (both subreapers) as soon
/// as `start` lets it run; `start` must still succeed. Repeated to make the race likely.
#[test]
fn fast_exit_start_race() {
    let Some((f, _serial)) = fixture() else {
        return;
    };
    for i in 0..10 {
        let id = format!("berth-callers-fast{i}-{}", std::process::id());
        let out = run_status(
            ctr(f)
                .args(["run", "--rm", "--runc-binary"])
                .arg(&f.runtime)
                .args([&f.image, &id, "true"]),
            None,
        )
        .unwrap();
        assert!(out.status.success(), "ctr run {i}: {}", text(&out.stderr));
        assert_gone(&id);
    }
    remove_namespace_cgroups();
    for i in 0..5 {
        let n = Names::new(&format!("fast{i}"));
        let mut cmd = podman_run(f, &n.name, &n.cidfile, &["--rm"]);
        let out = run_status(cmd.args([&f.image, "true"]), None).unwrap();
        assert!(
            out.status.success(),
            "podman run {i}: {}",
            text(&out.stderr)
        );
        n.assert_gone();
    }
}
