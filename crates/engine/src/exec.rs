//! `exec`: another process in a running container, with the container's environment,
//! user, capabilities and security settings unless the request overrides them. The calling
//! process serves it in the foreground (it must be single-threaded: the runtime forks).

use berth_runtime::exec::{self, ExecOptions};
use berth_runtime::foreground;
use serde_json::json;

use crate::container::Engine;
use crate::{EngineError, io_err, spec, user};

/// Flags of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub privileged: bool,
}

impl Engine {
    /// Runs `req` in container `key`; with `detach` returns 0 once it started, else its
    /// exit code.
    pub fn exec(&mut self, key: &str, req: &ExecRequest) -> Result<i32, EngineError> {
        let rec = self.get(key)?;
        if !rec.is_active() {
            return Err(EngineError::NotRunning(rec.id));
        }
        if req.cmd.is_empty() {
            return Err(EngineError::NoCommand);
        }
        let rootfs = self.mounted_rootfs(&rec.id);
        let u = req.user.clone().unwrap_or_else(|| rec.config.user.clone());
        let ident = user::resolve(&rootfs, &u)?;
        let mut env = rec.config.env.clone();
        for e in &req.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let mut r = rec.clone();
        r.host_config.privileged |= req.privileged;
        let caps = spec::capabilities(&r)?;
        let cwd = req
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());
        let process = json!({
            "terminal": req.tty,
            "user": {"uid": ident.uid, "gid": ident.gid, "additionalGids": ident.additional_gids},
            "args": req.cmd,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": rec.host_config.no_new_privileges,
        });
        let process = serde_json::from_value(process).map_err(crate::SpecBuildError::Spec)?;
        let sigfd = if req.detach {
            None
        } else {
            foreground::become_subreaper().map_err(io_err("become subreaper"))?;
            Some(foreground::block_signals().map_err(io_err("block signals"))?)
        };
        let opts = ExecOptions {
            process,
            console_socket: None,
            pid_file: None,
            preserve_fds: 0,
        };
        let started = exec::exec(&self.runtime_root(), &rec.id, &opts)?;
        match sigfd {
            None => Ok(0),
            Some(fd) => foreground::serve(started.pid, &fd, started.console.as_ref())
                .map_err(io_err("wait for the exec'd process")),
        }
    }
}
