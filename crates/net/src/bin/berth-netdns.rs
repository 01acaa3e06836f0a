//! `berth-netdns`: the DNS responder of one user-defined network, spawned by the engine.
//!
//! Usage: `berth-netdns --run-dir DIR --network NAME --listen IP:PORT [--upstream IP:PORT]...`
//! Without `--upstream`, the nameservers of the host's `/etc/resolv.conf` are used.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use berth_net::dns::{DnsConfig, DnsServer, upstreams_from_resolv_conf};

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<DnsConfig, String> {
    let (mut run_dir, mut network, mut listen) = (None, None, None);
    let mut upstreams = Vec::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("missing value after `{flag}`"))?;
        let addr = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("parse `{v}`: {e}"))
        };
        match flag.as_str() {
            "--run-dir" => run_dir = Some(PathBuf::from(value)),
            "--network" => network = Some(value),
            "--listen" => listen = Some(addr(&value)?),
            "--upstream" => upstreams.push(addr(&value)?),
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if upstreams.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        upstreams = upstreams_from_resolv_conf(&text);
    }
    Ok(DnsConfig {
        run_dir: run_dir.ok_or("missing --run-dir")?,
        network: network.ok_or("missing --network")?,
        listen: listen.ok_or("missing --listen")?,
        upstreams,
    })
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-netdns: {e}");
            return ExitCode::from(2);
        }
    };
    let never = AtomicBool::new(false);
    let result = DnsServer::bind(&config).and_then(|mut s| s.serve(&never));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("berth-netdns: {msg}");
            ExitCode::FAILURE
        }
    }
}
