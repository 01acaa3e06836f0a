//! A minimal init for containers (`berth run --init`): it runs as pid 1, starts the
//! program as its child, forwards the signals it receives to it, reaps every zombie
//! orphaned into the container, and exits with the program's status (128+N for a signal).
//!
//! berth-runtime is a static binary, so the engine bind-mounts it into any image and runs
//! `berth-runtime init -- PROGRAM ARGS...`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::{foreground, sys};

/// Why the init could not run its program.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("init: no program given (usage: init -- PROGRAM [ARGS...])")]
    NoProgram,
    #[error("init: {op}: {source}")]
    Setup { op: &'static str, source: io::Error },
}

/// Runs `argv` as the child of this pid 1; returns the exit code to exit with.
pub fn run(argv: &[String]) -> Result<i32, ReaperError> {
    let first = argv.first().ok_or(ReaperError::NoProgram)?;
    let setup = |op| move |source| ReaperError::Setup { op, source };
    let c_args: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| setup("argument with a NUL")(io::ErrorKind::InvalidInput.into()))
        })
        .collect::<Result<_, _>>()?;
    // Every signal we forward is blocked and read from a signalfd, so none is lost
    // between fork and the loop; the child unblocks them before exec.
    let sigfd = foreground::block_signals().map_err(setup("block signals"))?;
    let child = match sys::fork().map_err(setup("fork"))? {
        sys::Forked::Child => {
            // SAFETY: an empty sigset restores the default mask for the program.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            let err = exec_path(first, &c_args);
            eprintln!("init: exec `{first}`: {err}");
            let code = if err.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => pid,
    };
    foreground::serve(child, &sigfd, None).map_err(setup("wait for the program"))
}

/// execvp: a name with `/` as is, otherwise each directory of $PATH.
fn exec_path(name: &str, argv: &[CString]) -> io::Error {
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    if name.contains('/') {
        return match CString::new(name) {
            Ok(p) => sys::execve(&p, argv, &env),
            Err(_) => io::ErrorKind::InvalidInput.into(),
        };
    }
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let Ok(p) = CString::new(format!("{dir}/{name}")) else {
            continue;
        };
        let e = sys::execve(&p, argv, &env);
        if e.kind() != io::ErrorKind::NotFound {
            last = e;
        }
    }
    last
}
