//! The node's streaming handlers: its VMs' events, a VM's live console and an image
//! import's progress. The [`NodeAgent`](kcore_proto::v1::node_agent_server::NodeAgent)
//! impl in [`super`] calls these.

use std::sync::Arc;
use std::time::Duration;

use kcore_proto::v1 as pb;
use kcore_storage::Source;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{NodeAgentService, Stream2, is_local};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::node::Node;
use crate::node::convert as edge;

impl NodeAgentService {
    /// `WatchNodeVMs`: a snapshot of every VM, then their events, with heartbeats.
    pub(super) async fn watch_vms(
        &self,
        req: Request<pb::WatchNodeVMsRequest>,
    ) -> Result<Response<Stream2<pb::NodeVmEvent>>, Status> {
        let every = match req.into_inner().heartbeat_ms {
            0 => Duration::from_secs(2),
            ms => Duration::from_millis(u64::from(ms.max(100))),
        };
        let node = self.node.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            // Subscribe first, then snapshot: nothing falls between the two.
            let mut sub = node.subscribe();
            let snapshot = |node: &Node| {
                node.list()
                    .iter()
                    .map(edge::snapshot_event)
                    .collect::<Vec<_>>()
            };
            let heartbeat = |node: Arc<Node>, kind: &'static str| async move {
                let hb = tokio::task::spawn_blocking(move || node.heartbeat())
                    .await
                    .ok();
                edge::heartbeat_event(kind, hb.as_ref())
            };
            for ev in snapshot(&node) {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            // The snapshot is complete; with it, the first heartbeat.
            if tx
                .send(Ok(heartbeat(node.clone(), "synced").await))
                .await
                .is_err()
            {
                return;
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                let ev = tokio::select! {
                    _ = tick.tick() => heartbeat(node.clone(), "heartbeat").await,
                    got = sub.recv() => match got {
                        Ok(ev) => edge::event_to_pb(&ev),
                        Err(RecvError::Lagged(_)) => {
                            for ev in snapshot(&node) {
                                if tx.send(Ok(ev)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        Err(RecvError::Closed) => return,
                    },
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// `NodeConsole`: a running VM's console, its recent output first; the client's input is typed in.
    pub(super) async fn console(
        &self,
        req: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Stream2<pb::ConsoleOutput>>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| {
            ApiError::InvalidArgument("console: the first message must name the VM".into())
        })?;
        let vm = self.node.vm(&first.vm)?;
        // A VM without QEMU has no live console: say so rather than wait forever.
        let state = vm.status().state;
        if !state.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {state}: its console is live only while it runs (kctl vm console {} \
                 --tail N prints its log)",
                vm.name(),
                vm.name()
            ))
            .into());
        }
        let console = vm.console().clone();
        let (history, live) = console.subscribe(first.history_bytes as usize);
        if !first.data.is_empty() {
            console.write(&first.data).await.map_err(ApiError::from)?;
        }
        // Keystrokes: forwarded until the client closes its side.
        let writer = console.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = input.message().await {
                if msg.data.is_empty() {
                    continue;
                }
                if let Err(e) = writer.write(&msg.data).await {
                    tracing::debug!(error = %e, "console input dropped");
                    break;
                }
            }
        });
        let head = tokio_stream::iter(
            (!history.is_empty()).then(|| Ok(pb::ConsoleOutput { data: history })),
        );
        let live = tokio_stream::wrappers::BroadcastStream::new(live).filter_map(|r| match r {
            Ok(b) => Some(Ok(pb::ConsoleOutput { data: b.to_vec() })),
            // A slow client misses some output rather than stalling the VM.
            Err(_) => None,
        });
        Ok(Response::new(Box::pin(head.chain(live))))
    }

    /// `NodeImportImage`: import an image on a blocking task, reporting progress.
    pub(super) async fn import_image(
        &self,
        req: Request<pb::ImportImageRequest>,
    ) -> Result<Response<Stream2<pb::ImportImageProgress>>, Status> {
        let local = is_local(&req);
        let r = req.into_inner();
        let import = edge::import_from_pb(&r)?;
        // A path is opened here, as the requester may; the import reads that open file.
        let source = match Source::parse(&r.source) {
            Source::File(path) => {
                let caller = Caller::from(r.caller.as_ref());
                let file = self
                    .open_host_file("image source", r.source.clone(), caller, local)
                    .await?;
                Source::Opened { path, file }
            }
            other => other,
        };
        let storage = self.node.storage().clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            let mut last = 0u64;
            let mut progress = |done: u64, total: Option<u64>| {
                // At most one message per 4 MiB (and the first and the last).
                if done == 0 || done >= last + (4 << 20) || Some(done) == total {
                    last = done;
                    let _ = tx.try_send(Ok(pb::ImportImageProgress {
                        done_bytes: done,
                        total_bytes: total.unwrap_or(0),
                        image: None,
                    }));
                }
            };
            let msg: Result<_, Status> = match storage.import_image(&import, source, &mut progress)
            {
                Ok(image) => Ok(pb::ImportImageProgress {
                    done_bytes: image.actual_size,
                    total_bytes: image.actual_size,
                    image: Some(edge::image_to_pb(&image)),
                }),
                Err(e) => Err(e.into()),
            };
            let _ = tx.blocking_send(msg);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
