//! Typed helpers for the QMP commands the daemon uses.

use serde::Deserialize;

use super::client::QmpClient;
use super::types::QmpStatus;
use crate::VmmError;

impl QmpClient {
    /// `query-status`: QEMU's run state and whether the guest CPUs run.
    pub async fn query_status(&self) -> Result<QmpStatus, VmmError> {
        let reply = self.execute("query-status", None).await?;
        QmpStatus::deserialize(&reply).map_err(|e| {
            VmmError::QmpProtocol(format!("unexpected query-status reply {reply}: {e}"))
        })
    }

    /// `cont`: start or resume the guest CPUs.
    pub async fn cont(&self) -> Result<(), VmmError> {
        self.execute("cont", None).await.map(drop)
    }

    /// `stop`: pause the guest CPUs.
    pub async fn stop(&self) -> Result<(), VmmError> {
        self.execute("stop", None).await.map(drop)
    }

    /// `system_powerdown`: press the ACPI power button (the guest decides what to do).
    pub async fn system_powerdown(&self) -> Result<(), VmmError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// `system_reset`: hard reset of the guest.
    pub async fn system_reset(&self) -> Result<(), VmmError> {
        self.execute("system_reset", None).await.map(drop)
    }

    /// `quit`: make QEMU exit. QEMU may close the socket right after replying, or before the
    /// reply is read; a closed connection therefore counts as success here.
    pub async fn quit(&self) -> Result<(), VmmError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(VmmError::QmpClosed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
