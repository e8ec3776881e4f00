//! raftconf wire types: the `.proto` files under `proto/` and the tonic code
//! generated from them at build time (protox, so no system `protoc`).
//!
//! Knows nothing of raftconf's other crates (but for the naming rule, with the
//! `validate` feature): this is the contract every client, in any language,
//! compiles against.

#![allow(clippy::all, missing_docs, rust_2018_idioms)]

/// The public API, package `raftconf.v1`.
pub mod v1 {
    // The derived validators of nested fields call `validate()` on them.
    #[cfg(feature = "validate")]
    use validator::Validate;
    tonic::include_proto!("raftconf.v1");
}

/// Node-to-node Raft traffic, package `raftconf.internal.v1`.
pub mod internal {
    tonic::include_proto!("raftconf.internal.v1");
}

pub mod codec;

/// The server side of `raftconf.v1.Watch` with [`codec::WatchReply`]
/// responses: the same wire messages as [`v1::watch_server`], with room for
/// a response encoded once and sent to many subscribers.
pub mod shared_watch {
    include!(concat!(env!("OUT_DIR"), "/raftconf.v1.Watch.rs"));
}

#[cfg(feature = "validate")]
pub mod validate;

/// The encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/raftconf_descriptor.bin"));
