//! The controller's streaming handlers: a migration's progress, the event stream, a VM's
//! console (relayed to its node) and an image import's progress. The
//! [`KcoreService`](kcore_proto::v1::kcore_service_server::KcoreService) impl in
//! [`super`] calls these.

use kcore_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{KcoreApi, Stream2};
use crate::caller::Requester;
use crate::controller::storage::ImportRequest;
use crate::convert::{event_to_pb, migrate_from_pb, migration_progress_to_pb, progress_to_pb};
use crate::error::ApiError;
use kcore_types::ImageName;

impl KcoreApi {
    /// `MigrateVM`: the migration runs on its own task; its progress is streamed.
    pub(super) async fn migration_stream(
        &self,
        req: Request<pb::MigrateVmRequest>,
    ) -> Result<Response<Stream2<pb::MigrationProgress>>, Status> {
        let by = Requester::of(&req);
        let m = migrate_from_pb(&req.into_inner());
        let (ctl, pki) = (self.ctl.clone(), self.pki_dir.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        // The migration runs to its end whether the client stays or not.
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let mut report = move |p: crate::model::MigrationProgress| {
                let _ = progress_tx.try_send(Ok(migration_progress_to_pb(&p)));
            };
            if let Err(e) = ctl.migrate_vm(&by, pki, m, &mut report).await {
                let status: Status = e.into();
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// `WatchEvents`: past events, then (with follow) new ones.
    pub(super) async fn event_stream(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Stream2<pb::Event>>, Status> {
        let r = req.into_inner();
        let vm = (!r.vm.is_empty()).then_some(r.vm);
        let rx = self.ctl.watch_events(vm, r.history, r.follow)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|e| Ok(event_to_pb(&e))),
        )))
    }

    /// `AttachConsole`: relay the client's console stream to the VM's node and back.
    pub(super) async fn console_relay(
        &self,
        req: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Stream2<pb::ConsoleOutput>>, Status> {
        let mut input = req.into_inner();
        let mut first = input.message().await?.ok_or_else(|| {
            ApiError::InvalidArgument("console: the first message must name the VM".into())
        })?;
        let row = self.ctl.get_row(&first.vm)?;
        let mut client = self.ctl.nodes.client(&row.node)?;
        first.vm = row.id.clone();
        // Forward the client's messages to the node, the first one now naming the VM by id.
        let upstream = tokio_stream::iter(std::iter::once(first))
            .chain(input.take_while(|m| m.is_ok()).filter_map(|m| m.ok()));
        let out = client.raw().node_console(upstream).await?.into_inner();
        Ok(Response::new(Box::pin(out)))
    }

    /// `ImportImage`: the node's import progress, relayed.
    pub(super) async fn import_stream(
        &self,
        req: Request<pb::ImportImageRequest>,
    ) -> Result<Response<Stream2<pb::ImportImageProgress>>, Status> {
        let caller = Requester::of(&req);
        let r = req.into_inner();
        let req = ImportRequest {
            name: ImageName::parse(&r.name).map_err(ApiError::from)?,
            source: r.source,
            sha256: r.sha256,
            node: r.node,
            pool: r.pool,
        };
        let stream = self.ctl.import_image(&caller, &req).await?;
        Ok(Response::new(Box::pin(stream.map(|p| {
            p.map(|p| progress_to_pb(&p)).map_err(Into::into)
        }))))
    }
}
