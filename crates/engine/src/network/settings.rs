//! `NetworkSettings` of a container's inspect document, in Docker's shape, from the
//! container's leases in `berth-net` (empty values while it has none: stopped, or
//! `--network none/host/container:`).

use berth_net::{Attachment, Network, PortMapping, Protocol};
use serde_json::{Map, Value, json};

use super::{DEFAULT_NETWORK, NetworkMode, fnv, networks_of, parse_mode, store};
use crate::container::Engine;
use crate::record::ContainerRecord;

/// What the settings are built from, read once.
struct Sources {
    /// The networks the container belongs to, by name, with their records if any.
    networks: Vec<(String, Option<Network>)>,
    attachments: Vec<Attachment>,
    /// On bridge networks (ports can be published), not none/host/container:.
    bridged: bool,
}

fn read_sources(engine: &Engine, rec: &ContainerRecord) -> Sources {
    let mode = parse_mode(&rec.host_config.network_mode).ok();
    let bridged = matches!(mode, Some(NetworkMode::Bridge(_)));
    let names = match mode {
        Some(NetworkMode::None) => vec!["none".to_string()],
        Some(NetworkMode::Host) => vec!["host".to_string()],
        _ => networks_of(rec).unwrap_or_default(),
    };
    // Only bridge networks have records and leases (and inspect need not create the store).
    let store = if bridged { store(engine).ok() } else { None };
    let known = store
        .as_ref()
        .and_then(|s| s.list().ok())
        .unwrap_or_default();
    let attachments = store
        .as_ref()
        .and_then(|s| s.attachments_of(&rec.id).ok())
        .unwrap_or_default();
    let networks = names
        .into_iter()
        .map(|n| {
            let net = known.iter().find(|k| k.name == n).cloned();
            (n, net)
        })
        .collect();
    Sources {
        networks,
        attachments,
        bridged,
    }
}

/// 64 hex digits that name the container's endpoint on a network (berth keeps no
/// endpoint ids of its own; this one is stable for the pair).
fn endpoint_id(network_id: &str, container_id: &str) -> String {
    (0u8..4)
        .map(|i| {
            let key = format!("{i}/{network_id}/{container_id}");
            format!("{:016x}", fnv(key.as_bytes()))
        })
        .collect()
}

/// One entry of `Networks`.
fn endpoint(rec: &ContainerRecord, net: Option<&Network>, a: Option<&Attachment>) -> Value {
    let network_id = net.map(|n| n.id.clone()).unwrap_or_default();
    let dns = net.is_some_and(|n| n.dns);
    let (aliases, dns_names) = match a {
        Some(a) if dns => {
            let mut names = vec![a.name.clone().unwrap_or_else(|| rec.name.clone())];
            names.extend(a.aliases.iter().cloned());
            names.push(rec.short_id().to_string());
            (json!(a.aliases), json!(names))
        }
        _ => (Value::Null, Value::Null),
    };
    let ip = |f: fn(&Attachment) -> String| a.map(f).unwrap_or_default();
    json!({
        "IPAMConfig": null,
        "Links": null,
        "Aliases": aliases,
        "MacAddress": ip(|a| a.mac.clone()),
        "DriverOpts": null,
        "NetworkID": network_id,
        "EndpointID": a.map(|_| endpoint_id(&network_id, &rec.id)).unwrap_or_default(),
        "Gateway": ip(|a| a.gateway.to_string()),
        "IPAddress": ip(|a| a.ip.to_string()),
        "IPPrefixLen": a.map_or(0, |a| a.prefix),
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": dns_names,
    })
}

/// `Ports`: every exposed or published port, `null` where it is not published.
fn ports(rec: &ContainerRecord, published: &[PortMapping]) -> Value {
    let key = |m: &PortMapping| {
        let proto = match m.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        format!("{}/{proto}", m.container_port)
    };
    let mut out = Map::new();
    for k in &rec.config.exposed_ports {
        out.insert(k.clone(), Value::Null);
    }
    for m in published {
        let host_ip = m.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
        let binding = json!({"HostIp": host_ip, "HostPort": m.host_port.to_string()});
        let slot = out.entry(key(m)).or_insert(Value::Null);
        match slot {
            Value::Array(v) => v.push(binding),
            _ => *slot = json!([binding]),
        }
    }
    Value::Object(out)
}

impl Engine {
    /// Docker's `NetworkSettings` for `rec`.
    pub(crate) fn network_settings(&self, rec: &ContainerRecord) -> Value {
        let src = read_sources(self, rec);
        let mut networks = Map::new();
        for (name, net) in &src.networks {
            let a = src.attachments.iter().find(|a| &a.network == name);
            networks.insert(name.clone(), endpoint(rec, net.as_ref(), a));
        }
        let published: Vec<PortMapping> = src
            .attachments
            .iter()
            .flat_map(|a| a.ports.iter().copied())
            .collect();
        // The top-level address fields describe the default network only (as Docker's).
        let default = networks.get(DEFAULT_NETWORK).cloned().unwrap_or_default();
        let field = |k: &str, zero: Value| default.get(k).cloned().unwrap_or(zero);
        let running = !src.attachments.is_empty() || rec.is_active();
        let (sandbox_id, sandbox_key) = if running && rec.state.pid > 0 {
            (rec.id.clone(), format!("/proc/{}/ns/net", rec.state.pid))
        } else {
            (String::new(), String::new())
        };
        json!({
            "Bridge": "",
            "SandboxID": sandbox_id,
            "SandboxKey": sandbox_key,
            "Ports": if src.bridged { ports(rec, &published) } else { json!({}) },
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": field("EndpointID", json!("")),
            "Gateway": field("Gateway", json!("")),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": field("IPAddress", json!("")),
            "IPPrefixLen": field("IPPrefixLen", json!(0)),
            "IPv6Gateway": "",
            "MacAddress": field("MacAddress", json!("")),
            "Networks": networks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ports_list_exposed_and_published() {
        let mut rec = ContainerRecord::default();
        rec.config.exposed_ports = vec!["80/tcp".into(), "53/udp".into()];
        let m = PortMapping {
            host_ip: None,
            host_port: 32768,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let local = PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080,
            ..m
        };
        let v = ports(&rec, &[m, local]);
        assert_eq!(
            v,
            json!({"53/udp": null, "80/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "32768"},
                {"HostIp": "127.0.0.1", "HostPort": "8080"}]})
        );
        let id = endpoint_id("n", "c");
        assert_eq!(id.len(), 64);
        assert_ne!(id, endpoint_id("n", "d"));
    }
}
