//! VM operations of the public API: validation, placement, the store, and the node calls,
//! with a failed create undone step by step.

use std::sync::Arc;
use std::time::SystemTime;

use super::Controller;
pub use super::node_client::{Stop, VmOp};
use super::store::VmRow;
use crate::caller::Requester;
use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::model::{CreateVm, DiskRequest, VmRequest, VmStatus};

impl Controller {
    pub fn get_row(&self, name: &str) -> ApiResult<VmRow> {
        self.store
            .get_vm(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no VM named {name:?}")))
    }

    /// Create (and by default start) a VM for `by` (the node reads the kernel and initrd
    /// only if its caller may). The whole request is checked before anything is placed or
    /// made; on any later failure, everything done so far is undone.
    pub async fn create_vm(self: &Arc<Self>, by: &Requester, c: CreateVm) -> ApiResult<VmRow> {
        let requested_at = SystemTime::now();
        let CreateVm {
            name,
            request: mut spec,
            node: wanted,
            start,
            wait,
        } = c;
        // A clone goes where its template is, with its vCPUs and memory.
        let wanted = self.resolve_template(&mut spec, wanted.as_deref()).await?;
        spec.validate(None)?;
        spec.settle_machine();
        if self.store.get_vm(&name)?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "a VM named {:?} already exists",
                name.as_str()
            )));
        }
        // Existing volumes pin the VM to the node that has them.
        let template_node = matches!(spec.boot, crate::model::Boot::Template(_))
            .then(|| wanted.clone())
            .flatten();
        let wanted = self
            .node_of_volumes(wanted.as_deref().unwrap_or(""), &spec)
            .await?;
        // Placement, MACs and the row under one lock: concurrent creates see each other.
        let place_guard = self.place_lock.lock().await;
        self.assign_macs(&name, &mut spec.nics)?;
        let node = match self.schedule(&wanted, &spec) {
            // The last heartbeat may predate a network or an image made just now.
            Err(ApiError::ResourceExhausted(_) | ApiError::NotFound(_)) => {
                self.refresh_node_facts().await;
                self.schedule(&wanted, &spec)
            }
            r => r,
        }
        .map_err(|e| match &template_node {
            Some(n) => {
                let why = |w: String| {
                    format!("a clone runs on its template's node {n}, which cannot take it: {w}")
                };
                match e {
                    ApiError::ResourceExhausted(w) => ApiError::ResourceExhausted(why(w)),
                    ApiError::FailedPrecondition(w) => ApiError::FailedPrecondition(why(w)),
                    e => e,
                }
            }
            None => e,
        })?;
        let mut client = self.nodes.client(&node)?;
        let now = now_rfc3339();
        let row = VmRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            node: node.clone(),
            spec: spec.clone(),
            status: VmStatus::Creating,
            status_reason: String::new(),
            pid: 0,
            timeline: None,
            seq: 0,
            created_at: now.clone(),
            updated_at: now,
            disks: Vec::new(),
            nics: Vec::new(),
            pending_start: start,
            tainted: false,
        };
        let busy = self.busy(&row.id);
        self.store.insert_vm(&row)?;
        drop(place_guard);
        let defined = client.define(&row.id, &row.name, &spec, &by.caller).await;
        let nv = match defined {
            Ok(r) => r,
            Err(e) => {
                self.store.delete_vm(&row.id)?;
                return Err(e);
            }
        };
        self.emit("vm.created", Some(&row), format!("on node {node} by {by}"));
        self.apply_node_vm(&nv)?;
        if !start {
            return self.get_row(&row.id);
        }
        if !wait {
            let me = self.clone();
            let id = row.id.clone();
            tokio::spawn(async move {
                let _busy = me.busy(&id);
                if let Err(e) = me.start_on_node(&id, requested_at, true).await {
                    tracing::warn!(vm = %id, error = %e, "background create failed");
                }
            });
            drop(busy);
            return self.get_row(&row.id);
        }
        self.start_on_node(&row.id, requested_at, true).await?;
        drop(busy);
        self.get_row(&row.id)
    }

    /// Start on the node; if `undo_create`, a failure removes the VM from node and store.
    pub(super) async fn start_on_node(
        &self,
        id: &str,
        requested_at: SystemTime,
        undo_create: bool,
    ) -> ApiResult<()> {
        let row = self.get_row(id)?;
        let mut client = self.nodes.client(&row.node)?;
        match client.start(id, requested_at).await {
            Ok(r) => {
                self.apply_node_vm(&r)?;
                self.store.clear_pending_start(id)?;
                Ok(())
            }
            Err(e) => {
                if !undo_create {
                    self.store.clear_pending_start(id)?;
                }
                if undo_create {
                    if let Err(e) = client.undefine(id, true, false).await {
                        tracing::error!(vm = %row.name, error = %e, "cannot undo failed create");
                    }
                    self.store.delete_vm(id)?;
                    self.emit("vm.deleted", Some(&row), format!("create failed: {e}"));
                }
                Err(e)
            }
        }
    }

    /// Start a stopped (or crashed, or failed) VM for `by`; `vm.start` names them.
    pub async fn start_vm(
        self: &Arc<Self>,
        by: &Requester,
        name: &str,
        no_wait: bool,
    ) -> ApiResult<VmRow> {
        let requested_at = SystemTime::now();
        let row = self.get_row(name)?;
        if !matches!(
            row.status,
            VmStatus::Stopped | VmStatus::Crashed | VmStatus::Error
        ) {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {}: cannot start",
                row.name, row.status
            )));
        }
        {
            // Other VMs may have taken its room while it was stopped.
            let _place = self.place_lock.lock().await;
            self.check_room_to_start(&row.node, &row.spec)?;
        }
        // A fresh QEMU: what was done to the last one through QMP is gone with it.
        if row.tainted {
            self.store.set_tainted(&row.id, false)?;
        }
        if no_wait {
            let me = self.clone();
            let id = row.id.clone();
            tokio::spawn(async move {
                if let Err(e) = me.start_on_node(&id, requested_at, false).await {
                    tracing::warn!(vm = %id, error = %e, "background start failed");
                }
            });
            self.emit("vm.start", Some(&row), format!("by {by} (not waiting)"));
            return Ok(row);
        }
        self.start_on_node(&row.id, requested_at, false).await?;
        let row = self.get_row(&row.id)?;
        self.emit("vm.start", Some(&row), format!("by {by}"));
        Ok(row)
    }

    /// Stop a VM for `by` as `how` says; `vm.stop` names them.
    pub async fn stop_vm(
        self: &Arc<Self>,
        by: &Requester,
        name: &str,
        how: Stop,
        wait: bool,
    ) -> ApiResult<VmRow> {
        let row = self.get_row(name)?;
        let mut client = self.nodes.client(&row.node)?;
        let manner = match (how.force, how.timeout_secs) {
            (true, _) => " (force)".to_string(),
            (false, Some(t)) => format!(" (timeout {t} s)"),
            (false, None) => String::new(),
        };
        if !wait {
            let me = self.clone();
            let id = row.id.clone();
            tokio::spawn(async move {
                match client.stop(&id, how).await {
                    Ok(r) => {
                        let _ = me.apply_node_vm(&r);
                    }
                    Err(e) => tracing::warn!(error = %e, "background stop failed"),
                }
            });
            self.emit(
                "vm.stop",
                Some(&row),
                format!("by {by}{manner} (not waiting)"),
            );
            return Ok(row);
        }
        let nv = client.stop(&row.id, how).await?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        self.emit("vm.stop", Some(&row), format!("by {by}{manner}"));
        Ok(row)
    }

    /// Reboot, pause or resume for `by`: a node call that returns the node's view; the
    /// event (`vm.reboot`, `vm.pause`, `vm.resume`) names them.
    pub async fn simple_op(&self, by: &Requester, name: &str, op: VmOp) -> ApiResult<VmRow> {
        let row = self.get_row(name)?;
        let nv = self.nodes.client(&row.node)?.op(&row.id, op).await?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        let (kind, message) = match op {
            VmOp::Reboot => ("vm.reboot", format!("reset by {by}")),
            VmOp::Pause => ("vm.pause", format!("by {by}")),
            VmOp::Resume => ("vm.resume", format!("by {by}")),
        };
        self.emit(kind, Some(&row), message);
        Ok(row)
    }

    /// QMP passthrough: send one command to the VM's QEMU. Every command that may have
    /// reached QEMU is recorded as a `vm.qmp` event naming `caller` (the command name only:
    /// arguments can carry secrets; the node's qmp.log keeps the exchange), and one outside
    /// `query-*` marks the VM tainted until its next start.
    pub async fn exec_qmp(
        &self,
        caller: &Requester,
        vm: &str,
        command_json: String,
    ) -> ApiResult<String> {
        let row = self.get_row(vm)?;
        let command = qmp_command_name(&command_json)?;
        let mut client = self.nodes.client(&row.node)?;
        let reply = match client.exec_qmp(&row.id, command_json).await {
            Ok(r) => Ok(r),
            // Refused by the node before QEMU saw it: nothing to record.
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                ) =>
            {
                return Err(e);
            }
            Err(e) => Err(e),
        };
        let outcome = match &reply {
            Ok(r) => match serde_json::from_str::<serde_json::Value>(r) {
                Ok(v) if v.get("error").is_some() => format!(
                    "QEMU refused it: {}",
                    v["error"]["desc"].as_str().unwrap_or("error")
                ),
                _ => "ok".to_string(),
            },
            Err(e) => format!("no reply: {e}"),
        };
        let mut message = format!("QMP {command} by {caller}: {outcome}");
        if !command.starts_with("query-") && !self.store.set_tainted(&row.id, true)? {
            message.push_str("; the VM is now tainted");
        }
        tracing::info!(vm = %row.name, %caller, command, "QMP passthrough");
        self.emit("vm.qmp", Some(&row), message);
        reply
    }

    /// Delete a VM for `by` (`vm.deleted` names them).
    pub async fn delete_vm(
        &self,
        by: &Requester,
        name: &str,
        force: bool,
        keep_disks: bool,
    ) -> ApiResult<()> {
        let row = self.get_row(name)?;
        if !force
            && matches!(
                row.status,
                VmStatus::Running | VmStatus::Paused | VmStatus::Starting | VmStatus::Stopping
            )
        {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {}: stop it first, or delete with force",
                row.name, row.status
            )));
        }
        let mut client = self.nodes.client(&row.node)?;
        let _busy = self.busy(&row.id);
        match client.undefine(&row.id, force, keep_disks).await {
            Ok(()) => {}
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
        }
        self.store.delete_vm(&row.id)?;
        let how = match (force, keep_disks) {
            (false, false) => "",
            (true, false) => " (force)",
            (false, true) => " (disks kept)",
            (true, true) => " (force, disks kept)",
        };
        self.emit("vm.deleted", Some(&row), format!("by {by}{how}"));
        Ok(())
    }
}

impl Controller {
    /// The node a create must go to: `wanted`, or, when the spec attaches existing volumes
    /// and no node is named, the one node that has them all.
    async fn node_of_volumes(&self, wanted: &str, spec: &VmRequest) -> ApiResult<String> {
        let named: Vec<(&str, &str)> = spec
            .disks
            .iter()
            .filter_map(|d| match d {
                DiskRequest::Existing { volume, .. } => Some((d.pool(), volume.as_str())),
                DiskRequest::New { .. } => None,
            })
            .collect();
        if named.is_empty() || !wanted.is_empty() {
            return Ok(wanted.to_string());
        }
        let volumes = self.list_volumes("").await?;
        let mut holders: Option<Vec<String>> = None;
        for (pool, name) in &named {
            let on: Vec<String> = volumes
                .iter()
                .filter(|v| v.pool == *pool && v.name == *name)
                .map(|v| v.node.clone())
                .collect();
            if on.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "no volume {name} in pool {pool} on any ready node (kctl volume list)"
                )));
            }
            holders = Some(match holders {
                None => on,
                Some(h) => h.into_iter().filter(|n| on.contains(n)).collect(),
            });
        }
        match holders.unwrap_or_default().as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ApiError::InvalidArgument(
                "the volumes given are on different nodes".into(),
            )),
            many => Err(ApiError::InvalidArgument(format!(
                "the volumes given are on nodes {}: say which with --node",
                many.join(", ")
            ))),
        }
    }
}

/// The `execute` of a QMP command object, or why it is not one.
pub fn qmp_command_name(json: &str) -> ApiResult<String> {
    let cmd: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ApiError::InvalidArgument(format!("QMP command is not valid JSON: {e}")))?;
    cmd.get("execute")
        .and_then(|e| e.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::InvalidArgument(
                "QMP command must be an object like {\"execute\":\"query-status\"}".into(),
            )
        })
}
