//! Root integration test: the `berth-netdns` binary on a network's gateway answers
//! container names and aliases to containers, and relays other names upstream.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_net::AttachOptions;
use berth_net::NetworkCreate;
use common::{ContainerNs, TestStore, in_private_host, require_root};

/// Kills and reaps the responder even when the test fails.
struct Responder(Child);

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    for v in [id, 0x0100, 1, 0, 0, 0] {
        q.extend_from_slice(&v.to_be_bytes());
    }
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Asks `server` for the A records of `name`; retries while the responder starts.
fn resolve(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 512];
    for attempt in 0..20u16 {
        sock.send_to(&query(attempt, name), server)?;
        // Answers to earlier attempts may still arrive; only this attempt's counts.
        while let Ok(n) = sock.recv(&mut buf) {
            let answer = &buf[..n];
            if answer[0..2] != attempt.to_be_bytes() {
                continue;
            }
            let count = u16::from_be_bytes([answer[6], answer[7]]);
            // Each A record is 16 bytes and ends with the address.
            let records = &answer[n - usize::from(count) * 16..];
            return Ok(records
                .chunks(16)
                .map(|r| Ipv4Addr::new(r[12], r[13], r[14], r[15]))
                .collect());
        }
    }
    bail!("no answer for `{name}` from {server}")
}

/// A fake upstream resolver on loopback answering every query with 192.0.2.99.
fn fake_upstream() -> Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80;
            reply[7] = 1;
            reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 192, 0, 2, 99]);
            let _ = sock.send_to(&reply, from);
        }
    });
    Ok(addr)
}

#[test]
fn containers_resolve_each_other_by_name_and_alias() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let n = t.store.create_network(&NetworkCreate {
            name: "app".into(),
            subnet: Some("10.83.0.0/24".parse()?),
            ..NetworkCreate::default()
        })?;
        let (web, client) = (ContainerNs::new()?, ContainerNs::new()?);
        let opts = AttachOptions {
            name: Some("web".into()),
            aliases: vec!["frontend".into()],
            ..AttachOptions::default()
        };
        let web_ip = t
            .store
            .attach("app", "0123456789abcdef", web.fd.as_fd(), &opts)?
            .ip;
        t.store
            .attach("app", "cli", client.fd.as_fd(), &AttachOptions::default())?;

        let upstream = fake_upstream()?;
        let listen = SocketAddr::from((n.gateway, 53));
        let child = Command::new(env!("CARGO_BIN_EXE_berth-netdns"))
            .arg("--run-dir")
            .arg(t.dir.path().join("run"))
            .args(["--network", "app", "--listen", &listen.to_string()])
            .args(["--upstream", &upstream.to_string()])
            .spawn()
            .context("spawn berth-netdns")?;
        let _responder = Responder(child);

        let (by_name, by_alias, by_id, relayed, unknown_id) = client.run(|| -> Result<_> {
            Ok((
                resolve(listen, "web")?,
                resolve(listen, "FRONTEND")?,
                resolve(listen, "0123456789ab")?,
                resolve(listen, "example.test")?,
                resolve(listen, "cli")?,
            ))
        })?;
        assert_eq!(by_name, vec![web_ip]);
        assert_eq!(by_alias, vec![web_ip]);
        assert_eq!(by_id, vec![web_ip]);
        assert_eq!(relayed, vec![Ipv4Addr::new(192, 0, 2, 99)]);
        assert_eq!(unknown_id.len(), 1);

        // The resolved address is the container: a TCP connection by name works.
        let listener = web.run(|| TcpListener::bind("0.0.0.0:8080"))?;
        let target = SocketAddr::from((by_name[0], 8080));
        client.run(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)))?;
        drop(listener);

        // A container of another network reaches the address but is refused.
        t.store.create_network(&NetworkCreate {
            name: "other".into(),
            subnet: Some("10.84.9.0/24".parse()?),
            ..NetworkCreate::default()
        })?;
        let outsider = ContainerNs::new()?;
        t.store.attach(
            "other",
            "out",
            outsider.fd.as_fd(),
            &AttachOptions::default(),
        )?;
        let refused = outsider.run(|| resolve(listen, "web"))?;
        assert!(refused.is_empty(), "outsider resolved {refused:?}");

        // A detached container's name disappears.
        t.store.detach("app", "0123456789abcdef")?;
        let gone = client.run(|| resolve(listen, "web"))?;
        assert_eq!(
            gone,
            vec![Ipv4Addr::new(192, 0, 2, 99)],
            "name of detached container was relayed"
        );
        Ok(())
    });
}
