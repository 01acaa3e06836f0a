//! One function per command, turning parsed flags into runtime library calls.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_runtime::container::{self, CreateOptions};
use berth_runtime::exec::{self, ExecOptions};
use berth_runtime::foreground;
use berth_runtime::state::StateRoot;
use oci_spec::runtime::{LinuxResources, Process};

use crate::{Cli, Command, CreateArgs, Format};

/// Runs the parsed command; returns the process exit code.
pub(crate) fn dispatch(cli: &Cli) -> Result<i32> {
    let root = StateRoot::new(&cli.root);
    match &cli.command {
        Command::Create(a) => {
            container::create(&root, &create_options(a))?;
            Ok(0)
        }
        Command::Start { id } => {
            container::start(&root, id)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => run(&root, create, *detach, *keep),
        Command::State { id } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&container::state(&root, id)?)?
            );
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            container::kill(&root, id, signal, *all)?;
            Ok(0)
        }
        Command::Delete { id, force } => {
            container::delete(&root, id, *force)?;
            Ok(0)
        }
        Command::Ps {
            id,
            format,
            ps_args,
        } => ps(&root, id, *format, ps_args),
        Command::List { format, quiet } => list(&root, *format, *quiet),
        Command::Pause { id } => {
            container::pause(&root, id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container::resume(&root, id)?;
            Ok(0)
        }
        Command::Events {
            id,
            stats,
            interval,
        } => events(&root, id, *stats, interval),
        Command::Update(a) => {
            let r = a.resources()?;
            container::update(&root, &a.id, &r)?;
            Ok(0)
        }
        Command::Spec { bundle } => spec(bundle, cli.rootless.as_deref() == Some("true")),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::defaults::features())?
            );
            Ok(0)
        }
        Command::Exec(a) => exec_cmd(&root, a),
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// `run`: create + start, then (unless detached) serve the container until it exits and
/// delete it (unless --keep). Exit code: the container's.
fn run(root: &StateRoot, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let sigfd = if detach {
        None
    } else {
        foreground::become_subreaper().context("become subreaper")?;
        Some(foreground::block_signals().context("block signals")?)
    };
    let created = container::create(root, &create_options(a))?;
    if let Err(e) = container::start(root, &a.id) {
        let _ = container::delete(root, &a.id, true);
        return Err(e.into());
    }
    let Some(sigfd) = sigfd else {
        return Ok(0);
    };
    let code = foreground::serve(created.pid, &sigfd, created.console.as_ref())
        .context("wait for the container")?;
    if container::oom_kills(root, &a.id).unwrap_or(0) > 0 {
        eprintln!(
            "berth-runtime: container `{}` hit its memory limit: the kernel's OOM killer ended a process in it",
            a.id
        );
    }
    if !keep {
        container::delete(root, &a.id, true)?;
    }
    Ok(code)
}

fn spec(bundle: &std::path::Path, rootless: bool) -> Result<i32> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("file `{}` exists; remove it first", path.display());
    }
    let spec = berth_runtime::defaults::default_spec(rootless);
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write `{}`", path.display()))?;
    Ok(0)
}

fn list(root: &StateRoot, format: Format, quiet: bool) -> Result<i32> {
    let all = container::list(root);
    if quiet {
        for s in &all {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string(&all)?),
        Format::Table => {
            println!(
                "{:<12} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &all {
                println!(
                    "{:<12} {:<8} {:<10} {:<40} {:<31} {}",
                    s["id"].as_str().unwrap_or_default(),
                    s["pid"].as_i64().unwrap_or(0),
                    s["status"].as_str().unwrap_or_default(),
                    s["bundle"].as_str().unwrap_or_default(),
                    s["created"].as_str().unwrap_or_default(),
                    s["owner"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(0)
}

/// `ps`: JSON pids, or ps(1)'s table filtered to the container's processes (as runc does).
fn ps(root: &StateRoot, id: &str, format: Format, args: &[String]) -> Result<i32> {
    let pids = container::pids(root, id)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps(1)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().with_context(|| format!("bad interval `{s}`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("bad interval `{s}`: use e.g. 500ms, 5s, 1m"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `events`: stats every interval (or once with --stats) and OOM notices, until the
/// container stops.
fn events(root: &StateRoot, id: &str, once: bool, interval: &str) -> Result<i32> {
    if once {
        println!("{}", container::stats(root, id)?);
        return Ok(0);
    }
    let every = parse_duration(interval)?;
    let mut ooms = container::oom_kills(root, id).unwrap_or(0);
    loop {
        match container::stats(root, id) {
            Ok(s) => println!("{s}"),
            Err(_) => return Ok(0),
        }
        let now = container::oom_kills(root, id).unwrap_or(ooms);
        if now > ooms {
            println!("{}", serde_json::json!({"type": "oom", "id": id}));
            ooms = now;
        }
        std::thread::sleep(every);
    }
}

/// Flags of `update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    pub id: String,
    /// A LinuxResources JSON file, or `-` for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
}

/// Bytes from `7340032`, `7m`, `1G`, `-1`.
fn parse_bytes(s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("bad size `{s}`: use bytes or a k/m/g suffix"))?;
    Ok(n * mult)
}

impl UpdateArgs {
    fn resources(&self) -> Result<LinuxResources> {
        let mut v = match &self.resources {
            Some(p) => {
                let mut text = String::new();
                if p.as_os_str() == "-" {
                    std::io::stdin().read_to_string(&mut text)?;
                } else {
                    text = std::fs::read_to_string(p)
                        .with_context(|| format!("read `{}`", p.display()))?;
                }
                serde_json::from_str::<serde_json::Value>(&text).context("parse resources JSON")?
            }
            None => serde_json::json!({}),
        };
        let mut set = |section: &str, key: &str, val: serde_json::Value| {
            if !v[section].is_object() {
                v[section] = serde_json::json!({});
            }
            v[section][key] = val;
        };
        if let Some(m) = &self.memory {
            set("memory", "limit", parse_bytes(m)?.into());
        }
        if let Some(m) = &self.memory_swap {
            set("memory", "swap", parse_bytes(m)?.into());
        }
        if let Some(m) = &self.memory_reservation {
            set("memory", "reservation", parse_bytes(m)?.into());
        }
        if let Some(x) = self.cpu_shares {
            set("cpu", "shares", x.into());
        }
        if let Some(x) = self.cpu_period {
            set("cpu", "period", x.into());
        }
        if let Some(x) = self.cpu_quota {
            set("cpu", "quota", x.into());
        }
        if let Some(x) = &self.cpuset_cpus {
            set("cpu", "cpus", x.clone().into());
        }
        if let Some(x) = &self.cpuset_mems {
            set("cpu", "mems", x.clone().into());
        }
        if let Some(x) = self.pids_limit {
            set("pids", "limit", x.into());
        }
        if let Some(x) = self.blkio_weight {
            set("blockIO", "weight", x.into());
        }
        serde_json::from_value(v).context("resources: not a valid LinuxResources object")
    }
}

/// Flags of `exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    id: String,
    /// Command and arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// A process.json with the whole process to run.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Capabilities to add to the process.
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    #[arg(long = "ignore-paused", hide = true)]
    ignore_paused: bool,
}

impl ExecArgs {
    /// The process to run: --process, or the container's own process with flags applied.
    fn process(&self, root: &StateRoot) -> Result<Process> {
        if let Some(p) = &self.process {
            let text = std::fs::read(p).with_context(|| format!("read `{}`", p.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&text);
            return serde_path_to_error::deserialize(de).map_err(|e| {
                anyhow::anyhow!(
                    "parse `{}`: field `{}`: {}",
                    p.display(),
                    e.path(),
                    e.inner()
                )
            });
        }
        if self.command.is_empty() {
            bail!("exec needs a command or --process FILE");
        }
        let saved = container::load(root, &self.id)?;
        let plan = berth_runtime::spec::load_bundle(&saved.bundle)?;
        let mut p = plan.spec.process().clone().unwrap_or_default();
        p.set_args(Some(self.command.clone()));
        p.set_terminal(Some(self.tty));
        if let Some(c) = &self.cwd {
            p.set_cwd(c.clone());
        }
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(self.env.iter().cloned());
        p.set_env(Some(env));
        if let Some(u) = &self.user {
            let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
            let user = p.user_mut();
            user.set_uid(
                uid.parse()
                    .with_context(|| format!("bad --user `{u}`: use uid[:gid]"))?,
            );
            user.set_gid(
                gid.parse()
                    .with_context(|| format!("bad --user `{u}`: use uid[:gid]"))?,
            );
        }
        if !self.additional_gids.is_empty() {
            p.user_mut()
                .set_additional_gids(Some(self.additional_gids.clone()));
        }
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        if !self.cap.is_empty() {
            add_caps(&mut p, &self.cap)?;
        }
        Ok(p)
    }
}

fn add_caps(p: &mut Process, caps: &[String]) -> Result<()> {
    let mut c = p.capabilities().clone().unwrap_or_default();
    for name in caps {
        let full = if name.to_ascii_uppercase().starts_with("CAP_") {
            name.to_ascii_uppercase()
        } else {
            format!("CAP_{}", name.to_ascii_uppercase())
        };
        let cap: oci_spec::runtime::Capability = serde_json::from_value(full.clone().into())
            .with_context(|| format!("unknown capability `{name}`"))?;
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        let (b, e, pm) = (add(c.bounding()), add(c.effective()), add(c.permitted()));
        c.set_bounding(b);
        c.set_effective(e);
        c.set_permitted(pm);
    }
    p.set_capabilities(Some(c));
    Ok(())
}

fn exec_cmd(root: &StateRoot, a: &ExecArgs) -> Result<i32> {
    let process = a.process(root)?;
    let sigfd = if a.detach {
        None
    } else {
        foreground::become_subreaper().context("become subreaper")?;
        Some(foreground::block_signals().context("block signals")?)
    };
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
    };
    let started = exec::exec(root, &a.id, &opts)?;
    match sigfd {
        None => Ok(0),
        Some(fd) => Ok(foreground::serve(
            started.pid,
            &fd,
            started.console.as_ref(),
        )?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("7m").unwrap(), 7 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("7x").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5h").is_err());
    }
}
