//! Live migration, orchestrated (docs/migration.md): the controller checks the request,
//! issues the migration's certificates from the cluster CA, has the destination prepare
//! (volumes, taps, a QEMU waiting, NBD exports), the source send (disk mirror, RAM), the
//! destination switch over, and the source clean up.
//!
//! The rule: exactly one running copy. Before the switch-over any failure leaves the source
//! running and removes the destination's VM; after it, the destination owns the VM and the
//! source's QEMU, volumes and taps are removed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kcore_types::NodeName;
use kcore_vmm::migration::TlsFiles;
use kcore_vmm::spec::Firmware;

use super::Controller;
use super::store::VmRow;
use crate::caller::Requester;
use crate::error::{ApiError, ApiResult};
use crate::model::migration::{DEFAULT_MAX_DOWNTIME_MS, DEFAULT_TIMEOUT_SECS};
use crate::model::{DiskRequest, MigrateVm, MigrationProgress, PrepareIncoming, SendVm, VmStatus};

/// The host part of a node's address (`host:port`, `[v6]:port`, with or without a scheme).
pub fn host_of(address: &str) -> ApiResult<String> {
    let a = address
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(address);
    let a = a.split('/').next().unwrap_or_default();
    let host = match a.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a),
    };
    if host.is_empty() {
        return Err(ApiError::FailedPrecondition(format!(
            "node address {address:?} has no host to migrate to"
        )));
    }
    Ok(host.to_string())
}

/// Why a VM cannot move at all (before any node is asked).
pub fn immovable(row: &VmRow) -> Option<String> {
    if let Some(DiskRequest::Existing { volume, .. }) = row
        .spec
        .disks
        .iter()
        .find(|d| matches!(d, DiskRequest::Existing { .. }))
    {
        return Some(format!(
            "it uses the existing volume {volume}, which the destination does not have"
        ));
    }
    if row.spec.firmware == Some(Firmware::Uefi) {
        return Some(
            "UEFI VMs cannot be migrated yet (their variable store is not carried)".into(),
        );
    }
    let expected = row.spec.disks.len() + usize::from(row.spec.boot.image().is_some());
    let data_disks = row.disks.iter().filter(|d| d.device != "seed").count();
    if !row.disks.is_empty() && data_disks != expected {
        return Some(format!(
            "it has {data_disks} disks and was created with {expected}: disks attached since \
             cannot be migrated yet"
        ));
    }
    None
}

impl Controller {
    /// Move a running VM to `m.to` for `by`, reporting progress; returns the last report
    /// (phase "completed"). Runs to its end once started, whoever goes away.
    pub async fn migrate_vm(
        self: &Arc<Self>,
        by: &Requester,
        pki_dir: Option<PathBuf>,
        m: MigrateVm,
        progress: &mut (dyn FnMut(MigrationProgress) + Send),
    ) -> ApiResult<MigrationProgress> {
        let started = Instant::now();
        let row = self.get_row(&m.vm)?;
        let to = NodeName::parse(&m.to).map_err(ApiError::from)?.to_string();
        if row.status != VmStatus::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {}: only a running VM can be migrated",
                row.name,
                row.status.as_str()
            )));
        }
        if to == row.node {
            return Err(ApiError::InvalidArgument(format!(
                "VM {} is already on node {to}",
                row.name
            )));
        }
        if let Some(why) = immovable(&row) {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} cannot be migrated: {why}",
                row.name
            )));
        }
        let dest = self.nodes.get(&to)?;
        {
            // The destination must take it as it would a create placed there.
            let _place = self.place_lock.lock().await;
            match self.schedule(&to, &row.spec) {
                Err(ApiError::ResourceExhausted(_) | ApiError::NotFound(_)) => {
                    self.refresh_node_facts().await;
                    self.schedule(&to, &row.spec)?;
                }
                r => {
                    r?;
                }
            }
        }
        let mut src = self.nodes.client(&row.node)?;
        let mut dst = self.nodes.client(&to)?;
        let host = host_of(&dest.address)?;
        let dir = pki_dir.ok_or_else(|| {
            ApiError::FailedPrecondition(
                "this controller has no PKI: live migration needs the cluster CA".into(),
            )
        })?;
        let timeout_secs = if m.timeout_secs == 0 {
            DEFAULT_TIMEOUT_SECS
        } else {
            m.timeout_secs
        };
        let max_downtime_ms = if m.max_downtime_ms == 0 {
            DEFAULT_MAX_DOWNTIME_MS
        } else {
            m.max_downtime_ms
        };
        let _busy = self.busy(&row.id);
        let (tag, h) = (row.id.chars().take(8).collect::<String>(), host.clone());
        let lifetime = Duration::from_secs(u64::from(timeout_secs) + 600);
        let certs = tokio::task::spawn_blocking(move || {
            crate::pki::issue_migration_certs(&dir, &tag, &h, lifetime)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        let from = row.node.clone();
        self.emit(
            "vm.migrate",
            Some(&row),
            format!("to node {to} started by {by}"),
        );
        let report = |phase: &str| MigrationProgress {
            vm: row.name.clone(),
            phase: phase.to_string(),
            from_node: from.clone(),
            to_node: to.clone(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        progress(report("setup"));
        let fail = |e: ApiError, what: &str| {
            self.emit(
                "vm.migrate",
                Some(&row),
                format!("to node {to} failed {what}: {e}; the VM runs on node {from}"),
            );
            e
        };
        let ports = dst
            .prepare_migration(&PrepareIncoming {
                id: row.id.clone(),
                name: kcore_types::VmName::parse(&row.name).map_err(ApiError::from)?,
                request: row.spec.clone(),
                tls: TlsFiles {
                    ca_pem: certs.ca_pem.clone(),
                    cert_pem: certs.server.0.clone(),
                    key_pem: certs.server.1.clone(),
                },
                listen_host: host.clone(),
                client_dn: certs.client_dn.clone(),
                timeout_secs,
            })
            .await
            .map_err(|e| fail(e, &format!("on node {to} before anything was sent")))?;
        let send = SendVm {
            id: row.id.clone(),
            host: host.clone(),
            ports,
            tls: TlsFiles {
                ca_pem: certs.ca_pem.clone(),
                cert_pem: certs.client.0.clone(),
                key_pem: certs.client.1.clone(),
            },
            max_downtime_ms,
            bandwidth_mib: m.bandwidth_mib,
            timeout_secs,
        };
        let sent = self.send(&mut src, &send, &report, progress).await;
        let (mirrored, paused) = match sent {
            Ok(t) => t,
            Err(e) => {
                // The source rolled back and runs; the destination's copy goes.
                if let Err(u) = dst.undefine(&row.id, true, false).await {
                    tracing::error!(vm = %row.name, node = %to, error = %u, "cannot remove the destination copy");
                }
                return Err(fail(e, "while sending"));
            }
        };
        // The switch-over: the destination runs the guest.
        let nv = match dst.commit_migration(&row.id, Some(paused), mirrored).await {
            Ok(nv) => nv,
            Err(e) => {
                // The destination removed its copy: the source runs the guest again.
                if let Err(r) = src.resume_migrated(&row.id).await {
                    tracing::error!(vm = %row.name, error = %r, "cannot resume the source after a failed switch-over");
                }
                let _ = dst.undefine(&row.id, true, false).await;
                return Err(fail(e, "at the switch-over"));
            }
        };
        let downtime_ms = paused.elapsed().map(|d| d.as_millis() as u64).unwrap_or(0);
        self.store.move_vm(&row.id, &to)?;
        self.apply_node_vm(&nv)?;
        // The source's leftovers: its paused QEMU, volumes and taps.
        if let Err(e) = src.undefine(&row.id, true, false).await {
            tracing::error!(vm = %row.name, node = %from, error = %e, "cannot clean up the source");
            self.emit(
                "vm.migrate",
                Some(&row),
                format!("node {from} could not remove its copy: {e} (removed when it reports it)"),
            );
        }
        let mut last = report("completed");
        last.downtime_ms = downtime_ms;
        let moved = self.get_row(&row.id)?;
        self.emit(
            "vm.migrated",
            Some(&moved),
            format!(
                "from node {from} to node {to} in {:.1} s, downtime {downtime_ms} ms, by {by}",
                last.elapsed_ms as f64 / 1000.0
            ),
        );
        progress(last.clone());
        Ok(last)
    }

    /// The source's part: pass its progress on; when the disks were mirrored and when the
    /// source paused for the last pass.
    async fn send(
        &self,
        src: &mut super::node_client::NodeClient,
        send: &SendVm,
        report: &(dyn Fn(&str) -> MigrationProgress + Send + Sync),
        progress: &mut (dyn FnMut(MigrationProgress) + Send),
    ) -> ApiResult<(Option<SystemTime>, SystemTime)> {
        use futures::StreamExt;
        let mut stream = src.migrate_out(send).await?;
        let (mut mirrored, mut paused) = (None, None);
        let mut completed = false;
        let mut watch = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next = tokio::select! {
                p = stream.next() => p,
                _ = watch.tick() => {
                    // A destination that went away cannot take over: give up now (the
                    // source cancels when the stream is dropped) rather than at the
                    // timeout.
                    if !self.nodes.get(&send_to(report)).map(|l| l.ready).unwrap_or(false) {
                        return Err(ApiError::Unavailable(format!(
                            "node {} went away during the migration",
                            send_to(report)
                        )));
                    }
                    continue;
                }
            };
            let Some(p) = next else { break };
            let p = p?;
            match p.phase.as_str() {
                "ram" if mirrored.is_none() => mirrored = Some(SystemTime::now()),
                "switchover" if paused.is_none() => paused = Some(SystemTime::now()),
                "completed" => completed = true,
                _ => {}
            }
            if p.phase == "completed" {
                continue;
            }
            let base = report(&p.phase);
            progress(MigrationProgress {
                vm: base.vm,
                from_node: base.from_node,
                to_node: base.to_node,
                elapsed_ms: base.elapsed_ms,
                ..p
            });
        }
        if !completed {
            return Err(ApiError::Unavailable(
                "the source node's migration stream ended before the migration did".into(),
            ));
        }
        Ok((mirrored, paused.unwrap_or_else(SystemTime::now)))
    }
}

/// The destination's name, as the progress reports carry it.
fn send_to(report: &(dyn Fn(&str) -> MigrationProgress + Send + Sync)) -> String {
    report("").to_node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_node_addresses() {
        assert_eq!(host_of("127.0.0.1:9091").expect("host"), "127.0.0.1");
        assert_eq!(
            host_of("https://n2.example.com:9091").expect("host"),
            "n2.example.com"
        );
        assert_eq!(host_of("[::1]:9091").expect("host"), "::1");
        assert!(host_of(":9091").is_err());
    }
}
