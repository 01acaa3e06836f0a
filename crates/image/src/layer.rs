//! Ingest one layer from a byte stream: hash the compressed bytes (and keep them as a
//! blob), detect gzip/zstd/plain tar, hash the tar (diff_id), unpack it safely, verify
//! both digests, and only then commit the layer and blob into the store.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use crate::digest::{Digest, HashingReader};
use crate::manifest::{Descriptor, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::store::{LayerRecord, Store, StoreError};
use crate::unpack::{UnpackError, UnpackOptions, unpack_layer};

/// Bound on the uncompressed size of one layer unless configured: 64 GiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// A failure to ingest a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking failed (hostile or broken tar, or the stream failed).
    #[error("unpack layer `{layer}`")]
    Unpack {
        /// The blob digest or a description of the source.
        layer: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// The compressed bytes hash to another digest.
    #[error(
        "layer blob hashes to `{actual}` ({size} bytes), expected `{expected}` ({expected_size} bytes)"
    )]
    Digest {
        /// Expected digest.
        expected: Digest,
        /// Expected size.
        expected_size: u64,
        /// Actual digest.
        actual: Digest,
        /// Actual size.
        size: u64,
    },
    /// The uncompressed tar hashes to another diff_id than the config says.
    #[error("layer `{layer}` has diff_id `{actual}`, the image config says `{expected}`")]
    DiffId {
        /// The layer.
        layer: String,
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// The registry could not serve the blob.
    #[error("fetch layer `{layer}`")]
    Fetch {
        /// The layer digest.
        layer: String,
        /// Why.
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
    /// Writing the blob copy failed.
    #[error("write blob copy of layer `{layer}`")]
    BlobWrite {
        /// The layer.
        layer: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What to check and where to chain a layer being ingested.
#[derive(Debug, Clone)]
pub(crate) struct LayerSpec {
    /// For messages.
    pub label: String,
    /// The compressed blob as described by a manifest, if known.
    pub blob: Option<Descriptor>,
    /// The diff_id the image config names, if known.
    pub diff_id: Option<Digest>,
    /// Chain id of the layer below, if any.
    pub parent_chain: Option<Digest>,
    /// Bound on the uncompressed size.
    pub max_bytes: u64,
    /// Unpack options.
    pub unpack: UnpackOptions,
}

/// A reader that copies everything it reads into a writer.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Wrap `r` in the decompressor its first bytes call for.
/// Returns the media type matching the detected compression.
fn decompress<'a, R: BufRead + 'a>(mut r: R) -> io::Result<(Box<dyn Read + 'a>, &'static str)> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            OCI_LAYER_GZIP,
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
            OCI_LAYER_ZSTD,
        ))
    } else {
        Ok((Box::new(r), OCI_LAYER_TAR))
    }
}

/// `reader` decompressed as its first bytes call for (gzip, zstd or plain tar), for tar
/// streams that are not layers (`cp -`).
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    decompress(io::BufReader::new(reader)).map(|(r, _)| r)
}

/// Ingest one layer from `reader` (compressed or not) into the store and return its record.
/// Nothing becomes visible unless every digest matches.
pub(crate) fn ingest_layer<R: Read>(
    store: &Store,
    reader: R,
    spec: &LayerSpec,
) -> Result<LayerRecord, LayerError> {
    let tmp = store.temp_dir()?;
    let diff = tmp.path().join("diff");
    std::fs::create_dir(&diff).map_err(|source| StoreError::Io {
        op: "create layer directory",
        path: diff.clone(),
        source,
    })?;
    let blob_tmp = store.temp_dir()?;
    let blob_path = blob_tmp.path().join("blob");
    let blob_file = File::create(&blob_path).map_err(|source| LayerError::BlobWrite {
        layer: spec.label.clone(),
        source,
    })?;
    let compressed_limit = spec.blob.as_ref().map_or(u64::MAX, |b| b.size);
    let mut compressed = HashingReader::new(
        Tee {
            inner: reader,
            copy: BufWriter::with_capacity(1 << 20, blob_file),
        },
        compressed_limit,
    );
    let unpack_err = |source| LayerError::Unpack {
        layer: spec.label.clone(),
        source,
    };
    let (diff_id, size, media_type) = {
        let buffered = BufReader::with_capacity(256 * 1024, &mut compressed);
        let (tar, media_type) =
            decompress(buffered).map_err(|e| unpack_err(UnpackError::Read(e)))?;
        let mut tar = HashingReader::new(tar, spec.max_bytes);
        unpack_layer(&mut tar, &diff, spec.unpack).map_err(unpack_err)?;
        let (diff_id, size, _) = tar.finish().map_err(|e| unpack_err(UnpackError::Read(e)))?;
        (diff_id, size, media_type)
    };
    let (digest, blob_size, tee) = compressed
        .finish()
        .map_err(|e| unpack_err(UnpackError::Read(e)))?;
    check_digests(spec, &digest, blob_size, &diff_id)?;
    let write_err = |source| LayerError::BlobWrite {
        layer: spec.label.clone(),
        source,
    };
    let file = tee
        .copy
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    // Made durable by the syncfs in commit_layer, together with the layer.
    drop(file);
    let blob = Descriptor {
        media_type: spec
            .blob
            .as_ref()
            .map_or(media_type.to_string(), |b| b.media_type.clone()),
        digest,
        size: blob_size,
        platform: None,
        annotations: None,
    };
    let chain_id = match &spec.parent_chain {
        None => diff_id.clone(),
        Some(p) => crate::manifest::chain_ids(&[p.clone(), diff_id.clone()])
            .pop()
            .unwrap_or(diff_id.clone()),
    };
    let rec = LayerRecord {
        chain_id,
        diff_id,
        blob: Some(blob),
        size,
    };
    store.commit_layer(tmp, &rec, Some(&blob_path))?;
    drop(blob_tmp);
    Ok(rec)
}

fn check_digests(
    spec: &LayerSpec,
    digest: &Digest,
    size: u64,
    diff_id: &Digest,
) -> Result<(), LayerError> {
    if let Some(b) = &spec.blob
        && (b.digest != *digest || b.size != size)
    {
        return Err(LayerError::Digest {
            expected: b.digest.clone(),
            expected_size: b.size,
            actual: digest.clone(),
            size,
        });
    }
    if let Some(want) = &spec.diff_id
        && want != diff_id
    {
        return Err(LayerError::DiffId {
            layer: spec.label.clone(),
            expected: want.clone(),
            actual: diff_id.clone(),
        });
    }
    Ok(())
}
