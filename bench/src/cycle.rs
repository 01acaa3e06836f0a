//! One measured container life cycle of `true`, timed from the first runtime command to
//! the last. `create-start`: `create` (its `ru_maxrss` is the peak RSS figure), `start`,
//! wait for the container's init through a pidfd and reap it (the bench is a child
//! subreaper, so the init becomes its child once `create` exits), `delete`.
//! `run`: one foreground `run`, which waits and deletes by itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::runtime::{InvokeError, Runtime};
use crate::sys::{self, Waited};

/// Which command sequence a cycle uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `create`, `start`, wait for exit, `delete` (runc's spec'd path).
    CreateStart,
    /// One foreground `run`.
    Run,
}

/// One finished cycle.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall time of the whole cycle.
    pub elapsed: Duration,
    /// Peak RSS of the `create` (or `run`) runtime process, in KiB.
    pub maxrss_kib: u64,
    /// The container process's exit code.
    pub exit_code: i32,
    /// Where the time went, for `create-start` cycles.
    pub phases: Option<Phases>,
}

/// The steps of a `create-start` cycle.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// `create`, plus reading the pid file and opening a pidfd.
    pub create: Duration,
    pub start: Duration,
    /// From `start` returning to the container's init being reaped.
    pub wait: Duration,
    pub delete: Duration,
}

/// Why a cycle failed.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("read pid file `{path}`")]
    PidFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for container init `{pid}`")]
    WaitInit {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("container init `{pid}` still running after the timeout; killed")]
    InitTimeout { pid: i32 },
}

/// Runs one cycle of container `id` from `bundle`. On failure the container is force
/// deleted before the error is returned.
pub fn run_cycle(
    rt: &Runtime,
    bundle: &Path,
    id: &str,
    mode: Mode,
    timeout: Duration,
) -> Result<Sample, CycleError> {
    let result = match mode {
        Mode::CreateStart => create_start(rt, bundle, id, timeout),
        Mode::Run => run_foreground(rt, bundle, id),
    };
    if result.is_err() {
        let _ = rt.delete(id, true);
    }
    // Stray orphans (intermediate runtime processes) are reparented to us too.
    sys::reap_ready_children();
    result
}

fn create_start(
    rt: &Runtime,
    bundle: &Path,
    id: &str,
    timeout: Duration,
) -> Result<Sample, CycleError> {
    let pid_file = rt.scratch_path("pid");
    let _ = std::fs::remove_file(&pid_file);
    let t0 = Instant::now();
    let created = rt.create(id, bundle, &pid_file)?;
    let pid = read_pid(&pid_file)?;
    let pidfd = sys::pidfd_open(pid).map_err(|source| CycleError::WaitInit { pid, source })?;
    let t1 = Instant::now();
    rt.start(id)?;
    let t2 = Instant::now();
    let exit_code = match sys::wait_child(pid, &pidfd, timeout)
        .map_err(|source| CycleError::WaitInit { pid, source })?
    {
        Waited::Exited(r) => r.code,
        Waited::TimedOut => return Err(CycleError::InitTimeout { pid }),
    };
    let t3 = Instant::now();
    rt.delete(id, false)?;
    let t4 = Instant::now();
    Ok(Sample {
        elapsed: t4 - t0,
        maxrss_kib: created.maxrss_kib,
        exit_code,
        phases: Some(Phases {
            create: t1 - t0,
            start: t2 - t1,
            wait: t3 - t2,
            delete: t4 - t3,
        }),
    })
}

fn run_foreground(rt: &Runtime, bundle: &Path, id: &str) -> Result<Sample, CycleError> {
    let t0 = Instant::now();
    let done = rt.run(id, bundle)?;
    Ok(Sample {
        elapsed: t0.elapsed(),
        maxrss_kib: done.maxrss_kib,
        exit_code: done.code,
        phases: None,
    })
}

fn read_pid(path: &Path) -> Result<i32, CycleError> {
    let text = std::fs::read_to_string(path).map_err(|source| CycleError::PidFile {
        path: path.to_owned(),
        source,
    })?;
    parse_pid(&text).ok_or_else(|| CycleError::PidFile {
        path: path.to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

fn parse_pid(text: &str) -> Option<i32> {
    text.trim().parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_contents() {
        assert_eq!(parse_pid("1234"), Some(1234));
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid(""), None);
    }
}
