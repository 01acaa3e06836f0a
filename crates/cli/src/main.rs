//! `berth`: the container engine a person types. `main` only parses the global flags and
//! dispatches to one module per command group (`image_cmd` for images); each returns an
//! `anyhow::Result`, and berth's own errors exit with status 125 like Docker's.
#![forbid(unsafe_code)]

mod image_cmd;
mod progress;

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
}

/// Global settings every command group receives.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    /// `--root`.
    pub root: PathBuf,
    /// `--runroot`.
    #[allow(dead_code)]
    pub runroot: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = Globals {
        root: cli.root,
        runroot: cli.runroot,
    };
    let result = match cli.command {
        Command::Images(c) => image_cmd::run_top(&g, c),
        Command::Image { command } => image_cmd::run_group(&g, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::from(125)
        }
    }
}
