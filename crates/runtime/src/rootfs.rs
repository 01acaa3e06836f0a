//! The container's root filesystem, set up inside its own mount namespace: propagation,
//! the rootfs bind, config.json mounts, `/dev`, then pivot_root and the paths masked or
//! made read-only after it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_cgroups::{CgroupMount, CgroupMountKind};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use crate::mount::{self, MountError, create_in_root, fd_path};
use crate::sys;

/// Why the rootfs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("{step} `{path}`: {source}")]
    Step {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unknown rootfsPropagation `{0}`")]
    Propagation(String),
}

fn step(step: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.into();
    move |source| RootfsError::Step { step, path, source }
}

/// Device nodes every container gets, as runc and Docker make them.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks of a conventional /dev.
const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

/// Steps before pivot_root, run by the init in its new mount namespace.
pub(crate) fn prepare(
    spec: &Spec,
    rootfs: &Path,
    in_user_ns: bool,
    cgroup_mounts: &[CgroupMount],
) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // Stop our mounts from propagating back to the host (runc's default is rslave so host
    // unmounts still reach the container).
    let prop = linux
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    let root_flags = match prop.as_str() {
        "" | "slave" | "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "private" | "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" | "rshared" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" | "runbindable" => libc::MS_SLAVE | libc::MS_REC,
        other => return Err(RootfsError::Propagation(other.to_string())),
    };
    sys::mount(None, Path::new("/"), None, root_flags, None)
        .map_err(step("set propagation of", "/"))?;
    // pivot_root needs the new root to be a mount point: bind it onto itself.
    sys::mount(
        Some(rootfs.as_os_str()),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(step("bind rootfs", rootfs))?;
    let root = sys::open(rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(step("open rootfs", rootfs))?;
    let mounts = spec.mounts().clone().unwrap_or_default();
    let mut dev_is_ours = false;
    for m in &mounts {
        if m.typ().as_deref() == Some("cgroup") {
            mount_cgroup(root.as_fd(), m, cgroup_mounts)?;
            continue;
        }
        mount::mount_in_root(root.as_fd(), m)?;
        if m.destination() == Path::new("/dev") {
            dev_is_ours = m.typ().as_deref() != Some("bind");
        }
    }
    if dev_is_ours {
        make_default_devices(root.as_fd(), in_user_ns)?;
    }
    for d in linux.and_then(|l| l.devices().clone()).unwrap_or_default() {
        make_device(root.as_fd(), &d, in_user_ns)?;
    }
    // The final propagation the config asks for applies to the rootfs mount itself.
    if let Some(flags) = match prop.as_str() {
        "shared" | "rshared" => Some(libc::MS_SHARED),
        "unbindable" | "runbindable" => Some(libc::MS_UNBINDABLE),
        _ => None,
    } {
        sys::mount(None, rootfs, None, flags, None).map_err(step("set propagation of", rootfs))?;
    }
    Ok(())
}

/// A `type: cgroup` mount: the cgroup filesystems of this host's layout (one cgroup2
/// mount, or a tmpfs with one mount per v1 controller), made read-only last if asked.
fn mount_cgroup(
    root: BorrowedFd<'_>,
    m: &oci_spec::runtime::Mount,
    cms: &[CgroupMount],
) -> Result<(), RootfsError> {
    let base = m.destination();
    let opts = mount::fold_options(m.options().as_deref().unwrap_or(&[]));
    let ro = opts.flags & libc::MS_RDONLY != 0;
    for cm in cms {
        let dest = if cm.dest.as_os_str().is_empty() {
            base.clone()
        } else {
            base.join(&cm.dest)
        };
        match &cm.kind {
            CgroupMountKind::Mount {
                source,
                fstype,
                flags,
                data,
            } => {
                let target = create_in_root(root, &dest, false).map_err(step("create", &dest))?;
                let mut f = flags.bits();
                if ro && fstype != "tmpfs" {
                    f |= libc::MS_RDONLY;
                }
                sys::mount(
                    Some(OsStr::new(source)),
                    &fd_path(target.as_fd()),
                    Some(fstype),
                    f,
                    data.as_deref(),
                )
                .map_err(step("mount cgroup", &dest))?;
            }
            CgroupMountKind::Symlink { target } => {
                let parent = dest.parent().unwrap_or(base);
                let dir = create_in_root(root, parent, false).map_err(step("open", parent))?;
                let dir = sys::openat(
                    dir.as_fd(),
                    Path::new("."),
                    libc::O_DIRECTORY | libc::O_RDONLY,
                    0,
                )
                .map_err(step("open", parent))?;
                let name = dest.file_name().unwrap_or_default();
                match sys::symlinkat(OsStr::new(target), dir.as_fd(), name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(step("symlink", &dest)(e)),
                }
            }
        }
    }
    let tmpfs_root = cms.iter().any(|c| {
        c.dest.as_os_str().is_empty()
            && matches!(&c.kind, CgroupMountKind::Mount { fstype, .. } if fstype == "tmpfs")
    });
    if ro && tmpfs_root {
        let fd = create_in_root(root, base, false).map_err(step("open", base))?;
        sys::mount(
            None,
            &fd_path(fd.as_fd()),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )
        .map_err(step("remount read-only", base))?;
    }
    Ok(())
}

fn make_default_devices(root: BorrowedFd<'_>, in_user_ns: bool) -> Result<(), RootfsError> {
    let dev = create_in_root(root, Path::new("/dev"), false).map_err(step("open", "/dev"))?;
    let dev = sys::openat(
        dev.as_fd(),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(step("open", "/dev"))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = PathBuf::from("/dev").join(name);
        node(
            root,
            dev.as_fd(),
            &path,
            libc::S_IFCHR | 0o666,
            *major,
            *minor,
            in_user_ns,
        )?;
    }
    for (target, name) in DEV_SYMLINKS {
        match sys::symlinkat(OsStr::new(target), dev.as_fd(), OsStr::new(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(step("symlink", PathBuf::from("/dev").join(name))(e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = sys::symlinkat(OsStr::new("/proc/kcore"), dev.as_fd(), OsStr::new("core"));
    }
    Ok(())
}

/// Makes one device node at `path`; in a user namespace, where mknod is not allowed,
/// bind-mounts the host's node instead.
fn node(
    root: BorrowedFd<'_>,
    dev: BorrowedFd<'_>,
    path: &Path,
    mode: u32,
    major: u32,
    minor: u32,
    in_user_ns: bool,
) -> Result<(), RootfsError> {
    let name = path.file_name().unwrap_or_default();
    if in_user_ns {
        return bind_host_node(root, path, &PathBuf::from("/dev").join(name));
    }
    let devnum = libc::makedev(major, minor);
    match sys::mknodat(dev, name, mode, devnum) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(step("mknod", path)(e)),
    }
    // mknod is subject to the umask; set the mode the config asked for.
    let fd = sys::openat(dev, Path::new(name), libc::O_PATH | libc::O_NOFOLLOW, 0)
        .map_err(step("open", path))?;
    let proc_path = fd_path(fd.as_fd());
    std::fs::set_permissions(
        &proc_path,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .map_err(step("chmod", path))?;
    Ok(())
}

/// In a user namespace mknod is not allowed: bind the host's node at `path` instead.
fn bind_host_node(root: BorrowedFd<'_>, path: &Path, host: &Path) -> Result<(), RootfsError> {
    let target = create_in_root(root, path, true).map_err(step("create", path))?;
    sys::mount(
        Some(host.as_os_str()),
        &fd_path(target.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(step("bind device", path))
}

fn make_device(root: BorrowedFd<'_>, d: &LinuxDevice, in_user_ns: bool) -> Result<(), RootfsError> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => libc::S_IFCHR,
    };
    let path = d.path();
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = create_in_root(root, parent, false).map_err(step("create", parent))?;
    let dir = sys::openat(
        dir.as_fd(),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(step("open", parent))?;
    let major = u32::try_from(d.major()).unwrap_or(0);
    let minor = u32::try_from(d.minor()).unwrap_or(0);
    let mode = kind | d.file_mode().unwrap_or(0o666);
    if in_user_ns {
        return bind_host_node(root, path, path);
    }
    node(root, dir.as_fd(), path, mode, major, minor, false)?;
    if d.uid().is_some() || d.gid().is_some() {
        let fd = create_in_root(root, path, false).map_err(step("open", path))?;
        sys::fchown(fd.as_fd(), d.uid().unwrap_or(0), d.gid().unwrap_or(0))
            .map_err(step("chown", path))?;
    }
    Ok(())
}

/// Makes `rootfs` the root: pivot_root with the old root stacked on top and detached, or
/// with `no_pivot`, a move mount plus chroot (for ramfs roots that cannot pivot).
pub(crate) fn enter(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    sys::chdir(rootfs).map_err(step("chdir", rootfs))?;
    if no_pivot {
        sys::mount(
            Some(OsStr::new(".")),
            Path::new("/"),
            None,
            libc::MS_MOVE,
            None,
        )
        .map_err(step("move rootfs to", "/"))?;
        sys::chroot(Path::new(".")).map_err(step("chroot", rootfs))?;
    } else {
        let dot = Path::new(".");
        sys::pivot_root(dot, dot).map_err(step("pivot_root", rootfs))?;
        // The old root is now mounted over ".": keep its unmount from reaching the host,
        // then detach it so nothing of the host stays reachable.
        sys::mount(None, dot, None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(step("make old root slave", "/"))?;
        sys::umount2(dot, libc::MNT_DETACH).map_err(step("detach old root", "/"))?;
    }
    sys::chdir(Path::new("/")).map_err(step("chdir", "/"))?;
    Ok(())
}

/// After the pivot: masks and read-only paths, then the read-only root if asked.
pub(crate) fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let root = sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(step("open", "/"))?;
    let linux = spec.linux().as_ref();
    let ro_paths = linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    for p in &ro_paths {
        readonly_path(root.as_fd(), Path::new(p))?;
    }
    let masked = linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    if !masked.is_empty() {
        let null = verified_dev_null()?;
        for p in &masked {
            mask_path(root.as_fd(), null.as_fd(), Path::new(p))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false))
    {
        mount::remount_bind(root.as_fd(), libc::MS_RDONLY | libc::MS_REC)
            .map_err(step("remount read-only", "/"))?;
    }
    Ok(())
}

fn open_existing(root: BorrowedFd<'_>, p: &Path) -> Result<Option<OwnedFd>, RootfsError> {
    match sys::openat2(
        root,
        p,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(step("open", p)(e)),
    }
}

fn readonly_path(root: BorrowedFd<'_>, p: &Path) -> Result<(), RootfsError> {
    let Some(fd) = open_existing(root, p)? else {
        return Ok(());
    };
    sys::mount(
        Some(fd_path(fd.as_fd()).as_os_str()),
        &fd_path(fd.as_fd()),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(step("bind read-only path", p))?;
    let fd = open_existing(root, p)?
        .ok_or_else(|| step("reopen", p)(io::Error::from_raw_os_error(libc::ENOENT)))?;
    mount::remount_bind(
        fd.as_fd(),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .map_err(step("remount read-only", p))
}

/// Opens the container's /dev/null and checks it is the real null device (char 1:3), so a
/// replaced or symlinked /dev/null cannot turn a mask into a writable bind (CVE-2025-31133).
fn verified_dev_null() -> Result<OwnedFd, RootfsError> {
    let p = Path::new("/dev/null");
    let fd = sys::open(p, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(step("open", p))?;
    let st = sys::fstat(fd.as_fd()).map_err(step("stat", p))?;
    let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
    if !is_null {
        return Err(step("verify", p)(io::Error::other(
            "not the null character device 1:3",
        )));
    }
    Ok(fd)
}

fn mask_path(root: BorrowedFd<'_>, null: BorrowedFd<'_>, p: &Path) -> Result<(), RootfsError> {
    let Some(fd) = open_existing(root, p)? else {
        return Ok(());
    };
    let st = sys::fstat(fd.as_fd()).map_err(step("stat", p))?;
    let target = fd_path(fd.as_fd());
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(
            Some(OsStr::new("tmpfs")),
            &target,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .map_err(step("mask directory", p))
    } else {
        sys::mount(
            Some(fd_path(null).as_os_str()),
            &target,
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(step("mask file", p))
    }
}

/// Writes `linux.sysctl` through the container's own procfs, after verifying that `/proc`
/// is a real procfs and `/proc/sys` is not replaced by something else (CVE-2025-52881).
pub(crate) fn write_sysctls(spec: &Spec) -> Result<(), RootfsError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let not_proc = |p: &str| {
        step("verify procfs", p.to_string())(io::Error::other(
            "not a procfs: refusing to write a sysctl through it",
        ))
    };
    let proc = sys::open(
        Path::new("/proc"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .map_err(step("open", "/proc"))?;
    if sys::fstatfs_type(proc.as_fd()).map_err(step("statfs", "/proc"))? != PROC_SUPER_MAGIC {
        return Err(not_proc("/proc"));
    }
    for (key, value) in sysctl {
        let rel = PathBuf::from("sys").join(key.replace('.', "/"));
        let shown = PathBuf::from("/proc").join(&rel);
        // No O_TRUNC: nothing is changed before the file is known to be procfs's own.
        let fd = sys::openat2(
            proc.as_fd(),
            &rel,
            libc::O_WRONLY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(step("open sysctl", &shown))?;
        if sys::fstatfs_type(fd.as_fd()).map_err(step("statfs", &shown))? != PROC_SUPER_MAGIC {
            return Err(not_proc(&shown.display().to_string()));
        }
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, value.as_bytes())
            .map_err(step("write sysctl", &shown))?;
    }
    Ok(())
}
