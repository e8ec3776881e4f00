//! The crate's error type: what can stop a server from starting or running.
//! (Errors of single RPCs are [`crate::status::ApiError`].)

use std::net::SocketAddr;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address is not loopback and `--insecure` was not given.
    #[error(
        "refusing to listen on {addr} ({what}): it is not a loopback address and raftconf has no \
         authentication yet; pass --insecure to allow it"
    )]
    InsecureListen {
        /// "clients" or "peers".
        what: &'static str,
        /// The address as given.
        addr: String,
    },
    /// An address could not be parsed or resolved.
    #[error("invalid {what} address {addr:?}: {reason}")]
    BadAddress {
        /// Which flag.
        what: &'static str,
        /// The address as given.
        addr: String,
        /// What is wrong.
        reason: String,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// "clients" or "peers".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot use data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--peers` is malformed or does not name this node.
    #[error("invalid --peers: {0}")]
    Peers(String),
    /// The data directory was recorded as another node's.
    #[error(
        "refusing to start: the data directory {data_dir} belongs to node {recorded}, not to node {node_id} (--node-id); start node {recorded} on it, or give node {node_id} its own"
    )]
    NotMyDataDir {
        /// This node's id.
        node_id: u64,
        /// The id recorded in the directory.
        recorded: u64,
        /// The data directory.
        data_dir: String,
    },
    /// The data directory is empty but the cluster already has a member with
    /// this node's id: the node forgot its vote and log.
    #[error(
        "refusing to start: node {node_id} has an empty data directory ({data_dir}) but the \
         cluster already has a member {node_id} (node {seen_by} at {seen_at} says so); this node \
         has lost its vote and log and must not rejoin under its old id: remove member \
         {node_id} (raftconf cluster remove-node --id {node_id}), then start this node with a \
         new --node-id and --join and add it (raftconf cluster add-node)"
    )]
    IdentityTaken {
        /// This node's id.
        node_id: u64,
        /// Its (empty) data directory.
        data_dir: String,
        /// The peer that knows the id.
        seen_by: u64,
        /// That peer's address.
        seen_at: String,
    },
    /// The Raft node failed to open, initialise or run.
    #[error("raft: {0}")]
    Raft(#[from] raftconf_raft::Error),
    /// A gRPC server failed.
    #[error("gRPC server ({what}): {source}")]
    Transport {
        /// "clients" or "peers".
        what: &'static str,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// Building the reflection service failed.
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}
