//! Live migration of a running VM to a QEMU on another host, with its disks (no shared
//! storage), all over QMP:
//!
//! - destination ([`Vm::start_incoming`], [`Vm::listen_incoming`]): QEMU started with
//!   `-incoming defer`, TLS credentials loaded (`tls-creds-x509`, the peer checked by
//!   `authz-simple`), an NBD server exporting each disk writable, `migrate-incoming` on
//!   `tcp:HOST:0` (QEMU picks the port, `query-migrate` tells it);
//! - source ([`Vm::migrate_out`]): `blockdev-add` an NBD client node per disk, then
//!   `blockdev-mirror` into it (`sync=top` for an overlay of an image both hosts have,
//!   `full` otherwise), wait until every job is ready, `migrate` with `pause-before-switchover`:
//!   at `pre-switchover` (the guest is paused) the mirror jobs are completed
//!   (`block-job-cancel` of a ready job), then `migrate-continue`;
//! - destination again ([`Vm::finish_incoming`]): once `query-migrate` says completed, the
//!   exports and the NBD server go, `cont`, `announce-self` (so switches learn the MACs'
//!   new port).
//!
//! A failure on the source before the switch is rolled back there (`migrate_cancel`, jobs
//! cancelled, NBD nodes and credentials removed, `cont` if we paused it): the source keeps
//! running. What to do with the destination is the owner's call (it kills it).
//!
//! TLS credentials: QEMU's `tls-creds-x509` reads PEM files from a directory by path. The
//! files are written to `<run-dir>/migration-tls/<vm-id>-<role>/` (the directory root's,
//! 0711; the files the VM's QEMU uid's, 0400) only for the `object-add`, and removed as
//! soon as QEMU has loaded them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::VmmError;
use crate::qmp::QmpClient;
use crate::timeline::Phase;
use crate::vm::{Vm, VmState};

/// QMP ids of what a migration adds to QEMU.
const TLS_ID: &str = "kcore-mig-tls";
const AUTHZ_ID: &str = "kcore-mig-authz";
/// How often progress is polled.
const POLL: Duration = Duration::from_millis(200);

/// PEM material of one side of a migration: the cluster CA and this side's certificate.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles { .. }")
    }
}

/// What the destination listens with.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The address to listen on (this node's address as the cluster knows it).
    pub host: String,
    /// The NBD server's port.
    pub nbd_port: u16,
    pub tls: TlsFiles,
    /// The source's certificate's distinguished name as gnutls prints it (`CN=...`): the
    /// only client the NBD server and the migration listener accept.
    pub client_dn: String,
    /// The disk ids (node names) to export.
    pub disks: Vec<String>,
}

/// A disk of the source to mirror.
#[derive(Debug, Clone)]
pub struct MirrorDisk {
    /// Node name and NBD export name.
    pub id: String,
    /// Only the overlay's own clusters (the destination has the same image below).
    pub top_only: bool,
}

/// Where and how the source sends the VM.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The destination's address; also the name its certificate must carry.
    pub host: String,
    pub migration_port: u16,
    pub nbd_port: u16,
    pub tls: TlsFiles,
    pub disks: Vec<MirrorDisk>,
    /// QEMU's `downtime-limit`.
    pub max_downtime_ms: u64,
    /// Bytes per second for RAM and each disk; 0: QEMU's defaults (RAM 128 MiB/s).
    pub bandwidth: u64,
    /// The whole migration, mirror included.
    pub timeout: Duration,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPhase {
    Setup,
    DiskMirror,
    Ram,
    Switchover,
    Completed,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Setup => "setup",
            MigrationPhase::DiskMirror => "disk-mirror",
            MigrationPhase::Ram => "ram",
            MigrationPhase::Switchover => "switchover",
            MigrationPhase::Completed => "completed",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub phase: Option<MigrationPhase>,
    /// Bytes sent in this phase, and in all (for the disk phase: of the disks).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// RAM bytes the guest dirties per second (0 when unknown).
    pub dirty_rate: u64,
    /// QEMU's expected downtime, milliseconds (RAM phase).
    pub expected_downtime_ms: u64,
    /// RAM passes so far.
    pub ram_passes: u64,
    /// The final figures, with phase Completed.
    pub downtime_ms: u64,
}

/// What a finished migration measured on the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub setup_ms: u64,
    pub mirror_ms: u64,
    pub ram_ms: u64,
    /// QEMU's downtime (source paused to stream end).
    pub downtime_ms: u64,
    pub ram_bytes: u64,
    pub ram_passes: u64,
    /// When the source paused for the last pass.
    pub paused_at: Option<SystemTime>,
}

/// The owner's answer to a progress report: false means give up (it went away).
fn go_on(yes: bool) -> Result<(), VmmError> {
    if yes {
        Ok(())
    } else {
        Err(mig_err("cancelled", "the migration's owner gave up on it"))
    }
}

fn mig_err(what: &str, e: impl std::fmt::Display) -> VmmError {
    VmmError::Migration(format!("{what}: {e}"))
}

fn tls_dir(vm: &Vm, role: &str) -> PathBuf {
    let run_dir = vm
        .paths()
        .dir
        .parent()
        .and_then(|vms| vms.parent())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    run_dir
        .join("migration-tls")
        .join(format!("{}-{role}", vm.id()))
}

/// Write the PEM files QEMU's `tls-creds-x509` reads, readable by the VM's QEMU uid only,
/// `object-add` the credentials, and remove the files again whatever happened.
async fn add_tls_creds(
    vm: &Vm,
    qmp: &QmpClient,
    tls: &TlsFiles,
    server: bool,
) -> Result<(), VmmError> {
    let role = if server { "server" } else { "client" };
    let dir = tls_dir(vm, role);
    let written = write_tls_files(vm, &dir, tls, role);
    let r = match written {
        Ok(()) => qmp
            .execute(
                "object-add",
                Some(json!({
                    "qom-type": "tls-creds-x509",
                    "id": TLS_ID,
                    "dir": dir.to_string_lossy(),
                    "endpoint": role,
                    "verify-peer": true,
                })),
            )
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove migration TLS files");
    }
    r
}

fn write_tls_files(vm: &Vm, dir: &Path, tls: &TlsFiles, role: &str) -> Result<(), VmmError> {
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| VmmError::io("create", parent, e))?;
    // Traversable, not listable or writable: QEMU reads the files it is told of and can
    // plant nothing.
    for d in [parent, dir] {
        if d == dir {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(VmmError::io("create", d, e)),
            }
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| VmmError::io("chmod", d, e))?;
    }
    let uid = vm.run_as().map(|r| r.uid);
    for (name, pem) in [
        ("ca-cert.pem", &tls.ca_pem),
        (&format!("{role}-cert.pem") as &str, &tls.cert_pem),
        (&format!("{role}-key.pem") as &str, &tls.key_pem),
    ] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let mut opts = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o400);
        let mut f = opts
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| VmmError::io("create", &path, e))?;
        std::io::Write::write_all(&mut f, pem.as_bytes())
            .map_err(|e| VmmError::io("write", &path, e))?;
        if let Some(uid) = uid {
            std::os::unix::fs::fchown(&f, Some(uid), None)
                .map_err(|e| VmmError::io("chown", &path, e))?;
        }
    }
    Ok(())
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

impl Vm {
    /// Start QEMU waiting for an incoming migration (`-incoming defer`): the VM is PAUSED
    /// with that reason until [`Vm::finish_incoming`]. Allowed from STOPPED.
    pub async fn start_incoming(&self, requested_at: SystemTime) -> Result<(), VmmError> {
        let _ops = self.lock_ops().await;
        self.set_incoming(true);
        let r = self.start_locked(requested_at).await;
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
        let deadline = Instant::now() + timeout;
        loop {
            let info = qmp.execute("query-migrate", None).await?;
            match info["status"].as_str().unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => {
                    return Err(mig_err(
                        "the incoming stream failed",
                        info["error-desc"].as_str().unwrap_or("no reason given"),
                    ));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(mig_err("incoming stream not complete in time", &info));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        qmp.execute(
            "migrate-set-capabilities",
            Some(
                json!({"capabilities": [{"capability": "pause-before-switchover", "state": true}]}),
            ),
        )
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
