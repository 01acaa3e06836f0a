//! The container commands: `run`, `create`, `start`, `attach` (attach_cmd.rs), `stop`, `kill`, `restart`, `rm`,
//! `ps`, `logs`, `exec`, `inspect`, `wait`, `pause`, `unpause`, `rename`, `top`, `port`
//! at top level and under `berth container …` (plus `ls` and `prune`). Parsing and
//! printing live here; the work is done by `berth_engine::Engine`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use berth_engine::{Engine, EngineError, ExecRequest};
use clap::{Args, Subcommand};

use crate::Globals;
use crate::ps_fmt::{self, PsArgs};
use crate::run_flags::CreateArgs;

/// Container commands available at top level (and under `berth container`).
#[derive(Debug, Subcommand)]
pub(crate) enum TopCommand {
    /// Create and run a new container from an image.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container.
    #[command(disable_help_flag = true)]
    Create(Box<CreateArgs>),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(crate::attach_cmd::AttachArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Kill one or more running containers.
    Kill(KillArgs),
    /// Restart one or more containers.
    Restart(StopArgs),
    /// Remove one or more containers.
    Rm(RmArgs),
    /// List containers.
    Ps(PsArgs),
    /// Fetch the logs of a container.
    Logs(crate::show_cmd::LogsArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Return low-level information on containers, images or volumes.
    Inspect(crate::show_cmd::InspectArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(Names),
    /// Pause all processes within one or more containers.
    Pause(Names),
    /// Unpause all processes within one or more containers.
    Unpause(Names),
    /// Rename a container.
    Rename { old: String, new: String },
    /// Display the running processes of a container.
    Top { container: String },
    /// List port mappings of a container.
    Port { container: String },
    /// Copy files/folders between a container and the local filesystem.
    ///
    /// Use '-' as the source to read a tar archive from stdin and extract it to a
    /// directory destination in a container. Use '-' as the destination to stream a tar
    /// archive of a container source to stdout.
    Cp {
        /// Archive mode (copy all uid/gid information).
        #[arg(short, long)]
        archive: bool,
        /// Always follow symbol link in SRC_PATH.
        #[arg(short = 'L', long)]
        follow_link: bool,
        src: String,
        dst: String,
    },
    /// Export a container's filesystem as a tar archive.
    Export {
        /// Write to a file, instead of STDOUT.
        #[arg(short, long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Display a live stream of container resource usage statistics.
    Stats(crate::misc_cmd::StatsArgs),
    /// Show the berth version information.
    Version,
    /// Display system-wide information.
    Info,
    /// Generate the autocompletion script for the specified shell.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Manage berth.
    System {
        #[command(subcommand)]
        command: crate::misc_cmd::SystemCommand,
    },
}

/// `berth container …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ContainerCommand {
    #[command(flatten)]
    Top(TopCommand),
    /// List containers.
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Remove all stopped containers.
    Prune {
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long)]
    detach_keys: Option<String>,
    #[command(flatten)]
    create: Box<CreateArgs>,
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN.
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long)]
    detach_keys: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short, long)]
    time: Option<u32>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Signal to send to the container.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Names {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Username or UID.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command.
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Opens the engine; the monitor binary sits next to `berth`.
pub(crate) fn open_engine(g: &Globals) -> Result<Engine> {
    berth_engine::trace::mark("berth: open engine");
    let exe = std::env::current_exe().context("find the berth binary")?;
    let monitor = exe
        .parent()
        .map(|d| d.join("berth-monitor"))
        .unwrap_or_else(|| PathBuf::from("berth-monitor"));
    let e = Engine::open(&g.root, &g.runroot, &monitor)?;
    berth_engine::trace::mark("berth: engine open");
    Ok(e)
}

/// The exit status for an error: the engine's (125/126/127), else 125.
pub(crate) fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<EngineError>()
        .map_or(125, |e| u8::try_from(e.exit_code()).unwrap_or(125))
}

/// Exits with a container's status, flushing stdout first.
pub(crate) fn exit_with(code: i32) -> ! {
    let _ = io::stdout().flush();
    std::process::exit(code)
}

pub(crate) fn run_group(g: &Globals, c: ContainerCommand) -> Result<()> {
    match c {
        ContainerCommand::Top(t) => run_top(g, t),
        ContainerCommand::Ls(a) => ps_fmt::ps(&mut open_engine(g)?, &a),
        ContainerCommand::Prune { .. } => prune(g),
    }
}

pub(crate) fn run_top(g: &Globals, c: TopCommand) -> Result<()> {
    match &c {
        TopCommand::Stats(a) => return crate::misc_cmd::stats(g, a),
        TopCommand::Version => {
            crate::misc_cmd::version();
            return Ok(());
        }
        TopCommand::Info => {
            return crate::misc_cmd::system(g, &crate::misc_cmd::SystemCommand::Info);
        }
        TopCommand::System { command } => return crate::misc_cmd::system(g, command),
        TopCommand::Completion { shell } => {
            crate::misc_cmd::completion(*shell);
            return Ok(());
        }
        _ => {}
    }
    let mut e = open_engine(g)?;
    match c {
        TopCommand::Stats(_)
        | TopCommand::Version
        | TopCommand::Info
        | TopCommand::System { .. }
        | TopCommand::Completion { .. } => Ok(()),
        TopCommand::Run(a) => run(g, &mut e, &a),
        TopCommand::Create(a) => {
            let req = a.request(true)?;
            let rec = create_pulling(g, &mut e, &req, &a.pull)?;
            println!("{}", rec.id);
            Ok(())
        }
        TopCommand::Start(a) => start(&mut e, &a),
        TopCommand::Attach(a) => crate::attach_cmd::attach(&mut e, &a),
        TopCommand::Stop(a) => each(&a.containers, |n| {
            e.stop(n, a.time)?;
            Ok(())
        }),
        TopCommand::Restart(a) => each(&a.containers, |n| {
            e.stop(n, a.time)?;
            e.start(n, false)?;
            Ok(())
        }),
        TopCommand::Kill(a) => kill(&mut e, &a),
        TopCommand::Rm(a) => each(&a.containers, |n| {
            e.remove(n, a.force, a.volumes)?;
            Ok(())
        }),
        TopCommand::Ps(a) => ps_fmt::ps(&mut e, &a),
        TopCommand::Logs(a) => crate::show_cmd::logs(&mut e, &a),
        TopCommand::Exec(a) => exec(&mut e, &a),
        TopCommand::Inspect(a) => crate::show_cmd::inspect(&mut e, &a),
        TopCommand::Wait(a) => {
            for n in &a.containers {
                println!("{}", e.wait(n)?);
            }
            Ok(())
        }
        TopCommand::Pause(a) => each(&a.containers, |n| {
            e.pause(n, true)?;
            Ok(())
        }),
        TopCommand::Unpause(a) => each(&a.containers, |n| {
            e.pause(n, false)?;
            Ok(())
        }),
        TopCommand::Rename { old, new } => Ok(e.rename(&old, &new)?),
        TopCommand::Top { container } => ps_fmt::top(&mut e, &container),
        TopCommand::Cp {
            archive,
            follow_link,
            src,
            dst,
        } => {
            let opts = berth_engine::CopyOptions {
                archive,
                follow_link,
            };
            copy(&mut e, &src, &dst, &opts)
        }
        TopCommand::Export { output, container } => {
            crate::show_cmd::export(&mut e, output.as_deref(), &container)
        }
        TopCommand::Port { container } => crate::network_cmd::port(&mut e, &container),
    }
}

/// `kill -s SIG`: Docker accepts `KILL`, `SIGKILL` and `9`.
fn kill(e: &mut Engine, a: &KillArgs) -> Result<()> {
    let sig = if a.signal.starts_with("SIG") || a.signal.parse::<i32>().is_ok() {
        a.signal.clone()
    } else {
        format!("SIG{}", a.signal.to_uppercase())
    };
    each(&a.containers, |n| {
        e.kill(n, &sig)?;
        Ok(())
    })
}

/// Runs `f` on each name, printing the name on success (Docker's habit) and every error;
/// fails if any failed.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    if let [one] = names {
        f(one)?;
        println!("{one}");
        return Ok(());
    }
    let mut last = None;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("berth: {e:#}");
                last = Some(e);
            }
        }
    }
    match last {
        None => Ok(()),
        Some(e) => Err(e.context("some containers failed")),
    }
}

fn create_pulling(
    g: &Globals,
    e: &mut Engine,
    req: &berth_engine::CreateRequest,
    pull: &str,
) -> Result<berth_engine::ContainerRecord> {
    if !["missing", "always", "never"].contains(&pull) {
        bail!("invalid pull option: '{pull}': must be one of \"always\", \"missing\" or \"never\"");
    }
    let have = e.image_store()?.resolve(&req.image).is_ok();
    berth_engine::trace::mark("berth: image found");
    if pull == "always" || (pull == "missing" && !have) {
        if !have {
            eprintln!("Unable to find image '{}' locally", req.image);
        }
        pull_image(g, &req.image)?;
    }
    Ok(e.create(req)?)
}

fn pull_image(g: &Globals, name: &str) -> Result<()> {
    let store = berth_image::Store::open(&g.root)?;
    let reference: berth_image::Reference = name.parse()?;
    let client = berth_image::RegistryClient::new(berth_image::ClientOptions {
        insecure: std::env::var("BERTH_INSECURE_REGISTRIES")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        auth: berth_image::AuthFiles::standard(&g.root),
    });
    let opts = berth_image::PullOptions::default();
    berth_image::pull(&store, &client, &reference, &opts, &berth_image::NoProgress)?;
    Ok(())
}

fn run(g: &Globals, e: &mut Engine, a: &RunArgs) -> Result<()> {
    let c = &a.create;
    if let Some(k) = &a.detach_keys {
        berth_engine::check_detach_keys(k)?;
    }
    let req = c.request(a.detach)?;
    let rec = create_pulling(g, e, &req, &c.pull)?;
    if a.detach {
        e.start(&rec.id, false)?;
        println!("{}", rec.id);
        return Ok(());
    }
    let _raw = if c.tty {
        crate::attach_cmd::RawMode::enter()
    } else {
        None
    };
    let attached = e.start_attached(&rec.id, true, a.detach_keys.as_deref())?;
    let code = e.wait_attached(attached, !c.tty)?;
    drop(_raw);
    exit_with(code)
}

fn start(e: &mut Engine, a: &StartArgs) -> Result<()> {
    // Docker: `-i` attaches too (stdin, stdout and stderr).
    if a.attach || a.interactive {
        let keys = a.detach_keys.as_deref();
        return crate::attach_cmd::start_attached(e, &a.containers, a.interactive, keys);
    }
    each(&a.containers, |n| {
        e.start(n, false)?;
        Ok(())
    })
}

fn exec(e: &mut Engine, a: &ExecArgs) -> Result<()> {
    let req = ExecRequest {
        cmd: a.command.clone(),
        env: a.env.clone(),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
        tty: a.tty,
        interactive: a.interactive,
        detach: a.detach,
        privileged: a.privileged,
    };
    let code = e.exec(&a.container, &req)?;
    exit_with(code)
}

/// `cp`: exactly one side names a container as `NAME:PATH`.
fn copy(e: &mut Engine, src: &str, dst: &str, opts: &berth_engine::CopyOptions) -> Result<()> {
    let container_side = |s: &str| -> Option<(String, String)> {
        let (c, p) = s.split_once(':')?;
        (!c.is_empty() && !c.contains('/')).then(|| (c.to_string(), p.to_string()))
    };
    match (container_side(src), container_side(dst)) {
        // `-`: a tar stream on stdout or from stdin, as Docker's.
        (Some((c, p)), None) if dst == "-" => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            e.copy_out_tar(&c, &p, &mut out, opts)?;
            Ok(std::io::Write::flush(&mut out)?)
        }
        (None, Some((c, p))) if src == "-" => {
            Ok(e.copy_in_tar(&c, &mut std::io::stdin().lock(), &p, opts)?)
        }
        (Some((c, p)), None) => Ok(e.copy_out(&c, &p, std::path::Path::new(dst), opts)?),
        (None, Some((c, p))) => Ok(e.copy_in(&c, std::path::Path::new(src), &p, opts)?),
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

fn prune(g: &Globals) -> Result<()> {
    let mut e = open_engine(g)?;
    // Also finishes removals a crash cut short (see `Engine::sweep_trash`).
    e.sweep_trash();
    let mut n = 0;
    println!("Deleted Containers:");
    for r in e.list()? {
        if !r.is_active() {
            e.remove(&r.id, false, false)?;
            println!("{}", r.id);
            n += 1;
        }
    }
    println!("\nTotal reclaimed containers: {n}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }
}
