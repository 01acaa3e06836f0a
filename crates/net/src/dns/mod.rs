//! A small DNS responder for one user-defined network, run as its own process
//! (`berth-netdns`) on the network's gateway address, like Docker's embedded DNS.
//! Container names, ids and aliases on that network answer with their addresses (read
//! from the store's endpoint records, reloaded when the directory changes); every other
//! query is relayed unchanged to the host's resolvers. Only clients holding a lease on
//! the network are served (others get REFUSED), so the gateway address is neither a
//! name oracle nor an open resolver for other networks or hosts. UDP only.

mod message;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::etc::parse_resolv_conf;
use crate::record::{self, Attachment, Layout, RecordError};
use message::{QueryProblem, RCODE_FORMERR, RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL};

/// How long containers may cache an answer about a container.
const TTL_SECS: u32 = 10;
/// How long to wait for one upstream resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many relayed queries are in flight; beyond, SERVFAIL.
const MAX_INFLIGHT: usize = 64;
const MAX_PACKET: usize = 4096;

/// Failures of the DNS responder.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listening socket could not be bound or configured.
    #[error("bind dns socket `{addr}`")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Receiving from the listening socket failed.
    #[error("receive dns query")]
    Recv(#[source] std::io::Error),
    /// The listening socket's address could not be read.
    #[error("read dns socket address")]
    LocalAddr(#[source] std::io::Error),
    /// The network's endpoint records could not be read.
    #[error(transparent)]
    Records(#[from] RecordError),
}

/// What one responder serves.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen, normally `<gateway>:53`.
    pub listen: SocketAddr,
    /// The `NetStore` run dir (where the leases are).
    pub run_dir: PathBuf,
    /// The network whose containers it names.
    pub network: String,
    /// Resolvers for every other name, tried in order.
    pub upstreams: Vec<SocketAddr>,
}

/// The resolvers of a `resolv.conf` (IPv4 and IPv6), on port 53.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    parse_resolv_conf(text)
        .nameservers
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Container names of one network, reloaded when its endpoint directory changes.
#[derive(Debug)]
struct NameTable {
    dir: PathBuf,
    /// `.<network>`, lowercase: `web.mynet` names `web` too, as with Docker.
    suffix: String,
    stamp: Option<SystemTime>,
    names: HashMap<String, Vec<Ipv4Addr>>,
    members: HashSet<Ipv4Addr>,
}

impl NameTable {
    fn new(run_dir: &Path, network: &str) -> Self {
        Self {
            dir: Layout::endpoints_dir_in(run_dir, network),
            suffix: format!(".{}", network.to_ascii_lowercase()),
            stamp: None,
            names: HashMap::new(),
            members: HashSet::new(),
        }
    }

    /// Re-reads the leases if their directory changed since the last read. Directory
    /// mtimes are coarse (a clock tick), so a change within the same tick as the last
    /// read would go unseen: a directory modified less than a second ago is re-read.
    fn refresh(&mut self) -> Result<(), RecordError> {
        let stamp = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let recent = stamp
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < Duration::from_secs(1));
        if recent || stamp != self.stamp {
            let all: Vec<Attachment> = record::read_all(&self.dir)?;
            self.names = names_of(&all);
            self.members = all.iter().map(|a| a.ip).collect();
            self.stamp = stamp;
        }
        Ok(())
    }

    /// Whether `client` is a container of this network (only they are served).
    fn is_member(&self, client: IpAddr) -> bool {
        matches!(client, IpAddr::V4(ip) if self.members.contains(&ip))
    }

    fn lookup(&self, name: &str) -> Option<&[Ipv4Addr]> {
        let short = name.strip_suffix(self.suffix.as_str()).unwrap_or(name);
        self.names
            .get(name)
            .or_else(|| self.names.get(short))
            .map(Vec::as_slice)
    }
}

/// Every name of every attachment: name, aliases, id and short id, lowercase.
fn names_of(attachments: &[Attachment]) -> HashMap<String, Vec<Ipv4Addr>> {
    let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for a in attachments {
        let short = a.container_id.get(..12).map(str::to_owned);
        let all = a
            .name
            .iter()
            .chain(&a.aliases)
            .cloned()
            .chain(Some(a.container_id.clone()));
        for n in all.chain(short) {
            let ips = names.entry(n.to_ascii_lowercase()).or_default();
            if !ips.contains(&a.ip) {
                ips.push(a.ip);
            }
        }
    }
    names
}

/// A bound responder.
#[derive(Debug)]
pub struct DnsServer {
    socket: UdpSocket,
    upstreams: Arc<Vec<SocketAddr>>,
    table: NameTable,
    inflight: Arc<AtomicUsize>,
}

impl DnsServer {
    /// Binds the listening socket.
    pub fn bind(config: &DnsConfig) -> Result<Self, DnsError> {
        let bind_err = |source| DnsError::Bind {
            addr: config.listen,
            source,
        };
        let socket = UdpSocket::bind(config.listen).map_err(bind_err)?;
        // A short timeout lets `serve` notice its stop flag.
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(bind_err)?;
        Ok(Self {
            socket,
            upstreams: Arc::new(config.upstreams.clone()),
            table: NameTable::new(&config.run_dir, &config.network),
            inflight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The address the responder listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, DnsError> {
        self.socket.local_addr().map_err(DnsError::LocalAddr)
    }

    /// Answers queries until `stop` is set.
    pub fn serve(&mut self, stop: &AtomicBool) -> Result<(), DnsError> {
        let mut buf = vec![0u8; MAX_PACKET];
        while !stop.load(Ordering::Relaxed) {
            let (n, client) = match self.socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(DnsError::Recv(e)),
            };
            self.handle(&buf[..n], client)?;
        }
        Ok(())
    }

    fn handle(&mut self, packet: &[u8], client: SocketAddr) -> Result<(), DnsError> {
        self.table.refresh()?;
        // Only the network's containers are served: anyone else reaching the gateway
        // address must not learn container names or use the host's resolvers.
        let member = self.table.is_member(client.ip());
        let reply = match message::parse_query(packet) {
            Ok(q) if !member => message::error_answer(q.id, q.flags, RCODE_REFUSED),
            Ok(q) => match self.table.lookup(&q.name) {
                Some(ips) => message::answer(packet, &q, ips, TTL_SECS),
                None => {
                    self.relay(packet.to_vec(), client, q.id, q.flags);
                    return Ok(());
                }
            },
            Err(_) if !member => return Ok(()),
            Err(problem) => {
                let Some(id) = message::packet_id(packet) else {
                    return Ok(());
                };
                let rcode = match problem {
                    QueryProblem::Malformed => RCODE_FORMERR,
                    QueryProblem::Unsupported => RCODE_NOTIMP,
                };
                message::error_answer(id, 0, rcode)
            }
        };
        // A client that went away is not the responder's failure.
        let _ = self.socket.send_to(&reply, client);
        Ok(())
    }

    /// Relays a query to the upstream resolvers on a short-lived thread.
    fn relay(&self, packet: Vec<u8>, client: SocketAddr, id: u16, flags: u16) {
        let Ok(reply_socket) = self.socket.try_clone() else {
            return;
        };
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            let _ = reply_socket.send_to(&message::error_answer(id, flags, RCODE_SERVFAIL), client);
            return;
        }
        let upstreams = Arc::clone(&self.upstreams);
        let inflight = Arc::clone(&self.inflight);
        let spawned = std::thread::Builder::new()
            .name("berth-dns-relay".into())
            .spawn(move || {
                let reply = ask_upstreams(&upstreams, &packet)
                    .unwrap_or_else(|| message::error_answer(id, flags, RCODE_SERVFAIL));
                let _ = reply_socket.send_to(&reply, client);
                inflight.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Sends `packet` to each upstream in turn; the first answer with the same id wins.
fn ask_upstreams(upstreams: &[SocketAddr], packet: &[u8]) -> Option<Vec<u8>> {
    let id = message::packet_id(packet)?;
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(local) else {
            continue;
        };
        if sock.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
            || sock.connect(up).is_err()
            || sock.send(packet).is_err()
        {
            continue;
        }
        let mut buf = vec![0u8; MAX_PACKET];
        if let Ok(n) = sock.recv(&mut buf)
            && message::packet_id(&buf[..n]) == Some(id)
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::{TYPE_A, build_query};

    fn attachment(id: &str, name: &str, alias: &str, ip: &str) -> Attachment {
        Attachment {
            network: "n".into(),
            container_id: id.into(),
            name: Some(name.into()),
            aliases: vec![alias.into()],
            ip: ip.parse().unwrap(),
            prefix: 24,
            gateway: "10.0.0.1".parse().unwrap(),
            mac: String::new(),
            host_veth: String::new(),
            ifname: "eth0".into(),
            ports: vec![],
        }
    }

    #[test]
    fn names_cover_name_alias_and_ids() {
        let id = "0123456789abcdef0123";
        let t = names_of(&[
            attachment(id, "Web", "www", "10.0.0.2"),
            attachment("x", "db", "www", "10.0.0.3"),
        ]);
        assert_eq!(t["web"], vec!["10.0.0.2".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(t["0123456789ab"].len(), 1);
        assert_eq!(t[id].len(), 1);
        assert_eq!(t["www"].len(), 2);
    }

    #[test]
    fn answers_from_records_and_relays_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), dir.path());
        let a = attachment("c1", "web", "w", "10.0.0.2");
        record::write_json(
            &layout.endpoint_file("n", "c1"),
            &a,
            record::Durability::Atomic,
        )
        .unwrap();
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            run_dir: dir.path().to_owned(),
            network: "n".into(),
            upstreams: vec![upstream.local_addr().unwrap()],
        };
        let mut server = DnsServer::bind(&config).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client_addr = client.local_addr().unwrap();
        let mut buf = [0u8; 512];
        // Not a container of the network (yet): refused, nothing relayed.
        server
            .handle(&build_query(4, "web", TYPE_A), client_addr)
            .unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!((n, buf[3] & 0xf), (12, RCODE_REFUSED));
        let me = attachment("cli", "cli", "c", "127.0.0.1");
        let lease = layout.endpoint_file("n", "cli");
        record::write_json(&lease, &me, record::Durability::Atomic).unwrap();

        for (id, name) in [(5, "web"), (7, "WEB.n")] {
            server
                .handle(&build_query(id, name, TYPE_A), client_addr)
                .unwrap();
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[n - 4..n], &[10, 0, 0, 2], "{name}");
        }

        let query = build_query(6, "elsewhere.example", TYPE_A);
        server.handle(&query, client_addr).unwrap();
        let (n, from) = upstream.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &query[..]);
        upstream.send_to(b"\x00\x06fake-answer", from).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x00\x06fake-answer");
    }
}
