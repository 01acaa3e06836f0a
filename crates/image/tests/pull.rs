//! Pull real images pushed with umoci + skopeo into a Distribution registry and compare the
//! mounted overlay rootfs with what `umoci unpack` produces. Needs root.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use berth_image::{ClientOptions, Digest, Platform, PullOptions, Reference, RegistryClient, Store};
use common::{Layout, Mounted, Registry, assert_same_tree, run, snapshot, unique};

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
}

fn pull(store: &Store, r: &str, opts: &PullOptions) -> Result<berth_image::Image> {
    let r: Reference = r.parse()?;
    Ok(berth_image::pull(
        store,
        &client(),
        &r,
        opts,
        &berth_image::NoProgress,
    )?)
}

/// Pull `name` and compare the mounted rootfs with `umoci unpack` of `tag`.
fn pull_and_compare(
    tmp: &Path,
    layout: &Layout,
    tag: &str,
    reg: &Registry,
    name: &str,
) -> Result<berth_image::Image> {
    let store = Store::open(&tmp.join("root"))?;
    let img = pull(
        &store,
        &format!("{}/{name}", reg.addr),
        &PullOptions::default(),
    )?;
    let theirs = snapshot(&layout.unpack(tag, &tmp.join("umoci-bundle"))?)?;
    let m = Mounted::new(&store, &img, &tmp.join("mnt"))?;
    let ours = snapshot(&m.target)?;
    assert_same_tree(&ours, &theirs);
    assert!(
        ours.len() > 100,
        "rootfs suspiciously small: {}",
        ours.len()
    );
    Ok(img)
}

fn busybox_layer(layout: &Layout, tmp: &Path, tag: &str) -> Result<()> {
    layout.busybox(tag, tmp)
}

#[test]
fn pulls_busybox_like_umoci() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    busybox_layer(&layout, tmp.path(), "bb")?;
    let name = unique("busybox");
    layout.push("bb", &reg, &name, &[])?;
    let img = pull_and_compare(tmp.path(), &layout, "bb", &reg, &name)?;
    // A second pull finds everything stored and gives the same image.
    let store = Store::open(&tmp.path().join("root"))?;
    let again = pull(
        &store,
        &format!("{}/{name}", reg.addr),
        &PullOptions::default(),
    )?;
    assert_eq!(again.record.id, img.record.id);
    // By digest too.
    let m = img.record.manifest.clone().context("manifest")?;
    let by_digest = pull(
        &store,
        &format!("{}/{name}@{m}", reg.addr),
        &PullOptions::default(),
    )?;
    assert_eq!(by_digest.record.id, img.record.id);
    Ok(())
}

fn add(
    b: &mut tar::Builder<fs::File>,
    path: &str,
    kind: tar::EntryType,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data)?;
    Ok(())
}

/// Layer 1: busybox plus a tree of every file kind; layer 2 (umoci): deletions and a
/// replaced directory; layer 3 (hand-made tar): an opaque directory and a whiteout.
fn build_multilayer(layout: &Layout, tmp: &Path, tag: &str) -> Result<()> {
    busybox_layer(layout, tmp, tag)?;
    layout.add_layer(tag, &tmp.join("bundle"), |root| {
        fs::create_dir_all(root.join("srv/replaced"))?;
        fs::write(root.join("srv/replaced/a"), "a")?;
        fs::write(root.join("srv/replaced/b"), "b")?;
        fs::create_dir_all(root.join("srv/opaque/sub"))?;
        fs::write(root.join("srv/opaque/old"), "old")?;
        fs::write(root.join("srv/opaque/sub/deep"), "deep")?;
        fs::write(root.join("srv/gone"), "gone")?;
        fs::write(root.join("srv/keep"), "keep")?;
        fs::write(root.join("srv/suid"), "#!/bin/sh\n")?;
        fs::set_permissions(root.join("srv/suid"), fs::Permissions::from_mode(0o4755))?;
        std::os::unix::fs::chown(root.join("srv/suid"), Some(1000), Some(1001))?;
        fs::hard_link(root.join("srv/keep"), root.join("srv/keep-hard"))?;
        symlink("../etc/passwd", root.join("srv/passwd-link"))?;
        run(Command::new("mkfifo").arg(root.join("srv/fifo")))?;
        run(Command::new("mknod")
            .arg(root.join("srv/null"))
            .args(["c", "1", "3"]))?;
        fs::create_dir_all(root.join("srv/sticky"))?;
        fs::set_permissions(root.join("srv/sticky"), fs::Permissions::from_mode(0o1777))?;
        Ok(())
    })?;
    layout.add_layer(tag, &tmp.join("bundle"), |root| {
        fs::remove_file(root.join("srv/gone"))?;
        fs::remove_dir_all(root.join("srv/replaced"))?;
        fs::create_dir_all(root.join("srv/replaced"))?;
        fs::write(root.join("srv/replaced/c"), "c")?;
        fs::write(root.join("srv/keep"), "changed")?;
        Ok(())
    })?;
    // umoci never writes opaque markers itself, so the third layer is a hand-made tar.
    let tar_path = tmp.join("opaque.tar");
    let mut b = tar::Builder::new(fs::File::create(&tar_path)?);
    add(&mut b, "srv/opaque/", tar::EntryType::Directory, b"", 0o755)?;
    add(
        &mut b,
        "srv/opaque/.wh..wh..opq",
        tar::EntryType::Regular,
        b"",
        0o644,
    )?;
    add(
        &mut b,
        "srv/opaque/new",
        tar::EntryType::Regular,
        b"new",
        0o600,
    )?;
    add(
        &mut b,
        "srv/.wh.passwd-link",
        tar::EntryType::Regular,
        b"",
        0o644,
    )?;
    // A file with file capabilities (cap_net_raw+ep, v2 format) and a user xattr.
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", &CAP_NET_RAW_EP[..]),
        ("SCHILY.xattr.user.note", &b"hello"[..]),
    ])?;
    add(
        &mut b,
        "srv/ping",
        tar::EntryType::Regular,
        b"#!/bin/sh\n",
        0o755,
    )?;
    b.into_inner()?.sync_all()?;
    layout.add_raw_layer(tag, &tar_path)
}

/// `security.capability` v2 with cap_net_raw (13) permitted and the effective flag.
const CAP_NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn whiteouts_and_opaque_dirs_match_umoci() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    build_multilayer(&layout, tmp.path(), "multi")?;
    let name = unique("multi");
    layout.push("multi", &reg, &name, &[])?;
    let img = pull_and_compare(tmp.path(), &layout, "multi", &reg, &name)?;
    assert_eq!(img.record.layers.len(), 4);
    // The whiteouts are overlay's own form in the layer directories.
    let store = Store::open(&tmp.path().join("root"))?;
    let top = store.layer_diff(&img.record.layers[3].chain_id);
    let opq = xattr_of(&top.join("srv/opaque"), "trusted.overlay.opaque")?;
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));
    let wh = fs::symlink_metadata(top.join("srv/passwd-link"))?;
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    // xattrs, security.capability included, reach the merged view as umoci sets them.
    let theirs = tmp.path().join("umoci-bundle/rootfs/srv/ping");
    let m = Mounted::new(&store, &img, &tmp.path().join("mnt-x"))?;
    let ours = m.target.join("srv/ping");
    for name in ["security.capability", "user.note"] {
        let (o, t) = (xattr_of(&ours, name)?, xattr_of(&theirs, name)?);
        assert!(o.is_some(), "berth lost {name}");
        assert_eq!(o, t, "{name} differs from umoci's");
    }
    assert_eq!(
        xattr_of(&ours, "security.capability")?.as_deref(),
        Some(&CAP_NET_RAW_EP[..])
    );
    Ok(())
}

fn xattr_of(p: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let out = Command::new("getfattr")
        .arg("--only-values")
        .arg("-n")
        .arg(name)
        .arg(p)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(Some(o.stdout)),
        Ok(_) => Ok(None),
        // Without getfattr, read it through the kernel directly.
        Err(_) => {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
            let n = std::ffi::CString::new(name)?;
            let mut buf = [0u8; 64];
            // SAFETY: both strings are NUL-terminated, buf is a live buffer of the given size.
            let r = unsafe {
                libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            Ok(usize::try_from(r).ok().map(|len| buf[..len].to_vec()))
        }
    }
}

#[test]
fn zstd_layers_match_umoci() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    busybox_layer(&layout, tmp.path(), "bb")?;
    let name = unique("zstd");
    layout.push(
        "bb",
        &reg,
        &name,
        &["--dest-compress-format", "zstd", "--dest-compress"],
    )?;
    let img = pull_and_compare(tmp.path(), &layout, "bb", &reg, &name)?;
    let blob = img
        .record
        .layers
        .last()
        .and_then(|l| l.blob.clone())
        .context("layer blob")?;
    assert!(
        blob.media_type.ends_with("+zstd"),
        "media type {}",
        blob.media_type
    );
    Ok(())
}

/// Write `data` as a blob of an OCI layout and return its descriptor JSON.
fn put_layout_blob(layout: &Layout, media_type: &str, data: &[u8]) -> Result<serde_json::Value> {
    let d = Digest::of(data);
    fs::write(layout.dir.join("blobs/sha256").join(d.hex()), data)?;
    Ok(serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()}))
}

/// Turn tag `bb` into an index `multi` with an amd64 and an arm64/v8 entry.
fn build_index(layout: &Layout) -> Result<()> {
    let index_path = layout.dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path)?)?;
    let amd = index["manifests"][0].clone();
    let digest: Digest = amd["digest"].as_str().context("digest")?.parse()?;
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(
        layout.dir.join("blobs/sha256").join(digest.hex()),
    )?)?;
    let cdig: Digest = manifest["config"]["digest"]
        .as_str()
        .context("config")?
        .parse()?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.dir.join("blobs/sha256").join(cdig.hex()))?)?;
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let cdesc = put_layout_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config)?,
    )?;
    let mut arm = manifest.clone();
    arm["config"] = cdesc;
    let mut arm_desc = put_layout_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&arm)?,
    )?;
    arm_desc["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let mut amd_desc = serde_json::json!({"mediaType": amd["mediaType"], "digest": amd["digest"], "size": amd["size"]});
    amd_desc["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm_desc, amd_desc]});
    let mut idx_desc = put_layout_blob(
        layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&idx)?,
    )?;
    idx_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multi"});
    index["manifests"]
        .as_array_mut()
        .context("manifests")?
        .push(idx_desc);
    fs::write(&index_path, serde_json::to_vec(&index)?)?;
    Ok(())
}

#[test]
fn multi_arch_index_selects_platform() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path())?;
    busybox_layer(&layout, tmp.path(), "bb")?;
    build_index(&layout)?;
    let name = unique("index");
    layout.push("multi", &reg, &name, &["--all"])?;
    let store = Store::open(&tmp.path().join("root"))?;
    let r = format!("{}/{name}", reg.addr);
    let amd = PullOptions {
        platform: "linux/amd64".parse::<Platform>()?,
        ..Default::default()
    };
    let a = pull(&store, &r, &amd)?;
    assert_eq!(a.config.architecture().to_string(), "amd64");
    let arm = PullOptions {
        platform: "linux/arm64".parse::<Platform>()?,
        ..Default::default()
    };
    let b = pull(&store, &r, &arm)?;
    assert_eq!(b.config.architecture().to_string(), "arm64");
    assert_ne!(a.record.id, b.record.id);
    // Same layers: the second pull reuses the unpacked chain.
    assert_eq!(a.record.layers, b.record.layers);
    let s390 = PullOptions {
        platform: "linux/s390x".parse::<Platform>()?,
        ..Default::default()
    };
    let err = format!("{:#}", pull(&store, &r, &s390).unwrap_err());
    assert!(
        err.contains("no manifest for platform `linux/s390x`"),
        "{err}"
    );
    assert!(err.contains("linux/arm64/v8"), "{err}");
    Ok(())
}

#[test]
fn missing_image_is_a_clear_error() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let reg = Registry::get()?;
    let tmp = tempfile::tempdir()?;
    let store = Store::open(&tmp.path().join("root"))?;
    let err = pull(
        &store,
        &format!("{}/{}", reg.addr, unique("nothing-here")),
        &PullOptions::default(),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not found in registry"), "{msg}");
    assert!(store.list()?.is_empty());
    Ok(())
}
