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
    #[command(subcommand)]
    command: Command,
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
    // Bad flags exit 125 like Docker's, not clap's 2.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 125 } else { 0 })
    });
    berth_engine::trace::mark("berth: parsed");
    let g = Globals {
        root: cli.root,
        runroot: cli.runroot,
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
