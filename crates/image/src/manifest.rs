//! The JSON documents of the distribution and image specs that berth reads and writes:
//! descriptors, manifests, indexes (OCI and Docker v2 schema 2), and platform selection.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer media type.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI uncompressed layer media type.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A failure to understand a manifest document.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON of the expected shape.
    #[error("parse manifest `{digest}`")]
    Parse {
        /// The document's digest.
        digest: Digest,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// schemaVersion 1 or an unknown media type.
    #[error("manifest `{digest}`: unsupported media type `{media_type}`")]
    Unsupported {
        /// The document's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// No entry of an index matches the wanted platform.
    #[error("no manifest for platform `{wanted}` in index `{digest}` (has: {available})")]
    NoPlatform {
        /// The index digest.
        digest: Digest,
        /// The platform asked for.
        wanted: Platform,
        /// The platforms it has.
        available: String,
    },
    /// The config lists a different number of diff_ids than the manifest has layers.
    #[error("image config `{digest}` lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount {
        /// The config digest.
        digest: Digest,
        /// Number of diff_ids.
        diff_ids: usize,
        /// Number of layers.
        layers: usize,
    },
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the target.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform, in indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A platform as written in an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    /// GOARCH.
    pub architecture: String,
    /// GOOS.
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An image index or manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest document, classified.
#[derive(Debug)]
pub(crate) enum Document {
    Manifest(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// Classify and parse a manifest document fetched with `content_type`.
pub(crate) fn parse_document(
    body: &[u8],
    content_type: &str,
    digest: &Digest,
) -> Result<Document, ManifestError> {
    let parse_err = |source| ManifestError::Parse {
        digest: digest.clone(),
        source,
    };
    let probe: Probe = serde_json::from_slice(body).map_err(parse_err)?;
    let media_type = probe.media_type.clone().unwrap_or_else(|| {
        content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    });
    if probe.schema_version != Some(2) {
        return Err(ManifestError::Unsupported {
            digest: digest.clone(),
            media_type: format!("{media_type} (schemaVersion {:?})", probe.schema_version),
        });
    }
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Document::Index(
            serde_json::from_slice(body).map_err(parse_err)?,
        )),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Document::Manifest(
            serde_json::from_slice(body).map_err(parse_err)?,
        )),
        _ if probe.manifests.is_some() => Ok(Document::Index(
            serde_json::from_slice(body).map_err(parse_err)?,
        )),
        "" | "application/json" => Ok(Document::Manifest(
            serde_json::from_slice(body).map_err(parse_err)?,
        )),
        _ => Err(ManifestError::Unsupported {
            digest: digest.clone(),
            media_type,
        }),
    }
}

/// A platform to select from an index: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// GOOS, e.g. `linux`.
    pub os: String,
    /// GOARCH, e.g. `amd64`.
    pub architecture: String,
    /// Variant, e.g. `v8`.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    fn matches(&self, p: &PlatformJson) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_ref() == Some(v))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error)]
#[error("platform `{0}`: expected os/arch[/variant]")]
pub struct ParsePlatformError(String);

impl FromStr for Platform {
    type Err = ParsePlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(ParsePlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

/// Pick the manifest for `wanted` from an index.
pub(crate) fn select_platform<'a>(
    index: &'a Index,
    wanted: &Platform,
    digest: &Digest,
) -> Result<&'a Descriptor, ManifestError> {
    let fit = |d: &&Descriptor| d.platform.as_ref().is_some_and(|p| wanted.matches(p));
    // Without a wanted variant, prefer an entry without one, then the first that fits.
    let exact = index.manifests.iter().filter(fit).find(|d| {
        wanted.variant.is_some() || d.platform.as_ref().is_some_and(|p| p.variant.is_none())
    });
    exact
        .or_else(|| index.manifests.iter().find(fit))
        .ok_or_else(|| {
            let available = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            ManifestError::NoPlatform {
                digest: digest.clone(),
                wanted: wanted.clone(),
                available,
            }
        })
}

/// Chain ids of a list of diff_ids: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let mut h = Sha256::new();
                h.update(format!("{prev} {d}").as_bytes());
                Digest::of_hash(h.finalize().as_slice())
            }
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let c = chain_ids(&[d('a'), d('b')]);
        assert_eq!(c[0], d('a'));
        assert_eq!(
            c[1],
            Digest::of(format!("{} {}", d('a'), d('b')).as_bytes())
        );
    }

    #[test]
    fn selects_platforms() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: d('1'),
                    size: 1,
                    platform: Some(PlatformJson {
                        architecture: "arm64".into(),
                        os: "linux".into(),
                        variant: Some("v8".into()),
                    }),
                    annotations: None,
                },
                Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: d('2'),
                    size: 1,
                    platform: Some(PlatformJson {
                        architecture: "amd64".into(),
                        os: "linux".into(),
                        variant: None,
                    }),
                    annotations: None,
                },
            ],
        };
        let pick =
            |s: &str| select_platform(&idx, &s.parse().unwrap(), &d('f')).map(|x| x.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), d('2'));
        assert_eq!(pick("linux/arm64").unwrap(), d('1'));
        assert_eq!(pick("linux/arm64/v8").unwrap(), d('1'));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/arm64/v8"), "{err}");
    }

    #[test]
    fn classifies_documents() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d('a')
        );
        assert!(matches!(
            parse_document(m.as_bytes(), "", &d('0')).unwrap(),
            Document::Manifest(_)
        ));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse_document(v1, "", &d('0')).is_err());
    }
}
