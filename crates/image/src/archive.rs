//! `save` and `load`. `save` writes one tar that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a docker-archive (`manifest.json` naming the same
//! blobs), as Docker 25+ does, so `docker load`, `skopeo` and berth all read it. `load`
//! reads either form (including legacy docker-archives with `<id>/layer.tar` and symlinks):
//! the archive is first unpacked with the safe layer unpacker into a scratch directory,
//! every path it names is opened inside that directory (openat2 `RESOLVE_IN_ROOT`), and
//! each layer goes through the same verified ingest as a pull.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use serde::Deserialize;

use crate::digest::Digest;
use crate::layer::{DEFAULT_MAX_LAYER_BYTES, LayerError, LayerSpec, ingest_layer};
use crate::manifest::{Descriptor, Index, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::store::{Image, ImageRecord, Store, StoreError};
use crate::sys;
use crate::unpack::{UnpackError, UnpackOptions, unpack_layer};

/// Bound on a JSON document read from an archive.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// A failure to save or load an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the archive failed.
    #[error("write image archive")]
    Write(#[source] io::Error),
    /// The archive could not be unpacked.
    #[error("read image archive")]
    Unpack(#[source] UnpackError),
    /// A file the archive's index names cannot be opened inside it.
    #[error("open `{path}` inside the image archive")]
    Member {
        /// The path as named.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A JSON document of the archive is invalid.
    #[error("parse `{path}` in the image archive")]
    Json {
        /// The document.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Neither `manifest.json` nor `index.json` is present.
    #[error("not an image archive: no `manifest.json` or `index.json`")]
    Unknown,
    /// The config lists another number of layers than the manifest.
    #[error("image config `{0}` does not match its layer list")]
    LayerCount(Digest),
    /// A layer failed verification or unpacking.
    #[error("load layer")]
    Layer(#[source] LayerError),
    /// The image has no stored blob for one of its layers (e.g. stored before blobs were kept).
    #[error("image `{0}` lacks the blob of a layer; pull it again before saving")]
    MissingBlob(Digest),
}

fn write_err(e: io::Error) -> ArchiveError {
    ArchiveError::Write(e)
}

fn append(
    b: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).map_err(write_err)
}

/// The tar being written and the blobs already in it.
struct Saver<'a, W: Write> {
    store: &'a Store,
    b: tar::Builder<W>,
    written: std::collections::BTreeSet<Digest>,
}

impl<W: Write> Saver<'_, W> {
    /// Add a stored blob once; returns its path in the archive.
    fn blob(&mut self, d: &Digest) -> Result<String, ArchiveError> {
        let path = format!("blobs/sha256/{}", d.hex());
        if self.written.insert(d.clone()) {
            let f = File::open(self.store.blob_path(d))
                .map_err(|_| ArchiveError::MissingBlob(d.clone()))?;
            let len = f.metadata().map_err(write_err)?.len();
            append(&mut self.b, &path, len, f)?;
        }
        Ok(path)
    }

    /// Add in-memory content once as a blob; returns its digest.
    fn bytes(&mut self, data: &[u8]) -> Result<Digest, ArchiveError> {
        let d = Digest::of(data);
        if self.written.insert(d.clone()) {
            append(
                &mut self.b,
                &format!("blobs/sha256/{}", d.hex()),
                data.len() as u64,
                data,
            )?;
        }
        Ok(d)
    }

    /// Add one image; returns its index descriptor and docker-archive entry.
    fn image(
        &mut self,
        img: &Image,
        name: Option<&Reference>,
    ) -> Result<(Descriptor, serde_json::Value), ArchiveError> {
        let config = self.blob(&img.record.id)?;
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for l in &img.record.layers {
            let d = l
                .blob
                .clone()
                .ok_or_else(|| ArchiveError::MissingBlob(img.record.id.clone()))?;
            layers.push(self.blob(&d.digest)?);
            descs.push(d);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: crate::manifest::OCI_CONFIG.into(),
                digest: img.record.id.clone(),
                size: self.store.read_blob(&img.record.id)?.len() as u64,
                platform: None,
                annotations: None,
            },
            layers: descs,
        };
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| write_err(e.into()))?;
        let mdig = self.bytes(&mbytes)?;
        let mut tags = Vec::new();
        let mut ann = BTreeMap::new();
        if let Some(r) = name {
            ann.insert("io.containerd.image.name".to_string(), r.to_string());
            if let Some(t) = r.tag() {
                tags.push(format!("{}:{t}", r.familiar_name()));
                ann.insert(
                    "org.opencontainers.image.ref.name".to_string(),
                    t.to_string(),
                );
            }
        }
        let desc = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: mdig,
            size: mbytes.len() as u64,
            platform: None,
            annotations: (!ann.is_empty()).then_some(ann),
        };
        Ok((
            desc,
            serde_json::json!({"Config": config, "RepoTags": tags, "Layers": layers}),
        ))
    }
}

/// Write `images` (each with the name it was asked by, if any) to `out`.
pub fn save(
    store: &Store,
    images: &[(Image, Option<Reference>)],
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut s = Saver {
        store,
        b: tar::Builder::new(out),
        written: std::collections::BTreeSet::new(),
    };
    let mut docker = Vec::new();
    let mut index = Vec::new();
    for (img, name) in images {
        let (desc, entry) = s.image(img, name.as_ref())?;
        index.push(desc);
        docker.push(entry);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: index,
    };
    let docs = [
        (
            "oci-layout",
            serde_json::json!({"imageLayoutVersion": "1.0.0"}),
        ),
        (
            "index.json",
            serde_json::to_value(index).map_err(|e| write_err(e.into()))?,
        ),
        ("manifest.json", serde_json::Value::Array(docker)),
    ];
    for (path, v) in docs {
        let bytes = serde_json::to_vec(&v).map_err(|e| write_err(e.into()))?;
        append(&mut s.b, path, bytes.len() as u64, &bytes[..])?;
    }
    s.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(write_err)
}

/// A docker-archive `manifest.json` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An unpacked archive in a scratch directory.
struct Unpacked<'a> {
    store: &'a Store,
    root: File,
}

impl Unpacked<'_> {
    /// Open `rel` resolved inside the archive (symlinks cannot leave it).
    fn open(&self, rel: &str) -> Result<File, ArchiveError> {
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        sys::openat2(self.root.as_fd(), Path::new(rel), libc::O_RDONLY, resolve)
            .map(File::from)
            .map_err(|source| ArchiveError::Member {
                path: rel.to_string(),
                source,
            })
    }

    fn exists(&self, rel: &str) -> bool {
        self.open(rel).is_ok()
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        self.open(rel)?
            .take(MAX_JSON_BYTES)
            .read_to_end(&mut out)
            .map_err(|source| ArchiveError::Member {
                path: rel.to_string(),
                source,
            })?;
        Ok(out)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<T, ArchiveError> {
        serde_json::from_slice(&self.read(rel)?).map_err(|source| ArchiveError::Json {
            path: rel.to_string(),
            source,
        })
    }

    /// Store one image from its config path and layer paths; returns the image.
    fn load_image(
        &self,
        config_path: &str,
        layers: &[(String, Option<Descriptor>)],
        unpack: UnpackOptions,
    ) -> Result<ImageRecord, ArchiveError> {
        let config_bytes = self.read(config_path)?;
        let config =
            oci_spec::image::ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
                ArchiveError::Json {
                    path: config_path.to_string(),
                    source: serde::de::Error::custom(e.to_string()),
                }
            })?;
        let id = Digest::of(&config_bytes);
        let diff_ids: Vec<Digest> = config
            .rootfs()
            .diff_ids()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        if diff_ids.len() != layers.len() || diff_ids.len() != config.rootfs().diff_ids().len() {
            return Err(ArchiveError::LayerCount(id));
        }
        let mut records = Vec::new();
        let mut parent: Option<Digest> = None;
        for ((path, desc), diff_id) in layers.iter().zip(&diff_ids) {
            let spec = LayerSpec {
                label: path.clone(),
                blob: desc.clone(),
                diff_id: Some(diff_id.clone()),
                parent_chain: parent.clone(),
                max_bytes: DEFAULT_MAX_LAYER_BYTES,
                unpack,
            };
            let rec =
                ingest_layer(self.store, self.open(path)?, &spec).map_err(ArchiveError::Layer)?;
            parent = Some(rec.chain_id.clone());
            records.push(rec);
        }
        self.store.put_blob(&config_bytes, Some(&id))?;
        Ok(ImageRecord {
            id,
            manifest: None,
            size: records.iter().map(|l| l.size).sum(),
            layers: records,
            created: config.created().clone(),
        })
    }
}

/// Load every image of a docker-archive or OCI-layout tar; returns the loaded images.
pub fn load(
    store: &Store,
    archive: impl Read,
    unpack: UnpackOptions,
) -> Result<Vec<Image>, ArchiveError> {
    let _lock = store.lock_shared()?;
    let tmp = store.temp_dir()?;
    unpack_layer(
        archive,
        tmp.path(),
        UnpackOptions {
            preserve_owner: false,
        },
    )
    .map_err(ArchiveError::Unpack)?;
    let root = File::open(tmp.path()).map_err(|source| ArchiveError::Member {
        path: ".".into(),
        source,
    })?;
    let u = Unpacked { store, root };
    let mut loaded = Vec::new();
    if u.exists("manifest.json") {
        let entries: Vec<DockerEntry> = u.json("manifest.json")?;
        for e in entries {
            let layers: Vec<(String, Option<Descriptor>)> =
                e.layers.iter().map(|l| (l.clone(), None)).collect();
            let rec = u.load_image(&e.config, &layers, unpack)?;
            let tags: Vec<Reference> = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect();
            store.commit_image(&rec, &tags, &[])?;
            loaded.push(rec.id);
        }
    } else if u.exists("index.json") {
        let index: Index = u.json("index.json")?;
        for m in &index.manifests {
            let mpath = format!("blobs/sha256/{}", m.digest.hex());
            let mbytes = u.read(&mpath)?;
            if Digest::of(&mbytes) != m.digest {
                return Err(ArchiveError::Layer(LayerError::Store(
                    StoreError::DigestMismatch {
                        expected: m.digest.clone(),
                        actual: Digest::of(&mbytes),
                    },
                )));
            }
            let man: Manifest =
                serde_json::from_slice(&mbytes).map_err(|source| ArchiveError::Json {
                    path: mpath,
                    source,
                })?;
            let layers: Vec<(String, Option<Descriptor>)> = man
                .layers
                .iter()
                .map(|l| (format!("blobs/sha256/{}", l.digest.hex()), Some(l.clone())))
                .collect();
            let mut rec = u.load_image(
                &format!("blobs/sha256/{}", man.config.digest.hex()),
                &layers,
                unpack,
            )?;
            rec.manifest = Some(store.put_blob(&mbytes, Some(&m.digest))?);
            let ann = m.annotations.clone().unwrap_or_default();
            let name = ann
                .get("io.containerd.image.name")
                .and_then(|n| n.parse::<Reference>().ok());
            store.commit_image(&rec, &name.into_iter().collect::<Vec<_>>(), &[])?;
            loaded.push(rec.id);
        }
    } else {
        return Err(ArchiveError::Unknown);
    }
    drop(u);
    drop(tmp);
    loaded
        .iter()
        .map(|id| store.resolve(&id.to_string()).map_err(ArchiveError::from))
        .collect()
}
