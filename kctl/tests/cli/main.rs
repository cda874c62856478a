//! End-to-end tests of the kctl binary against an in-process mock KcoreService, over a unix
//! socket and over mutual TLS, one file per noun.

mod common;

mod cert;
mod console;
mod disk;
mod endpoint;
mod events;
mod image;
mod network;
mod node;
mod pool;
mod qmp;
mod template;
mod tls;
mod vm;
mod vm_set;
mod volume;
