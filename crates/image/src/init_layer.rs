//! The init layer of an image: one read-only directory per image, mounted above its
//! layers in every container's rootfs, that holds an empty file or directory for each
//! place a container engine mounts over and the image lacks ([`MOUNT_TARGETS`]: `/proc`,
//! `/sys`, `/dev`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`). Without it the
//! runtime makes the missing ones in the container's upper directory at every start,
//! and a `run --rm` deletes them again: files made and deleted on every run. Docker
//! makes such a layer for every container; it depends only on the image, so one per
//! image is enough.
//!
//! It is made on first use (built under `tmp/`, renamed into `init/<image id>`), read
//! from the image's unpacked layers the way overlayfs merges them: whiteouts (0/0
//! character devices) and opaque directories hide what is below. Where that cannot be
//! told without following a symbolic link (an image whose `/etc` is a link), the place
//! is left out, and the runtime makes it in the upper directory as before. A directory
//! the layer must add as a parent (`etc` for `etc/hosts`) copies the mode and owner of
//! the image's, so the merged view shows the image's attributes.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::store::{Image, Store, StoreError};
use crate::sys;

/// What the init layer provides where the image lacks it: the mount points of the
/// runtime's own file systems and the files an engine bind-mounts into every container.
/// Parents come before their children.
pub const MOUNT_TARGETS: &[(&str, Kind)] = &[
    ("proc", Kind::Dir),
    ("sys", Kind::Dir),
    ("dev", Kind::Dir),
    ("etc", Kind::Dir),
    ("etc/hosts", Kind::File),
    ("etc/hostname", Kind::File),
    ("etc/resolv.conf", Kind::File),
];

/// The kind of a mount target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An empty directory (mode 0755).
    Dir,
    /// An empty regular file (mode 0644).
    File,
}

/// What the image shows at a path.
#[derive(Debug)]
enum Entry {
    /// Nothing (never there, or deleted by a whiteout).
    Missing,
    /// The top-most entry for the path.
    Present(fs::Metadata),
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    sys::lgetxattr(dir, c"trusted.overlay.opaque").is_ok_and(|v| v == b"y")
}

/// What the union of `layers` (top-most first) shows at `rel`, as overlayfs would;
/// `None` if that cannot be told without following a symbolic link.
fn lookup(layers: &[PathBuf], rel: &Path) -> Option<Entry> {
    let comps: Vec<_> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let last = comps.len().checked_sub(1)?;
    for layer in layers {
        let mut dir = layer.clone();
        // This layer hides the path in every layer below (an opaque parent).
        let mut hides_below = false;
        for (i, c) in comps.iter().enumerate() {
            let p = dir.join(c);
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) => return None,
            };
            if is_whiteout(&m) {
                return Some(Entry::Missing);
            }
            if i == last {
                return Some(Entry::Present(m));
            }
            if m.file_type().is_symlink() {
                return None;
            }
            if !m.is_dir() {
                // A file where a parent directory would be.
                return Some(Entry::Missing);
            }
            if is_opaque(&p) {
                hides_below = true;
            }
            dir = p;
        }
        if hides_below {
            return Some(Entry::Missing);
        }
    }
    Some(Entry::Missing)
}

/// Fills the empty directory `out` with what `layers` (top-most first) lack of
/// [`MOUNT_TARGETS`]; returns the paths added.
fn build(layers: &[PathBuf], out: &Path) -> io::Result<Vec<&'static str>> {
    let mut added = Vec::new();
    for &(rel, kind) in MOUNT_TARGETS {
        let path = Path::new(rel);
        if !matches!(lookup(layers, path), Some(Entry::Missing)) {
            continue;
        }
        // The parent must be a real directory in the image, or missing (then made
        // here, if it is a target itself: it comes first in the list).
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let made_here = out.join(parent).is_dir();
            if !made_here {
                match lookup(layers, parent) {
                    Some(Entry::Present(m)) if m.is_dir() => {
                        let dir = out.join(parent);
                        fs::DirBuilder::new().recursive(true).create(&dir)?;
                        std::os::unix::fs::lchown(&dir, Some(m.uid()), Some(m.gid()))?;
                        fs::set_permissions(&dir, fs::Permissions::from_mode(m.mode() & 0o7777))?;
                    }
                    _ => continue,
                }
            }
        }
        let target = out.join(path);
        match kind {
            Kind::Dir => {
                fs::create_dir(&target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
            }
            Kind::File => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)?;
            }
        }
        added.push(rel);
    }
    Ok(added)
}

impl Store {
    /// Where the init layer of image `id` is (it may not exist yet).
    pub fn init_layer_path(&self, id: &crate::digest::Digest) -> PathBuf {
        self.dir().join("init").join(id.hex())
    }

    /// The init layer of `image`, made if it does not exist yet (see the module).
    pub fn init_layer(&self, image: &Image) -> Result<PathBuf, StoreError> {
        let path = self.init_layer_path(&image.record.id);
        if path.is_dir() {
            return Ok(path);
        }
        let err = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| StoreError::Io {
                op,
                path: p,
                source,
            }
        };
        // Shared: garbage collection (exclusive) neither sweeps our scratch directory
        // nor removes the image meanwhile.
        let _lock = self.lock_shared()?;
        let layers: Vec<PathBuf> = image
            .record
            .layers
            .iter()
            .rev()
            .map(|l| self.layer_diff(&l.chain_id))
            .collect();
        let tmp = self.temp_dir()?;
        build(&layers, tmp.path()).map_err(err("build init layer", tmp.path()))?;
        let parent = self.dir().join("init");
        fs::create_dir_all(&parent).map_err(err("create", &parent))?;
        match fs::rename(tmp.path(), &path) {
            Ok(()) => Ok(path),
            // Made by a concurrent start meanwhile: the same content, keep theirs.
            Err(_) if path.is_dir() => Ok(path),
            Err(e) => Err(err("rename init layer to", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn whiteout(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        sys::mknodat(sys::cwd(), &c, libc::S_IFCHR | 0o600, 0).unwrap();
    }

    #[test]
    fn adds_only_what_the_image_lacks() {
        let t = tempfile::tempdir().unwrap();
        let base = layer(t.path(), "base");
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::set_permissions(base.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(base.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::create_dir(base.join("proc")).unwrap();
        let out = layer(t.path(), "out");
        let added = build(std::slice::from_ref(&base), &out).unwrap();
        assert_eq!(
            added,
            vec!["sys", "dev", "etc/hostname", "etc/resolv.conf"],
            "proc and etc/hosts are the image's"
        );
        // The parent copies the image's mode, so the merged /etc looks the same.
        let m = fs::metadata(out.join("etc")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750);
        assert!(!out.join("etc/hosts").exists());
        assert_eq!(fs::read(out.join("etc/hostname")).unwrap(), b"");
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        if !nix_is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let base = layer(t.path(), "base");
        for d in ["etc", "proc", "sys", "dev"] {
            fs::create_dir(base.join(d)).unwrap();
        }
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            fs::write(base.join(f), "").unwrap();
        }
        let top = layer(t.path(), "top");
        fs::create_dir(top.join("etc")).unwrap();
        whiteout(&top.join("etc/hosts"));
        whiteout(&top.join("dev"));
        assert_eq!(
            build(&[top.clone(), base.clone()], &layer(t.path(), "o1")).unwrap(),
            vec!["dev", "etc/hosts"]
        );
        // An opaque /etc in the top layer hides all of the base's /etc.
        let c = std::ffi::CString::new(top.join("etc").as_os_str().as_encoded_bytes()).unwrap();
        let fd = sys::openat(sys::cwd(), &c, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        sys::fsetxattr(
            std::os::fd::AsFd::as_fd(&fd),
            c"trusted.overlay.opaque",
            b"y",
        )
        .unwrap();
        assert_eq!(
            build(&[top, base], &layer(t.path(), "o2")).unwrap(),
            vec!["dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"]
        );
    }

    #[test]
    fn a_linked_etc_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let base = layer(t.path(), "base");
        fs::create_dir_all(base.join("usr/etc")).unwrap();
        std::os::unix::fs::symlink("usr/etc", base.join("etc")).unwrap();
        let out = layer(t.path(), "out");
        let added = build(&[base], &out).unwrap();
        assert_eq!(added, vec!["proc", "sys", "dev"]);
        assert!(
            !out.join("etc").exists(),
            "would hide the image's /etc link"
        );
    }

    fn nix_is_root() -> bool {
        sys::geteuid() == 0
    }
}
