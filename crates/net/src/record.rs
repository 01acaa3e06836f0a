//! The records berth keeps on disk: networks and endpoints (an endpoint is a container's
//! attachment to a network, and its file is the IP lease). Files are written as temp +
//! fsync + rename, so a reader sees the old or the new record, never half of one.
//!
//! Networks are configuration and live under the state dir (`networks/<name>.json`,
//! fsynced). Endpoints are runtime state, dead with the containers after a reboot, and
//! live under the run dir (`endpoints/<network>/<container id>.json`, normally on
//! tmpfs, not fsynced), beside the store's `lock`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::subnet::Subnet;

/// A failure to read or write a record file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading, writing or listing a record failed.
    #[error("access `{path}`")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A record file does not parse.
    #[error("parse `{path}`")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// A network: a bridge, its subnet and gateway, and how it is treated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// User-visible name, e.g. `bridge` or `mynet`.
    pub name: String,
    /// 64 hex digits, unique per network.
    pub id: String,
    /// The Linux bridge interface on the host.
    pub bridge: String,
    /// The network's IPv4 subnet.
    pub subnet: Subnet,
    /// The bridge's address, the containers' default gateway and DNS server.
    pub gateway: Ipv4Addr,
    /// No outbound NAT, no default route, no traffic to other interfaces.
    pub internal: bool,
    /// Whether containers resolve each other by name (user-defined networks).
    pub dns: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One published port: `[host_ip:]host_port:container_port/protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on; `None` means every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A container's attachment to a network; its file holds the IP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The container's id.
    pub container_id: String,
    /// The container's name, resolvable by DNS on user-defined networks.
    pub name: Option<String>,
    /// Further DNS names of the container on this network.
    pub aliases: Vec<String>,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The container interface's MAC address, `02:42:` followed by the IP.
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The interface name inside the container, e.g. `eth0`.
    pub ifname: String,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// Paths of the record files under a state dir and a run dir.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    state: PathBuf,
    run: PathBuf,
}

impl Layout {
    pub(crate) fn new(state: &Path, run: &Path) -> Self {
        Self {
            state: state.to_owned(),
            run: run.to_owned(),
        }
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.run.join("lock")
    }

    /// The fingerprint of the ruleset last committed to nftables table `table`.
    pub(crate) fn firewall_stamp(&self, table: &str) -> PathBuf {
        self.run.join(format!("nft-{table}.stamp"))
    }

    pub(crate) fn networks_dir(&self) -> PathBuf {
        self.state.join("networks")
    }

    pub(crate) fn network_file(&self, name: &str) -> PathBuf {
        self.networks_dir().join(format!("{name}.json"))
    }

    pub(crate) fn endpoints_dir(&self, network: &str) -> PathBuf {
        Self::endpoints_dir_in(&self.run, network)
    }

    /// The endpoints dir of `network` under run dir `run` (for the DNS responder).
    pub(crate) fn endpoints_dir_in(run: &Path, network: &str) -> PathBuf {
        run.join("endpoints").join(network)
    }

    pub(crate) fn endpoint_file(&self, network: &str, container_id: &str) -> PathBuf {
        self.endpoints_dir(network)
            .join(format!("{container_id}.json"))
    }

    /// Creates the directories of the layout.
    pub(crate) fn create(&self) -> Result<(), RecordError> {
        for dir in [self.networks_dir(), self.run.join("endpoints")] {
            fs::create_dir_all(&dir).map_err(|source| RecordError::Io { path: dir, source })?;
        }
        Ok(())
    }
}

/// How much a record write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Survives power loss: fsync of the file and its directory.
    Durable,
    /// Survives a crash of the writer only (runtime state on tmpfs).
    Atomic,
}

/// Writes `value` as JSON to `path` through a temp file and rename (plus fsyncs when
/// `durability` asks for them), so readers never see half a record.
pub(crate) fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<(), RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| RecordError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    if durability == Durability::Durable {
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if durability == Durability::Durable {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Reads a JSON record; a missing file is `None`.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RecordError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RecordError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// Removes a record file; a missing file is success.
pub(crate) fn remove_file(path: &Path) -> Result<(), RecordError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RecordError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Reads every `*.json` record in `dir`, sorted by file name; a missing dir is empty.
pub(crate) fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, RecordError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecordError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RecordError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        if let Some(v) = read_json(&p)? {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_round_trips_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().join("s"), &dir.path().join("r"));
        layout.create().unwrap();
        let net = Network {
            name: "n1".into(),
            id: "ab".repeat(32),
            bridge: "br-abab".into(),
            subnet: "10.5.0.0/24".parse().unwrap(),
            gateway: "10.5.0.1".parse().unwrap(),
            internal: false,
            dns: true,
            created: 1,
        };
        write_json(&layout.network_file("n1"), &net, Durability::Durable).unwrap();
        let back: Option<Network> = read_json(&layout.network_file("n1")).unwrap();
        assert_eq!(back.as_ref(), Some(&net));
        let all: Vec<Network> = read_all(&layout.networks_dir()).unwrap();
        assert_eq!(all, vec![net]);
        remove_file(&layout.network_file("n1")).unwrap();
        remove_file(&layout.network_file("n1")).unwrap();
        assert!(
            read_all::<Network>(&layout.networks_dir())
                .unwrap()
                .is_empty()
        );
        assert!(
            read_json::<Network>(&layout.network_file("n1"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn garbage_record_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            read_json::<Network>(&p),
            Err(RecordError::Parse { .. })
        ));
    }
}
