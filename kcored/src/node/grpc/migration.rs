//! The node's side of a live migration: prepare the incoming VM (target), send a VM
//! (source), commit the migration and resume the migrated VM. The
//! [`NodeAgent`](kcore_proto::v1::node_agent_server::NodeAgent) impl in [`super`] calls
//! these.

use kcore_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::{NodeAgentService, Stream2, is_local, requested_at, run_to_end};
use crate::caller::Caller;
use crate::convert::{request_from_pb, tls_from_pb, vmm_progress_to_pb};
use crate::error::ApiError;
use crate::node::convert as edge;

impl NodeAgentService {
    /// `PrepareMigration` (destination): define the incoming VM and listen for it.
    pub(super) async fn prepare_incoming(
        &self,
        req: Request<pb::PrepareMigrationRequest>,
    ) -> Result<Response<pb::PrepareMigrationResponse>, Status> {
        let local = is_local(&req);
        let r = req.into_inner();
        let vm =
            r.vm.ok_or_else(|| ApiError::InvalidArgument("vm is required".into()))?;
        let spec = vm
            .spec
            .ok_or_else(|| ApiError::InvalidArgument("spec is required".into()))?;
        let caller = Caller::from(vm.caller.as_ref());
        for (what, path) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if !path.is_empty() {
                self.open_host_file(what, path.clone(), caller.clone(), local)
                    .await?;
            }
        }
        let p = crate::model::PrepareIncoming {
            id: vm.id,
            name: kcore_types::VmName::parse(&vm.name).map_err(ApiError::from)?,
            request: request_from_pb(&spec)?,
            tls: tls_from_pb(r.tls.as_ref()),
            listen_host: r.listen_host,
            client_dn: r.client_dn,
            timeout_secs: r.timeout_secs,
        };
        let node = self.node.clone();
        let ports = run_to_end(async move { node.prepare_migration(p).await }).await?;
        Ok(Response::new(pb::PrepareMigrationResponse {
            migration_port: ports.migration.into(),
            nbd_port: ports.nbd.into(),
        }))
    }

    /// `MigrateNodeVM` (source): send the VM, streaming its progress.
    pub(super) async fn migrate_out(
        &self,
        req: Request<pb::MigrateNodeVmRequest>,
    ) -> Result<Response<Stream2<pb::MigrationProgress>>, Status> {
        let r = req.into_inner();
        let port = |p: u32, what: &str| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ApiError::InvalidArgument(format!("bad {what} port {p}")))
        };
        let s = crate::model::SendVm {
            ports: crate::model::IncomingPorts {
                migration: port(r.migration_port, "migration")?,
                nbd: port(r.nbd_port, "NBD")?,
            },
            tls: tls_from_pb(r.tls.as_ref()),
            id: r.id,
            host: r.host,
            max_downtime_ms: r.max_downtime_ms,
            bandwidth_mib: r.bandwidth_mib,
            timeout_secs: r.timeout_secs,
        };
        let rx = self.node.migrate_out(s)?;
        let out = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|p| vmm_progress_to_pb(&p)).map_err(Into::into));
        Ok(Response::new(Box::pin(out)))
    }

    /// `CommitMigration` (destination): the VM is here now.
    pub(super) async fn commit_incoming(
        &self,
        req: Request<pb::CommitMigrationRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let at = |us: i64| (us > 0).then(|| requested_at(us));
        let (paused, mirrored) = (at(r.source_paused_us), at(r.disks_mirrored_us));
        let node = self.node.clone();
        let nv =
            run_to_end(async move { node.commit_migration(&r.id, paused, mirrored).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    /// `ResumeMigratedVM` (destination): let the migrated guest run.
    pub(super) async fn resume_migrated(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let node = self.node.clone();
        let nv = run_to_end(async move { node.resume_migrated(&r.id).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }
}
