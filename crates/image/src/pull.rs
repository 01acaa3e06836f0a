//! `pull`: resolve a reference to a manifest (selecting a platform from an index),
//! fetch and verify the config, then download the missing layers concurrently, each one
//! hashed, decompressed and unpacked while it streams in, and commit the image record last.

use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::digest::Digest;
use crate::layer::{DEFAULT_MAX_LAYER_BYTES, LayerError, LayerSpec, ingest_layer};
use crate::manifest::{
    Descriptor, Document, Manifest, ManifestError, Platform, chain_ids, parse_document,
    select_platform,
};
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use crate::store::{Image, ImageRecord, LayerRecord, Store, StoreError};
use crate::unpack::UnpackOptions;

/// Bound on an image config blob.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A failure to pull an image.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Talking to the registry failed.
    #[error("pull `{reference}`")]
    Registry {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A manifest could not be used.
    #[error("pull `{reference}`")]
    Manifest {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: Box<ManifestError>,
    },
    /// The image config is not a valid OCI image config.
    #[error("pull `{reference}`: parse image config `{digest}`: {reason}")]
    Config {
        /// The reference.
        reference: String,
        /// The config digest.
        digest: Digest,
        /// The parse error.
        reason: String,
    },
    /// A layer failed.
    #[error("pull `{reference}`")]
    Layer {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: LayerError,
    },
    /// The store failed.
    #[error("pull `{reference}`")]
    Store {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform picked from an index.
    pub platform: Platform,
    /// Bound on each layer's uncompressed size.
    pub max_layer_bytes: u64,
    /// Layers fetched at once.
    pub jobs: usize,
    /// Unpack options.
    pub unpack: UnpackOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            jobs: 3,
            unpack: UnpackOptions::default(),
        }
    }
}

/// What a pull reports as it goes (a terminal UI draws bars from these).
#[derive(Debug, Clone)]
pub enum PullEvent<'a> {
    /// The manifest is known.
    Resolved {
        /// Manifest digest.
        digest: &'a Digest,
        /// Layer blobs in order.
        layers: &'a [Descriptor],
    },
    /// This layer is already stored.
    LayerExists(&'a Digest),
    /// Bytes of a layer arrived.
    LayerProgress {
        /// Blob digest.
        digest: &'a Digest,
        /// Bytes so far.
        done: u64,
        /// Total bytes.
        total: u64,
    },
    /// The layer is verified and stored.
    LayerDone(&'a Digest),
}

/// Receives pull progress; called from several threads.
pub trait PullProgress: Sync {
    /// One event.
    fn event(&self, ev: PullEvent<'_>);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default)]
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn event(&self, _ev: PullEvent<'_>) {}
}

/// Counts bytes read and reports them.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    last: u64,
    digest: &'a Digest,
    total: u64,
    progress: &'a dyn PullProgress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= 256 * 1024 || n == 0 {
            self.last = self.done;
            self.progress.event(PullEvent::LayerProgress {
                digest: self.digest,
                done: self.done,
                total: self.total,
            });
        }
        Ok(n)
    }
}

/// Pull `reference` into `store`. Returns the stored image.
pub fn pull(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Image, PullError> {
    let name = reference.to_string();
    let reg_err = |source| PullError::Registry {
        reference: name.clone(),
        source,
    };
    let store_err = |source| PullError::Store {
        reference: name.clone(),
        source,
    };
    let _lock = store.lock_shared().map_err(store_err)?;
    let (body, digest, manifest) = resolve_manifest(client, reference, &opts.platform)?;
    progress.event(PullEvent::Resolved {
        digest: &digest,
        layers: &manifest.layers,
    });

    // The config names the diff_ids every layer is checked against.
    let config_bytes = client
        .fetch_blob_bytes(reference, &manifest.config.digest, MAX_CONFIG_BYTES)
        .map_err(reg_err)?;
    let config =
        oci_spec::image::ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
            PullError::Config {
                reference: name.clone(),
                digest: manifest.config.digest.clone(),
                reason: e.to_string(),
            }
        })?;
    let diff_ids = parse_diff_ids(&config, &manifest, &name)?;

    let layers = fetch_layers(
        store, client, reference, &manifest, &diff_ids, opts, progress,
    )
    .map_err(|source| PullError::Layer {
        reference: name.clone(),
        source,
    })?;

    // Blobs first, then the record, then the names: a crash leaves no half image listed.
    let id = store
        .put_blob(&config_bytes, Some(&manifest.config.digest))
        .map_err(store_err)?;
    store.put_blob(&body, Some(&digest)).map_err(store_err)?;
    let record = ImageRecord {
        id: id.clone(),
        manifest: Some(digest.clone()),
        size: layers.iter().map(|l| l.size).sum(),
        layers,
        created: config.created().clone(),
    };
    let tags: Vec<Reference> = reference
        .tag()
        .and_then(|t| reference.with_tag(t).ok())
        .into_iter()
        .collect();
    let digests = [reference.with_digest(digest)];
    store
        .commit_image(&record, &tags, &digests)
        .map_err(store_err)?;
    store.resolve(&id.to_string()).map_err(store_err)
}

/// Resolve the reference to one image manifest (bytes, digest, parsed), going through an
/// index if needed.
fn resolve_manifest(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Vec<u8>, Digest, Manifest), PullError> {
    let reg_err = |source| PullError::Registry {
        reference: reference.to_string(),
        source,
    };
    let man_err = |source| PullError::Manifest {
        reference: reference.to_string(),
        source: Box::new(source),
    };
    let (body, ctype, digest) = client
        .fetch_manifest(reference, &reference.manifest_key())
        .map_err(reg_err)?;
    let (body, ctype, digest) = match parse_document(&body, &ctype, &digest).map_err(man_err)? {
        Document::Manifest(_) => (body, ctype, digest),
        Document::Index(idx) => {
            let pick = select_platform(&idx, platform, &digest).map_err(man_err)?;
            client
                .fetch_manifest(reference, &pick.digest.to_string())
                .map_err(reg_err)?
        }
    };
    let Document::Manifest(mut manifest) =
        parse_document(&body, &ctype, &digest).map_err(man_err)?
    else {
        return Err(man_err(ManifestError::Unsupported {
            digest,
            media_type: "nested index".into(),
        }));
    };
    if manifest.media_type.is_none() {
        manifest.media_type = Some(ctype.split(';').next().unwrap_or("").trim().to_string());
    }
    Ok((body, digest, manifest))
}

fn parse_diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    manifest: &Manifest,
    name: &str,
) -> Result<Vec<Digest>, PullError> {
    let diff_ids: Result<Vec<Digest>, _> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|s| s.parse::<Digest>())
        .collect();
    let diff_ids = diff_ids.map_err(|e| PullError::Config {
        reference: name.to_string(),
        digest: manifest.config.digest.clone(),
        reason: e.to_string(),
    })?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PullError::Manifest {
            reference: name.to_string(),
            source: Box::new(ManifestError::LayerCount {
                digest: manifest.config.digest.clone(),
                diff_ids: diff_ids.len(),
                layers: manifest.layers.len(),
            }),
        });
    }
    Ok(diff_ids)
}

/// Fetch every layer not yet stored, `opts.jobs` at a time; records come back in order.
fn fetch_layers(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    manifest: &Manifest,
    diff_ids: &[Digest],
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Vec<LayerRecord>, LayerError> {
    let chains = chain_ids(diff_ids);
    let n = manifest.layers.len();
    let results: Mutex<Vec<Option<Result<LayerRecord, LayerError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= n {
                break;
            }
            let r = fetch_one(
                store, client, reference, manifest, diff_ids, &chains, i, opts, progress,
            );
            if let Ok(mut v) = results.lock() {
                v[i] = Some(r);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, n.max(1)) {
            s.spawn(work);
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(LayerError::Store(StoreError::NotFound(
                    "layer worker result".into(),
                )))
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn fetch_one(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    manifest: &Manifest,
    diff_ids: &[Digest],
    chains: &[Digest],
    i: usize,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<LayerRecord, LayerError> {
    let desc = &manifest.layers[i];
    if store.has_layer(&chains[i]) && store.has_blob(&desc.digest) {
        progress.event(PullEvent::LayerExists(&desc.digest));
        return Ok(LayerRecord {
            chain_id: chains[i].clone(),
            diff_id: diff_ids[i].clone(),
            blob: Some(desc.clone()),
            size: store.layer_size(&chains[i]).unwrap_or(0),
        });
    }
    let stream = client
        .open_blob(reference, &desc.digest)
        .map_err(|e| LayerError::Fetch {
            layer: desc.digest.to_string(),
            source: Box::new(e),
        })?;
    let counting = Counting {
        inner: stream,
        done: 0,
        last: 0,
        digest: &desc.digest,
        total: desc.size,
        progress,
    };
    let spec = LayerSpec {
        label: desc.digest.to_string(),
        blob: Some(desc.clone()),
        diff_id: Some(diff_ids[i].clone()),
        parent_chain: i.checked_sub(1).map(|p| chains[p].clone()),
        max_bytes: opts.max_layer_bytes,
        unpack: opts.unpack,
    };
    let rec = ingest_layer(store, counting, &spec)?;
    progress.event(PullEvent::LayerDone(&desc.digest));
    Ok(rec)
}
