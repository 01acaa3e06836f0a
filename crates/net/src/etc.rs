//! The contents of a container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`,
//! as pure functions of the container's addresses and the host's resolver config. The
//! engine writes the files; nothing here touches the filesystem.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// One `/etc/hosts` line: an address and its names (`--add-host name:ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub ip: IpAddr,
    /// The names of the address.
    pub names: Vec<String>,
}

/// A parsed or generated `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<IpAddr>,
    /// The `search` domains.
    pub search: Vec<String>,
    /// The `options` words, e.g. `ndots:0`.
    pub options: Vec<String>,
}

/// Resolvers a container gets when the host has only loopback ones (Docker's choice).
const FALLBACK_NAMESERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// `/etc/hostname`: the name and a newline.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`: loopback and IPv6 boilerplate, `extra` entries (`--add-host`), then the
/// container's own addresses under its hostname (or 127.0.1.1 when it has none).
pub fn render_hosts(hostname: &str, addresses: &[Ipv4Addr], extra: &[HostsEntry]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for e in extra {
        let _ = writeln!(out, "{}\t{}", e.ip, e.names.join(" "));
    }
    if addresses.is_empty() {
        let _ = writeln!(out, "127.0.1.1\t{hostname}");
    }
    for ip in addresses {
        let _ = writeln!(out, "{ip}\t{hostname}");
    }
    out
}

/// Parses `resolv.conf` text; unknown lines and bad addresses are skipped.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => conf.search = words.map(str::to_owned).collect(),
            Some("options") => conf.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    conf
}

/// Renders `resolv.conf` text.
pub fn render_resolv_conf(conf: &ResolvConf) -> String {
    let mut out = String::new();
    for ns in &conf.nameservers {
        let _ = writeln!(out, "nameserver {ns}");
    }
    if !conf.search.is_empty() {
        let _ = writeln!(out, "search {}", conf.search.join(" "));
    }
    if !conf.options.is_empty() {
        let _ = writeln!(out, "options {}", conf.options.join(" "));
    }
    out
}

/// The choices that shape a container's `resolv.conf`.
#[derive(Debug, Clone, Default)]
pub struct ResolvChoice {
    /// `--dns`: used as they are, bypassing the network's responder.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`; the host's when empty.
    pub search: Vec<String>,
    /// `--dns-option`; the host's when empty.
    pub options: Vec<String>,
    /// The network's DNS responder (its gateway) on user-defined networks.
    pub responder: Option<Ipv4Addr>,
}

/// A container's `resolv.conf`: `--dns` if given, else the network's responder, else
/// the host's non-loopback resolvers (which a container cannot reach), else 8.8.8.8 and
/// 8.8.4.4. `--network host` callers pass the host's file through unchanged instead.
pub fn container_resolv_conf(host: &ResolvConf, choice: &ResolvChoice) -> ResolvConf {
    let nameservers = if !choice.dns.is_empty() {
        choice.dns.clone()
    } else if let Some(r) = choice.responder {
        vec![IpAddr::V4(r)]
    } else {
        let reachable: Vec<IpAddr> = host
            .nameservers
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .collect();
        if reachable.is_empty() {
            FALLBACK_NAMESERVERS
                .iter()
                .map(|ip| IpAddr::V4(*ip))
                .collect()
        } else {
            reachable
        }
    };
    let pick = |mine: &Vec<String>, hosts: &Vec<String>| {
        if mine.is_empty() {
            hosts.clone()
        } else {
            mine.clone()
        }
    };
    ResolvConf {
        nameservers,
        search: pick(&choice.search, &host.search),
        options: pick(&choice.options, &host.options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_extra_and_own_addresses() {
        let extra = [HostsEntry {
            ip: "10.1.1.1".parse().unwrap(),
            names: vec!["db".into()],
        }];
        let text = render_hosts("web", &["172.18.0.2".parse().unwrap()], &extra);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.1.1.1\tdb\n"));
        assert!(text.ends_with("172.18.0.2\tweb\n"));
        assert!(render_hosts("lonely", &[], &[]).ends_with("127.0.1.1\tlonely\n"));
        assert_eq!(render_hostname("web"), "web\n");
    }

    #[test]
    fn parses_and_renders_resolv_conf() {
        let conf = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.53\nnameserver bogus\nnameserver ::1\n\
             search a.example b.example\noptions ndots:2 edns0\n",
        );
        assert_eq!(conf.nameservers.len(), 2);
        assert_eq!(conf.search, vec!["a.example", "b.example"]);
        let text = render_resolv_conf(&conf);
        assert_eq!(
            text,
            "nameserver 10.0.0.53\nnameserver ::1\nsearch a.example b.example\noptions ndots:2 edns0\n"
        );
        assert_eq!(parse_resolv_conf(&text), conf);
    }

    #[test]
    fn container_resolvers_follow_precedence() {
        let host = parse_resolv_conf("nameserver 127.0.0.53\nnameserver 10.0.0.53\nsearch lan\n");
        let plain = container_resolv_conf(&host, &ResolvChoice::default());
        assert_eq!(
            plain.nameservers,
            vec!["10.0.0.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(plain.search, vec!["lan"]);

        let responder = ResolvChoice {
            responder: Some("172.18.0.1".parse().unwrap()),
            ..Default::default()
        };
        let r = container_resolv_conf(&host, &responder);
        assert_eq!(r.nameservers, vec!["172.18.0.1".parse::<IpAddr>().unwrap()]);

        let dns = ResolvChoice {
            dns: vec!["9.9.9.9".parse().unwrap()],
            ..responder
        };
        assert_eq!(container_resolv_conf(&host, &dns).nameservers, dns.dns);

        let only_loopback = parse_resolv_conf("nameserver 127.0.0.53\n");
        let f = container_resolv_conf(&only_loopback, &ResolvChoice::default());
        assert_eq!(f.nameservers.len(), 2);
    }
}
