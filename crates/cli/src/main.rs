//! `berth`: the container engine a person types. `main` only parses the global flags and
//! dispatches to one module per command group (`image_cmd` for images); each returns an
//! `anyhow::Result`, and berth's own errors exit with status 125 like Docker's.
#![forbid(unsafe_code)]

mod attach_cmd;
mod container_cmd;
mod image_cmd;
mod misc_cmd;
mod network_cmd;
mod progress;
mod ps_fmt;
mod run_flags;
mod show_cmd;
mod template;
mod volume_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth: a daemonless container engine with Docker's habits.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// Directory for persistent state (images, containers).
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    root: PathBuf,
    /// Directory for runtime state (sockets, pid files).
    #[arg(
        long,
        global = true,
        env = "BERTH_RUNROOT",
        default_value = "/run/berth"
    )]
    runroot: PathBuf,
}

/// The command line of `berth run` alone: [`parse`] tries it first.
#[derive(Debug, Parser)]
#[command(name = "berth")]
struct RunOnly {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: RunOnlyCommand,
}

#[derive(Debug, Subcommand)]
enum RunOnlyCommand {
    #[command(disable_help_flag = true)]
    Run(container_cmd::RunArgs),
}

/// Parses the command line. `run`, the command that has to start fast, is parsed with a
/// command tree of its own first: clap builds every command's flags before it parses,
/// 0.6 ms of a `run --rm` that takes 13. A command line that does not parse that way
/// (any other command, `--help`, a bad flag) is parsed with the whole tree, so messages
/// and help are the same as ever.
fn parse() -> Cli {
    if std::env::args_os().skip(1).any(|a| a == "run")
        && let Ok(RunOnly {
            globals,
            command: RunOnlyCommand::Run(args),
        }) = RunOnly::try_parse()
    {
        return Cli {
            globals,
            command: Command::Containers(container_cmd::TopCommand::Run(args)),
        };
    }
    // Bad flags exit 125 like Docker's, not clap's 2.
    Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 125 } else { 0 })
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Images(image_cmd::TopCommand),
    /// Manage images.
    Image {
        #[command(subcommand)]
        command: image_cmd::ImageCommand,
    },
    #[command(flatten)]
    Containers(container_cmd::TopCommand),
    /// Manage containers.
    Container {
        #[command(subcommand)]
        command: container_cmd::ContainerCommand,
    },
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: network_cmd::NetworkCommand,
    },
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        command: volume_cmd::VolumeCommand,
    },
}

/// Global settings every command group receives.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    /// `--root`.
    pub root: PathBuf,
    /// `--runroot`.
    pub runroot: PathBuf,
}

fn main() -> ExitCode {
    berth_engine::trace::mark("berth: up");
    let cli = parse();
    berth_engine::trace::mark("berth: parsed");
    let g = Globals {
        root: cli.globals.root,
        runroot: cli.globals.runroot,
    };
    let result = match cli.command {
        Command::Images(c) => image_cmd::run_top(&g, c),
        Command::Image { command } => image_cmd::run_group(&g, command),
        Command::Containers(c) => container_cmd::run_top(&g, c),
        Command::Container { command } => container_cmd::run_group(&g, command),
        Command::Network { command } => network_cmd::run(&g, command),
        Command::Volume { command } => volume_cmd::run(&g, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::from(container_cmd::exit_code_of(&e))
        }
    }
}
