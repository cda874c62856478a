//! The kcore.v1 API: generated messages, the `KcoreService` and `NodeAgent` clients and
//! servers, serde support with proto field names (pbjson), and the descriptor set for
//! server reflection.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("kcore.v1");
    include!(concat!(env!("OUT_DIR"), "/kcore.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of kcore.v1, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kcore_descriptor.bin"));
