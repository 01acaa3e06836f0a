//! The overlay rootfs: an image with 150 layers (far beyond the page-size limit of a
//! `lowerdir=` option string with these paths) mounts, and an imported rootfs tarball
//! mounts as the same tree. Needs root.

mod common;

use std::fs;
use std::process::Command;

use anyhow::Result;
use berth_image::{
    ClientOptions, Digest, PullOptions, Reference, RegistryClient, Store, UnpackOptions,
};
use common::{FakeRegistry, Mounted, assert_same_tree, image_routes, run, snapshot};

fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data)?;
    }
    Ok(b.into_inner()?)
}

#[test]
fn mounts_an_image_with_150_layers() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let n = 150;
    let mut layers = Vec::new();
    for i in 0..n {
        let own = format!("l/{i}");
        let content = i.to_string();
        layers.push(tar_of(&[(&own, b"x"), ("top", content.as_bytes())])?);
    }
    let diffs: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let reg = FakeRegistry::start(image_routes("many/layers", &layers, &diffs, None), 0)?;
    let tmp = tempfile::tempdir()?;
    let store = Store::open(&tmp.path().join("root"))?;
    let r: Reference = format!("{}/many/layers", reg.addr).parse()?;
    let img = berth_image::pull(
        &store,
        &RegistryClient::new(ClientOptions::default()),
        &r,
        &PullOptions::default(),
        &berth_image::NoProgress,
    )?;
    assert_eq!(img.record.layers.len(), n);
    let option_len: usize = img
        .record
        .layers
        .iter()
        .map(|l| store.layer_diff(&l.chain_id).as_os_str().len() + 1)
        .sum();
    assert!(
        option_len > 4096,
        "paths too short to prove the point: {option_len}"
    );
    let m = Mounted::new(&store, &img, &tmp.path().join("mnt"))?;
    assert_eq!(
        fs::read_to_string(m.target.join("top"))?,
        (n - 1).to_string()
    );
    assert_eq!(fs::read_dir(m.target.join("l"))?.count(), n);
    // The upper dir takes writes; the layers stay untouched.
    fs::write(m.target.join("top"), "changed")?;
    let top_layer = store.layer_diff(&img.record.layers[n - 1].chain_id);
    assert_eq!(
        fs::read_to_string(top_layer.join("top"))?,
        (n - 1).to_string()
    );
    Ok(())
}

#[test]
fn imported_tarball_mounts_as_the_same_tree() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("bundle");
    run(
        Command::new(common::workspace().join("scripts/busybox-bundle.sh"))
            .arg(&src)
            .arg("/bin/true"),
    )?;
    let tarball = tmp.path().join("rootfs.tar.gz");
    run(Command::new("tar")
        .arg("-C")
        .arg(src.join("rootfs"))
        .arg("--format=posix")
        .arg("-czf")
        .arg(&tarball)
        .arg("."))?;
    let store = Store::open(&tmp.path().join("root"))?;
    let name: Reference = "imported/busybox:v1".parse()?;
    let img = berth_image::import(
        &store,
        fs::File::open(&tarball)?,
        Some(&name),
        UnpackOptions::default(),
    )?;
    assert_eq!(
        store.resolve("imported/busybox:v1")?.record.id,
        img.record.id
    );
    assert_eq!(img.config.rootfs().diff_ids().len(), 1);
    let m = Mounted::new(&store, &img, &tmp.path().join("mnt"))?;
    let ours = snapshot(&m.target)?;
    let theirs = snapshot(&src.join("rootfs"))?;
    assert_same_tree(&ours, &theirs);
    let out = run(Command::new("chroot").arg(&m.target).args([
        "/bin/sh",
        "-c",
        "echo hello from $(basename /bin/busybox)",
    ]))?;
    assert_eq!(out.trim(), "hello from busybox");
    // The mount(2) fallback for kernels before 6.8 gives the same tree.
    let legacy = Mounted::with_api(
        &store,
        &img,
        &tmp.path().join("mnt-legacy"),
        berth_image::OverlayApi::Legacy,
    )?;
    assert_same_tree(&snapshot(&legacy.target)?, &theirs);
    drop(legacy);
    drop(m);
    // rmi also removes the short link the fallback made.
    store.remove("imported/busybox:v1", false)?;
    assert_eq!(fs::read_dir(store.dir().join("l"))?.count(), 0);
    Ok(())
}
