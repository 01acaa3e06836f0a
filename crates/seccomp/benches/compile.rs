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
    time_install(&filter);
}

/// Time `install()` (the kernel copies, checks and JITs the program) in a child,
/// since a filter cannot be removed again. The bench is single-threaded, so fork
/// is safe.
fn time_install(filter: &berth_seccomp::Filter) {
    const INSTALLS: u32 = 10;
    // SAFETY: the bench runs no other threads; the child only times syscalls,
    // prints and exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl with integer arguments touches no memory of ours.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let start = Instant::now();
            filter.install().expect("install");
            let first = start.elapsed();
            let start = Instant::now();
            for _ in 1..INSTALLS {
                filter.install().expect("install");
            }
            let per = start.elapsed() / (INSTALLS - 1);
            println!(
                "install(docker default): first {first:?}, then mean {per:?} per stacked filter"
            );
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).expect("waitpid");
        }
    }
}
