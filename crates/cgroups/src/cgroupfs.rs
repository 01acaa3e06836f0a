//! File access inside one cgroup directory, relative to its directory fd.

use std::fs::File;
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use crate::error::CgroupError;

/// An open cgroup directory; file names are resolved against its fd.
#[derive(Debug)]
pub(crate) struct CgroupDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Upper bound for reading one cgroup file (memory.stat, io.stat on big hosts).
const READ_LIMIT: u64 = 4 << 20;

impl CgroupDir {
    /// Opens the directory at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, CgroupError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CgroupError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(CgroupDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn open_file(&self, name: &str, flags: OFlag) -> io::Result<File> {
        let fd = openat(
            self.fd.as_fd(),
            name,
            flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Writes `value` to `name` in one write(2), as cgroupfs wants.
    pub(crate) fn write(&self, name: &str, value: &str) -> Result<(), CgroupError> {
        self.try_write(name, value)
            .map_err(|source| CgroupError::Write {
                path: self.path.join(name),
                value: value.to_owned(),
                source,
            })
    }

    /// [`write`](Self::write) returning the raw error, for callers that branch on errno.
    pub(crate) fn try_write(&self, name: &str, value: &str) -> io::Result<()> {
        // O_TRUNC makes plain files in a fake tree hold exactly the last value; cgroupfs
        // ignores it.
        let mut f = self.open_file(name, OFlag::O_WRONLY | OFlag::O_TRUNC)?;
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        Ok(())
    }

    /// Whether `name` exists in the directory.
    pub(crate) fn has(&self, name: &str) -> bool {
        nix::sys::stat::fstatat(
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
    }

    /// Reads `name` whole (bounded).
    pub(crate) fn read(&self, name: &str) -> Result<String, CgroupError> {
        let err = |source| CgroupError::Read {
            path: self.path.join(name),
            source,
        };
        let f = self.open_file(name, OFlag::O_RDONLY).map_err(err)?;
        let mut s = String::new();
        f.take(READ_LIMIT).read_to_string(&mut s).map_err(err)?;
        Ok(s)
    }

    /// Reads `name` if it exists.
    pub(crate) fn read_opt(&self, name: &str) -> Result<Option<String>, CgroupError> {
        match self.read(name) {
            Ok(s) => Ok(Some(s)),
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a single number (`max` reads as `None`).
    pub(crate) fn read_u64(&self, name: &str) -> Result<Option<u64>, CgroupError> {
        let s = self.read(name)?;
        parse_u64(s.trim()).map_err(|()| CgroupError::Parse {
            path: self.path.join(name),
            content: s.trim().to_owned(),
        })
    }

    /// Parses a parse error for `name` with `content`.
    pub(crate) fn parse_error(&self, name: &str, content: &str) -> CgroupError {
        CgroupError::Parse {
            path: self.path.join(name),
            content: content.to_owned(),
        }
    }
}

/// A cgroup number: `max` is `None`, `-1` (v1 unlimited) too.
pub(crate) fn parse_u64(s: &str) -> Result<Option<u64>, ()> {
    match s {
        "max" | "-1" => Ok(None),
        _ => s.parse().map(Some).map_err(|_| ()),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events) as pairs.
pub(crate) fn keyed_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let (k, v) = l.split_once(' ')?;
        Some((k, v.trim().parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_relative_to_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pids.max"), "").unwrap();
        let d = CgroupDir::open(dir.path()).unwrap();
        d.write("pids.max", "42").unwrap();
        assert_eq!(d.read_u64("pids.max").unwrap(), Some(42));
        d.write("pids.max", "max").unwrap();
        assert_eq!(d.read_u64("pids.max").unwrap(), None);
        assert!(d.has("pids.max"));
        assert_eq!(d.read_opt("nope").unwrap(), None);
    }

    #[test]
    fn write_error_names_path_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let d = CgroupDir::open(dir.path()).unwrap();
        let msg = d.write("memory.max", "7").unwrap_err().to_string();
        assert!(msg.contains("memory.max") && msg.contains("`7`"), "{msg}");
    }

    #[test]
    fn keyed_values_skips_junk() {
        let v: Vec<_> = keyed_values("a 1\nb x\nc 3\n").collect();
        assert_eq!(v, [("a", 1), ("c", 3)]);
    }
}
