//! One container's cgroup: a directory in every hierarchy, created, joined and removed.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::cgroupfs::CgroupDir;
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::{CgroupVersion, Flavor, Hierarchy};
use crate::resources;

/// A container's cgroup; serializable so the runtime keeps it in state.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub(crate) version: CgroupVersion,
    pub(crate) dirs: Vec<Dir>,
    /// How many parent levels above each leaf berth owns and removes when empty
    /// (1 for the default `/berth/<id>`, 0 for a path from config.json).
    pub(crate) owned_parents: usize,
}

/// The container's directory in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dir {
    pub(crate) flavor: Flavor,
    pub(crate) controllers: Vec<String>,
    pub(crate) mount_point: PathBuf,
    pub(crate) path: PathBuf,
    /// Failing to create or join an optional hierarchy (net_cls, perf_event, ...) is not
    /// an error.
    pub(crate) required: bool,
    /// Host symlinks to a v1 mount point, recreated inside the container.
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
}

/// v1 hierarchies whose failure is fatal; the rest are best-effort.
const REQUIRED_V1: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "name=systemd",
];

/// Default parent of containers without `cgroupsPath`.
const DEFAULT_PARENT: &str = "berth";

/// How often rmdir is retried on EBUSY (a dying task not yet gone from the cgroup).
const RMDIR_TRIES: u32 = 50;

impl Cgroup {
    /// Resolves `cgroups_path` from config.json for container `id`:
    /// - `None` -> `/berth/<id>` under every hierarchy root;
    /// - absolute (`/a/b`) -> under every hierarchy root;
    /// - relative (`a/b`) -> as runc does: under this process's own cgroup on v1, under
    ///   its parent on v2 (its own usually has processes, so controllers can't be enabled);
    /// - `slice:prefix:name` (systemd driver form) -> [`CgroupError::SystemdPath`].
    ///
    /// `..` components are refused: a config must not reach outside the hierarchy.
    pub fn new(h: &Hierarchy, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, CgroupError> {
        let (rel, absolute, owned_parents) = match cgroups_path {
            None | Some("") => {
                check_component(id)?;
                (format!("{DEFAULT_PARENT}/{id}"), true, 1)
            }
            Some(p) if !p.starts_with('/') && p.contains(':') => {
                return Err(CgroupError::SystemdPath { path: p.to_owned() });
            }
            Some(p) => (normalize(p)?, p.starts_with('/'), 0),
        };
        let dirs = h
            .mounts
            .iter()
            .map(|m| {
                let base = match (&m.own, absolute, m.flavor) {
                    (_, true, _) | (None, false, _) => PathBuf::new(),
                    (Some(own), false, Flavor::V1) => PathBuf::from(own.trim_start_matches('/')),
                    (Some(own), false, Flavor::V2) => Path::new(own.trim_start_matches('/'))
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                };
                Dir {
                    flavor: m.flavor,
                    controllers: m.controllers.clone(),
                    mount_point: m.mount_point.clone(),
                    path: m.mount_point.join(base).join(&rel),
                    required: m.flavor == Flavor::V2
                        || m.controllers
                            .iter()
                            .any(|c| REQUIRED_V1.contains(&c.as_str())),
                    aliases: m.aliases.clone(),
                }
            })
            .collect();
        Ok(Cgroup {
            version: h.version(),
            dirs,
            owned_parents,
        })
    }

    /// The host layout this cgroup was made for.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The directories, one per hierarchy (for logs and `state`).
    pub fn paths(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.path.as_path()).collect()
    }

    /// Creates the directory in every hierarchy (mkdir -p), fills empty v1 cpusets from
    /// the parent and enables the v2 controllers on the way down. On failure, removes what
    /// it made.
    pub fn create(&self) -> Result<(), CgroupError> {
        let mut made: Vec<PathBuf> = Vec::new();
        let result = self.create_all(&mut made);
        if result.is_err() {
            for p in made.iter().rev() {
                let _ = fs::remove_dir(p);
            }
        }
        result
    }

    fn create_all(&self, made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        for d in &self.dirs {
            if let Err(e) = mkdir_p(&d.mount_point, &d.path, made) {
                if d.required {
                    return Err(e);
                }
                continue;
            }
            if d.flavor == Flavor::V2 {
                // On a hybrid host the v2 tree only holds what v1 lacks (hugetlb); if it
                // can't be enabled, a hugetlb limit fails later naming its file.
                match enable_controllers(&d.mount_point, &d.path) {
                    Err(_) if self.version == CgroupVersion::Hybrid => {}
                    r => r?,
                }
            } else if d.controllers.iter().any(|c| c == "cpuset") {
                fill_cpusets(&d.mount_point, &d.path)?;
            }
        }
        Ok(())
    }

    /// Writes `r` (see [`validate`](crate::validate) for what is refused); also `update`.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let flavor_of = |c| self.locate(c).map(|d| d.flavor);
        let unified = self
            .dirs
            .iter()
            .find(|d| d.flavor == Flavor::V2)
            .map(|d| d.controllers.as_slice());
        let plan = resources::plan(r, &flavor_of, unified)?;
        resources::execute(&plan, &|c, file| self.open(c, file))
    }

    /// Moves process `pid` into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            let dir = match CgroupDir::open(&d.path) {
                Ok(dir) => dir,
                Err(_) if !d.required => continue,
                Err(e) => return Err(e),
            };
            match dir.write("cgroup.procs", &pid.to_string()) {
                Err(_) if !d.required => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup in every hierarchy; call it from the
    /// process itself, while it is single-threaded (a freshly forked runtime stage).
    ///
    /// Why not [`add_pid`](Self::add_pid) from the parent: a write of another pid to
    /// `cgroup.procs` takes the kernel's global threadgroup lock for writing, which waits
    /// for an RCU grace period — 5-15 ms on a quiet host, once per container. A thread
    /// that moves itself (`0` written to a v1 `tasks` file) skips that lock. A v2
    /// hierarchy has no such file for a move between domains, so the runtime forks the
    /// process straight into it (clone3 `CLONE_INTO_CGROUP`, see
    /// [`unified_path`](Self::unified_path)) and passes `in_unified = true`; otherwise
    /// `0` goes to its `cgroup.procs` (the slow path).
    pub fn join_self(&self, in_unified: bool) -> Result<(), CgroupError> {
        for d in &self.dirs {
            let file = match d.flavor {
                Flavor::V2 if in_unified => continue,
                Flavor::V2 => "cgroup.procs",
                Flavor::V1 => "tasks",
            };
            let dir = match CgroupDir::open(&d.path) {
                Ok(dir) => dir,
                Err(_) if !d.required => continue,
                Err(e) => return Err(e),
            };
            match dir.write(file, "0") {
                Err(_) if !d.required => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// The directory in the unified (v2) hierarchy, if the host has one: where the
    /// runtime forks a process with clone3 `CLONE_INTO_CGROUP`.
    pub fn unified_path(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.flavor == Flavor::V2)
            .map(|d| d.path.as_path())
    }

    /// All processes in the cgroup, including its sub-cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let d = self.procs_dir();
        let mut out = Vec::new();
        collect_pids(&d.path, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Whether any of the directories exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.path.is_dir())
    }

    /// Removes the directory (and sub-cgroups) in every hierarchy; Ok if already gone, so
    /// it also cleans up after a crash. Then removes berth-owned parents (`/berth`) that
    /// became empty, tolerating a concurrent create. Tries every directory and returns the
    /// first error.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in &self.dirs {
            if let Err(e) = rmdir_tree(&d.path) {
                first.get_or_insert(e);
                continue;
            }
            let mut parent = d.path.parent();
            for _ in 0..self.owned_parents {
                let Some(p) =
                    parent.filter(|p| p.starts_with(&d.mount_point) && *p != d.mount_point)
                else {
                    break;
                };
                // ENOTEMPTY / EBUSY: another container uses it; ENOENT: someone removed it.
                let _ = fs::remove_dir(p);
                parent = p.parent();
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The directory that carries `ctrl`: a v1 hierarchy that has it, else the v2 one if
    /// it has it (or if `ctrl` is part of the v2 core, like the freezer).
    pub(crate) fn locate(&self, ctrl: Ctrl) -> Option<&Dir> {
        crate::controller::locate(&self.dirs, ctrl, |d| (d.flavor, d.controllers.as_slice()))
    }

    /// Opens the directory carrying `ctrl`; `file` names what was wanted in the error.
    pub(crate) fn open(&self, ctrl: Ctrl, file: &str) -> Result<CgroupDir, CgroupError> {
        let d = self
            .locate(ctrl)
            .ok_or_else(|| CgroupError::ControllerMissing {
                controller: ctrl.name().to_owned(),
                file: file.to_owned(),
            })?;
        CgroupDir::open(&d.path)
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> &Dir {
        [Ctrl::Pids, Ctrl::Freezer, Ctrl::Memory]
            .into_iter()
            .find_map(|c| self.locate(c))
            .unwrap_or(&self.dirs[0])
    }
}

/// Checks a cgroupsPath and returns it without leading '/' and without empty or `.` parts.
fn normalize(p: &str) -> Result<String, CgroupError> {
    let mut parts = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath {
                    path: p.to_owned(),
                    reason: "`..` is not allowed",
                });
            }
        }
    }
    if parts.is_empty() {
        return Err(CgroupError::InvalidPath {
            path: p.to_owned(),
            reason: "names the hierarchy root",
        });
    }
    Ok(parts.join("/"))
}

fn check_component(id: &str) -> Result<(), CgroupError> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') {
        return Err(CgroupError::InvalidPath {
            path: id.to_owned(),
            reason: "container id cannot be a directory name",
        });
    }
    Ok(())
}

/// mkdir -p of `path` below `mount_point`, recording what it made. Retries when a
/// concurrent destroy removes a parent between two mkdirs.
fn mkdir_p(mount_point: &Path, path: &Path, made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let rel = path.strip_prefix(mount_point).unwrap_or(path);
    let mut tries = 0;
    'again: loop {
        let mut cur = mount_point.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match fs::create_dir(&cur) {
                Ok(()) => made.push(cur.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => {
                    tries += 1;
                    continue 'again;
                }
                Err(source) => return Err(CgroupError::Mkdir { path: cur, source }),
            }
        }
        return Ok(());
    }
}

/// The directories from just below `mount_point` down to `path`.
fn levels(mount_point: &Path, path: &Path) -> Vec<PathBuf> {
    let rel = path.strip_prefix(mount_point).unwrap_or(Path::new(""));
    let mut cur = mount_point.to_path_buf();
    rel.components()
        .map(|c| {
            cur.push(c);
            cur.clone()
        })
        .collect()
}

/// A new v1 cpuset starts empty and refuses tasks; copy cpus and mems from the parent.
fn fill_cpusets(mount_point: &Path, path: &Path) -> Result<(), CgroupError> {
    let mut parent = CgroupDir::open(mount_point)?;
    for level in levels(mount_point, path) {
        let dir = CgroupDir::open(&level)?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if dir.read(file)?.trim().is_empty() {
                let value = parent.read(file)?;
                dir.write(file, value.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// v2: a controller's files appear in a child only once the parent lists it in
/// `cgroup.subtree_control`; enable every available controller down to `path`'s parent.
fn enable_controllers(mount_point: &Path, path: &Path) -> Result<(), CgroupError> {
    let mut chain = vec![mount_point.to_path_buf()];
    chain.extend(levels(mount_point, path));
    chain.pop();
    for level in chain {
        let dir = CgroupDir::open(&level)?;
        let available = dir.read_opt("cgroup.controllers")?.unwrap_or_default();
        let enabled = dir.read_opt("cgroup.subtree_control")?.unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for c in available
            .split_whitespace()
            .filter(|c| !enabled.contains(c))
        {
            dir.write("cgroup.subtree_control", &format!("+{c}"))?;
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let d = CgroupDir::open(dir)?;
    let procs = d.read("cgroup.procs")?;
    for l in procs.lines() {
        out.push(
            l.trim()
                .parse()
                .map_err(|_| d.parse_error("cgroup.procs", l))?,
        );
    }
    for sub in sub_dirs(dir)? {
        collect_pids(&sub, out)?;
    }
    Ok(())
}

fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// rmdir depth-first; Ok if `dir` does not exist.
fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    match sub_dirs(dir) {
        Ok(subs) => {
            for s in subs {
                rmdir_tree(&s)?;
            }
        }
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < RMDIR_TRIES => {
                tries += 1;
                sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
