//! Serving gRPC on unix sockets (reflection and health included), and dialing one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint};

/// Bind a unix socket at `path` with `mode`, refusing if a live server already answers
/// there, and replacing a stale socket file.
pub async fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<UnixListenerStream> {
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
    Ok(UnixListenerStream::new(listener))
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
pub fn reflection() -> anyhow::Result<(
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
