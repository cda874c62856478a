//! The certificates the controller issued, their revocation, and taking a node out of the
//! cluster. Revoked serials live in the store and in memory ([`Controller::revoked`]),
//! where the TLS listener's auth layer checks every request against them.

use std::sync::PoisonError;

use super::Controller;
use crate::caller::Requester;
use crate::error::{ApiError, ApiResult};
use crate::model::CertInfo;

impl Controller {
    /// Remember a certificate this controller issued (PEM).
    pub fn record_issued(&self, pem: &str) {
        match crate::pki::cert_info(pem.as_bytes()) {
            Ok(info) => {
                if let Err(e) = self.store.record_cert(&info) {
                    tracing::warn!(error = %e, "cannot record an issued certificate");
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "cannot read an issued certificate")
            }
        }
    }

    /// Load the revoked serials from the store (at start).
    pub fn load_revoked(&self) -> ApiResult<()> {
        let serials = self.store.revoked_serials()?;
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(serials);
        Ok(())
    }

    /// Revoke, for `by`, the certificates of `name` (all roles but the controller's own) or
    /// the one with `serial`. `caller` is the serial of the certificate asking, which may
    /// not revoke itself.
    pub fn revoke(
        &self,
        by: &Requester,
        name: &str,
        serial: &str,
        caller: Option<&str>,
    ) -> ApiResult<Vec<CertInfo>> {
        let serial = serial.trim().to_ascii_lowercase();
        if name.is_empty() == serial.is_empty() {
            return Err(ApiError::InvalidArgument(
                "give a certificate name or a serial (one of them)".into(),
            ));
        }
        let targets: Vec<CertInfo> = self
            .store
            .list_certs()?
            .into_iter()
            .filter(|c| c.revoked_at.is_empty())
            .filter(|c| (!name.is_empty() && c.name == name) || c.serial == serial)
            .collect();
        if targets.is_empty() {
            return Err(ApiError::NotFound(if name.is_empty() {
                format!("no valid certificate with serial {serial}")
            } else {
                format!("no valid certificate issued to {name:?}")
            }));
        }
        if let Some(c) = targets.iter().find(|c| c.role == "controller") {
            return Err(ApiError::FailedPrecondition(format!(
                "certificate {} is the controller's own: it cannot be revoked",
                c.serial
            )));
        }
        if let Some(me) = caller
            && targets.iter().any(|c| c.serial == me)
        {
            return Err(ApiError::FailedPrecondition(
                "that would revoke the certificate making this call: use another admin \
                 certificate (or the local socket)"
                    .into(),
            ));
        }
        let revoked = self.store.revoke_certs(name, None, &serial)?;
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(revoked.iter().map(|c| c.serial.clone()));
        for c in &revoked {
            tracing::info!(name = %c.name, role = %c.role, serial = %c.serial, "certificate revoked");
            self.emit(
                "cert.revoked",
                None,
                format!(
                    "revoked the {} certificate of {} ({}) by {by}",
                    c.role, c.name, c.serial
                ),
            );
        }
        Ok(revoked)
    }

    /// Take a node without VMs out of the cluster: forget it, refuse its registration from
    /// now on (until it joins again) and revoke its certificates; returns those revoked.
    pub fn remove_node(&self, by: &Requester, name: &str) -> ApiResult<Vec<CertInfo>> {
        let link = self.nodes.get(name)?;
        if link.address.starts_with("unix://") {
            return Err(ApiError::FailedPrecondition(format!(
                "node {name} is this daemon's own node: it cannot be removed"
            )));
        }
        let vms = self.store.list_vms(Some(name))?;
        if !vms.is_empty() {
            let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
            return Err(ApiError::FailedPrecondition(format!(
                "node {name} has {} VM(s) ({}): delete them first",
                vms.len(),
                names.join(", ")
            )));
        }
        self.store.set_removed(name, true)?;
        self.store.delete_node(name)?;
        self.nodes.remove(name);
        let revoked = self.store.revoke_certs(name, Some("node"), "")?;
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(revoked.iter().map(|c| c.serial.clone()));
        tracing::info!(node = name, revoked = revoked.len(), "node removed");
        self.emit_node(
            "node.removed",
            name,
            format!("removed by {by}; {} certificate(s) revoked", revoked.len()),
        );
        Ok(revoked)
    }
}
