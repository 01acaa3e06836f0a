//! `berth`: the container engine a person types.
#![forbid(unsafe_code)]

use clap::Parser;

/// berth: a daemonless container engine with Docker's habits.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
