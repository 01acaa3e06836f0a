//! `berth-runtime`: an OCI runtime with runc's command line, so Podman (through conmon),
//! containerd's shim and people who know runc can drive it unchanged.

mod cmd;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// berth-runtime: run containers from OCI bundles (runc's command line).
#[derive(Debug, Parser)]
#[command(name = "berth-runtime", version, about)]
pub(crate) struct Cli {
    /// Directory for container state (must be on tmpfs, as runc's).
    #[arg(
        long,
        global = true,
        default_value = "/run/berth-runtime",
        env = "BERTH_RUNTIME_ROOT"
    )]
    root: PathBuf,
    /// Also write errors and debug messages to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of the --log file.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not available: berth-runtime drives cgroupfs).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto; with `spec`, write a rootless spec.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// Path to criu (accepted for compatibility; checkpoint is not supported).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for ramfs roots).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not make a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) into the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a container; its program waits for `start`.
    Create(CreateArgs),
    /// Start the program of a created container.
    Start { id: String },
    /// Create and start a container, and by default wait for it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started instead of waiting.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default TERM) to the container's init.
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it holds.
    Delete {
        id: String,
        /// Kill the container first if it still runs.
        #[arg(short, long)]
        force: bool,
    },
    /// List the processes of a container.
    Ps {
        id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Arguments for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print resource usage and OOM events.
    Events {
        id: String,
        /// Print one stats sample and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between samples, e.g. 5s or 500ms.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Change the resource limits of a running container.
    Update(cmd::UpdateArgs),
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the runtime-spec features JSON.
    Features,
    /// Run a new process in a running container.
    Exec(cmd::ExecArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Exec(_)) && !berth_runtime::sealed::is_sealed() {
        // exec enters a live container: run from a sealed copy of ourselves first.
        let e = berth_runtime::sealed::reexec_sealed();
        eprintln!("berth-runtime: re-exec from a sealed copy: {e}");
        return ExitCode::from(1);
    }
    let logger = log::Logger::new(cli.log.as_deref(), cli.log_format, cli.debug);
    if cli.systemd_cgroup {
        logger.error("--systemd-cgroup: systemd is not supported; berth-runtime manages cgroupfs directly (drop the flag, or set the caller's cgroup manager to cgroupfs)");
        return ExitCode::from(1);
    }
    match cmd::dispatch(&cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            logger.error(&error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, skipping a cause whose text the message already contains
/// (the library's messages embed their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
