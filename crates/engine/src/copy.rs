//! `cp` both ways. Paths inside the container are resolved by fd from its rootfs with
//! `RESOLVE_IN_ROOT`, and every entry below them is opened with `O_NOFOLLOW` relative to
//! its parent directory's fd, so a symlink in the container can never make berth read or
//! write a host file. Host-side paths are the user's own and use `std::fs`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

use crate::container::Engine;
use crate::{EngineError, prepare};

mod stream;
pub use stream::CopyStreamError;

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

fn kind(fd: &OwnedFd) -> Result<SFlag, EngineError> {
    let st = fstat(fd).map_err(nix_err("stat".into()))?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

fn mode_of(fd: &OwnedFd) -> u32 {
    fstat(fd).map_or(0o644, |s| s.st_mode & 0o7777)
}

/// Copies the directory `dir` (an fd in the container) to the host path `dst`.
fn copy_dir_out(dir: OwnedFd, dst: &Path) -> Result<(), EngineError> {
    fs::create_dir_all(dst).map_err(crate::io_err(format!("create `{}`", dst.display())))?;
    let _ = fs::set_permissions(dst, fs::Permissions::from_mode(mode_of(&dir)));
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
                copy_dir_out(sub, &target)?;
            }
            Some(Type::Symlink) => {
                let link = readlinkat(&dir, name).map_err(nix_err("readlink".into()))?;
                let _ = fs::remove_file(&target);
                symlink(link, &target)
                    .map_err(crate::io_err(format!("symlink `{}`", target.display())))?;
            }
            Some(Type::File) => {
                let f = openat(
                    &dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(nix_err(format!("open `{}`", name.to_string_lossy())))?;
                copy_file_out(f, &target)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn copy_file_out(f: OwnedFd, dst: &Path) -> Result<(), EngineError> {
    let mode = mode_of(&f);
    let mut src = File::from(f);
    let mut out =
        File::create(dst).map_err(crate::io_err(format!("create `{}`", dst.display())))?;
    io::copy(&mut src, &mut out).map_err(crate::io_err(format!("write `{}`", dst.display())))?;
    let _ = out.set_permissions(fs::Permissions::from_mode(mode));
    Ok(())
}

/// Copies the host path `src` into the directory `dir` (an fd in the container) as `name`.
fn copy_in_at(dir: &OwnedFd, name: &OsStr, src: &Path) -> Result<(), EngineError> {
    let md =
        fs::symlink_metadata(src).map_err(crate::io_err(format!("stat `{}`", src.display())))?;
    let shown = name.to_string_lossy().into_owned();
    if md.is_dir() {
        let mode = Mode::from_bits_truncate(md.permissions().mode() & 0o7777);
        match mkdirat(dir, name, mode) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(nix_err(format!("mkdir `{shown}`"))(e)),
        }
        let sub = openat(
            dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err(format!("open `{shown}`")))?;
        for e in fs::read_dir(src).map_err(crate::io_err(format!("read `{}`", src.display())))? {
            let e = e.map_err(crate::io_err(format!("read `{}`", src.display())))?;
            copy_in_at(&sub, &e.file_name(), &e.path())?;
        }
    } else if md.file_type().is_symlink() {
        let link =
            fs::read_link(src).map_err(crate::io_err(format!("readlink `{}`", src.display())))?;
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat(&link, dir, name).map_err(nix_err(format!("symlink `{shown}`")))?;
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
        let rootfs = self.container_dir(&rec.id).join("rootfs");
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

    /// `cp CONTAINER:SRC DST`.
    pub fn copy_out(&mut self, key: &str, src: &str, dst: &Path) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            let fd = in_root(root, src, OFlag::O_RDONLY)?;
            let dst = if dst.is_dir() {
                dst.join(split(src).1)
            } else {
                dst.to_path_buf()
            };
            if kind(&fd)? == SFlag::S_IFDIR {
                copy_dir_out(fd, &dst)
            } else {
                copy_file_out(fd, &dst)
            }
        })
    }

    /// `cp SRC CONTAINER:DST`.
    pub fn copy_in(&mut self, key: &str, src: &Path, dst: &str) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            if let Ok(d) = in_root(root, dst, OFlag::O_DIRECTORY) {
                let name = src
                    .file_name()
                    .map_or_else(|| OsStr::new(".").to_owned(), |n| n.to_owned());
                return copy_in_at(&d, &name, src);
            }
            let (parent, name) = split(dst);
            let d = in_root(root, &parent, OFlag::O_DIRECTORY)?;
            copy_in_at(&d, name.as_os_str(), src)
        })
    }
}

impl Engine {
    /// `cp CONTAINER:SRC -`: SRC as a tar stream on `out`, its last path element as the
    /// top entry (`.` for the root).
    pub fn copy_out_tar(
        &mut self,
        key: &str,
        src: &str,
        out: &mut dyn io::Write,
    ) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            let fd = in_root(root, src, OFlag::O_RDONLY)?;
            let top = split(src).1;
            let top = if top.as_os_str().is_empty() {
                OsStr::new(".")
            } else {
                top.as_os_str()
            };
            Ok(stream::write_tar(fd, top, src, out)?)
        })
    }

    /// `cp - CONTAINER:DIR`: extracts the tar stream `input` into the directory DIR.
    pub fn copy_in_tar(
        &mut self,
        key: &str,
        input: &mut dyn io::Read,
        dst: &str,
    ) -> Result<(), EngineError> {
        self.with_rootfs(key, |root| {
            let dir = in_root(root, dst, OFlag::O_RDONLY)?;
            Ok(stream::extract_tar(&dir, dst, input)?)
        })
    }

    /// `export`: the container's filesystem as a tar stream. Links are stored as links
    /// (never followed), so nothing outside the rootfs is read.
    pub fn export(&mut self, key: &str, out: &mut dyn io::Write) -> Result<(), EngineError> {
        let rec = self.get(key)?;
        let rootfs = self.container_dir(&rec.id).join("rootfs");
        self.with_rootfs(key, |_| {
            let mut b = tar::Builder::new(out);
            b.follow_symlinks(false);
            b.append_dir_all(".", &rootfs)
                .and_then(|()| b.finish())
                .map_err(crate::io_err(format!("export `{}`", rootfs.display())))
        })
    }
}
