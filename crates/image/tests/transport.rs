//! Registry transport: 503s are retried with backoff, and blob redirects (as to a CDN) are
//! followed. Served by small fake registries on 127.0.0.1. Needs root (layers keep owners).

mod common;

use anyhow::Result;
use berth_image::{ClientOptions, Digest, PullOptions, Reference, RegistryClient, Store};
use common::{FakeRegistry, image_routes};

fn layer(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data)?;
    Ok(b.into_inner()?)
}

fn pull(addr: &str, name: &str, root: &std::path::Path) -> Result<berth_image::Image> {
    let store = Store::open(root)?;
    let r: Reference = format!("{addr}/{name}").parse()?;
    let c = RegistryClient::new(ClientOptions::default());
    Ok(berth_image::pull(
        &store,
        &c,
        &r,
        &PullOptions::default(),
        &berth_image::NoProgress,
    )?)
}

#[test]
fn retries_server_errors() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let l = layer("f", b"retried")?;
    let d = Digest::of(&l);
    let reg = FakeRegistry::start_flaky(image_routes("flaky/img", &[l], &[d], None), 0, 2)?;
    let tmp = tempfile::tempdir()?;
    let img = pull(&reg.addr, "flaky/img", tmp.path())?;
    assert_eq!(img.record.layers.len(), 1);
    // Ten failures outlast the four attempts at the config blob: a clear error.
    let l = layer("f", b"fails")?;
    let d = Digest::of(&l);
    let reg = FakeRegistry::start_flaky(image_routes("down/img", &[l], &[d], None), 0, 10)?;
    let err = format!(
        "{:#}",
        pull(&reg.addr, "down/img", &tmp.path().join("r2")).unwrap_err()
    );
    assert!(err.contains("HTTP 503"), "{err}");
    Ok(())
}

#[test]
fn follows_blob_redirects() -> Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let l = layer("f", b"from the cdn")?;
    let d = Digest::of(&l);
    let mut cdn_routes = common::Routes::new();
    cdn_routes.insert(
        "/cdn/blob".into(),
        ("application/octet-stream".into(), l.clone()),
    );
    let cdn = FakeRegistry::start(cdn_routes, 0)?;
    let mut routes = image_routes("redir/img", &[l], std::slice::from_ref(&d), None);
    routes.insert(
        format!("/v2/redir/img/blobs/{d}"),
        (
            "redirect".into(),
            format!("http://{}/cdn/blob", cdn.addr).into_bytes(),
        ),
    );
    let reg = FakeRegistry::start(routes, 0)?;
    let tmp = tempfile::tempdir()?;
    let img = pull(&reg.addr, "redir/img", tmp.path())?;
    let store = Store::open(tmp.path())?;
    let f = store.layer_diff(&img.record.layers[0].chain_id).join("f");
    assert_eq!(std::fs::read(f)?, b"from the cdn");
    Ok(())
}
