//! The network flags of `run`/`create` (`-p`, `-P`, `--expose`, `--ip`, `--dns`,
//! `--add-host`, `--network-alias`) checked and turned into [`NetOptions`].

use std::net::{TcpListener, UdpSocket};

use berth_net::etc::HostsEntry;
use berth_net::{PortMapping, Protocol};

use super::{NetOptions, NetworkError, io};

/// The network flags of `run`/`create`, as typed.
#[derive(Debug, Clone, Default)]
pub struct NetFlags {
    pub aliases: Vec<String>,
    pub ip: Option<String>,
    pub add_host: Vec<String>,
    pub dns: Vec<String>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
}

fn bad(flag: &'static str, value: &str, why: &'static str) -> NetworkError {
    NetworkError::InvalidFlag {
        flag,
        value: value.to_string(),
        why,
    }
}

impl NetFlags {
    /// Checks the flags and picks host ports for `-P` and `-p CONTAINER_PORT`.
    pub fn resolve(&self) -> Result<NetOptions, NetworkError> {
        let ip = match &self.ip {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| bad("--ip", s, "not an IPv4 address"))?,
            ),
        };
        for h in &self.add_host {
            parse_add_host(h)?;
        }
        let dns = self
            .dns
            .iter()
            .map(|d| d.parse().map_err(|_| bad("--dns", d, "not an IP address")))
            .collect::<Result<_, _>>()?;
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.push(parse_publish(p)?);
        }
        let mut expose = Vec::new();
        for e in &self.expose {
            let (port, proto) = parse_port_proto(e, "--expose")?;
            expose.push(port_key(port, proto));
        }
        Ok(NetOptions {
            aliases: self.aliases.clone(),
            ip,
            extra_hosts: self.add_host.clone(),
            dns,
            ports,
            expose,
            publish_all: self.publish_all,
            connected: Vec::new(),
        })
    }
}

/// Docker's `PORT/PROTO` key of an exposed port.
fn port_key(port: u16, proto: Protocol) -> String {
    let proto = match proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("{port}/{proto}")
}

/// The container's exposed ports, `--expose` merged into the image's `ExposedPorts`
/// (keys as `PORT/PROTO`); with `-P` each one not published yet gets a free host port
/// on every address, as Docker's. Keys the image gets wrong are skipped.
pub(crate) fn expose_ports(
    opts: &mut NetOptions,
    image: &[String],
) -> Result<Vec<String>, NetworkError> {
    let mut all: Vec<(u16, Protocol)> = Vec::new();
    for key in image.iter().chain(&opts.expose) {
        if let Ok(p) = parse_port_proto(key, "--expose")
            && !all.contains(&p)
        {
            all.push(p);
        }
    }
    if opts.publish_all {
        for &(port, proto) in &all {
            let published = opts
                .ports
                .iter()
                .any(|m| m.container_port == port && m.protocol == proto);
            if !published {
                opts.ports.push(PortMapping {
                    host_ip: None,
                    host_port: free_port(proto)?,
                    container_port: port,
                    protocol: proto,
                });
            }
        }
    }
    Ok(all.into_iter().map(|(p, t)| port_key(p, t)).collect())
}

/// `name:ip` (Docker also accepts `name=ip`).
pub(super) fn parse_add_host(s: &str) -> Result<HostsEntry, NetworkError> {
    let (name, ip) = s
        .split_once([':', '='])
        .ok_or_else(|| bad("--add-host", s, "expected name:ip"))?;
    let ip = ip
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| bad("--add-host", s, "invalid IP address"))?;
    if name.is_empty() {
        return Err(bad("--add-host", s, "empty host name"));
    }
    Ok(HostsEntry {
        ip,
        names: vec![name.to_string()],
    })
}

fn parse_port_proto(s: &str, flag: &'static str) -> Result<(u16, Protocol), NetworkError> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return Err(bad(flag, s, "protocol must be tcp or udp")),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(bad(flag, s, "invalid port (ranges are not supported)")),
    }
}

/// `-p [ip:][host_port:]container_port[/tcp|udp]`; no host port means a free one.
pub fn parse_publish(s: &str) -> Result<PortMapping, NetworkError> {
    const F: &str = "-p, --publish";
    let parts: Vec<&str> = s.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => {
            return Err(bad(
                F,
                s,
                "expected [ip:][host_port:]container_port[/proto]",
            ));
        }
    };
    let (container_port, protocol) = parse_port_proto(container, F)?;
    let host_ip = match ip {
        "" | "0.0.0.0" => None,
        i => Some(i.parse().map_err(|_| bad(F, s, "invalid IPv4 address"))?),
    };
    let host_port = match host {
        "" => free_port(protocol)?,
        h => match h.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad(F, s, "invalid host port")),
        },
    };
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

/// A port the kernel considers free now (as Docker picks from the ephemeral range).
fn free_port(proto: Protocol) -> Result<u16, NetworkError> {
    let port = match proto {
        Protocol::Tcp => TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind("0.0.0.0:0").and_then(|l| l.local_addr()),
    };
    Ok(port.map_err(io("pick a free host port"))?.port())
}
