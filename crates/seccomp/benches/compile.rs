//! How long compiling berth's default (Docker's) profile takes: `cargo bench -p
//! berth-seccomp`. Prints times; asserts nothing.

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
    // The first calls in a fresh process are what one container start pays.
    let start = Instant::now();
    let profile = berth_seccomp::docker_default(&caps);
    let first_resolve = start.elapsed();
    let start = Instant::now();
    let filter = berth_seccomp::compile(&profile).expect("default profile compiles");
    let first_compile = start.elapsed();
    let resolve = time(iters, || berth_seccomp::docker_default(&caps));
    let compile = time(iters, || {
        berth_seccomp::compile(&profile).expect("compiles")
    });
    println!("docker default profile: {} BPF instructions", filter.len());
    println!("docker_default(caps=[]): first {first_resolve:?}, mean {resolve:?}");
    println!("compile(docker default): first {first_compile:?}, mean {compile:?} ({iters} runs)");
}
