//! Registry credentials in Docker's `config.json` form (`{"auths": {"host": {"auth":
//! base64(user:pass)}}}`): looked up in berth's own file first (written by `berth login`),
//! then in `~/.docker/config.json`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::reference::DEFAULT_REGISTRY;
use crate::store::{StoreError, write_atomic};

/// A failure to read or write an auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// Reading or writing failed.
    #[error("{op} auth file `{path}`")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Not valid JSON.
    #[error("parse auth file `{path}`")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The atomic write failed.
    #[error(transparent)]
    Write(#[from] StoreError),
}

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        crate::registry::basic_value(&self.username, &self.password)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// The files credentials come from, in order; the first is where `login` writes.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    /// Paths, most preferred first.
    pub paths: Vec<PathBuf>,
}

/// The key a registry has in `auths` (Docker Hub keeps its historical URL).
fn key_of(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY {
        "https://index.docker.io/v1/"
    } else {
        registry
    }
}

/// `https://host/v1/` → `host`, as Docker accepts both forms.
fn normalise_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.split('/').next().unwrap_or(k);
    if k == "index.docker.io" || k == "registry-1.docker.io" {
        DEFAULT_REGISTRY
    } else {
        k
    }
}

impl AuthFiles {
    /// `<root>/auth.json`, then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub fn standard(root: &Path) -> AuthFiles {
        let mut paths = vec![root.join("auth.json")];
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            paths.push(PathBuf::from(d).join("config.json"));
        } else if let Some(h) = std::env::var_os("HOME") {
            paths.push(PathBuf::from(h).join(".docker/config.json"));
        }
        AuthFiles { paths }
    }

    /// Credentials for `registry`, if any file has them.
    pub fn lookup(&self, registry: &str) -> Option<Credentials> {
        for p in &self.paths {
            let Ok(cfg) = read_config(p) else { continue };
            for (k, e) in &cfg.auths {
                if normalise_key(k) != registry {
                    continue;
                }
                let Some(auth) = &e.auth else { continue };
                let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth.trim()) else {
                    continue;
                };
                let raw = String::from_utf8_lossy(&raw).into_owned();
                if let Some((u, pw)) = raw.split_once(':') {
                    return Some(Credentials {
                        username: u.to_string(),
                        password: pw.to_string(),
                    });
                }
            }
        }
        None
    }

    fn primary(&self) -> Option<&Path> {
        self.paths.first().map(PathBuf::as_path)
    }

    /// Store `creds` for `registry` in the first file (mode 0600).
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<(), AuthFileError> {
        let Some(p) = self.primary() else {
            return Ok(());
        };
        let mut cfg = read_config(p)?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        cfg.auths.insert(
            key_of(registry).to_string(),
            AuthEntry {
                auth: Some(auth),
                rest: BTreeMap::new(),
            },
        );
        write_config(p, &cfg)
    }

    /// Remove `registry` from the first file; returns whether it was there.
    pub fn logout(&self, registry: &str) -> Result<bool, AuthFileError> {
        let Some(p) = self.primary() else {
            return Ok(false);
        };
        let mut cfg = read_config(p)?;
        let before = cfg.auths.len();
        cfg.auths.retain(|k, _| normalise_key(k) != registry);
        let removed = cfg.auths.len() != before;
        if removed {
            write_config(p, &cfg)?;
        }
        Ok(removed)
    }
}

fn read_config(p: &Path) -> Result<AuthConfig, AuthFileError> {
    match fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| AuthFileError::Json {
            path: p.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthConfig::default()),
        Err(source) => Err(AuthFileError::Io {
            op: "read",
            path: p.to_path_buf(),
            source,
        }),
    }
}

fn write_config(p: &Path, cfg: &AuthConfig) -> Result<(), AuthFileError> {
    use std::os::unix::fs::PermissionsExt;
    let json = serde_json::to_vec_pretty(cfg).map_err(|source| AuthFileError::Json {
        path: p.to_path_buf(),
        source,
    })?;
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(|source| AuthFileError::Io {
            op: "create directory of",
            path: p.to_path_buf(),
            source,
        })?;
    }
    write_atomic(p, &json)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).map_err(|source| AuthFileError::Io {
        op: "restrict",
        path: p.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_lookup_logout() {
        let t = tempfile::tempdir().unwrap();
        let docker = t.path().join("docker.json");
        fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let files = AuthFiles {
            paths: vec![t.path().join("auth.json"), docker],
        };
        assert_eq!(files.lookup("docker.io").unwrap().username, "u");
        assert!(files.lookup("127.0.0.1:5000").is_none());
        let c = Credentials {
            username: "alice".into(),
            password: "s:cret".into(),
        };
        files.login("127.0.0.1:5000", &c).unwrap();
        assert_eq!(files.lookup("127.0.0.1:5000").unwrap(), c);
        assert!(files.logout("127.0.0.1:5000").unwrap());
        assert!(files.lookup("127.0.0.1:5000").is_none());
        assert!(!format!("{c:?}").contains("s:cret"));
    }
}
