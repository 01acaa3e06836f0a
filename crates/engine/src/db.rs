//! The metadata store: one SQLite database (`<root>/berth.db`) in WAL mode. Every writer
//! runs in a `BEGIN IMMEDIATE` transaction, so concurrent `berth` processes serialise on
//! the database lock (bounded by `busy_timeout`) instead of failing with SQLITE_BUSY; the
//! few steps of opening where SQLite does not wait on its own are retried (`retry_busy`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::record::ContainerRecord;

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("open metadata store `{path}`")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("metadata store: {op}")]
    Query {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("metadata store: record of container `{id}` is corrupt")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match `{0}`; give more of the id")]
    Ambiguous(String),
    #[error("container `{0}` is being removed")]
    Removing(String),
}

pub(crate) fn q(op: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError {
    move |source| DbError::Query { op, source }
}

/// The metadata store; the connection is opened on first use and may be closed while
/// idle (the monitor does, to keep its resident set small).
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    conn: Option<Connection>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    populated INTEGER NOT NULL DEFAULT 0
);";

/// WAL size, in pages, that triggers a checkpoint (see `connect`).
const WAL_PAGES: i64 = 64;

/// Kept in the store's `user_version`; a store below it gets `SCHEMA` applied (every
/// statement there is `IF NOT EXISTS`, so older stores gain new tables).
const SCHEMA_VERSION: i64 = 2;

/// How long a `berth` command waits for another one holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` again while it fails with SQLITE_BUSY, for the steps where SQLite does not
/// call the busy handler itself, up to `BUSY_TIMEOUT`.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_micros(500);
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

impl Db {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let conn = Some(Self::connect(path)?);
        Ok(Db {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// The store at `path`, connected on first use (the monitor, which hands its first
    /// writes to the container's start-up).
    pub fn open_lazy(path: &Path) -> Db {
        Db {
            path: path.to_path_buf(),
            conn: None,
        }
    }

    /// Closes the connection; the next operation reopens it.
    pub fn close(&mut self) {
        self.conn = None;
    }

    fn conn(&mut self) -> Result<&mut Connection, DbError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => Self::connect(&self.path)?,
        };
        Ok(self.conn.insert(conn))
    }

    fn connect(path: &Path) -> Result<Connection, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        crate::trace::mark("db: opened");
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets readers run beside the one writer. Switching a new file to WAL needs
        // the exclusive lock, and SQLite reports a lost race for it as SQLITE_BUSY
        // without consulting the busy handler (50 `berth run -d` on a fresh root do
        // race), so the switch is retried here; once the file is in WAL mode, the
        // check is a read.
        retry_busy(|| {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            }
            Ok(())
        })
        .map_err(open_err)?;
        crate::trace::mark("db: wal checked");
        // NORMAL skips the fsync per commit (a power cut may lose the last commits, never
        // corrupt the file).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // Keep the WAL when a connection closes: every `berth` command is a short process,
        // and a checkpoint (two fsyncs) plus WAL re-creation on each exit would dominate a
        // `run`.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(open_err)?;
        // The first connection to open the file (every `berth` command is a short
        // process, so usually that is us) rebuilds the WAL index by reading every valid
        // frame of the WAL: ~2 ms per command with SQLite's default of checkpointing at
        // 1000 pages. A small WAL keeps that read short; the checkpoints it costs (copy
        // back + fsync) come every few dozen writes and are paid by whichever write
        // crosses the mark.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)
            .map_err(open_err)?;
        crate::trace::mark("db: pragmas");
        // Tables are created (or an older store gains the new ones) in a write
        // transaction taken up front, so racing first opens wait on the lock instead of
        // failing when one's read snapshot goes stale; a store already at this schema
        // costs one read.
        retry_busy(|| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version < SCHEMA_VERSION {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .inspect_err(|_| {
                    // Leave no half-open transaction behind a failed attempt.
                    let _ = conn.execute_batch("ROLLBACK");
                })?;
            }
            Ok(())
        })
        .map_err(open_err)?;
        Ok(conn)
    }

    /// Adds a new container; fails if its name is taken.
    #[cfg(test)]
    pub fn insert(&mut self, rec: &ContainerRecord) -> Result<(), DbError> {
        self.insert_with(rec, |_| Ok(()))
    }

    /// Adds a new container and runs `also` in the same transaction (the container's
    /// volumes get their records there); nothing is committed if either fails.
    pub(crate) fn insert_with<E: From<DbError>>(
        &mut self,
        rec: &ContainerRecord,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let tx = self
            .conn()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(q("begin"))?;
        if let Some(id) = name_holder(&tx, &rec.name)? {
            return Err(DbError::NameInUse {
                name: rec.name.clone(),
                id,
            }
            .into());
        }
        tx.execute(
            "INSERT INTO containers (id, name, created, record) VALUES (?1, ?2, ?3, ?4)",
            params![rec.id, rec.name, rec.created, to_json(rec)],
        )
        .map_err(q("insert container"))?;
        also(&tx)?;
        Ok(tx.commit().map_err(q("commit"))?)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committing if it succeeds.
    pub(crate) fn write<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(q("begin"))?;
        let v = f(&tx)?;
        tx.commit().map_err(q("commit"))?;
        Ok(v)
    }

    /// Runs `f` on the connection (reads; each statement sees a consistent snapshot).
    pub(crate) fn read<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        f(self.conn()?)
    }

    /// Finds a container by full id, name or unique id prefix.
    pub fn get(&mut self, key: &str) -> Result<ContainerRecord, DbError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let mut stmt = self
            .conn()?
            .prepare_cached(
                "SELECT id, record FROM containers WHERE id = ?1 OR name = ?1
                 UNION ALL SELECT id, record FROM containers WHERE id LIKE ?2 AND id != ?1 LIMIT 3",
            )
            .map_err(q("prepare lookup"))?;
        let prefix = format!("{}%", key.replace(['%', '_'], ""));
        let rows: Vec<(String, String)> = stmt
            .query_map(params![key, prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(q("look up container"))?
            .collect::<Result<_, _>>()
            .map_err(q("read container"))?;
        let exact = rows.first();
        match (exact, rows.len()) {
            (None, _) => Err(DbError::NotFound(key.to_string())),
            (Some((id, text)), 1) => from_json(id, text),
            (Some((id, text)), _) if id == key => from_json(id, text),
            _ => {
                // An exact name match wins over prefixes of other ids.
                let named: Vec<_> = rows
                    .iter()
                    .filter_map(|(id, t)| from_json(id, t).ok())
                    .filter(|r| r.name == key || r.id == key)
                    .collect();
                named
                    .into_iter()
                    .next()
                    .ok_or_else(|| DbError::Ambiguous(key.to_string()))
            }
        }
    }

    /// Every container, oldest first.
    pub fn list(&mut self) -> Result<Vec<ContainerRecord>, DbError> {
        let mut stmt = self
            .conn()?
            .prepare_cached("SELECT id, record FROM containers ORDER BY created, id")
            .map_err(q("prepare list"))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(q("list containers"))?
            .collect::<Result<_, _>>()
            .map_err(q("read containers"))?;
        rows.iter().map(|(id, t)| from_json(id, t)).collect()
    }

    /// Read-modify-write of one record under the write lock. Returns the new record.
    pub fn update(
        &mut self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord) -> Result<(), DbError>,
    ) -> Result<ContainerRecord, DbError> {
        let tx = self
            .conn()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(q("begin"))?;
        let text: Option<String> = tx
            .query_row(
                "SELECT record FROM containers WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read container"))?;
        let mut rec = from_json(id, &text.ok_or_else(|| DbError::NotFound(id.into()))?)?;
        let old_name = rec.name.clone();
        change(&mut rec)?;
        if rec.name != old_name
            && let Some(holder) = name_holder(&tx, &rec.name)?
        {
            return Err(DbError::NameInUse {
                name: rec.name,
                id: holder,
            });
        }
        tx.execute(
            "UPDATE containers SET name = ?2, record = ?3 WHERE id = ?1",
            params![id, rec.name, to_json(&rec)],
        )
        .map_err(q("update container"))?;
        tx.commit().map_err(q("commit"))?;
        Ok(rec)
    }

    /// Deletes a record (no error if it is already gone).
    pub fn remove(&mut self, id: &str) -> Result<(), DbError> {
        self.conn()?
            .execute("DELETE FROM containers WHERE id = ?1", params![id])
            .map_err(q("delete container"))?;
        Ok(())
    }
}

fn to_json(rec: &ContainerRecord) -> String {
    serde_json::to_string(rec).unwrap_or_default()
}

fn from_json(id: &str, text: &str) -> Result<ContainerRecord, DbError> {
    serde_json::from_str(text).map_err(|source| DbError::Corrupt {
        id: id.to_string(),
        source,
    })
}

/// The id of the container that holds `name`, if any (inside the caller's transaction).
fn name_holder(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<Option<String>, DbError> {
    tx.query_row(
        "SELECT id FROM containers WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
    .map_err(q("look up name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            created: format!("2026-01-01T00:00:00.{id}Z"),
            ..Default::default()
        }
    }

    /// Run by `many_first_opens_race_without_busy_errors` in a child process: opens the
    /// store named in the environment and adds one record. A no-op otherwise.
    #[test]
    fn first_open_child() {
        let (Ok(path), Ok(id)) = (
            std::env::var("BERTH_TEST_DB"),
            std::env::var("BERTH_TEST_DB_ID"),
        ) else {
            return;
        };
        // All children open at the same moment, as far as the clock allows.
        if let Some(at) = std::env::var("BERTH_TEST_DB_AT")
            .ok()
            .and_then(|t| t.parse::<u128>().ok())
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros();
            if at > now {
                std::thread::sleep(Duration::from_micros((at - now) as u64));
            }
        }
        let mut db = Db::open(Path::new(&path)).unwrap();
        db.insert(&rec(&id, &format!("n{id}"))).unwrap();
    }

    #[test]
    fn many_first_opens_race_without_busy_errors() {
        // Every `berth` command is its own process; 50 `run -d` at once on a fresh root
        // all create the file, switch it to WAL and create the tables together. (Threads
        // in one process do not show the race: SQLite shares their file locks.)
        let exe = std::env::current_exe().unwrap();
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("b.db");
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros()
                + 200_000;
            let children: Vec<_> = (0..40)
                .map(|i| {
                    std::process::Command::new(&exe)
                        .args(["--exact", "db::tests::first_open_child", "--quiet"])
                        .env("BERTH_TEST_DB", &path)
                        .env("BERTH_TEST_DB_ID", format!("{i:04}"))
                        .env("BERTH_TEST_DB_AT", at.to_string())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for c in children {
                let o = c.wait_with_output().unwrap();
                assert!(
                    o.status.success(),
                    "a first open failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            assert_eq!(Db::open(&path).unwrap().list().unwrap().len(), 40);
        }
    }

    #[test]
    fn insert_get_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("b.db")).unwrap();
        db.insert(&rec("abc123", "one")).unwrap();
        db.insert(&rec("abd456", "two")).unwrap();
        assert_eq!(db.get("one").unwrap().id, "abc123");
        assert_eq!(db.get("abd").unwrap().name, "two");
        assert!(matches!(db.get("ab"), Err(DbError::Ambiguous(_))));
        assert!(matches!(db.get("zz"), Err(DbError::NotFound(_))));
        let e = db.insert(&rec("ffff", "one")).unwrap_err();
        assert!(
            e.to_string()
                .contains("already in use by container \"abc123\"")
        );
        let e = db
            .update("abd456", |r| {
                r.name = "one".into();
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, DbError::NameInUse { .. }));
        db.update("abd456", |r| {
            r.name = "three".into();
            Ok(())
        })
        .unwrap();
        assert_eq!(db.get("three").unwrap().id, "abd456");
        assert_eq!(db.list().unwrap().len(), 2);
        db.remove("abc123").unwrap();
        assert_eq!(db.list().unwrap().len(), 1);
    }

    #[test]
    fn a_name_that_is_also_an_id_prefix_finds_the_named_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("b.db")).unwrap();
        db.insert(&rec("abc123", "x")).unwrap();
        db.insert(&rec("ffff00", "abc")).unwrap();
        assert_eq!(db.get("abc").unwrap().id, "ffff00");
    }
}
