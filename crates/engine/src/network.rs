//! The network seam between the engine and `berth-net`: which network namespace a
//! container gets (`--network`), the `-p/--ip/--dns/--add-host/--network-alias` settings
//! kept in its record, the attach once its init exists (veth, lease, published ports,
//! `/etc/hosts` and `/etc/resolv.conf`), the lease release on every teardown path, the
//! per-network DNS responders, and the `network …` operations of [`Engine`].
//!
//! One installation (`--root`) owns one `NetStore` under `<root>/net` and
//! `<runroot>/net`. The default root uses berth's default names (table `berth`, bridge
//! `berth0`); any other root gets names derived from its path, so two installations
//! (tests) never rewrite each other's nftables table or share a bridge.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_net::etc::{self, ResolvChoice};
use berth_net::{
    AttachOptions, Attachment, NetConfig, NetError, NetStore, Network, NetworkCreate,
    NetworkDetails, PortMapping,
};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::container::Engine;
use crate::record::ContainerRecord;
use crate::spec::NsJoin;

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Why a network setting or operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "invalid network mode `{0}`: use bridge, none, host, container:<name|id> or a network's name"
    )]
    InvalidMode(String),
    #[error("invalid argument \"{value}\" for \"{flag}\" flag: {why}")]
    InvalidFlag {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{op}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "container `{0}` is not on a bridge network (its --network is none, host or container:)"
    )]
    NotBridged(String),
    #[error("container `{container}` is already connected to network `{network}`")]
    AlreadyConnected { container: String, network: String },
}

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        EngineError::Network(NetworkError::Net(e))
    }
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Io { op, source }
}

/// A parsed `--network` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A private namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace.
    Container(String),
    /// A private namespace attached to this network (`bridge` is the default one).
    Bridge(String),
}

/// Parses `--network`; empty or `default` is the default bridge network.
pub fn parse_mode(s: &str) -> Result<NetworkMode, NetworkError> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.as_bytes()[0].is_ascii_alphanumeric()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    match s {
        "" | "default" => Ok(NetworkMode::Bridge(DEFAULT_NETWORK.into())),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => match s.strip_prefix("container:") {
            Some(c) if !c.is_empty() => Ok(NetworkMode::Container(c.to_string())),
            None if name_ok(s) => Ok(NetworkMode::Bridge(s.to_string())),
            _ => Err(NetworkError::InvalidMode(s.to_string())),
        },
    }
}

/// The namespace join for a mode; `pid_of` finds a running container's init pid.
pub(crate) fn join(mode: &NetworkMode, pid_of: Option<i32>) -> Option<NsJoin> {
    match mode {
        NetworkMode::None | NetworkMode::Bridge(_) => None,
        NetworkMode::Host => Some(NsJoin {
            kind: "network",
            path: None,
        }),
        NetworkMode::Container(_) => Some(NsJoin {
            kind: "network",
            path: pid_of.map(|p| format!("/proc/{p}/ns/net")),
        }),
    }
}

/// A container's network settings besides its mode (part of its `HostConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetOptions {
    /// `--network-alias`: further DNS names on user-defined networks.
    pub aliases: Vec<String>,
    /// `--ip` on the first network.
    pub ip: Option<Ipv4Addr>,
    /// `--add-host name:ip`, as given.
    pub extra_hosts: Vec<String>,
    /// `--dns`.
    pub dns: Vec<IpAddr>,
    /// `-p` and `-P`, host ports already chosen.
    pub ports: Vec<PortMapping>,
    /// `--expose`, as `PORT/PROTO` (`-P` publishes these and the image's).
    pub expose: Vec<String>,
    /// `-P`: publish every exposed port (done at `create`, once the image is known).
    pub publish_all: bool,
    /// Networks joined with `network connect`, attached again on every start.
    pub connected: Vec<String>,
}

mod flags;
pub(crate) use flags::expose_ports;
use flags::parse_add_host;
pub use flags::{NetFlags, parse_publish};

/// FNV-1a, for names derived from a root path.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Names for the installation at `root`: berth's defaults for `/var/lib/berth`, else
/// a table `berth-<hash>` and a default bridge `berth<hash>` of its own.
pub(crate) fn net_config(root: &Path) -> NetConfig {
    let mut c = NetConfig::default();
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if root != Path::new("/var/lib/berth") {
        let h = fnv(root.as_os_str().as_bytes());
        c.nft_table = format!("berth-{:08x}", h as u32);
        c.default_bridge = format!("berth{:06x}", h & 0xff_ffff);
    }
    c
}

fn store(engine: &Engine) -> Result<NetStore, NetworkError> {
    Ok(NetStore::open_with(
        &engine.root.join("net"),
        &engine.runroot.join("net"),
        net_config(&engine.root),
    )?)
}

/// Serialises network creation across installations (subnets are host-wide) and
/// collects the networks of installations whose root is gone.
fn host_lock(engine: &Engine) -> Result<Flock<File>, NetworkError> {
    let dir = gc::registry();
    fs::create_dir_all(&dir).map_err(io(format!("create `{}`", dir.display())))?;
    let p = dir.join("lock");
    let f = File::create(&p).map_err(io(format!("open `{}`", p.display())))?;
    let held = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("lock `{}`", p.display()))(e.into()))?;
    gc::collect(&engine.root);
    Ok(held)
}

fn ensure(engine: &Engine, store: &NetStore, name: &str) -> Result<Network, NetworkError> {
    if name == DEFAULT_NETWORK {
        if let Some(n) = store.list()?.into_iter().find(|n| n.name == name) {
            return Ok(n);
        }
        let _host = host_lock(engine)?;
        let net = store.ensure_default_network()?;
        gc::register(&engine.root, &net);
        return Ok(net);
    }
    Ok(store.ensure_network(name)?)
}

/// The bridge networks `rec` is attached to on start, its mode's first.
fn networks_of(rec: &ContainerRecord) -> Result<Vec<String>, NetworkError> {
    let mut v = match parse_mode(&rec.host_config.network_mode)? {
        NetworkMode::Bridge(n) => vec![n],
        _ => return Ok(vec![]),
    };
    for c in &rec.host_config.net.connected {
        if !v.contains(c) {
            v.push(c.clone());
        }
    }
    Ok(v)
}

/// In the caller's process before the monitor runs: the container's networks exist and
/// their DNS responders run (the monitor never spawns long-lived processes).
pub(crate) fn before_start(engine: &Engine, rec: &ContainerRecord) -> Result<(), NetworkError> {
    let names = networks_of(rec)?;
    if names.is_empty() {
        return Ok(());
    }
    let store = store(engine)?;
    for n in names {
        let net = ensure(engine, &store, &n)?;
        if net.dns {
            dns::ensure(engine, &net)?;
        }
    }
    Ok(())
}

/// Called once the container's init exists and before it starts: connects its
/// namespace to its networks and writes `/etc/hosts` and `/etc/resolv.conf`. On failure
/// nothing stays attached.
pub(crate) fn attach(engine: &Engine, rec: &ContainerRecord, pid: i32) -> Result<(), NetworkError> {
    let names = networks_of(rec)?;
    let opts = &rec.host_config.net;
    if names.is_empty() {
        if parse_mode(&rec.host_config.network_mode)? == NetworkMode::None
            && (!opts.extra_hosts.is_empty() || !opts.dns.is_empty())
        {
            write_etc(engine, rec, &[], None)?;
        }
        return Ok(());
    }
    let store = store(engine)?;
    let p = format!("/proc/{pid}/ns/net");
    let ns = File::open(&p).map_err(io(format!("open `{p}`")))?;
    let mut addrs = Vec::new();
    let mut responder = None;
    for (i, name) in names.iter().enumerate() {
        let net = ensure(engine, &store, name);
        let attached = net.and_then(|net| {
            let a = store.attach(
                name,
                &rec.id,
                ns.as_fd(),
                &AttachOptions {
                    ip: if i == 0 { opts.ip } else { None },
                    name: Some(rec.name.clone()),
                    aliases: if net.dns {
                        opts.aliases.clone()
                    } else {
                        vec![]
                    },
                    ports: if i == 0 { opts.ports.clone() } else { vec![] },
                    ifname: None,
                },
            )?;
            Ok((net, a))
        });
        match attached {
            Ok((net, a)) => {
                addrs.push(a.ip);
                if net.dns && responder.is_none() {
                    responder = Some(a.gateway);
                }
            }
            Err(e) => {
                let _ = store.detach_all(&rec.id);
                return Err(e);
            }
        }
    }
    write_etc(engine, rec, &addrs, responder)
}

/// Rewrites the engine's `hosts` and `resolv.conf` of `rec` in place (they are bind
/// mounted into the container already, so the inode must stay).
fn write_etc(
    engine: &Engine,
    rec: &ContainerRecord,
    addrs: &[Ipv4Addr],
    responder: Option<Ipv4Addr>,
) -> Result<(), NetworkError> {
    let opts = &rec.host_config.net;
    let extra = opts
        .extra_hosts
        .iter()
        .map(|h| parse_add_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = etc::render_hosts(&rec.config.hostname, addrs, &extra);
    let host_conf =
        etc::parse_resolv_conf(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let conf = etc::container_resolv_conf(
        &host_conf,
        &ResolvChoice {
            dns: opts.dns.clone(),
            responder,
            ..Default::default()
        },
    );
    let dir = engine.run_dir(&rec.id);
    for (name, text) in [
        ("hosts", hosts),
        ("resolv.conf", etc::render_resolv_conf(&conf)),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).map_err(io(format!("write `{}`", p.display())))?;
    }
    Ok(())
}

/// Drops the container's leases and published ports once its namespace is gone or going
/// (after the runtime deleted it); the kernel deletes the veths with the namespace.
pub(crate) fn release(engine: &Engine, id: &str) {
    if let Ok(s) = store(engine) {
        let _ = s.release_all(id);
    }
}

impl Engine {
    /// The network store of this installation.
    pub fn net_store(&self) -> Result<NetStore, EngineError> {
        Ok(store(self)?)
    }

    /// `network ls`, the default network included (created on first use).
    pub fn network_list(&self) -> Result<Vec<Network>, EngineError> {
        let s = store(self)?;
        ensure(self, &s, DEFAULT_NETWORK)?;
        Ok(s.list()?)
    }

    /// `network inspect`.
    pub fn network_inspect(&self, name: &str) -> Result<NetworkDetails, EngineError> {
        let s = store(self)?;
        if name == DEFAULT_NETWORK {
            ensure(self, &s, DEFAULT_NETWORK)?;
        }
        Ok(s.inspect(name)?)
    }

    /// `network create`: the bridge, then its DNS responder.
    pub fn network_create(&self, req: &NetworkCreate) -> Result<Network, EngineError> {
        let s = store(self)?;
        let net = {
            let _host = host_lock(self)?;
            let net = s.create_network(req)?;
            gc::register(&self.root, &net);
            net
        };
        if net.dns
            && let Err(e) = dns::ensure(self, &net)
        {
            let _ = s.remove(&net.name);
            return Err(e.into());
        }
        Ok(net)
    }

    /// `network rm`: refuses while containers are attached; stops the DNS responder.
    pub fn network_remove(&self, name: &str) -> Result<(), EngineError> {
        let s = store(self)?;
        let d = s.inspect(name)?;
        if !d.attachments.is_empty() {
            return Err(NetworkError::Net(NetError::InUse {
                network: name.to_string(),
                count: d.attachments.len(),
            })
            .into());
        }
        dns::stop(self, name);
        if let Err(e) = s.remove(name) {
            if d.network.dns {
                let _ = dns::ensure(self, &d.network);
            }
            return Err(NetworkError::from(e).into());
        }
        gc::unregister(&self.root, name);
        Ok(())
    }

    /// `network prune`: removes unused user-defined networks; their names.
    pub fn network_prune(&self) -> Result<Vec<String>, EngineError> {
        let removed = store(self)?.prune()?;
        for n in &removed {
            dns::stop(self, n);
            gc::unregister(&self.root, n);
        }
        Ok(removed)
    }

    /// Removes every network of this installation (the default one too), their
    /// responders and the nftables table; refuses while any container is attached.
    /// For tests and uninstalling.
    pub fn network_reset(&self) -> Result<(), EngineError> {
        let mut cfg = net_config(&self.root);
        cfg.default_network = "-".into(); // so the default network can be removed too
        let s = NetStore::open_with(&self.root.join("net"), &self.runroot.join("net"), cfg)?;
        for n in s.list()? {
            let d = s.inspect(&n.name)?;
            if !d.attachments.is_empty() {
                return Err(NetworkError::Net(NetError::InUse {
                    network: n.name,
                    count: d.attachments.len(),
                })
                .into());
            }
            dns::stop(self, &n.name);
            s.remove(&n.name)?;
        }
        s.delete_firewall()?;
        gc::forget(&self.root);
        Ok(())
    }

    /// `network connect`: attaches a running container now (and on every later start);
    /// a stopped one is attached when it starts.
    pub fn network_connect(
        &mut self,
        network: &str,
        key: &str,
        aliases: &[String],
        ip: Option<Ipv4Addr>,
    ) -> Result<Option<Attachment>, EngineError> {
        let rec = self.get(key)?;
        let names = networks_of(&rec)?;
        if names.is_empty() {
            return Err(NetworkError::NotBridged(rec.name).into());
        }
        if names.iter().any(|n| n == network) {
            return Err(NetworkError::AlreadyConnected {
                container: rec.name,
                network: network.to_string(),
            }
            .into());
        }
        let s = store(self)?;
        let net = ensure(self, &s, network)?;
        if net.dns {
            dns::ensure(self, &net)?;
        }
        let mut attached = None;
        if rec.is_active() && rec.state.pid > 0 {
            let p = format!("/proc/{}/ns/net", rec.state.pid);
            let ns = File::open(&p).map_err(io(format!("open `{p}`")))?;
            let opts = AttachOptions {
                ip,
                name: Some(rec.name.clone()),
                aliases: aliases.to_vec(),
                ..Default::default()
            };
            attached = Some(s.attach(network, &rec.id, ns.as_fd(), &opts)?);
        }
        self.db.update(&rec.id, |r| {
            r.host_config.net.connected.push(network.to_string());
            Ok(())
        })?;
        Ok(attached)
    }

    /// `network disconnect`: detaches a container (deletes its veth on that network).
    pub fn network_disconnect(&mut self, network: &str, key: &str) -> Result<(), EngineError> {
        let rec = self.get(key)?;
        store(self)?.detach(network, &rec.id)?;
        self.db.update(&rec.id, |r| {
            r.host_config.net.connected.retain(|n| n != network);
            Ok(())
        })?;
        Ok(())
    }

    /// `port`: the container's published ports (while it is attached).
    pub fn ports(&mut self, key: &str) -> Result<Vec<PortMapping>, EngineError> {
        let rec = self.get(key)?;
        let on = store(self)?.attachments_of(&rec.id)?;
        Ok(on.into_iter().flat_map(|a| a.ports).collect())
    }
}

mod dns;

mod gc;

mod settings;

#[cfg(test)]
mod tests {
    use super::*;
    use berth_net::Protocol;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("host").unwrap(), NetworkMode::Host);
        assert_eq!(parse_mode("none").unwrap(), NetworkMode::None);
        assert_eq!(
            parse_mode("container:web").unwrap(),
            NetworkMode::Container("web".into())
        );
        assert_eq!(
            parse_mode("").unwrap(),
            NetworkMode::Bridge("bridge".into())
        );
        assert_eq!(
            parse_mode("mynet").unwrap(),
            NetworkMode::Bridge("mynet".into())
        );
        assert!(parse_mode("container:").is_err());
        assert!(parse_mode("../x").is_err());
        assert_eq!(join(&NetworkMode::Bridge("b".into()), None), None);
    }

    #[test]
    fn publish_specs_parse() {
        let m = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((m.host_port, m.container_port), (8080, 80));
        assert_eq!(m.protocol, Protocol::Tcp);
        let m = parse_publish("5353:53/udp").unwrap();
        assert_eq!(
            (m.host_ip, m.host_port, m.protocol),
            (None, 5353, Protocol::Udp)
        );
        let m = parse_publish("80").unwrap();
        assert!(m.host_port > 0 && m.container_port == 80);
        assert!(parse_publish("80/sctp").is_err());
        assert!(parse_publish("x:1:2:3").is_err());
        assert!(parse_publish("8000-8001:80").is_err());
        assert!(parse_publish("300.0.0.1:80:80").is_err());
    }

    #[test]
    fn flags_resolve() {
        let f = NetFlags {
            ip: Some("10.1.0.5".into()),
            add_host: vec!["db:10.0.0.9".into()],
            dns: vec!["1.1.1.1".into()],
            publish: vec!["8080:80".into()],
            publish_all: true,
            expose: vec!["80".into(), "53/udp".into()],
            ..Default::default()
        };
        let mut o = f.resolve().unwrap();
        assert_eq!(o.ip, Some(Ipv4Addr::new(10, 1, 0, 5)));
        assert_eq!(o.expose, ["80/tcp", "53/udp"]);
        assert_eq!(o.ports.len(), 1);
        // At create, with the image's ports: 80/tcp is published already, -P adds the
        // image's 8080/tcp and 53/udp; a bad image key is skipped.
        let image = ["8080/tcp".to_string(), "80/tcp".into(), "x/tcp".into()];
        let keys = expose_ports(&mut o, &image).unwrap();
        assert_eq!(keys, ["8080/tcp", "80/tcp", "53/udp"]);
        assert_eq!(o.ports.len(), 3);
        assert_eq!(
            (o.ports[1].container_port, o.ports[2].protocol),
            (8080, Protocol::Udp)
        );
        assert!(
            o.ports
                .iter()
                .all(|m| m.host_ip.is_none() && m.host_port > 0)
        );
        o.publish_all = false;
        o.ports.truncate(1);
        expose_ports(&mut o, &image).unwrap();
        assert_eq!(o.ports.len(), 1);
        let e = parse_add_host("db:x").unwrap_err();
        assert!(e.to_string().contains("--add-host"), "{e}");
        assert!(
            NetFlags {
                ip: Some("x".into()),
                ..Default::default()
            }
            .resolve()
            .is_err()
        );
    }

    #[test]
    fn installations_get_their_own_names() {
        let a = net_config(Path::new("/nonexistent/a"));
        let b = net_config(Path::new("/nonexistent/b"));
        assert_ne!(a.nft_table, b.nft_table);
        assert_ne!(a.default_bridge, b.default_bridge);
        assert!(a.default_bridge.len() <= 15);
        assert_eq!(net_config(Path::new("/var/lib/berth")).nft_table, "berth");
    }
}
