//! `cp` with tar streams: `cp CONTAINER:SRC -` writes SRC as a tar archive whose top
//! entry is SRC's last path element (Docker's shape); `cp - CONTAINER:DIR` extracts an
//! archive into DIR with berth-image's layer extractor, which resolves every entry
//! beneath DIR by fd and never follows a symlink, so a hostile archive (`..`, absolute
//! names, a symlink and then a write through it, a hard link out) cannot touch anything
//! outside DIR. The walk that writes an archive opens each entry with `O_NOFOLLOW`
//! relative to its parent's fd, as the file copy does.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use tar::{EntryType, Header};

/// Why a tar stream could not be written or extracted.
#[derive(Debug, thiserror::Error)]
pub enum CopyStreamError {
    #[error("write the tar stream of `{path}`")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("read `{path}` in the container")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("read the tar stream")]
    ReadInput(#[source] io::Error),
    #[error("extraction point `{0}` is not a directory")]
    NotDirectory(String),
    #[error("extract the tar stream into `{path}` (nothing outside it was written)")]
    Extract {
        path: String,
        #[source]
        source: berth_image::UnpackError,
    },
}

/// Writes the tree at `fd` (the container path `shown`) as a tar stream named `top`.
pub(super) fn write_tar(
    fd: OwnedFd,
    top: &OsStr,
    shown: &str,
    out: &mut dyn Write,
) -> Result<(), CopyStreamError> {
    let mut w = TarWriter {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        shown: shown.to_string(),
    };
    let st = fstat(&fd).map_err(|e| w.read_err(PathBuf::from(top), e))?;
    w.append_fd(fd, &st, Path::new(top))?;
    w.builder.finish().map_err(|source| CopyStreamError::Write {
        path: w.shown.clone(),
        source,
    })
}

/// Extracts `input` below the directory `dir` (the container path `shown`), with the
/// archive's owners if `archive`.
pub(super) fn extract_tar(
    dir: &OwnedFd,
    shown: &str,
    input: &mut dyn Read,
    archive: bool,
) -> Result<(), CopyStreamError> {
    if file_type(&fstat(dir).map_err(|e| read_err(shown, e))?) != SFlag::S_IFDIR {
        return Err(CopyStreamError::NotDirectory(shown.to_string()));
    }
    // Docker's accepts compressed archives too.
    let input = berth_image::decompressed(input).map_err(CopyStreamError::ReadInput)?;
    berth_image::unpack_tree_at(
        input,
        dir.as_fd(),
        berth_image::UnpackOptions {
            preserve_owner: archive,
        },
    )
    .map_err(|source| CopyStreamError::Extract {
        path: shown.to_string(),
        source,
    })
}

fn read_err(path: &str, e: nix::Error) -> CopyStreamError {
    CopyStreamError::Read {
        path: path.to_string(),
        source: e.into(),
    }
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

struct TarWriter<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    /// First archive name of each multiply-linked file, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    shown: String,
}

impl TarWriter<'_> {
    fn read_err(&self, name: PathBuf, e: nix::Error) -> CopyStreamError {
        read_err(&format!("{} ({})", self.shown, name.display()), e)
    }

    fn write_err(&self, source: io::Error) -> CopyStreamError {
        CopyStreamError::Write {
            path: self.shown.clone(),
            source,
        }
    }

    /// Appends the object open at `fd` (already stat'ed) as `name`, and below it for a
    /// directory.
    fn append_fd(
        &mut self,
        fd: OwnedFd,
        st: &FileStat,
        name: &Path,
    ) -> Result<(), CopyStreamError> {
        match file_type(st) {
            SFlag::S_IFDIR => self.append_dir(fd, st, name),
            SFlag::S_IFREG => self.append_file(fd, st, name),
            // The source itself, when it is a link and `-L` was not given.
            SFlag::S_IFLNK => {
                let target = readlinkat(&fd, "").map_err(|e| self.read_err(name.into(), e))?;
                self.append_symlink(st, name, target)
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => self.append_node(st, name),
            // Sockets have no archive form (Docker skips them too).
            _ => Ok(()),
        }
    }

    fn append_dir(
        &mut self,
        fd: OwnedFd,
        st: &FileStat,
        name: &Path,
    ) -> Result<(), CopyStreamError> {
        let mut h = header_of(st, EntryType::Directory, 0);
        let dir_name = name.join("");
        self.builder
            .append_data(&mut h, &dir_name, io::empty())
            .map_err(|e| self.write_err(e))?;
        let dup = nix::unistd::dup(&fd).map_err(|e| self.read_err(name.into(), e))?;
        let mut d = Dir::from_fd(dup).map_err(|e| self.read_err(name.into(), e))?;
        let mut children: Vec<OsString> = d
            .iter()
            .flatten()
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        children.sort();
        for child in children {
            self.append_child(&fd, &child, &name.join(&child))?;
        }
        Ok(())
    }

    /// One directory entry, looked at without following it.
    fn append_child(
        &mut self,
        dir: &OwnedFd,
        leaf: &OsStr,
        name: &Path,
    ) -> Result<(), CopyStreamError> {
        let st = match fstatat(dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone since the directory was read.
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(self.read_err(name.into(), e)),
        };
        let kind = file_type(&st);
        match kind {
            SFlag::S_IFDIR | SFlag::S_IFREG => {
                let flags = if kind == SFlag::S_IFDIR {
                    OFlag::O_DIRECTORY
                } else {
                    OFlag::O_NONBLOCK
                };
                let fd = openat(
                    dir,
                    leaf,
                    flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.read_err(name.into(), e))?;
                // The object opened, not the one stat'ed by name, is what is archived.
                let st = fstat(&fd).map_err(|e| self.read_err(name.into(), e))?;
                self.append_fd(fd, &st, name)
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, leaf).map_err(|e| self.read_err(name.into(), e))?;
                self.append_symlink(&st, name, target)
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => self.append_node(&st, name),
            // Sockets have no archive form (Docker skips them too).
            _ => Ok(()),
        }
    }

    fn append_symlink(
        &mut self,
        st: &FileStat,
        name: &Path,
        target: OsString,
    ) -> Result<(), CopyStreamError> {
        let mut h = header_of(st, EntryType::Symlink, 0);
        self.builder
            .append_link(&mut h, name, target)
            .map_err(|e| self.write_err(e))
    }

    /// A device node or FIFO: a header only.
    fn append_node(&mut self, st: &FileStat, name: &Path) -> Result<(), CopyStreamError> {
        let kind = file_type(st);
        let ty = match kind {
            SFlag::S_IFCHR => EntryType::Char,
            SFlag::S_IFBLK => EntryType::Block,
            _ => EntryType::Fifo,
        };
        let mut h = header_of(st, ty, 0);
        if ty != EntryType::Fifo {
            let major = u32::try_from(nix::sys::stat::major(st.st_rdev)).unwrap_or(0);
            let minor = u32::try_from(nix::sys::stat::minor(st.st_rdev)).unwrap_or(0);
            h.set_device_major(major).map_err(|e| self.write_err(e))?;
            h.set_device_minor(minor).map_err(|e| self.write_err(e))?;
        }
        self.builder
            .append_data(&mut h, name, io::empty())
            .map_err(|e| self.write_err(e))
    }

    fn append_file(
        &mut self,
        fd: OwnedFd,
        st: &FileStat,
        name: &Path,
    ) -> Result<(), CopyStreamError> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let mut h = header_of(st, EntryType::Link, 0);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut h, name, first)
                    .map_err(|e| self.write_err(e));
            }
            self.links.insert(key, name.to_path_buf());
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut h = header_of(st, EntryType::Regular, size);
        // Exactly `size` bytes even if the file changes under us: cut or zero-filled.
        let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
        self.builder
            .append_data(&mut h, name, data)
            .map_err(|e| self.write_err(e))
    }
}

fn header_of(st: &FileStat, ty: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h
}
