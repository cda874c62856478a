//! QMP commands of migration to and from file descriptors: how a memory snapshot is saved and loaded
//! (templates), and the building blocks of a live migration.
//!
//! QEMU 7.2 has no `file:` migration URI, and `exec:` needs a shell, which the seccomp
//! sandbox (`spawn=deny`) forbids. So the daemon opens the file (or socket) itself and
//! hands QEMU the descriptor over QMP (`getfd`, SCM_RIGHTS); the URI is then `fd:NAME`.
//! QEMU closes its copy when the migration ends.
//!
//! `x-ignore-shared` makes QEMU skip RAM blocks that live in a shared file
//! (`memory-backend-file,share=on`): the stream then holds the device state alone, and a
//! QEMU that maps the same file (privately, copy-on-write) and loads the stream with the
//! same capability continues the guest. The RAM blocks' ids must match on both sides.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::QmpClient;
use crate::VmmError;

/// How long a migration may take before it is given up (a snapshot of a large guest to a
/// slow disk can take minutes).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

impl QmpClient {
    /// `migrate-set-capabilities` for one capability.
    pub async fn set_migration_capability(
        &self,
        capability: &str,
        state: bool,
    ) -> Result<(), VmmError> {
        self.execute(
            "migrate-set-capabilities",
            Some(json!({ "capabilities": [{ "capability": capability, "state": state }] })),
        )
        .await
        .map(drop)
    }

    /// Hand QEMU `fd` under `name` (`getfd`), for an `fd:NAME` URI.
    pub async fn pass_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<(), VmmError> {
        self.execute_with_fd("getfd", Some(json!({ "fdname": name })), fd)
            .await
            .map(drop)
    }

    /// Send the VM's state (RAM unless `x-ignore-shared` skips it, and devices) into `fd`
    /// and wait for the end. The guest should be paused: it stays so (`postmigrate`; `cont`
    /// runs it again).
    pub async fn migrate_to_fd(&self, fd: BorrowedFd<'_>) -> Result<(), VmmError> {
        self.pass_fd("kcore-migrate-out", fd).await?;
        self.execute("migrate", Some(json!({ "uri": "fd:kcore-migrate-out" })))
            .await?;
        self.wait_migration(MIGRATION_TIMEOUT).await
    }

    /// Load a migration stream from `fd` into a QEMU started with `-incoming defer`, and
    /// wait for the end. The guest is then paused (QEMU ran with `-S`).
    pub async fn migrate_from_fd(&self, fd: BorrowedFd<'_>) -> Result<(), VmmError> {
        self.pass_fd("kcore-migrate-in", fd).await?;
        self.execute(
            "migrate-incoming",
            Some(json!({ "uri": "fd:kcore-migrate-in" })),
        )
        .await?;
        self.wait_migration(MIGRATION_TIMEOUT).await
    }

    /// Poll `query-migrate` until the migration completed (Ok) or failed (its reason).
    pub async fn wait_migration(&self, timeout: Duration) -> Result<(), VmmError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let r = self.execute("query-migrate", None).await?;
            match migration_outcome(&r) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
            if start.elapsed() > timeout {
                let _ = self.execute("migrate_cancel", None).await;
                return Err(VmmError::Migration(format!(
                    "not finished after {timeout:?} (status {})",
                    r.get("status").and_then(Value::as_str).unwrap_or("none")
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// What a `query-migrate` reply says: done, failed (with QEMU's reason), or not yet.
pub fn migration_outcome(reply: &Value) -> Option<Result<(), VmmError>> {
    match reply.get("status").and_then(Value::as_str) {
        Some("completed") => Some(Ok(())),
        Some(s @ ("failed" | "cancelled")) => Some(Err(VmmError::Migration(
            reply
                .get("error-desc")
                .and_then(Value::as_str)
                .map_or_else(|| s.to_string(), str::to_string),
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_migrate_replies_are_read() {
        assert!(matches!(
            migration_outcome(&json!({"status": "completed", "total-time": 5})),
            Some(Ok(()))
        ));
        let e = migration_outcome(&json!({"status": "failed", "error-desc": "Unknown ramblock"}));
        assert!(
            matches!(e, Some(Err(VmmError::Migration(ref m))) if m == "Unknown ramblock"),
            "{e:?}"
        );
        assert!(migration_outcome(&json!({"status": "active"})).is_none());
        assert!(migration_outcome(&json!({})).is_none());
    }
}
