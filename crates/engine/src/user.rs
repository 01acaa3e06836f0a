//! `-u`/`USER` resolution: `name|uid[:group|gid]` looked up in the container's own
//! `/etc/passwd` and `/etc/group`, opened with `RESOLVE_IN_ROOT` so a symlink in the image
//! cannot point the lookup at the host's files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("open rootfs `{path}`")]
    Root { path: PathBuf, source: nix::Error },
}

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

const MAX_FILE: u64 = 4 << 20;

/// Reads `rel` (e.g. `etc/passwd`) inside `rootfs`; missing files read as empty.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String, UserError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| UserError::Root {
        path: rootfs.to_path_buf(),
        source,
    })?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let Ok(fd) = openat2(&root, rel, how) else {
        return Ok(String::new());
    };
    let mut text = String::new();
    let _ = File::from(fd).take(MAX_FILE).read_to_string(&mut text);
    Ok(text)
}

/// Resolves `spec` (`""` means root) against the rootfs's passwd and group files.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<Identity, UserError> {
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    resolve_in(&passwd, &group, spec)
}

fn resolve_in(passwd: &str, group: &str, spec: &str) -> Result<Identity, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let (uid, mut gid, home, uname) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| UserError::NoUser(user.into()))?,
            f[3].parse().unwrap_or(0),
            f.get(5).copied().unwrap_or("/").to_string(),
            f[0].to_string(),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), String::new()),
        (None, Err(_)) => return Err(UserError::NoUser(user.into())),
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = grp {
        gid = match groups.iter().find(|f| f[0] == g) {
            Some(f) => f[2].parse().map_err(|_| UserError::NoGroup(g.into()))?,
            None => g.parse().map_err(|_| UserError::NoGroup(g.into()))?,
        };
    }
    let additional_gids = if grp.is_some() || uname.is_empty() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|m| m == uname)))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nadm:x:4:www\n";

    #[test]
    fn names_numbers_and_groups() {
        let id = resolve_in(PASSWD, GROUP, "").unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (0, 0, "/root"));
        let id = resolve_in(PASSWD, GROUP, "www").unwrap();
        assert_eq!((id.uid, id.gid), (33, 33));
        assert_eq!(id.additional_gids, vec![4]);
        let id = resolve_in(PASSWD, GROUP, "1000:adm").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 4));
        let id = resolve_in(PASSWD, GROUP, "www:7").unwrap();
        assert_eq!((id.uid, id.gid), (33, 7));
        assert!(matches!(
            resolve_in(PASSWD, GROUP, "nobody"),
            Err(UserError::NoUser(_))
        ));
        assert!(matches!(
            resolve_in(PASSWD, GROUP, "www:nogroup"),
            Err(UserError::NoGroup(_))
        ));
    }

    #[test]
    fn a_symlinked_passwd_stays_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        // The link resolves to <rootfs>/etc/passwd itself: a loop, so no entries.
        assert!(matches!(
            resolve(dir.path(), "root"),
            Err(UserError::NoUser(_))
        ));
    }
}
