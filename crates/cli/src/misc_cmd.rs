//! `stats`, `version`, `info` and `system df`.

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_engine::Engine;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::Globals;
use crate::container_cmd::open_engine;
use crate::ps_fmt::print_table;

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    no_stream: bool,
    /// Containers (default: all running).
    containers: Vec<String>,
}

/// `berth system …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SystemCommand {
    /// Show disk usage.
    Df,
    /// Display system-wide information.
    Info,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

fn cpu_total(v: &Value) -> u64 {
    v["cpu"]["usage"]["total"].as_u64().unwrap_or(0)
}

fn sample_rows(e: &mut Engine, names: &[String]) -> Result<Vec<Vec<String>>> {
    let first: Vec<(String, u64)> = names
        .iter()
        .filter_map(|n| e.stats(n).ok().map(|(_, v)| (n.clone(), cpu_total(&v))))
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let elapsed = t0.elapsed().as_nanos() as f64;
    let mut rows = vec![
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for (n, c0) in first {
        let Ok((rec, v)) = e.stats(&n) else { continue };
        let cpu = (cpu_total(&v).saturating_sub(c0)) as f64 / elapsed * 100.0;
        let usage = v["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
        let cache = v["memory"]["cache"].as_u64().unwrap_or(0);
        let used = usage.saturating_sub(cache);
        let host_mem = host_memory();
        let limit = v["memory"]["usage"]["limit"]
            .as_u64()
            .unwrap_or(0)
            .min(host_mem);
        let pct = if limit > 0 {
            used as f64 / limit as f64 * 100.0
        } else {
            0.0
        };
        rows.push(vec![
            rec.short_id().to_string(),
            rec.name.clone(),
            format!("{cpu:.2}%"),
            format!("{} / {}", human_bytes(used), human_bytes(limit)),
            format!("{pct:.2}%"),
            v["pids"]["current"].as_u64().unwrap_or(0).to_string(),
        ]);
    }
    Ok(rows)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |k| k * 1024)
}

pub(crate) fn stats(g: &Globals, a: &StatsArgs) -> Result<()> {
    let mut e = open_engine(g)?;
    loop {
        let names: Vec<String> = if a.containers.is_empty() {
            e.list()?
                .into_iter()
                .filter(|r| r.is_active())
                .map(|r| r.id)
                .collect()
        } else {
            for n in &a.containers {
                e.stats(n)?;
            }
            a.containers.clone()
        };
        let rows = sample_rows(&mut e, &names)?;
        if !a.no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print_table(&rows);
        if a.no_stream {
            return Ok(());
        }
    }
}

pub(crate) fn version() {
    println!("Client: berth");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(
        " OS/Arch:    {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!(" Daemonless: true (one monitor process per running container)");
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

pub(crate) fn system(g: &Globals, c: &SystemCommand) -> Result<()> {
    let mut e = open_engine(g)?;
    let recs = e.list()?;
    let running = recs.iter().filter(|r| r.is_active()).count();
    let images = e.image_store()?.list()?;
    match c {
        SystemCommand::Info => {
            println!("Containers: {}", recs.len());
            println!(" Running: {running}");
            println!(" Stopped: {}", recs.len() - running);
            println!("Images: {}", images.len());
            println!("Storage Driver: overlay");
            println!("Logging Driver: json-file");
            println!(
                "Cgroup Version: {}",
                if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                    2
                } else {
                    1
                }
            );
            println!("Runtime: berth-runtime (library)");
            println!("Root Dir: {}", g.root.display());
            println!("Run Root: {}", g.runroot.display());
        }
        SystemCommand::Df => {
            let img_size: u64 = images.iter().map(|i| i.record.size).sum();
            let ctr_size: u64 = recs
                .iter()
                .map(|r| dir_size(&e.container_dir(&r.id).join("upper")))
                .sum();
            let vols = e.volume_list()?;
            let vol_size: u64 = vols.iter().map(|v| dir_size(&v.mountpoint)).sum();
            let vols_used = vols.iter().filter(|v| !v.used_by.is_empty()).count();
            print_table(&[
                ["TYPE", "TOTAL", "ACTIVE", "SIZE"]
                    .map(str::to_string)
                    .to_vec(),
                vec![
                    "Images".into(),
                    images.len().to_string(),
                    String::new(),
                    human_bytes(img_size),
                ],
                vec![
                    "Containers".into(),
                    recs.len().to_string(),
                    running.to_string(),
                    human_bytes(ctr_size),
                ],
                vec![
                    "Local Volumes".into(),
                    vols.len().to_string(),
                    vols_used.to_string(),
                    human_bytes(vol_size),
                ],
            ]);
        }
    }
    Ok(())
}

/// `completion SHELL`: the completion script on stdout.
pub(crate) fn completion(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    use std::io::Write;
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "berth", &mut script);
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(&script);
}
