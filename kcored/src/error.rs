//! The daemon's error type and its one mapping to gRPC status codes.
//!
//! A status is built here and in `auth.rs` (the TLS listener's refusals) only; a unit test
//! below fails if `Status::` appears in any other file of kcored. Its message is the
//! [`ApiError`]'s `Display`, which for a wrapped library error is the error and all its
//! causes ([`chain`]: `write /x: No space left on device (os error 28)`).

use kcore_netstack::NetError;
use kcore_storage::StorageError;
use kcore_vmm::VmmError;
/// The one cause-chain formatter, shared with the vmm crate (which writes status reasons
/// with it).
pub use kcore_vmm::error::chain;
use tonic::Code;

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
    /// No acceptable credentials (a join token that does not work).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("store: {}", chain(.0))]
    Store(#[from] rusqlite::Error),
    #[error("{}", chain(.0))]
    Vmm(#[from] VmmError),
    #[error("{}", chain(.0))]
    Storage(#[from] StorageError),
    #[error("{}", chain(.0))]
    Net(#[from] NetError),
    /// A name or an address that does not parse (INVALID_ARGUMENT).
    #[error(transparent)]
    Type(#[from] kcore_types::TypeError),
    #[error("{}", chain(.0))]
    Pki(#[from] PkiError),
    /// A status returned by a node, passed on as it is.
    #[error("{}", .0.message())]
    Node(tonic::Status),
    /// Several nodes' statuses (an operation on every node): the first one's code, each
    /// node's message.
    #[error("{}", nodes_message(.0))]
    Nodes(Vec<(String, ApiError)>),
}

fn nodes_message(errors: &[(String, ApiError)]) -> String {
    errors
        .iter()
        .map(|(n, e)| format!("node {n}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError::Node(s)
    }
}

impl ApiError {
    /// The gRPC code a client sees.
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) | ApiError::Store(_) => Code::Internal,
            ApiError::Type(_) => Code::InvalidArgument,
            ApiError::Node(s) => s.code(),
            ApiError::Nodes(errors) => errors.first().map_or(Code::Unknown, |(_, e)| e.code()),
            ApiError::Storage(e) => storage_code(e),
            ApiError::Net(e) => match e {
                NetError::Type(_)
                | NetError::InvalidSubnet { .. }
                | NetError::InvalidName { .. }
                | NetError::Invalid { .. } => Code::InvalidArgument,
                NetError::LinkNotFound { .. } => Code::NotFound,
                NetError::LinkExists { .. } => Code::AlreadyExists,
                NetError::NotKcore { .. }
                | NetError::ToolMissing { .. }
                | NetError::CommandFailed { .. } => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            ApiError::Pki(e) => match e {
                PkiError::InvalidName(_) => Code::InvalidArgument,
                _ => Code::FailedPrecondition,
            },
            ApiError::Vmm(e) => match e {
                VmmError::InvalidSpec(_) => Code::InvalidArgument,
                VmmError::Network(_) | VmmError::NicOpen(_) => Code::FailedPrecondition,
                VmmError::WrongState { .. } => Code::FailedPrecondition,
                VmmError::NotFound(_) => Code::NotFound,
                VmmError::QemuStart(_) => Code::FailedPrecondition,
                VmmError::AlreadyRunning { .. } => Code::FailedPrecondition,
                VmmError::QmpTimeout { .. } => Code::DeadlineExceeded,
                VmmError::QmpClosed => Code::Unavailable,
                VmmError::Migration(_) => Code::Aborted,
                _ => Code::Internal,
            },
        }
    }
}

fn storage_code(e: &StorageError) -> Code {
    match e {
        StorageError::InvalidName { .. }
        | StorageError::InvalidPoolSpec { .. }
        | StorageError::InvalidSize(_)
        | StorageError::InvalidSha256(_)
        | StorageError::PathEscape { .. }
        | StorageError::UnsupportedFormat { .. }
        | StorageError::ImageRefused { .. }
        | StorageError::NotRegularFile { .. }
        | StorageError::ChecksumMismatch { .. } => Code::InvalidArgument,
        StorageError::NotFound { .. } => Code::NotFound,
        StorageError::AlreadyExists { .. } => Code::AlreadyExists,
        StorageError::NotManaged { .. }
        | StorageError::ShrinkRefused { .. }
        | StorageError::ImageInUse { .. }
        | StorageError::CommandFailed { .. } => Code::FailedPrecondition,
        StorageError::InsufficientSpace { .. } => Code::ResourceExhausted,
        StorageError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) =>
        {
            Code::ResourceExhausted
        }
        StorageError::Download { .. } => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The one mapping: the code of [`ApiError::code`], the message of its `Display`; a
/// node's status goes on unchanged.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Node(s) => s,
            e => tonic::Status::new(e.code(), e.to_string()),
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

    /// The rule of this module, enforced: a `tonic::Status` is built in the mapping above
    /// (and for the TLS listener's refusals in auth.rs), nowhere else in kcored. Any
    /// `Status::` (a constructor, `Status::from`) or an import renaming `Status` elsewhere
    /// fails this test: return an [`ApiError`] variant instead (add one if a code is new).
    #[test]
    fn status_is_built_only_in_the_mapping() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let allowed = [src.join("error.rs"), src.join("auth.rs")];
        let built = regex::Regex::new(r"(^|[^A-Za-z0-9_])Status(::|\s+as\s)").expect("regex");
        let (mut files, mut found) = (0, Vec::new());
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read the source directory") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") || allowed.contains(&path) {
                    continue;
                }
                files += 1;
                let text = std::fs::read_to_string(&path).expect("read a source file");
                for (i, line) in text.lines().enumerate() {
                    if built.is_match(line) {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(files > 20, "{files} source files under {}?", src.display());
        assert!(
            found.is_empty(),
            "a Status built outside error.rs and auth.rs (return an ApiError):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn several_nodes_errors_keep_the_first_code_and_every_message() {
        let s = tonic::Status::from(ApiError::Nodes(vec![
            (
                "a".into(),
                ApiError::Node(tonic::Status::new(Code::NotFound, "no bridge br9")),
            ),
            ("b".into(), ApiError::Unavailable("down".into())),
        ]));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "node a: no bridge br9; node b: down");
        let s = tonic::Status::from(ApiError::Unauthenticated("unknown join token".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, "unknown join token")
        );
    }

    #[test]
    fn vmm_errors_keep_their_cause_in_the_message_and_the_display() {
        let io = || {
            VmmError::io(
                "create",
                "/run/kcore/vms/x/qemu.log",
                std::io::Error::from_raw_os_error(libc::EACCES),
            )
        };
        let want = "create /run/kcore/vms/x/qemu.log: Permission denied (os error 13)";
        assert_eq!(ApiError::from(io()).to_string(), want);
        let s = tonic::Status::from(ApiError::from(io()));
        assert_eq!((s.code(), s.message()), (tonic::Code::Internal, want));
        // A NIC provider's failure inside a vmm error: "network: " and the whole chain.
        let nic = ApiError::from(NetError::io(
            "open",
            "/dev/net/tun",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
        let s = tonic::Status::from(ApiError::from(VmmError::NicOpen(Box::new(nic))));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "network: open /dev/net/tun: No such file or directory (os error 2)"
        );
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
