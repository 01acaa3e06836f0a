//! Attaching a container's network namespace to a network, detaching it, and cleaning up
//! after containers that died without detaching.
//!
//! Attach writes the lease first and the kernel objects second, so a crash at any point
//! leaves a lease that `recover` finds and removes together with its veth.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;

use crate::firewall::SyncMode;
use crate::ipam;
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
            None => netns::run_in(netns, free_ifname)??,
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
        let mut rtnl = Rtnl::open()?;
        match rtnl.create_veth(&spec) {
            // A host veth of this name belongs to this container on this network (the
            // name hashes both): a leftover of a `release` whose namespace lived on.
            Err(e)
                if e.errno() == Some(Errno::EEXIST) && rtnl.link_index(&a.host_veth)?.is_some() =>
            {
                rtnl.delete_link(&a.host_veth)?;
                rtnl.create_veth(&spec)?;
            }
            other => other?,
        }
        let internal = net.internal;
        netns::run_in(netns, || configure_inside(a, internal))??;
        self.sync_firewall(SyncMode::IfChanged)
    }

    /// Removes the host veth (its peer goes with it) when `link` says so, the lease, then
    /// the rules.
    fn unplumb(&self, a: &Attachment, link: LinkTeardown) -> Result<(), NetError> {
        let veth = match link {
            LinkTeardown::Delete => Rtnl::open().and_then(|mut r| r.delete_link(&a.host_veth)),
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
    netns::run_in(netns, || -> Result<(), NetError> {
        let mut rtnl = Rtnl::open()?;
        let lo = rtnl
            .link_index("lo")?
            .ok_or(crate::netlink::NetlinkError::Kernel {
                what: "find link `lo`".into(),
                errno: Errno::ENODEV,
            })?;
        rtnl.set_up(lo, "lo")?;
        Ok(())
    })?
}

/// Runs inside the container's namespace: the first `ethN` name not taken.
fn free_ifname() -> Result<String, NetError> {
    let names = Rtnl::open()?.link_names()?;
    Ok((0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !names.contains(n))
        .unwrap_or_else(|| "eth0".into()))
}

/// Runs inside the container's namespace: `lo` up, address, link up, default route.
fn configure_inside(a: &Attachment, internal: bool) -> Result<(), NetError> {
    let mut rtnl = Rtnl::open()?;
    let missing = |name: &str| crate::netlink::NetlinkError::Kernel {
        what: format!("find link `{name}`"),
        errno: Errno::ENODEV,
    };
    let lo = rtnl.link_index("lo")?.ok_or_else(|| missing("lo"))?;
    rtnl.set_up(lo, "lo")?;
    let index = rtnl
        .link_index(&a.ifname)?
        .ok_or_else(|| missing(&a.ifname))?;
    rtnl.add_address(index, a.ip, a.prefix)?;
    rtnl.set_up(index, &a.ifname)?;
    // Internal networks reach nothing beyond their subnet, so they get no default route.
    if !internal {
        rtnl.add_default_route(index, a.gateway)?;
    }
    Ok(())
}
