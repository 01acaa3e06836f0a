//! Image references with Docker's normalisation: `busybox` is
//! `docker.io/library/busybox:latest`; `host:port/name:tag`; `name@sha256:…`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, ParseDigestError};

/// The registry a reference without a domain names.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parse failure of an image reference.
#[derive(Debug, thiserror::Error)]
pub enum ParseReferenceError {
    /// Empty input.
    #[error("reference is empty")]
    Empty,
    /// The repository path has characters outside `[a-z0-9._/-]` or bad separators.
    #[error("reference `{0}`: invalid repository name (lowercase letters, digits, `._-/` only)")]
    Repository(String),
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("reference `{0}`: invalid tag")]
    Tag(String),
    /// The registry host is malformed.
    #[error("reference `{0}`: invalid registry host")]
    Registry(String),
    /// The digest part is malformed.
    #[error("reference `{reference}`: invalid digest")]
    Digest {
        /// The whole reference.
        reference: String,
        /// Why the digest was refused.
        #[source]
        source: ParseDigestError,
    },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` is filled in when neither tag nor digest is given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `busybox`, `user/app`, `127.0.0.1:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ParseReferenceError> {
        if !valid_tag(tag) {
            return Err(ParseReferenceError::Tag(tag.to_string()));
        }
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_component(c: &str) -> bool {
    // alnum runs separated by `.`, `_`, `__` or runs of `-`.
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep = String::new();
    for &ch in b {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            if !(prev_sep.is_empty()
                || prev_sep == "."
                || prev_sep == "_"
                || prev_sep == "__"
                || prev_sep.bytes().all(|s| s == b'-'))
            {
                return false;
            }
            prev_sep.clear();
        } else if matches!(ch, b'.' | b'_' | b'-') {
            prev_sep.push(char::from(ch));
        } else {
            return false;
        }
    }
    true
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.ends_with(']') && inner.len() > 1
    } else {
        !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

impl FromStr for Reference {
    type Err = ParseReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseReferenceError::Empty);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse().map_err(|source| ParseReferenceError::Digest {
                    reference: s.to_string(),
                    source,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ParseReferenceError::Tag(s.to_string()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(ParseReferenceError::Registry(s.to_string()));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(ParseReferenceError::Repository(s.to_string()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(norm("localhost/a/b:v1"), "localhost/a/b:v1");
        assert_eq!(norm("quay.io/x/y:z"), "quay.io/x/y:z");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("reg:5000/busybox:t@{d}")),
            format!("reg:5000/busybox:t@{d}")
        );
    }

    #[test]
    fn familiar_names() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.familiar_name(), "busybox");
        let r: Reference = "127.0.0.1:5000/x/y".parse().unwrap();
        assert_eq!(r.familiar_name(), "127.0.0.1:5000/x/y");
        assert_eq!(r.manifest_key(), "latest");
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a/-b",
            "a:",
            "a:-x",
            "a@sha256:zz",
            "a@md5:00",
            "bad host:1/x",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} accepted");
        }
    }
}
