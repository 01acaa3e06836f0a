//! `NetStore`: network records (state dir) and leases (run dir), serialised by one
//! `flock`, and the kernel objects that follow from them (bridges, berth's nftables
//! table) through the [`Kernel`] trait.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::firewall::{DeferredClose, SyncMode};
use crate::ipam::{self, IpamError};
use crate::kernel::{Kernel, LinuxKernel};
use crate::netlink::NetlinkError;
use crate::netns::NetnsError;
use crate::record::{
    self, Attachment, Durability, Layout, Network, PortMapping, Protocol, RecordError,
};
use crate::subnet::Subnet;

/// Errors of network and attachment operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Work inside the container's network namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// No address or subnet could be handed out.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The state dir lock could not be taken.
    #[error("lock `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The errno of open or flock.
        #[source]
        source: std::io::Error,
    },
    /// A sysctl could not be written.
    #[error("write sysctl `{path}`")]
    Sysctl {
        /// The /proc/sys file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No network of that name.
    #[error("network `{0}` not found")]
    NotFound(String),
    /// A network of that name exists already.
    #[error("network `{0}` already exists")]
    Exists(String),
    /// The network still has containers attached.
    #[error("network `{network}` has {count} attached containers")]
    InUse {
        /// The network.
        network: String,
        /// How many attachments it has.
        count: usize,
    },
    /// The default network cannot be removed.
    #[error("network `{0}` is predefined and cannot be removed")]
    Predefined(String),
    /// The container is attached to the network already.
    #[error("container `{container_id}` is already attached to network `{network}`")]
    AlreadyAttached {
        /// The network.
        network: String,
        /// The container.
        container_id: String,
    },
    /// A host port is published already (by another container, on an overlapping address).
    #[error("host port {port}/{protocol:?} is already published by container `{container_id}`")]
    PortInUse {
        /// The host port.
        port: u16,
        /// Its protocol.
        protocol: Protocol,
        /// The container that publishes it.
        container_id: String,
    },
    /// A name or id is empty, too long, or has characters other than `[A-Za-z0-9_.-]`.
    #[error("invalid name `{0}`")]
    InvalidName(String),
    /// The gateway lies outside the subnet.
    #[error("gateway `{gateway}` is outside subnet `{subnet}`")]
    Gateway {
        /// The gateway asked for.
        gateway: Ipv4Addr,
        /// The subnet.
        subnet: Subnet,
    },
    /// An operation failed, and undoing its partial work failed as well.
    #[error("{failure} (and its rollback failed: {cleanup})")]
    Rollback {
        /// The original failure.
        failure: Box<NetError>,
        /// The first rollback failure.
        cleanup: Box<NetError>,
    },
}

/// Names and pools a store uses; tests pick names of their own.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Name of the `ip` family nftables table (default `berth`).
    pub nft_table: String,
    /// Name of the default network (default `bridge`).
    pub default_network: String,
    /// Bridge of the default network (default `berth0`).
    pub default_bridge: String,
    /// Prefix of user-defined networks' bridges (default `br-`).
    pub bridge_prefix: String,
    /// Prefix of host-side veth names (default `bveth`).
    pub veth_prefix: String,
    /// Subnets handed to networks created without `--subnet`, in order.
    pub subnet_pool: Vec<Subnet>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            nft_table: "berth".into(),
            default_network: "bridge".into(),
            default_bridge: "berth0".into(),
            bridge_prefix: "br-".into(),
            veth_prefix: "bveth".into(),
            subnet_pool: ipam::default_pool(),
        }
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// The network's name.
    pub name: String,
    /// The subnet; picked from the pool when `None`.
    pub subnet: Option<Subnet>,
    /// The gateway; the subnet's first address when `None`.
    pub gateway: Option<Ipv4Addr>,
    /// No outbound NAT, and no traffic to anything but the network itself.
    pub internal: bool,
    /// The bridge name; derived from the network id when `None`.
    pub bridge: Option<String>,
}

/// A network with the containers attached to it (`network inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDetails {
    /// The network record.
    pub network: Network,
    /// Its attachments, sorted by container id.
    pub attachments: Vec<Attachment>,
}

/// The held state-dir lock; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _flock: Flock<File>,
}

/// Network records (state dir) and leases (run dir) of one berth installation.
#[derive(Debug, Clone)]
pub struct NetStore {
    pub(crate) layout: Layout,
    pub(crate) config: NetConfig,
    pub(crate) closing: Arc<DeferredClose>,
    pub(crate) kernel: Arc<dyn Kernel>,
}

/// Checks that `name` is safe as a file name and readable as a DNS label-ish name.
pub(crate) fn validate_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidName(name.to_owned()))
    }
}

fn random_id() -> Result<String, NetError> {
    let path = Path::new("/dev/urandom");
    let mut buf = [0u8; 32];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| RecordError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl NetStore {
    /// Opens (creating if needed) the store with default names: network records under
    /// `state_dir` (e.g. `/var/lib/berth/net`), leases and the lock under `run_dir`
    /// (e.g. `/run/berth/net`, tmpfs: leases die with the containers at reboot).
    pub fn open(state_dir: &Path, run_dir: &Path) -> Result<Self, NetError> {
        Self::open_with(state_dir, run_dir, NetConfig::default())
    }

    /// Opens the store with explicit names (tests use their own table and prefixes).
    pub fn open_with(
        state_dir: &Path,
        run_dir: &Path,
        config: NetConfig,
    ) -> Result<Self, NetError> {
        let layout = Layout::new(state_dir, run_dir);
        layout.create()?;
        Ok(Self {
            layout,
            config,
            closing: Arc::default(),
            kernel: Arc::new(LinuxKernel),
        })
    }

    /// A store over another kernel implementation (the recording fake in unit tests).
    #[cfg(test)]
    pub(crate) fn with_kernel(state: &Path, run: &Path, kernel: Arc<dyn Kernel>) -> Self {
        let mut store = Self::open_with(state, run, NetConfig::default()).expect("open store");
        store.kernel = kernel;
        store
    }

    /// Takes the store's exclusive lock; every mutation runs under it.
    pub(crate) fn lock(&self) -> Result<StoreLock, NetError> {
        let path = self.layout.lock_file();
        let lock_err = |source| NetError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e): (File, Errno)| lock_err(e.into()))?;
        Ok(StoreLock { _flock: flock })
    }

    /// Every network, sorted by name.
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        Ok(record::read_all(&self.layout.networks_dir())?)
    }

    /// One network and its attachments.
    pub fn inspect(&self, name: &str) -> Result<NetworkDetails, NetError> {
        validate_name(name)?;
        let network = self.network(name)?;
        let attachments = record::read_all(&self.layout.endpoints_dir(name))?;
        Ok(NetworkDetails {
            network,
            attachments,
        })
    }

    pub(crate) fn network(&self, name: &str) -> Result<Network, NetError> {
        record::read_json(&self.layout.network_file(name))?
            .ok_or_else(|| NetError::NotFound(name.to_owned()))
    }

    /// Creates a user-defined network and its bridge, checking the subnet against other
    /// networks and the host's routes.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<Network, NetError> {
        validate_name(&req.name)?;
        let _lock = self.lock()?;
        let dns = req.name != self.config.default_network;
        self.create_locked(req, dns)
    }

    /// Returns network `name` after making sure its bridge exists, addressed and up (call
    /// before spawning its DNS responder, which binds the gateway address).
    pub fn ensure_network(&self, name: &str) -> Result<Network, NetError> {
        validate_name(name)?;
        let _lock = self.lock()?;
        let network = self.network(name)?;
        self.ensure_bridge(&network)?;
        Ok(network)
    }

    /// Returns the default network, creating it (subnet from the pool) on first use.
    pub fn ensure_default_network(&self) -> Result<Network, NetError> {
        let name = self.config.default_network.clone();
        if let Some(n) = record::read_json(&self.layout.network_file(&name))? {
            return Ok(n);
        }
        let _lock = self.lock()?;
        if let Some(n) = record::read_json(&self.layout.network_file(&name))? {
            return Ok(n);
        }
        let req = NetworkCreate {
            name,
            bridge: Some(self.config.default_bridge.clone()),
            ..NetworkCreate::default()
        };
        self.create_locked(&req, false)
    }

    fn create_locked(&self, req: &NetworkCreate, dns: bool) -> Result<Network, NetError> {
        if self.layout.network_file(&req.name).exists() {
            return Err(NetError::Exists(req.name.clone()));
        }
        let taken = self.taken_subnets()?;
        let subnet = match req.subnet {
            Some(s) => ipam::check_free(&s, &taken).map(|()| s)?,
            None => ipam::pick_subnet(&self.config.subnet_pool, &taken)?,
        };
        let gateway = match req.gateway {
            Some(g) if !subnet.contains(g) => return Err(NetError::Gateway { gateway: g, subnet }),
            Some(g) => g,
            None => ipam::default_gateway(&subnet)?,
        };
        let id = random_id()?;
        let bridge = match &req.bridge {
            Some(b) => b.clone(),
            None => {
                let mut b = format!("{}{}", self.config.bridge_prefix, id);
                b.truncate(ipam::IFNAME_MAX);
                b
            }
        };
        // The name also becomes a /proc/sys path component.
        if bridge.len() > ipam::IFNAME_MAX || validate_name(&bridge).is_err() {
            return Err(NetError::InvalidName(bridge));
        }
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let network = Network {
            name: req.name.clone(),
            id,
            bridge,
            subnet,
            gateway,
            internal: req.internal,
            dns,
            created,
        };
        let file = self.layout.network_file(&network.name);
        record::write_json(&file, &network, Durability::Durable)?;
        let setup = self
            .ensure_bridge(&network)
            .and_then(|_| self.sync_firewall(SyncMode::IfChanged));
        if let Err(failure) = setup {
            let cleanup = self.delete_network_locked(&network);
            return Err(with_cleanup(failure, cleanup));
        }
        Ok(network)
    }

    /// Subnets a new network must not overlap: other networks and the host's routes.
    fn taken_subnets(&self) -> Result<Vec<Subnet>, NetError> {
        let mut taken: Vec<Subnet> = self.list()?.iter().map(|n| n.subnet).collect();
        let routes = self.kernel.routes()?;
        for r in routes {
            if r.dst.prefix() > 0 && !taken.contains(&r.dst) {
                taken.push(r.dst);
            }
        }
        Ok(taken)
    }

    /// Removes a network without attachments, with its bridge.
    pub fn remove(&self, name: &str) -> Result<(), NetError> {
        validate_name(name)?;
        if name == self.config.default_network {
            return Err(NetError::Predefined(name.to_owned()));
        }
        let _lock = self.lock()?;
        let network = self.network(name)?;
        let count = record::read_all::<Attachment>(&self.layout.endpoints_dir(name))?.len();
        if count > 0 {
            return Err(NetError::InUse {
                network: name.to_owned(),
                count,
            });
        }
        self.delete_network_locked(&network)
    }

    fn delete_network_locked(&self, network: &Network) -> Result<(), NetError> {
        self.kernel.delete_link(&network.bridge)?;
        record::remove_file(&self.layout.network_file(&network.name))?;
        let _ = std::fs::remove_dir(self.layout.endpoints_dir(&network.name));
        self.sync_firewall(SyncMode::IfChanged)
    }

    /// Removes every user-defined network that has no attachments; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, NetError> {
        let _lock = self.lock()?;
        let mut removed = Vec::new();
        for network in self.list()? {
            if network.name == self.config.default_network {
                continue;
            }
            let dir = self.layout.endpoints_dir(&network.name);
            if record::read_all::<Attachment>(&dir)?.is_empty() {
                self.delete_network_locked(&network)?;
                removed.push(network.name);
            }
        }
        Ok(removed)
    }

    /// Creates the network's bridge if missing, with its address, up, and the sysctls
    /// that forwarding and loopback publishing need. Returns the bridge's index.
    pub(crate) fn ensure_bridge(&self, network: &Network) -> Result<u32, NetError> {
        self.kernel.ensure_bridge(network)
    }

    /// Fails if one of `ports` collides with a port published by any attachment (also
    /// within `ports` itself). An unspecified host address overlaps every address.
    pub(crate) fn check_ports(
        &self,
        container_id: &str,
        ports: &[PortMapping],
    ) -> Result<(), NetError> {
        let mut published: Vec<(String, PortMapping)> = Vec::new();
        for n in self.list()? {
            for a in record::read_all::<Attachment>(&self.layout.endpoints_dir(&n.name))? {
                published.extend(a.ports.into_iter().map(|p| (a.container_id.clone(), p)));
            }
        }
        for p in ports {
            let clash = published.iter().find(|(_, q)| {
                q.host_port == p.host_port
                    && q.protocol == p.protocol
                    && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
            });
            if let Some((owner, _)) = clash {
                return Err(NetError::PortInUse {
                    port: p.host_port,
                    protocol: p.protocol,
                    container_id: owner.clone(),
                });
            }
            published.push((container_id.to_owned(), *p));
        }
        Ok(())
    }

    /// Addresses leased on a network.
    pub(crate) fn used_addresses(&self, network: &Network) -> Result<HashSet<Ipv4Addr>, NetError> {
        let all: Vec<Attachment> = record::read_all(&self.layout.endpoints_dir(&network.name))?;
        Ok(all.into_iter().map(|a| a.ip).collect())
    }
}

/// Combines an operation's failure with the result of its rollback.
pub(crate) fn with_cleanup(failure: NetError, cleanup: Result<(), NetError>) -> NetError {
    match cleanup {
        Ok(()) => failure,
        Err(c) => NetError::Rollback {
            failure: Box::new(failure),
            cleanup: Box::new(c),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["bridge", "my-net_1.x", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetStore::open(dir.path(), &dir.path().join("run")).unwrap();
        let held = store.lock().unwrap();
        let f = File::open(store.layout.lock_file()).unwrap();
        let again = Flock::lock(f, FlockArg::LockExclusiveNonblock);
        assert!(again.is_err());
        drop(held);
        let f = File::open(store.layout.lock_file()).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn published_ports_must_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetStore::open(dir.path(), &dir.path().join("run")).unwrap();
        let net = Network {
            name: "n".into(),
            id: "0".repeat(64),
            bridge: "br0".into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            internal: false,
            dns: true,
            created: 0,
        };
        record::write_json(&store.layout.network_file("n"), &net, Durability::Durable).unwrap();
        let lo = Some(Ipv4Addr::LOCALHOST);
        let tcp = |host_ip, host_port| PortMapping {
            host_ip,
            host_port,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let owner = Attachment {
            network: "n".into(),
            container_id: "a".into(),
            name: None,
            aliases: vec![],
            ip: "10.0.0.2".parse().unwrap(),
            prefix: 24,
            gateway: net.gateway,
            mac: String::new(),
            host_veth: "v".into(),
            ifname: "eth0".into(),
            ports: vec![tcp(lo, 8080)],
        };
        record::write_json(
            &store.layout.endpoint_file("n", "a"),
            &owner,
            Durability::Atomic,
        )
        .unwrap();
        assert!(matches!(
            store.check_ports("b", &[tcp(None, 8080)]),
            Err(NetError::PortInUse { port: 8080, .. })
        ));
        let other_ip = Some(Ipv4Addr::new(10, 9, 9, 9));
        assert!(store.check_ports("b", &[tcp(other_ip, 8080)]).is_ok());
        let udp = PortMapping {
            protocol: Protocol::Udp,
            ..tcp(lo, 8080)
        };
        assert!(store.check_ports("b", &[udp]).is_ok());
        assert!(store.check_ports("b", &[tcp(None, 9), tcp(lo, 9)]).is_err());
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
