//! The store's networks: each one's definition, as the store's own JSON ([`NetworkDef`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, json};
use crate::error::{ApiError, ApiResult};
use crate::model::NetworkDef;

/// Migration 13: each network's definition from the proto's JSON (`pb::Network`) to the
/// store's schema. A row that does not read as either is left as it is (and reported
/// when it is read).
pub(super) fn migrate_networks(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT name, def FROM networks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, def) in rows {
        let Some(new) = crate::convert::network_def_from_stored_proto_json(&def) else {
            tracing::warn!(network = %name, "a network in the store that does not read: left as it is");
            continue;
        };
        let text = serde_json::to_string(&new)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.execute(
            "UPDATE networks SET def = ?2 WHERE name = ?1",
            params![name, text],
        )?;
    }
    Ok(())
}

fn parse(name: &str, def: &str) -> ApiResult<NetworkDef> {
    serde_json::from_str(def)
        .map_err(|e| ApiError::Internal(format!("network {name} in the store: {e}")))
}

impl Store {
    pub fn insert_network(&self, n: &NetworkDef) -> ApiResult<()> {
        let r = self.conn().execute(
            "INSERT INTO networks (name, def, created_at) VALUES (?1, ?2, ?3)",
            params![n.name, json(n)?, n.created_at],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::AlreadyExists(format!(
                    "a network named {:?} already exists",
                    n.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get_network(&self, name: &str) -> ApiResult<Option<NetworkDef>> {
        let def: Option<String> = self
            .conn()
            .query_row(
                "SELECT def FROM networks WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        def.map(|d| parse(name, &d)).transpose()
    }

    pub fn list_networks(&self) -> ApiResult<Vec<NetworkDef>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name, def FROM networks ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter().map(|(name, d)| parse(name, d)).collect()
    }

    pub fn delete_network(&self, name: &str) -> ApiResult<()> {
        self.conn()
            .execute("DELETE FROM networks WHERE name = ?1", params![name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kcore_proto::v1 as pb;

    use super::*;
    use crate::model::NetworkMode;

    #[test]
    fn networks_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("c.db")).expect("open");
        let mut net =
            NetworkDef::new("default", NetworkMode::Nat, "10.77.0.0/24", "", "").expect("valid");
        net.created_at = "2026-11-29T00:00:00.000Z".into();
        s.insert_network(&net).expect("insert");
        let e = s.insert_network(&net).expect_err("dup");
        assert!(matches!(e, ApiError::AlreadyExists(_)), "{e}");
        assert_eq!(s.get_network("default").expect("get"), Some(net.clone()));
        assert_eq!(s.list_networks().expect("list"), vec![net]);
        s.delete_network("default").expect("delete");
        assert_eq!(s.get_network("default").expect("get"), None);
    }

    #[test]
    fn networks_stored_as_proto_json_are_migrated() {
        // A store at schema 12 with a network as versions before 13 wrote it.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        let c = Connection::open(&path).expect("open");
        for (i, m) in super::super::MIGRATIONS[..12].iter().enumerate() {
            c.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .expect("migrate");
        }
        let old = pb::Network {
            name: "lan".into(),
            mode: pb::NetworkMode::Bridge as i32,
            bridge: "br0".into(),
            uplink: "eth1".into(),
            created_at: "then".into(),
            ..Default::default()
        };
        c.execute(
            "INSERT INTO networks (name, def, created_at) VALUES ('lan', ?1, 'then')",
            params![serde_json::to_string(&old).expect("json")],
        )
        .expect("row");
        drop(c);
        let s = Store::open(&path).expect("open and migrate");
        let got = s.get_network("lan").expect("read").expect("kept");
        assert_eq!(got.mode, NetworkMode::Bridge);
        assert_eq!(got.bridge, "br0");
        assert_eq!(got.uplink.as_deref(), Some("eth1"));
        assert_eq!(got.created_at, "then");
    }
}
