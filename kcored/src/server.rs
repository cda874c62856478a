//! What the API listeners serve ([`api_routes`]: the same on the unix socket and on TCP
//! with mutual TLS), binding unix sockets, and dialing one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::{Stream, TryStreamExt};
use hyper_util::rt::TokioIo;
use kcore_proto::v1::kcore_service_server::KcoreServiceServer;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};

use crate::controller::Controller;
use crate::controller::grpc::KcoreApi;
use crate::uds_h2::UdsH2;

/// KcoreService (issuing certificates with the CA in `pki_dir`), health (SERVING) and
/// reflection, v1 and v1alpha: what both API listeners serve. The TLS listener adds
/// JoinService and its auth layer.
pub async fn api_routes(ctl: Arc<Controller>, pki_dir: PathBuf) -> anyhow::Result<Routes> {
    let (refl_v1, refl_v1alpha) = reflection()?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<KcoreServiceServer<KcoreApi>>()
        .await;
    let api = KcoreServiceServer::new(KcoreApi::new(ctl).with_pki(pki_dir));
    Ok(Routes::new(api)
        .add_service(health)
        .add_service(refl_v1)
        .add_service(refl_v1alpha))
}

/// Every gRPC path (`/package.Service/Method`) the daemon's servers answer: KcoreService,
/// JoinService, NodeAgent, health and reflection. The RPC metrics label only these.
pub fn known_rpc_paths() -> std::collections::HashSet<String> {
    use prost::Message;
    let mut paths = std::collections::HashSet::new();
    for set in [
        kcore_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            tracing::warn!("cannot decode a descriptor set: RPC metrics label fewer methods");
            continue;
        };
        for file in set.file {
            for svc in &file.service {
                for m in &svc.method {
                    paths.insert(format!("/{}.{}/{}", file.package(), svc.name(), m.name()));
                }
            }
        }
    }
    for v in ["v1", "v1alpha"] {
        paths.insert(format!(
            "/grpc.reflection.{v}.ServerReflection/ServerReflectionInfo"
        ));
    }
    paths
}

/// Bind a unix socket at `path` with `mode`, refusing if a live server already answers
/// there, and replacing a stale socket file. Each accepted connection is a [`UdsH2`], so
/// any gRPC client works with its default options, whatever it sends as `:authority`.
pub async fn bind_unix(
    path: &Path,
    mode: u32,
) -> anyhow::Result<impl Stream<Item = std::io::Result<UdsH2>> + use<>> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "{} is in use: is another kcored running with this --run-dir?",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(UnixListenerStream::new(listener).map_ok(UdsH2::new))
}

/// Give the socket to a group (e.g. `kcore`) if that group exists.
pub fn chgrp_if_exists(path: &Path, group: &str) {
    if let Ok(Some(g)) = nix::unistd::Group::from_name(group)
        && let Err(e) = std::os::unix::fs::chown(path, None, Some(g.gid.as_raw()))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot chgrp socket");
    }
}

/// A gRPC channel over a unix socket.
pub async fn dial_unix(path: PathBuf) -> anyhow::Result<Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await?;
    Ok(channel)
}

/// Reflection (v1 and v1alpha, which grpcurl 1.8 speaks) for kcore.v1 and grpc.health.v1.
fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kcore_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kcore_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}
