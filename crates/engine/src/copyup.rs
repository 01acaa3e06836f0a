//! Docker's copy-up: when a container mounts an empty volume that was never populated at a
//! path where its image has content, that content (files, directories, symlinks, device
//! nodes and fifos, with modes, owners, times and xattrs) is copied into the volume once,
//! before the container starts (hard links stay links). `-v name:/x:nocopy` and
//! `--mount …,volume-nocopy` turn it off; bind mounts are never copied into.
//!
//! The image is hostile input. The source is opened inside the container's mounted rootfs
//! with `RESOLVE_IN_ROOT`, every entry below it with `O_NOFOLLOW` relative to its parent's
//! fd, and every entry in the volume is created relative to its parent's fd with
//! `O_EXCL`/`O_NOFOLLOW`, so no symlink (in the image or put in the volume meanwhile)
//! makes the copy read or write outside the rootfs and the volume. An flock on the
//! volume's directory serialises containers that start with the same new volume.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{
    FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstat, fstatat, futimens, mkdirat, mknodat,
    utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat};

use crate::container::Engine;
use crate::record::{ContainerRecord, MountPoint};
use crate::volume;
use crate::{EngineError, io_err};

/// Directory levels copy-up follows before it gives up (a hostile image could nest deeper
/// than any fd budget or stack).
const MAX_DEPTH: usize = 256;

/// Why a copy-up failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyUpError {
    #[error("copy `{path}` of the image into volume `{volume}`")]
    Copy {
        volume: String,
        path: String,
        source: io::Error,
    },
    #[error(
        "copy `{path}` of the image into volume `{volume}`: deeper than {MAX_DEPTH} directories"
    )]
    TooDeep { volume: String, path: String },
}

/// Regular files with more than one link whose first copy is kept open, so the next
/// names of the same inode become hard links too (at most this many; past it they are
/// copied).
const MAX_LINKED: usize = 1024;

/// Source (device, inode) → the fd of its first copy in the volume.
type Links = HashMap<(u64, u64), OwnedFd>;

/// What one walk needs to name its errors.
struct Walk<'a> {
    volume: &'a str,
    /// Path in the container of the directory being copied (for messages).
    path: String,
    depth: usize,
}

impl Walk<'_> {
    fn err(&self, name: &OsStr) -> impl FnOnce(Errno) -> CopyUpError {
        let path = format!("{}/{}", self.path, name.to_string_lossy());
        let volume = self.volume.to_string();
        move |e| CopyUpError::Copy {
            volume,
            path,
            source: e.into(),
        }
    }
}

fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Names in a directory, without `.` and `..`.
fn entries(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let dup = nix::unistd::dup(dir)?;
    let mut d = Dir::from_fd(dup)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    Ok(out)
}

fn ts(sec: i64, nsec: i64) -> TimeSpec {
    TimeSpec::new(sec, nsec)
}

/// Owner, then mode (a chown clears set-id bits), then xattrs and times of `fd`.
fn copy_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &FileStat) -> Result<(), Errno> {
    fchown(
        dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    copy_xattrs(src, dst);
    futimens(
        dst,
        &ts(st.st_atime, st.st_atime_nsec),
        &ts(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Best effort: an xattr the volume's filesystem refuses (or an LSM label) is skipped.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    let mut list = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::flistxattr(src, &mut list[..]) else {
        return;
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in list[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = OsStr::from_bytes(name);
        if let Ok(len) = rustix::fs::fgetxattr(src, name, &mut value[..]) {
            let _ =
                rustix::fs::fsetxattr(dst, name, &value[..len], rustix::fs::XattrFlags::empty());
        }
    }
}

/// Copies the entries of directory `src` into directory `dst`; the number copied.
fn copy_tree(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    w: &Walk<'_>,
    links: &mut Links,
) -> Result<u64, CopyUpError> {
    if w.depth > MAX_DEPTH {
        return Err(CopyUpError::TooDeep {
            volume: w.volume.to_string(),
            path: w.path.clone(),
        });
    }
    let mut count = 0;
    for name in entries(src).map_err(w.err(OsStr::new(".")))? {
        let name = OsStr::from_bytes(&name);
        copy_entry(src, dst, name, w, links)?;
        count += 1;
    }
    Ok(count)
}

fn copy_entry(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    w: &Walk<'_>,
    links: &mut Links,
) -> Result<(), CopyUpError> {
    let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(w.err(name))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let private = Mode::from_bits_truncate(0o700);
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(dst, name, private).map_err(w.err(name))?;
            let s = open_dir(src, name).map_err(w.err(name))?;
            let d = open_dir(dst, name).map_err(w.err(name))?;
            let sub = Walk {
                volume: w.volume,
                path: format!("{}/{}", w.path, name.to_string_lossy()),
                depth: w.depth + 1,
            };
            copy_tree(s.as_fd(), d.as_fd(), &sub, links)?;
            copy_meta(s.as_fd(), d.as_fd(), &st).map_err(w.err(name))
        }
        SFlag::S_IFREG => copy_regular(src, dst, name, &st, links).map_err(w.err(name)),
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(src, name).map_err(w.err(name))?;
            nix::unistd::symlinkat(target.as_os_str(), dst, name).map_err(w.err(name))?;
            chown_nofollow(dst, name, &st).map_err(w.err(name))?;
            utimensat(
                dst,
                name,
                &ts(st.st_atime, st.st_atime_nsec),
                &ts(st.st_mtime, st.st_mtime_nsec),
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(w.err(name))
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            mknodat(dst, name, kind, private, st.st_rdev).map_err(w.err(name))?;
            chown_nofollow(dst, name, &st).map_err(w.err(name))?;
            let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
            nix::sys::stat::fchmodat(
                dst,
                name,
                mode,
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            )
            .map_err(w.err(name))
        }
        // Sockets belong to a process that is not there.
        _ => Ok(()),
    }
}

/// A regular file: a hard link to an earlier copy of the same inode, or a copy.
fn copy_regular(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
    links: &mut Links,
) -> Result<(), Errno> {
    let key = (st.st_dev, st.st_ino);
    if st.st_nlink > 1
        && let Some(first) = links.get(&key)
    {
        // Through the fd's magic link in /proc: the open file itself is linked, whatever
        // happened to its name (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH); the
        // absolute path makes linkat ignore its first fd.
        let proc = format!("/proc/self/fd/{}", first.as_raw_fd());
        return nix::unistd::linkat(dst, proc.as_str(), dst, name, AtFlags::AT_SYMLINK_FOLLOW);
    }
    let fd = copy_file(src, dst, name, st)?;
    if st.st_nlink > 1 && links.len() < MAX_LINKED {
        links.insert(key, fd);
    }
    Ok(())
}

/// Copies one file's bytes and metadata; the new file's fd.
fn copy_file(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
) -> Result<OwnedFd, Errno> {
    let input = openat(
        src,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    // The entry was a regular file when stat'ed; make sure it still is.
    if SFlag::from_bits_truncate(fstat(&input)?.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let output = openat(
        dst,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let (mut i, mut o) = (File::from(input), File::from(output));
    io::copy(&mut i, &mut o).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    copy_meta(i.as_fd(), o.as_fd(), st)?;
    Ok(o.into())
}

/// True if directory `fd` has no entries.
fn is_empty(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    Ok(entries(fd)?.is_empty())
}

impl Engine {
    /// Copy-up for every volume of `rec` (its rootfs must be mounted): see the module doc.
    pub(crate) fn copy_up_volumes(&mut self, rec: &ContainerRecord) -> Result<(), EngineError> {
        let wanted: Vec<&MountPoint> = rec
            .host_config
            .mounts
            .iter()
            .filter(|m| m.r#type == "volume" && !m.options.iter().any(|o| o == "nocopy"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rootfs = self.rootfs_dir(&rec.id);
        let root = nix::fcntl::open(
            &rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("open `{}`", rootfs.display()))(e.into()))?;
        for m in wanted {
            self.copy_up(&root, m)?;
        }
        Ok(())
    }

    fn copy_up(&mut self, root: &OwnedFd, m: &MountPoint) -> Result<(), EngineError> {
        let name = m.source.as_str();
        if self.db.read(|c| volume::is_populated(c, name))? {
            return Ok(());
        }
        let data = self.volume_path(name);
        std::fs::create_dir_all(&data)
            .map_err(io_err(format!("create volume `{}`", data.display())))?;
        let vol_dir = data.parent().unwrap_or(&data).to_path_buf();
        let lock =
            File::open(&vol_dir).map_err(io_err(format!("open volume `{}`", vol_dir.display())))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(format!("lock volume `{}`", vol_dir.display()))(e.into()))?;
        // Another container may have filled it while we waited for the lock.
        if self.db.read(|c| volume::is_populated(c, name))? {
            return Ok(());
        }
        let err = |path: &str| {
            let (volume, path) = (name.to_string(), path.to_string());
            move |e: Errno| CopyUpError::Copy {
                volume,
                path,
                source: e.into(),
            }
        };
        let dst = open_dir(lock.as_fd(), OsStr::new("_data")).map_err(err("/"))?;
        if !is_empty(dst.as_fd()).map_err(err("/"))? {
            // Someone put data there: it is no longer a new volume.
            return Ok(self.db.write(|tx| volume::mark_populated(tx, name))?);
        }
        let rel = m.destination.trim_start_matches('/');
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let src = match openat2(root, if rel.is_empty() { "." } else { rel }, how) {
            Ok(fd) => fd,
            // Nothing (or no directory) there in the image: nothing to copy.
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(err(&m.destination)(e).into()),
        };
        let walk = Walk {
            volume: name,
            path: m.destination.trim_end_matches('/').to_string(),
            depth: 0,
        };
        let copied = copy_tree(src.as_fd(), dst.as_fd(), &walk, &mut Links::new())?;
        let st = fstat(&src).map_err(err(&m.destination))?;
        copy_meta(src.as_fd(), dst.as_fd(), &st).map_err(err(&m.destination))?;
        if copied > 0 {
            self.db.write(|tx| volume::mark_populated(tx, name))?;
        }
        drop(lock);
        Ok(())
    }
}

/// Gives `name` in `dir` the owner in `st`, never through a symlink (a container sharing
/// the volume could swap one in).
fn chown_nofollow(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    st: &nix::sys::stat::FileStat,
) -> nix::Result<()> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        OwnedFd::from(File::open(p).unwrap())
    }

    #[test]
    fn copies_a_tree_keeping_links_as_links() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst, outside) = (t.path().join("s"), t.path().join("d"), t.path().join("o"));
        for d in [&src, &dst, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(outside.join("secret"), "no").unwrap();
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        symlink(outside.join("secret"), src.join("abs")).unwrap();
        symlink(&outside, src.join("dirlink")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        let w = Walk {
            volume: "v",
            path: "/data".into(),
            depth: 0,
        };
        std::fs::hard_link(src.join("sub/f"), src.join("sub/g")).unwrap();
        let mut links = Links::new();
        let n = copy_tree(dir_fd(&src).as_fd(), dir_fd(&dst).as_fd(), &w, &mut links).unwrap();
        assert_eq!(n, 4);
        let ino =
            |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dst.join(p)).unwrap());
        assert_eq!(ino("sub/f"), ino("sub/g"), "hard links stay links");
        assert_eq!(std::fs::read_to_string(dst.join("sub/f")).unwrap(), "data");
        let md = std::fs::metadata(dst.join("sub/f")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o751);
        for (l, target) in [
            ("abs", outside.join("secret")),
            ("dirlink", outside.clone()),
        ] {
            assert!(std::fs::symlink_metadata(dst.join(l)).unwrap().is_symlink());
            assert_eq!(std::fs::read_link(dst.join(l)).unwrap(), target);
        }
        let fifo = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
        assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        // Copying again onto the same names fails instead of writing through them.
        assert!(copy_tree(dir_fd(&src).as_fd(), dir_fd(&dst).as_fd(), &w, &mut links).is_err());
    }

    #[test]
    fn refuses_a_tree_deeper_than_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("s"), t.path().join("d"));
        std::fs::create_dir(&dst).unwrap();
        let mut p = src.clone();
        for _ in 0..=MAX_DEPTH + 1 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let w = Walk {
            volume: "v",
            path: String::new(),
            depth: 0,
        };
        let e = copy_tree(
            dir_fd(&src).as_fd(),
            dir_fd(&dst).as_fd(),
            &w,
            &mut Links::new(),
        )
        .unwrap_err();
        assert!(matches!(e, CopyUpError::TooDeep { .. }), "{e}");
    }
}
