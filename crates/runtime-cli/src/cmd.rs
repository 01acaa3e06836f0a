//! One function per command, turning parsed flags into runtime library calls.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_runtime::container::{self, CreateOptions};
use berth_runtime::exec::{self, ExecOptions};
use berth_runtime::foreground;
use berth_runtime::state::StateRoot;
use oci_spec::runtime::{LinuxResources, Process};

use crate::args::{ArgsError, Parsed};

/// `--format` of ps and list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

fn format_of(p: &Parsed) -> Result<Format> {
    match p.get("format").unwrap_or("table") {
        "table" => Ok(Format::Table),
        "json" => Ok(Format::Json),
        other => Err(ArgsError::Value {
            flag: "format".into(),
            value: other.into(),
        }
        .into()),
    }
}

/// Runs the parsed command; returns the process exit code.
pub(crate) fn dispatch(p: &Parsed) -> Result<i32> {
    let root = StateRoot::new(p.get("root").unwrap_or("/run/berth-runtime"));
    let id = || p.positional(0, "a container id");
    match p.command.unwrap_or_default() {
        "create" => {
            container::create(&root, &create_options(p)?)?;
        }
        "start" => container::start(&root, id()?)?,
        "run" => return run(&root, p),
        "state" => println!(
            "{}",
            serde_json::to_string_pretty(&container::state(&root, id()?)?)?
        ),
        "kill" => {
            let sig = p.positionals.get(1).map_or("SIGTERM", String::as_str);
            container::kill(&root, id()?, sig, p.on("all"))?;
        }
        "delete" => container::delete(&root, id()?, p.on("force"))?,
        "ps" => {
            return ps(
                &root,
                id()?,
                format_of(p)?,
                p.positionals.get(1..).unwrap_or_default(),
            );
        }
        "list" => return list(&root, format_of(p)?, p.on("quiet")),
        "pause" => container::pause(&root, id()?)?,
        "resume" => container::resume(&root, id()?)?,
        "events" => {
            return events(
                &root,
                id()?,
                p.on("stats"),
                p.get("interval").unwrap_or("5s"),
            );
        }
        "update" => container::update(&root, id()?, &resources(p)?)?,
        "spec" => return spec(Path::new(p.get("bundle").unwrap_or(".")), p.on("rootless")),
        "features" => println!(
            "{}",
            serde_json::to_string_pretty(&berth_runtime::defaults::features())?
        ),
        "exec" => return exec_cmd(&root, p),
        "init" => {
            let args = &p.positionals;
            let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
            return Ok(berth_runtime::reaper::run(args)?);
        }
        other => return Err(ArgsError::UnknownCommand(other.into()).into()),
    }
    Ok(0)
}

fn create_options(p: &Parsed) -> Result<CreateOptions> {
    Ok(CreateOptions {
        id: p.positional(0, "a container id")?.to_string(),
        bundle: PathBuf::from(p.get("bundle").unwrap_or(".")),
        pid_file: p.get("pid-file").map(PathBuf::from),
        console_socket: p.get("console-socket").map(PathBuf::from),
        no_pivot: p.on("no-pivot"),
        no_new_keyring: p.on("no-new-keyring"),
        preserve_fds: p.num("preserve-fds")?.unwrap_or(0),
        spec: None,
    })
}

/// `run`: create + start, then (unless detached) serve the container until it exits and
/// delete it (unless --keep). Exit code: the container's.
fn run(root: &StateRoot, p: &Parsed) -> Result<i32> {
    let opts = create_options(p)?;
    let sigfd = if p.on("detach") {
        None
    } else {
        foreground::become_subreaper().context("become subreaper")?;
        Some(foreground::block_signals().context("block signals")?)
    };
    let created = container::create(root, &opts)?;
    if let Err(e) = container::start(root, &opts.id) {
        let _ = container::delete(root, &opts.id, true);
        return Err(e.into());
    }
    let Some(sigfd) = sigfd else {
        return Ok(0);
    };
    let code = foreground::serve(created.pid, &sigfd, created.console.as_ref())
        .context("wait for the container")?;
    if container::oom_kills(root, &opts.id).unwrap_or(0) > 0 {
        eprintln!(
            "berth-runtime: container `{}` hit its memory limit: the kernel's OOM killer ended a process in it",
            opts.id
        );
    }
    if !p.on("keep") {
        container::delete(root, &opts.id, true)?;
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

/// `update`'s resources: a JSON file (or stdin) with the flag forms applied on top.
fn resources(p: &Parsed) -> Result<LinuxResources> {
    let mut v = match p.get("resources") {
        Some(path) => {
            let mut text = String::new();
            if path == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path).with_context(|| format!("read `{path}`"))?;
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
    for (flag, section, key) in [
        ("memory", "memory", "limit"),
        ("memory-swap", "memory", "swap"),
        ("memory-reservation", "memory", "reservation"),
    ] {
        if let Some(m) = p.get(flag) {
            set(section, key, parse_bytes(m)?.into());
        }
    }
    for (flag, section, key) in [
        ("cpu-shares", "cpu", "shares"),
        ("cpu-period", "cpu", "period"),
        ("cpu-quota", "cpu", "quota"),
        ("pids-limit", "pids", "limit"),
        ("blkio-weight", "blockIO", "weight"),
    ] {
        if let Some(n) = p.num::<i64>(flag)? {
            set(section, key, n.into());
        }
    }
    for (flag, key) in [("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")] {
        if let Some(x) = p.get(flag) {
            set("cpu", key, x.into());
        }
    }
    serde_json::from_value(v).context("resources: not a valid LinuxResources object")
}

/// The process `exec` runs: --process, or the container's own process with the flags
/// and command applied.
fn exec_process(root: &StateRoot, p: &Parsed) -> Result<Process> {
    if let Some(path) = p.get("process") {
        let text = std::fs::read(path).with_context(|| format!("read `{path}`"))?;
        let de = &mut serde_json::Deserializer::from_slice(&text);
        return serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("parse `{path}`: field `{}`: {}", e.path(), e.inner()));
    }
    let command = p.positionals.get(1..).unwrap_or_default();
    if command.is_empty() {
        bail!("exec needs a command or --process FILE");
    }
    let saved = container::load(root, p.positional(0, "a container id")?)?;
    let plan = berth_runtime::spec::load_bundle(&saved.bundle)?;
    let mut proc = plan.spec.process().clone().unwrap_or_default();
    proc.set_args(Some(command.to_vec()));
    proc.set_terminal(Some(p.on("tty")));
    if let Some(c) = p.get("cwd") {
        proc.set_cwd(PathBuf::from(c));
    }
    let mut env = proc.env().clone().unwrap_or_default();
    env.extend(p.all("env"));
    proc.set_env(Some(env));
    if let Some(u) = p.get("user") {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let bad = || format!("bad --user `{u}`: use uid[:gid]");
        let user = proc.user_mut();
        user.set_uid(uid.parse().with_context(bad)?);
        user.set_gid(gid.parse().with_context(bad)?);
    }
    let gids = p.all("additional-gids");
    if !gids.is_empty() {
        let gids: Result<Vec<u32>, _> = gids.iter().map(|g| g.parse()).collect();
        proc.user_mut()
            .set_additional_gids(Some(gids.context("bad --additional-gids")?));
    }
    if p.on("no-new-privs") {
        proc.set_no_new_privileges(Some(true));
    }
    let caps = p.all("cap");
    if !caps.is_empty() {
        add_caps(&mut proc, &caps)?;
    }
    Ok(proc)
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

fn exec_cmd(root: &StateRoot, p: &Parsed) -> Result<i32> {
    let process = exec_process(root, p)?;
    let id = p.positional(0, "a container id")?;
    let sigfd = if p.on("detach") {
        None
    } else {
        foreground::become_subreaper().context("become subreaper")?;
        Some(foreground::block_signals().context("block signals")?)
    };
    let opts = ExecOptions {
        process,
        console_socket: p.get("console-socket").map(PathBuf::from),
        pid_file: p.get("pid-file").map(PathBuf::from),
        preserve_fds: p.num("preserve-fds")?.unwrap_or(0),
    };
    let started = exec::exec(root, id, &opts)?;
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
