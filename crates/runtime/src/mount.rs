//! config.json `mounts`: the option table and performing one mount inside the rootfs.
//!
//! Destinations are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), so a symlink
//! in the image (`/mnt -> /`, `-> ../../..`) can never redirect a mount onto the host; the
//! mount then targets the opened fd through `/proc/self/fd/N`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::sys;

/// What one mount option string means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountOpt {
    /// Sets (`true`) or clears (`false`) mount flags.
    Flag(bool, libc::c_ulong),
    /// A propagation change applied after the mount.
    Propagation(libc::c_ulong),
    /// Filesystem-specific; passed through in the data string.
    Data,
}

/// One line per option, as mount(8) spells them.
const OPTIONS: &[(&str, MountOpt)] = &[
    ("defaults", MountOpt::Flag(true, 0)),
    ("ro", MountOpt::Flag(true, libc::MS_RDONLY)),
    ("rw", MountOpt::Flag(false, libc::MS_RDONLY)),
    ("nosuid", MountOpt::Flag(true, libc::MS_NOSUID)),
    ("suid", MountOpt::Flag(false, libc::MS_NOSUID)),
    ("nodev", MountOpt::Flag(true, libc::MS_NODEV)),
    ("dev", MountOpt::Flag(false, libc::MS_NODEV)),
    ("noexec", MountOpt::Flag(true, libc::MS_NOEXEC)),
    ("exec", MountOpt::Flag(false, libc::MS_NOEXEC)),
    ("sync", MountOpt::Flag(true, libc::MS_SYNCHRONOUS)),
    ("async", MountOpt::Flag(false, libc::MS_SYNCHRONOUS)),
    ("dirsync", MountOpt::Flag(true, libc::MS_DIRSYNC)),
    ("remount", MountOpt::Flag(true, libc::MS_REMOUNT)),
    ("mand", MountOpt::Flag(true, libc::MS_MANDLOCK)),
    ("nomand", MountOpt::Flag(false, libc::MS_MANDLOCK)),
    ("atime", MountOpt::Flag(false, libc::MS_NOATIME)),
    ("noatime", MountOpt::Flag(true, libc::MS_NOATIME)),
    ("diratime", MountOpt::Flag(false, libc::MS_NODIRATIME)),
    ("nodiratime", MountOpt::Flag(true, libc::MS_NODIRATIME)),
    ("relatime", MountOpt::Flag(true, libc::MS_RELATIME)),
    ("norelatime", MountOpt::Flag(false, libc::MS_RELATIME)),
    ("strictatime", MountOpt::Flag(true, libc::MS_STRICTATIME)),
    ("nostrictatime", MountOpt::Flag(false, libc::MS_STRICTATIME)),
    ("lazytime", MountOpt::Flag(true, libc::MS_LAZYTIME)),
    ("nolazytime", MountOpt::Flag(false, libc::MS_LAZYTIME)),
    ("nosymfollow", MountOpt::Flag(true, 256)),
    ("symfollow", MountOpt::Flag(false, 256)),
    ("bind", MountOpt::Flag(true, libc::MS_BIND)),
    ("rbind", MountOpt::Flag(true, libc::MS_BIND | libc::MS_REC)),
    ("private", MountOpt::Propagation(libc::MS_PRIVATE)),
    (
        "rprivate",
        MountOpt::Propagation(libc::MS_PRIVATE | libc::MS_REC),
    ),
    ("shared", MountOpt::Propagation(libc::MS_SHARED)),
    (
        "rshared",
        MountOpt::Propagation(libc::MS_SHARED | libc::MS_REC),
    ),
    ("slave", MountOpt::Propagation(libc::MS_SLAVE)),
    (
        "rslave",
        MountOpt::Propagation(libc::MS_SLAVE | libc::MS_REC),
    ),
    ("unbindable", MountOpt::Propagation(libc::MS_UNBINDABLE)),
    (
        "runbindable",
        MountOpt::Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
    ),
];

/// Looks an option up; anything not in the table is filesystem data (`mode=755`, …).
pub(crate) fn parse_option(opt: &str) -> MountOpt {
    OPTIONS
        .iter()
        .find(|(name, _)| *name == opt)
        .map_or(MountOpt::Data, |(_, o)| *o)
}

/// Names of every option the table knows (for `features`).
pub fn known_options() -> Vec<&'static str> {
    OPTIONS.iter().map(|(n, _)| *n).collect()
}

/// A spec mount's options folded into flags, propagation and the data string.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountFlags {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: String,
}

pub(crate) fn fold_options(options: &[String]) -> MountFlags {
    let mut out = MountFlags::default();
    for opt in options {
        match parse_option(opt) {
            MountOpt::Flag(true, f) => out.flags |= f,
            MountOpt::Flag(false, f) => out.flags &= !f,
            MountOpt::Propagation(p) => out.propagation.push(p),
            MountOpt::Data => {
                if !out.data.is_empty() {
                    out.data.push(',');
                }
                out.data.push_str(opt);
            }
        }
    }
    out
}

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("resolve mount destination `{dest}` in rootfs: {source}")]
    Resolve { dest: PathBuf, source: io::Error },
    #[error("mount `{source_path}` on `{dest}` (type `{fstype}`): {source}")]
    Mount {
        source_path: String,
        dest: PathBuf,
        fstype: String,
        source: io::Error,
    },
    #[error("set propagation of `{dest}`: {source}")]
    Propagation { dest: PathBuf, source: io::Error },
}

/// The path under which the kernel lets us name an open fd as a mount target.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` inside `root` without leaving it, creating missing directories (and, when
/// `file` is set, the last component as an empty file). Returns an O_PATH fd.
pub(crate) fn create_in_root(root: BorrowedFd<'_>, path: &Path, file: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH;
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
    if let Ok(fd) = sys::openat2(root, path, flags, 0, resolve) {
        return Ok(fd);
    }
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut cur = sys::openat2(root, Path::new("/"), flags | libc::O_DIRECTORY, 0, resolve)?;
    let mut walked = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        walked.push(name);
        let last = i + 1 == comps.len();
        match sys::openat2(root, &walked, flags, 0, resolve) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // `cur` is the already-resolved parent; create the child relative to it.
                let parent = sys::openat2(
                    root,
                    walked.parent().unwrap_or(Path::new("/")),
                    libc::O_DIRECTORY | libc::O_RDONLY,
                    0,
                    resolve,
                )?;
                if last && file {
                    let f = sys::openat(
                        parent.as_fd(),
                        Path::new(name),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
                        0o644,
                    );
                    match f {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    match sys::mkdirat(parent.as_fd(), name, 0o755) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                }
                cur = sys::openat2(root, &walked, flags, 0, resolve)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Performs one config.json mount inside the rootfs opened as `root`.
/// `bind_source_is_file` says whether a bind source is a regular file (so the destination
/// must be a file too).
pub(crate) fn mount_in_root(root: BorrowedFd<'_>, m: &Mount) -> Result<(), MountError> {
    let dest = m.destination().clone();
    let opts = fold_options(m.options().as_deref().unwrap_or(&[]));
    let fstype = m.typ().clone().unwrap_or_default();
    let is_bind = opts.flags & libc::MS_BIND != 0 || fstype == "bind";
    let source = m.source().clone().unwrap_or_default();
    let source_is_file = is_bind && std::fs::metadata(&source).is_ok_and(|md| !md.is_dir());
    let resolve_err = |source| MountError::Resolve {
        dest: dest.clone(),
        source,
    };
    let target = create_in_root(root, &dest, source_is_file).map_err(resolve_err)?;
    let mount_err = |source| MountError::Mount {
        source_path: source_display(&source_path_of(m)),
        dest: dest.clone(),
        fstype: fstype.clone(),
        source,
    };
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    if is_bind {
        let bind_flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
        sys::mount(
            Some(source.as_os_str()),
            &fd_path(target.as_fd()),
            None,
            bind_flags,
            None,
        )
        .map_err(mount_err)?;
        let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            // The new mount hides the directory `target` points at: reopen to reach it.
            let mounted = create_in_root(root, &dest, source_is_file).map_err(resolve_err)?;
            remount_bind(mounted.as_fd(), extra).map_err(mount_err)?;
        }
    } else {
        let src = if source.as_os_str().is_empty() {
            fstype.clone()
        } else {
            source.display().to_string()
        };
        let fs = if fstype.is_empty() {
            None
        } else {
            Some(fstype.as_str())
        };
        let flags = opts.flags & !libc::MS_REMOUNT;
        let r = sys::mount(
            Some(OsStr::new(&src)),
            &fd_path(target.as_fd()),
            fs,
            flags,
            data,
        );
        match r {
            Ok(()) => {}
            // A new user namespace without its own network namespace may not mount sysfs:
            // bind the host's read-only instead, as runc does.
            Err(e) if fstype == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
                sys::mount(
                    Some(OsStr::new("/sys")),
                    &fd_path(target.as_fd()),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(mount_err)?;
                let mounted = create_in_root(root, &dest, false).map_err(resolve_err)?;
                remount_bind(mounted.as_fd(), flags | libc::MS_RDONLY).map_err(mount_err)?;
            }
            Err(e) => return Err(mount_err(e)),
        }
    }
    if !opts.propagation.is_empty() {
        let mounted = create_in_root(root, &dest, source_is_file).map_err(resolve_err)?;
        for p in &opts.propagation {
            sys::mount(None, &fd_path(mounted.as_fd()), None, *p, None).map_err(|source| {
                MountError::Propagation {
                    dest: dest.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

fn source_path_of(m: &Mount) -> PathBuf {
    m.source().clone().unwrap_or_default()
}

fn source_display(p: &Path) -> String {
    p.display().to_string()
}

/// Remounts a bind mount with extra flags, keeping the flags the kernel locked on it (a
/// user namespace may not clear nosuid/nodev/noexec inherited from the host).
pub(crate) fn remount_bind(target: BorrowedFd<'_>, flags: libc::c_ulong) -> io::Result<()> {
    let path = fd_path(target);
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys::mount(None, &path, None, base | flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let locked = statvfs_flags(&path)?;
            sys::mount(None, &path, None, base | flags | locked, None)
        }
        r => r,
    }
}

fn statvfs_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    let table = [
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(table
        .iter()
        .filter(|(s, _)| f.contains(*s))
        .fold(0, |acc, (_, m)| acc | m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let f = fold_options(&opts(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rprivate",
        ]));
        assert_eq!(f.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV);
        assert_eq!(f.data, "mode=755,size=65536k");
        assert_eq!(f.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let f = fold_options(&opts(&["ro", "rw", "rbind"]));
        assert_eq!(f.flags, libc::MS_BIND | libc::MS_REC);
    }

    #[test]
    fn every_table_entry_parses_to_itself() {
        for name in known_options() {
            assert_ne!(parse_option(name), MountOpt::Data, "{name}");
        }
    }
}
