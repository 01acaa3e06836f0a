//! The engine handle and the container's creation: image config + flags → record, the
//! container's directory, and starting it through its monitor.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_image::Store;
use berth_runtime::state::StateRoot;

use crate::db::{Db, DbError};
use crate::record::{Config, ContainerRecord, HostConfig, MountPoint, State};
use crate::{EngineError, io_err, names, sys};

/// The engine over one `--root`/`--runroot` pair.
#[derive(Debug)]
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) runroot: PathBuf,
    pub(crate) db: Db,
    monitor: PathBuf,
}

/// What the user asked for with `create`/`run`, before the image's config is merged in.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image name (replace the image's Cmd when not empty).
    pub cmd: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub host: HostConfig,
}

/// A started container whose monitor reports to us until it exits.
#[derive(Debug)]
pub struct Attached {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    pub(crate) status: Option<BufReader<File>>,
    /// The monitor (our child while attached), told about terminal resizes.
    pub(crate) monitor: i32,
}

impl Engine {
    /// Opens the engine's state; `monitor` is the path of the `berth-monitor` binary.
    pub fn open(root: &Path, runroot: &Path, monitor: &Path) -> Result<Engine, EngineError> {
        for d in [
            root.join("containers"),
            root.join("volumes"),
            runroot.into(),
        ] {
            fs::create_dir_all(&d).map_err(io_err(format!("create `{}`", d.display())))?;
        }
        crate::trace::mark("engine: dirs");
        let db = Db::open(&root.join("berth.db"))?;
        Ok(Engine {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
            db,
            monitor: monitor.to_path_buf(),
        })
    }

    /// The engine as a monitor uses it: the directories exist (its `berth` made them) and
    /// the database is connected on first use.
    pub(crate) fn for_monitor(root: &Path, runroot: &Path) -> Engine {
        Engine {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
            db: Db::open_lazy(&root.join("berth.db")),
            monitor: PathBuf::new(),
        }
    }

    /// `<root>/containers/<id>`: what the container keeps across starts and reboots: its
    /// writable layer (`upper`, `work`) and its log.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// `<runroot>/containers/<id>`: what each start makes anew: the bundle
    /// (`config.json`), the rootfs mount point (`rootfs`), the `/etc/{hostname,hosts,
    /// resolv.conf}` bind-mounted into the container and the attach socket. Like Podman's
    /// run-time `userdata` and containerd's bundles, on the run-time filesystem (a tmpfs
    /// under `/run` on most hosts): files made and deleted at every `run --rm` cost less
    /// there than on the disk.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    /// Where the container's rootfs is mounted while it runs (`<run_dir>/rootfs`).
    pub fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("rootfs")
    }

    /// Where the container's rootfs is mounted now: [`rootfs_dir`](Self::rootfs_dir), or,
    /// for a container that a berth from before 2026-11-26 started and that still runs,
    /// `<container_dir>/rootfs`, where that berth mounted it.
    pub(crate) fn mounted_rootfs(&self, id: &str) -> PathBuf {
        let dir = self.rootfs_dir(id);
        let legacy = self.container_dir(id).join("rootfs");
        if !crate::prepare::is_mounted(&dir) && crate::prepare::is_mounted(&legacy) {
            legacy
        } else {
            dir
        }
    }

    /// The json-file log of a container.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The runtime's state root for berth's containers.
    pub fn runtime_root(&self) -> StateRoot {
        StateRoot::new(self.runroot.join("runtime"))
    }

    /// `<root>/volumes/<name>/_data`.
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name).join("_data")
    }

    /// The image store under the same root.
    pub fn image_store(&self) -> Result<Store, EngineError> {
        Ok(Store::open(&self.root)?)
    }

    /// `create`: resolves the image, merges its config with the request, stores the record
    /// and makes the container's directory and volumes. Nothing runs yet.
    pub fn create(&mut self, req: &CreateRequest) -> Result<ContainerRecord, EngineError> {
        crate::trace::mark("create");
        let store = self.image_store()?;
        let image = store.resolve(&req.image)?;
        if let Some(n) = &req.name
            && !names::valid_name(n)
        {
            return Err(EngineError::InvalidName(n.clone()));
        }
        let id = names::new_id();
        let mut rec = ContainerRecord {
            id: id.clone(),
            name: req.name.clone().unwrap_or_else(|| names::random_name(0)),
            created: crate::time::now(),
            image_id: image.record.id.to_string(),
            config: merge_config(req, &image.config, &id),
            host_config: req.host.clone(),
            state: State::default(),
            // Without it (it could not be made) the runtime makes the mount points in
            // the upper directory, as it would for any image.
            init_layer: store.init_layer(&image).is_ok(),
        };
        self.inherit_volumes(&mut rec)?;
        add_image_volumes(&mut rec);
        let image_ports = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        rec.config.exposed_ports =
            crate::network::expose_ports(&mut rec.host_config.net, &image_ports)?;
        // The record first: a crash after this leaves a `Created` container that `rm`
        // cleans, never a directory nobody knows about.
        // Its volumes get their records and directories in the same transaction, so a
        // concurrent `volume rm` either runs before (and the volume is made anew) or sees
        // the container and refuses.
        let volumes = self.root.join("volumes");
        let mut attempt = 0;
        loop {
            let r = self.db.insert_with(&rec, |tx| {
                crate::volume::attach_records(tx, &volumes, &rec).map_err(EngineError::from)
            });
            match r {
                Err(EngineError::Db(DbError::NameInUse { .. }))
                    if req.name.is_none() && attempt < 20 =>
                {
                    attempt += 1;
                    rec.name = names::random_name(attempt);
                }
                r => break r?,
            }
        }
        crate::trace::mark("create: recorded");
        // While the container exists its image may not lose its layers to `rmi`.
        store.hold(&image.record.id, &id)?;
        crate::trace::mark("create: held");
        let dir = self.container_dir(&id);
        for d in [dir.join("upper"), dir.join("work")] {
            fs::create_dir_all(&d).map_err(io_err(format!("create `{}`", d.display())))?;
        }
        crate::trace::mark("created");
        Ok(rec)
    }

    /// `--volumes-from`: the bind mounts and volumes of each named container (in any
    /// state), at the same destinations and, unless the entry ends in `:ro` or `:rw`, in
    /// the same mode. A destination that the new container mounts itself, or that an
    /// earlier entry gave, keeps that mount. An anonymous volume stays anonymous, so, as
    /// with Docker, the `rm -v` of whichever of its containers goes last removes it.
    /// They come first, so a container's own mount below a borrowed one lands on top.
    fn inherit_volumes(&mut self, rec: &mut ContainerRecord) -> Result<(), EngineError> {
        let mut inherited: Vec<MountPoint> = Vec::new();
        for entry in rec.host_config.volumes_from.clone() {
            let (key, mode) = match entry.rsplit_once(':') {
                Some((k, m)) => (k, Some(m)),
                None => (entry.as_str(), None),
            };
            let src = self.get(key)?;
            for m in &src.host_config.mounts {
                if !matches!(m.r#type.as_str(), "bind" | "volume")
                    || rec
                        .host_config
                        .mounts
                        .iter()
                        .chain(&inherited)
                        .any(|x| x.destination == m.destination)
                {
                    continue;
                }
                let mut m = m.clone();
                match mode {
                    Some("ro") => m.read_only = true,
                    Some("rw") => m.read_only = false,
                    _ => {}
                }
                inherited.push(m);
            }
        }
        inherited.append(&mut rec.host_config.mounts);
        rec.host_config.mounts = inherited;
        Ok(())
    }

    /// Starts a created or exited container through a new monitor. With `attach` the
    /// monitor serves our stdio (stdin too if the container has `-i`) and reports the exit
    /// code to [`Attached::status`]; otherwise it detaches from us completely.
    /// Attached, the detach keys are Docker's default (ctrl-p,ctrl-q).
    pub fn start(&mut self, key: &str, attach: bool) -> Result<Attached, EngineError> {
        if attach {
            self.start_attached(key, true, None)
        } else {
            self.start_monitor(key, "detach", None)
        }
    }

    /// `start -a` (`stdin` false: our stdin is not read, the container's stays open for
    /// `attach`), `start -ai`/`start -i` and `run` (`stdin` true). Typing `detach_keys`
    /// (Docker's syntax; `None` for ctrl-p,ctrl-q) on our stdin detaches:
    /// [`Engine::wait_attached`] returns 0 and the container runs on.
    pub fn start_attached(
        &mut self,
        key: &str,
        stdin: bool,
        detach_keys: Option<&str>,
    ) -> Result<Attached, EngineError> {
        let keys = match detach_keys {
            None | Some("") => crate::attach_client::DEFAULT_DETACH_KEYS,
            Some(k) => k,
        };
        crate::attach_client::DetachKeys::parse(keys)?;
        let mode = if stdin { "attach" } else { "attach-output" };
        self.start_monitor(key, mode, Some(keys))
    }

    fn start_monitor(
        &mut self,
        key: &str,
        mode: &str,
        detach_keys: Option<&str>,
    ) -> Result<Attached, EngineError> {
        let attach = mode != "detach";
        let rec = self.get(key)?;
        if rec.is_active() {
            return Ok(Attached {
                id: rec.id,
                pid: rec.state.pid,
                status: None,
                monitor: 0,
            });
        }
        crate::network::before_start(self, &rec)?;
        crate::trace::mark("spawn monitor");
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("create status pipe")(e.into()))?;
        let mut cmd = Command::new(&self.monitor);
        cmd.arg(&self.root)
            .arg(&self.runroot)
            .arg(&rec.id)
            .arg(mode)
            .args(detach_keys);
        if !attach {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else if !rec.config.open_stdin || mode != "attach" {
            cmd.stdin(Stdio::null());
        }
        sys::pass_fd(&mut cmd, sys::STATUS_FD_ENV, &wr).map_err(io_err("pass the status pipe"))?;
        let (handoff_rd, handoff_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("create hand-off pipe")(e.into()))?;
        sys::pass_fd(&mut cmd, sys::HANDOFF_FD_ENV, &handoff_rd)
            .map_err(io_err("pass the hand-off pipe"))?;
        let child = cmd
            .spawn()
            .map_err(io_err(format!("run `{}`", self.monitor.display())))?;
        drop(wr);
        drop(handoff_rd);
        crate::trace::mark("monitor spawned");
        // The monitor is its own session leader and outlives us; we never wait for it
        // (its exit is reported through the pipe), so do not keep the handle.
        let monitor = i32::try_from(child.id()).unwrap_or(0);
        drop(child);
        self.hand_off(&rec.id, monitor, File::from(handoff_wr));
        crate::trace::mark("handed off");
        let mut status = BufReader::new(File::from(rd));
        let mut line = String::new();
        status
            .read_line(&mut line)
            .map_err(io_err("read the monitor's report"))?;
        crate::trace::mark("start reported");
        match parse_report(&line) {
            Report::Started(pid) => Ok(Attached {
                id: rec.id,
                pid,
                status: attach.then_some(status),
                monitor,
            }),
            Report::Error(code, message) => Err(EngineError::StartFailed { code, message }),
            Report::Exit(_) | Report::Detached | Report::Lost => {
                Err(EngineError::MonitorLost(rec.id))
            }
        }
    }
}

impl Engine {
    /// Records `monitor` (pid and start time) as the container's monitor, in the one
    /// transaction that backs off if a concurrent `rm -f` already marked it Dead. A
    /// `stop` by the user is forgotten at a first start, kept across restarts.
    pub(crate) fn claim(
        &mut self,
        id: &str,
        monitor: i32,
        first: bool,
    ) -> Result<ContainerRecord, EngineError> {
        let start = crate::lifecycle::process_start_time(monitor).unwrap_or(0);
        Ok(self.db.update(id, |r| {
            if r.state.status == crate::record::Status::Dead {
                return Err(DbError::Removing(r.id.clone()));
            }
            r.state.monitor_pid = monitor;
            r.state.monitor_start = start;
            r.state.stopped_by_user = r.state.stopped_by_user && !first;
            Ok(())
        })?)
    }

    /// While the new monitor execs and starts up, we would only wait for it: claim the
    /// container for it and mount its rootfs meanwhile (on the other CPU), then send it
    /// the claimed record through the hand-off pipe. If any step fails (or we die), the
    /// pipe closes empty and the monitor does both itself, reporting the error, if
    /// there is one, like any other. The mount is done under the container directory's
    /// lock, with the record checked there: a concurrent `rm -f` (which marks the
    /// record Dead, then unmounts under the same lock) cannot miss it.
    fn hand_off(&mut self, id: &str, monitor: i32, mut to: File) {
        let Some(_lock) = crate::lifecycle::lock_dir(&self.container_dir(id), false) else {
            return;
        };
        let Ok(rec) = self.claim(id, monitor, true) else {
            return;
        };
        crate::trace::mark("hand-off: claimed");
        if crate::prepare::rootfs(self, &rec).is_err() {
            return;
        }
        crate::fault::point("hand-off-mounted");
        if let Ok(text) = serde_json::to_vec(&rec) {
            let _ = to.write_all(&text);
        }
    }
}

/// A line from the monitor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    Started(i32),
    Error(i32, String),
    Exit(i32),
    /// The attached caller typed the detach keys.
    Detached,
    Lost,
}

pub(crate) fn parse_report(line: &str) -> Report {
    let line = line.trim_end_matches('\n');
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "started" => rest.parse().map_or(Report::Lost, Report::Started),
        "exit" => rest.parse().map_or(Report::Lost, Report::Exit),
        "detached" => Report::Detached,
        "error" => {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            Report::Error(code.parse().unwrap_or(125), msg.to_string())
        }
        _ => Report::Lost,
    }
}

fn merge_config(
    req: &CreateRequest,
    image: &oci_spec::image::ImageConfiguration,
    id: &str,
) -> Config {
    let ic = image.config().clone().unwrap_or_default();
    let mut env = ic.env().clone().unwrap_or_default();
    for e in &req.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let (entrypoint, cmd) = match &req.entrypoint {
        Some(ep) => {
            let ep = if ep.is_empty() {
                vec![]
            } else {
                vec![ep.clone()]
            };
            (ep, req.cmd.clone())
        }
        None => {
            let cmd = if req.cmd.is_empty() {
                ic.cmd().clone().unwrap_or_default()
            } else {
                req.cmd.clone()
            };
            (ic.entrypoint().clone().unwrap_or_default(), cmd)
        }
    };
    let mut labels: BTreeMap<String, String> = ic
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(req.labels.clone());
    Config {
        hostname: req.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        user: req
            .user
            .clone()
            .or_else(|| ic.user().clone())
            .unwrap_or_default(),
        env,
        cmd,
        entrypoint,
        working_dir: req
            .working_dir
            .clone()
            .or_else(|| ic.working_dir().clone())
            .unwrap_or_default(),
        labels,
        tty: req.tty,
        open_stdin: req.open_stdin,
        stop_signal: req
            .stop_signal
            .clone()
            .or_else(|| ic.stop_signal().clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: req.stop_timeout,
        image: req.image.clone(),
        volumes: ic.volumes().clone().unwrap_or_default(),
        exposed_ports: Vec::new(),
    }
}

/// Each `VOLUME` of the image not covered by a user mount gets an anonymous volume.
fn add_image_volumes(rec: &mut ContainerRecord) {
    for v in rec.config.volumes.clone() {
        if rec.host_config.mounts.iter().any(|m| m.destination == v) {
            continue;
        }
        rec.host_config.mounts.push(MountPoint {
            r#type: "volume".into(),
            source: names::new_id(),
            destination: v,
            read_only: false,
            options: vec![],
            anonymous: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(parse_report("started 42\n"), Report::Started(42));
        assert_eq!(parse_report("exit 137\n"), Report::Exit(137));
        assert_eq!(
            parse_report("error 127 exec: not found\n"),
            Report::Error(127, "exec: not found".into())
        );
        assert_eq!(parse_report("detached\n"), Report::Detached);
        assert_eq!(parse_report(""), Report::Lost);
    }

    #[test]
    fn entrypoint_flag_replaces_image_cmd() {
        let image: oci_spec::image::ImageConfiguration =
            serde_json::from_value(serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": ["/init"],
                           "StopSignal": "SIGQUIT", "Volumes": {"/data": {}}}
            }))
            .unwrap();
        let id = "0123456789abcdef";
        let mut req = CreateRequest {
            env: vec!["A=2".into()],
            ..Default::default()
        };
        let c = merge_config(&req, &image, id);
        assert_eq!(c.entrypoint, ["/init"]);
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.env, ["PATH=/bin", "A=2"]);
        assert_eq!(c.hostname, "0123456789ab");
        assert_eq!(c.stop_signal, "SIGQUIT");
        assert_eq!(c.volumes, ["/data"]);
        req.entrypoint = Some("echo".into());
        req.cmd = vec!["hi".into()];
        let c = merge_config(&req, &image, id);
        assert_eq!(
            (c.entrypoint, c.cmd),
            (vec!["echo".into()], vec!["hi".into()])
        );
    }
}
