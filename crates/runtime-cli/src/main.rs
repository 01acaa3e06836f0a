//! `berth-runtime`: an OCI runtime with runc's command line, so Podman (through conmon),
//! containerd's shim and people who know runc can drive it unchanged.

mod args;
mod cmd;
mod log;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args::parse(&argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth-runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if parsed.on("version") {
        println!(
            "berth-runtime version {}\nspec: 1.2.0",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if parsed.on("help") || parsed.command.is_none() {
        print!("{}", args::help(parsed.command));
        return if parsed.on("help") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let json = parsed.get("log-format") == Some("json");
    let logger = log::Logger::new(parsed.get("log").map(std::path::Path::new), json);
    if parsed.on("systemd-cgroup") {
        logger.error("--systemd-cgroup: systemd is not supported; berth-runtime manages cgroupfs directly (drop the flag, or set the caller's cgroup manager to cgroupfs)");
        return ExitCode::from(1);
    }
    if parsed.command == Some("exec") && !berth_runtime::sealed::is_sealed() {
        // exec enters a live container: run from a sealed copy of ourselves first.
        let e = berth_runtime::sealed::reexec_sealed();
        logger.error(&format!("re-exec from a sealed copy: {e}"));
        return ExitCode::from(1);
    }
    match cmd::dispatch(&parsed) {
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
