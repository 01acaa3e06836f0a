//! The on-disk content store under `<root>/images/`: blobs by digest, unpacked layers by
//! chain id, image records, and the tag table. Layout and locking are described in the
//! crate README. Every file becomes visible by rename after fsync; writers that add
//! content hold `gc.lock` shared, garbage collection holds it exclusively, and the tag
//! table is rewritten under `records.lock`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::sys;

/// A failure of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on the store failed.
    #[error("{op} `{path}`")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A JSON file of the store could not be read or written.
    #[error("parse store file `{path}`")]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// No image matches the name.
    #[error("image `{0}` not found locally")]
    NotFound(String),
    /// An id prefix matches more than one image.
    #[error("image id prefix `{0}` is ambiguous")]
    Ambiguous(String),
    /// Content does not hash to the digest it was stored under.
    #[error("blob content hashes to `{actual}`, expected `{expected}`")]
    DigestMismatch {
        /// The expected digest.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The image is in use (see [`Store::hold`]).
    #[error("image `{id}` is in use by {holders}; remove those first (--force only untags it)")]
    InUse {
        /// The image id.
        id: Digest,
        /// Who holds it.
        holders: String,
    },
    /// An image with several tags is removed by id without force.
    #[error(
        "image `{id}` is referenced by several tags ({tags}); remove them by name or use --force"
    )]
    MultipleTags {
        /// The image id.
        id: Digest,
        /// Its tags.
        tags: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One layer of an image, base first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Chain id: names the unpacked directory (`layers/<hex>/diff`).
    pub chain_id: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The compressed blob as the registry served it, if stored.
    pub blob: Option<Descriptor>,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// The stored record of an image (`records/<id-hex>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the digest of its config blob.
    pub id: Digest,
    /// The manifest blob, if the image came with one.
    pub manifest: Option<Digest>,
    /// The layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Sum of the uncompressed layer sizes.
    pub size: u64,
    /// The config's `created` time.
    pub created: Option<String>,
}

/// A resolved image: its record, parsed config and the names pointing to it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The record.
    pub record: ImageRecord,
    /// The OCI image config.
    pub config: ImageConfiguration,
    /// Tags naming it, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Digest references naming it, e.g. `127.0.0.1:5000/x@sha256:…`.
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Names {
    tags: BTreeMap<String, Digest>,
    digests: BTreeMap<String, Digest>,
}

/// An flock held until drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// A scratch directory under `tmp/`, removed on drop unless consumed.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next garbage collection.
        let _ = fs::remove_dir_all(&self.path);
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The image store rooted at `<root>/images`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store under `root` (e.g. `/var/lib/berth`).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let dir = root.join("images");
        for sub in ["blobs/sha256", "layers", "records", "tmp", "holds"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create store directory", &p))?;
        }
        Ok(Store { dir })
    }

    /// The store directory (`<root>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self, name: &str, op: libc::c_int) -> Result<StoreLock, StoreError> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock", &path))?;
        sys::flock(file.as_fd(), op).map_err(io_err("lock", &path))?;
        Ok(StoreLock { _file: file })
    }

    /// Hold while adding content (pull, load, import): blocks garbage collection only.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock("gc.lock", libc::LOCK_SH)
    }

    /// Hold while removing content: waits for every writer to finish.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock("gc.lock", libc::LOCK_EX)
    }

    /// A new scratch directory under `tmp/`.
    pub fn temp_dir(&self) -> Result<TempDir, StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).map_err(io_err("create temp directory", &path))?;
        Ok(TempDir { path })
    }

    /// Path of a blob (which may not exist).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Read a stored blob.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(io_err("read blob", &p))
    }

    /// Store `data`, verifying it against `expected` if given. Returns its digest.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let actual = Digest::of(data);
        if let Some(e) = expected
            && *e != actual
        {
            return Err(StoreError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        if !self.has_blob(&actual) {
            write_atomic(&self.blob_path(&actual), data)?;
        }
        Ok(actual)
    }

    /// Move an already verified, fsynced file into the blob store under `d`.
    pub fn commit_blob_file(&self, file: &Path, d: &Digest) -> Result<(), StoreError> {
        let dst = self.blob_path(d);
        fs::rename(file, &dst).map_err(io_err("rename blob into", &dst))?;
        sync_dir(dst.parent().unwrap_or(&self.dir))
    }

    /// Directory of the unpacked layer with this chain id (`layers/<hex>/diff`).
    pub fn layer_diff(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join("layers").join(chain_id.hex()).join("diff")
    }

    /// Whether a layer chain is unpacked.
    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.dir
            .join("layers")
            .join(chain_id.hex())
            .join("layer.json")
            .is_file()
    }

    /// The uncompressed size recorded for a stored layer.
    pub fn layer_size(&self, chain_id: &Digest) -> Option<u64> {
        let p = self
            .dir
            .join("layers")
            .join(chain_id.hex())
            .join("layer.json");
        let rec: LayerRecord = serde_json::from_slice(&fs::read(p).ok()?).ok()?;
        Some(rec.size)
    }

    /// Make `tmp` (holding `diff/`) the layer `rec.chain_id` and `blob` (a verified file
    /// on the same filesystem) the blob `rec.blob`: one `syncfs` makes both durable, then
    /// each is renamed into place unless already there (a concurrent writer's copy wins).
    pub fn commit_layer(
        &self,
        tmp: TempDir,
        rec: &LayerRecord,
        blob: Option<&Path>,
    ) -> Result<(), StoreError> {
        let blob = blob
            .zip(rec.blob.as_ref())
            .filter(|(_, d)| !self.has_blob(&d.digest));
        let layer_missing = !self.has_layer(&rec.chain_id);
        if !layer_missing && blob.is_none() {
            return Ok(());
        }
        let meta = tmp.path().join("layer.json");
        let json = serde_json::to_vec_pretty(rec).map_err(|source| StoreError::Json {
            path: meta.clone(),
            source,
        })?;
        fs::write(&meta, json).map_err(io_err("write", &meta))?;
        let dir = File::open(tmp.path()).map_err(io_err("open layer", tmp.path()))?;
        sys::syncfs(dir.as_fd()).map_err(io_err("sync layer", tmp.path()))?;
        if let Some((path, d)) = blob {
            self.commit_blob_file(path, &d.digest)?;
        }
        if !layer_missing {
            return Ok(());
        }
        let dst = self.dir.join("layers").join(rec.chain_id.hex());
        match fs::rename(tmp.path(), &dst) {
            Ok(()) => sync_dir(&self.dir.join("layers")),
            Err(_) if self.has_layer(&rec.chain_id) => Ok(()),
            Err(e) => Err(io_err("rename layer into", &dst)(e)),
        }
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.dir.join("records").join(format!("{}.json", id.hex()))
    }

    /// Write an image record whose blobs and layers are already stored, then point `tags`
    /// (and `digest_refs`) at it. The image becomes visible only at this step.
    pub fn commit_image(
        &self,
        rec: &ImageRecord,
        tags: &[Reference],
        digest_refs: &[Reference],
    ) -> Result<(), StoreError> {
        let path = self.record_path(&rec.id);
        let json = serde_json::to_vec_pretty(rec).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)?;
        self.update_names(|names| {
            for t in tags {
                names.tags.insert(t.to_string(), rec.id.clone());
            }
            for d in digest_refs {
                names.digests.insert(d.to_string(), rec.id.clone());
            }
        })
    }

    fn names_path(&self) -> PathBuf {
        self.dir.join("repositories.json")
    }

    fn read_names(&self) -> Result<Names, StoreError> {
        let path = self.names_path();
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StoreError::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Names::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn update_names(&self, f: impl FnOnce(&mut Names)) -> Result<(), StoreError> {
        let _guard = self.lock("records.lock", libc::LOCK_EX)?;
        let mut names = self.read_names()?;
        f(&mut names);
        let path = self.names_path();
        let json = serde_json::to_vec_pretty(&names).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)
    }

    fn read_record(&self, id: &Digest) -> Result<ImageRecord, StoreError> {
        let path = self.record_path(id);
        let b = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(id.to_string()),
            _ => io_err("read image record", &path)(e),
        })?;
        serde_json::from_slice(&b).map_err(|source| StoreError::Json { path, source })
    }

    fn record_ids(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.dir.join("records");
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".json")
                && let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
            {
                ids.push(d);
            }
        }
        Ok(ids)
    }

    fn load_image(&self, id: &Digest, names: &Names) -> Result<Image, StoreError> {
        let record = self.read_record(id)?;
        let path = self.blob_path(id);
        let bytes = self.read_blob(id)?;
        let config = ImageConfiguration::from_reader(&bytes[..]).map_err(|e| StoreError::Io {
            op: "parse image config",
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let pick = |m: &BTreeMap<String, Digest>| {
            m.iter()
                .filter(|(_, v)| *v == id)
                .map(|(k, _)| k.clone())
                .collect()
        };
        Ok(Image {
            record,
            config,
            repo_tags: pick(&names.tags),
            repo_digests: pick(&names.digests),
        })
    }

    /// Find the image a reference, full id or id prefix (≥ 4 hex digits) names.
    pub fn resolve(&self, name: &str) -> Result<Image, StoreError> {
        let names = self.read_names()?;
        if let Ok(r) = name.parse::<Reference>() {
            let hit = names
                .tags
                .get(&r.to_string())
                .or_else(|| names.digests.get(&r.to_string()));
            if let Some(id) = hit {
                return self.load_image(&id.clone(), &names);
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<Digest> = self
                .record_ids()?
                .into_iter()
                .filter(|d| d.hex().starts_with(prefix))
                .collect();
            match hits.len() {
                1 => return self.load_image(&hits[0], &names),
                0 => {}
                _ => return Err(StoreError::Ambiguous(name.to_string())),
            }
        }
        Err(StoreError::NotFound(name.to_string()))
    }

    /// Every complete image, newest record files first is not guaranteed; callers sort.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        let names = self.read_names()?;
        let mut out = Vec::new();
        for id in self.record_ids()? {
            match self.load_image(&id, &names) {
                Ok(img) => out.push(img),
                // Removed by a concurrent rmi between listing and reading.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Point `target` at the image `source` names.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<(), StoreError> {
        let img = self.resolve(source)?;
        let target = match target.tag() {
            Some(_) => target.clone(),
            None => target.with_tag("latest").unwrap_or_else(|_| target.clone()),
        };
        self.update_names(|n| {
            n.tags.insert(target.to_string(), img.record.id.clone());
        })
    }

    /// Remove a name; when no tag is left (or `force` with an id), remove the image
    /// and collect unreferenced content. Returns the ids deleted. A held image is refused
    /// without `force`; with it, it is untagged and kept.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Digest>, StoreError> {
        let _gc = self.lock_exclusive()?;
        let img = self.resolve(name)?;
        let by_tag = name
            .parse::<Reference>()
            .ok()
            .map(|r| r.to_string())
            .filter(|r| img.repo_tags.contains(r) || img.repo_digests.contains(r));
        if by_tag.is_none() && img.repo_tags.len() > 1 && !force {
            return Err(StoreError::MultipleTags {
                id: img.record.id.clone(),
                tags: img.repo_tags.join(", "),
            });
        }
        let id = img.record.id.clone();
        let holders = self.holders(&id);
        if !holders.is_empty() && !force {
            return Err(StoreError::InUse {
                id,
                holders: holders.join(", "),
            });
        }
        let mut deleted = Vec::new();
        let mut gone = false;
        self.update_names(|n| {
            match &by_tag {
                Some(t) => {
                    n.tags.remove(t);
                    n.digests.remove(t);
                }
                None => {
                    n.tags.retain(|_, v| *v != id);
                }
            }
            if !n.tags.values().any(|v| *v == id) {
                n.digests.retain(|_, v| *v != id);
                gone = true;
            }
        })?;
        if gone && holders.is_empty() {
            let p = self.record_path(&id);
            fs::remove_file(&p).map_err(io_err("remove image record", &p))?;
            deleted.push(id);
            self.collect_garbage_locked()?;
        }
        Ok(deleted)
    }

    /// Remove blobs, layers and scratch files no record refers to.
    pub fn collect_garbage(&self) -> Result<(), StoreError> {
        let _gc = self.lock_exclusive()?;
        self.collect_garbage_locked()
    }

    fn collect_garbage_locked(&self) -> Result<(), StoreError> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for id in self.record_ids()? {
            let rec = self.read_record(&id)?;
            blobs.insert(rec.id.hex().to_string());
            if let Some(m) = &rec.manifest {
                blobs.insert(m.hex().to_string());
            }
            for l in &rec.layers {
                layers.insert(l.chain_id.hex().to_string());
                if let Some(b) = &l.blob {
                    blobs.insert(b.digest.hex().to_string());
                }
            }
        }
        // Scratch first: no writer runs (we hold the lock), and it clears leftovers of a
        // crashed collection before layers are moved there.
        let trash = self.dir.join("tmp");
        sweep(&trash, &BTreeSet::new(), &trash)?;
        sweep(&self.dir.join("blobs/sha256"), &blobs, &trash)?;
        sweep(&self.dir.join("layers"), &layers, &trash)?;
        sweep_dangling_links(&self.dir.join("l"))?;
        // Hold directories stay when their last hold goes (see `release`); those of
        // images without a record go once empty (a hold taken meanwhile keeps its dir).
        let holds = self.dir.join("holds");
        for e in fs::read_dir(&holds).into_iter().flatten().flatten() {
            if !blobs.contains(e.file_name().to_string_lossy().as_ref()) {
                remove_unheld(&e.path());
            }
        }
        // Init layers of images that are gone.
        let init = self.dir.join("init");
        if init.is_dir() {
            sweep(&init, &blobs, &trash)?;
        }
        // Temp files of atomic writes interrupted by a crash.
        for dir in [self.dir.join("records"), self.dir.clone()] {
            for e in fs::read_dir(&dir).map_err(io_err("list", &dir))?.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let p = e.path();
                    fs::remove_file(&p).map_err(io_err("remove stale temp file", &p))?;
                }
            }
        }
        Ok(())
    }
}

/// Removes the hold directory `dir` of an image that is gone, with its anchor, unless a
/// hold is in it.
fn remove_unheld(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    if names.iter().any(|n| *n != crate::hold::ANCHOR) {
        return;
    }
    let _ = fs::remove_file(dir.join(crate::hold::ANCHOR));
    let _ = fs::remove_dir(dir);
}

/// Remove every entry of `dir` whose name is not in `keep`. Directories are first renamed
/// into `trash` (on the same filesystem), so a crash halfway through a removal never leaves
/// a half-deleted layer that still looks committed.
fn sweep(dir: &Path, keep: &BTreeSet<String>, trash: &Path) -> Result<(), StoreError> {
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            let doomed = trash.join(format!(".gc-{name}"));
            fs::rename(&p, &doomed).and_then(|()| fs::remove_dir_all(&doomed))
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err("remove unreferenced", &p))?;
    }
    Ok(())
}

/// Remove short layer links (`l/`, see rootfs) whose layer is gone.
fn sweep_dangling_links(dir: &Path) -> Result<(), StoreError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if fs::metadata(&p).is_err() {
            fs::remove_file(&p).map_err(io_err("remove dangling layer link", &p))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Write `data` to `path` via a temp file in the same directory, fsync, rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", path)(e));
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &Digest, chain: &Digest) -> ImageRecord {
        ImageRecord {
            id: id.clone(),
            manifest: None,
            layers: vec![LayerRecord {
                chain_id: chain.clone(),
                diff_id: chain.clone(),
                blob: None,
                size: 0,
            }],
            size: 0,
            created: None,
        }
    }

    fn config() -> Vec<u8> {
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec()
    }

    #[test]
    fn blobs_are_verified() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let d = s.put_blob(b"abc", None).unwrap();
        assert_eq!(s.read_blob(&d).unwrap(), b"abc");
        let wrong = Digest::of(b"x");
        assert!(matches!(
            s.put_blob(b"abc", Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!s.has_blob(&wrong));
    }

    #[test]
    fn tag_resolve_remove_collects() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let id = s.put_blob(&config(), None).unwrap();
        let chain = Digest::of(b"layer");
        let tmp = s.temp_dir().unwrap();
        fs::create_dir(tmp.path().join("diff")).unwrap();
        let rec = record(&id, &chain);
        s.commit_layer(tmp, &rec.layers[0], None).unwrap();
        let r: Reference = "busybox".parse().unwrap();
        s.commit_image(&rec, &[r], &[]).unwrap();
        assert_eq!(s.resolve("busybox:latest").unwrap().record.id, id);
        assert_eq!(s.resolve(&id.hex()[..8]).unwrap().record.id, id);
        s.tag("busybox", &"other:v1".parse().unwrap()).unwrap();
        assert_eq!(s.resolve("other:v1").unwrap().repo_tags.len(), 2);
        assert!(matches!(
            s.remove(id.hex(), false),
            Err(StoreError::MultipleTags { .. })
        ));
        assert!(s.remove("busybox", false).unwrap().is_empty());
        assert!(s.has_layer(&chain));
        assert_eq!(s.remove("other:v1", false).unwrap(), vec![id.clone()]);
        assert!(!s.has_layer(&chain));
        assert!(!s.has_blob(&id));
        assert!(matches!(s.resolve("busybox"), Err(StoreError::NotFound(_))));
    }
}
