//! `save` → `load` round trip, a docker-archive written by skopeo loads, and skopeo reads
//! what berth saves. Needs root.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use berth_image::{ClientOptions, PullOptions, Reference, RegistryClient, Store, UnpackOptions};
use common::{Layout, Mounted, Registry, assert_same_tree, run, snapshot, unique};

fn pull(store: &Store, r: &str) -> Result<berth_image::Image> {
    let r: Reference = r.parse()?;
    let c = RegistryClient::new(ClientOptions::default());
    Ok(berth_image::pull(
        store,
        &c,
        &r,
        &PullOptions::default(),
        &berth_image::NoProgress,
    )?)
}

fn tree_of(
    store: &Store,
    img: &berth_image::Image,
    dir: &Path,
) -> Result<std::collections::BTreeMap<String, common::Entry>> {
    let m = Mounted::new(store, img, dir)?;
    snapshot(&m.target)
}

#[test]
fn save_load_round_trip_and_skopeo_reads_it() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    layout.busybox("bb", tmp.path())?;
    let name = unique("save");
    layout.push("bb", &reg, &name, &[])?;
    let r = format!("{}/{name}", reg.addr);
    let store = Store::open(&tmp.path().join("root"))?;
    let img = pull(&store, &r)?;
    let before = tree_of(&store, &img, &tmp.path().join("m1"))?;
    let archive = tmp.path().join("saved.tar");
    let reference: Reference = r.parse()?;
    berth_image::save(
        &store,
        &[(img.clone(), Some(reference.clone()))],
        fs::File::create(&archive)?,
    )?;

    // Peers read it in both forms.
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display())))?;
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display())))?;

    store.remove(&r, false)?;
    assert!(store.list()?.is_empty());
    let loaded = berth_image::load(&store, fs::File::open(&archive)?, UnpackOptions::default())?;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].record.id, img.record.id);
    assert_eq!(store.resolve(&r)?.record.id, img.record.id);
    let after = tree_of(&store, &loaded[0], &tmp.path().join("m2"))?;
    assert_same_tree(&after, &before);
    Ok(())
}

#[test]
fn loads_a_skopeo_docker_archive() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    layout.busybox("bb", tmp.path())?;
    let name = unique("dockerarchive");
    layout.push("bb", &reg, &name, &[])?;
    let archive = tmp.path().join("skopeo.tar");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/{name}", reg.addr))
        .arg(format!(
            "docker-archive:{}:example/loaded:v1",
            archive.display()
        )))?;
    let store = Store::open(&tmp.path().join("root"))?;
    let loaded = berth_image::load(&store, fs::File::open(&archive)?, UnpackOptions::default())?;
    assert_eq!(loaded.len(), 1);
    let img = store.resolve("example/loaded:v1").context("loaded tag")?;
    let theirs = snapshot(&layout.unpack("bb", &tmp.path().join("umoci"))?)?;
    let ours = tree_of(&store, &img, &tmp.path().join("m"))?;
    assert_same_tree(&ours, &theirs);
    Ok(())
}
