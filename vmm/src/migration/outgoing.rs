//! The source's side: disk mirrors into the destination's NBD exports, the RAM stream
//! with `pause-before-switchover`, and the rollback of a failed one.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::tls::add_tls_creds;
use super::{
    MigrationPhase, MirrorDisk, Outgoing, POLL, Progress, Summary, TLS_ID, go_on, mig_err, u64_at,
};
use crate::VmmError;
use crate::qmp::QmpClient;
use crate::vm::{Vm, VmState};

impl Vm {
    /// Send this running VM to `out`: mirror the disks, then RAM and devices. `progress`
    /// hears how it goes and answers whether to go on (false: cancel). On success
    /// the source QEMU is paused for good (`postmigrate`): the owner removes it once the
    /// destination runs, or resumes it ([`Vm::resume_after_migration`]) if that fails. On
    /// failure everything is rolled back and the guest runs here as before.
    pub async fn migrate_out(
        &self,
        out: &Outgoing,
        progress: &mut (dyn FnMut(Progress) -> bool + Send),
    ) -> Result<Summary, VmmError> {
        let _ops = self.lock_ops().await;
        if self.status().state != VmState::Running {
            return Err(self.wrong_state("migrate (only a running VM moves)"));
        }
        let qmp = self.qmp()?;
        let r = self.migrate_steps(&qmp, out, progress).await;
        if let Err(e) = &r {
            tracing::warn!(vm = %self.name(), error = %e, "migration failed: rolling back");
            rollback(&qmp, &out.disks).await;
        }
        r
    }

    async fn migrate_steps(
        &self,
        qmp: &QmpClient,
        out: &Outgoing,
        progress: &mut (dyn FnMut(Progress) -> bool + Send),
    ) -> Result<Summary, VmmError> {
        let started = Instant::now();
        let deadline = started + out.timeout;
        let mut sum = Summary::default();
        go_on(progress(Progress {
            phase: Some(MigrationPhase::Setup),
            ..Progress::default()
        }))?;
        add_tls_creds(self, qmp, &out.tls, false).await?;
        for d in &out.disks {
            qmp.execute(
                "blockdev-add",
                Some(json!({
                    "driver": "nbd", "node-name": format!("kcore-mig-{}", d.id),
                    "server": {"type": "inet", "host": out.host, "port": out.nbd_port.to_string()},
                    "export": d.id, "tls-creds": TLS_ID, "tls-hostname": out.host,
                })),
            )
            .await?;
        }
        sum.setup_ms = started.elapsed().as_millis() as u64;
        let mirror_start = Instant::now();
        for d in &out.disks {
            let mut args = json!({
                "job-id": format!("kcore-mig-{}", d.id), "device": d.id,
                "target": format!("kcore-mig-{}", d.id),
                "sync": if d.top_only { "top" } else { "full" },
                "auto-dismiss": false,
            });
            if out.bandwidth > 0 {
                args["speed"] = json!(out.bandwidth);
            }
            qmp.execute("blockdev-mirror", Some(args)).await?;
        }
        // Every job ready: source and destination disks in step from now on.
        loop {
            let jobs = qmp.execute("query-block-jobs", None).await?;
            let jobs = jobs.as_array().cloned().unwrap_or_default();
            let ours: Vec<&Value> = jobs
                .iter()
                .filter(|j| {
                    j["device"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("kcore-mig-"))
                })
                .collect();
            if let Some(bad) = ours.iter().find(|j| !j["error"].is_null()) {
                return Err(mig_err("disk mirror failed", &bad["error"]));
            }
            if ours.len() < out.disks.len() {
                return Err(mig_err(
                    "disk mirror ended early",
                    Value::Array(jobs.clone()),
                ));
            }
            go_on(progress(Progress {
                phase: Some(MigrationPhase::DiskMirror),
                bytes_done: ours.iter().map(|j| u64_at(j, &["offset"])).sum(),
                bytes_total: ours.iter().map(|j| u64_at(j, &["len"])).sum(),
                ..Progress::default()
            }))?;
            if ours.iter().all(|j| j["ready"].as_bool() == Some(true)) {
                break;
            }
            if Instant::now() > deadline {
                return Err(mig_err("timed out", "the disks were still being mirrored"));
            }
            tokio::time::sleep(POLL).await;
        }
        sum.mirror_ms = mirror_start.elapsed().as_millis() as u64;
        let ram_start = Instant::now();
        qmp.set_migration_capability("pause-before-switchover", true)
            .await?;
        let mut params = json!({
            "tls-creds": TLS_ID, "tls-hostname": out.host,
            "downtime-limit": out.max_downtime_ms,
        });
        if out.bandwidth > 0 {
            params["max-bandwidth"] = json!(out.bandwidth);
        }
        qmp.execute("migrate-set-parameters", Some(params)).await?;
        let uri = if out.host.contains(':') {
            format!("tcp:[{}]:{}", out.host, out.migration_port)
        } else {
            format!("tcp:{}:{}", out.host, out.migration_port)
        };
        qmp.execute("migrate", Some(json!({ "uri": uri }))).await?;
        let info = self
            .poll_migration(qmp, deadline, &["pre-switchover"], progress)
            .await?;
        sum.paused_at = Some(SystemTime::now());
        sum.ram_passes = u64_at(&info, &["ram", "dirty-sync-count"]);
        go_on(progress(Progress {
            phase: Some(MigrationPhase::Switchover),
            ram_passes: sum.ram_passes,
            ..Progress::default()
        }))?;
        // The guest is paused: complete the mirrors (nothing writes any more), then let
        // the last RAM pass and the device state go.
        for d in &out.disks {
            qmp.execute(
                "block-job-cancel",
                Some(json!({"device": format!("kcore-mig-{}", d.id)})),
            )
            .await?;
        }
        wait_jobs_concluded(qmp, &out.disks, deadline).await?;
        for d in &out.disks {
            qmp.execute(
                "blockdev-del",
                Some(json!({"node-name": format!("kcore-mig-{}", d.id)})),
            )
            .await?;
        }
        qmp.execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
            .await?;
        let info = self
            .poll_migration(qmp, deadline, &["completed"], progress)
            .await?;
        sum.ram_ms = ram_start.elapsed().as_millis() as u64;
        sum.downtime_ms = u64_at(&info, &["downtime"]);
        sum.ram_bytes = u64_at(&info, &["ram", "transferred"]);
        sum.ram_passes = u64_at(&info, &["ram", "dirty-sync-count"]);
        let _ = qmp
            .execute("object-del", Some(json!({ "id": TLS_ID })))
            .await;
        let _ = progress(Progress {
            phase: Some(MigrationPhase::Completed),
            bytes_done: sum.ram_bytes,
            bytes_total: sum.ram_bytes,
            ram_passes: sum.ram_passes,
            downtime_ms: sum.downtime_ms,
            ..Progress::default()
        });
        self.set_status(
            VmState::Paused,
            "migrated away: waiting for the destination",
        );
        Ok(sum)
    }

    /// Poll `query-migrate` until its status is one of `until`; progress on the way.
    async fn poll_migration(
        &self,
        qmp: &QmpClient,
        deadline: Instant,
        until: &[&str],
        progress: &mut (dyn FnMut(Progress) -> bool + Send),
    ) -> Result<Value, VmmError> {
        loop {
            let info = qmp.execute("query-migrate", None).await?;
            let status = info["status"].as_str().unwrap_or("").to_string();
            if until.contains(&status.as_str()) {
                return Ok(info);
            }
            if matches!(status.as_str(), "failed" | "cancelled" | "") {
                return Err(mig_err(
                    "the migration stream failed",
                    info["error-desc"].as_str().unwrap_or(&status),
                ));
            }
            let page = u64_at(&info, &["ram", "page-size"]).max(1);
            go_on(progress(Progress {
                phase: Some(MigrationPhase::Ram),
                bytes_done: u64_at(&info, &["ram", "transferred"]),
                bytes_total: u64_at(&info, &["ram", "total"]),
                dirty_rate: u64_at(&info, &["ram", "dirty-pages-rate"]) * page,
                expected_downtime_ms: u64_at(&info, &["expected-downtime"]),
                ram_passes: u64_at(&info, &["ram", "dirty-sync-count"]),
                ..Progress::default()
            }))?;
            if Instant::now() > deadline {
                return Err(mig_err(
                    "timed out",
                    format!("RAM still being copied ({status})"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a daemon restart: a migration this QEMU was still sending (the daemon that
    /// drove it is gone, so it cannot switch over) is cancelled and the guest runs here
    /// again. A completed one (the guest may run on the destination) is left paused for
    /// the controller to settle. Returns whether it rolled one back.
    pub async fn abandon_outgoing(&self) -> Result<bool, VmmError> {
        let _ops = self.lock_ops().await;
        let qmp = self.qmp()?;
        let info = qmp.execute("query-migrate", None).await?;
        let status = info["status"].as_str().unwrap_or("");
        let jobs = qmp.execute("query-block-jobs", None).await?;
        let mirroring = jobs.as_array().is_some_and(|j| {
            j.iter().any(|j| {
                j["device"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("kcore-mig-"))
            })
        });
        let sending = matches!(
            status,
            "setup" | "active" | "pre-switchover" | "device" | "cancelling" | "wait-unplug"
        );
        if !sending && !mirroring {
            return Ok(false);
        }
        let disks: Vec<MirrorDisk> = self
            .spec()
            .disks
            .iter()
            .map(|d| MirrorDisk {
                id: d.id.clone(),
                top_only: d.backing.is_some(),
            })
            .collect();
        rollback(&qmp, &disks).await;
        if qmp.query_status().await?.running {
            self.set_status(VmState::Running, "");
        }
        Ok(true)
    }

    /// After a migration that completed on the source, when the destination could not take
    /// over: run the guest here again.
    pub async fn resume_after_migration(&self) -> Result<(), VmmError> {
        let _ops = self.lock_ops().await;
        let qmp = self.qmp()?;
        let status = qmp.query_status().await?;
        if !status.running {
            qmp.cont().await?;
        }
        self.set_status(VmState::Running, "");
        Ok(())
    }
}

/// Wait until every mirror job has concluded (and check it ended well), then dismiss it.
async fn wait_jobs_concluded(
    qmp: &QmpClient,
    disks: &[MirrorDisk],
    deadline: Instant,
) -> Result<(), VmmError> {
    loop {
        let jobs = qmp.execute("query-block-jobs", None).await?;
        let jobs = jobs.as_array().cloned().unwrap_or_default();
        let mut pending = false;
        for d in disks {
            let id = format!("kcore-mig-{}", d.id);
            let Some(j) = jobs.iter().find(|j| j["device"].as_str() == Some(&id)) else {
                continue;
            };
            if !j["error"].is_null() {
                return Err(mig_err("disk mirror failed", &j["error"]));
            }
            if j["status"].as_str() == Some("concluded") {
                qmp.execute("job-dismiss", Some(json!({ "id": id })))
                    .await?;
            } else {
                pending = true;
            }
        }
        if !pending {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(mig_err("timed out", "completing the disk mirrors"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Undo what a failed migration left in the source QEMU, best effort, and run the guest
/// again if the migration paused it.
async fn rollback(qmp: &QmpClient, disks: &[MirrorDisk]) {
    let _ = qmp.execute("migrate_cancel", None).await;
    // A cancelled migration that was paused before the switch-over needs its go-ahead
    // to finish cancelling.
    let _ = qmp
        .execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
        .await;
    for d in disks {
        let id = format!("kcore-mig-{}", d.id);
        let _ = qmp
            .execute(
                "block-job-cancel",
                Some(json!({"device": id, "force": true})),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = qmp
            .execute("query-block-jobs", None)
            .await
            .ok()
            .and_then(|j| j.as_array().cloned())
            .unwrap_or_default();
        let ours: Vec<String> = jobs
            .iter()
            .filter_map(|j| j["device"].as_str())
            .filter(|d| d.starts_with("kcore-mig-"))
            .map(String::from)
            .collect();
        for j in &jobs {
            if let Some(id) = j["device"].as_str().filter(|d| d.starts_with("kcore-mig-"))
                && j["status"].as_str() == Some("concluded")
            {
                let _ = qmp.execute("job-dismiss", Some(json!({ "id": id }))).await;
            }
        }
        if ours.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for d in disks {
        let _ = qmp
            .execute(
                "blockdev-del",
                Some(json!({"node-name": format!("kcore-mig-{}", d.id)})),
            )
            .await;
    }
    // The stream may take a moment to wind down before the guest may run again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = qmp
            .execute("query-migrate", None)
            .await
            .ok()
            .and_then(|i| i["status"].as_str().map(String::from))
            .unwrap_or_default();
        if !matches!(status.as_str(), "cancelling" | "pre-switchover" | "device")
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(st) = qmp.query_status().await
        && !st.running
        && let Err(e) = qmp.cont().await
    {
        tracing::error!(error = %e, "cannot resume the guest after a failed migration");
    }
    let _ = qmp
        .execute("object-del", Some(json!({ "id": TLS_ID })))
        .await;
}
