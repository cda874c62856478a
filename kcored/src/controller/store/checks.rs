//! What the store checks before it serves anything, and the backup it makes before it
//! migrates. A `controller.db` this build does not understand is refused at start, with a
//! message that names the file and the problem, rather than served with errors forever:
//!
//! - a schema version (`PRAGMA user_version`) newer than the migrations this build knows
//!   (a newer kcored wrote it), or negative, or 0 on a file that has tables (not kcore's);
//! - a failed `PRAGMA quick_check` (a damaged file), with SQLite's own report;
//! - a table or column missing from what the migrations up to the file's version make.
//!
//! Before every migration the database is copied with SQLite's online backup API to
//! `controller.db.bak-v<old version>` next to it (mode 0600; an existing backup is never
//! overwritten: `.bak-v<old>.1`, `.2`, ... follow).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

/// Why `controller.db` was refused, or could not be backed up or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path} has schema version {found}, but this kcored knows versions 0 to {known}: a \
         newer kcored wrote it. Run that kcored, or restore a backup taken before it migrated \
         ({path}.bak-v*)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path} is not kcore's: {why}")]
    Foreign { path: PathBuf, why: String },
    #[error(
        "{path} failed PRAGMA quick_check (the file is damaged): {output}. Restore a backup \
         ({path}.bak-v*) or move the file away"
    )]
    Damaged { path: PathBuf, output: String },
    #[error(
        "{path} (schema version {version}) has no table {table}: the file is damaged or was \
         changed by hand. Restore a backup ({path}.bak-v*) or move the file away"
    )]
    MissingTable {
        path: PathBuf,
        version: i64,
        table: String,
    },
    #[error(
        "{path} (schema version {version}) has no column {table}.{column}: the file is \
         damaged or was changed by hand. Restore a backup ({path}.bak-v*) or move the file \
         away"
    )]
    MissingColumn {
        path: PathBuf,
        version: i64,
        table: String,
        column: String,
    },
    #[error("back up {path} to {backup} before migrating")]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        #[source]
        source: BackupError,
    },
    #[error("migrate {path} from schema version {from} to {to}")]
    Migrate {
        path: PathBuf,
        from: i64,
        to: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database stayed busy")]
    Busy,
}

/// Tables and their columns.
pub(super) type Schema = BTreeMap<String, BTreeSet<String>>;

/// The tables (without SQLite's own) and their columns.
pub(super) fn schema_of(conn: &Connection) -> rusqlite::Result<Schema> {
    let mut tables = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )?;
    let names = tables
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut cols = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let mut schema = Schema::new();
    for name in names {
        let columns = cols
            .query_map([&name], |r| r.get::<_, String>(0))?
            .collect::<Result<BTreeSet<_>, _>>()?;
        schema.insert(name, columns);
    }
    Ok(schema)
}

/// The schema the first `version` migrations make, built in memory.
pub(super) fn expected_schema(migrations: &[&str], version: usize) -> rusqlite::Result<Schema> {
    let mem = Connection::open_in_memory()?;
    for m in &migrations[..version.min(migrations.len())] {
        mem.execute_batch(m)?;
    }
    schema_of(&mem)
}

/// Refuse what this build cannot serve: a version it does not know, a damaged file, a
/// missing table or column. Reads only: nothing in the file changes. Returns the version.
pub(super) fn check(
    conn: &Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<i64, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let known = migrations.len() as i64;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    if version < 0 {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            why: format!("schema version {version}"),
        });
    }
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(sql)?;
    let report = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Damaged {
            path: path.to_path_buf(),
            output: e.to_string(),
        })?;
    if report != ["ok"] {
        let mut output = report
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if report.len() > 10 {
            output.push_str(&format!("; ... ({} lines)", report.len()));
        }
        return Err(StoreError::Damaged {
            path: path.to_path_buf(),
            output,
        });
    }
    let have = schema_of(conn).map_err(sql)?;
    if version == 0 {
        if let Some(table) = have.keys().next() {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
                why: format!("schema version 0 but it has tables ({table}, ...)"),
            });
        }
        return Ok(0);
    }
    let want = expected_schema(migrations, version as usize).map_err(sql)?;
    compare(&have, &want, path, version)?;
    Ok(version)
}

/// Every table and column of `want` must be in `have` (more is allowed).
pub(super) fn compare(
    have: &Schema,
    want: &Schema,
    path: &Path,
    version: i64,
) -> Result<(), StoreError> {
    for (table, columns) in want {
        let Some(got) = have.get(table) else {
            return Err(StoreError::MissingTable {
                path: path.to_path_buf(),
                version,
                table: table.clone(),
            });
        };
        if let Some(column) = columns.difference(got).next() {
            return Err(StoreError::MissingColumn {
                path: path.to_path_buf(),
                version,
                table: table.clone(),
                column: column.clone(),
            });
        }
    }
    Ok(())
}

/// Copy the database (online backup API) to `<file>.bak-v<version>` next to it, mode
/// 0600, never over an existing file. Returns the backup's path.
pub(super) fn backup(conn: &Connection, path: &Path, version: i64) -> Result<PathBuf, StoreError> {
    let base = format!("{}.bak-v{version}", path.display());
    let mut n = 0u32;
    let target = loop {
        let candidate = if n == 0 {
            PathBuf::from(&base)
        } else {
            PathBuf::from(format!("{base}.{n}"))
        };
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    let fail = |source: BackupError| StoreError::Backup {
        path: path.to_path_buf(),
        backup: target.clone(),
        source,
    };
    // Made here, empty and private, so SQLite writes into a file nobody else can read.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(|e| fail(e.into()))?;
    if let Err(e) = copy_into(conn, &target) {
        // Leave no half-written backup that looks like a good one.
        let _ = std::fs::remove_file(&target);
        return Err(fail(e));
    }
    Ok(target)
}

fn copy_into(conn: &Connection, target: &Path) -> Result<(), BackupError> {
    let mut dst = Connection::open(target)?;
    {
        let b = Backup::new(conn, &mut dst)?;
        let mut tries = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy, Locked (and whatever a later rusqlite adds): wait and retry.
                _ => {
                    tries += 1;
                    if tries > 50 {
                        return Err(BackupError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    dst.close().map_err(|(_, e)| e)?;
    std::fs::File::open(target)?.sync_all()?;
    if let Some(dir) = target.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::controller::store::{MIGRATIONS, Store};

    /// A database at schema version `v` (the first `v` migrations), with one VM and one
    /// network row.
    fn db_at(path: &Path, v: usize) {
        let c = Connection::open(path).expect("open");
        for (i, m) in MIGRATIONS[..v].iter().enumerate() {
            c.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .expect("migrate");
        }
        c.execute_batch(
            "INSERT INTO vms (id, name, node, spec, status, created_at, updated_at)
             VALUES ('id-old', 'old', 'n1', '{}', 1, 'then', 'then');
             INSERT INTO networks (name, def, created_at) VALUES ('net', '{}', 'then');",
        )
        .expect("rows");
    }

    fn version(path: &Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version")
    }

    #[test]
    fn a_migration_leaves_a_private_backup_of_the_old_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("controller.db");
        db_at(&path, 9);
        let store = Store::open(&path).expect("migrate v9");
        drop(store);
        assert_eq!(version(&path), MIGRATIONS.len() as i64);

        let bak = dir.path().join("controller.db.bak-v9");
        let mode = std::fs::metadata(&bak)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "backup mode {mode:o}");
        assert_eq!(version(&bak), 9);
        let b = Connection::open(&bak).expect("the backup opens");
        let name: String = b
            .query_row("SELECT name FROM vms WHERE id = 'id-old'", [], |r| r.get(0))
            .expect("the old row");
        assert_eq!(name, "old");
        let schema = schema_of(&b).expect("schema");
        assert!(schema.contains_key("node_facts"), "{schema:?}");
        assert!(
            !schema.contains_key("removed_nodes"),
            "v10's table: {schema:?}"
        );
        drop(b);

        // No backup when nothing migrates; an existing backup is never overwritten.
        Store::open(&path).expect("reopen");
        let files = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .expect("ls")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".bak-"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(files(dir.path()), ["controller.db.bak-v9"]);
        let other = tempfile::tempdir().expect("tempdir");
        let path = other.path().join("controller.db");
        db_at(&path, 9);
        std::fs::write(other.path().join("controller.db.bak-v9"), b"keep me").expect("write");
        Store::open(&path).expect("migrate v9 again");
        assert_eq!(
            std::fs::read(other.path().join("controller.db.bak-v9")).expect("read"),
            b"keep me"
        );
        assert_eq!(
            files(other.path()),
            ["controller.db.bak-v9", "controller.db.bak-v9.1"]
        );
        assert_eq!(version(&other.path().join("controller.db.bak-v9.1")), 9);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("controller.db");
        drop(Store::open(&path).expect("create"));
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", 999)
            .expect("set version");
        let e = Store::open(&path).expect_err("v999");
        assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e:?}");
        let msg = e.to_string();
        for needle in [
            format!("{} has schema version 999", path.display()),
            format!("knows versions 0 to {}", MIGRATIONS.len()),
            "a newer kcored wrote it".to_string(),
        ] {
            assert!(msg.contains(&needle), "{msg}");
        }
        assert_eq!(version(&path), 999, "the file is not touched");
        let n = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(n, 1, "no backup or other file was made");
    }

    #[test]
    fn missing_tables_and_columns_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("controller.db");
        drop(Store::open(&path).expect("create"));
        let c = Connection::open(&path).expect("open");
        c.execute_batch("ALTER TABLE vms DROP COLUMN pending_start")
            .expect("drop column");
        let e = Store::open(&path).expect_err("no column");
        assert!(
            e.to_string().contains("has no column vms.pending_start"),
            "{e}"
        );
        c.execute_batch("DROP TABLE networks").expect("drop table");
        let e = Store::open(&path).expect_err("no table");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "{} (schema version {}) has no table networks",
                path.display(),
                MIGRATIONS.len()
            )),
            "{msg}"
        );
        // A v9 file that lacks a v9 table is refused before it is backed up or migrated.
        let path = dir.path().join("v9.db");
        db_at(&path, 9);
        Connection::open(&path)
            .expect("open")
            .execute_batch("DROP TABLE node_facts")
            .expect("drop");
        let e = Store::open(&path).expect_err("v9 without node_facts");
        assert!(e.to_string().contains("has no table node_facts"), "{e}");
        assert_eq!(version(&path), 9);
        assert!(!dir.path().join("v9.db.bak-v9").exists());
        // Version 0 with tables: someone else's database.
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch("CREATE TABLE t (x)")
            .expect("create");
        let e = Store::open(&path).expect_err("foreign");
        assert!(e.to_string().contains("is not kcore's"), "{e}");
    }

    #[test]
    fn a_damaged_file_is_refused_with_quick_checks_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("controller.db");
        let store = Store::open(&path).expect("create");
        for i in 0..500 {
            store
                .insert_event(crate::model::Event {
                    kind: "vm.created".into(),
                    message: format!("event number {i} with some text to fill pages"),
                    ..Default::default()
                })
                .expect("event");
        }
        drop(store);
        let c = Connection::open(&path).expect("open");
        c.pragma_update(None, "journal_mode", "DELETE")
            .expect("leave WAL");
        let root: i64 = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .expect("root page");
        let page: i64 = c
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .expect("page size");
        drop(c);
        // Scribble over the events table's root page (its b-tree header and cell pointers).
        let mut bytes = std::fs::read(&path).expect("read");
        let at = ((root - 1) * page) as usize;
        for b in &mut bytes[at..at + 64] {
            *b = 0xff;
        }
        std::fs::write(&path, bytes).expect("write");
        let e = Store::open(&path).expect_err("damaged");
        assert!(matches!(e, StoreError::Damaged { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("failed PRAGMA quick_check"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}
