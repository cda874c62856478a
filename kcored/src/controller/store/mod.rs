//! The controller's SQLite store (WAL): VMs with their specs, statuses and timelines, and
//! the event log. Schema changes are numbered migrations applied by `PRAGMA user_version`;
//! a file this build does not understand is refused at open, and the file is backed up
//! before every migration (see [`checks`]).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use kcore_types::MacAddr;

use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::model::{DiskView, Event, NicRequest, NicView, Timeline, VmReport, VmRequest, VmStatus};

const MIGRATIONS: &[&str] = &[
    // 1: VMs and events.
    "CREATE TABLE vms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        node TEXT NOT NULL,
        spec TEXT NOT NULL,
        status INTEGER NOT NULL,
        status_reason TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        timeline TEXT,
        seq INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        vm_id TEXT NOT NULL DEFAULT '',
        vm_name TEXT NOT NULL DEFAULT '',
        status INTEGER NOT NULL DEFAULT 0,
        node TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_vm ON events (vm_name, id);",
    // 2: the disks the node made for each VM.
    "ALTER TABLE vms ADD COLUMN disks TEXT NOT NULL DEFAULT '[]';",
    // 3: networks, and the NICs the node made for each VM.
    "ALTER TABLE vms ADD COLUMN nics TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        def TEXT NOT NULL,
        created_at TEXT NOT NULL
    );",
    // 4: join tokens (their SHA-256 only), single use, with an expiry (unix seconds).
    "CREATE TABLE join_tokens (
        sha256 TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        used_at TEXT,
        used_by TEXT
    );",
    // 5: nodes that registered over TCP (joined nodes), and where their NodeAgent listens.
    "CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        registered_at TEXT NOT NULL
    );",
    // 6: cordoned nodes (the scheduler places no new VMs there).
    "CREATE TABLE cordoned_nodes (name TEXT PRIMARY KEY);",
    // 7: a create that asked for a running VM and whose start is not confirmed yet; after a
    // controller crash, reconciliation finishes it.
    "ALTER TABLE vms ADD COLUMN pending_start INTEGER NOT NULL DEFAULT 0;",
    // 8: the certificates the controller issued, and which are revoked.
    "CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        not_after TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX certificates_name ON certificates (name);",
    // 9: each node's last heartbeat (without its VM list) and when it came, so a node that
    // is away still shows its capacity after a controller restart.
    "CREATE TABLE node_facts (
        name TEXT PRIMARY KEY,
        heartbeat TEXT NOT NULL,
        at TEXT NOT NULL
    );",
    // 10: nodes taken out of the cluster: RegisterNode refuses them until they join again.
    "CREATE TABLE removed_nodes (name TEXT PRIMARY KEY, removed_at TEXT NOT NULL);",
    // 11: VMs that got QMP commands outside query-* through passthrough since their last
    // start (shown as tainted).
    "ALTER TABLE vms ADD COLUMN tainted INTEGER NOT NULL DEFAULT 0;",
    // 12: a VM's spec in the store's own schema (the domain's `VmRequest` as JSON, no longer
    // the proto's JSON; rewritten by `migrate_specs`), and its vCPUs and memory as columns
    // for placement.
    "ALTER TABLE vms ADD COLUMN vcpus INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE vms ADD COLUMN memory_mib INTEGER NOT NULL DEFAULT 0;",
    // 13: each network's definition in the store's own schema (`NetworkDef` as JSON, no
    // longer the proto's JSON; rewritten by `networks::migrate_networks`).
    "",
];

/// Data changes that go with a migration (its number, 1-based), in its transaction.
fn data_migration(version: usize, conn: &Connection) -> rusqlite::Result<()> {
    match version {
        12 => migrate_specs(conn),
        13 => networks::migrate_networks(conn),
        _ => Ok(()),
    }
}

/// Migration 12: each VM's spec from the proto's JSON (`pb::VmSpec`) to the store's
/// schema. A spec that is not a valid request (a VM adopted from a node, whose spec says
/// only what the node runs) is described from what it has: its kernel, its disks.
fn migrate_specs(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT id, spec, disks FROM vms")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, spec, disks) in rows {
        let new = crate::convert::request_from_stored_proto_json(&spec, &disks);
        let text = serde_json::to_string(&new)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.execute(
            "UPDATE vms SET spec = ?2, vcpus = ?3, memory_mib = ?4 WHERE id = ?1",
            params![id, text, new.vcpus, new.memory_mib],
        )?;
    }
    Ok(())
}

mod checks;
mod cluster;
mod networks;

pub use checks::StoreError;

/// Why a join token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Used,
    Expired,
}

/// One VM as the controller stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    pub id: String,
    pub name: String,
    pub node: String,
    /// What the create asked for (the store's own schema: [`VmRequest`] as JSON).
    pub spec: VmRequest,
    pub status: VmStatus,
    pub status_reason: String,
    pub pid: i32,
    pub timeline: Option<Timeline>,
    pub seq: u64,
    pub created_at: String,
    pub updated_at: String,
    pub disks: Vec<DiskView>,
    pub nics: Vec<NicView>,
    /// Created to run, and the start not confirmed yet.
    pub pending_start: bool,
    /// Got a QMP command outside query-* through passthrough since its last start.
    pub tainted: bool,
}

impl VmRow {
    /// The MACs this VM has or asked for, each once.
    pub fn macs(&self) -> impl Iterator<Item = MacAddr> + '_ {
        let all: std::collections::BTreeSet<MacAddr> = self
            .spec
            .nics
            .iter()
            .filter_map(|n| n.mac)
            .chain(self.nics.iter().filter_map(|n| n.mac.parse().ok()))
            .collect();
        all.into_iter()
    }

    /// The networks this VM has or asked for a NIC on, each once.
    pub fn networks(&self) -> impl Iterator<Item = &str> {
        let all: std::collections::BTreeSet<&str> = self
            .spec
            .nics
            .iter()
            .map(|n| n.network.as_str())
            .chain(self.nics.iter().map(|n| n.network.as_str()))
            .collect();
        all.into_iter()
    }
}

/// The SQLite connection behind a mutex: every statement is short.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn json<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(format!("encode: {e}")))
}

const VM_COLUMNS: &str = "id, name, node, spec, status, status_reason, pid, timeline, seq, \
     created_at, updated_at, disks, nics, pending_start, tainted, vcpus, memory_mib";

fn row_to_vm(r: &rusqlite::Row<'_>) -> rusqlite::Result<VmRow> {
    let spec: String = r.get(3)?;
    let timeline: Option<String> = r.get(7)?;
    let status: i32 = r.get(4)?;
    let seq: i64 = r.get(8)?;
    Ok(VmRow {
        id: r.get(0)?,
        name: r.get(1)?,
        node: r.get(2)?,
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        status: VmStatus::from_i32(status),
        status_reason: r.get(5)?,
        pid: r.get(6)?,
        timeline: timeline.and_then(|t| serde_json::from_str(&t).ok()),
        seq: seq as u64,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        disks: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
        nics: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
        pending_start: r.get(13)?,
        tainted: r.get(14)?,
    })
}

impl Store {
    /// Open (or create) the store: refuse a file this build does not understand (see
    /// [`checks`]), back it up before migrating it, migrate, check the result.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let version = checks::check(&conn, path, MIGRATIONS)?;
        let latest = MIGRATIONS.len() as i64;
        if version < latest {
            if version > 0 {
                let backup = checks::backup(&conn, path, version)?;
                tracing::info!(
                    db = %path.display(),
                    backup = %backup.display(),
                    from = version,
                    to = latest,
                    "backed up the store before migrating it"
                );
            }
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                let step = || -> rusqlite::Result<()> {
                    conn.execute_batch(&format!("BEGIN; {m};"))?;
                    data_migration(i + 1, &conn)?;
                    conn.execute_batch(&format!("PRAGMA user_version = {}; COMMIT;", i + 1))
                };
                step().map_err(|source| {
                    let _ = conn.execute_batch("ROLLBACK;");
                    StoreError::Migrate {
                        path: path.to_path_buf(),
                        from: i as i64,
                        to: i as i64 + 1,
                        source,
                    }
                })?;
            }
            let have = checks::schema_of(&conn).map_err(sql)?;
            let want = checks::expected_schema(MIGRATIONS, MIGRATIONS.len()).map_err(sql)?;
            checks::compare(&have, &want, path, latest)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert_vm(&self, row: &VmRow) -> ApiResult<()> {
        let r = self.conn().execute(
            &format!("INSERT INTO vms ({VM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
            params![
                row.id,
                row.name,
                row.node,
                json(&row.spec)?,
                row.status as i32,
                row.status_reason,
                row.pid,
                row.timeline.as_ref().map(json).transpose()?,
                row.seq as i64,
                row.created_at,
                row.updated_at,
                json(&row.disks)?,
                json(&row.nics)?,
                row.pending_start,
                row.tainted,
                row.spec.vcpus,
                row.spec.memory_mib
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::AlreadyExists(format!(
                    "a VM named {:?} already exists",
                    row.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// By name, or by id.
    pub fn get_vm(&self, name_or_id: &str) -> ApiResult<Option<VmRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {VM_COLUMNS} FROM vms WHERE name = ?1 OR id = ?1"),
                params![name_or_id],
                row_to_vm,
            )
            .optional()?)
    }

    pub fn list_vms(&self, node: Option<&str>) -> ApiResult<Vec<VmRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {VM_COLUMNS} FROM vms WHERE ?1 IS NULL OR node = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map(params![node], row_to_vm)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_vm(&self, id: &str) -> ApiResult<()> {
        self.conn()
            .execute("DELETE FROM vms WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Apply the node's view of a VM if it is newer than what we have. Returns the row
    /// before and after, or None if the news was stale or the VM unknown.
    pub fn apply_node_vm(&self, nv: &VmReport) -> ApiResult<Option<(VmRow, VmRow)>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(mut row) = tx
            .query_row(
                &format!("SELECT {VM_COLUMNS} FROM vms WHERE id = ?1"),
                params![nv.id],
                row_to_vm,
            )
            .optional()?
        else {
            return Ok(None);
        };
        if nv.seq <= row.seq {
            return Ok(None);
        }
        let before = row.clone();
        row.status = nv.status;
        row.status_reason = nv.reason.clone();
        row.pid = nv.pid;
        row.seq = nv.seq;
        // A node that restarted may not know the last timeline: keep ours then.
        if nv.timeline.as_ref().is_some_and(|t| !t.phases.is_empty()) {
            row.timeline = nv.timeline.clone();
        }
        row.updated_at = now_rfc3339();
        row.disks = nv.disks.clone();
        row.nics = nv.nics.clone();
        // NICs come and go (hotplug): the node's list is the truth.
        row.spec.nics = nv
            .nics
            .iter()
            .filter_map(|n| {
                Some(NicRequest {
                    network: n.network.parse().ok()?,
                    mac: n.mac.parse().ok(),
                    model: n.model.parse().ok(),
                })
            })
            .collect();
        tx.execute(
            "UPDATE vms SET status = ?2, status_reason = ?3, pid = ?4, seq = ?5, timeline = ?6,
             updated_at = ?7, disks = ?8, nics = ?9, spec = ?10 WHERE id = ?1",
            params![
                row.id,
                row.status as i32,
                row.status_reason,
                row.pid,
                row.seq as i64,
                row.timeline.as_ref().map(json).transpose()?,
                row.updated_at,
                json(&row.disks)?,
                json(&row.nics)?,
                json(&row.spec)?
            ],
        )?;
        tx.commit()?;
        Ok(Some((before, row)))
    }

    /// Change a VM's spec (UpdateVM) with `f`, in one transaction with reading it (so a NIC
    /// change the node reports meanwhile is kept); the vcpus and memory columns follow.
    pub fn update_spec(&self, id: &str, f: impl FnOnce(&mut VmRequest)) -> ApiResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(mut row) = tx
            .query_row(
                &format!("SELECT {VM_COLUMNS} FROM vms WHERE id = ?1"),
                params![id],
                row_to_vm,
            )
            .optional()?
        else {
            return Err(ApiError::NotFound(format!("no VM with id {id}")));
        };
        f(&mut row.spec);
        tx.execute(
            "UPDATE vms SET spec = ?2, vcpus = ?3, memory_mib = ?4, updated_at = ?5 WHERE id = ?1",
            params![
                id,
                json(&row.spec)?,
                row.spec.vcpus,
                row.spec.memory_mib,
                now_rfc3339()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The start a create asked for is done (or failed and will not be retried).
    pub fn clear_pending_start(&self, id: &str) -> ApiResult<()> {
        self.conn().execute(
            "UPDATE vms SET pending_start = 0 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// A live migration switched over: the VM is on `node` now. Its sequence starts
    /// afresh (another node numbers its news).
    pub fn move_vm(&self, id: &str, node: &str) -> ApiResult<()> {
        self.conn().execute(
            "UPDATE vms SET node = ?2, seq = 0 WHERE id = ?1",
            params![id, node],
        )?;
        Ok(())
    }

    /// Mark a VM tainted (a QMP command outside query-* went through passthrough), or clear
    /// the mark (it starts afresh). Returns whether it was tainted before.
    pub fn set_tainted(&self, id: &str, tainted: bool) -> ApiResult<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let before: bool =
            tx.query_row("SELECT tainted FROM vms WHERE id = ?1", params![id], |r| {
                r.get(0)
            })?;
        tx.execute(
            "UPDATE vms SET tainted = ?2 WHERE id = ?1",
            params![id, tainted],
        )?;
        tx.commit()?;
        Ok(before)
    }

    /// Set a status the controller decided (e.g. UNKNOWN when a node is unreachable).
    pub fn set_status(&self, id: &str, status: VmStatus, reason: &str) -> ApiResult<()> {
        self.conn().execute(
            "UPDATE vms SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, status as i32, reason, now_rfc3339()],
        )?;
        Ok(())
    }

    /// A node's VM count, and the vCPUs and memory (MiB) of its VMs that run (or are about
    /// to): one SQL aggregate, as the scheduler asks on every create.
    pub fn allocation(&self, node: &str) -> ApiResult<(u32, u32, u32)> {
        let active = [
            VmStatus::Running,
            VmStatus::Paused,
            VmStatus::Starting,
            VmStatus::Stopping,
            VmStatus::Creating,
            // A QEMU that does not answer, or on a node that is away: it may well run.
            VmStatus::Unknown,
        ]
        .map(|s| (s as i32).to_string())
        .join(",");
        let sql = format!(
            "SELECT COUNT(*),
                    COALESCE(SUM(CASE WHEN status IN ({active}) OR pending_start = 1
                        THEN vcpus ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN status IN ({active}) OR pending_start = 1
                        THEN memory_mib ELSE 0 END), 0)
             FROM vms WHERE node = ?1"
        );
        Ok(self.conn().query_row(&sql, params![node], |r| {
            Ok((
                r.get::<_, i64>(0)? as u32,
                r.get::<_, i64>(1)? as u32,
                r.get::<_, i64>(2)? as u32,
            ))
        })?)
    }

    pub fn insert_event(&self, mut ev: Event) -> ApiResult<Event> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO events (at, kind, vm_id, vm_name, status, node, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ev.at,
                ev.kind,
                ev.vm_id,
                ev.vm_name,
                ev.status as i32,
                ev.node,
                ev.message
            ],
        )?;
        ev.id = conn.last_insert_rowid();
        Ok(ev)
    }

    /// The last `n` events (oldest first), of one VM if `vm` is given.
    pub fn recent_events(&self, n: u32, vm: Option<&str>) -> ApiResult<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, kind, vm_id, vm_name, status, node, message FROM events
             WHERE ?1 IS NULL OR vm_name = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![vm, n], |r| {
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                vm_id: r.get(3)?,
                vm_name: r.get(4)?,
                status: VmStatus::from_i32(r.get(5)?),
                node: r.get(6)?,
                message: r.get(7)?,
            })
        })?;
        let mut out: Vec<Event> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(vcpus: u32, memory_mib: u32) -> VmRequest {
        crate::convert::request_from_pb(&kcore_proto::v1::VmSpec {
            vcpu: vcpus,
            memory_mb: memory_mib,
            kernel: "/k".into(),
            ..Default::default()
        })
        .expect("a request")
    }

    fn row(name: &str) -> VmRow {
        VmRow {
            id: format!("id-{name}"),
            name: name.into(),
            node: "n1".into(),
            spec: spec(1, 128),
            status: VmStatus::Creating,
            status_reason: String::new(),
            pid: 0,
            timeline: None,
            seq: 0,
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
            disks: Vec::new(),
            nics: Vec::new(),
            pending_start: true,
            tainted: false,
        }
    }

    #[test]
    fn duplicate_names_are_refused_and_stale_news_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        let s = Store::open(&path).expect("open");
        s.insert_vm(&row("a")).expect("insert");
        let pending = |s: &Store| s.get_vm("a").expect("get").expect("a").pending_start;
        assert!(pending(&s), "pending_start is stored");
        s.clear_pending_start("id-a").expect("clear");
        assert!(!pending(&s), "pending_start is cleared");
        assert!(
            !s.set_tainted("id-a", true).expect("taint"),
            "not tainted at first"
        );
        assert!(
            s.set_tainted("id-a", true).expect("taint"),
            "tainted once already"
        );
        let e = s
            .insert_vm(&VmRow {
                id: "other".into(),
                ..row("a")
            })
            .expect_err("dup");
        assert!(matches!(e, ApiError::AlreadyExists(_)), "{e}");
        let nv = VmReport {
            id: "id-a".into(),
            status: VmStatus::Running,
            pid: 42,
            seq: 10,
            ..Default::default()
        };
        let (before, after) = s.apply_node_vm(&nv).expect("apply").expect("newer");
        assert_eq!(before.status, VmStatus::Creating);
        assert_eq!(after.status, VmStatus::Running);
        // Allocation counts the running VM's resources (the vcpus and memory columns).
        let running = VmRow {
            id: "id-b".into(),
            name: "b".into(),
            spec: spec(2, 512),
            status: VmStatus::Stopped,
            pending_start: false,
            ..row("b")
        };
        s.insert_vm(&running).expect("insert b");
        assert_eq!(s.allocation("n1").expect("allocation"), (2, 1, 128));
        // A VM created to run whose start is not confirmed yet holds its room already.
        s.insert_vm(&VmRow {
            id: "id-c".into(),
            name: "c".into(),
            status: VmStatus::Stopped,
            ..row("c")
        })
        .expect("insert c");
        assert_eq!(s.allocation("n1").expect("allocation"), (3, 2, 256));
        // An update of the spec: the columns placement reads follow it.
        s.update_spec("id-c", |spec| {
            spec.vcpus = 3;
            spec.memory_mib = 512;
        })
        .expect("update");
        assert_eq!(s.allocation("n1").expect("allocation"), (3, 4, 640));
        assert_eq!(s.get_vm("c").expect("get").expect("c").spec.vcpus, 3);
        assert!(matches!(
            s.update_spec("nope", |_| {}),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(s.allocation("other").expect("allocation"), (0, 0, 0));
        let stale = VmReport {
            seq: 9,
            status: VmStatus::Stopped,
            ..nv.clone()
        };
        assert!(s.apply_node_vm(&stale).expect("apply").is_none());
        drop(s);
        // Reopen: migrations are not re-run, data is kept.
        let s = Store::open(&path).expect("reopen");
        let got = s.get_vm("a").expect("get").expect("present");
        assert_eq!(got.status, VmStatus::Running);
        assert_eq!(got.pid, 42);
        assert!(
            got.tainted && crate::convert::vm_to_pb(&got).tainted,
            "the taint is kept"
        );
        assert!(s.set_tainted("id-a", false).expect("clear"));
        assert!(!s.get_vm("a").expect("get").expect("a").tainted);
        assert_eq!(
            s.get_vm("id-a").expect("get").map(|r| r.name),
            Some("a".into())
        );
        s.insert_event(Event {
            kind: "vm.created".into(),
            vm_name: "a".into(),
            ..Default::default()
        })
        .expect("event");
        assert_eq!(s.recent_events(10, Some("a")).expect("events").len(), 1);
        assert!(s.recent_events(10, Some("b")).expect("events").is_empty());
    }

    #[test]
    fn nics_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        let mut r = row("a");
        r.spec.nics = vec![NicRequest {
            network: "default".parse().expect("name"),
            mac: Some("52:54:00:00:00:01".parse().expect("mac")),
            model: None,
        }];
        s.insert_vm(&r).expect("insert vm");
        let nv = VmReport {
            id: "id-a".into(),
            seq: 1,
            nics: vec![NicView {
                id: "net0".into(),
                network: "default".into(),
                mac: "52:54:00:00:00:01".into(),
                ip: "10.77.0.5".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        s.apply_node_vm(&nv).expect("apply");
        let got = s.get_vm("a").expect("get").expect("present");
        assert_eq!(got.nics[0].ip, "10.77.0.5");
        assert_eq!(crate::convert::vm_to_pb(&got).nics.len(), 1);
        // The node's NICs are the VM's NICs now.
        assert_eq!(
            got.macs().map(|m| m.to_string()).collect::<Vec<_>>(),
            ["52:54:00:00:00:01"]
        );
        assert_eq!(got.networks().collect::<Vec<_>>(), ["default"]);
    }
}
