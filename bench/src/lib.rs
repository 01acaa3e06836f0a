//! berth-bench: side-by-side measurements of OCI runtimes (berth-runtime, runc, crun) on
//! one busybox bundle, for docs/PERFORMANCE.md. It owns the measurement machinery only:
//! preparing bundles and configs ([`bundle`], [`seccomp_profile`]), invoking a runtime
//! with a timeout and reading its peak RSS from `wait4` ([`runtime`]), one timed
//! container cycle ([`cycle`]), the shuffled order of each round ([`order`]), the
//! memory-limit bisection ([`memlimit`]), summaries
//! ([`stats`]) and the table ([`report`]). It does not link any berth crate: runtimes are
//! measured as black boxes through their runc-compatible command line. Entry point: the
//! `runtime-cycle` binary (`cargo run --release -p berth-bench --bin runtime-cycle`).

pub mod bundle;
pub mod cgroup;
pub mod cycle;
pub mod memlimit;
pub mod order;
pub mod report;
pub mod runtime;
pub mod seccomp_profile;
pub mod stats;
mod sys;

/// Makes this process the reaper of orphaned descendants. [`cycle::run_cycle`] in
/// `create-start` mode needs it: it waits for the container's init as its own child.
pub fn become_subreaper() -> std::io::Result<()> {
    sys::become_subreaper()
}
