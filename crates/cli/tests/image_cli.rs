//! The `berth` image commands end to end: exit codes and messages, pull/images/tag/rmi
//! against a real registry, kill -9 during a pull then pull again, and no orphaned content
//! after `rmi`. Needs root.

#[path = "../../image/tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_image::Digest;
use common::{FakeRegistry, Layout, Registry, image_routes, run, unique};

fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run berth")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "berth failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Nothing but lock and table files is left in the store.
fn assert_store_empty(root: &Path) {
    for sub in ["blobs/sha256", "layers", "records", "tmp"] {
        let left: Vec<_> = fs::read_dir(root.join("images").join(sub))
            .expect("read store")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "store `{sub}` still has {left:?}");
    }
}

#[test]
fn missing_image_exits_125_with_a_hint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = berth(tmp.path(), &["image", "inspect", "nope"]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("berth: image `nope` not found locally; run `berth pull nope`"),
        "{err}"
    );
    let o = berth(tmp.path(), &["pull", "Bad//Name"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid repository name"));
}

#[test]
fn pull_images_tag_rmi() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    layout.new_image("bb")?;
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(layout.image("bb"))
        .arg(&bundle))?;
    run(
        Command::new(common::workspace().join("scripts/busybox-bundle.sh"))
            .arg(&bundle)
            .arg("/bin/true"),
    )?;
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(layout.image("bb"))
        .arg(&bundle))?;
    let name = unique("cli-busybox");
    layout.push("bb", &reg, &name, &[])?;
    let root = tmp.path().join("root");
    let r = format!("{}/{name}", reg.addr);
    let out = ok(&berth(&root, &["pull", &r]));
    let id = out.lines().last().context("id line")?.to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    ok(&berth(&root, &["tag", &r, "mybox:v1"]));
    let list = ok(&berth(&root, &["images"]));
    assert!(
        list.contains("mybox") && list.contains("v1") && list.contains(&id[7..19]),
        "{list}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&berth(&root, &["image", "inspect", "mybox:v1"])))?;
    assert_eq!(inspect[0]["Id"], id.as_str());
    // Two tags: removing by id needs --force.
    let o = berth(&root, &["rmi", &id[7..19]]);
    assert_eq!(o.status.code(), Some(125));
    ok(&berth(&root, &["rmi", "mybox:v1"]));
    let out = ok(&berth(&root, &["rmi", &r]));
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_store_empty(&root);
    Ok(())
}

#[test]
fn kill_9_during_pull_then_pull_again() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    // A 4 MiB layer of varied bytes served in 16 KiB chunks every 10 ms (~2.5 s).
    let mut data = Vec::with_capacity(4 << 20);
    let mut x: u32 = 1;
    while data.len() < 4 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "big", &data[..])?;
    let tar = tar.into_inner()?;
    let d = Digest::of(&tar);
    let reg = FakeRegistry::start(image_routes("slow/img", &[tar], &[d], None), 10)?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    let r = format!("{}/slow/img", reg.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(&root)
        .args(["pull", &r])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Wait until the layer is being written, then kill -9.
    let tmpdir = root.join("images/tmp");
    for _ in 0..500 {
        if fs::read_dir(&tmpdir).is_ok_and(|mut d| d.next().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?;
    let status = child.wait()?;
    assert!(!status.success(), "pull finished before it was killed");
    let list = ok(&berth(&root, &["images", "-q"]));
    assert!(
        list.trim().is_empty(),
        "a half-pulled image is listed: {list}"
    );
    ok(&berth(&root, &["pull", &r]));
    let list = ok(&berth(&root, &["images", "-q"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    ok(&berth(&root, &["rmi", &r]));
    assert_store_empty(&root);
    Ok(())
}

#[test]
fn concurrent_pulls_of_one_image_agree() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut b = tar::Builder::new(Vec::new());
            let data = vec![i as u8; 256 * 1024];
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("f{i}"), &data[..])
                .expect("append");
            b.into_inner().expect("tar")
        })
        .collect();
    let diffs: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let reg = FakeRegistry::start(image_routes("race/img", &layers, &diffs, None), 2)?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    let r = format!("{}/race/img", reg.addr);
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("--root")
                .arg(&root)
                .args(["pull", "-q", &r])
                .stderr(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut ids = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let list = ok(&berth(&root, &["images", "-q"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    ok(&berth(&root, &["rmi", &r]));
    assert_store_empty(&root);
    Ok(())
}

#[test]
fn import_a_busybox_tarball_offline() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let bundle = tmp.path().join("bundle");
    run(
        Command::new(common::workspace().join("scripts/busybox-bundle.sh"))
            .arg(&bundle)
            .arg("/bin/true"),
    )?;
    let tarball = tmp.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(bundle.join("rootfs"))
        .arg("-cf")
        .arg(&tarball)
        .arg("."))?;
    let root = tmp.path().join("root");
    let id = ok(&berth(
        &root,
        &["import", tarball.to_str().context("path")?, "busybox"],
    ));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let list = ok(&berth(&root, &["images"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("busybox ") && l.contains("latest")),
        "{list}"
    );
    ok(&berth(&root, &["rmi", "busybox"]));
    assert_store_empty(&root);
    Ok(())
}

#[test]
fn login_pull_logout() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let reg = common::htpasswd_registry(tmp.path(), "bob", "hunter2")?;
    let layout = Layout::new(tmp.path())?;
    layout.busybox("bb", tmp.path())?;
    run(Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:hunter2",
        ])
        .arg(format!("oci:{}", layout.image("bb")))
        .arg(format!("docker://{}/private/bb", reg.addr)))?;
    let root = tmp.path().join("root");
    let r = format!("{}/private/bb", reg.addr);
    let o = berth(&root, &["pull", &r]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("run `berth login {}`", reg.addr)),
        "{err}"
    );
    let mut login = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(&root)
        .args(["login", "-u", "bob", "--password-stdin", &reg.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    login
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"hunter2\n")?;
    let out = login.wait_with_output()?;
    assert!(ok(&out).contains("Login Succeeded"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(root.join("auth.json"))?.permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ok(&berth(&root, &["pull", &r]));
    ok(&berth(&root, &["logout", &reg.addr]));
    ok(&berth(&root, &["rmi", &r]));
    assert_eq!(berth(&root, &["pull", &r]).status.code(), Some(125));
    assert_store_empty(&root);
    Ok(())
}
