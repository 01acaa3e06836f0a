//! Safe extraction of a layer tar stream into an empty directory, with overlayfs
//! whiteouts. The `tar` crate only parses; every file is created relative to a directory
//! fd that was opened without following symlinks (openat2 `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW`), so no entry can reach outside the layer directory.
//! The same extractor unpacks plain trees into a directory that has content already
//! (`cp -` into a container, [`unpack_tree_at`]): whiteouts off, same path rules.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::sys;

/// What a layer unpack may do.
#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    /// Set owners from the tar headers (needs root); otherwise files keep the caller's ids.
    pub preserve_owner: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            preserve_owner: sys::geteuid() == 0,
        }
    }
}

/// A failure to unpack a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream (or the decompressor or network under it) failed.
    #[error("read tar stream")]
    Read(#[source] io::Error),
    /// An entry's name is refused before anything is written.
    #[error("entry `{name}`: {reason}")]
    Refused {
        /// The entry name as in the archive.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The PAX size header disagrees with the ustar size field.
    #[error("entry `{name}`: pax size {pax} disagrees with header size {header}")]
    SizeDifferential {
        /// The entry name.
        name: String,
        /// Size from the PAX record.
        pax: u64,
        /// Size from the ustar header.
        header: u64,
    },
    /// A syscall on an entry failed.
    #[error("{op} entry `{name}`")]
    Entry {
        /// What was being done.
        op: &'static str,
        /// The entry name.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Opening the target directory failed.
    #[error("open directory `{path}`")]
    OpenRoot {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const RESOLVE_BENEATH: u64 = 0x08;

/// A split, validated entry name: parent components and the final name.
struct EntryName {
    display: String,
    parent: Vec<Vec<u8>>,
    last: Option<Vec<u8>>,
}

impl EntryName {
    fn parse(raw: &[u8]) -> Result<EntryName, UnpackError> {
        let display = String::from_utf8_lossy(raw).into_owned();
        let refuse = |reason| UnpackError::Refused {
            name: display.clone(),
            reason,
        };
        if raw.first() == Some(&b'/') {
            return Err(refuse("absolute names are not allowed"));
        }
        if raw.contains(&0) {
            return Err(refuse("NUL byte in name"));
        }
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(refuse("`..` components are not allowed")),
                _ => parts.push(c.to_vec()),
            }
        }
        let last = parts.pop();
        Ok(EntryName {
            display,
            parent: parts,
            last,
        })
    }

    fn parent_path(&self) -> PathBuf {
        let mut p = PathBuf::from(".");
        for c in &self.parent {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        p
    }
}

/// Per-entry metadata taken from the header and PAX records.
struct Meta {
    mode: libc::mode_t,
    uid: libc::uid_t,
    gid: libc::gid_t,
    mtime: sys::Time,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Unpacks one layer into an empty directory.
struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    cached_parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
    dirs: Vec<(PathBuf, sys::Time)>,
    /// Copy buffer, allocated once per layer.
    buf: Vec<u8>,
    /// Turn `.wh.` entries into overlayfs whiteouts (layers); plain trees keep the names.
    whiteouts: bool,
}

/// Unpack the tar stream `reader` into `dir` (which should be empty), turning `.wh.`
/// entries into overlayfs whiteouts. Reads `reader` to its end.
pub fn unpack_layer<R: Read>(
    reader: R,
    dir: &Path,
    opts: UnpackOptions,
) -> Result<(), UnpackError> {
    let root_err = |source| UnpackError::OpenRoot {
        path: dir.to_path_buf(),
        source,
    };
    let path = sys::cstr(dir.as_os_str().as_bytes()).map_err(root_err)?;
    let cwd = sys::cwd();
    let root = sys::openat(cwd, &path, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(root_err)?;
    unpack_into(reader, root, opts, true)
}

/// Unpack a plain tar stream (as `cp -` gets it) below the directory `dir`, which may hold
/// files already: entries replace what they name, `.wh.` names are ordinary files, and
/// every path is still resolved beneath `dir` without following any symlink, so neither
/// the archive nor what `dir` holds can make an entry land outside it.
pub fn unpack_tree_at<R: Read>(
    reader: R,
    dir: BorrowedFd<'_>,
    opts: UnpackOptions,
) -> Result<(), UnpackError> {
    let root = dir
        .try_clone_to_owned()
        .map_err(|source| UnpackError::OpenRoot {
            path: PathBuf::from("."),
            source,
        })?;
    unpack_into(reader, root, opts, false)
}

fn unpack_into<R: Read>(
    reader: R,
    root: OwnedFd,
    opts: UnpackOptions,
    whiteouts: bool,
) -> Result<(), UnpackError> {
    let mut u = Unpacker {
        root,
        opts,
        cached_parent: None,
        dirs: Vec::new(),
        buf: vec![0u8; 128 * 1024],
        whiteouts,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let entry = entry.map_err(UnpackError::Read)?;
        u.unpack_entry(entry)?;
    }
    u.finish_dirs()?;
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(())
}

fn entry_err<'a>(
    op: &'static str,
    name: &'a EntryName,
) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Entry {
        op,
        name: name.display.clone(),
        source,
    }
}

fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &EntryName,
) -> Result<Meta, UnpackError> {
    let h = entry.header();
    let bad = |_| UnpackError::Refused {
        name: name.display.clone(),
        reason: "malformed numeric header field",
    };
    let mode = h.mode().map_err(bad)? & 0o7777;
    // Writers leave these fields empty now and then; like Go's archive/tar, read that as 0.
    let uid = h.uid().unwrap_or(0);
    let gid = h.gid().unwrap_or(0);
    let mut mtime = (i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(i64::MAX), 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in pax {
            let ext = ext.map_err(UnpackError::Read)?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime =
                    parse_pax_time(&String::from_utf8_lossy(ext.value_bytes())).unwrap_or(mtime);
            } else if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                // overlay's own xattrs come only from whiteout entries, never from data.
                if !x.starts_with(b"trusted.overlay.") {
                    let n = sys::cstr(x).map_err(entry_err("read xattr name of", name))?;
                    xattrs.push((n, ext.value_bytes().to_vec()));
                }
            }
        }
    }
    let id = |v: u64| libc::uid_t::try_from(v).map_err(|_| bad(io::Error::other("id")));
    Ok(Meta {
        mode: mode as libc::mode_t,
        uid: id(uid)?,
        gid: id(gid)?,
        mtime,
        xattrs,
    })
}

impl Unpacker {
    fn unpack_entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name = EntryName::parse(&entry.path_bytes())?;
        let header_size = entry.header().entry_size().map_err(UnpackError::Read)?;
        if header_size != 0 && header_size != entry.size() {
            return Err(UnpackError::SizeDifferential {
                name: name.display,
                pax: entry.size(),
                header: header_size,
            });
        }
        let kind = entry.header().entry_type();
        let meta = read_meta(&mut entry, &name)?;
        let Some(last) = name.last.clone() else {
            // The layer root itself (`./`): only its metadata applies.
            if kind.is_dir() {
                let fd = sys::openat(
                    self.root.as_fd(),
                    c".",
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                )
                .map_err(entry_err("open", &name))?;
                self.apply_fd_meta(fd.as_fd(), &meta, &name)?;
                self.dirs.push((PathBuf::from("."), meta.mtime));
            }
            return Ok(());
        };
        let parent = self.open_parent(&name)?;
        let leaf = sys::cstr(&last).map_err(entry_err("name", &name))?;
        if self.whiteouts
            && let Some(target) = last.strip_prefix(WHITEOUT_PREFIX)
        {
            return whiteout(parent.as_fd(), &last, target, &name);
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(parent.as_fd(), &leaf, &mut entry, &meta, &name)
            }
            EntryType::Directory => self.make_dir(parent.as_fd(), &leaf, &meta, &name),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = sys::cstr(&target).map_err(entry_err("read link target of", &name))?;
                replace_existing(parent.as_fd(), &leaf, &name, |p, l| {
                    sys::symlinkat(&target, p, l)
                })?;
                self.apply_at_meta(parent.as_fd(), &leaf, &meta, &name, false)
            }
            EntryType::Link => self.hard_link(parent.as_fd(), &leaf, &entry, &name),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let (fmt, dev) = match kind {
                    EntryType::Char => (libc::S_IFCHR, dev_of(h)),
                    EntryType::Block => (libc::S_IFBLK, dev_of(h)),
                    _ => (libc::S_IFIFO, 0),
                };
                replace_existing(parent.as_fd(), &leaf, &name, |p, l| {
                    sys::mknodat(p, l, fmt | 0o600, dev)
                })?;
                self.apply_at_meta(parent.as_fd(), &leaf, &meta, &name, true)
            }
            EntryType::XGlobalHeader => Ok(()),
            _ => Err(UnpackError::Refused {
                name: name.display,
                reason: "unsupported entry type",
            }),
        }
    }

    /// The directory holding the entry, created (0755) where missing; never through a symlink.
    fn open_parent(&mut self, name: &EntryName) -> Result<OwnedFd, UnpackError> {
        if let Some((parts, fd)) = &self.cached_parent
            && *parts == name.parent
        {
            return fd.try_clone().map_err(entry_err("dup parent of", name));
        }
        let resolve = RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let fd = match sys::openat2(self.root.as_fd(), &name.parent_path(), flags, resolve) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.make_parents(name)?,
            Err(e) => return Err(through_link(name, e)),
        };
        let dup = fd.try_clone().map_err(entry_err("dup parent of", name))?;
        self.cached_parent = Some((name.parent.clone(), dup));
        Ok(fd)
    }

    fn make_parents(&self, name: &EntryName) -> Result<OwnedFd, UnpackError> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(entry_err("dup root for", name))?;
        for c in &name.parent {
            let c = sys::cstr(c).map_err(entry_err("name", name))?;
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            cur = match sys::openat(cur.as_fd(), &c, flags, 0) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    sys::mkdirat(cur.as_fd(), &c, 0o755)
                        .map_err(entry_err("create parent of", name))?;
                    sys::openat(cur.as_fd(), &c, flags, 0).map_err(|e| through_link(name, e))?
                }
                Err(e) => return Err(through_link(name, e)),
            };
        }
        Ok(cur)
    }

    fn write_file<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        leaf: &CStr,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        name: &EntryName,
    ) -> Result<(), UnpackError> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let mut created = None;
        replace_existing(parent, leaf, name, |p, l| {
            created = Some(sys::openat(p, l, flags, 0o600)?);
            Ok(())
        })?;
        let Some(fd) = created else {
            return Err(entry_err("create", name)(io::Error::from_raw_os_error(
                libc::EEXIST,
            )));
        };
        let mut file = File::from(fd);
        copy_data(entry, &mut file, &mut self.buf).map_err(|e| match e.kind() {
            io::ErrorKind::FileTooLarge | io::ErrorKind::UnexpectedEof => UnpackError::Read(e),
            _ => entry_err("write", name)(e),
        })?;
        self.apply_fd_meta(file.as_fd(), meta, name)?;
        sys::futimes(file.as_fd(), meta.mtime).map_err(entry_err("set times of", name))
    }

    fn make_dir(
        &mut self,
        parent: BorrowedFd<'_>,
        leaf: &CStr,
        meta: &Meta,
        name: &EntryName,
    ) -> Result<(), UnpackError> {
        match sys::mkdirat(parent, leaf, 0o700) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(entry_err("create directory", name)(e)),
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = sys::openat(parent, leaf, flags, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => UnpackError::Refused {
                name: name.display.clone(),
                reason: "directory entry over an existing symlink or file",
            },
            _ => entry_err("open directory", name)(e),
        })?;
        self.apply_fd_meta(fd.as_fd(), meta, name)?;
        let mut p = name.parent_path();
        p.push(std::ffi::OsStr::from_bytes(leaf.to_bytes()));
        self.dirs.push((p, meta.mtime));
        Ok(())
    }

    fn hard_link<R: Read>(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &CStr,
        entry: &tar::Entry<'_, R>,
        name: &EntryName,
    ) -> Result<(), UnpackError> {
        let raw = entry.link_name_bytes().unwrap_or_default();
        let target = EntryName::parse(&raw).map_err(|_| UnpackError::Refused {
            name: name.display.clone(),
            reason: "hard link target outside the layer",
        })?;
        let Some(tleaf) = &target.last else {
            return Err(UnpackError::Refused {
                name: name.display.clone(),
                reason: "hard link to the layer root",
            });
        };
        let resolve = RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        let tparent = sys::openat2(
            self.root.as_fd(),
            &target.parent_path(),
            libc::O_PATH | libc::O_DIRECTORY,
            resolve,
        )
        .map_err(|e| through_link(name, e))?;
        let tleaf = sys::cstr(tleaf).map_err(entry_err("name", name))?;
        replace_existing(parent, leaf, name, |p, l| {
            sys::linkat(tparent.as_fd(), &tleaf, p, l)
        })
    }

    fn apply_fd_meta(
        &self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        name: &EntryName,
    ) -> Result<(), UnpackError> {
        if self.opts.preserve_owner {
            sys::fchown(fd, meta.uid, meta.gid).map_err(entry_err("change owner of", name))?;
        }
        // After chown, which clears set-id bits.
        sys::fchmod(fd, meta.mode).map_err(entry_err("change mode of", name))?;
        for (k, v) in &meta.xattrs {
            sys::fsetxattr(fd, k, v).map_err(entry_err("set xattr on", name))?;
        }
        Ok(())
    }

    fn apply_at_meta(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &CStr,
        meta: &Meta,
        name: &EntryName,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        if self.opts.preserve_owner {
            sys::lchownat(parent, leaf, meta.uid, meta.gid)
                .map_err(entry_err("change owner of", name))?;
        }
        if chmod {
            sys::fchmodat(parent, leaf, meta.mode).map_err(entry_err("change mode of", name))?;
        }
        sys::lutimesat(parent, leaf, meta.mtime).map_err(entry_err("set times of", name))
    }

    /// Directory times last, since creating children changes them.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        self.cached_parent = None;
        let resolve = RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        for (path, mtime) in self.dirs.iter().rev() {
            let name = EntryName {
                display: path.display().to_string(),
                parent: Vec::new(),
                last: None,
            };
            let fd = sys::openat2(
                self.root.as_fd(),
                path,
                libc::O_RDONLY | libc::O_DIRECTORY,
                resolve,
            )
            .map_err(|e| through_link(&name, e))?;
            sys::futimes(fd.as_fd(), *mtime).map_err(entry_err("set times of", &name))?;
        }
        Ok(())
    }
}

/// A PAX time, `seconds[.fraction]`, as seconds and nanoseconds.
fn parse_pax_time(v: &str) -> Option<sys::Time> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // A negative time with a fraction counts back from the whole second.
    Some(if secs < 0 && nsec > 0 {
        (secs - 1, 1_000_000_000 - nsec)
    } else {
        (secs, nsec)
    })
}

fn dev_of(h: &tar::Header) -> libc::dev_t {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

fn through_link(name: &EntryName, e: io::Error) -> UnpackError {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => UnpackError::Refused {
            name: name.display.clone(),
            reason: "path goes through a symlink or a non-directory",
        },
        _ => entry_err("resolve parent of", name)(e),
    }
}

/// Run `create`; if the name exists as a non-directory, unlink it and retry once.
fn replace_existing(
    parent: BorrowedFd<'_>,
    leaf: &CStr,
    name: &EntryName,
    mut create: impl FnMut(BorrowedFd<'_>, &CStr) -> io::Result<()>,
) -> Result<(), UnpackError> {
    match create(parent, leaf) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            sys::unlinkat(parent, leaf, 0).map_err(entry_err("replace", name))?;
            create(parent, leaf).map_err(entry_err("create", name))
        }
        r => r.map_err(entry_err("create", name)),
    }
}

/// `.wh..wh..opq` marks the parent opaque; `.wh.NAME` becomes a 0/0 char device `NAME`.
fn whiteout(
    parent: BorrowedFd<'_>,
    last: &[u8],
    target: &[u8],
    name: &EntryName,
) -> Result<(), UnpackError> {
    if last == OPAQUE_MARKER {
        let dir = sys::openat(parent, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(entry_err("open opaque directory", name))?;
        return sys::fsetxattr(dir.as_fd(), OPAQUE_XATTR, b"y")
            .map_err(entry_err("mark opaque", name));
    }
    if target.starts_with(WHITEOUT_PREFIX) {
        // Other AUFS meta files (`.wh..wh.plnk`, …) carry nothing for overlayfs.
        return Ok(());
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(UnpackError::Refused {
            name: name.display.clone(),
            reason: "whiteout names a path outside its directory",
        });
    }
    let leaf = sys::cstr(target).map_err(entry_err("name", name))?;
    replace_existing(parent, &leaf, name, |p, l| {
        sys::mknodat(p, l, libc::S_IFCHR, 0)
    })
}

/// Copy an entry's data through `buf`.
fn copy_data(src: &mut impl Read, dst: &mut File, buf: &mut [u8]) -> io::Result<()> {
    use std::io::Write;
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    const OPTS: UnpackOptions = UnpackOptions {
        preserve_owner: false,
    };

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn names_are_split_and_checked() {
        let n = EntryName::parse(b"./a/b/./c").unwrap();
        assert_eq!(n.parent, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(n.last.as_deref(), Some(&b"c"[..]));
        assert!(EntryName::parse(b"./").unwrap().last.is_none());
        assert!(EntryName::parse(b"a/../b").is_err());
        assert!(EntryName::parse(b"/etc/passwd").is_err());
    }

    #[test]
    fn unpacks_files_links_and_metadata() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("d/", EntryType::Directory, "", b""),
            ("d/f", EntryType::Regular, "", b"data"),
            ("d/s", EntryType::Symlink, "f", b""),
            ("d/h", EntryType::Link, "d/f", b""),
            ("implicit/parent/x", EntryType::Regular, "", b"x"),
        ]);
        unpack_layer(&tar[..], t.path(), OPTS).unwrap();
        let f = t.path().join("d/f");
        assert_eq!(std::fs::read(&f).unwrap(), b"data");
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(
            (m.permissions().mode() & 0o7777, m.mtime(), m.nlink()),
            (0o640, 1_600_000_000, 2)
        );
        assert_eq!(
            std::fs::read_link(t.path().join("d/s")).unwrap().to_str(),
            Some("f")
        );
        assert_eq!(
            std::fs::metadata(t.path().join("d")).unwrap().mtime(),
            1_600_000_000
        );
        assert_eq!(
            std::fs::read(t.path().join("implicit/parent/x")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn refuses_writes_through_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap();
        let tar = tar_of(&[
            ("l", EntryType::Symlink, target, b""),
            ("l/x", EntryType::Regular, "", b"x"),
        ]);
        let err = unpack_layer(&tar[..], t.path(), OPTS).unwrap_err();
        assert!(err.to_string().contains("goes through a symlink"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn trees_keep_wh_names_and_never_follow_existing_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("old"), b"old").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("evil")).unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        let tar = tar_of(&[
            ("old", EntryType::Regular, "", b"new"),
            (".wh.x", EntryType::Regular, "", b"plain"),
        ]);
        unpack_tree_at(&tar[..], dir.as_fd(), OPTS).unwrap();
        assert_eq!(std::fs::read(t.path().join("old")).unwrap(), b"new");
        assert_eq!(std::fs::read(t.path().join(".wh.x")).unwrap(), b"plain");
        for name in ["evil/x", "./evil/x"] {
            let tar = tar_of(&[(name, EntryType::Regular, "", b"x")]);
            let err = unpack_tree_at(&tar[..], dir.as_fd(), OPTS).unwrap_err();
            assert!(err.to_string().contains("goes through a symlink"), "{err}");
        }
        let tar = tar_of(&[("evil", EntryType::Directory, "", b"")]);
        assert!(unpack_tree_at(&tar[..], dir.as_fd(), OPTS).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
