//! Pulls from a registry in htpasswd (basic) mode and in token mode, with a token issuer
//! run by the test (JWTs signed ES256 by a throwaway key whose certificate the registry
//! trusts). Both succeed with credentials and fail clearly without. Needs root, `htpasswd`
//! (apache2-utils) and `openssl`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use berth_image::{
    AuthFiles, ClientOptions, Credentials, PullOptions, Reference, RegistryClient, Store,
};
use common::{Layout, OwnRegistry, run};

const USER: &str = "alice";
const PASS: &str = "s3cret-pw";

fn can_run_auth() -> bool {
    if !common::can_run() {
        return false;
    }
    ["htpasswd", "openssl"].iter().all(|t| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success());
        common::require(&format!("needs `{t}` (see .ci/packages.txt)"), ok)
    })
}

fn push_busybox(tmp: &Path, reg: &str, name: &str) -> Result<()> {
    let layout = Layout::new(tmp)?;
    layout.busybox("bb", tmp)?;
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("{USER}:{PASS}"))
        .arg(format!("oci:{}", layout.image("bb")))
        .arg(format!("docker://{reg}/{name}")))
    .map(drop)
}

/// Pull with the credentials in `auth` (if any); returns the error text on failure.
fn try_pull(tmp: &Path, r: &str, auth: Option<&Path>) -> Result<std::result::Result<(), String>> {
    let store = Store::open(&tmp.join(format!("root-{}", auth.is_some())))?;
    let files = AuthFiles {
        paths: auth.map(Path::to_path_buf).into_iter().collect(),
    };
    let client = RegistryClient::new(ClientOptions {
        insecure: Vec::new(),
        auth: files,
    });
    let r: Reference = r.parse()?;
    Ok(berth_image::pull(
        &store,
        &client,
        &r,
        &PullOptions::default(),
        &berth_image::NoProgress,
    )
    .map(drop)
    .map_err(|e| format!("{:#}", anyhow::Error::from(e))))
}

fn login_file(tmp: &Path, reg: &str) -> Result<PathBuf> {
    let path = tmp.join("auth.json");
    let files = AuthFiles {
        paths: vec![path.clone()],
    };
    let creds = Credentials {
        username: USER.into(),
        password: PASS.into(),
    };
    RegistryClient::new(ClientOptions::default()).check_login(reg, &creds)?;
    files.login(reg, &creds)?;
    Ok(path)
}

#[test]
fn basic_auth_pull() -> Result<()> {
    if !can_run_auth() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let reg = common::htpasswd_registry(tmp.path(), USER, PASS)?;
    push_busybox(tmp.path(), &reg.addr, "secret/busybox")?;
    let r = format!("{}/secret/busybox", reg.addr);
    let err = try_pull(tmp.path(), &r, None)?.expect_err("anonymous pull succeeded");
    assert!(
        err.contains("basic auth required and no credentials found") && err.contains("berth login"),
        "{err}"
    );
    // Wrong password is refused at login.
    let bad = Credentials {
        username: USER.into(),
        password: "nope".into(),
    };
    assert!(
        RegistryClient::new(ClientOptions::default())
            .check_login(&reg.addr, &bad)
            .is_err()
    );
    let auth = login_file(tmp.path(), &reg.addr)?;
    try_pull(tmp.path(), &r, Some(&auth))?.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// base64url without padding.
fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// libtrust's key id: base32 of the first 30 bytes of sha256(SPKI DER), in groups of 4.
fn libtrust_kid(spki_der: &[u8]) -> String {
    let h = berth_image::Digest::of(spki_der);
    let bytes: Vec<u8> = (0..30)
        .map(|i| u8::from_str_radix(&h.hex()[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut v: u64 = 0;
        for b in chunk {
            v = (v << 8) | u64::from(*b);
        }
        for i in (0..8).rev() {
            out.push(char::from(ALPHA[((v >> (i * 5)) & 31) as usize]));
        }
    }
    out.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// DER ECDSA signature → JWS raw r||s (32 bytes each).
fn der_to_raw(der: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 2; // SEQUENCE tag + short length
    for _ in 0..2 {
        if der.get(i) != Some(&2) {
            bail!("bad DER signature");
        }
        let len = usize::from(der[i + 1]);
        let mut int = &der[i + 2..i + 2 + len];
        while int.len() > 32 && int[0] == 0 {
            int = &int[1..];
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    Ok(out)
}

struct Issuer {
    key: PathBuf,
    kid: String,
    dir: PathBuf,
}

impl Issuer {
    fn new(dir: &Path) -> Result<Issuer> {
        let key = dir.join("key.pem");
        run(Command::new("openssl")
            .args([
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
            ])
            .arg(&key))?;
        run(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=berth-test-issuer",
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(dir.join("cert.pem")))?;
        let spki = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()?
            .stdout;
        Ok(Issuer {
            key,
            kid: libtrust_kid(&spki),
            dir: dir.to_path_buf(),
        })
    }

    fn token(&self, scope: &str) -> Result<String> {
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": self.kid});
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let access: Vec<serde_json::Value> = scope
            .split(' ')
            .filter_map(|s| {
                let mut p = s.splitn(3, ':');
                let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let claims = serde_json::json!({
            "iss": "berth-test-issuer", "sub": USER, "aud": "berth-test", "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_suffix()), "access": access,
        });
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header)?),
            b64(&serde_json::to_vec(&claims)?)
        );
        let msg = self.dir.join(format!("msg-{}", rand_suffix()));
        fs::write(&msg, &input)?;
        let sig = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .arg(&msg)
            .output()?
            .stdout;
        let _ = fs::remove_file(&msg);
        Ok(format!("{input}.{}", b64(&der_to_raw(&sig)?)))
    }
}

fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Serve `GET /token?scope=…` on a thread: a token for alice's basic credentials, 401 otherwise.
fn serve_tokens(issuer: Arc<Issuer>, stop: Arc<AtomicBool>) -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    l.set_nonblocking(true)?;
    let want = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    );
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((sock, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = sock.set_nonblocking(false);
            let mut r = BufReader::new(&sock);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut authorized = false;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if h.to_ascii_lowercase().trim()
                    == format!("authorization: {want}").to_ascii_lowercase()
                {
                    authorized = true;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let scope: String = path
                .split(['?', '&'])
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|s| {
                    s.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                        .replace('+', " ")
                })
                .collect::<Vec<_>>()
                .join(" ");
            let mut w = &sock;
            match (authorized, issuer.token(&scope)) {
                (true, Ok(tok)) => {
                    let body =
                        serde_json::json!({"token": tok, "access_token": tok, "expires_in": 300})
                            .to_string();
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                _ => {
                    let _ = write!(
                        w,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    Ok(addr)
}

#[test]
fn token_auth_pull() -> Result<()> {
    if !can_run_auth() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let issuer = Arc::new(Issuer::new(tmp.path())?);
    let stop = Arc::new(AtomicBool::new(false));
    let token_addr = serve_tokens(issuer.clone(), stop.clone())?;
    let auth_yaml = format!(
        "  token:\n    realm: http://{token_addr}/token\n    service: berth-test\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
        tmp.path().join("cert.pem").display()
    );
    let reg = OwnRegistry::start(tmp.path(), &auth_yaml)?;
    let result = (|| -> Result<()> {
        push_busybox(tmp.path(), &reg.addr, "tokened/busybox")
            .context("push with skopeo through the token issuer")?;
        let r = format!("{}/tokened/busybox", reg.addr);
        let err = try_pull(tmp.path(), &r, None)?.expect_err("anonymous pull succeeded");
        assert!(
            err.contains("token server answered HTTP 401") && err.contains("berth login"),
            "{err}"
        );
        let auth = login_file(tmp.path(), &reg.addr)?;
        try_pull(tmp.path(), &r, Some(&auth))?.map_err(anyhow::Error::msg)?;
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    result
}
