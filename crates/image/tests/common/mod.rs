//! Shared helpers for the root integration tests: root/CI gating, a throwaway registry,
//! and fixture images pushed with umoci + skopeo (never with berth).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The workspace root (for `scripts/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when the test may run. Under CI a test that cannot run fails instead.
pub fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot run under CI: {what}");
    }
    eprintln!("SKIP: {what}");
    false
}

/// Root and the fixture tools are present.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !require("needs root", root) {
        return false;
    }
    for tool in ["umoci", "skopeo", "docker-registry"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !require(&format!("needs `{tool}` (see .ci/packages.txt)"), found) {
            return false;
        }
    }
    true
}

/// Run a command; fail with its output if it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A registry: the shared one from `$BERTH_TEST_REGISTRY`, or our own (stopped on drop).
pub struct Registry {
    pub addr: String,
    own: Option<(u32, PathBuf)>,
}

impl Registry {
    pub fn get() -> Result<Registry> {
        if let Ok(addr) = std::env::var("BERTH_TEST_REGISTRY")
            && !addr.is_empty()
        {
            return Ok(Registry { addr, own: None });
        }
        let out = run(Command::new(workspace().join("scripts/registry.sh")).arg("start"))?;
        let mut vars = BTreeMap::new();
        for part in out.trim().trim_start_matches("export ").split_whitespace() {
            if let Some((k, v)) = part.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        let addr = vars
            .get("BERTH_TEST_REGISTRY")
            .context("registry.sh gave no address")?
            .clone();
        let pid: u32 = vars
            .get("BERTH_TEST_REGISTRY_PID")
            .context("no pid")?
            .parse()?;
        let dir = PathBuf::from(vars.get("BERTH_TEST_REGISTRY_DIR").context("no dir")?);
        Ok(Registry {
            addr,
            own: Some((pid, dir)),
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some((pid, dir)) = &self.own {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A unique name per test run, so tests can share one registry.
pub fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

/// Fill `root` with a busybox rootfs from Debian's busybox-static.
pub fn busybox_rootfs(root: &Path) -> Result<()> {
    fs::create_dir_all(root)?;
    run(Command::new(workspace().join("scripts/busybox-bundle.sh"))
        .arg(root.parent().context("parent")?)
        .arg("/bin/true"))?;
    Ok(())
}

/// An OCI layout under `dir` being built with umoci.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Result<Layout> {
        let l = Layout {
            dir: dir.join("oci"),
        };
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&l.dir))?;
        Ok(l)
    }

    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }

    /// `umoci new`.
    pub fn new_image(&self, tag: &str) -> Result<()> {
        run(Command::new("umoci")
            .args(["new", "--image"])
            .arg(self.image(tag)))
        .map(drop)
    }

    /// Unpack `tag` into `bundle`, let `edit` change its rootfs, repack as a new layer.
    pub fn add_layer(
        &self,
        tag: &str,
        bundle: &Path,
        edit: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let _ = fs::remove_dir_all(bundle);
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(self.image(tag))
            .arg(bundle))?;
        edit(&bundle.join("rootfs"))?;
        run(Command::new("umoci")
            .args(["repack", "--image"])
            .arg(self.image(tag))
            .arg(bundle))?;
        fs::remove_dir_all(bundle)?;
        Ok(())
    }

    /// `umoci new` + one layer with a busybox rootfs from busybox-static.
    pub fn busybox(&self, tag: &str, scratch: &Path) -> Result<()> {
        self.new_image(tag)?;
        let bundle = scratch.join("bb-bundle");
        let _ = fs::remove_dir_all(&bundle);
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(self.image(tag))
            .arg(&bundle))?;
        run(Command::new(workspace().join("scripts/busybox-bundle.sh"))
            .arg(&bundle)
            .arg("/bin/true"))?;
        run(Command::new("umoci")
            .args(["repack", "--image"])
            .arg(self.image(tag))
            .arg(&bundle))?;
        fs::remove_dir_all(&bundle)?;
        Ok(())
    }

    /// Add a prebuilt tar as a layer.
    pub fn add_raw_layer(&self, tag: &str, tar: &Path) -> Result<()> {
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(self.image(tag))
            .arg(tar))
        .map(drop)
    }

    /// `umoci unpack` into `bundle` (the reference rootfs for comparisons).
    pub fn unpack(&self, tag: &str, bundle: &Path) -> Result<PathBuf> {
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(self.image(tag))
            .arg(bundle))?;
        Ok(bundle.join("rootfs"))
    }

    /// Push `tag` to `reg/name` with skopeo; `extra` are extra skopeo flags.
    pub fn push(&self, tag: &str, reg: &Registry, name: &str, extra: &[&str]) -> Result<()> {
        run(Command::new("skopeo")
            .arg("copy")
            .arg("--dest-tls-verify=false")
            .args(extra)
            .arg(format!("oci:{}", self.image(tag)))
            .arg(format!("docker://{}/{name}", reg.addr)))
        .map(drop)
    }
}

/// One file's identity for tree comparison.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub detail: String,
}

/// Walk `root` (without following symlinks) into path → entry.
pub fn snapshot(root: &Path) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let m = fs::symlink_metadata(&p)?;
        let ft = m.file_type();
        let (kind, detail) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&p)?.display().to_string())
        } else if ft.is_file() {
            let mut data = Vec::new();
            fs::File::open(&p)?.read_to_end(&mut data)?;
            (
                "file",
                format!(
                    "{} {} mtime={}.{:09}",
                    data.len(),
                    berth_image::Digest::of(&data),
                    m.mtime(),
                    m.mtime_nsec()
                ),
            )
        } else if ft.is_char_device() {
            ("char", format!("{:x}", m.rdev()))
        } else if ft.is_block_device() {
            ("block", format!("{:x}", m.rdev()))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("other", String::new())
        };
        let rel = p.strip_prefix(root)?.display().to_string();
        out.insert(
            rel,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                detail,
            },
        );
        if ft.is_dir() {
            walk(root, &p, out)?;
        }
    }
    Ok(())
}

/// Assert two snapshots are equal, listing every difference.
pub fn assert_same_tree(ours: &BTreeMap<String, Entry>, theirs: &BTreeMap<String, Entry>) {
    let mut diffs = Vec::new();
    for (k, v) in theirs {
        match ours.get(k) {
            None => diffs.push(format!("missing in berth: {k} {v:?}")),
            Some(o) if o != v => {
                diffs.push(format!("differs: {k}\n  berth: {o:?}\n  umoci: {v:?}"))
            }
            _ => {}
        }
    }
    for k in ours.keys() {
        if !theirs.contains_key(k) {
            diffs.push(format!("extra in berth: {k} {:?}", ours[k]));
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// An overlay mount of an image for inspection, unmounted and removed on drop.
pub struct Mounted {
    pub target: PathBuf,
    dir: PathBuf,
}

impl Mounted {
    pub fn new(
        store: &berth_image::Store,
        img: &berth_image::Image,
        dir: &Path,
    ) -> Result<Mounted> {
        Mounted::with_api(store, img, dir, berth_image::OverlayApi::Auto)
    }

    pub fn with_api(
        store: &berth_image::Store,
        img: &berth_image::Image,
        dir: &Path,
        api: berth_image::OverlayApi,
    ) -> Result<Mounted> {
        let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &target] {
            fs::create_dir_all(d)?;
        }
        berth_image::mount_rootfs_with(store, img, &upper, &work, &target, api)?;
        Ok(Mounted {
            target,
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = berth_image::unmount_rootfs(&self.target);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A minimal registry on 127.0.0.1 serving fixed documents by path, for content a real
/// registry would refuse (hostile layers, wrong digests). `delay_ms` slows blob bodies.
pub struct FakeRegistry {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests seen with an `Authorization` header.
    pub authorized: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// What a fake registry serves: path → (content type, body).
pub type Routes = BTreeMap<String, (String, Vec<u8>)>;

impl FakeRegistry {
    pub fn start(routes: Routes, delay_ms: u64) -> Result<FakeRegistry> {
        FakeRegistry::start_flaky(routes, delay_ms, 0)
    }

    /// Like `start`, but the first `fail_blobs` blob requests get HTTP 503. A route whose
    /// content type is `redirect` answers 307 with its body as `Location`. Requests that
    /// carry an `Authorization` header are counted in `authorized`.
    pub fn start_flaky(routes: Routes, delay_ms: u64, fail_blobs: usize) -> Result<FakeRegistry> {
        use std::io::{BufRead, BufReader, Write};
        let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(fail_blobs));
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        listener.set_nonblocking(true)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let routes = std::sync::Arc::new(routes);
        let authorized = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let authorized2 = authorized.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((sock, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let routes = routes.clone();
                let failures = failures.clone();
                let authorized = authorized2.clone();
                std::thread::spawn(move || {
                    let _ = sock.set_nonblocking(false);
                    let mut r = BufReader::new(&sock);
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if h.to_ascii_lowercase().starts_with("authorization:") {
                            authorized.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut w = &sock;
                    if path.contains("/blobs/")
                        && failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                    {
                        let _ = write!(
                            w,
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        return;
                    }
                    match routes.get(&path) {
                        Some((ct, body)) if ct == "redirect" => {
                            let to = String::from_utf8_lossy(body);
                            let _ = write!(
                                w,
                                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                        }
                        Some((ct, body)) => {
                            let _ = write!(
                                w,
                                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            for chunk in body.chunks(16 * 1024) {
                                if w.write_all(chunk).is_err() {
                                    return;
                                }
                                if delay_ms > 0 && path.contains("/blobs/") {
                                    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
                                }
                            }
                        }
                        None => {
                            let _ = write!(
                                w,
                                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                        }
                    }
                });
            }
        });
        Ok(FakeRegistry {
            addr,
            stop,
            authorized,
        })
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Routes for a one-image repository `name:latest` made of `layers` (already compressed or
/// not). `blob_override` replaces a layer's served bytes (to serve a wrong blob).
pub fn image_routes(
    name: &str,
    layers: &[Vec<u8>],
    diff_ids: &[berth_image::Digest],
    blob_override: Option<(usize, Vec<u8>)>,
) -> Routes {
    use berth_image::Digest;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let cdig = Digest::of(&config);
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of(l).to_string(), "size": l.len()}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig.to_string(), "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let mut routes = Routes::new();
    let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
    routes.insert(
        format!("/v2/{name}/manifests/latest"),
        (mt.clone(), manifest.clone()),
    );
    routes.insert(
        format!("/v2/{name}/manifests/{}", Digest::of(&manifest)),
        (mt, manifest),
    );
    routes.insert(
        format!("/v2/{name}/blobs/{cdig}"),
        ("application/octet-stream".into(), config),
    );
    for (i, l) in layers.iter().enumerate() {
        let body = match &blob_override {
            Some((j, b)) if *j == i => b.clone(),
            _ => l.clone(),
        };
        routes.insert(
            format!("/v2/{name}/blobs/{}", Digest::of(l)),
            ("application/octet-stream".into(), body),
        );
    }
    routes
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A docker-registry process with its own config, killed by PID on drop.
pub struct OwnRegistry {
    pub addr: String,
    child: Child,
}

impl OwnRegistry {
    pub fn start(dir: &Path, auth_yaml: &str) -> Result<OwnRegistry> {
        let port = free_port()?;
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n{auth_yaml}",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("log"))?)
            .spawn()?;
        let reg = OwnRegistry {
            addr: format!("127.0.0.1:{port}"),
            child,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&reg.addr).is_ok() {
                return Ok(reg);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "registry did not start: {}",
            fs::read_to_string(dir.join("log")).unwrap_or_default()
        )
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry in htpasswd mode with `user:pass`, storage under `dir`.
pub fn htpasswd_registry(dir: &Path, user: &str, pass: &str) -> Result<OwnRegistry> {
    let hp = dir.join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", user, pass]))?;
    fs::write(&hp, line.trim())?;
    OwnRegistry::start(
        dir,
        &format!(
            "  htpasswd:\n    realm: berth-test\n    path: {}\n",
            hp.display()
        ),
    )
}
