//! Root integration tests with a second "remote host": a namespace joined to the private
//! host namespace by a veth pair. Checks publishing to other hosts, outbound masquerade
//! and internal networks. All traffic stays inside namespaces the test made.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Result;
use berth_net::{AttachOptions, NetworkCreate, PortMapping, Protocol};
use common::{ContainerNs, TestStore, in_private_host, ns_path_of_thread, require_root, run_in_ns};

/// Creates the remote namespace, wired as 10.200.0.2 to the host's 10.200.0.1, which is
/// also its default gateway.
fn remote_host() -> Result<ContainerNs> {
    let remote = ContainerNs::new()?;
    let host = ns_path_of_thread();
    let tid = nix::unistd::gettid().to_string();
    let r = remote.path();
    run_in_ns(
        &r,
        &[
            "ip", "link", "add", "btrr0", "type", "veth", "peer", "name", "btrh0", "netns", &tid,
        ],
    )?;
    run_in_ns(&r, &["ip", "addr", "add", "10.200.0.2/24", "dev", "btrr0"])?;
    run_in_ns(&r, &["ip", "link", "set", "btrr0", "up"])?;
    run_in_ns(&r, &["ip", "link", "set", "lo", "up"])?;
    // A way back to every container subnet, so only berth's rules can stop traffic.
    run_in_ns(&r, &["ip", "route", "add", "default", "via", "10.200.0.1"])?;
    run_in_ns(
        &host,
        &["ip", "addr", "add", "10.200.0.1/24", "dev", "btrh0"],
    )?;
    run_in_ns(&host, &["ip", "link", "set", "btrh0", "up"])?;
    Ok(remote)
}

fn net(name: &str, subnet: &str, internal: bool) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        internal,
        ..NetworkCreate::default()
    }
}

#[test]
fn published_port_reachable_from_another_host_and_outbound_is_masqueraded() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let remote = remote_host()?;
        t.store.create_network(&net("ext", "10.84.0.0/24", false))?;
        let c = ContainerNs::new()?;
        let port = PortMapping {
            host_ip: None,
            host_port: 18090,
            container_port: 90,
            protocol: Protocol::Tcp,
        };
        let opts = AttachOptions {
            ports: vec![port],
            ..AttachOptions::default()
        };
        t.store.attach("ext", "c1", c.fd.as_fd(), &opts)?;

        // Inbound: remote -> host:18090 -> container:90.
        let listener = c.run(|| TcpListener::bind("0.0.0.0:90"))?;
        let server = std::thread::spawn(move || -> Result<SocketAddr> {
            let (mut s, peer) = listener.accept()?;
            s.write_all(b"hi")?;
            Ok(peer)
        });
        let target: SocketAddr = "10.200.0.1:18090".parse()?;
        let got = remote.run(|| -> Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = vec![0u8; 2];
            s.read_exact(&mut buf)?;
            Ok(buf)
        })?;
        assert_eq!(got, b"hi");
        let peer = server.join().expect("server thread")?;
        assert_eq!(peer.ip().to_string(), "10.200.0.2");

        // Hairpin: another container on the network uses the host's address.
        let c2 = ContainerNs::new()?;
        let c2_ip = t
            .store
            .attach("ext", "c2", c2.fd.as_fd(), &AttachOptions::default())?
            .ip;
        let listener = c.run(|| TcpListener::bind("0.0.0.0:90"))?;
        let server = std::thread::spawn(move || -> Result<SocketAddr> {
            let (mut s, peer) = listener.accept()?;
            s.write_all(b"hi")?;
            Ok(peer)
        });
        let got = c2.run(|| -> Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = vec![0u8; 2];
            s.read_exact(&mut buf)?;
            Ok(buf)
        })?;
        assert_eq!(got, b"hi");
        let peer = server.join().expect("server thread")?;
        assert_ne!(
            peer.ip(),
            std::net::IpAddr::V4(c2_ip),
            "hairpin not masqueraded"
        );

        // Outbound: container -> remote, seen with the host's address.
        let outside = remote.run(|| TcpListener::bind("10.200.0.2:91"))?;
        let dst: SocketAddr = "10.200.0.2:91".parse()?;
        c.run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(2)))?;
        let (_, seen) = outside.accept()?;
        assert_eq!(
            seen.ip().to_string(),
            "10.200.0.1",
            "source not masqueraded"
        );
        Ok(())
    });
}

#[test]
fn internal_network_reaches_nothing_outside() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let remote = remote_host()?;
        t.store.create_network(&net("int", "10.85.0.0/24", true))?;
        // A normal network beside it turns forwarding on, so only the rules can block.
        t.store
            .create_network(&net("normal", "10.86.0.0/24", false))?;
        let forwarding = run_in_ns(
            &ns_path_of_thread(),
            &["cat", "/proc/sys/net/ipv4/ip_forward"],
        )?;
        assert_eq!(forwarding.trim(), "1");
        let (c1, c2) = (ContainerNs::new()?, ContainerNs::new()?);
        let none = AttachOptions::default();
        let ip1 = t.store.attach("int", "c1", c1.fd.as_fd(), &none)?.ip;
        t.store.attach("int", "c2", c2.fd.as_fd(), &none)?;
        let routes = run_in_ns(&c2.path(), &["ip", "route"])?;
        assert!(!routes.contains("default"), "{routes}");

        // Inside the network: reachable.
        let _l = c1.run(|| TcpListener::bind("0.0.0.0:92"))?;
        let peer = SocketAddr::from((ip1, 92));
        c2.run(|| TcpStream::connect_timeout(&peer, Duration::from_secs(2)))?;

        // Outside, even with a route added by hand: dropped by the forward chain.
        run_in_ns(
            &c2.path(),
            &["ip", "route", "add", "default", "via", "10.85.0.1"],
        )?;
        let _outside = remote.run(|| TcpListener::bind("10.200.0.2:93"))?;
        let dst: SocketAddr = "10.200.0.2:93".parse()?;
        let out = c2.run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(1)));
        assert!(out.is_err(), "internal network reached the remote host");
        Ok(())
    });
}
