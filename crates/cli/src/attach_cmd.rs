//! `berth attach` and the attaching forms of `start` (`-a`, `-i`, `-ai`): parsing and
//! the terminal (raw mode); the session itself is `berth_engine::Engine::attach` over the
//! monitor's attach socket, or the monitor serving our stdio when `start` starts it.

use std::io::{self, IsTerminal};

use anyhow::{Result, bail};
use berth_engine::{AttachEnd, AttachOptions, Engine};
use clap::{ArgAction, Args};

use crate::container_cmd::exit_with;

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(
        long,
        action = ArgAction::Set,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long)]
    detach_keys: Option<String>,
    container: String,
}

/// `attach [--no-stdin] [--sig-proxy=BOOL] [--detach-keys KEYS] CONTAINER`.
pub(crate) fn attach(e: &mut Engine, a: &AttachArgs) -> Result<()> {
    let opts = AttachOptions {
        stdin: !a.no_stdin,
        sig_proxy: a.sig_proxy,
        detach_keys: a.detach_keys.clone(),
    };
    attach_running(e, &a.container, &opts)
}

/// Attaches to a running container through its monitor's socket; exits with its code
/// (0 after a detach).
fn attach_running(e: &mut Engine, name: &str, opts: &AttachOptions) -> Result<()> {
    let rec = e.get(name)?;
    let raw = rec.config.tty && rec.config.open_stdin && opts.stdin;
    let raw = if raw { RawMode::enter() } else { None };
    let end = e.attach(&rec.id, opts);
    drop(raw);
    match end? {
        AttachEnd::Exited(code) => exit_with(code),
        AttachEnd::Detached => exit_with(0),
    }
}

/// `start -a` (output), `start -i` / `start -ai` (stdin too): starts the container with
/// our stdio, or attaches to it if it already runs.
pub(crate) fn start_attached(
    e: &mut Engine,
    names: &[String],
    stdin: bool,
    detach_keys: Option<&str>,
) -> Result<()> {
    let [name] = names else {
        bail!("you cannot start and attach multiple containers at once");
    };
    let rec = e.get(name)?;
    if rec.is_active() {
        let opts = AttachOptions {
            stdin,
            sig_proxy: true,
            detach_keys: detach_keys.map(str::to_string),
        };
        return attach_running(e, &rec.id, &opts);
    }
    let raw = rec.config.tty && rec.config.open_stdin && stdin;
    let raw = if raw { RawMode::enter() } else { None };
    let att = e.start_attached(&rec.id, stdin, detach_keys);
    let code = att.and_then(|att| e.wait_attached(att, !rec.config.tty));
    drop(raw);
    exit_with(code?)
}

/// The terminal in raw mode while a `-t` container is attached; restored on drop.
pub(crate) struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    pub(crate) fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
