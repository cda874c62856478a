//! The store's cluster tables: registered nodes, cordons, their last heartbeats, join
//! tokens and the certificates the controller issued.

use rusqlite::{OptionalExtension, params};

use super::{Store, TokenRefusal, json};
use crate::convert::now_rfc3339;
use crate::error::ApiResult;
use crate::model::{CertInfo, NodeFacts};

impl Store {
    /// Remember that `name` was taken out of the cluster (or, `removed` false, that it
    /// joined again).
    pub fn set_removed(&self, name: &str, removed: bool) -> ApiResult<()> {
        if removed {
            self.conn().execute(
                "INSERT OR REPLACE INTO removed_nodes (name, removed_at) VALUES (?1, ?2)",
                params![name, now_rfc3339()],
            )?;
        } else {
            self.conn()
                .execute("DELETE FROM removed_nodes WHERE name = ?1", params![name])?;
        }
        Ok(())
    }

    pub fn is_removed(&self, name: &str) -> ApiResult<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM removed_nodes WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Remember an issued certificate (again: nothing changes).
    pub fn record_cert(&self, c: &CertInfo) -> ApiResult<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO certificates (serial, name, role, not_after, issued_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.serial, c.name, c.role, c.not_after, c.issued_at],
        )?;
        Ok(())
    }

    pub fn list_certs(&self) -> ApiResult<Vec<CertInfo>> {
        self.certs_where("1", params![])
    }

    fn certs_where(&self, cond: &str, p: impl rusqlite::Params) -> ApiResult<Vec<CertInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT serial, name, role, not_after, issued_at, COALESCE(revoked_at, '')
             FROM certificates WHERE {cond} ORDER BY issued_at, serial"
        ))?;
        let rows = stmt.query_map(p, |r| {
            Ok(CertInfo {
                serial: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                not_after: r.get(3)?,
                issued_at: r.get(4)?,
                revoked_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revoke the valid certificates of `name` (with `role`, when given) or with `serial`;
    /// returns those revoked now.
    pub fn revoke_certs(
        &self,
        name: &str,
        role: Option<&str>,
        serial: &str,
    ) -> ApiResult<Vec<CertInfo>> {
        let now = now_rfc3339();
        let cond = "revoked_at IS NULL AND ((?1 <> '' AND name = ?1 AND (?2 IS NULL OR role = ?2))
                    OR (?3 <> '' AND serial = ?3))";
        let hit = self.certs_where(cond, params![name, role, serial])?;
        self.conn().execute(
            &format!("UPDATE certificates SET revoked_at = ?4 WHERE {cond}"),
            params![name, role, serial, now],
        )?;
        Ok(hit
            .into_iter()
            .map(|c| CertInfo {
                revoked_at: now.clone(),
                ..c
            })
            .collect())
    }

    /// The serials of revoked certificates.
    pub fn revoked_serials(&self) -> ApiResult<Vec<String>> {
        Ok(self
            .certs_where("revoked_at IS NOT NULL", params![])?
            .into_iter()
            .map(|c| c.serial)
            .collect())
    }

    /// Forget a registered node (its cordon and last heartbeat too).
    pub fn delete_node(&self, name: &str) -> ApiResult<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM nodes WHERE name = ?1", params![name])?;
        conn.execute("DELETE FROM cordoned_nodes WHERE name = ?1", params![name])?;
        conn.execute("DELETE FROM node_facts WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Keep a node's last heartbeat (its VM list left out) and when it came.
    pub fn save_node_facts(&self, name: &str, facts: &NodeFacts, at: &str) -> ApiResult<()> {
        // Every heartbeat: a cached statement, not parsed and compiled again each time (less
        // work, and less of SQLite's code in the idle daemon's memory).
        self.conn()
            .prepare_cached(
                "INSERT INTO node_facts (name, heartbeat, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET heartbeat = ?2, at = ?3",
            )?
            .execute(params![name, json(&facts)?, at])?;
        Ok(())
    }

    /// A node's last heartbeat and when it came, if it ever sent one.
    pub fn node_facts(&self, name: &str) -> ApiResult<Option<(NodeFacts, String)>> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT heartbeat, at FROM node_facts WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(hb, at)| serde_json::from_str(&hb).ok().map(|hb| (hb, at))))
    }

    /// Cordon (true) or uncordon (false) a node.
    pub fn set_cordoned(&self, node: &str, cordoned: bool) -> ApiResult<()> {
        let conn = self.conn();
        if cordoned {
            conn.execute(
                "INSERT OR IGNORE INTO cordoned_nodes (name) VALUES (?1)",
                params![node],
            )?;
        } else {
            conn.execute("DELETE FROM cordoned_nodes WHERE name = ?1", params![node])?;
        }
        Ok(())
    }

    pub fn is_cordoned(&self, node: &str) -> ApiResult<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM cordoned_nodes WHERE name = ?1",
                params![node],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Append an event; returns it with its id.
    /// Remember (or update) where a registered node listens.
    pub fn upsert_node(&self, name: &str, address: &str) -> ApiResult<()> {
        self.conn().execute(
            "INSERT INTO nodes (name, address, registered_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET address = excluded.address,
                 registered_at = excluded.registered_at",
            params![name, address, now_rfc3339()],
        )?;
        Ok(())
    }

    /// The registered nodes: (name, address).
    pub fn list_nodes(&self) -> ApiResult<Vec<(String, String)>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT name, address FROM nodes ORDER BY name")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Store a new join token by its SHA-256 (hex), valid until `expires_at` (unix seconds).
    pub fn insert_join_token(&self, sha256: &str, expires_at: i64) -> ApiResult<()> {
        let conn = self.conn();
        // Forget tokens that expired a day ago.
        conn.execute(
            "DELETE FROM join_tokens WHERE expires_at < ?1",
            params![expires_at.min(chrono::Utc::now().timestamp()) - 86400],
        )?;
        conn.execute(
            "INSERT INTO join_tokens (sha256, expires_at, created_at) VALUES (?1, ?2, ?3)",
            params![sha256, expires_at, now_rfc3339()],
        )?;
        Ok(())
    }

    /// Use up the join token with this SHA-256 for `node` if it is unused and not expired
    /// at `now` (unix seconds).
    pub fn redeem_join_token(
        &self,
        sha256: &str,
        node: &str,
        now: i64,
    ) -> ApiResult<Result<(), TokenRefusal>> {
        let conn = self.conn();
        let row: Option<(i64, Option<String>)> = conn
            .query_row(
                "SELECT expires_at, used_at FROM join_tokens WHERE sha256 = ?1",
                params![sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(Err(TokenRefusal::Unknown)),
            Some((_, Some(_))) => Ok(Err(TokenRefusal::Used)),
            Some((exp, None)) if exp < now => Ok(Err(TokenRefusal::Expired)),
            Some(_) => {
                conn.execute(
                    "UPDATE join_tokens SET used_at = ?2, used_by = ?3 WHERE sha256 = ?1",
                    params![sha256, now_rfc3339(), node],
                )?;
                Ok(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_recorded_and_revoked_by_name_or_serial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        let cert = |serial: &str, name: &str, role: &str| CertInfo {
            serial: serial.into(),
            name: name.into(),
            role: role.into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            issued_at: now_rfc3339(),
            revoked_at: String::new(),
        };
        s.record_cert(&cert("0a", "alice", "viewer")).expect("rec");
        s.record_cert(&cert("0b", "alice", "viewer")).expect("rec");
        s.record_cert(&cert("0c", "n1", "node")).expect("rec");
        s.record_cert(&cert("0c", "n1", "node"))
            .expect("again is a no-op");
        assert_eq!(s.list_certs().expect("list").len(), 3);
        let r = s.revoke_certs("alice", None, "").expect("revoke");
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|c| !c.revoked_at.is_empty()));
        assert!(s.revoke_certs("alice", None, "").expect("again").is_empty());
        assert!(
            s.revoke_certs("n1", Some("admin"), "")
                .expect("role")
                .is_empty()
        );
        assert_eq!(s.revoke_certs("", None, "0c").expect("serial").len(), 1);
        let mut revoked = s.revoked_serials().expect("serials");
        revoked.sort();
        assert_eq!(revoked, ["0a", "0b", "0c"]);
    }

    #[test]
    fn a_nodes_last_facts_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        assert!(s.node_facts("n1").expect("read").is_none());
        let hb = NodeFacts {
            info: Some(crate::model::NodeInfo {
                name: "n1".into(),
                cpus: 8,
                ..Default::default()
            }),
            networks: vec!["lan".into()],
            ..Default::default()
        };
        s.save_node_facts("n1", &hb, "2026-11-28T10:00:00.000Z")
            .expect("save");
        s.save_node_facts("n1", &hb, "2026-11-28T10:00:02.000Z")
            .expect("again");
        let (got, at) = s.node_facts("n1").expect("read").expect("some");
        assert_eq!(at, "2026-11-28T10:00:02.000Z");
        assert_eq!(got.info.map(|i| i.cpus), Some(8));
        assert_eq!(got.networks, ["lan"]);
        s.delete_node("n1").expect("delete");
        assert!(s.node_facts("n1").expect("read").is_none());
        assert!(!s.is_removed("n1").expect("removed?"));
        s.set_removed("n1", true).expect("mark");
        s.set_removed("n1", true).expect("again");
        assert!(s.is_removed("n1").expect("removed?"));
        s.set_removed("n1", false).expect("unmark");
        assert!(!s.is_removed("n1").expect("removed?"));
    }

    #[test]
    fn facts_saved_by_the_previous_version_still_read() {
        // Before the domain model the row held the heartbeat message (proto JSON).
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        let old = kcore_proto::v1::NodeHeartbeat {
            info: Some(kcore_proto::v1::NodeInfo {
                name: "n1".into(),
                cpus: 4,
                accel: "tcg".into(),
                ..Default::default()
            }),
            pools: vec![kcore_proto::v1::Pool {
                name: "default".into(),
                r#type: "dir".into(),
                total_bytes: 10 << 30,
                free_bytes: 3 << 30,
                ..Default::default()
            }],
            images: vec!["cirros".into()],
            seq: 3,
            ..Default::default()
        };
        s.conn()
            .execute(
                "INSERT INTO node_facts (name, heartbeat, at) VALUES ('n1', ?1, 'then')",
                params![serde_json::to_string(&old).expect("json")],
            )
            .expect("insert");
        let (got, _) = s.node_facts("n1").expect("read").expect("some");
        assert_eq!(got.info.map(|i| (i.cpus, i.accel)), Some((4, "tcg".into())));
        assert_eq!(got.pools.len(), 1);
        assert_eq!(got.pools[0].kind, "dir");
        assert_eq!(got.pools[0].free_bytes, 3 << 30);
        assert_eq!(got.images, ["cirros"]);
    }

    #[test]
    fn join_tokens_are_single_use_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        s.insert_join_token("aa", 100).expect("insert");
        s.insert_join_token("bb", 100).expect("insert");
        assert_eq!(
            s.redeem_join_token("cc", "n1", 50).expect("redeem"),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(s.redeem_join_token("aa", "n1", 50).expect("redeem"), Ok(()));
        assert_eq!(
            s.redeem_join_token("aa", "n2", 50).expect("redeem"),
            Err(TokenRefusal::Used)
        );
        assert_eq!(
            s.redeem_join_token("bb", "n2", 101).expect("redeem"),
            Err(TokenRefusal::Expired)
        );
    }
}
