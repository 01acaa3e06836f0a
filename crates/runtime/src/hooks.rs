//! OCI hooks: each runs as a host process with the container's state JSON on stdin, its
//! own args and env, and an optional timeout after which it is killed.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook `{path}`: {source}")]
    Spawn {
        kind: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{kind} hook `{path}` exited with status {code}")]
    Failed {
        kind: &'static str,
        path: String,
        code: i32,
    },
    #[error("{kind} hook `{path}` timed out after {secs}s")]
    Timeout {
        kind: &'static str,
        path: String,
        secs: i64,
    },
}

/// Runs one hook to completion.
pub(crate) fn run_one(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let spawn_err = |source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores stdin may close it early; that is not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| {
        (
            t,
            Instant::now() + Duration::from_secs(u64::try_from(t).unwrap_or(0)),
        )
    });
    loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            if status.success() {
                return Ok(());
            }
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            return Err(HookError::Failed { kind, path, code });
        }
        if let Some((secs, at)) = deadline
            && Instant::now() > at
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout { kind, path, secs });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs a list of hooks in order; the first failure stops the rest.
pub(crate) fn run_all(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &[u8],
) -> Result<(), HookError> {
    for h in hooks.into_iter().flatten() {
        run_one(kind, h, state)?;
    }
    Ok(())
}

/// poststart: after the program started; a failure is only warned about, per the
/// runtime spec, and the container runs on.
pub(crate) fn run_poststart(h: &Hooks, state: &[u8]) {
    for hook in h.poststart().iter().flatten() {
        if let Err(e) = run_one("poststart", hook, state) {
            eprintln!("warning: {e}");
        }
    }
}

/// poststop: after delete; failures are only warned about, per the runtime spec.
pub(crate) fn run_poststop(h: &Hooks, state: &[u8]) {
    for hook in h.poststop().iter().flatten() {
        if let Err(e) = run_one("poststop", hook, state) {
            eprintln!("warning: {e}");
        }
    }
}
