//! Fixtures for root integration tests: every test runs on a thread inside a throwaway
//! "host" network namespace, so bridges, veths, routes, sysctls and nftables tables live
//! and die with it; "containers" are further namespaces held open by an fd.

#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::Command;

use anyhow::{Context, Result, bail};
use berth_net::{NetConfig, NetStore};
use nix::sched::{CloneFlags, setns, unshare};

/// Whether the test may run: root is needed. Under CI a missing privilege is a failure.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("root integration test cannot run without root under CI");
    }
    eprintln!("SKIP: needs root (network namespaces, netlink)");
    false
}

/// Runs `body` on a new thread inside a fresh network namespace; everything the body
/// creates in that namespace disappears when the thread and its fds are gone.
pub fn in_private_host<F>(body: F)
where
    F: FnOnce() -> Result<()> + Send + 'static,
{
    let handle = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare host netns")?;
        set_lo_up(&ns_path_of_thread())?;
        body()
    });
    match handle.join() {
        Ok(r) => r.unwrap(),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The `/proc` path of the calling thread's network namespace.
pub fn ns_path_of_thread() -> String {
    format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    )
}

/// The `/proc` path through which other processes can enter the namespace held by `fd`.
pub fn ns_path_of_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// Runs a command (for inspection only) inside the namespace at `ns_path`.
pub fn run_in_ns(ns_path: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns_path}"))
        .args(args)
        .output()
        .with_context(|| format!("run {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn set_lo_up(ns_path: &str) -> Result<()> {
    run_in_ns(ns_path, &["ip", "link", "set", "lo", "up"]).map(|_| ())
}

/// A "container" network namespace, alive as long as this value.
pub struct ContainerNs {
    pub fd: OwnedFd,
}

impl ContainerNs {
    pub fn new() -> Result<Self> {
        let fd = std::thread::spawn(|| -> Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare container netns")?;
            let f = std::fs::File::open("/proc/thread-self/ns/net").context("open netns")?;
            Ok(OwnedFd::from(f))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))??;
        Ok(Self { fd })
    }

    pub fn path(&self) -> String {
        ns_path_of_fd(self.fd.as_fd())
    }

    /// Runs `work` on a thread inside this namespace.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, work: F) -> T {
        let fd = self.fd.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(fd, CloneFlags::CLONE_NEWNET).expect("setns into container netns");
                work()
            })
            .join()
            .expect("container thread panicked")
        })
    }
}

/// A store in a temp dir with test names (table `berth_test`, `bt` prefixes).
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: NetStore,
}

pub fn test_config() -> NetConfig {
    NetConfig {
        nft_table: "berth_test".into(),
        default_network: "bridge".into(),
        default_bridge: format!("bt{}d", std::process::id() % 100_000),
        bridge_prefix: "btbr".into(),
        veth_prefix: "btv".into(),
        ..NetConfig::default()
    }
}

impl TestStore {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = NetStore::open_with(
            &dir.path().join("state"),
            &dir.path().join("run"),
            test_config(),
        )?;
        Ok(Self { dir, store })
    }
}

/// Names of links in the calling thread's namespace with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let out = run_in_ns(&ns_path_of_thread(), &["ip", "-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// `nft list table ip NAME` in the calling thread's namespace.
pub fn nft_table(name: &str) -> Result<String> {
    run_in_ns(&ns_path_of_thread(), &["nft", "list", "table", "ip", name])
}
