//! `BERTH_TRACE=1`: one line per phase of a container's start and end on stderr,
//! `berth-trace <CLOCK_MONOTONIC ms> <pid> <phase>`, from the runtime's stages, the
//! engine's `berth` process and its monitor alike (the clock is the same in all), so where
//! the time of a `run --rm` goes can be read without a profiler (see
//! docs/PERFORMANCE.md). Off, it costs one cached environment lookup per mark.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::OnceLock;

/// A copy of stderr taken at the first mark: the monitor later points its own fd 2 at
/// the container's pipes.
static OUT: OnceLock<Option<File>> = OnceLock::new();

/// Writes a trace line for `phase` if `BERTH_TRACE` is set.
pub fn mark(phase: &str) {
    let out = OUT.get_or_init(|| {
        std::env::var_os("BERTH_TRACE")
            .is_some_and(|v| v != "0")
            .then(|| std::io::stderr().as_fd().try_clone_to_owned().ok())
            .flatten()
            .map(File::from)
    });
    let Some(mut f) = out.as_ref() else {
        return;
    };
    let ms = crate::sys::monotonic_ms();
    // One write(2) per line: the monitor and `berth` share the terminal.
    let line = format!("berth-trace {ms:.3} {} {phase}\n", std::process::id());
    let _ = f.write_all(line.as_bytes());
}
