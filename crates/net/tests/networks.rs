//! Root integration tests of the network records: create, ls, inspect, rm, prune, the
//! default network and subnet collision checks, inside a throwaway host namespace.

mod common;

use std::os::fd::AsFd;

use berth_net::{AttachOptions, IpamError, NetError, NetworkCreate};
use common::{
    ContainerNs, TestStore, in_private_host, links_with_prefix, nft_table, ns_path_of_thread,
    require_root, run_in_ns,
};

#[test]
fn create_list_inspect_remove_prune() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let a = t.store.create_network(&NetworkCreate {
            name: "a".into(),
            ..Default::default()
        })?;
        let b = t.store.create_network(&NetworkCreate {
            name: "b".into(),
            internal: true,
            gateway: Some("10.90.0.254".parse()?),
            subnet: Some("10.90.0.0/24".parse()?),
            ..Default::default()
        })?;
        assert!(a.dns && !a.internal && a.bridge.starts_with("btbr"));
        assert_eq!(b.gateway.to_string(), "10.90.0.254");
        assert!(!a.subnet.overlaps(&b.subnet));
        let dup = t.store.create_network(&NetworkCreate {
            name: "a".into(),
            ..Default::default()
        });
        assert!(matches!(dup, Err(NetError::Exists(_))));

        let names: Vec<_> = t.store.list()?.into_iter().map(|n| n.name).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(links_with_prefix("btbr")?.len(), 2);
        let addrs = run_in_ns(
            &ns_path_of_thread(),
            &["ip", "-o", "addr", "show", &b.bridge],
        )?;
        assert!(addrs.contains("inet 10.90.0.254/24"), "{addrs}");
        // A fixed bridge MAC (from the gateway) keeps containers' ARP entries valid.
        let link = run_in_ns(
            &ns_path_of_thread(),
            &["ip", "-o", "link", "show", &b.bridge],
        )?;
        assert!(link.contains("link/ether 02:42:0a:5a:00:fe"), "{link}");
        assert!(nft_table("berth_test")?.contains(&format!("oifname \"{}\"", b.bridge)));

        let c = ContainerNs::new()?;
        t.store
            .attach("a", "c1", c.fd.as_fd(), &AttachOptions::default())?;
        assert_eq!(t.store.inspect("a")?.attachments.len(), 1);
        assert!(matches!(
            t.store.remove("a"),
            Err(NetError::InUse { count: 1, .. })
        ));
        assert_eq!(t.store.prune()?, vec!["b".to_owned()]);
        assert_eq!(links_with_prefix("btbr")?, vec![a.bridge.clone()]);
        t.store.detach("a", "c1")?;
        t.store.remove("a")?;
        assert!(matches!(t.store.inspect("a"), Err(NetError::NotFound(_))));
        assert!(links_with_prefix("btbr")?.is_empty());
        assert!(t.store.list()?.is_empty());
        Ok(())
    });
}

#[test]
fn subnets_colliding_with_networks_or_host_routes_are_refused() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let host = ns_path_of_thread();
        // Host interfaces (portless bridges) with 172.17.0.0/16 and 10.99.0.0/24 routes.
        for (dev, addr) in [("btdum0", "172.17.0.5/16"), ("btdum1", "10.99.0.1/24")] {
            run_in_ns(&host, &["ip", "link", "add", dev, "type", "bridge"])?;
            run_in_ns(&host, &["ip", "addr", "add", addr, "dev", dev])?;
            run_in_ns(&host, &["ip", "link", "set", dev, "up"])?;
        }
        let clash = t.store.create_network(&NetworkCreate {
            name: "x".into(),
            subnet: Some("10.99.0.0/16".parse()?),
            ..Default::default()
        });
        assert!(
            matches!(clash, Err(NetError::Ipam(IpamError::Overlap { .. }))),
            "{clash:?}"
        );

        let default = t.store.ensure_default_network()?;
        assert_eq!(default.subnet.to_string(), "172.18.0.0/16");
        assert!(!default.dns);
        assert_eq!(t.store.ensure_default_network()?, default);
        assert!(matches!(
            t.store.remove("bridge"),
            Err(NetError::Predefined(_))
        ));

        let inner = t.store.create_network(&NetworkCreate {
            name: "y".into(),
            subnet: Some("172.18.5.0/24".parse()?),
            ..Default::default()
        });
        assert!(matches!(
            inner,
            Err(NetError::Ipam(IpamError::Overlap { .. }))
        ));
        let bad_gw = t.store.create_network(&NetworkCreate {
            name: "z".into(),
            subnet: Some("10.98.0.0/24".parse()?),
            gateway: Some("10.97.0.1".parse()?),
            ..Default::default()
        });
        assert!(matches!(bad_gw, Err(NetError::Gateway { .. })));
        assert!(matches!(
            t.store.inspect("../etc"),
            Err(NetError::InvalidName(_))
        ));
        Ok(())
    });
}

#[test]
fn recover_and_ensure_recreate_bridges_lost_in_a_reboot() {
    if !require_root() {
        return;
    }
    in_private_host(|| {
        let t = TestStore::new()?;
        let host = ns_path_of_thread();
        let n = t.store.create_network(&NetworkCreate {
            name: "boot".into(),
            subnet: Some("10.91.0.0/24".parse()?),
            ..Default::default()
        })?;
        run_in_ns(&host, &["ip", "link", "del", &n.bridge])?;
        assert!(links_with_prefix("btbr")?.is_empty());
        t.store.recover(&|_| true)?;
        let addrs = run_in_ns(&host, &["ip", "-o", "addr", "show", &n.bridge])?;
        assert!(addrs.contains("inet 10.91.0.1/24"), "{addrs}");
        run_in_ns(&host, &["ip", "link", "del", &n.bridge])?;
        assert_eq!(t.store.ensure_network("boot")?, n);
        assert_eq!(links_with_prefix("btbr")?, vec![n.bridge.clone()]);
        Ok(())
    });
}
