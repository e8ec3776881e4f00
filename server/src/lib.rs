//! raftconf-server: the gRPC services over a [`raftconf_raft::RaftNode`], the
//! Raft network over gRPC, and the operator CLI of the one binary `raftconf`.
//!
//! How the pieces fit:
//!
//! - [`server`]: wiring. Binds the client and peer listeners, opens the node,
//!   serves, and shuts everything down in order.
//! - [`bootstrap`]: how a starting node becomes part of a cluster: found a
//!   single-node one, form the `--peers` cluster exactly once, wait to be
//!   added (`--join`), or refuse an empty data directory under a known id.
//! - [`service`]: one module per gRPC service on the client port
//!   ([`service::config`], [`service::admin`], [`service::watch`],
//!   [`service::cluster`]) and the Raft peer service on the peer port
//!   ([`service::peer`]). They share a [`service::ServiceContext`].
//! - [`network`]: openraft's `RaftNetworkFactory` over the peer service, with
//!   one lazy connection per peer and a deadline on every RPC.
//! - [`peers`]: raftconf's own peer calls (`Hello`, `ReadIndex`), with deadlines.
//! - [`forward`]: any node answers: writes forwarded to the leader, read
//!   indexes fetched from it, bounded waits during elections.
//! - [`status`]: the one place where errors become `tonic::Status`, with the
//!   response header and the leader hint in metadata ([`metadata`] names the keys).
//! - [`delivery`]: what watch subscribers report back (acks, refusals), kept
//!   in memory for delivery tracking.
//! - [`cli`]: the clap-derived command line: `raftconf server` and the
//!   operator subcommands (`put`, `get`, `watch`, …).
//!
//! Must not depend on raft internals beyond the `raftconf-raft` facade
//! (`RaftNode`, `StateView`, the command set); `anyhow` only in [`cli`] and `main`.

pub mod bootstrap;
pub mod cli;
pub mod coalesce;
pub mod convert;
pub mod delivery;
mod error;
pub mod forward;
pub mod metadata;
pub mod network;
pub mod peers;
pub mod server;
pub mod service;
pub mod status;

pub use error::{Error, Result};
