//! runtime-cycle: the same busybox bundle run by several OCI runtimes side by side.
//! Interleaved create+start+wait+delete cycles of `true` (ms per cycle, ratios), the
//! runtime's peak RSS during `create`, and the smallest memory limit `true` runs under.
//! Must run as root. See docs/PERFORMANCE.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_bench::bundle::{Bundle, ConfigTweaks};
use berth_bench::cycle::{self, Mode, Sample};
use berth_bench::memlimit::{self, MinLimit, Search};
use berth_bench::order::Shuffler;
use berth_bench::report::{self, Row};
use berth_bench::runtime::{self, Runtime};
use berth_bench::{cgroup, seccomp_profile, stats};
use clap::{Parser, ValueEnum};

/// Benchmark OCI runtimes on one busybox bundle.
#[derive(Debug, Parser)]
struct Args {
    /// A runtime as NAME=PATH (repeatable). Default: berth=target/release/berth-runtime
    /// (if built), runc and crun from PATH. Ratios are against the ones named crun/runc.
    #[arg(long = "runtime", value_name = "NAME=PATH")]
    runtimes: Vec<String>,
    /// Measured cycles per runtime (and variant).
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// Unmeasured cycles per runtime first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// create-start: create, start, wait (pidfd), delete. run: one foreground `run`.
    #[arg(long, value_enum, default_value_t = CycleMode::CreateStart)]
    mode: CycleMode,
    /// Also measure every runtime with this seccomp profile in config.json: an OCI
    /// `linux.seccomp` object, or a Docker-format profile (e.g. Docker's default, or
    /// /usr/share/containers/seccomp.json) resolved for this host and the bundle's caps.
    #[arg(long, value_name = "FILE")]
    seccomp: Option<PathBuf>,
    /// Runtimes (by NAME) run in a private mount namespace without
    /// /sys/fs/cgroup/unified (crun refuses a hybrid cgroup layout).
    #[arg(long = "hide-unified", value_name = "NAME", default_values_t = ["crun".to_owned()])]
    hide_unified: Vec<String>,
    /// Skip the memory-limit bisection.
    #[arg(long)]
    no_memory: bool,
    /// Resolution of the memory-limit bisection, KiB.
    #[arg(long, default_value_t = 16)]
    memory_step_kib: u64,
    /// Largest memory limit tried, MiB.
    #[arg(long, default_value_t = 64)]
    memory_ceiling_mib: u64,
    /// Runtime that writes the base config.json (`NAME spec`). Default: runc's spec.
    #[arg(long, value_name = "PATH", default_value = "runc")]
    spec_from: PathBuf,
    /// Seed of the per-round shuffle of the runtimes' order (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Per-command timeout, seconds.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CycleMode {
    CreateStart,
    Run,
}

/// A runtime in one variant, with its bundle dir and what it measured.
struct Lane<'a> {
    rt: &'a Runtime,
    variant: &'static str,
    tweaks: ConfigTweaks,
    dir: PathBuf,
    samples: Vec<Sample>,
    failures: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        bail!("runtime-cycle needs root (it creates containers)");
    }
    berth_bench::become_subreaper().context("become child subreaper")?;
    let result = bench(&args);
    let left = cgroup::remove_own_parent();
    if !left.is_empty() {
        eprintln!("warning: cgroups left behind: {left:?}");
    }
    print!("{}", result?);
    Ok(())
}

fn bench(args: &Args) -> anyhow::Result<String> {
    let mode = match args.mode {
        CycleMode::CreateStart => Mode::CreateStart,
        CycleMode::Run => Mode::Run,
    };
    let timeout = Duration::from_secs(args.timeout);
    let work = tempfile::Builder::new().prefix("berth-bench.").tempdir()?;
    let script = repo_dir().join("scripts/busybox-bundle.sh");
    let bundle = Bundle::make(&script, &work.path().join("base"), &args.spec_from)
        .context("make the busybox bundle")?;
    let runtimes = make_runtimes(args, timeout)?;
    let seccomp = load_seccomp(args, &bundle)?;
    let mut lanes = make_lanes(&runtimes, seccomp.as_ref(), work.path());
    for lane in &lanes {
        bundle.write_config(&lane.dir, &lane.tweaks)?;
    }
    let floor = runtime::spawn_floor_kib(Path::new("/bin/busybox"), &["true"]).unwrap_or(0);
    eprintln!(
        "ru_maxrss floor (fork of this process, then static `busybox true`): {floor} KiB; \
         this process's RssAnon (what a fork copies): {} KiB",
        rss_anon_kib().unwrap_or(0)
    );
    let load_before = loadavg();
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
    });
    measure(&mut lanes, args, mode, timeout, seed);
    let load_after = loadavg();
    let mut rows: Vec<Row> = lanes.iter().map(row_of).collect();
    if !args.no_memory {
        bisect_all(&lanes, &mut rows, &bundle, args, mode, timeout)?;
    }
    let rss_of = if mode == Mode::Run { "run" } else { "create" };
    let mut out = report::render(&rows, rss_of);
    out.push('\n');
    out.push_str(&report::render_phases(&rows));
    out.push_str(&format!(
        "\n{} cycles per row (interleaved in shuffled order, seed {seed}, after {} warm-up), \
         mode {:?}, ru_maxrss floor {:.2} MiB, load average before/after: {load_before} / \
         {load_after}\n",
        args.cycles,
        args.warmup,
        args.mode,
        floor as f64 / 1024.0
    ));
    Ok(out)
}

/// Interleaves the lanes: cycle i of every lane (in a shuffled order), then cycle i + 1.
fn measure(lanes: &mut [Lane<'_>], args: &Args, mode: Mode, timeout: Duration, seed: u64) {
    let mut shuffler = Shuffler::new(seed);
    for i in 0..args.warmup + args.cycles {
        for k in shuffler.permutation(lanes.len()) {
            let lane = &mut lanes[k];
            let id = format!("{}-{i}", lane.variant);
            match cycle::run_cycle(lane.rt, &lane.dir, &id, mode, timeout) {
                Ok(s) if s.exit_code == 0 => {
                    if i >= args.warmup {
                        lane.samples.push(s);
                    }
                }
                Ok(s) => {
                    lane.failures += 1;
                    eprintln!("{} {}: `true` exited {}", lane.rt.name(), id, s.exit_code);
                }
                Err(e) => {
                    lane.failures += 1;
                    eprintln!("{} {}: {:#}", lane.rt.name(), id, anyhow::Error::from(e));
                }
            }
        }
        if (i + 1) % 20 == 0 {
            eprintln!("cycle {}/{}", i + 1, args.warmup + args.cycles);
        }
    }
}

fn bisect_all(
    lanes: &[Lane<'_>],
    rows: &mut [Row],
    bundle: &Bundle,
    args: &Args,
    mode: Mode,
    timeout: Duration,
) -> anyhow::Result<()> {
    let search = Search {
        step: args.memory_step_kib << 10,
        ceiling: args.memory_ceiling_mib << 20,
        confirm: 3,
        mode,
        timeout,
    };
    for (lane, row) in lanes.iter().zip(rows.iter_mut()) {
        let dir = lane.dir.with_extension("mem");
        let name = lane.rt.name().to_owned();
        let mut log = |limit: u64, ok: bool| {
            eprintln!(
                "{name} {}: limit {} KiB -> {}",
                lane.variant,
                limit >> 10,
                ok
            );
        };
        let found =
            memlimit::find_min_limit(lane.rt, bundle, &dir, &lane.tweaks, &search, &mut log)?;
        row.min_limit = Some(found);
        if let MinLimit::Above(_) = found {
            eprintln!("{name}: `true` fails even at the ceiling");
        }
    }
    Ok(())
}

fn row_of(lane: &Lane<'_>) -> Row {
    let elapsed: Vec<Duration> = lane.samples.iter().map(|s| s.elapsed).collect();
    let rss: Vec<u64> = lane.samples.iter().map(|s| s.maxrss_kib).collect();
    Row {
        runtime: lane.rt.name().to_owned(),
        variant: lane.variant.to_owned(),
        summary: stats::summarize(&elapsed),
        failures: lane.failures,
        rss_median_kib: stats::median_u64(&rss),
        rss_max_kib: rss.iter().max().copied(),
        min_limit: None,
        phase_medians_ms: phase_medians(&lane.samples),
    }
}

fn phase_medians(samples: &[Sample]) -> Option<[f64; 4]> {
    let phases: Vec<_> = samples.iter().filter_map(|s| s.phases).collect();
    if phases.is_empty() {
        return None;
    }
    let median = |f: fn(&cycle::Phases) -> Duration| {
        let v: Vec<Duration> = phases.iter().map(f).collect();
        stats::summarize(&v).map_or(0.0, |s| s.median_ms)
    };
    Some([
        median(|p| p.create),
        median(|p| p.start),
        median(|p| p.wait),
        median(|p| p.delete),
    ])
}

fn make_runtimes(args: &Args, timeout: Duration) -> anyhow::Result<Vec<Runtime>> {
    let specs = if args.runtimes.is_empty() {
        default_runtimes()
    } else {
        args.runtimes
            .iter()
            .map(|s| parse_runtime(s))
            .collect::<anyhow::Result<_>>()?
    };
    let mut out = Vec::new();
    for (name, path) in specs {
        let hide = args.hide_unified.contains(&name);
        let rt = Runtime::new(&name, &path, hide, timeout)?;
        eprintln!(
            "runtime {name}: {}{}",
            path.display(),
            if rt.hides_unified() {
                " (mount ns without /sys/fs/cgroup/unified)"
            } else {
                ""
            }
        );
        out.push(rt);
    }
    Ok(out)
}

fn load_seccomp(args: &Args, bundle: &Bundle) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(path) = &args.seccomp else {
        return Ok(None);
    };
    let host = seccomp_profile::Host::current(bundle.bounding_caps());
    let profile = seccomp_profile::load(path, &host)?;
    let rules = profile["syscalls"].as_array().map_or(0, Vec::len);
    eprintln!(
        "seccomp profile {}: {rules} rules for this host",
        path.display()
    );
    Ok(Some(profile))
}

fn make_lanes<'a>(
    runtimes: &'a [Runtime],
    seccomp: Option<&serde_json::Value>,
    work: &Path,
) -> Vec<Lane<'a>> {
    let mut variants: Vec<(&'static str, Option<serde_json::Value>)> = vec![("plain", None)];
    if let Some(p) = seccomp {
        variants.push(("seccomp", Some(p.clone())));
    }
    let parent = cgroup::parent_name();
    let mut lanes = Vec::new();
    for (variant, profile) in &variants {
        for rt in runtimes {
            let tag = format!("{}-{variant}", rt.name());
            lanes.push(Lane {
                rt,
                variant,
                tweaks: ConfigTweaks {
                    cgroups_path: format!("/{parent}/{tag}"),
                    memory_limit: None,
                    seccomp: profile.clone(),
                },
                dir: work.join(&tag),
                samples: Vec::new(),
                failures: 0,
            });
        }
    }
    lanes
}

fn parse_runtime(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let Some((name, path)) = spec.split_once('=') else {
        bail!("runtime `{spec}` is not NAME=PATH");
    };
    Ok((name.to_owned(), resolve(Path::new(path))?))
}

fn default_runtimes() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut candidates = vec![repo_dir().join("target/release/berth-runtime")];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release/berth-runtime"));
    }
    if let Some(berth) = candidates.into_iter().find(|p| p.is_file()) {
        out.push(("berth".to_owned(), berth));
    }
    for name in ["runc", "crun"] {
        if let Ok(p) = resolve(Path::new(name)) {
            out.push((name.to_owned(), p));
        }
    }
    out
}

/// An absolute path for `p`, looked up in PATH when it has no slash.
fn resolve(p: &Path) -> anyhow::Result<PathBuf> {
    if p.components().count() > 1 {
        return Ok(std::path::absolute(p)?);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
        .with_context(|| format!("`{}` not found in PATH", p.display()))
}

/// This process's anonymous resident memory, from /proc/self/status.
fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 1-minute load average (other work on the machine skews the times).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
