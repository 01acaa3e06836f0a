//! `berth network create|ls|inspect|rm|connect|disconnect|prune`, the `port` listing,
//! and two hidden commands: `dns-serve` (the per-network DNS responder the engine
//! spawns) and `reset` (removes every network of an installation, for tests).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use berth_engine::berth_net::dns::{DnsConfig, DnsServer, upstreams_from_resolv_conf};
use berth_engine::berth_net::{Attachment, Network, NetworkCreate, PortMapping, Protocol};
use berth_engine::{Engine, berth_net};
use clap::Subcommand;
use serde_json::json;

use crate::Globals;
use crate::container_cmd::open_engine;

/// `berth network …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create a network.
    Create {
        /// Subnet in CIDR format (e.g. 10.89.0.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// IPv4 gateway for the subnet.
        #[arg(long)]
        gateway: Option<String>,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Driver to manage the network (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network.
    Connect {
        /// Add network-scoped alias for the container.
        #[arg(long)]
        alias: Vec<String>,
        /// IPv4 address.
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Accepted for Docker compatibility.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all unused networks.
    Prune {
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// The DNS responder of one network (spawned by berth).
    #[command(hide = true)]
    DnsServe {
        #[arg(long = "run-dir")]
        run_dir: PathBuf,
        #[arg(long)]
        network: String,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: Vec<SocketAddr>,
        /// Exit once this file (the network's record) is gone.
        #[arg(long = "network-file")]
        network_file: Option<PathBuf>,
    },
    /// Remove every network, the default one included, and berth's nftables table.
    #[command(hide = true)]
    Reset,
}

pub(crate) fn run(g: &Globals, c: NetworkCommand) -> Result<()> {
    match c {
        NetworkCommand::DnsServe {
            run_dir,
            network,
            listen,
            mut upstream,
            network_file,
        } => {
            if upstream.is_empty() {
                let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                upstream = upstreams_from_resolv_conf(&text);
            }
            let config = DnsConfig {
                run_dir,
                network,
                listen,
                upstreams: upstream,
            };
            let mut server = DnsServer::bind(&config)?;
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                let serving = s.spawn(|| server.serve(&stop));
                // The network (or the whole installation) went away without us being
                // stopped: exit instead of serving a dead network.
                while !serving.is_finished() {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    if network_file.as_ref().is_some_and(|f| !f.exists()) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                serving.join().expect("dns thread")
            })?;
            Ok(())
        }
        c => run_engine(&mut open_engine(g)?, c),
    }
}

fn run_engine(e: &mut Engine, c: NetworkCommand) -> Result<()> {
    match c {
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            driver,
            name,
        } => {
            if driver != "bridge" {
                bail!("network driver `{driver}` is not supported (only bridge)");
            }
            let subnet = subnet
                .map(|s| s.parse::<berth_net::Subnet>())
                .transpose()
                .context("parse --subnet")?;
            let gateway = gateway
                .map(|g| g.parse::<Ipv4Addr>())
                .transpose()
                .context("parse --gateway")?;
            let net = e.network_create(&NetworkCreate {
                name,
                subnet,
                gateway,
                internal,
                bridge: None,
            })?;
            println!("{}", net.id);
        }
        NetworkCommand::Ls { quiet } => {
            let nets = e.network_list()?;
            if !quiet {
                println!("{:<14} {:<20} {:<10} SCOPE", "NETWORK ID", "NAME", "DRIVER");
            }
            for n in nets {
                if quiet {
                    println!("{}", &n.id[..12]);
                } else {
                    println!("{:<14} {:<20} {:<10} local", &n.id[..12], n.name, "bridge");
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                let d = e.network_inspect(n)?;
                out.push(inspect_json(&d.network, &d.attachments));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Rm { names } => {
            for n in &names {
                e.network_remove(n)?;
                println!("{n}");
            }
        }
        NetworkCommand::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let ip = ip
                .map(|i| i.parse::<Ipv4Addr>())
                .transpose()
                .context("parse --ip")?;
            e.network_connect(&network, &container, &alias, ip)?;
        }
        NetworkCommand::Disconnect {
            network, container, ..
        } => e.network_disconnect(&network, &container)?,
        NetworkCommand::Prune { .. } => {
            let removed = e.network_prune()?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
        NetworkCommand::Reset => e.network_reset()?,
        NetworkCommand::DnsServe { .. } => unreachable!("handled by run"),
    }
    Ok(())
}

/// Docker's `network inspect` object.
fn inspect_json(n: &Network, on: &[Attachment]) -> serde_json::Value {
    let containers: serde_json::Map<String, serde_json::Value> = on
        .iter()
        .map(|a| {
            (
                a.container_id.clone(),
                json!({
                    "Name": a.name.clone().unwrap_or_default(),
                    "Aliases": a.aliases,
                    "MacAddress": a.mac,
                    "IPv4Address": format!("{}/{}", a.ip, a.prefix),
                    "Interface": a.ifname,
                    "HostInterface": a.host_veth,
                    "Ports": a.ports.iter().map(port_line).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": berth_engine::format_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(n.created)),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
        "Internal": n.internal,
        "DNS": n.dns,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": n.bridge},
    })
}

/// `80/tcp -> 127.0.0.1:8080`, as `docker port` prints.
pub(crate) fn port_line(p: &PortMapping) -> String {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    format!("{}/{proto} -> {ip}:{}", p.container_port, p.host_port)
}

/// `berth port CONTAINER`.
pub(crate) fn port(e: &mut Engine, container: &str) -> Result<()> {
    for p in e.ports(container)? {
        println!("{}", port_line(&p));
    }
    Ok(())
}
