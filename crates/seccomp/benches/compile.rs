//! How long compiling berth's default (Docker's) profile takes: `cargo bench -p
//! berth-seccomp`. Prints per-iteration times; asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn time<T>(iters: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed() / iters
}

fn main() {
    let iters = 2000;
    let caps: Vec<String> = Vec::new();
    let profile = berth_seccomp::docker_default(&caps);
    let filter = berth_seccomp::compile(&profile).expect("default profile compiles");
    // The first compile in a fresh process is what a container start pays.
    let first = {
        let start = Instant::now();
        black_box(berth_seccomp::compile(&profile).expect("compiles"));
        start.elapsed()
    };
    let resolve = time(iters, || berth_seccomp::docker_default(&caps));
    let compile = time(iters, || {
        berth_seccomp::compile(&profile).expect("compiles")
    });
    println!("docker default profile: {} BPF instructions", filter.len());
    println!("docker_default(caps=[]):   {resolve:?} per call");
    println!("compile(docker default):   {compile:?} per call (mean of {iters})");
    println!("compile, second call of the process: {first:?}");
}
