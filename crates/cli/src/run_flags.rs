//! The flags of `run` and `create`, and their translation into the engine's
//! `CreateRequest` (sizes, cpus, ulimits, volumes, mounts, tmpfs, restart policies and
//! security options parsed with Docker's syntax and messages).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use berth_engine::{CreateRequest, HostConfig, MountPoint, RestartPolicy, Ulimit};
use clap::Args;

/// Flags shared by `run` and `create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Print help (`-h` is `--hostname`, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Bind mount a volume (SRC:DST[:ro] or NAME:DST[:ro]).
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…[,readonly]).
    #[arg(long)]
    mount: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|:rw]).
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Mount a tmpfs directory (DST[:OPTIONS]).
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Memory limit.
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    cpus: Option<String>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit")]
    pids_limit: Option<String>,
    /// Ulimit options (name=soft[:hard]).
    #[arg(long)]
    ulimit: Vec<String>,
    /// Add Linux capabilities.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    privileged: bool,
    /// Security options (seccomp=PROFILE|unconfined, no-new-privileges).
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// PID namespace to use (host, container:<name|id>).
    #[arg(long)]
    pid: Option<String>,
    /// IPC mode to use (host, private, container:<name|id>).
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace to use (host).
    #[arg(long)]
    uts: Option<String>,
    /// Connect a container to a network (bridge, NAME, none, host, container:<name|id>).
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long)]
    ip: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long)]
    dns: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto]).
    #[arg(short, long)]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port.
    #[arg(long)]
    expose: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    init: bool,
    /// Restart policy (no, on-failure[:max-retries], always, unless-stopped).
    #[arg(long, default_value = "no")]
    restart: String,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u32>,
    /// Set meta data on a container.
    #[arg(short, long)]
    label: Vec<String>,
    /// Logging driver for the container (json-file, none).
    #[arg(long = "log-driver", default_value = "json-file")]
    log_driver: String,
    /// Pull image before running (missing, always, never).
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Image to run.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn invalid(value: &str, flag: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "invalid argument \"{value}\" for \"{flag}\" flag: {why}\nSee 'berth run --help'."
    )
}

/// Docker's RAMInBytes: `7m`, `1g`, `512k`, `1024`, with an optional `b`.
pub(crate) fn parse_size(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult): (&str, i64) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

fn size_flag(v: &Option<String>, flag: &str) -> Result<i64> {
    match v.as_deref() {
        None => Ok(0),
        Some("-1") => Ok(-1),
        Some(s) => parse_size(s).ok_or_else(|| invalid(s, flag, format!("invalid size: '{s}'"))),
    }
}

fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| invalid(s, "--ulimit", "expected name=soft[:hard]"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |x: &str| -> Result<u64> {
        if x == "-1" || x == "unlimited" {
            return Ok(u64::MAX);
        }
        x.parse()
            .map_err(|_| invalid(s, "--ulimit", format!("invalid value `{x}`")))
    };
    Ok(Ulimit {
        name: name.to_string(),
        soft: num(soft)?,
        hard: num(hard)?,
    })
}

fn parse_volume(s: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => bail!(invalid(s, "-v, --volume", "invalid volume specification")),
    };
    if !dst.starts_with('/') {
        bail!(invalid(
            s,
            "-v, --volume",
            format!("invalid mount path: '{dst}' mount path must be absolute")
        ));
    }
    let read_only = opts.split(',').any(|o| o == "ro");
    let (ty, source, anonymous) = if src.is_empty() {
        ("volume", berth_engine_id(), true)
    } else if src.starts_with('/') {
        ("bind", src.to_string(), false)
    } else {
        ("volume", src.to_string(), false)
    };
    if ty == "bind" && !Path::new(src).exists() {
        std::fs::create_dir_all(src).with_context(|| format!("create bind source `{src}`"))?;
    }
    // `nocopy`: the volume is not filled with the image's content at `dst`.
    let no_copy = ty == "volume" && opts.split(',').any(|o| o == "nocopy");
    Ok(MountPoint {
        r#type: ty.into(),
        source,
        destination: dst.to_string(),
        read_only,
        options: if no_copy {
            vec!["nocopy".into()]
        } else {
            vec![]
        },
        anonymous,
    })
}

fn berth_engine_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_mount(s: &str) -> Result<MountPoint> {
    let mut m = MountPoint {
        r#type: "volume".into(),
        source: String::new(),
        destination: String::new(),
        read_only: false,
        options: vec![],
        anonymous: false,
    };
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        match k {
            "type" => m.r#type = v.to_string(),
            "source" | "src" => m.source = v.to_string(),
            "target" | "destination" | "dst" => m.destination = v.to_string(),
            "readonly" | "ro" => m.read_only = v != "false" && v != "0",
            "tmpfs-size" => m.options.push(format!("size={v}")),
            "tmpfs-mode" => m.options.push(format!("mode={v}")),
            "volume-nocopy" if v != "false" && v != "0" => m.options.push("nocopy".into()),
            "volume-nocopy" => {}
            _ => bail!(invalid(s, "--mount", format!("unexpected key '{k}'"))),
        }
    }
    if !["bind", "volume", "tmpfs"].contains(&m.r#type.as_str()) {
        bail!(invalid(
            s,
            "--mount",
            format!("invalid mount type '{}'", m.r#type)
        ));
    }
    if !m.destination.starts_with('/') {
        bail!(invalid(
            s,
            "--mount",
            "target is required and must be absolute"
        ));
    }
    if m.r#type == "bind" && !Path::new(&m.source).exists() {
        bail!(invalid(
            s,
            "--mount",
            format!("bind source path does not exist: {}", m.source)
        ));
    }
    if m.r#type == "volume" && m.source.is_empty() {
        m.source = berth_engine_id();
        m.anonymous = true;
    }
    Ok(m)
}

fn parse_tmpfs(s: &str) -> MountPoint {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    MountPoint {
        r#type: "tmpfs".into(),
        source: String::new(),
        destination: dst.to_string(),
        read_only: false,
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
        anonymous: false,
    }
}

fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    if !["no", "on-failure", "always", "unless-stopped"].contains(&name) {
        bail!(invalid(
            s,
            "--restart",
            format!("invalid restart policy '{name}'")
        ));
    }
    if !count.is_empty() && name != "on-failure" {
        bail!(invalid(
            s,
            "--restart",
            "maximum retry count cannot be used with this policy"
        ));
    }
    let maximum_retry_count = if count.is_empty() {
        0
    } else {
        count
            .parse()
            .map_err(|_| invalid(s, "--restart", "invalid retry count"))?
    };
    Ok(RestartPolicy {
        name: name.into(),
        maximum_retry_count,
    })
}

/// A namespace mode: one of `plain`, or `container:<name|id>` (not for `--uts`).
fn check_mode(flag: &str, v: &str, plain: &[&str]) -> Result<()> {
    let container = flag != "--uts" && v.strip_prefix("container:").is_some_and(|c| !c.is_empty());
    if plain.contains(&v) || container {
        return Ok(());
    }
    bail!(invalid(v, flag, format!("invalid {} mode", &flag[2..])))
}

fn read_env_files(files: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("open env file `{f}`"))?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains('=') {
                out.push(line.to_string());
            } else if let Ok(v) = std::env::var(line) {
                out.push(format!("{line}={v}"));
            }
        }
    }
    Ok(out)
}

fn env_value(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        std::env::var(e)
            .map(|v| format!("{e}={v}"))
            .unwrap_or_else(|_| e.to_string())
    }
}

impl CreateArgs {
    fn security(&self, h: &mut HostConfig) -> Result<()> {
        for o in &self.security_opt {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
            match k {
                "no-new-privileges" => h.no_new_privileges = v != "false",
                "seccomp" if v == "unconfined" => h.seccomp = Some("unconfined".into()),
                "seccomp" => {
                    let text = std::fs::read_to_string(v)
                        .with_context(|| format!("opening seccomp profile ({v}) failed"))?;
                    h.seccomp = Some(text);
                }
                "label" | "apparmor" => {}
                _ => bail!(invalid(o, "--security-opt", "invalid --security-opt")),
            }
        }
        Ok(())
    }

    fn host_config(&self, detach: bool) -> Result<HostConfig> {
        let mut h = HostConfig {
            read_only_rootfs: self.read_only,
            memory: size_flag(&self.memory, "-m, --memory")?,
            memory_swap: size_flag(&self.memory_swap, "--memory-swap")?,
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            pid_mode: self.pid.clone().unwrap_or_default(),
            ipc_mode: self.ipc.clone().unwrap_or_default(),
            uts_mode: self.uts.clone().unwrap_or_default(),
            network_mode: self.network.clone().unwrap_or_default(),
            init: self.init,
            restart_policy: parse_restart(&self.restart)?,
            auto_remove: self.rm,
            log_driver: self.log_driver.clone(),
            ..Default::default()
        };
        if h.memory != 0 && h.memory < 6 << 20 {
            bail!("Minimum memory limit allowed is 6MB");
        }
        if let Some(c) = &self.cpus {
            let n: f64 = c
                .parse()
                .map_err(|_| invalid(c, "--cpus", "invalid number"))?;
            h.nano_cpus = (n * 1e9) as i64;
        }
        if let Some(c) = &self.cpu_shares {
            h.cpu_shares = c
                .parse()
                .map_err(|_| invalid(c, "-c, --cpu-shares", "invalid number"))?;
        }
        if let Some(p) = &self.pids_limit {
            h.pids_limit = p
                .parse()
                .map_err(|_| invalid(p, "--pids-limit", "invalid number"))?;
        }
        h.ulimits = self
            .ulimit
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<_>>()?;
        for v in &self.volume {
            h.mounts.push(parse_volume(v)?);
        }
        for m in &self.mount {
            h.mounts.push(parse_mount(m)?);
        }
        h.mounts.extend(self.tmpfs.iter().map(|t| parse_tmpfs(t)));
        for v in &self.volumes_from {
            let (name, mode) = v.rsplit_once(':').unwrap_or((v, "rw"));
            if name.is_empty() || !["ro", "rw"].contains(&mode) {
                bail!(invalid(v, "--volumes-from", "use CONTAINER[:ro|:rw]"));
            }
        }
        h.volumes_from = self.volumes_from.clone();
        if !["json-file", "none"].contains(&h.log_driver.as_str()) {
            bail!(invalid(
                &h.log_driver,
                "--log-driver",
                "supported: json-file, none"
            ));
        }
        berth_engine::parse_network_mode(&h.network_mode)?;
        check_mode("--pid", &h.pid_mode, &["", "host"])?;
        check_mode("--ipc", &h.ipc_mode, &["", "host", "private", "shareable"])?;
        check_mode("--uts", &h.uts_mode, &["", "host"])?;
        h.net = berth_engine::NetFlags {
            aliases: self.network_alias.clone(),
            ip: self.ip.clone(),
            add_host: self.add_host.clone(),
            dns: self.dns.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            expose: self.expose.clone(),
        }
        .resolve()?;
        if self.rm && h.restart_policy.name != "no" {
            bail!("Conflicting options: --restart and --rm");
        }
        let _ = detach;
        self.security(&mut h)?;
        Ok(h)
    }

    /// The engine request; `detach` is `run -d` (for checks only).
    pub(crate) fn request(&self, detach: bool) -> Result<CreateRequest> {
        let host = self.host_config(detach)?;
        let mut env = read_env_files(&self.env_file)?;
        env.extend(self.env.iter().map(|e| env_value(e)));
        let mut labels = BTreeMap::new();
        for l in &self.label {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(CreateRequest {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            user: self.user.clone(),
            working_dir: self.workdir.clone(),
            hostname: self.hostname.clone(),
            labels,
            tty: self.tty,
            open_stdin: self.interactive,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_ulimits_volumes_restart() {
        assert_eq!(parse_size("7m"), Some(7 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512kb"), Some(512 << 10));
        assert_eq!(parse_size("7x"), None);
        let e = size_flag(&Some("7x".into()), "-m, --memory").unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid argument \"7x\" for \"-m, --memory\" flag: invalid size: '7x'")
        );
        let u = parse_ulimit("nofile=10:20").unwrap();
        assert_eq!((u.soft, u.hard), (10, 20));
        assert!(parse_ulimit("nofile").is_err());
        let v = parse_volume("data:/data:ro").unwrap();
        assert_eq!(
            (v.r#type.as_str(), v.read_only, v.anonymous),
            ("volume", true, false)
        );
        let v = parse_volume("/data").unwrap();
        assert!(v.anonymous);
        assert!(parse_volume("a:b").is_err());
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("always:3").is_err());
        assert!(check_mode("--pid", "container:web", &["", "host"]).is_ok());
        assert!(check_mode("--pid", "bogus", &["", "host"]).is_err());
        assert!(check_mode("--uts", "container:web", &["", "host"]).is_err());
        assert!(check_mode("--ipc", "shareable", &["", "host", "private", "shareable"]).is_ok());
        let t = parse_tmpfs("/run:size=1m,mode=700");
        assert_eq!(t.options, ["size=1m", "mode=700"]);
        let m = parse_mount("type=tmpfs,target=/x,tmpfs-size=1m").unwrap();
        assert_eq!(m.options, ["size=1m"]);
    }

    #[test]
    fn nocopy_on_volumes_only() {
        assert_eq!(parse_volume("v:/x:nocopy").unwrap().options, ["nocopy"]);
        assert_eq!(parse_volume("v:/x:ro,nocopy").unwrap().options, ["nocopy"]);
        assert!(parse_volume("v:/x").unwrap().options.is_empty());
        assert!(parse_volume("/tmp:/x:nocopy").unwrap().options.is_empty());
        let m = parse_mount("type=volume,src=v,dst=/x,volume-nocopy").unwrap();
        assert_eq!(m.options, ["nocopy"]);
        let m = parse_mount("type=volume,src=v,dst=/x,volume-nocopy=false").unwrap();
        assert!(m.options.is_empty());
    }
}
