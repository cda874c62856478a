//! Everything kcore knows about QEMU: a VM spec turned into an argv (pure), spawning QEMU
//! detached from the daemon, the QMP client, the serial console, and supervision of a
//! running QEMU (exit detection, reattach after a daemon restart).
//!
//! This crate knows nothing of gRPC, SQLite, networks or storage pools.

pub mod argv;
pub mod bootlog;
pub mod console;
pub mod error;
pub mod host;
pub mod kernel;
pub mod migration;
pub mod paths;
pub mod process;
pub mod qmp;
pub mod spec;
pub mod timeline;
pub mod usage;
pub mod vm;

pub use error::VmmError;
