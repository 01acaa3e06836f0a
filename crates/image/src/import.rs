//! `import`: turn a root filesystem tarball (plain, gzip or zstd) into a one-layer image,
//! like `docker import`. The layer goes through the same safe unpack as pulled layers.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::layer::{DEFAULT_MAX_LAYER_BYTES, LayerError, LayerSpec, ingest_layer};
use crate::manifest::{Descriptor, Manifest, OCI_CONFIG, OCI_MANIFEST, Platform};
use crate::reference::Reference;
use crate::store::{Image, ImageRecord, Store, StoreError};
use crate::unpack::UnpackOptions;

/// A failure to import a tarball.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The layer could not be ingested.
    #[error("import rootfs tarball")]
    Layer(#[source] LayerError),
    /// The store failed.
    #[error("import rootfs tarball")]
    Store(#[source] StoreError),
    /// Serialising the config or manifest failed.
    #[error("encode image config")]
    Encode(#[source] serde_json::Error),
}

/// RFC 3339 UTC time of `secs` since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Import the tarball `reader` as a new image, tagged `tag` if given.
pub fn import(
    store: &Store,
    reader: impl Read,
    tag: Option<&Reference>,
    unpack: UnpackOptions,
) -> Result<Image, ImportError> {
    let _lock = store.lock_shared().map_err(ImportError::Store)?;
    let spec = LayerSpec {
        label: "imported tarball".into(),
        blob: None,
        diff_id: None,
        parent_chain: None,
        max_bytes: DEFAULT_MAX_LAYER_BYTES,
        unpack,
    };
    let layer = ingest_layer(store, reader, &spec).map_err(ImportError::Layer)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let created = rfc3339(now);
    let host = Platform::host();
    let config = serde_json::json!({
        "created": created,
        "architecture": host.architecture,
        "os": host.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": created, "created_by": "berth import"}],
    });
    let config_bytes = serde_json::to_vec(&config).map_err(ImportError::Encode)?;
    let id = store
        .put_blob(&config_bytes, None)
        .map_err(ImportError::Store)?;
    let blob = layer
        .blob
        .clone()
        .ok_or(ImportError::Store(StoreError::NotFound(
            "layer blob".into(),
        )))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: id.clone(),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: vec![blob],
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(ImportError::Encode)?;
    let manifest_digest = store
        .put_blob(&manifest_bytes, None)
        .map_err(ImportError::Store)?;
    let record = ImageRecord {
        id: id.clone(),
        manifest: Some(manifest_digest),
        size: layer.size,
        layers: vec![layer],
        created: Some(created),
    };
    let tags: Vec<Reference> = tag.cloned().into_iter().collect();
    store
        .commit_image(&record, &tags, &[])
        .map_err(ImportError::Store)?;
    store.resolve(&id.to_string()).map_err(ImportError::Store)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
