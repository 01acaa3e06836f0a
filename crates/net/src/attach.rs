//! Attaching a container's network namespace to a network, detaching it, and cleaning up
//! after containers that died without detaching.
//!
//! Attach writes the lease first and the kernel objects second, so a crash at any point
//! leaves a lease that `recover` finds and removes together with its veth.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use crate::firewall::SyncMode;
use crate::ipam;
use crate::kernel;
use crate::netns;
use crate::record::{self, Attachment, Durability, Network, PortMapping};
use crate::rtnl::{Rtnl, VethSpec};
use crate::store::{NetError, NetStore, validate_name, with_cleanup};

/// Per-attachment choices (`--ip`, `--network-alias`, `-p`, the container's name).
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// A fixed address (`--ip`); the lowest free one when `None`.
    pub ip: Option<Ipv4Addr>,
    /// The container's name, resolvable on user-defined networks.
    pub name: Option<String>,
    /// Further names on this network (`--network-alias`).
    pub aliases: Vec<String>,
    /// Ports to publish (`-p`).
    pub ports: Vec<PortMapping>,
    /// The interface name inside the container; the first free `ethN` when `None`.
    pub ifname: Option<String>,
}

/// What to do with a veth pair when its attachment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkTeardown {
    /// Delete it now.
    Delete,
    /// The namespace is gone or going; the kernel deletes the pair with it.
    LeaveToKernel,
}

impl NetStore {
    /// Connects the network namespace `netns` of container `container_id` to `network`:
    /// leases an address, creates a veth pair (host end on the bridge, peer inside the
    /// namespace with address, `lo` up and a default route), then publishes its ports.
    /// On failure everything done so far is undone.
    pub fn attach(
        &self,
        network: &str,
        container_id: &str,
        netns: BorrowedFd<'_>,
        opts: &AttachOptions,
    ) -> Result<Attachment, NetError> {
        validate_name(network)?;
        validate_name(container_id)?;
        let _lock = self.lock()?;
        let net = self.network(network)?;
        let lease = self.layout.endpoint_file(network, container_id);
        if lease.exists() {
            return Err(NetError::AlreadyAttached {
                network: network.to_owned(),
                container_id: container_id.to_owned(),
            });
        }
        self.check_ports(container_id, &opts.ports)?;
        let ip = ipam::allocate(
            &net.subnet,
            net.gateway,
            &self.used_addresses(&net)?,
            opts.ip,
        )?;
        let ifname = match &opts.ifname {
            Some(n) => n.clone(),
            None => self.kernel.free_ifname(netns)?,
        };
        let attachment = Attachment {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            name: opts.name.clone(),
            aliases: opts.aliases.clone(),
            ip,
            prefix: net.subnet.prefix(),
            gateway: net.gateway,
            mac: ipam::format_mac(&ipam::mac_for(ip)),
            host_veth: ipam::ifname(
                &self.config.veth_prefix,
                ipam::fnv1a(&[&net.id, container_id]),
            ),
            ifname,
            ports: opts.ports.clone(),
        };
        // The lease goes to disk before any kernel object exists, so a crash leaves
        // something `recover` can find.
        record::write_json(&lease, &attachment, Durability::Atomic)?;
        match self.plumb(&net, &attachment, netns) {
            Ok(()) => Ok(attachment),
            Err(failure) => Err(with_cleanup(
                failure,
                self.unplumb(&attachment, LinkTeardown::Delete),
            )),
        }
    }

    /// The kernel half of attach: bridge, veth pair, in-namespace setup, firewall.
    fn plumb(&self, net: &Network, a: &Attachment, netns: BorrowedFd<'_>) -> Result<(), NetError> {
        let bridge = self.ensure_bridge(net)?;
        let spec = VethSpec {
            host_name: &a.host_veth,
            master: bridge,
            peer_name: &a.ifname,
            peer_netns: netns,
            peer_mac: ipam::mac_for(a.ip),
        };
        self.kernel.create_veth(&spec)?;
        self.kernel.configure_inside(netns, a, net.internal)?;
        self.sync_firewall(SyncMode::IfChanged)
    }

    /// Removes the host veth (its peer goes with it) when `link` says so, the lease, then
    /// the rules.
    fn unplumb(&self, a: &Attachment, link: LinkTeardown) -> Result<(), NetError> {
        let veth = match link {
            LinkTeardown::Delete => self.kernel.delete_link(&a.host_veth),
            LinkTeardown::LeaveToKernel => Ok(()),
        };
        record::remove_file(&self.layout.endpoint_file(&a.network, &a.container_id))?;
        let firewall = self.sync_firewall(SyncMode::IfChanged);
        veth?;
        firewall
    }

    fn teardown(
        &self,
        network: &str,
        container_id: &str,
        link: LinkTeardown,
    ) -> Result<(), NetError> {
        validate_name(network)?;
        validate_name(container_id)?;
        let _lock = self.lock()?;
        let lease = self.layout.endpoint_file(network, container_id);
        match record::read_json::<Attachment>(&lease)? {
            Some(a) => self.unplumb(&a, link),
            None => Ok(()),
        }
    }

    /// Disconnects `container_id` from `network` (`network disconnect`, `rm` of a
    /// container whose namespace may live on): deletes the veth pair, the lease and the
    /// rules. Idempotent; works when the namespace is already gone. Deleting a veth waits
    /// for RCU grace periods in the kernel (about 20-30 ms here).
    pub fn detach(&self, network: &str, container_id: &str) -> Result<(), NetError> {
        self.teardown(network, container_id, LinkTeardown::Delete)
    }

    /// The fast path of `rm` and `run --rm`: releases the lease and the rules but leaves
    /// the veth pair to the kernel, which deletes it when the namespace is destroyed.
    /// Only for a container whose network namespace is gone or going: its processes
    /// have exited and nothing else holds it (no bind mount, no `--network container:`
    /// user). Otherwise the released address would still be configured in it.
    pub fn release(&self, network: &str, container_id: &str) -> Result<(), NetError> {
        self.teardown(network, container_id, LinkTeardown::LeaveToKernel)
    }

    /// Every attachment of `container_id`, across networks.
    pub fn attachments_of(&self, container_id: &str) -> Result<Vec<Attachment>, NetError> {
        validate_name(container_id)?;
        let mut out = Vec::new();
        for n in self.list()? {
            let lease = self.layout.endpoint_file(&n.name, container_id);
            if let Some(a) = record::read_json(&lease)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Detaches `container_id` from every network it is on; keeps going past errors and
    /// returns the first.
    pub fn detach_all(&self, container_id: &str) -> Result<(), NetError> {
        self.teardown_all(container_id, LinkTeardown::Delete)
    }

    /// [`NetStore::release`] for every network `container_id` is on.
    pub fn release_all(&self, container_id: &str) -> Result<(), NetError> {
        self.teardown_all(container_id, LinkTeardown::LeaveToKernel)
    }

    fn teardown_all(&self, container_id: &str, link: LinkTeardown) -> Result<(), NetError> {
        let mut first = None;
        for a in self.attachments_of(container_id)? {
            if let Err(e) = self.teardown(&a.network, container_id, link) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Crash cleanup: detaches every container for which `alive` says false, re-creates
    /// missing bridges and rewrites the firewall table. Returns the ids cleaned up.
    pub fn recover(&self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>, NetError> {
        let _lock = self.lock()?;
        let mut cleaned = Vec::new();
        let mut first = None;
        for net in self.list()? {
            let all: Vec<Attachment> = record::read_all(&self.layout.endpoints_dir(&net.name))?;
            for a in all.into_iter().filter(|a| !alive(&a.container_id)) {
                match self.unplumb(&a, LinkTeardown::Delete) {
                    Ok(()) => cleaned.push(a.container_id),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            // After a reboot the records remain but the bridges are gone; the DNS
            // responder needs its gateway address back before it can bind.
            if let Err(e) = self.ensure_bridge(&net) {
                first.get_or_insert(e);
            }
        }
        let synced = self.sync_firewall(SyncMode::Always);
        match first {
            Some(e) => Err(e),
            None => synced.map(|()| cleaned),
        }
    }
}

/// Brings `lo` up inside the network namespace `netns` (`--network none`, where no
/// attachment does it).
pub fn set_loopback_up(netns: BorrowedFd<'_>) -> Result<(), NetError> {
    netns::run_in(netns, || kernel::loopback_up(&mut Rtnl::open()?))?
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::sync::Arc;

    use super::*;
    use crate::kernel::fake::FakeKernel;
    use crate::record::Protocol;
    use crate::store::NetworkCreate;

    struct Fixture {
        _dir: tempfile::TempDir,
        kernel: Arc<FakeKernel>,
        store: NetStore,
        netns: File,
    }

    /// A store over the fake kernel with network `n` (10.0.0.0/24) created.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let kernel = Arc::new(FakeKernel::default());
        let store =
            NetStore::with_kernel(&dir.path().join("s"), &dir.path().join("r"), kernel.clone());
        let req = NetworkCreate {
            name: "n".into(),
            subnet: Some("10.0.0.0/24".parse().unwrap()),
            ..NetworkCreate::default()
        };
        store.create_network(&req).unwrap();
        kernel.take_calls();
        let netns = File::open("/dev/null").unwrap();
        Fixture {
            _dir: dir,
            kernel,
            store,
            netns,
        }
    }

    fn with_port() -> AttachOptions {
        let port = PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        AttachOptions {
            ports: vec![port],
            ..AttachOptions::default()
        }
    }

    #[test]
    fn attach_orders_lease_bridge_veth_inside_firewall() {
        let f = fixture();
        let a = f
            .store
            .attach("n", "c1", f.netns.as_fd(), &with_port())
            .unwrap();
        let calls = f.kernel.take_calls();
        let ops: Vec<&str> = calls.iter().map(|c| c.split(' ').next().unwrap()).collect();
        assert_eq!(
            ops,
            [
                "free_ifname",
                "ensure_bridge",
                "create_veth",
                "configure_inside",
                "commit_nft"
            ]
        );
        assert_eq!(calls[2], format!("create_veth {}", a.host_veth));
        // Without published ports the ruleset does not change: nothing is committed.
        f.store
            .attach("n", "c2", f.netns.as_fd(), &AttachOptions::default())
            .unwrap();
        assert!(
            !f.kernel
                .take_calls()
                .iter()
                .any(|c| c.starts_with("commit_nft"))
        );
    }

    #[test]
    fn a_failure_at_any_step_leaves_no_lease_and_deletes_the_veth() {
        for op in [
            "ensure_bridge",
            "create_veth",
            "configure_inside",
            "commit_nft",
        ] {
            let f = fixture();
            f.kernel.fail_on(Some(op));
            let err = f
                .store
                .attach("n", "c1", f.netns.as_fd(), &with_port())
                .unwrap_err();
            let calls = f.kernel.take_calls();
            assert!(
                f.store.attachments_of("c1").unwrap().is_empty(),
                "{op}: lease left"
            );
            assert!(calls.iter().any(|c| c.starts_with("delete_link btv") || c.starts_with("delete_link bveth")), "{op}: {calls:?}");
            // Only a failing firewall also fails the rollback (it re-syncs the rules).
            assert_eq!(
                matches!(err, NetError::Rollback { .. }),
                op == "commit_nft",
                "{op}: {err}"
            );
            f.kernel.fail_on(None);
            let again = f
                .store
                .attach("n", "c1", f.netns.as_fd(), &with_port())
                .unwrap();
            assert_eq!(
                again.ip.to_string(),
                "10.0.0.2",
                "{op}: address not released"
            );
        }
    }

    #[test]
    fn detach_deletes_the_veth_and_release_leaves_it() {
        let f = fixture();
        let none = AttachOptions::default();
        let a = f.store.attach("n", "c1", f.netns.as_fd(), &none).unwrap();
        let b = f.store.attach("n", "c2", f.netns.as_fd(), &none).unwrap();
        f.kernel.take_calls();
        f.store.detach("n", "c1").unwrap();
        assert_eq!(
            f.kernel.take_calls(),
            vec![format!("delete_link {}", a.host_veth)]
        );
        f.store.release_all("c2").unwrap();
        assert!(f.kernel.take_calls().is_empty());
        assert!(f.store.inspect("n").unwrap().attachments.is_empty());
        f.store.detach("n", "c1").unwrap();
        assert!(
            f.kernel.take_calls().is_empty(),
            "second detach touched the kernel"
        );
        assert_ne!(a.host_veth, b.host_veth);
    }

    #[test]
    fn recover_cleans_the_dead_and_rebuilds_bridges_and_rules() {
        let f = fixture();
        let none = AttachOptions::default();
        let dead = f.store.attach("n", "dead", f.netns.as_fd(), &none).unwrap();
        f.store.attach("n", "live", f.netns.as_fd(), &none).unwrap();
        f.kernel.take_calls();
        let cleaned = f.store.recover(&|id| id == "live").unwrap();
        assert_eq!(cleaned, vec!["dead".to_owned()]);
        let calls = f.kernel.take_calls();
        assert!(
            calls.contains(&format!("delete_link {}", dead.host_veth)),
            "{calls:?}"
        );
        assert!(
            calls.iter().any(|c| c.starts_with("ensure_bridge")),
            "{calls:?}"
        );
        assert!(calls.last().unwrap().starts_with("commit_nft"), "{calls:?}");
        let left: Vec<String> = f
            .store
            .inspect("n")
            .unwrap()
            .attachments
            .into_iter()
            .map(|a| a.container_id)
            .collect();
        assert_eq!(left, vec!["live"]);
    }

    #[test]
    fn a_network_whose_bridge_fails_is_not_recorded() {
        let f = fixture();
        f.kernel.fail_on(Some("ensure_bridge"));
        let req = NetworkCreate {
            name: "m".into(),
            bridge: Some("brm".into()),
            ..NetworkCreate::default()
        };
        assert!(f.store.create_network(&req).is_err());
        assert!(
            f.kernel
                .take_calls()
                .contains(&"delete_link brm".to_owned())
        );
        assert!(matches!(f.store.inspect("m"), Err(NetError::NotFound(_))));
    }
}
