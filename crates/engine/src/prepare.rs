//! What a container needs before the runtime creates it: the overlay rootfs, the
//! engine-written `/etc/{hostname,hosts,resolv.conf}`, the resolved user, the namespaces
//! to join, and the spec. Also the rootfs unmount used by every teardown path.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::container::Engine;
use crate::network::{self, NetworkMode};
use crate::record::ContainerRecord;
use crate::spec::{self, NsJoin};
use crate::{EngineError, io_err, user};

/// True if `path` is a mount point: asked of the kernel with statx (Linux 5.8+), else
/// looked up in `/proc/self/mountinfo` (which costs a walk of every mount of the host).
pub(crate) fn is_mounted(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    match rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
        }
        Err(rustix::io::Errno::NOENT) => return false,
        _ => {}
    }
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts the container's rootfs, every layer of it if mounted more than once. Also
/// where berth before 2026-11-26 mounted it (`<container_dir>/rootfs`), so that a
/// container started by an older berth is unmounted too.
pub(crate) fn unmount(engine: &Engine, id: &str) -> Result<(), EngineError> {
    for target in [
        engine.rootfs_dir(id),
        engine.container_dir(id).join("rootfs"),
    ] {
        for _ in 0..8 {
            if !is_mounted(&target) {
                break;
            }
            berth_image::unmount_rootfs(&target)?;
        }
    }
    Ok(())
}

/// Mounts the image's layers plus the container's upper dir at its
/// [`rootfs_dir`](Engine::rootfs_dir) and writes the `/etc` files into its
/// [`run_dir`](Engine::run_dir) (made here: the run-time filesystem may have been
/// emptied by a reboot since the last start).
pub(crate) fn rootfs(engine: &Engine, rec: &ContainerRecord) -> Result<(), EngineError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = engine.container_dir(&rec.id);
    let run = engine.run_dir(&rec.id);
    unmount(engine, &rec.id)?;
    let mountpoint = engine.rootfs_dir(&rec.id);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&mountpoint)
        .map_err(io_err(format!("create `{}`", mountpoint.display())))?;
    let store = engine.image_store()?;
    let image = store.resolve(&rec.image_id)?;
    let init = if rec.init_layer {
        Some(store.init_layer(&image)?)
    } else {
        None
    };
    crate::trace::mark("rootfs: image found");
    // A `--rm` container's writable layer dies with it: no need for the kernel to sync
    // it on unmount.
    berth_image::mount_rootfs_opts(
        &store,
        &image,
        &dir.join("upper"),
        &dir.join("work"),
        &mountpoint,
        berth_image::OverlayApi::Auto,
        rec.host_config.auto_remove,
        init.as_deref(),
    )?;
    crate::trace::mark("rootfs: mounted");
    let host_net = rec.host_config.network_mode == "host";
    let hosts = if host_net {
        read_small(Path::new("/etc/hosts"))
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            rec.config.hostname
        )
    };
    let hostname = if rec.host_config.uts_mode == "host" {
        read_small(Path::new("/proc/sys/kernel/hostname"))
    } else {
        format!("{}\n", rec.config.hostname)
    };
    for (name, text) in [
        ("hosts", hosts),
        ("hostname", hostname),
        ("resolv.conf", read_small(Path::new("/etc/resolv.conf"))),
    ] {
        let p = run.join(name);
        fs::write(&p, text).map_err(io_err(format!("write `{}`", p.display())))?;
    }
    Ok(())
}

/// Removes directory `dir` with the files in it and its empty subdirectories, never
/// descending further: a subdirectory that is a mount point or not empty stays, and so
/// does `dir`. For a run directory, whose `rootfs` must not be walked while an overlay
/// might still be mounted on it. A missing `dir` is not an error; the first error is
/// returned after trying every entry.
pub(crate) fn remove_shallow(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    let mut first = None;
    for e in entries {
        let r = e.and_then(|e| {
            if e.file_type()?.is_dir() {
                fs::remove_dir(e.path())
            } else {
                fs::remove_file(e.path())
            }
        });
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => fs::remove_dir(dir),
    }
}

fn read_small(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(f) = fs::File::open(p) {
        let _ = f.take(64 * 1024).read_to_string(&mut s);
    }
    s
}

/// The pid of a running container named by `--pid/--ipc/--network=container:X`.
fn running_pid(engine: &mut Engine, key: &str) -> Result<i32, EngineError> {
    let rec = engine.get(key)?;
    if !rec.is_active() || rec.state.pid <= 0 {
        return Err(EngineError::NotRunning(key.to_string()));
    }
    Ok(rec.state.pid)
}

fn join_for(
    engine: &mut Engine,
    kind: &'static str,
    proc_name: &str,
    mode: &str,
) -> Result<Option<NsJoin>, EngineError> {
    match mode {
        "" | "private" | "shareable" => Ok(None),
        "host" => Ok(Some(NsJoin { kind, path: None })),
        _ => match mode.strip_prefix("container:") {
            Some(c) => {
                let pid = running_pid(engine, c)?;
                Ok(Some(NsJoin {
                    kind,
                    path: Some(format!("/proc/{pid}/ns/{proc_name}")),
                }))
            }
            None => Err(EngineError::InvalidMode {
                flag: kind,
                value: mode.to_string(),
            }),
        },
    }
}

/// The namespaces the container joins instead of creating.
fn joins(engine: &mut Engine, rec: &ContainerRecord) -> Result<Vec<NsJoin>, EngineError> {
    let h = &rec.host_config;
    let mut v = Vec::new();
    v.extend(join_for(engine, "pid", "pid", &h.pid_mode)?);
    v.extend(join_for(engine, "ipc", "ipc", &h.ipc_mode)?);
    v.extend(join_for(engine, "uts", "uts", &h.uts_mode)?);
    let mode = network::parse_mode(&h.network_mode)?;
    let pid = match &mode {
        NetworkMode::Container(c) => Some(running_pid(engine, c)?),
        _ => None,
    };
    v.extend(network::join(&mode, pid));
    Ok(v)
}

/// Docker's 126: the program exists in the rootfs but cannot be executed (a directory, or
/// no execute bit). Looked up inside the rootfs like the runtime will (`$PATH` of the
/// container's env when the name has no `/`); a missing program is left to the runtime,
/// which reports it as not found (127).
pub(crate) fn check_executable(
    rootfs: &Path,
    argv0: &str,
    env: &[String],
) -> Result<(), EngineError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use nix::sys::stat::{Mode, SFlag, fstat};
    let Ok(root) = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(());
    };
    let candidates: Vec<String> = if argv0.contains('/') {
        vec![argv0.to_string()]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':').map(|d| format!("{d}/{argv0}")).collect()
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    for c in candidates {
        let rel = c.trim_start_matches('/');
        let Ok(fd) = openat2(&root, if rel.is_empty() { "." } else { rel }, how) else {
            continue;
        };
        let Ok(st) = fstat(&fd) else { continue };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR && argv0.contains('/') {
            return Err(EngineError::CannotExecute {
                path: argv0.to_string(),
                why: "is a directory",
            });
        }
        if kind == SFlag::S_IFREG {
            if st.st_mode & 0o111 == 0 {
                return Err(EngineError::CannotExecute {
                    path: c,
                    why: "permission denied",
                });
            }
            return Ok(());
        }
    }
    Ok(())
}

/// The runtime spec for `rec`, running `argv`.
pub(crate) fn spec(
    engine: &mut Engine,
    rec: &ContainerRecord,
    argv: &[String],
) -> Result<oci_spec::runtime::Spec, EngineError> {
    let dir = engine.run_dir(&rec.id);
    let ident = user::resolve(&engine.rootfs_dir(&rec.id), &rec.config.user)?;
    let joins = joins(engine, rec)?;
    let vol = |n: &str| engine.volume_path(n).to_string_lossy().into_owned();
    let mut spec = spec::build(rec, &dir, &ident, &joins, argv, &vol)?;
    if rec.host_config.init {
        add_init(&mut spec)?;
    }
    Ok(spec)
}

/// `--init`: berth-runtime (a static binary, installed next to berth and berth-monitor) is
/// bind-mounted read-only at /dev/init and runs the program as `init -- ARGV`, reaping
/// zombies and forwarding signals as pid 1.
fn add_init(spec: &mut oci_spec::runtime::Spec) -> Result<(), EngineError> {
    let bin = std::env::current_exe()
        .unwrap_or_default()
        .with_file_name("berth-runtime");
    if !bin.is_file() {
        return Err(EngineError::InitMissing(bin));
    }
    let mount = oci_spec::runtime::MountBuilder::default()
        .destination("/dev/init")
        .typ("bind")
        .source(bin)
        .options(vec![
            "bind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
        ])
        .build()
        .map_err(|e| EngineError::InitMissing(std::path::PathBuf::from(e.to_string())))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    if let Some(p) = spec.process_mut().as_mut() {
        let mut args = vec!["/dev/init".to_string(), "init".into(), "--".into()];
        args.extend(p.args().clone().unwrap_or_default());
        p.set_args(Some(args));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_told_apart_from_plain_directories() {
        assert!(is_mounted(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(dir.path()));
        assert!(!is_mounted(&dir.path().join("missing")));
    }

    #[test]
    fn run_directories_are_removed_without_descending() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        fs::create_dir_all(run.join("rootfs")).unwrap();
        for f in ["hosts", "hostname", "config.json"] {
            fs::write(run.join(f), "x").unwrap();
        }
        remove_shallow(&run).unwrap();
        assert!(!run.exists());
        remove_shallow(&run).unwrap();

        // A rootfs that is not empty (as a mounted one looks) is not walked into.
        fs::create_dir_all(run.join("rootfs/etc")).unwrap();
        fs::write(run.join("rootfs/etc/passwd"), "root").unwrap();
        fs::write(run.join("hosts"), "x").unwrap();
        assert!(remove_shallow(&run).is_err());
        assert!(run.join("rootfs/etc/passwd").exists());
        assert!(!run.join("hosts").exists());
    }
}
