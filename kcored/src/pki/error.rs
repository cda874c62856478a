//! [`PkiError`]: what making, reading and writing the cluster PKI can fail with.

use std::path::PathBuf;

/// What the PKI can fail with. Messages name the file or the input; the cause (an OS
/// error, rcgen's or x509-parser's) is the source.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or the directory of the PKI could not be read, written or created.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA key is not there to sign with (it may be kept offline).
    #[error("read {} (the CA key is needed to issue certificates)", path.display())]
    NoCaKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate file of the PKI does not parse.
    #[error("parse {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// Bytes that should be a PEM certificate are not PEM.
    #[error("not a PEM certificate")]
    NotPem(#[source] x509_parser::nom::Err<x509_parser::error::PEMError>),
    /// A PEM block that is not an X.509 certificate.
    #[error("not an X.509 certificate")]
    NotX509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A node's certificate signing request does not parse.
    #[error("the CSR is not a valid PKCS#10 request")]
    InvalidCsr(#[source] rcgen::Error),
    /// A certificate name (its CN) outside the rule.
    #[error("invalid certificate name {0:?}: 1-64 of a-z, A-Z, 0-9, '-', '_', '.', '@'")]
    InvalidName(String),
    /// A subject alternative name rcgen refuses.
    #[error("invalid subject alternative name")]
    InvalidSan(#[source] rcgen::Error),
    /// A key could not be generated.
    #[error("generate a key")]
    KeyGen(#[source] rcgen::Error),
    /// A certificate could not be signed.
    #[error("sign a certificate")]
    Sign(#[source] rcgen::Error),
    /// The CA is gone but certificates it signed are still there.
    #[error(
        "{} is missing but certificates it signed are present in {}: restore ca.crt and \
         ca.key, or move the directory away to make a new PKI",
        ca.display(),
        dir.display()
    )]
    LostCa { ca: PathBuf, dir: PathBuf },
    /// One file of a certificate and key pair without the other.
    #[error(
        "{} exists but {} does not: restore it, or remove {} to make a new one",
        have.display(),
        missing.display(),
        have.display()
    )]
    HalfPair { have: PathBuf, missing: PathBuf },
    /// A certificate and key that do not belong together, and no previous pair that does.
    #[error("{cert} and {key} in {} do not match", dir.display())]
    Mismatch {
        cert: String,
        key: String,
        dir: PathBuf,
    },
}

impl PkiError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
