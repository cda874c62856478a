//! What can go wrong serving a page: kcored could not be reached, refused the dashboard's
//! identity, or answered with an error. Each becomes an error page that says so, never a
//! crash.

use kcore_client::ClientError;
use tonic::Code;

/// A page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// Connecting, or a call, failed.
    #[error(transparent)]
    Api(#[from] ClientError),
    /// kcored did not answer in time.
    #[error("kcored did not answer within {0} s")]
    Timeout(u64),
    /// What the URL names does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// How an error page explains itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// kcored refused the dashboard's identity (no certificate, a revoked one, a role
    /// that may not read).
    Refused,
    /// kcored could not be reached.
    Unreachable,
    /// What the page names is not there.
    NotFound,
    /// Anything else kcored answered.
    Failed,
}

impl DashError {
    pub fn kind(&self) -> Kind {
        match self {
            DashError::Api(ClientError::Api(e)) => match e.code {
                Code::Unauthenticated | Code::PermissionDenied => Kind::Refused,
                Code::NotFound => Kind::NotFound,
                Code::Unavailable => Kind::Unreachable,
                _ => Kind::Failed,
            },
            DashError::Api(ClientError::Transport(t)) => match t.code {
                Some(Code::Unauthenticated | Code::PermissionDenied) => Kind::Refused,
                _ => Kind::Unreachable,
            },
            DashError::Api(_) | DashError::Timeout(_) => Kind::Unreachable,
            DashError::NotFound(_) => Kind::NotFound,
        }
    }
}
