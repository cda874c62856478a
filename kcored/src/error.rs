//! The daemon's error type and its one mapping to gRPC status codes.

use kcore_netstack::NetError;
use kcore_storage::StorageError;
use kcore_vmm::VmmError;

use crate::pki::PkiError;

/// What a request can fail with, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{}", chain(.0))]
    Net(#[from] NetError),
    #[error("{}", chain(.0))]
    Pki(#[from] PkiError),
    /// A status returned by a node, passed on as it is.
    #[error("{}", .0.message())]
    Node(tonic::Status),
}

/// An error with its sources (`netlink add address ...: File exists`): netstack keeps the
/// cause in `source`, and a client needs it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = s.source();
    }
    msg
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError::Node(s)
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Status;
        match e {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(m) => Status::internal(m),
            ApiError::Store(e) => Status::internal(format!("store: {e}")),
            ApiError::Node(s) => s,
            ApiError::Storage(e) => {
                // With its cause: "write /x: No space left on device".
                let m = chain(&e);
                match e {
                    StorageError::InvalidName { .. }
                    | StorageError::InvalidPoolSpec { .. }
                    | StorageError::InvalidSize(_)
                    | StorageError::InvalidSha256(_)
                    | StorageError::PathEscape { .. }
                    | StorageError::UnsupportedFormat { .. }
                    | StorageError::ImageRefused { .. }
                    | StorageError::NotRegularFile { .. }
                    | StorageError::ChecksumMismatch { .. } => Status::invalid_argument(m),
                    StorageError::NotFound { .. } => Status::not_found(m),
                    StorageError::AlreadyExists { .. } => Status::already_exists(m),
                    StorageError::NotManaged { .. }
                    | StorageError::ShrinkRefused { .. }
                    | StorageError::ImageInUse { .. }
                    | StorageError::CommandFailed { .. } => Status::failed_precondition(m),
                    StorageError::InsufficientSpace { .. } => Status::resource_exhausted(m),
                    StorageError::Io { source, .. }
                        if matches!(
                            source.kind(),
                            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                        ) =>
                    {
                        Status::resource_exhausted(m)
                    }
                    StorageError::Download { .. } => Status::unavailable(m),
                    _ => Status::internal(m),
                }
            }
            ApiError::Net(e) => {
                let m = chain(&e);
                match e {
                    NetError::InvalidMac { .. }
                    | NetError::InvalidSubnet { .. }
                    | NetError::InvalidName { .. }
                    | NetError::Invalid { .. } => Status::invalid_argument(m),
                    NetError::LinkNotFound { .. } => Status::not_found(m),
                    NetError::LinkExists { .. } => Status::already_exists(m),
                    NetError::NotKcore { .. }
                    | NetError::ToolMissing { .. }
                    | NetError::CommandFailed { .. } => Status::failed_precondition(m),
                    _ => Status::internal(m),
                }
            }
            ApiError::Pki(e) => {
                let m = chain(&e);
                match e {
                    PkiError::InvalidName(_) => Status::invalid_argument(m),
                    _ => Status::failed_precondition(m),
                }
            }
            ApiError::Vmm(e) => {
                let m = chain(&e);
                match e {
                    VmmError::InvalidSpec(_) => Status::invalid_argument(m),
                    VmmError::Network(_) => Status::failed_precondition(m),
                    VmmError::WrongState { .. } => Status::failed_precondition(m),
                    VmmError::NotFound(_) => Status::not_found(m),
                    VmmError::QemuStart(_) => Status::failed_precondition(m),
                    VmmError::AlreadyRunning { .. } => Status::failed_precondition(m),
                    VmmError::QmpTimeout { .. } => Status::deadline_exceeded(m),
                    VmmError::QmpClosed => Status::unavailable(m),
                    _ => Status::internal(m),
                }
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_errors_keep_their_cause() {
        let e = ApiError::from(NetError::io(
            "read",
            "/proc/net/route",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(
            s.message()
                .starts_with("read /proc/net/route: No such file"),
            "{}",
            s.message()
        );
        let s = tonic::Status::from(ApiError::from(NetError::LinkNotFound {
            kind: "uplink",
            name: "eth9".into(),
        }));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "uplink \"eth9\" does not exist");
    }

    #[test]
    fn pki_errors_map_by_variant_with_their_cause() {
        let s = tonic::Status::from(ApiError::from(PkiError::InvalidName("a b".into())));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "invalid certificate name \"a b\": 1-64 of a-z, A-Z, 0-9, '-', '_', '.', '@'"
        );
        let s = tonic::Status::from(ApiError::from(PkiError::NoCaKey {
            path: "/pki/ca.key".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        }));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "read /pki/ca.key (the CA key is needed to issue certificates): No such file or \
             directory (os error 2)"
        );
    }

    #[test]
    fn storage_errors_keep_the_os_reason() {
        let io = |errno| {
            tonic::Status::from(ApiError::from(StorageError::io(
                "write",
                "/pool/images/.import-x",
                std::io::Error::from_raw_os_error(errno),
            )))
        };
        let s = io(libc::ENOSPC);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "write /pool/images/.import-x: No space left on device (os error 28)"
        );
        let s = io(libc::EACCES);
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(
            s.message().ends_with("Permission denied (os error 13)"),
            "{s:?}"
        );
    }
}
