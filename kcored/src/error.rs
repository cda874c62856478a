//! The daemon's error type and its one mapping to gRPC status codes.

use kcore_vmm::VmmError;

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
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error(transparent)]
    Vmm(#[from] VmmError),
    /// A status returned by a node, passed on as it is.
    #[error("{}", .0.message())]
    Node(tonic::Status),
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
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(m) => Status::internal(m),
            ApiError::Store(e) => Status::internal(format!("store: {e}")),
            ApiError::Node(s) => s,
            ApiError::Vmm(e) => {
                let m = e.to_string();
                match e {
                    VmmError::InvalidSpec(_) => Status::invalid_argument(m),
                    VmmError::WrongState { .. } => Status::failed_precondition(m),
                    VmmError::NotFound(_) => Status::not_found(m),
                    VmmError::QemuStart(_) => Status::failed_precondition(m),
                    VmmError::QmpTimeout { .. } => Status::deadline_exceeded(m),
                    VmmError::QmpClosed => Status::unavailable(m),
                    _ => Status::internal(m),
                }
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
