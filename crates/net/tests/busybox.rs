//! Root integration test with real tools, as the acceptance tests use them:
//! `busybox httpd` in one container, published on 127.0.0.1; `ping`, `nslookup` (against
//! the network's responder, run in-process) and `wget` from another container.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_net::dns::{DnsConfig, DnsServer};
use berth_net::{AttachOptions, NetworkCreate, PortMapping, Protocol};
use common::{ContainerNs, TestStore, in_private_host, ns_path_of_thread, require_root, run_in_ns};

/// Kills and reaps a helper process even when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops the in-process responder thread when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `args` in `ns` until it succeeds (the server may still be starting).
fn retry_in_ns(ns: &str, args: &[&str]) -> Result<String> {
    let mut last = None;
    for _ in 0..50 {
        match run_in_ns(ns, args) {
            Ok(out) => return Ok(out),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{args:?} never succeeded: {last:?}")
}

/// `busybox httpd` serving `docroot` on port 80 inside `ns`.
fn start_httpd(ns: &ContainerNs, docroot: &std::path::Path) -> Result<Reaped> {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(docroot)
        .spawn()
        .context("spawn busybox httpd")?;
    Ok(Reaped(child))
}

/// The library's responder on a thread of the calling thread's namespace.
fn start_responder(
    config: &DnsConfig,
) -> Result<(
    StopOnDrop,
    std::thread::JoinHandle<Result<(), berth_net::dns::DnsError>>,
)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut server = DnsServer::bind(config)?;
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || server.serve(&flag));
    Ok((StopOnDrop(stop), handle))
}

#[test]
fn busybox_httpd_ping_nslookup_and_wget_across_containers() {
    if !require_root() {
        return;
    }
    if Command::new("busybox").arg("true").status().is_err() {
        assert!(std::env::var("CI").is_err(), "busybox missing under CI");
        eprintln!("SKIP: busybox not installed");
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let n = t.store.create_network(&NetworkCreate {
            name: "site".into(),
            subnet: Some("10.89.0.0/24".parse()?),
            ..NetworkCreate::default()
        })?;
        let (web, client) = (ContainerNs::new()?, ContainerNs::new()?);
        let port = PortMapping {
            host_ip: Some(std::net::Ipv4Addr::LOCALHOST),
            host_port: 18088,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let web_opts = AttachOptions {
            name: Some("web".into()),
            ports: vec![port],
            ..AttachOptions::default()
        };
        let web_ip = t
            .store
            .attach("site", "web1", web.fd.as_fd(), &web_opts)?
            .ip
            .to_string();
        t.store.attach(
            "site",
            "client1",
            client.fd.as_fd(),
            &AttachOptions::default(),
        )?;

        let docroot = tempfile::tempdir()?;
        std::fs::write(docroot.path().join("index.html"), "hello from web\n")?;
        let _httpd = start_httpd(&web, docroot.path())?;
        let config = DnsConfig {
            listen: SocketAddr::from((n.gateway, 53)),
            run_dir: t.dir.path().join("run"),
            network: "site".into(),
            upstreams: vec![],
        };
        let (stop, responder) = start_responder(&config)?;

        // The host fetches the page through the published port on loopback.
        let host = ns_path_of_thread();
        let page = retry_in_ns(
            &host,
            &[
                "busybox",
                "wget",
                "-qO-",
                "http://127.0.0.1:18088/index.html",
            ],
        )?;
        assert_eq!(page, "hello from web\n");

        // The other container pings it, resolves its name, fetches the page.
        let c = client.path();
        run_in_ns(&c, &["busybox", "ping", "-c1", "-W2", &web_ip])?;
        let gw = n.gateway.to_string();
        let answer = run_in_ns(&c, &["busybox", "nslookup", "web", &gw])?;
        assert!(answer.contains(&web_ip), "{answer}");
        let url = format!("http://{web_ip}/index.html");
        assert_eq!(
            run_in_ns(&c, &["busybox", "wget", "-qO-", &url])?,
            "hello from web\n"
        );

        drop(stop);
        responder.join().expect("responder thread")?;
        Ok(())
    });
}
