//! Shared fixtures for the runtime's integration tests: root checks, busybox bundles in
//! temp dirs, a runtime runner with a private `--root`, and leak checks.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub const RUNTIME: &str = env!("CARGO_BIN_EXE_berth-runtime");

/// True if the test can run (root); outside CI prints a SKIP line, under CI panics.
pub fn need_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root, and CI runs as root");
    }
    eprintln!("SKIP {test}: needs root to create containers");
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique container id for this test process.
pub fn unique_id(tag: &str) -> String {
    format!(
        "bt-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A busybox rootfs plus config.json from `berth-runtime spec`, in a temp dir; a private
/// state root; deletes its containers (force) when dropped.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub ids: std::cell::RefCell<Vec<String>>,
}

pub fn make_rootfs(root: &Path) {
    for d in [
        "bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "usr/bin", "var",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("need /bin/busybox from busybox-static");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
}

impl Bundle {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .unwrap();
        let state = tempfile::Builder::new()
            .prefix("berth-state-")
            .tempdir()
            .unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        let out = Command::new(RUNTIME)
            .arg("spec")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b = Bundle {
            dir,
            state,
            ids: Default::default(),
        };
        // Tests write into the rootfs unless they ask for a read-only root themselves.
        b.edit(|c| {
            c["process"]["terminal"] = false.into();
            c["root"]["readonly"] = false.into();
        });
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).unwrap()
    }

    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut c = self.config();
        f(&mut c);
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
    }

    pub fn args(&self, args: &[&str]) {
        let args: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
        self.edit(|c| c["process"]["args"] = Value::Array(args));
    }

    /// Runs `berth-runtime --root STATE <args>` with the bundle as cwd.
    pub fn rt(&self, args: &[&str]) -> Output {
        if let Some(pos) = args.iter().position(|a| matches!(*a, "create" | "run"))
            && let Some(id) = args
                .get(pos + 1..)
                .and_then(|r| r.iter().find(|a| !a.starts_with('-')))
        {
            self.ids.borrow_mut().push(id.to_string());
        }
        // Files, not pipes: a created container inherits the runtime's stdio and would hold
        // a pipe open long after the runtime exited.
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = Command::new(RUNTIME)
            .arg("--root")
            .arg(self.state.path())
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    pub fn rt_ok(&self, args: &[&str]) -> String {
        let out = self.rt(args);
        assert!(
            out.status.success(),
            "berth-runtime {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn state_of(&self, id: &str) -> Value {
        serde_json::from_str(&self.rt_ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state_of(id)["status"].as_str().unwrap().to_string()
    }

    /// Waits (bounded) until the container reports `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            if self.status(id) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "container {id} never became {want}; it is {}",
            self.status(id)
        );
    }

    /// Asserts nothing of container `id` is left: state dir, cgroup dirs, mounts.
    pub fn assert_no_leaks(&self, id: &str) {
        assert!(
            !self.state.path().join(id).exists(),
            "state dir of {id} left behind"
        );
        assert_eq!(
            cgroup_dirs(id),
            Vec::<PathBuf>::new(),
            "cgroup dirs of {id} left behind"
        );
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let bundle = self.path().to_string_lossy().into_owned();
        assert!(!mi.contains(&bundle), "mounts under {bundle} left behind");
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = Command::new(RUNTIME)
                .arg("--root")
                .arg(self.state.path())
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .output();
        }
    }
}

/// Every cgroup directory (any controller, v1 or v2) named after `id`.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for ctrl in rd.flatten() {
        for cand in [ctrl.path().join("berth").join(id), ctrl.path().join(id)] {
            if cand.exists() {
                found.push(cand);
            }
        }
    }
    if Path::new("/sys/fs/cgroup/berth").join(id).exists() {
        found.push(Path::new("/sys/fs/cgroup/berth").join(id));
    }
    found.sort();
    found.dedup();
    found
}

fn read_all(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
