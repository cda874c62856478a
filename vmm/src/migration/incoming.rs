//! The destination's side: QEMU waiting for the stream, the NBD exports, the switch-over.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::tls::add_tls_creds;
use super::{AUTHZ_ID, Incoming, TLS_ID, mig_err};
use crate::VmmError;
use crate::timeline::Phase;
use crate::vm::{Vm, VmState};

impl Vm {
    /// Start QEMU waiting for an incoming migration (`-incoming defer`): the VM is PAUSED
    /// with that reason until [`Vm::finish_incoming`]. Allowed from STOPPED.
    pub async fn start_incoming(&self, requested_at: SystemTime) -> Result<(), VmmError> {
        let _ops = self.lock_ops().await;
        self.set_incoming(true);
        let r = self.start_locked(requested_at, None).await;
        self.set_incoming(false);
        r
    }

    /// Load the credentials, start the NBD server with every disk exported, and listen for
    /// the migration stream. Returns the migration port.
    pub async fn listen_incoming(&self, inc: &Incoming) -> Result<u16, VmmError> {
        let qmp = self.qmp()?;
        add_tls_creds(self, &qmp, &inc.tls, true).await?;
        qmp.execute(
            "object-add",
            Some(json!({"qom-type": "authz-simple", "id": AUTHZ_ID, "identity": inc.client_dn})),
        )
        .await?;
        qmp.execute(
            "migrate-set-parameters",
            Some(json!({"tls-creds": TLS_ID, "tls-authz": AUTHZ_ID})),
        )
        .await?;
        qmp.execute(
            "nbd-server-start",
            Some(json!({
                "addr": {"type": "inet", "data": {"host": inc.host, "port": inc.nbd_port.to_string()}},
                "tls-creds": TLS_ID,
                "tls-authz": AUTHZ_ID,
            })),
        )
        .await?;
        for d in &inc.disks {
            qmp.execute(
                "block-export-add",
                Some(json!({
                    "type": "nbd", "id": format!("kcore-mig-{d}"), "node-name": d,
                    "name": d, "writable": true,
                })),
            )
            .await?;
        }
        let uri = if inc.host.contains(':') {
            format!("tcp:[{}]:0", inc.host)
        } else {
            format!("tcp:{}:0", inc.host)
        };
        qmp.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .await?;
        let info = qmp.execute("query-migrate", None).await?;
        let port = info["socket-address"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["port"].as_str())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| mig_err("no listening port in query-migrate", &info))?;
        self.record(Phase::MigrationListening, SystemTime::now());
        Ok(port)
    }

    /// Once the stream is complete: stop serving the disks, run the guest, announce its
    /// MACs. `source_paused` (from the source) goes into the timeline.
    pub async fn finish_incoming(
        &self,
        disks: &[String],
        source_paused: Option<SystemTime>,
        mirrored: Option<SystemTime>,
        timeout: Duration,
    ) -> Result<(), VmmError> {
        let _ops = self.lock_ops().await;
        let qmp = self.qmp()?;
        qmp.wait_migration(timeout).await?;
        for d in disks {
            qmp.execute(
                "block-export-del",
                Some(json!({"id": format!("kcore-mig-{d}"), "mode": "hard"})),
            )
            .await?;
        }
        qmp.execute("nbd-server-stop", None).await?;
        qmp.cont().await?;
        let now = SystemTime::now();
        if let Some(m) = mirrored {
            self.record(Phase::DisksMirrored, m);
        }
        if let Some(p) = source_paused {
            self.record(Phase::SourcePaused, p);
        }
        self.record(Phase::MigrationResumed, now);
        self.record(Phase::VcpusRunning, now);
        self.set_status(VmState::Running, "");
        self.save_timeline();
        let _ = qmp
            .execute(
                "announce-self",
                Some(json!({"initial": 50, "max": 550, "rounds": 5, "step": 100})),
            )
            .await
            .map_err(|e| tracing::warn!(vm = %self.name(), error = %e, "announce-self failed"));
        for id in [AUTHZ_ID, TLS_ID] {
            let _ = qmp.execute("object-del", Some(json!({ "id": id }))).await;
        }
        Ok(())
    }
}
