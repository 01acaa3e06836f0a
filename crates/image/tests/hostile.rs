//! A corpus of hostile layers, one per attack, each served by a small fake registry and
//! pulled through the real code path. Every one must be refused with a clear error, write
//! nothing outside the layer directory (a sentinel directory is checked) and leave the
//! store empty. Needs root (ownership and device nodes).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Result;
use berth_image::{ClientOptions, Digest, PullOptions, Reference, RegistryClient, Store};
use common::{FakeRegistry, image_routes};

/// One raw ustar header + data, written by hand so nothing sanitises the name.
fn entry(name: &str, kind: u8, link: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, len: usize, v: &[u8]| {
        assert!(
            v.len() <= len,
            "field too long: {}",
            String::from_utf8_lossy(v)
        );
        h[off..off + v.len()].copy_from_slice(v);
    };
    put(&mut h, 0, 100, name.as_bytes());
    put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, 12, b"14573460000\0");
    put(&mut h, 148, 8, b"        ");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    entry(name, b'0', "", data, 0o644)
}

fn symlink(name: &str, target: &str) -> Vec<u8> {
    entry(name, b'2', target, b"", 0o777)
}

fn finish(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX record `len key=value\n`.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

struct Sentinel {
    dir: std::path::PathBuf,
}

impl Sentinel {
    fn new(tmp: &Path) -> Result<Sentinel> {
        let dir = tmp.join("sentinel");
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        fs::write(dir.join("victim"), "original")?;
        fs::set_permissions(dir.join("victim"), fs::Permissions::from_mode(0o600))?;
        Ok(Sentinel { dir })
    }

    fn abs(&self) -> String {
        self.dir.display().to_string()
    }

    /// The sentinel directory is exactly as created.
    fn check(&self, case: &str) {
        let names: Vec<String> = fs::read_dir(&self.dir)
            .expect("read sentinel")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["victim".to_string()],
            "{case}: sentinel directory changed"
        );
        let m = fs::metadata(&self.dir).expect("stat sentinel");
        assert_eq!(m.mode() & 0o7777, 0o700, "{case}: sentinel mode changed");
        let v = self.dir.join("victim");
        assert_eq!(
            fs::read_to_string(&v).expect("read victim"),
            "original",
            "{case}: victim written"
        );
        let vm = fs::symlink_metadata(&v).expect("stat victim");
        assert_eq!(
            (vm.mode() & 0o7777, vm.nlink()),
            (0o600, 1),
            "{case}: victim mode or links changed"
        );
    }
}

fn store_is_empty(store: &Store, case: &str) {
    for sub in ["blobs/sha256", "layers", "records", "tmp"] {
        let n = fs::read_dir(store.dir().join(sub))
            .expect("read store")
            .count();
        assert_eq!(n, 0, "{case}: store `{sub}` is not empty");
    }
    assert!(
        store.list().expect("list").is_empty(),
        "{case}: an image is listed"
    );
}

/// Serve `layers` (with these diff_ids) and pull; return the error text.
fn pull_refused(
    tmp: &Path,
    case: &str,
    layers: &[Vec<u8>],
    diff_ids: &[Digest],
    blob_override: Option<(usize, Vec<u8>)>,
    max: u64,
) -> String {
    let name = format!("hostile/{}", case.replace(['_', ' '], "-"));
    let reg = FakeRegistry::start(image_routes(&name, layers, diff_ids, blob_override), 0)
        .expect("fake registry");
    let store = Store::open(&tmp.join(format!("root-{}", case.replace(' ', "-")))).expect("store");
    let r: Reference = format!("{}/{name}", reg.addr).parse().expect("reference");
    let client = RegistryClient::new(ClientOptions::default());
    let opts = PullOptions {
        max_layer_bytes: max,
        ..Default::default()
    };
    let err = match berth_image::pull(&store, &client, &r, &opts, &berth_image::NoProgress) {
        Ok(_) => panic!("{case}: hostile layer was accepted"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    };
    store_is_empty(&store, case);
    err
}

fn refuse_tar(tmp: &Path, sentinel: &Sentinel, case: &str, tar: Vec<u8>, expect: &str) {
    let d = Digest::of(&tar);
    let err = pull_refused(tmp, case, &[tar], &[d], None, 1 << 30);
    assert!(
        err.contains(expect),
        "{case}: error does not say `{expect}`: {err}"
    );
    sentinel.check(case);
}

#[test]
fn hostile_layers_are_refused() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let s = Sentinel::new(tmp.path())?;
    let abs = s.abs();
    let up = "../".repeat(12);
    let rel = format!("{up}{}", abs.trim_start_matches('/'));

    refuse_tar(
        tmp.path(),
        &s,
        "dotdot",
        finish(&[file(&format!("{rel}/pwned"), b"x")]),
        "`..` components are not allowed",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "absolute",
        finish(&[file(&format!("{abs}/pwned"), b"x")]),
        "absolute names are not allowed",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "symlink write through",
        finish(&[symlink("link", &abs), file("link/pwned", b"x")]),
        "path goes through a symlink",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "relative symlink write through",
        finish(&[symlink("link", &rel), file("link/victim", b"x")]),
        "path goes through a symlink",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "symlink then directory",
        finish(&[symlink("d", &abs), entry("d", b'5', "", b"", 0o777)]),
        "directory entry over an existing symlink",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "hardlink dotdot",
        finish(&[entry("h", b'1', &format!("{rel}/victim"), b"", 0o644)]),
        "hard link target outside the layer",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "hardlink absolute",
        finish(&[entry("h", b'1', &format!("{abs}/victim"), b"", 0o644)]),
        "hard link target outside the layer",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "hardlink through symlink",
        finish(&[symlink("s", &abs), entry("h", b'1', "s/victim", b"", 0o644)]),
        "path goes through a symlink",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "whiteout dotdot",
        finish(&[entry("dir/", b'5', "", b"", 0o755), file("dir/.wh..", b"")]),
        "whiteout names a path outside its directory",
    );
    refuse_tar(
        tmp.path(),
        &s,
        "whiteout through symlink",
        finish(&[symlink("s", &abs), file("s/.wh.victim", b"")]),
        "path goes through a symlink",
    );
    // PAX says 5 bytes, ustar says 10: parsers that disagree would see different files.
    let pax = pax_record("size", "5");
    let differential = finish(&[
        entry("./PaxHeaders/f", b'x', "", pax.as_bytes(), 0o644),
        file("f", b"0123456789"),
    ]);
    refuse_tar(
        tmp.path(),
        &s,
        "pax size differential",
        differential,
        "pax size 5 disagrees with header size 10",
    );
    Ok(())
}

#[test]
fn symlink_then_file_replaces_the_link_without_writing_through() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let s = Sentinel::new(tmp.path())?;
    let tar = finish(&[
        symlink("f", &format!("{}/victim", s.abs())),
        file("f", b"pwned"),
    ]);
    let d = Digest::of(&tar);
    let reg = FakeRegistry::start(image_routes("x/y", &[tar], &[d], None), 0)?;
    let store = Store::open(&tmp.path().join("root"))?;
    let r: Reference = format!("{}/x/y", reg.addr).parse()?;
    let img = berth_image::pull(
        &store,
        &RegistryClient::new(ClientOptions::default()),
        &r,
        &PullOptions::default(),
        &berth_image::NoProgress,
    )?;
    let f = store.layer_diff(&img.record.layers[0].chain_id).join("f");
    assert!(fs::symlink_metadata(&f)?.is_file());
    assert_eq!(fs::read(&f)?, b"pwned");
    s.check("symlink then file");
    Ok(())
}

#[test]
fn bombs_and_digest_mismatches_are_refused() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let s = Sentinel::new(tmp.path())?;
    // 32 MiB of zeros compress to a few KiB; the bound is 8 MiB.
    let tar = finish(&[file("zeros", &vec![0u8; 32 << 20])]);
    let diff = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    let bomb = gz.finish()?;
    assert!(bomb.len() < 1 << 20);
    let err = pull_refused(tmp.path(), "bomb", &[bomb], &[diff], None, 8 << 20);
    assert!(
        err.contains("exceeds the bound of 8388608 bytes"),
        "bomb: {err}"
    );

    let good = finish(&[file("a", b"hello")]);
    let good_diff = Digest::of(&good);
    let evil = finish(&[file("a", b"evil!")]);
    let err = pull_refused(
        tmp.path(),
        "digest mismatch",
        std::slice::from_ref(&good),
        std::slice::from_ref(&good_diff),
        Some((0, evil)),
        1 << 30,
    );
    assert!(err.contains("layer blob hashes to"), "digest: {err}");

    let mut longer = good.clone();
    longer.extend_from_slice(&[0u8; 512]);
    let err = pull_refused(
        tmp.path(),
        "size mismatch",
        std::slice::from_ref(&good),
        &[good_diff],
        Some((0, longer)),
        1 << 30,
    );
    assert!(err.contains("exceeds the bound"), "size: {err}");

    let wrong_diff = Digest::of(b"not the tar");
    let err = pull_refused(
        tmp.path(),
        "diff id mismatch",
        &[good],
        &[wrong_diff],
        None,
        1 << 30,
    );
    assert!(err.contains("the image config says"), "diff_id: {err}");
    s.check("bombs and digests");
    Ok(())
}
