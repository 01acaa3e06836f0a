//! The per-network DNS responders: `berth network dns-serve …` processes in the host's
//! namespace, one per user-defined network, found by a pid file.

use super::*;

fn paths(engine: &Engine, name: &str) -> (PathBuf, PathBuf) {
    let dir = engine.runroot.join("net-dns");
    (
        dir.join(format!("{name}.pid")),
        dir.join(format!("{name}.lock")),
    )
}

/// The live responder's pid recorded in `pid_file` ("PID START").
fn running(pid_file: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let (pid, start): (i32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    crate::lifecycle::alive(pid, start).then_some(pid)
}

/// The `berth` binary (the monitor sits next to it).
fn berth_exe() -> Result<PathBuf, NetworkError> {
    let exe = std::env::current_exe().map_err(io("find the berth binary"))?;
    Ok(match exe.file_name() {
        Some(n) if n == "berth" => exe,
        _ => exe.with_file_name("berth"),
    })
}

/// Starts the responder of `net` unless it runs.
pub(super) fn ensure(engine: &Engine, net: &Network) -> Result<(), NetworkError> {
    let (pid_file, lock) = paths(engine, &net.name);
    if running(&pid_file).is_some() {
        return Ok(());
    }
    let dir = engine.runroot.join("net-dns");
    fs::create_dir_all(&dir).map_err(io(format!("create `{}`", dir.display())))?;
    let f = File::create(&lock).map_err(io(format!("open `{}`", lock.display())))?;
    let _held = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("lock `{}`", lock.display()))(e.into()))?;
    if running(&pid_file).is_some() {
        return Ok(());
    }
    let exe = berth_exe()?;
    let child = Command::new(&exe)
        .args(["network", "dns-serve", "--run-dir"])
        .arg(engine.runroot.join("net"))
        .args(["--network", &net.name, "--listen"])
        .arg(format!("{}:53", net.gateway))
        .arg("--network-file")
        .arg(
            engine
                .root
                .join("net/networks")
                .join(format!("{}.json", net.name)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io(format!("run `{}`", exe.display())))?;
    let pid = child.id() as i32;
    let start = crate::lifecycle::process_start_time(pid).unwrap_or(0);
    fs::write(&pid_file, format!("{pid} {start}\n"))
        .map_err(io(format!("write `{}`", pid_file.display())))
}

/// Stops the responder of network `name` (by its recorded pid) and waits for it.
pub(super) fn stop(engine: &Engine, name: &str) {
    let (pid_file, lock) = paths(engine, name);
    if let Some(pid) = running(&pid_file) {
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::lifecycle::process_start_time(pid).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = fs::remove_file(pid_file);
    let _ = fs::remove_file(lock);
}
