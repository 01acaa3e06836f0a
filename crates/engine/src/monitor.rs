//! The per-container monitor (`berth-monitor ROOT RUNROOT ID attach|attach-output|detach`): it mounts the
//! rootfs, writes the spec, creates and starts the container through the runtime library,
//! then holds its stdio or pty, writes the json-file log, records the exit code and time,
//! and applies `--rm` and the restart policy. It is single-threaded (the runtime forks).
//!
//! At the first start it reads the container's record from the hand-off pipe (fd number in
//! `BERTH_MONITOR_HANDOFF_FD`): the `berth` that started it claims the record and mounts
//! the rootfs while we exec (`Engine::hand_off`); an empty pipe means we do both.
//!
//! It reports to the `berth` process that started it over a pipe (its fd number in
//! `BERTH_MONITOR_STATUS_FD`), one line each:
//! `started PID`, `error CODE MESSAGE`, `detached` (the attached caller typed the detach
//! keys, the optional fifth argument) or `exit CODE`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use berth_runtime::container::{self, CreateOptions};
use berth_runtime::foreground;

use crate::attach::Hub;
use crate::attach_client::DetachKeys;
use crate::container::Engine;
use crate::db::DbError;
use crate::record::{ContainerRecord, Status};
use crate::serve::{Stdio, serve};
use crate::{EngineError, prepare};

/// How one run of the container ended.
struct Ended {
    code: i32,
    /// The attach socket, whose clients learn `code` once it is recorded.
    hub: Option<Hub>,
}

/// What the monitor does after the container exited.
enum Next {
    Restart(Duration),
    /// Report the exit; then, for a `--rm` container, delete it from the runtime if that
    /// was left for after the report (`runtime_left`) and purge its retired directory.
    Done {
        retired: Option<crate::lifecycle::Retired>,
        runtime_left: bool,
    },
}

struct Monitor {
    engine: Engine,
    id: String,
    status: Option<File>,
    attach: bool,
    /// Attached with stdin too (`run -i`, `start -ai`), not only stdout/stderr (`start -a`).
    attach_stdin: bool,
    /// The detach keys the attached caller may type.
    keys: Option<DetachKeys>,
    sigfd: OwnedFd,
    /// `--rm`: removed at its exit (from the record at the last start).
    auto_remove: bool,
    /// The container has a pid namespace of its own (from the record at the last start).
    own_pid_namespace: bool,
    /// The pipe on which the `berth` that started us sends the record it claimed for us
    /// once it has mounted the rootfs too (see `Engine::hand_off`); read at the first
    /// start.
    handoff: Option<File>,
}

/// The monitor's `main`; returns its exit status.
pub fn monitor_main(args: &[String]) -> i32 {
    crate::trace::mark("monitor: up");
    let status = crate::sys::take_fd(crate::sys::STATUS_FD_ENV);
    let handoff = crate::sys::take_fd(crate::sys::HANDOFF_FD_ENV);
    let (root, runroot, id, mode, keys) = match args {
        [root, runroot, id, mode, rest @ ..] if rest.len() <= 1 => {
            let keys = rest.first().and_then(|k| DetachKeys::parse(k).ok());
            (root, runroot, id, mode, keys)
        }
        _ => {
            eprintln!(
                "usage: berth-monitor ROOT RUNROOT ID attach|attach-output|detach [DETACH-KEYS]"
            );
            return 2;
        }
    };
    // Our own session: a terminal hang-up or Ctrl-C in the caller's group is not ours.
    let _ = nix::unistd::setsid();
    let setup = || -> Result<(Engine, OwnedFd), EngineError> {
        foreground::become_subreaper().map_err(crate::io_err("become subreaper"))?;
        let sigfd = foreground::block_signals().map_err(crate::io_err("block signals"))?;
        let engine = Engine::for_monitor(root.as_ref(), runroot.as_ref());
        Ok((engine, sigfd))
    };
    let mut status = status;
    let (engine, sigfd) = match setup() {
        Ok(x) => x,
        Err(e) => {
            report(
                &mut status,
                &format!("error 125 {}", crate::error_chain(&e)),
            );
            return 125;
        }
    };
    let mut m = Monitor {
        engine,
        id: id.clone(),
        status,
        attach: mode.starts_with("attach"),
        attach_stdin: mode == "attach",
        keys,
        sigfd,
        auto_remove: false,
        own_pid_namespace: false,
        handoff,
    };
    m.run()
}

fn report(status: &mut Option<File>, line: &str) {
    if let Some(f) = status
        && writeln!(f, "{line}").is_err()
    {
        *status = None;
    }
}

impl Monitor {
    /// Runs the container until it exits for good (restarts included).
    fn run(&mut self) -> i32 {
        let mut first = true;
        loop {
            let ended = match self.run_once(first) {
                Ok(e) => e,
                Err(e) => {
                    let code = e.exit_code();
                    self.fail(code, &e);
                    return code;
                }
            };
            first = false;
            let after = self.after_exit(ended.code);
            // Attach clients end now, when `ps`/`inspect` show the exit; dropping the
            // hub removes the socket.
            if let Some(mut h) = ended.hub {
                h.exited(ended.code);
            }
            match after {
                Ok(Next::Restart(delay)) => std::thread::sleep(delay),
                Ok(Next::Done {
                    retired,
                    runtime_left,
                }) => {
                    report(&mut self.status, &format!("exit {}", ended.code));
                    crate::trace::mark("monitor: exit reported");
                    crate::fault::point("monitor-exit-reported");
                    if runtime_left {
                        let _ = container::delete(&self.engine.runtime_root(), &self.id, true);
                        crate::trace::mark("monitor: runtime deleted");
                    }
                    if let Some(r) = retired {
                        r.purge();
                    }
                    return ended.code;
                }
                Err(_) => {
                    report(&mut self.status, &format!("exit {}", ended.code));
                    return ended.code;
                }
            }
        }
    }

    /// A start failed: undo what was set up and record the error.
    fn fail(&mut self, code: i32, e: &EngineError) {
        let msg = crate::error_chain(e);
        let _ = container::delete(&self.engine.runtime_root(), &self.id, true);
        crate::network::release(&self.engine, &self.id);
        let _ = prepare::unmount(&self.engine, &self.id);
        let auto_remove = self
            .engine
            .db
            .update(&self.id, |r| {
                r.state.status = if r.state.status == Status::Dead {
                    Status::Dead
                } else if r.state.restart_count > 0 {
                    Status::Exited
                } else {
                    Status::Created
                };
                r.state.error = msg.clone();
                r.state.exit_code = code;
                r.state.pid = 0;
                r.state.monitor_pid = 0;
                Ok(())
            })
            .map(|r| r.host_config.auto_remove)
            .unwrap_or(false);
        if auto_remove {
            let _ = self.engine.remove(&self.id, true, true);
        }
        report(
            &mut self.status,
            &format!("error {code} {}", msg.replace('\n', " ")),
        );
    }

    fn run_once(&mut self, first: bool) -> Result<Ended, EngineError> {
        let rec = match self.handoff.take().and_then(|f| handed_off(f, &self.id)) {
            Some(rec) => {
                crate::trace::mark("monitor: handed off");
                rec
            }
            None => {
                let rec = self
                    .engine
                    .claim(&self.id, std::process::id() as i32, first)?;
                crate::trace::mark("monitor: claimed");
                prepare::rootfs(&self.engine, &rec)?;
                crate::trace::mark("monitor: rootfs mounted");
                rec
            }
        };
        self.auto_remove = rec.host_config.auto_remove;
        self.own_pid_namespace = matches!(rec.host_config.pid_mode.as_str(), "" | "private");
        let argv = rec.argv();
        if argv.is_empty() {
            return Err(EngineError::NoCommand);
        }
        self.engine.copy_up_volumes(&rec)?;
        let rootfs = self.engine.rootfs_dir(&self.id);
        prepare::check_executable(&rootfs, &argv[0], &rec.config.env)?;
        crate::trace::mark("monitor: program checked");
        let spec = prepare::spec(&mut self.engine, &rec, &argv)?;
        crate::trace::mark("monitor: spec made");
        let dir = self.engine.run_dir(&self.id);
        let text = serde_json::to_vec(&spec).map_err(crate::spec::SpecBuildError::Spec)?;
        std::fs::write(dir.join("config.json"), text).map_err(crate::io_err(format!(
            "write `{}/config.json`",
            dir.display()
        )))?;
        crate::trace::mark("monitor: config.json written");
        // Clients may connect from now on; they are served once the container runs.
        let hub = Hub::listen(&self.engine.run_dir(&self.id))?;
        let mut stdio = Stdio::redirect(&rec, self.attach, self.attach_stdin)?;
        if self.attach_stdin {
            let report = self.status.as_ref().and_then(|f| f.try_clone().ok());
            stdio.detach_with(self.keys.clone(), report);
        }
        crate::trace::mark("monitor: spec written");
        let opts = CreateOptions {
            id: self.id.clone(),
            bundle: dir,
            spec: Some(spec),
            ..Default::default()
        };
        let created = container::create(&self.engine.runtime_root(), &opts);
        let stdio = stdio.after_create();
        let created = created?;
        crate::trace::mark("monitor: runtime created");
        crate::network::attach(&self.engine, &rec, created.pid)?;
        crate::trace::mark("monitor: network attached");
        // Started before it is recorded as running, so the record's write overlaps the
        // program's exec; `started` is reported (and `run -d` returns) only after both.
        // A concurrent `rm -f` that marked it Dead meanwhile makes `mark_running` fail,
        // and `fail` deletes the started container.
        container::start(&self.engine.runtime_root(), &self.id)?;
        crate::trace::mark("monitor: runtime started");
        let rec = self.mark_running(created.pid)?;
        crate::trace::mark("monitor: recorded running");
        report(&mut self.status, &format!("started {}", created.pid));
        let log = open_log(&self.engine, &rec);
        drop(rec);
        // Idle from here on: once the container has run for a moment, `serve` has us drop
        // the database connection (SQLite's caches) and gives the start-up's memory back.
        // A container that exits before then finds the connection still open.
        let db = &mut self.engine.db;
        let (code, hub) = serve(
            created.pid,
            &self.sigfd,
            stdio,
            created.console,
            log,
            Some(hub),
            &mut || db.close(),
        );
        crate::trace::mark("monitor: init exited, output drained");
        Ok(Ended { code, hub })
    }

    fn mark_running(&mut self, pid: i32) -> Result<ContainerRecord, EngineError> {
        let rec = self.engine.db.update(&self.id, |r| {
            if r.state.status == Status::Dead {
                return Err(DbError::Removing(r.id.clone()));
            }
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.started_at = crate::time::now();
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
            Ok(())
        })?;
        Ok(rec)
    }

    /// Records the exit; says whether to restart (after a delay) or that we are done
    /// (with a `--rm` container's directory left to delete once the exit is reported).
    fn after_exit(&mut self, code: i32) -> Result<Next, EngineError> {
        let rt = self.engine.runtime_root();
        if self.auto_remove && self.own_pid_namespace {
            // `--rm` with its own pid namespace: the init's exit ended every process of
            // the container (the kernel kills and waits for them before the init is
            // reaped), so its cgroups are empty. What others can see goes before the exit
            // is reported: the rootfs mount, the network, the record and name, the image
            // hold. The runtime's cgroups and state follow the report; if we die in
            // between, the directory in the trash tells `rm`/`prune` to finish the job.
            let _ = prepare::unmount(&self.engine, &self.id);
            crate::trace::mark("monitor: unmounted");
            crate::network::release(&self.engine, &self.id);
            crate::trace::mark("monitor: network released");
            let retired = self.engine.forget(&self.id, true)?;
            crate::trace::mark("monitor: removed");
            return Ok(Next::Done {
                retired,
                runtime_left: true,
            });
        }
        let oom = container::oom_kills(&rt, &self.id).unwrap_or(0) > 0;
        // With the host's (or another container's) pid namespace, processes may outlive
        // the init: the forced delete kills them first.
        let _ = container::delete(&rt, &self.id, true);
        crate::trace::mark("monitor: runtime deleted");
        let _ = prepare::unmount(&self.engine, &self.id);
        crate::trace::mark("monitor: unmounted");
        crate::network::release(&self.engine, &self.id);
        crate::trace::mark("monitor: network released");
        if self.auto_remove {
            // `--rm` (never with a restart policy): nothing runs or is mounted any more;
            // the record goes without first recording the exit. A concurrent `rm -f`
            // (the record is Dead) removes it itself.
            let retired = self.engine.forget(&self.id, true)?;
            crate::trace::mark("monitor: removed");
            return Ok(Next::Done {
                retired,
                runtime_left: false,
            });
        }
        let rec = self.engine.db.update(&self.id, |r| {
            r.state.exit_code = code;
            r.state.oom_killed = oom;
            r.state.finished_at = crate::time::now();
            r.state.pid = 0;
            if r.state.status != Status::Dead {
                r.state.status = if should_restart(r, code) {
                    r.state.restart_count += 1;
                    Status::Restarting
                } else {
                    Status::Exited
                };
            }
            if r.state.status != Status::Restarting {
                r.state.monitor_pid = 0;
            }
            Ok(())
        })?;
        if rec.state.status == Status::Restarting {
            let n = rec.state.restart_count.min(4);
            return Ok(Next::Restart(Duration::from_millis(100 << n)));
        }
        crate::trace::mark("monitor: exit recorded");
        Ok(Next::Done {
            retired: None,
            runtime_left: false,
        })
    }
}

/// The record our `berth` claimed for us, with the rootfs mounted; `None` if it sent
/// nothing (it failed or died: we claim and mount ourselves).
fn handed_off(mut from: File, id: &str) -> Option<ContainerRecord> {
    use std::io::Read;
    let mut text = Vec::new();
    from.read_to_end(&mut text).ok()?;
    let rec: ContainerRecord = serde_json::from_slice(&text).ok()?;
    (rec.id == id).then_some(rec)
}

fn should_restart(r: &ContainerRecord, code: i32) -> bool {
    if r.state.stopped_by_user {
        return false;
    }
    let p = &r.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            code != 0
                && (p.maximum_retry_count == 0 || r.state.restart_count < p.maximum_retry_count)
        }
        _ => false,
    }
}

fn open_log(engine: &Engine, rec: &ContainerRecord) -> Option<File> {
    if rec.host_config.log_driver == "none" {
        return None;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(engine.log_path(&rec.id))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RestartPolicy;

    #[test]
    fn restart_policies() {
        let mut r = ContainerRecord::default();
        assert!(!should_restart(&r, 1));
        r.host_config.restart_policy = RestartPolicy {
            name: "on-failure".into(),
            maximum_retry_count: 2,
        };
        assert!(should_restart(&r, 1));
        assert!(!should_restart(&r, 0));
        r.state.restart_count = 2;
        assert!(!should_restart(&r, 1));
        r.host_config.restart_policy.name = "always".into();
        assert!(should_restart(&r, 0));
        r.state.stopped_by_user = true;
        assert!(!should_restart(&r, 0));
    }
}
