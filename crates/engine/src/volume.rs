//! Volumes: a directory `<root>/volumes/<name>/_data` and a record in the metadata store
//! (table `volumes`: created time, labels, anonymous or named, populated by copy-up).
//! A record and its directory change inside one write transaction, so concurrent `berth`
//! processes never see a record without its directory, and `volume rm` cannot remove a
//! volume that a container being created was just given. Which containers use a volume
//! is read from the container records themselves (their `HostConfig.Mounts`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::container::Engine;
use crate::db::{DbError, q};
use crate::record::ContainerRecord;
use crate::{EngineError, names};

/// The label Docker (≥ 23) puts on anonymous volumes; `volume prune` without `-a` removes
/// only volumes that carry it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", .ids.join(" "))]
    InUse { name: String, ids: Vec<String> },
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    InvalidName(String),
    #[error("volume driver `{0}` is not supported: use local")]
    Driver(String),
    #[error("{op} `{}`", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

fn io_at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { op, path, source }
}

/// One volume as `volume ls`/`inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Made for one container (`-v /x`, an image's `VOLUME`), not by name.
    pub anonymous: bool,
    pub labels: BTreeMap<String, String>,
    /// The host directory mounted into containers (`…/volumes/<name>/_data`).
    pub mountpoint: PathBuf,
    /// Ids of the containers (any state) whose mounts name this volume, oldest first.
    pub used_by: Vec<String>,
}

/// Docker's rule for a local volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// Volume name → ids of the containers that mount it (inside the caller's transaction or
/// on the connection), oldest container first.
fn users(conn: &Connection, name: Option<&str>) -> Result<HashMap<String, Vec<String>>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT json_extract(m.value, '$.Source'), c.id
             FROM containers c, json_each(c.record, '$.HostConfig.Mounts') m
             WHERE json_extract(m.value, '$.Type') = 'volume'
               AND (?1 IS NULL OR json_extract(m.value, '$.Source') = ?1)
             ORDER BY c.created, c.id",
        )
        .map_err(q("prepare volume users"))?;
    let rows = stmt
        .query_map(params![name], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
        .map_err(q("list volume users"))?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows {
        let (vol, id) = r.map_err(q("read volume users"))?;
        let ids = out.entry(vol).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(out)
}

/// A stored record: name, created, anonymous, labels.
type Row = (String, String, bool, BTreeMap<String, String>);

fn rows(conn: &Connection, name: Option<&str>) -> Result<Vec<Row>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, created, anonymous, labels FROM volumes
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .map_err(q("prepare volume list"))?;
    let rows = stmt
        .query_map(params![name], |r| {
            let labels: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                serde_json::from_str(&labels).unwrap_or_default(),
            ))
        })
        .map_err(q("list volumes"))?;
    rows.collect::<Result<_, _>>().map_err(q("read volumes"))
}

/// Adds a volume's record unless one exists; true if it was added.
fn insert_record(
    tx: &Transaction<'_>,
    name: &str,
    created: &str,
    anonymous: bool,
    labels: &BTreeMap<String, String>,
) -> Result<bool, DbError> {
    let mut labels = labels.clone();
    if anonymous {
        labels.insert(ANONYMOUS_LABEL.into(), String::new());
    }
    let n = tx
        .execute(
            "INSERT OR IGNORE INTO volumes (name, created, anonymous, labels)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                name,
                created,
                anonymous,
                serde_json::to_string(&labels).unwrap_or_default()
            ],
        )
        .map_err(q("insert volume"))?;
    Ok(n == 1)
}

/// True once copy-up has filled the volume (it never copies again).
pub(crate) fn is_populated(conn: &Connection, name: &str) -> Result<bool, DbError> {
    let v: Option<bool> = conn
        .query_row(
            "SELECT populated FROM volumes WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(q("read volume"))?;
    Ok(v.unwrap_or(false))
}

pub(crate) fn mark_populated(tx: &Transaction<'_>, name: &str) -> Result<(), DbError> {
    tx.execute(
        "UPDATE volumes SET populated = 1 WHERE name = ?1",
        params![name],
    )
    .map_err(q("update volume"))?;
    Ok(())
}

/// `<volumes>/<name>/_data`, created if missing.
fn make_dir(volumes: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    let data = volumes.join(name).join("_data");
    fs::create_dir_all(&data).map_err(io_at("create volume directory", &data))?;
    Ok(data)
}

/// In the transaction that adds a container: a record and a directory for each volume it
/// mounts that has none yet (`run -v name:/x` creates the named volume, as Docker does).
pub(crate) fn attach_records(
    tx: &Transaction<'_>,
    volumes: &Path,
    rec: &ContainerRecord,
) -> Result<(), VolumeError> {
    let now = crate::time::now();
    for m in rec
        .host_config
        .mounts
        .iter()
        .filter(|m| m.r#type == "volume")
    {
        if !valid_name(&m.source) {
            return Err(VolumeError::InvalidName(m.source.clone()));
        }
        insert_record(tx, &m.source, &now, m.anonymous, &BTreeMap::new())?;
        make_dir(volumes, &m.source)?;
    }
    Ok(())
}

/// Bytes in the files under `p`; symlinks are counted, never followed.
pub(crate) fn tree_size(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| tree_size(&e.path()))
        .sum()
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Gives a record to every volume directory that has none (made before volumes had
    /// records), and removes what an interrupted `volume rm` left.
    fn adopt_volumes(&mut self) -> Result<(), VolumeError> {
        let dir = self.volumes_dir();
        let mut on_disk = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_at("read", &dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".removing-") {
                let _ = fs::remove_dir_all(e.path());
            } else if valid_name(&name) {
                on_disk.push((name, e.metadata().map(|m| m.mtime()).unwrap_or(0)));
            }
        }
        let known: Vec<String> = self
            .db
            .read(|c| rows(c, None))?
            .into_iter()
            .map(|r| r.0)
            .collect();
        on_disk.retain(|(n, _)| !known.contains(n));
        if on_disk.is_empty() {
            return Ok(());
        }
        self.db.write(|tx| {
            let anon = anonymous_mounts(tx)?;
            for (name, mtime) in &on_disk {
                // A `volume rm` may have moved it away since we looked.
                if !dir.join(name).is_dir() {
                    continue;
                }
                let t = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(*mtime).unwrap_or(0));
                let created = crate::time::format(t);
                insert_record(tx, name, &created, anon.contains(name), &BTreeMap::new())?;
            }
            Ok::<_, VolumeError>(())
        })
    }

    /// `volume create [--label k=v] [NAME]`: a new volume (a random 64-hex name when none
    /// is given); an existing volume of that name is returned as it is.
    pub fn volume_create(
        &mut self,
        name: Option<&str>,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Volume, EngineError> {
        if driver != "local" {
            return Err(VolumeError::Driver(driver.to_string()).into());
        }
        let name = name.map_or_else(names::new_id, str::to_string);
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name).into());
        }
        let volumes = self.volumes_dir();
        self.db.write(|tx| {
            insert_record(tx, &name, &crate::time::now(), false, labels)?;
            make_dir(&volumes, &name).map(drop)
        })?;
        self.volume_get(&name)
    }

    /// One volume, with the containers that use it.
    pub fn volume_get(&mut self, name: &str) -> Result<Volume, EngineError> {
        self.adopt_volumes()?;
        let row = self.db.read(|c| rows(c, Some(name)))?.into_iter().next();
        let row = row.ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        let mut users = self.db.read(|c| users(c, Some(name)))?;
        Ok(self.volume_of(row, &mut users))
    }

    /// Every volume, by name.
    pub fn volume_list(&mut self) -> Result<Vec<Volume>, EngineError> {
        self.adopt_volumes()?;
        let rows = self.db.read(|c| rows(c, None))?;
        let mut users = self.db.read(|c| users(c, None))?;
        Ok(rows
            .into_iter()
            .map(|r| self.volume_of(r, &mut users))
            .collect())
    }

    fn volume_of(&self, r: Row, users: &mut HashMap<String, Vec<String>>) -> Volume {
        let (name, created, anonymous, labels) = r;
        Volume {
            mountpoint: self.volume_path(&name),
            used_by: users.remove(&name).unwrap_or_default(),
            name,
            created,
            anonymous,
            labels,
        }
    }

    /// `volume rm [-f] NAME`: refused while any container (running or not) mounts it;
    /// `force` only makes a missing volume no error.
    pub fn volume_remove(&mut self, name: &str, force: bool) -> Result<(), EngineError> {
        self.adopt_volumes()?;
        let volumes = self.volumes_dir();
        let trash = volumes.join(format!(".removing-{}", names::new_id()));
        let removed = self.db.write(|tx| {
            let ids = users(tx, Some(name))?.remove(name).unwrap_or_default();
            if !ids.is_empty() {
                return Err(VolumeError::InUse {
                    name: name.to_string(),
                    ids,
                });
            }
            let n = tx
                .execute("DELETE FROM volumes WHERE name = ?1", params![name])
                .map_err(q("delete volume"))?;
            if n == 0 {
                return Ok(None);
            }
            // Out of the way before the lock is released: a volume of the same name
            // created right after gets a new, empty directory.
            match fs::rename(volumes.join(name), &trash) {
                Ok(()) => Ok(Some(true)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(false)),
                Err(e) => Err(io_at("move away volume", &volumes.join(name))(e)),
            }
        })?;
        match removed {
            Some(true) => fs::remove_dir_all(&trash)
                .map_err(|e| io_at("remove volume directory", &trash)(e).into()),
            Some(false) => Ok(()),
            None if force => Ok(()),
            None => Err(VolumeError::NotFound(name.to_string()).into()),
        }
    }

    /// `volume prune [-a]`: removes unused volumes (only anonymous ones unless `all`) that
    /// `keep` does not keep; their names and the bytes freed.
    pub fn volume_prune(
        &mut self,
        all: bool,
        keep: impl Fn(&Volume) -> bool,
    ) -> Result<(Vec<String>, u64), EngineError> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in self.volume_list()? {
            if !v.used_by.is_empty() || !(all || v.anonymous) || keep(&v) {
                continue;
            }
            let size = tree_size(&v.mountpoint);
            match self.volume_remove(&v.name, false) {
                Ok(()) => {
                    removed.push(v.name);
                    bytes += size;
                }
                // A container took it meanwhile: it is not unused any more.
                Err(EngineError::Volume(VolumeError::InUse { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, bytes))
    }
}

/// Names of the volumes some container mounts as anonymous.
fn anonymous_mounts(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT json_extract(m.value, '$.Source')
             FROM containers c, json_each(c.record, '$.HostConfig.Mounts') m
             WHERE json_extract(m.value, '$.Type') = 'volume'
               AND json_extract(m.value, '$.Anonymous')",
        )
        .map_err(q("prepare anonymous volumes"))?;
    let rows = stmt
        .query_map([], |r| r.get(0))
        .map_err(q("list anonymous volumes"))?;
    rows.collect::<Result<_, _>>()
        .map_err(q("read anonymous volumes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::record::MountPoint;

    fn container(id: &str, mounts: &[(&str, bool)]) -> ContainerRecord {
        let mut r = ContainerRecord {
            id: id.into(),
            name: format!("n{id}"),
            created: format!("2026-01-01T00:00:0{id}Z"),
            ..Default::default()
        };
        for (src, anonymous) in mounts {
            r.host_config.mounts.push(MountPoint {
                r#type: "volume".into(),
                source: src.to_string(),
                destination: "/x".into(),
                read_only: false,
                options: vec![],
                anonymous: *anonymous,
            });
        }
        r
    }

    #[test]
    fn names_follow_docker() {
        for ok in ["ab", "data", "my-vol_1.x", "0123"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "..", "../x", ".x", "-x", "a/b", "a b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_container_brings_its_volume_records_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path().join("volumes");
        let mut db = Db::open(&dir.path().join("b.db")).unwrap();
        for rec in [
            container("1", &[("named", false), ("anon1", true)]),
            container("2", &[("named", false)]),
        ] {
            db.insert_with(&rec, |tx| attach_records(tx, &vols, &rec))
                .unwrap();
        }
        assert!(vols.join("named/_data").is_dir() && vols.join("anon1/_data").is_dir());
        let rows = db.read(|c| rows(c, None)).unwrap();
        let names: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.2)).collect();
        assert_eq!(names, [("anon1", true), ("named", false)]);
        assert_eq!(rows[0].3.get(ANONYMOUS_LABEL).map(String::as_str), Some(""));
        let users = db.read(|c| users(c, None)).unwrap();
        assert_eq!(users["named"], ["1", "2"]);
        assert_eq!(users["anon1"], ["1"]);
        assert_eq!(
            db.read(anonymous_mounts).unwrap(),
            vec!["anon1".to_string()]
        );
        assert!(!db.read(|c| is_populated(c, "named")).unwrap());
        db.write(|tx| mark_populated(tx, "named")).unwrap();
        assert!(db.read(|c| is_populated(c, "named")).unwrap());
        // A bad name in a mount fails the whole insert: no container, no directory.
        let bad = container("3", &[("..", false)]);
        let r = db.insert_with(&bad, |tx| attach_records(tx, &vols, &bad));
        assert!(matches!(r, Err(VolumeError::InvalidName(_))));
        assert!(db.get("3").is_err());
    }

    #[test]
    fn an_older_store_gains_the_table_and_adopts_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("volumes/.removing-x/_data")).unwrap();
        for v in ["oldvol", "anonvol"] {
            std::fs::create_dir_all(root.join("volumes").join(v).join("_data")).unwrap();
        }
        let rec = container("1", &[("oldvol", false), ("anonvol", true)]);
        let old = Connection::open(root.join("berth.db")).unwrap();
        old.execute_batch(
            "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
             created TEXT NOT NULL, record TEXT NOT NULL);",
        )
        .unwrap();
        old.execute(
            "INSERT INTO containers VALUES (?1, ?2, ?3, ?4)",
            params![
                rec.id,
                rec.name,
                rec.created,
                serde_json::to_string(&rec).unwrap()
            ],
        )
        .unwrap();
        drop(old);
        let mut e = Engine::open(&root, &dir.path().join("run"), Path::new("m")).unwrap();
        let vols = e.volume_list().unwrap();
        let seen: Vec<_> = vols
            .iter()
            .map(|v| (v.name.as_str(), v.anonymous, v.used_by.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                ("anonvol", true, vec!["1".to_string()]),
                ("oldvol", false, vec!["1".to_string()])
            ]
        );
        assert!(!root.join("volumes/.removing-x").exists());
        assert!(matches!(
            e.volume_remove("oldvol", false),
            Err(EngineError::Volume(VolumeError::InUse { .. }))
        ));
    }
}
