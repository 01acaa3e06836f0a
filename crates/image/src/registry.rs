//! A synchronous client for the OCI distribution API: manifests and blobs with
//! anonymous, bearer-token (WWW-Authenticate challenge → token) or basic auth, retries
//! with backoff, HTTPS with the system's roots and plain HTTP only for loopback hosts or
//! registries marked insecure. Built on `ureq` (rustls + ring): no async runtime.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use ureq::Body;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};

use crate::auth::{AuthFiles, Credentials};
use crate::digest::Digest;
use crate::reference::{DEFAULT_REGISTRY, Reference};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Bound on a manifest or index body.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Bound on a token response.
const MAX_TOKEN_BYTES: u64 = 1 << 20;
const ATTEMPTS: u32 = 4;

/// A failure talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be sent or answered.
    #[error("request `{url}`")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<ureq::Error>,
    },
    /// An unexpected HTTP status.
    #[error("`{url}` answered HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The manifest or blob does not exist.
    #[error("`{what}` not found in registry `{registry}`")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// Authentication was refused or is needed.
    #[error(
        "registry `{registry}` refused access ({detail}); check the name or run `berth login {registry}`"
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What it said.
        detail: String,
    },
    /// The token endpoint's answer was unusable.
    #[error("token from `{url}`: {reason}")]
    Token {
        /// The token URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// Reading a response body failed.
    #[error("read response of `{url}`")]
    Read {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A fetched document does not hash to the digest asked for.
    #[error("`{url}` returned content with digest `{actual}`, expected `{expected}`")]
    Digest {
        /// The URL.
        url: String,
        /// Expected digest.
        expected: Digest,
        /// Actual digest.
        actual: Digest,
    },
    /// Plain HTTP to a non-loopback registry not marked insecure.
    #[error("token realm `{0}` uses plain http; mark the registry insecure to allow it")]
    InsecureRealm(String),
}

/// How the client connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (host[:port]) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Where credentials are looked up.
    pub auth: AuthFiles,
}

/// A registry client; share one per command (it caches tokens).
#[derive(Debug)]
pub struct RegistryClient {
    agent: ureq::Agent,
    opts: ClientOptions,
    tokens: Mutex<HashMap<String, String>>,
}

/// Whether plain HTTP is used for `registry`.
pub(crate) fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

/// Parse `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`).
fn parse_challenge(h: &str) -> Challenge {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while let Some((k, v)) = s.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        params.insert(k, val.to_string());
        s = tail.trim_start().trim_start_matches(',');
    }
    Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    }
}

#[derive(serde::Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
}

impl RegistryClient {
    /// A client with `opts`.
    pub fn new(opts: ClientOptions) -> RegistryClient {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_redirects(10)
            .user_agent("berth/0.1")
            .tls_config(tls)
            .build();
        RegistryClient {
            agent: ureq::Agent::new_with_config(config),
            opts,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn insecure(&self, registry: &str) -> bool {
        is_loopback(registry) || self.opts.insecure.iter().any(|r| r == registry)
    }

    /// `scheme://host` for the API of `registry`.
    fn base(&self, registry: &str) -> String {
        let host = if registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            registry
        };
        let scheme = if self.insecure(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.opts.auth.lookup(registry)
    }

    /// One GET with retries on transport errors, 429 and 5xx.
    fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut attempt = 0;
        loop {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let retryable = match req.call() {
                Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => {
                    if attempt + 1 >= ATTEMPTS {
                        return Ok(resp);
                    }
                    true
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let transient = matches!(
                        e,
                        ureq::Error::Io(_)
                            | ureq::Error::Timeout(_)
                            | ureq::Error::ConnectionFailed
                    );
                    if !transient || attempt + 1 >= ATTEMPTS {
                        return Err(RegistryError::Http {
                            url: url.to_string(),
                            source: Box::new(e),
                        });
                    }
                    true
                }
            };
            debug_assert!(retryable);
            std::thread::sleep(Duration::from_millis(250 << attempt));
            attempt += 1;
        }
    }

    /// GET `path` under the repository's API, answering one auth challenge.
    fn get(
        &self,
        r: &Reference,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(String, Response<Body>), RegistryError> {
        let url = format!("{}/v2/{}/{}", self.base(r.registry()), r.repository(), path);
        let scope = format!("repository:{}:pull", r.repository());
        let key = format!("{} {scope}", r.registry());
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let mut resp = self.send(&url, accept, cached.as_deref())?;
        if resp.status().as_u16() == 401 {
            let header = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let auth = self.answer_challenge(r.registry(), &scope, &header)?;
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(key, auth.clone());
            }
            resp = self.send(&url, accept, Some(&auth))?;
        }
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok((url, resp)),
            401 | 403 => Err(RegistryError::Unauthorized {
                registry: r.registry().to_string(),
                detail: format!("HTTP {status} for `{url}`"),
            }),
            404 => Err(RegistryError::NotFound {
                registry: r.registry().to_string(),
                what: format!("{}/{path}", r.repository()),
            }),
            _ => Err(RegistryError::Status {
                url,
                status,
                body: body_excerpt(resp),
            }),
        }
    }

    /// The `Authorization` header value that answers `challenge`.
    fn answer_challenge(
        &self,
        registry: &str,
        scope: &str,
        challenge: &str,
    ) -> Result<String, RegistryError> {
        let c = parse_challenge(challenge);
        let creds = self.credentials(registry);
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            registry: registry.to_string(),
            detail: detail.to_string(),
        };
        match c.scheme.as_str() {
            "basic" => creds
                .map(|c| c.basic_header())
                .ok_or_else(|| unauthorized("basic auth required and no credentials found")),
            "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| unauthorized("bearer challenge without realm"))?;
                self.fetch_token(
                    registry,
                    realm,
                    c.params.get("service"),
                    scope,
                    creds.as_ref(),
                )
            }
            _ => Err(unauthorized(&format!(
                "unsupported challenge `{challenge}`"
            ))),
        }
    }

    fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&String>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        if realm.starts_with("http://") && !self.insecure(registry) {
            let host = realm
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            if !is_loopback(host) {
                return Err(RegistryError::InsecureRealm(realm.to_string()));
            }
        }
        let mut url = format!("{realm}?scope={}", urlencode(scope));
        if let Some(s) = service {
            url.push_str(&format!("&service={}", urlencode(s)));
        }
        let auth = creds.map(Credentials::basic_header);
        let resp = self.send(&url, None, auth.as_deref())?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                detail: format!("token server answered HTTP {status}"),
            });
        }
        if status != 200 {
            return Err(RegistryError::Status {
                url,
                status,
                body: body_excerpt(resp),
            });
        }
        let body = read_bounded(resp, MAX_TOKEN_BYTES, &url)?;
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Token {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let token = reply
            .token
            .or(reply.access_token)
            .ok_or_else(|| RegistryError::Token {
                url,
                reason: "no `token` field".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// Fetch a manifest or index by tag or digest: its bytes, content type and digest.
    /// A digest key is verified against the content.
    pub(crate) fn fetch_manifest(
        &self,
        r: &Reference,
        key: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let (url, resp) = self.get(r, &format!("manifests/{key}"), Some(MANIFEST_ACCEPT))?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = read_bounded(resp, MAX_MANIFEST_BYTES, &url)?;
        let actual = Digest::of(&body);
        if let Ok(expected) = key.parse::<Digest>()
            && expected != actual
        {
            return Err(RegistryError::Digest {
                url,
                expected,
                actual,
            });
        }
        Ok((body, ctype, actual))
    }

    /// Fetch a small blob (a config) whole, bounded and verified.
    pub(crate) fn fetch_blob_bytes(
        &self,
        r: &Reference,
        d: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let (url, resp) = self.get(r, &format!("blobs/{d}"), None)?;
        let body = read_bounded(resp, limit, &url)?;
        let actual = Digest::of(&body);
        if actual != *d {
            return Err(RegistryError::Digest {
                url,
                expected: d.clone(),
                actual,
            });
        }
        Ok(body)
    }

    /// Open a blob as a stream; the caller verifies the digest as it reads.
    pub(crate) fn open_blob(
        &self,
        r: &Reference,
        d: &Digest,
    ) -> Result<impl Read + Send + 'static, RegistryError> {
        let (_, resp) = self.get(r, &format!("blobs/{d}"), None)?;
        Ok(resp.into_body().into_with_config().reader())
    }

    /// Check that the registry accepts `creds` (used by `berth login`).
    pub fn check_login(&self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base(registry));
        let resp = self.send(&url, None, Some(&creds.basic_header()))?;
        if resp.status().as_u16() != 401 {
            return match resp.status().as_u16() {
                200..=299 => Ok(()),
                status => Err(RegistryError::Status {
                    url,
                    status,
                    body: body_excerpt(resp),
                }),
            };
        }
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let c = parse_challenge(&header);
        match (c.scheme.as_str(), c.params.get("realm")) {
            ("bearer", Some(realm)) => self
                .fetch_token(registry, realm, c.params.get("service"), "", Some(creds))
                .map(drop),
            _ => Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                detail: "credentials rejected".into(),
            }),
        }
    }
}

fn read_bounded(resp: Response<Body>, limit: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut r = resp.into_body().into_with_config().reader().take(limit + 1);
    r.read_to_end(&mut out)
        .map_err(|source| RegistryError::Read {
            url: url.to_string(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::Read {
            url: url.to_string(),
            source: io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("body exceeds {limit} bytes"),
            ),
        });
    }
    Ok(out)
}

fn body_excerpt(resp: Response<Body>) -> String {
    let mut out = Vec::new();
    let _ = resp
        .into_body()
        .into_with_config()
        .reader()
        .take(300)
        .read_to_end(&mut out);
    String::from_utf8_lossy(&out).trim().to_string()
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Basic base64(user:pass)`.
pub(crate) fn basic_value(user: &str, pass: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
    }

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        let c = RegistryClient::new(ClientOptions {
            insecure: vec!["reg.lan:5000".into()],
            ..Default::default()
        });
        assert_eq!(c.base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base("localhost"), "http://localhost");
        assert_eq!(c.base("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base("quay.io"), "https://quay.io");
        assert_eq!(c.base("docker.io"), "https://registry-1.docker.io");
        assert_eq!(
            urlencode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
