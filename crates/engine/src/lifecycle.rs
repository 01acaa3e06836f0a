//! What happens to a container after it is started: the truthful status (`refresh`),
//! `stop`, `kill`, `wait`, `pause`/`unpause`, `rename` and `rm` (which cleans up whatever a
//! crash left: the monitor, the runtime's state and cgroup, the rootfs mount, the
//! directory, the record).

use std::fs;
use std::io::BufRead;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use berth_runtime::container;
use berth_runtime::state::Status as RtStatus;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::container::{Attached, Engine, Report, parse_report};
use crate::db::DbError;
use crate::record::{ContainerRecord, Status};
use crate::{EngineError, prepare};

/// Field 22 of `/proc/PID/stat`: the start time, to tell a pid from its reuse.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True if `pid` still runs and started at `start`.
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && process_start_time(pid).is_some_and(|s| start == 0 || s == start)
}

impl Engine {
    /// Checks a record against the processes and the runtime's state, and corrects it
    /// (and cleans up) if its monitor died without recording the end.
    pub fn refresh(&mut self, rec: ContainerRecord) -> Result<ContainerRecord, EngineError> {
        let st = &rec.state;
        if st.monitor_pid == 0 || alive(st.monitor_pid, st.monitor_start) {
            if rec.state.status == Status::Running
                && let Ok(RtStatus::Paused) = container::status(&self.runtime_root(), &rec.id)
            {
                let mut r = rec;
                r.state.status = Status::Paused;
                return Ok(r);
            }
            return Ok(rec);
        }
        // The monitor is gone. Is the container still running without it?
        match container::status(&self.runtime_root(), &rec.id) {
            Ok(RtStatus::Running | RtStatus::Paused | RtStatus::Created) if rec.state.pid > 0 => {
                return Ok(rec);
            }
            _ => {}
        }
        let _ = container::delete(&self.runtime_root(), &rec.id, true);
        crate::network::release(self, &rec.id);
        let _ = prepare::unmount(self, &rec.id);
        self.remove_run_dir(&rec.id);
        let was_running = rec.is_active();
        let r = self.db.update(&rec.id, |r| {
            if r.state.status == Status::Dead {
                return Ok(());
            }
            if was_running {
                r.state.status = Status::Exited;
                r.state.finished_at = crate::time::now();
                if r.state.exit_code == 0 {
                    r.state.exit_code = 255;
                }
                r.state.error = "the monitor exited before recording the container's exit".into();
            } else {
                r.state.error = "the monitor exited while starting the container".into();
            }
            r.state.pid = 0;
            r.state.monitor_pid = 0;
            Ok(())
        });
        match r {
            Ok(r) => Ok(r),
            Err(DbError::NotFound(_)) => Err(DbError::NotFound(rec.id).into()),
            Err(e) => Err(e.into()),
        }
    }

    /// One container, refreshed.
    pub fn get(&mut self, key: &str) -> Result<ContainerRecord, EngineError> {
        let rec = self.db.get(key)?;
        self.refresh(rec)
    }

    /// Every container, refreshed, oldest first.
    pub fn list(&mut self) -> Result<Vec<ContainerRecord>, EngineError> {
        let recs = self.db.list()?;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            match self.refresh(r) {
                Ok(r) => out.push(r),
                Err(EngineError::Db(DbError::NotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `kill -s SIG`.
    pub fn kill(&mut self, key: &str, signal: &str) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(key)?;
        if !rec.is_active() {
            return Err(EngineError::NotRunning(rec.name));
        }
        container::kill(&self.runtime_root(), &rec.id, signal, false)?;
        Ok(rec)
    }

    /// `stop -t SECS`: the stop signal, then SIGKILL after the timeout; waits until the
    /// exit is recorded.
    pub fn stop(
        &mut self,
        key: &str,
        timeout: Option<u32>,
    ) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(key)?;
        let rec = self.db.update(&rec.id, |r| {
            r.state.stopped_by_user = true;
            Ok(())
        })?;
        if !rec.is_active() {
            return Ok(rec);
        }
        let rt = self.runtime_root();
        if rec.state.status == Status::Paused {
            let _ = container::resume(&rt, &rec.id);
        }
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let _ = container::kill(&rt, &rec.id, &rec.config.stop_signal, false);
        if !self.wait_inactive(&rec.id, Duration::from_secs(u64::from(secs)))? {
            let _ = container::kill(&rt, &rec.id, "SIGKILL", true);
            self.wait_inactive(&rec.id, Duration::from_secs(30))?;
        }
        self.get(&rec.id)
    }

    /// Polls until the record is no longer active; false on timeout.
    fn wait_inactive(&mut self, id: &str, limit: Duration) -> Result<bool, EngineError> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.get(id)?;
            if !r.is_active() || r.state.status == Status::Restarting {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `wait`: blocks until the container is not running; its exit code.
    pub fn wait(&mut self, key: &str) -> Result<i32, EngineError> {
        let id = self.get(key)?.id;
        loop {
            let r = self.get(&id)?;
            if !r.is_active() {
                return Ok(r.state.exit_code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for an attached container's exit, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT
    /// (if `proxy`) to it; returns its exit code.
    pub fn wait_attached(&mut self, a: Attached, proxy: bool) -> Result<i32, EngineError> {
        let Some(mut status) = a.status else {
            return self.wait(&a.id);
        };
        let sigfd = Some(
            crate::attach_client::block_signals(true, proxy)
                .map_err(|e| crate::io_err("block signals")(e.into()))?,
        );
        loop {
            let mut fds = vec![PollFd::new(status.get_ref().as_fd(), PollFlags::POLLIN)];
            if let Some(s) = &sigfd {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            let sig_ready = fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
            let st_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
            drop(fds);
            if sig_ready
                && let Some(s) = &sigfd
                && let Ok(Some(info)) = s.read_signal()
            {
                let sig = Signal::try_from(info.ssi_signo as i32).unwrap_or(Signal::SIGTERM);
                if sig == Signal::SIGWINCH {
                    // The monitor copies our terminal's new size to the container's pty.
                    if a.monitor > 0 {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(a.monitor), sig);
                    }
                } else {
                    let _ = container::kill(&self.runtime_root(), &a.id, sig.as_str(), false);
                }
            }
            if st_ready {
                let mut line = String::new();
                let n = status
                    .read_line(&mut line)
                    .map_err(crate::io_err("read the monitor's report"))?;
                crate::trace::mark("exit reported");
                match parse_report(&line) {
                    Report::Exit(code) => return Ok(code),
                    // The container runs on without us.
                    Report::Detached => return Ok(0),
                    _ if n == 0 => {
                        // The monitor is gone: report what the record says.
                        return Ok(self.get(&a.id).map(|r| r.state.exit_code).unwrap_or(125));
                    }
                    _ => {}
                }
            }
        }
    }

    /// `pause` / `unpause` through the freezer.
    pub fn pause(&mut self, key: &str, pause: bool) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(key)?;
        if !rec.is_active() {
            return Err(EngineError::NotRunning(rec.name));
        }
        let rt = self.runtime_root();
        if pause {
            container::pause(&rt, &rec.id)?;
        } else {
            container::resume(&rt, &rec.id)?;
        }
        self.get(&rec.id)
    }

    /// `rename OLD NEW`.
    pub fn rename(&mut self, key: &str, new: &str) -> Result<(), EngineError> {
        if !crate::names::valid_name(new) {
            return Err(EngineError::InvalidName(new.to_string()));
        }
        let id = self.db.get(key)?.id;
        self.db.update(&id, |r| {
            r.name = new.to_string();
            Ok(())
        })?;
        Ok(())
    }

    /// `rm [-f] [-v]`: removes a container and everything it left on the host.
    pub fn remove(&mut self, key: &str, force: bool, volumes: bool) -> Result<String, EngineError> {
        self.sweep_trash();
        let (id, retired) = self.remove_deferred(key, force, volumes)?;
        retired.purge();
        Ok(id)
    }

    /// [`remove`](Self::remove), except that the container's directory is only renamed
    /// into `<root>/trash`: the container is gone for every other command (no record, no
    /// name, no image hold, nothing mounted or in a cgroup), and the caller deletes the
    /// files with [`Retired::purge`] when the delay no longer matters. A purge cut short
    /// by a crash is finished by the next `rm` or `container prune`
    /// ([`sweep_trash`](Self::sweep_trash)).
    pub(crate) fn remove_deferred(
        &mut self,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(String, Retired), EngineError> {
        let rec = self.get(key)?;
        if rec.is_active() && !force {
            return Err(EngineError::RemoveRunning(rec.id));
        }
        // Mark it Dead in one transaction: a monitor that has not claimed it yet backs off.
        let rec = self.db.update(&rec.id, |r| {
            r.state.status = Status::Dead;
            Ok(())
        })?;
        let st = &rec.state;
        if st.monitor_pid > 0
            && st.monitor_pid != std::process::id() as i32
            && alive(st.monitor_pid, st.monitor_start)
        {
            let pid = nix::unistd::Pid::from_raw(st.monitor_pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(st.monitor_pid, st.monitor_start) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        container::delete(&self.runtime_root(), &rec.id, true).or_else(|e| match e {
            container::ContainerError::State(berth_runtime::state::StateError::NotFound(_)) => {
                Ok(())
            }
            e => Err(e),
        })?;
        crate::network::release(self, &rec.id);
        {
            // A `berth` still mounting the rootfs for the monitor it started (see
            // `Engine::hand_off`) holds this lock; it checked under it that the record
            // is not Dead, so once we have the lock nothing mounts it any more.
            let _lock = lock_dir(&self.container_dir(&rec.id), false);
            prepare::unmount(self, &rec.id)?;
        }
        let retired = self.drop_record(&rec, volumes)?;
        Ok((rec.id, retired))
    }

    /// The end of a `--rm` container, by its own monitor once the container is deleted
    /// from the runtime, unmounted and off its networks: the record, the directory (to the
    /// trash, see [`remove_deferred`](Self::remove_deferred)), the image hold and the
    /// anonymous volumes go. `None` if a concurrent `rm` (which marks the record Dead
    /// first) is doing it.
    pub(crate) fn forget(
        &mut self,
        id: &str,
        volumes: bool,
    ) -> Result<Option<Retired>, EngineError> {
        let rec = self.db.get(id)?;
        if rec.state.status == Status::Dead {
            return Ok(None);
        }
        Ok(Some(self.drop_record(&rec, volumes)?))
    }

    /// The last steps of every removal, once nothing runs or is mounted.
    fn drop_record(
        &mut self,
        rec: &ContainerRecord,
        volumes: bool,
    ) -> Result<Retired, EngineError> {
        self.remove_run_dir(&rec.id);
        crate::trace::mark("forget: run dir");
        let retired = self.retire(&self.container_dir(&rec.id))?;
        crate::trace::mark("forget: retired");
        if let Ok(digest) = rec.image_id.parse::<berth_image::Digest>() {
            let _ = self.image_store()?.release(&digest, &rec.id);
        }
        crate::trace::mark("forget: released");
        self.db.remove(&rec.id)?;
        if volumes {
            // After the record is gone, so the volumes are no longer in use by it; one
            // that another container mounts too stays.
            for m in rec.host_config.mounts.iter().filter(|m| m.anonymous) {
                let _ = self.volume_remove(&m.source, true);
            }
        }
        Ok(retired)
    }

    fn trash_dir(&self) -> std::path::PathBuf {
        self.root.join("trash")
    }

    /// Moves `dir` out of sight into the trash (same filesystem: one rename); removes it
    /// in place if it cannot be moved. The entry is locked until purged, so a sweep by
    /// another `berth` leaves it to its owner.
    fn retire(&self, dir: &std::path::Path) -> Result<Retired, EngineError> {
        let Some(lock) = lock_dir(dir, false) else {
            return Ok(Retired(None));
        };
        let trash = self.trash_dir();
        let _ = fs::create_dir(&trash);
        let name = dir.file_name().unwrap_or_default();
        let to = trash.join(name);
        if fs::rename(dir, &to).is_ok() {
            return Ok(Retired(Some((to, lock))));
        }
        fs::remove_dir_all(dir).map_err(crate::io_err(format!("remove `{}`", dir.display())))?;
        Ok(Retired(None))
    }

    /// Finishes removals cut short (a monitor killed between reporting a `--rm`
    /// container's exit and deleting it): each unlocked entry of the trash (named by the
    /// container id) is deleted from the runtime, if it still is there, and then from
    /// disk.
    pub fn sweep_trash(&self) {
        let rt = self.runtime_root();
        for e in fs::read_dir(self.trash_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = e.path();
            let Some(_lock) = lock_dir(&path, true) else {
                continue;
            };
            if let Some(id) = e.file_name().to_str() {
                let _ = container::delete(&rt, id, true);
            }
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// An exclusive `flock` on directory `dir` (held while the descriptor lives); `None` if
/// it is gone or, with `try_only`, locked by someone else.
pub(crate) fn lock_dir(dir: &std::path::Path, try_only: bool) -> Option<fs::File> {
    use rustix::fs::{FlockOperation, flock};
    let f = fs::File::open(dir).ok()?;
    let op = if try_only {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::LockExclusive
    };
    // Unlocked only where taking it would wait (or fails outright, which would not
    // stop a removal): the lock only keeps sweeps off.
    match flock(&f, op) {
        Err(_) if try_only => None,
        _ => Some(f),
    }
}

/// A removed container's directory, waiting in the trash to be deleted (locked: see
/// [`Engine::sweep_trash`]).
#[derive(Debug)]
#[must_use = "purge the retired directory"]
pub(crate) struct Retired(Option<(std::path::PathBuf, fs::File)>);

impl Retired {
    /// Deletes the files.
    pub(crate) fn purge(self) {
        if let Some((p, _lock)) = self.0 {
            let _ = fs::remove_dir_all(p);
        }
    }
}

impl Engine {
    /// Host pids of every process of a running container.
    pub fn container_pids(&self, id: &str) -> Result<Vec<i32>, EngineError> {
        Ok(container::pids(&self.runtime_root(), id)?)
    }
}

impl Engine {
    /// One cgroup stats sample of a running container (runc's `events --stats` data).
    pub fn stats(
        &mut self,
        key: &str,
    ) -> Result<(ContainerRecord, serde_json::Value), EngineError> {
        let rec = self.get(key)?;
        if !rec.is_active() {
            return Err(EngineError::NotRunning(rec.name));
        }
        let v = container::stats(&self.runtime_root(), &rec.id)?;
        Ok((rec, v["data"].clone()))
    }
}
