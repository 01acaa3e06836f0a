//! Holds: a container (or anything else) that uses an image records a hold on it, so
//! `rmi` refuses to delete the image (`--force` only untags it) and garbage collection
//! keeps its layers. A hold is a file `holds/<image-id hex>/<holder>`: a hard link to
//! the directory's `.anchor`, so that taking and dropping one (on every `run --rm`)
//! allocates and frees no inode. (On ext4 without a journal, allocating an inode right
//! after others were freed scans past every inode freed in the last minute.)

use std::fs;
use std::io;

use crate::digest::Digest;
use crate::store::{Store, StoreError};

/// The file every hold of an image is a hard link to (a name no holder can have).
pub(crate) const ANCHOR: &str = ".anchor";

fn empty_file(path: &std::path::Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

fn valid_holder(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 128
        && !h.starts_with('.')
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Store {
    /// Record that `holder` (e.g. a container id) uses image `id`.
    pub fn hold(&self, id: &Digest, holder: &str) -> Result<(), StoreError> {
        if !valid_holder(holder) {
            return Err(StoreError::Io {
                op: "hold image for",
                path: holder.into(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "holder names use [A-Za-z0-9_.-]",
                ),
            });
        }
        // Shared: a concurrent rmi (exclusive) sees the hold or runs before it.
        let _lock = self.lock_shared()?;
        let dir = self.dir().join("holds").join(id.hex());
        let anchor = dir.join(ANCHOR);
        let path = dir.join(holder);
        let err = |path: &std::path::Path, source| StoreError::Io {
            op: "hold image for",
            path: path.to_path_buf(),
            source,
        };
        // Creating a link or an empty file is atomic, so no temporary + rename, and no
        // fsync: it is on every container's start path, and after a power loss the
        // engine's record of the container is no more durable than this entry.
        for first in [true, false] {
            match fs::hard_link(&anchor, &path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                // The image's first hold: make the directory and its anchor.
                Err(e) if e.kind() == io::ErrorKind::NotFound && first => {
                    fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                        op: "create hold directory",
                        path: dir.clone(),
                        source,
                    })?;
                    empty_file(&anchor).map_err(|e| err(&anchor, e))?;
                }
                // The anchor has as many links as the filesystem allows: a plain file.
                Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
                Err(e) => return Err(err(&path, e)),
            }
        }
        empty_file(&path).map_err(|e| err(&path, e))
    }

    /// Drop a hold; a missing one is not an error.
    pub fn release(&self, id: &Digest, holder: &str) -> Result<(), StoreError> {
        if !valid_holder(holder) {
            return Ok(());
        }
        let dir = self.dir().join("holds").join(id.hex());
        match fs::remove_file(dir.join(holder)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    op: "release hold",
                    path: dir.join(holder),
                    source,
                });
            }
        }
        // The image's hold directory stays, empty (no holders), for the next container
        // of the image: removing and re-making it would put two directory updates on
        // every `run --rm`. Garbage collection removes it with the image.
        Ok(())
    }

    /// Who holds image `id`.
    pub fn holders(&self, id: &Digest) -> Vec<String> {
        let dir = self.dir().join("holds").join(id.hex());
        let mut out: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| valid_holder(n))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let id = Digest::of(b"x");
        s.hold(&id, "c1").unwrap();
        s.hold(&id, "c2").unwrap();
        assert!(s.hold(&id, "../x").is_err());
        assert_eq!(s.holders(&id), vec!["c1", "c2"]);
        // Each hold is a link to the anchor: taking one allocates no inode.
        use std::os::unix::fs::MetadataExt;
        let dir = s.dir().join("holds").join(id.hex());
        let ino = |n: &str| fs::metadata(dir.join(n)).unwrap().ino();
        assert_eq!(ino("c1"), ino(ANCHOR));
        assert_eq!(ino("c2"), ino(ANCHOR));
        // A hold taken by an older berth (a plain file) counts and is released alike.
        fs::write(dir.join("old"), "").unwrap();
        assert_eq!(s.holders(&id), vec!["c1", "c2", "old"]);
        s.release(&id, "old").unwrap();
        s.release(&id, "c1").unwrap();
        s.release(&id, "c2").unwrap();
        s.release(&id, "c2").unwrap();
        assert!(s.holders(&id).is_empty());
    }

    #[test]
    fn held_images_are_not_deleted() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let id = s.put_blob(config, None).unwrap();
        let rec = crate::store::ImageRecord {
            id: id.clone(),
            manifest: None,
            layers: Vec::new(),
            size: 0,
            created: None,
        };
        s.commit_image(&rec, &["busybox".parse().unwrap()], &[])
            .unwrap();
        s.hold(&id, "container1").unwrap();
        // The image's init layer (no layers: every mount point is missing) goes with it.
        let init = s.init_layer(&s.resolve("busybox").unwrap()).unwrap();
        assert!(init.join("etc/hosts").is_file() && init.join("proc").is_dir());
        let err = s.remove("busybox", false).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        assert!(s.remove("busybox", true).unwrap().is_empty());
        assert!(s.resolve(id.hex()).unwrap().repo_tags.is_empty());
        s.release(&id, "container1").unwrap();
        assert_eq!(s.remove(id.hex(), false).unwrap(), vec![id.clone()]);
        assert!(!s.has_blob(&id));
        assert!(!s.dir().join("holds").join(id.hex()).exists());
        assert!(!init.exists());
    }
}
