//! Measures `NetStore::attach` and `detach` (root), the way a `berth run --rm` process
//! would call them: each iteration opens a fresh store (a new process in real life),
//! makes a container network namespace (not timed), attaches it to a bridge network,
//! and takes it off again: `detach` while the namespace lives (`network disconnect`), or
//! `release` after it is gone (`run --rm` once the container exited). Runs in a private
//! network namespace.
//!
//! `cargo run --release -p berth-net --example attach_latency -- [ITERATIONS]`

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_net::{AttachOptions, NetConfig, NetStore, NetworkCreate, PortMapping, Protocol};
use nix::sched::{CloneFlags, unshare};

fn new_netns() -> Result<OwnedFd> {
    std::thread::spawn(|| -> Result<OwnedFd> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "{what:<40} p50 {:>7.3} ms  p90 {:>7.3} ms  (n={})",
        ms(at(50)),
        ms(at(90)),
        samples.len()
    );
}

struct Case {
    name: &'static str,
    ports: bool,
    netns_gone: bool,
}

fn measure(state: &Path, run: &Path, case: &Case, iterations: usize) -> Result<()> {
    let config = NetConfig {
        nft_table: "berth_bench".into(),
        ..NetConfig::default()
    };
    let port = PortMapping {
        host_ip: None,
        host_port: 8080,
        container_port: 80,
        protocol: Protocol::Tcp,
    };
    let ports = if case.ports { vec![port] } else { vec![] };
    let opts = AttachOptions {
        ports,
        ..AttachOptions::default()
    };
    let (mut attach, mut detach, mut close) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iterations {
        let ns = new_netns()?;
        let id = format!("c{i}");
        let store = NetStore::open_with(state, run, config.clone())?;
        let t0 = Instant::now();
        store.attach("bench", &id, ns.as_fd(), &opts)?;
        attach.push(t0.elapsed());
        if case.netns_gone {
            drop(ns);
        }
        let t1 = Instant::now();
        if case.netns_gone {
            store.release("bench", &id)?;
        } else {
            store.detach("bench", &id)?;
        }
        detach.push(t1.elapsed());
        let t2 = Instant::now();
        drop(store);
        close.push(t2.elapsed());
    }
    report(&format!("attach ({})", case.name), attach);
    report(&format!("detach/release ({})", case.name), detach);
    report(&format!("store drop ({})", case.name), close);
    Ok(())
}

fn run(iterations: usize) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).context("unshare private host netns")?;
    let state = tempfile::tempdir()?;
    // The run dir is tmpfs in production (/run/berth/net); /dev/shm stands in for it.
    let run = tempfile::tempdir_in("/dev/shm")?;
    let config = NetConfig {
        nft_table: "berth_bench".into(),
        ..NetConfig::default()
    };
    let store = NetStore::open_with(state.path(), run.path(), config)?;
    store.create_network(&NetworkCreate {
        name: "bench".into(),
        ..NetworkCreate::default()
    })?;
    drop(store);
    let cases = [
        Case {
            name: "no ports, netns gone",
            ports: false,
            netns_gone: true,
        },
        Case {
            name: "no ports, netns alive",
            ports: false,
            netns_gone: false,
        },
        Case {
            name: "1 port, netns gone",
            ports: true,
            netns_gone: true,
        },
    ];
    for case in &cases {
        measure(state.path(), run.path(), case, iterations)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let iterations = std::env::args().nth(1).map_or(Ok(100), |a| a.parse())?;
    // The private namespace is entered on a thread of its own and vanishes with it.
    std::thread::spawn(move || run(iterations))
        .join()
        .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
}
