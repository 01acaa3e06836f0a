//! `berth-monitor`: the small per-container process that `berth run`/`start` leave behind.
//! A separate binary so its resident set holds only the monitor's code, not the CLI's
//! (argument parser, registry client, TLS).
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(berth_engine::monitor_main(&args));
}
