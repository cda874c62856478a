//! kcore-client: how every client of kcore's public API (`kctl`, the Terraform provider)
//! finds the controller and connects to it.
//!
//! [`endpoint::resolve`] picks the endpoint (a flag, `$KCORE_ENDPOINT`, the local socket,
//! `~/.config/kcore/config.toml`) and the TLS material, [`endpoint::connect`] dials it (a
//! unix socket, or https with mutual TLS), and [`endpoint::Client::error`] turns a failed
//! call into a [`ClientError`]: the server's message and code, or a transport failure that
//! names the endpoint and says what to check.

pub mod endpoint;
pub mod error;

pub use endpoint::{Client, Pem, Resolved, TlsFiles, connect, resolve};
pub use error::{ApiError, ClientError, TransportError};
