//! Root integration tests: attach/detach containers the way the engine will, inside a
//! throwaway host namespace per test.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use berth_net::{AttachOptions, NetError, NetworkCreate, PortMapping, Protocol};
use common::{
    ContainerNs, TestStore, in_private_host, links_with_prefix, nft_table, require_root, run_in_ns,
};

fn net(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        ..NetworkCreate::default()
    }
}

/// Serves one TCP connection inside `ns` on `port`, answering "pong" to "ping".
fn serve_tcp_once(ns: &ContainerNs, port: u16) -> TcpListener {
    ns.run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind in container"))
}

fn answer_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"ping" {
                let _ = s.write_all(b"pong");
            }
        }
    })
}

fn ping_tcp(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf)?;
    ensure!(&buf == b"pong", "unexpected answer {buf:?}");
    Ok(())
}

#[test]
fn attach_configures_namespace_and_detach_removes_everything() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let n = t.store.create_network(&net("front", "10.77.0.0/24"))?;
        let c = ContainerNs::new()?;
        let opts = AttachOptions {
            name: Some("web".into()),
            ..AttachOptions::default()
        };
        let a = t.store.attach("front", "c1", c.fd.as_fd(), &opts)?;
        assert_eq!(a.ip, "10.77.0.2".parse::<Ipv4Addr>()?);
        assert_eq!(a.ifname, "eth0");
        assert_eq!(links_with_prefix("btv")?, vec![a.host_veth.clone()]);

        let inside = run_in_ns(&c.path(), &["ip", "-o", "addr", "show"])?;
        assert!(inside.contains("inet 10.77.0.2/24"), "{inside}");
        let links = run_in_ns(&c.path(), &["ip", "-o", "link", "show"])?;
        assert!(links.contains("lo: <LOOPBACK,UP"), "{links}");
        assert!(links.contains("02:42:0a:4d:00:02"), "{links}");
        let routes = run_in_ns(&c.path(), &["ip", "route"])?;
        assert!(
            routes.contains("default via 10.77.0.1 dev eth0"),
            "{routes}"
        );

        // The host reaches the container over the bridge.
        let l = serve_tcp_once(&c, 7001);
        let server = answer_once(l);
        ping_tcp(SocketAddr::from((a.ip, 7001)))?;
        server.join().unwrap();

        t.store.detach("front", "c1")?;
        t.store.detach("front", "c1")?;
        assert!(links_with_prefix("btv")?.is_empty());
        assert!(t.store.inspect("front")?.attachments.is_empty());
        assert!(t.store.attachments_of("c1")?.is_empty());
        let table = nft_table("berth_test")?;
        assert!(
            table.contains(&n.bridge) && !table.contains("dnat to"),
            "{table}"
        );
        Ok(())
    });
}

#[test]
fn networks_are_isolated_from_each_other() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("a", "10.78.1.0/24"))?;
        t.store.create_network(&net("b", "10.78.2.0/24"))?;
        let (a1, a2, b1) = (
            ContainerNs::new()?,
            ContainerNs::new()?,
            ContainerNs::new()?,
        );
        let none = AttachOptions::default();
        let ip_a1 = t.store.attach("a", "a1", a1.fd.as_fd(), &none)?.ip;
        t.store.attach("a", "a2", a2.fd.as_fd(), &none)?;
        t.store.attach("b", "b1", b1.fd.as_fd(), &none)?;

        // Same network: reachable.
        let server = answer_once(serve_tcp_once(&a1, 7002));
        a2.run(|| ping_tcp(SocketAddr::from((ip_a1, 7002))))?;
        server.join().unwrap();

        // Other network: dropped in berth's forward chain.
        let _listener = serve_tcp_once(&a1, 7003);
        let target = SocketAddr::from((ip_a1, 7003));
        let from_a2 = a2.run(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)));
        assert!(from_a2.is_ok(), "control: a2 cannot connect to a1");
        let from_b1 = b1.run(|| TcpStream::connect_timeout(&target, Duration::from_secs(1)));
        assert!(from_b1.is_err(), "network b reached network a");
        let table = nft_table("berth_test")?;
        assert!(table.contains("drop"), "{table}");
        Ok(())
    });
}

#[test]
fn published_ports_answer_on_loopback_tcp_and_udp() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("pub", "10.79.0.0/24"))?;
        let c = ContainerNs::new()?;
        let lo = Some(Ipv4Addr::LOCALHOST);
        let ports = vec![
            PortMapping {
                host_ip: lo,
                host_port: 18080,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: None,
                host_port: 18081,
                container_port: 81,
                protocol: Protocol::Udp,
            },
        ];
        let opts = AttachOptions {
            ports,
            ..AttachOptions::default()
        };
        t.store.attach("pub", "c1", c.fd.as_fd(), &opts)?;
        let table = nft_table("berth_test")?;
        assert!(table.contains("dnat to 10.79.0.2:80"), "{table}");

        let server = answer_once(serve_tcp_once(&c, 80));
        ping_tcp("127.0.0.1:18080".parse()?)?;
        server.join().unwrap();

        let udp = c.run(|| UdpSocket::bind("0.0.0.0:81").expect("bind udp in container"));
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.send_to(b"hello", "127.0.0.1:18081")?;
        let mut buf = [0u8; 16];
        let (n, _) = client.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"hello");
        echo.join().unwrap();

        t.store.detach("pub", "c1")?;
        let table = nft_table("berth_test")?;
        assert!(!table.contains("dnat to"), "{table}");
        Ok(())
    });
}

#[test]
fn fifty_concurrent_attaches_get_distinct_addresses_and_leave_nothing() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = Arc::new(TestStore::new()?);
        t.store.create_network(&net("many", "10.80.0.0/24"))?;
        let workers: Vec<_> = (0..50)
            .map(|i| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || -> Result<(ContainerNs, Ipv4Addr)> {
                    let c = ContainerNs::new()?;
                    let port = PortMapping {
                        host_ip: None,
                        host_port: 20000 + i,
                        container_port: 80,
                        protocol: Protocol::Tcp,
                    };
                    let opts = AttachOptions {
                        ports: vec![port],
                        ..AttachOptions::default()
                    };
                    let a = t
                        .store
                        .attach("many", &format!("c{i}"), c.fd.as_fd(), &opts)?;
                    Ok((c, a.ip))
                })
            })
            .collect();
        let mut held = Vec::new();
        let mut ips = HashSet::new();
        for w in workers {
            let (c, ip) = w.join().expect("attach thread panicked")?;
            ips.insert(ip);
            held.push(c);
        }
        assert_eq!(ips.len(), 50);
        assert_eq!(links_with_prefix("btv")?.len(), 50);
        assert_eq!(nft_table("berth_test")?.matches("dnat to").count(), 50);

        let removers: Vec<_> = (0..50)
            .map(|i| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || t.store.detach("many", &format!("c{i}")))
            })
            .collect();
        for r in removers {
            r.join().expect("detach thread panicked")?;
        }
        assert!(links_with_prefix("btv")?.is_empty());
        assert!(t.store.inspect("many")?.attachments.is_empty());
        assert!(!nft_table("berth_test")?.contains("dnat to"));
        Ok(())
    });
}

#[test]
fn recover_releases_leases_of_dead_containers() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("rec", "10.81.0.0/24"))?;
        let (c1, c2) = (ContainerNs::new()?, ContainerNs::new()?);
        let none = AttachOptions::default();
        t.store.attach("rec", "dead", c1.fd.as_fd(), &none)?;
        let live = t.store.attach("rec", "live", c2.fd.as_fd(), &none)?;
        // The dead container's namespace goes away with its veth, as after a crash.
        drop(c1);
        let cleaned = t.store.recover(&|id| id == "live")?;
        assert_eq!(cleaned, vec!["dead".to_owned()]);
        let left = t.store.inspect("rec")?.attachments;
        assert_eq!(left, vec![live.clone()]);
        assert_eq!(links_with_prefix("btv")?, vec![live.host_veth]);
        // Detach after the namespace is gone is fine too.
        drop(c2);
        t.store.detach("rec", "live")?;
        assert!(links_with_prefix("btv")?.is_empty());
        Ok(())
    });
}

#[test]
fn failed_attach_rolls_back() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("rb", "10.82.0.0/24"))?;
        let c = ContainerNs::new()?;
        // `lo` exists in the namespace, so creating the peer under that name fails.
        let opts = AttachOptions {
            ifname: Some("lo".into()),
            ..AttachOptions::default()
        };
        let err = t.store.attach("rb", "c1", c.fd.as_fd(), &opts).unwrap_err();
        assert!(matches!(err, NetError::Netlink(_)), "{err}");
        assert!(links_with_prefix("btv")?.is_empty());
        assert!(t.store.inspect("rb")?.attachments.is_empty());
        // The address is free again.
        let a = t
            .store
            .attach("rb", "c1", c.fd.as_fd(), &AttachOptions::default())?;
        assert_eq!(a.ip, "10.82.0.2".parse::<Ipv4Addr>()?);
        let again = t
            .store
            .attach("rb", "c1", c.fd.as_fd(), &AttachOptions::default());
        assert!(matches!(again, Err(NetError::AlreadyAttached { .. })));
        Ok(())
    });
}

#[test]
fn release_leaves_the_veth_to_the_kernel_once_the_netns_is_gone() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("rel", "10.87.0.0/24"))?;
        let c = ContainerNs::new()?;
        let opts = AttachOptions::default();
        let a = t.store.attach("rel", "c1", c.fd.as_fd(), &opts)?;
        drop(c);
        t.store.release_all("c1")?;
        assert!(t.store.attachments_of("c1")?.is_empty());
        // The kernel removes the pair while destroying the namespace, asynchronously.
        let mut left = links_with_prefix("btv")?;
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = links_with_prefix("btv")?;
        }
        assert!(
            left.is_empty(),
            "veth {} outlived its namespace",
            a.host_veth
        );
        // The address is free for the next container.
        let c2 = ContainerNs::new()?;
        assert_eq!(t.store.attach("rel", "c2", c2.fd.as_fd(), &opts)?.ip, a.ip);

        // Misuse: released while its namespace lives on. Re-attaching replaces the
        // leftover host veth instead of failing on its name.
        t.store.release("rel", "c2")?;
        let b = t.store.attach(
            "rel",
            "c2",
            c2.fd.as_fd(),
            &AttachOptions {
                ifname: Some("eth1".into()),
                ..opts
            },
        )?;
        assert_eq!(links_with_prefix("btv")?, vec![b.host_veth]);
        Ok(())
    });
}

#[test]
fn same_host_port_cannot_be_published_twice() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("dup", "10.88.0.0/24"))?;
        let c1 = ContainerNs::new()?;
        let first = PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 18080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let opts1 = AttachOptions {
            ports: vec![first],
            ..AttachOptions::default()
        };
        t.store.attach("dup", "c1", c1.fd.as_fd(), &opts1)?;
        // Another address still collides when one side is unspecified.
        let c2 = ContainerNs::new()?;
        let clash = PortMapping {
            host_ip: None,
            ..first
        };
        let opts2 = AttachOptions {
            ports: vec![clash],
            ..AttachOptions::default()
        };
        let err = t
            .store
            .attach("dup", "c2", c2.fd.as_fd(), &opts2)
            .unwrap_err();
        assert!(
            matches!(err, NetError::PortInUse { port: 18080, .. }),
            "{err}"
        );
        assert!(t.store.attachments_of("c2")?.is_empty());
        // The same number over UDP is another port.
        let udp = PortMapping {
            protocol: Protocol::Udp,
            ..clash
        };
        let opts3 = AttachOptions {
            ports: vec![udp],
            ..AttachOptions::default()
        };
        t.store.attach("dup", "c2", c2.fd.as_fd(), &opts3)?;
        assert_eq!(nft_table("berth_test")?.matches("dnat to").count(), 2);
        Ok(())
    });
}

#[test]
fn network_none_gets_only_loopback_up() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let c = ContainerNs::new()?;
        let before = run_in_ns(&c.path(), &["ip", "-o", "link", "show"])?;
        assert!(!before.contains("LOOPBACK,UP"), "{before}");
        berth_net::set_loopback_up(c.fd.as_fd())?;
        let after = run_in_ns(&c.path(), &["ip", "-o", "link", "show"])?;
        assert!(after.contains("lo: <LOOPBACK,UP"), "{after}");
        assert_eq!(after.lines().count(), 1, "{after}");
        let l = c.run(|| TcpListener::bind("127.0.0.1:7010"))?;
        let server = answer_once(l);
        c.run(|| ping_tcp("127.0.0.1:7010".parse().unwrap()))?;
        server.join().unwrap();
        Ok(())
    });
}

#[test]
fn a_container_on_two_networks_gets_eth0_and_eth1() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        t.store.create_network(&net("one", "10.92.1.0/24"))?;
        t.store.create_network(&net("two", "10.92.2.0/24"))?;
        let c = ContainerNs::new()?;
        let none = AttachOptions::default();
        let a1 = t.store.attach("one", "c1", c.fd.as_fd(), &none)?;
        let a2 = t.store.attach("two", "c1", c.fd.as_fd(), &none)?;
        assert_eq!((a1.ifname.as_str(), a2.ifname.as_str()), ("eth0", "eth1"));
        let routes = run_in_ns(&c.path(), &["ip", "route"])?;
        assert!(
            routes.contains("default via 10.92.1.1 dev eth0"),
            "{routes}"
        );
        assert!(routes.contains("10.92.2.0/24 dev eth1"), "{routes}");
        assert_eq!(t.store.attachments_of("c1")?.len(), 2);

        // Disconnecting one network leaves the other in place.
        t.store.detach("one", "c1")?;
        let links = run_in_ns(&c.path(), &["ip", "-o", "link", "show"])?;
        assert!(!links.contains("eth0") && links.contains("eth1"), "{links}");
        assert_eq!(t.store.attachments_of("c1")?, vec![a2]);
        t.store.detach_all("c1")?;
        assert!(links_with_prefix("btv")?.is_empty());
        Ok(())
    });
}
