//! `cp` both ways. Paths inside the container are resolved by fd from its rootfs with
//! `RESOLVE_IN_ROOT`, and every entry below them is opened with `O_NOFOLLOW` relative to
//! its parent directory's fd, so a symlink in the container can never make berth read or
//! write a host file. Host-side paths are the user's own and use `std::fs`.
//! Like Docker's, copies belong to the user at the destination (root in the container,
//! the caller on the host) unless `archive` (`cp -a`) keeps the source's owners.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchownat};

use crate::container::Engine;
use crate::{EngineError, prepare};

mod stream;
pub use stream::CopyStreamError;

/// The flags of `cp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep the source's owners (otherwise the copy belongs to the user at the
    /// destination: root in the container, the caller on the host).
    pub archive: bool,
    /// `-L`: follow a symlink named as the container source (otherwise the link itself
    /// is copied, as Docker's).
    pub follow_link: bool,
}

fn nix_err(op: String) -> impl FnOnce(nix::Error) -> EngineError {
    move |e| crate::io_err(op)(io::Error::from(e))
}

fn in_root(root: &OwnedFd, path: &str, flags: OFlag) -> Result<OwnedFd, EngineError> {
    let rel = path.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, if rel.is_empty() { "." } else { rel }, how)
        .map_err(nix_err(format!("open `{path}` in the container")))
}

/// The container path `src`; without `follow` a symlink there is opened as itself
/// (`O_PATH`), as Docker copies the link and not its target.
fn open_source(root: &OwnedFd, src: &str, follow: bool) -> Result<OwnedFd, EngineError> {
    if !follow {
        let fd = in_root(root, src, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        if kind(&fd)? == SFlag::S_IFLNK {
            return Ok(fd);
        }
    }
    // Non-blocking: a FIFO must not wait for a writer (nor a device for its hardware).
    in_root(root, src, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
}

/// The symlink open at `fd` (`O_PATH`) as a symlink at the host path `dst`.
fn copy_link_out(fd: &OwnedFd, dst: &Path, archive: bool) -> Result<(), EngineError> {
    let link = readlinkat(fd, "").map_err(nix_err(format!("readlink for `{}`", dst.display())))?;
    let _ = fs::remove_file(dst);
    symlink(link, dst).map_err(crate::io_err(format!("symlink `{}`", dst.display())))?;
    own_like(fd, None, dst, archive)
}

fn kind(fd: &OwnedFd) -> Result<SFlag, EngineError> {
    let st = fstat(fd).map_err(nix_err("stat".into()))?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

fn mode_of(fd: &OwnedFd) -> u32 {
    fstat(fd).map_or(0o644, |s| s.st_mode & 0o7777)
}

/// Copies the directory `dir` (an fd in the container) to the host path `dst`.
fn copy_dir_out(dir: OwnedFd, dst: &Path, archive: bool) -> Result<(), EngineError> {
    fs::create_dir_all(dst).map_err(crate::io_err(format!("create `{}`", dst.display())))?;
    let _ = fs::set_permissions(dst, fs::Permissions::from_mode(mode_of(&dir)));
    own_like(&dir, None, dst, archive)?;
    let dirfd = nix::unistd::dup(&dir).map_err(nix_err("dup".into()))?;
    let mut d = Dir::from_fd(dirfd).map_err(nix_err("read directory".into()))?;
    let entries: Vec<(Vec<u8>, Option<Type>)> = d
        .iter()
        .flatten()
        .map(|e| (e.file_name().to_bytes().to_vec(), e.file_type()))
        .filter(|(n, _)| n != b"." && n != b"..")
        .collect();
    for (name, ty) in entries {
        let name = OsStr::from_bytes(&name);
        let target = dst.join(name);
        match ty {
            Some(Type::Directory) => {
                let sub = openat(
                    &dir,
                    name,
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(nix_err(format!("open `{}`", name.to_string_lossy())))?;
                copy_dir_out(sub, &target, archive)?;
            }
            Some(Type::Symlink) => {
                let link = readlinkat(&dir, name).map_err(nix_err("readlink".into()))?;
                let _ = fs::remove_file(&target);
                symlink(link, &target)
                    .map_err(crate::io_err(format!("symlink `{}`", target.display())))?;
                own_like(&dir, Some(name), &target, archive)?;
            }
            Some(Type::File) => {
                let f = openat(
                    &dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(nix_err(format!("open `{}`", name.to_string_lossy())))?;
                copy_file_out(f, &target, archive)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// With `archive`, gives the host copy `dst` the owner of its source (`name` in `dir`,
/// or `dir` itself), never following a symlink on either side.
fn own_like(
    dir: &OwnedFd,
    name: Option<&OsStr>,
    dst: &Path,
    archive: bool,
) -> Result<(), EngineError> {
    if !archive {
        return Ok(());
    }
    let st = match name {
        Some(n) => fstatat(dir, n, AtFlags::AT_SYMLINK_NOFOLLOW),
        None => fstat(dir),
    }
    .map_err(nix_err(format!("stat the source of `{}`", dst.display())))?;
    lchown(dst, Some(st.st_uid), Some(st.st_gid)).map_err(crate::io_err(format!(
        "change owner of `{}`",
        dst.display()
    )))
}

/// With `archive`, gives `name` in `dir` (in the container) the owner of the host `md`.
fn own_in(
    dir: &OwnedFd,
    name: &OsStr,
    md: &fs::Metadata,
    archive: bool,
) -> Result<(), EngineError> {
    if !archive {
        return Ok(());
    }
    let (uid, gid) = (Uid::from_raw(md.uid()), Gid::from_raw(md.gid()));
    fchownat(
        dir,
        name,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(nix_err(format!(
        "change owner of `{}`",
        name.to_string_lossy()
    )))
}

fn copy_file_out(f: OwnedFd, dst: &Path, archive: bool) -> Result<(), EngineError> {
    let mode = mode_of(&f);
    let mut src = File::from(f);
    let mut out =
        File::create(dst).map_err(crate::io_err(format!("create `{}`", dst.display())))?;
    io::copy(&mut src, &mut out).map_err(crate::io_err(format!("write `{}`", dst.display())))?;
    if archive {
        let st = fstat(&src).map_err(nix_err(format!("stat the source of `{}`", dst.display())))?;
        std::os::unix::fs::fchown(&out, Some(st.st_uid), Some(st.st_gid)).map_err(
            crate::io_err(format!("change owner of `{}`", dst.display())),
        )?;
    }
    // After chown, which clears set-id bits.
    let _ = out.set_permissions(fs::Permissions::from_mode(mode));
    Ok(())
}

/// Copies the host path `src` into the directory `dir` (an fd in the container) as `name`.
fn copy_in_at(dir: &OwnedFd, name: &OsStr, src: &Path, archive: bool) -> Result<(), EngineError> {
    let md =
        fs::symlink_metadata(src).map_err(crate::io_err(format!("stat `{}`", src.display())))?;
    let shown = name.to_string_lossy().into_owned();
    if md.is_dir() {
        let mode = Mode::from_bits_truncate(md.permissions().mode() & 0o7777);
        match mkdirat(dir, name, mode) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(nix_err(format!("mkdir `{shown}`"))(e)),
        }
        own_in(dir, name, &md, archive)?;
        let sub = openat(
            dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err(format!("open `{shown}`")))?;
        for e in fs::read_dir(src).map_err(crate::io_err(format!("read `{}`", src.display())))? {
            let e = e.map_err(crate::io_err(format!("read `{}`", src.display())))?;
            copy_in_at(&sub, &e.file_name(), &e.path(), archive)?;
        }
    } else if md.file_type().is_symlink() {
        let link =
            fs::read_link(src).map_err(crate::io_err(format!("readlink `{}`", src.display())))?;
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat(&link, dir, name).map_err(nix_err(format!("symlink `{shown}`")))?;
        own_in(dir, name, &md, archive)?;
    } else if md.is_file() {
        let mode = Mode::from_bits_truncate(md.permissions().mode() & 0o7777);
        let fd = openat(
            dir,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC,
            mode,
        )
        .map_err(nix_err(format!("create `{shown}`")))?;
        let mut out = File::from(fd);
        let mut input =
            File::open(src).map_err(crate::io_err(format!("open `{}`", src.display())))?;
        io::copy(&mut input, &mut out).map_err(crate::io_err(format!("write `{shown}`")))?;
        if archive {
            own_in(dir, name, &md, archive)?;
            // chown cleared any set-id bits.
            let _ = out.set_permissions(md.permissions());
        }
    }
    Ok(())
}

/// Splits a container path into its parent and last component.
fn split(path: &str) -> (String, PathBuf) {
    let p = Path::new(path);
    let parent = p
        .parent()
        .map_or("/".into(), |x| x.to_string_lossy().into_owned());
    let name = p.file_name().map_or_else(PathBuf::new, PathBuf::from);
    (parent, name)
}

impl Engine {
    /// Runs `f` with the container's rootfs mounted (mounting it for a stopped one).
    fn with_rootfs<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(&OwnedFd) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let rec = self.get(key)?;
        let rootfs = self.mounted_rootfs(&rec.id);
        let mounted_here = !prepare::is_mounted(&rootfs);
        if mounted_here {
            prepare::rootfs(self, &rec)?;
        }
        let root = nix::fcntl::open(
            &rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err(format!("open `{}`", rootfs.display())));
        let r = root.and_then(|root| f(&root));
        if mounted_here {
            let _ = prepare::unmount(self, &rec.id);
        }
        r
    }

    /// `cp [-a] [-L] CONTAINER:SRC DST`.
    pub fn copy_out(
        &mut self,
        key: &str,
        src: &str,
        dst: &Path,
        opts: &CopyOptions,
    ) -> Result<(), EngineError> {
        let archive = opts.archive;
        self.with_rootfs(key, |root| {
            let fd = open_source(root, src, opts.follow_link)?;
            let dst = if dst.is_dir() {
                dst.join(split(src).1)
            } else {
                dst.to_path_buf()
            };
            match kind(&fd)? {
                SFlag::S_IFDIR => copy_dir_out(fd, &dst, archive),
                SFlag::S_IFLNK => copy_link_out(&fd, &dst, archive),
                _ => copy_file_out(fd, &dst, archive),
            }
        })
    }

    /// `cp [-a] SRC CONTAINER:DST`.
    pub fn copy_in(
        &mut self,
        key: &str,
        src: &Path,
        dst: &str,
        opts: &CopyOptions,
    ) -> Result<(), EngineError> {
        let archive = opts.archive;
        self.with_rootfs(key, |root| {
            if let Ok(d) = in_root(root, dst, OFlag::O_DIRECTORY) {
                let name = src
                    .file_name()
                    .map_or_else(|| OsStr::new(".").to_owned(), |n| n.to_owned());
                return copy_in_at(&d, &name, src, archive);
            }
            let (parent, name) = split(dst);
            let d = in_root(root, &parent, OFlag::O_DIRECTORY)?;
            copy_in_at(&d, name.as_os_str(), src, archive)
        })
    }
}

impl Engine {
    /// `cp [-L] CONTAINER:SRC -`: SRC as a tar stream on `out`, its last path element as
    /// the top entry (`.` for the root). Entries carry the owners in the container.
    pub fn copy_out_tar(
        &mut self,
        key: &str,
        src: &str,
        out: &mut dyn io::Write,
        opts: &CopyOptions,
    ) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            let fd = open_source(root, src, opts.follow_link)?;
            let top = split(src).1;
            let top = if top.as_os_str().is_empty() {
                OsStr::new(".")
            } else {
                top.as_os_str()
            };
            Ok(stream::write_tar(fd, top, src, out)?)
        })
    }

    /// `cp [-a] - CONTAINER:DIR`: extracts the tar stream `input` into the directory
    /// DIR; entries are owned by root unless `-a` keeps the archive's owners.
    pub fn copy_in_tar(
        &mut self,
        key: &str,
        input: &mut dyn io::Read,
        dst: &str,
        opts: &CopyOptions,
    ) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            let dir = in_root(root, dst, OFlag::O_PATH)?;
            Ok(stream::extract_tar(&dir, dst, input, opts.archive)?)
        })
    }

    /// `export`: the container's filesystem as a tar stream. Links are stored as links
    /// (never followed), so nothing outside the rootfs is read.
    pub fn export(&mut self, key: &str, out: &mut dyn io::Write) -> Result<(), EngineError> {
        let rec = self.get(key)?;
        let rootfs = self.mounted_rootfs(&rec.id);
        self.with_rootfs(key, |_| {
            let mut b = tar::Builder::new(out);
            b.follow_symlinks(false);
            b.append_dir_all(".", &rootfs)
                .and_then(|()| b.finish())
                .map_err(crate::io_err(format!("export `{}`", rootfs.display())))
        })
    }
}
