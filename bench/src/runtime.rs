//! One OCI runtime under test: its binary, its own `--root` state dir, and (for crun on
//! a hybrid cgroup host) the mount namespace it must run in. Every invocation is waited
//! for with a timeout and reaped with `wait4`, which gives its peak RSS.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sys::{self, Waited};

/// The cgroup2 mount of a hybrid host, which crun refuses to run beside v1 controllers.
const UNIFIED_MOUNT: &CStr = c"/sys/fs/cgroup/unified";

/// Why a runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeSetupError {
    #[error("create state dir for runtime `{name}`")]
    StateDir {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("make a mount namespace without `/sys/fs/cgroup/unified` for runtime `{name}`")]
    MountNs {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one invocation of a runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("spawn `{runtime} {op}`")]
    Spawn {
        runtime: String,
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for `{runtime} {op}`")]
    Wait {
        runtime: String,
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{runtime} {op}` still running after {secs} s; killed")]
    Timeout {
        runtime: String,
        op: String,
        secs: u64,
    },
    #[error("`{runtime} {op}` exited with {code}: {stderr}")]
    Failed {
        runtime: String,
        op: String,
        code: i32,
        stderr: String,
    },
}

/// A finished invocation.
#[derive(Debug, Clone, Copy)]
pub struct Invoked {
    /// The runtime's exit code (for `run`, the container's).
    pub code: i32,
    /// Peak RSS of the runtime process (`ru_maxrss` from `wait4`), in KiB.
    pub maxrss_kib: u64,
}

/// A runtime binary with its own state dir.
#[derive(Debug)]
pub struct Runtime {
    name: String,
    path: PathBuf,
    root: tempfile::TempDir,
    mount_ns: Option<File>,
    timeout: Duration,
}

impl Drop for Runtime {
    /// Deletes the containers left behind. Also: crun, seeing no cgroup2 mount in the namespace that hides it, makes its v2 cgroup
    /// dirs in the tmpfs beneath (`/sys/fs/cgroup/unified/berth-bench-<pid>/…`, visible
    /// only there); they are removed there, if that view is still a tmpfs.
    fn drop(&mut self) {
        self.delete_all();
        let Some(ns) = &self.mount_ns else {
            return;
        };
        let dir = Path::new("/sys/fs/cgroup/unified").join(crate::cgroup::parent_name());
        let _ = sys::in_mount_ns(ns, || {
            let tmpfs = nix::sys::statfs::statfs("/sys/fs/cgroup/unified")
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
            if tmpfs {
                let _ = std::fs::remove_dir_all(&dir);
            }
        });
    }
}

impl Runtime {
    /// Sets up `path` under the label `name` with a fresh `--root` dir. With
    /// `hide_unified`, every invocation runs in a private mount namespace where
    /// `/sys/fs/cgroup/unified` is unmounted.
    pub fn new(
        name: &str,
        path: &Path,
        hide_unified: bool,
        timeout: Duration,
    ) -> Result<Self, RuntimeSetupError> {
        let root = tempfile::Builder::new()
            .prefix(&format!("berth-bench-{name}."))
            .tempdir()
            .map_err(|source| RuntimeSetupError::StateDir {
                name: name.to_owned(),
                source,
            })?;
        let mount_ns = if hide_unified && Path::new("/sys/fs/cgroup/unified").exists() {
            let ns = sys::mount_ns_without(UNIFIED_MOUNT).map_err(|source| {
                RuntimeSetupError::MountNs {
                    name: name.to_owned(),
                    source,
                }
            })?;
            Some(ns)
        } else {
            None
        };
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            root,
            mount_ns,
            timeout,
        })
    }

    /// The label given on the command line.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this runtime runs in the namespace without the cgroup2 mount.
    pub fn hides_unified(&self) -> bool {
        self.mount_ns.is_some()
    }

    /// `create --bundle B --pid-file P ID`.
    pub fn create(&self, id: &str, bundle: &Path, pid_file: &Path) -> Result<Invoked, InvokeError> {
        let args = [
            OsStr::new("create"),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
            OsStr::new("--pid-file"),
            pid_file.as_os_str(),
            OsStr::new(id),
        ];
        self.invoke_ok(&args)
    }

    /// `start ID`.
    pub fn start(&self, id: &str) -> Result<Invoked, InvokeError> {
        self.invoke_ok(&[OsStr::new("start"), OsStr::new(id)])
    }

    /// `delete ID`, or `delete --force ID`.
    pub fn delete(&self, id: &str, force: bool) -> Result<Invoked, InvokeError> {
        if force {
            self.invoke_ok(&[OsStr::new("delete"), OsStr::new("--force"), OsStr::new(id)])
        } else {
            self.invoke_ok(&[OsStr::new("delete"), OsStr::new(id)])
        }
    }

    /// `run --bundle B ID` in the foreground; the exit code is the container's.
    pub fn run(&self, id: &str, bundle: &Path) -> Result<Invoked, InvokeError> {
        let args = [
            OsStr::new("run"),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
            OsStr::new(id),
        ];
        self.invoke(&args)
    }

    /// A file inside this runtime's private dir (for pid files).
    pub fn scratch_path(&self, file: &str) -> PathBuf {
        self.root.path().join(format!("bench-{file}"))
    }

    /// Removes every container left in this runtime's state dir (after a failed cycle).
    pub fn delete_all(&self) {
        let state = self.root.path().join("state");
        let Ok(entries) = std::fs::read_dir(&state) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str() {
                let _ = self.delete(id, true);
            }
        }
    }

    /// Runs one command; a non-zero exit is an error.
    fn invoke_ok(&self, args: &[&OsStr]) -> Result<Invoked, InvokeError> {
        let done = self.invoke(args)?;
        if done.code != 0 {
            return Err(InvokeError::Failed {
                runtime: self.name.clone(),
                op: op_name(args),
                code: done.code,
                stderr: self.read_stderr(),
            });
        }
        Ok(done)
    }

    /// Runs `PATH --root ROOT/state ARGS`, stdin/stdout on /dev/null (a created container
    /// inherits them, so a pipe would never see EOF) and stderr to a file.
    fn invoke(&self, args: &[&OsStr]) -> Result<Invoked, InvokeError> {
        let op = || op_name(args);
        let stderr = File::create(self.stderr_path()).map_err(|source| InvokeError::Spawn {
            runtime: self.name.clone(),
            op: op(),
            source,
        })?;
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root")
            .arg(self.root.path().join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let ns = self.mount_ns.as_ref().map(AsRawFd::as_raw_fd);
        // A pre_exec hook makes std fork instead of posix_spawn (vfork): the runtime then
        // execs from a copy of our memory, not from our own mm, whose high-water RSS the
        // kernel would otherwise fold into the child's ru_maxrss at exec.
        // SAFETY: the closure runs between fork and exec; it makes at most one setns
        // syscall (async-signal-safe, no allocation) on an fd that `self` keeps open.
        unsafe {
            cmd.pre_exec(move || match ns {
                Some(fd) => sys::enter_mount_ns(fd),
                None => Ok(()),
            })
        };
        let child = cmd.spawn().map_err(|source| InvokeError::Spawn {
            runtime: self.name.clone(),
            op: op(),
            source,
        })?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let wait_err = |source| InvokeError::Wait {
            runtime: self.name.clone(),
            op: op(),
            source,
        };
        let pidfd = sys::pidfd_open(pid).map_err(wait_err)?;
        match sys::wait_child(pid, &pidfd, self.timeout).map_err(wait_err)? {
            Waited::Exited(r) => Ok(Invoked {
                code: r.code,
                maxrss_kib: r.maxrss_kib,
            }),
            Waited::TimedOut => Err(InvokeError::Timeout {
                runtime: self.name.clone(),
                op: op(),
                secs: self.timeout.as_secs(),
            }),
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.path().join("bench-stderr")
    }

    fn read_stderr(&self) -> String {
        let mut text = String::new();
        if let Ok(f) = File::open(self.stderr_path()) {
            let _ = f.take(4096).read_to_string(&mut text);
        }
        text.trim().to_owned()
    }
}

/// Peak RSS of spawning `prog args` (a tiny static program) through the same path as a
/// runtime: the floor every `ru_maxrss` figure includes, since the kernel folds the
/// high-water RSS of the forked copy of this process into the child's at exec.
pub fn spawn_floor_kib(prog: &Path, args: &[&str]) -> std::io::Result<u64> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: an empty hook; it only makes std fork the way `Runtime::invoke` does.
    unsafe { cmd.pre_exec(|| Ok(())) };
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let pidfd = sys::pidfd_open(pid)?;
    match sys::wait_child(pid, &pidfd, Duration::from_secs(10))? {
        Waited::Exited(r) => Ok(r.maxrss_kib),
        Waited::TimedOut => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
    }
}

fn op_name(args: &[&OsStr]) -> String {
    let mut op = args
        .first()
        .map_or_else(String::new, |a| a.to_string_lossy().into_owned());
    if let Some(last) = args.last().filter(|_| args.len() > 1) {
        op.push(' ');
        op.push_str(&last.to_string_lossy());
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in runtime: `--root DIR OP ...`; `fail` exits 3 after a message on
    /// stderr, `hang` sleeps, `run` exits 7 (the container's code), others exit 0.
    fn fake_runtime(dir: &Path) -> PathBuf {
        let path = dir.join("fake-runtime");
        let script = "#!/bin/sh\necho \"fake: $3 failed\" >&2\n\
                      case \"$3\" in fail) exit 3;; hang) exec sleep 60;; run) exit 7;; esac\n";
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A fork on another test thread may briefly hold our write fd (ETXTBSY on exec).
        for _ in 0..200 {
            match Command::new(&path).output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        path
    }

    fn runtime(timeout: Duration) -> (tempfile::TempDir, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new("fake", &fake_runtime(dir.path()), false, timeout).unwrap();
        (dir, rt)
    }

    #[test]
    fn success_failure_and_exit_code() {
        let (_dir, rt) = runtime(Duration::from_secs(30));
        let done = rt.start("c1").unwrap();
        assert_eq!(done.code, 0);
        assert!(done.maxrss_kib > 0, "wait4 reported no RSS");
        match rt.invoke_ok(&[OsStr::new("fail"), OsStr::new("c1")]) {
            Err(InvokeError::Failed {
                code, stderr, op, ..
            }) => {
                assert_eq!(code, 3);
                assert_eq!(op, "fail c1");
                assert_eq!(stderr, "fake: fail failed");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        // `run` reports the container's code instead of failing.
        assert_eq!(rt.run("c1", Path::new("/b")).unwrap().code, 7);
    }

    #[test]
    fn hung_command_is_killed() {
        let (_dir, rt) = runtime(Duration::from_millis(200));
        match rt.invoke(&[OsStr::new("hang")]) {
            Err(InvokeError::Timeout { op, .. }) => assert_eq!(op, "hang"),
            other => panic!("expected Timeout, got {other:?}"),
        }
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let rt = Runtime::new(
            "none",
            Path::new("/nonexistent/rt"),
            false,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(matches!(rt.start("x"), Err(InvokeError::Spawn { .. })));
    }

    #[test]
    fn op_name_is_verb_and_id() {
        let args = [
            OsStr::new("create"),
            OsStr::new("--bundle"),
            OsStr::new("b"),
            OsStr::new("c1"),
        ];
        assert_eq!(op_name(&args), "create c1");
        assert_eq!(op_name(&[OsStr::new("state")]), "state");
    }
}
