//! The openraft type configuration and the node description kept in membership.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Proposal, ProposalResponse};

/// A node as recorded in Raft membership: where peers and clients reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Address of the node's peer (Raft) gRPC service, `host:port`.
    pub peer_addr: String,
    /// Address of the node's client gRPC service, `host:port`, so that any node
    /// can tell a client where the leader is.
    pub client_addr: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}

/// Raft node ids are plain integers chosen by the operator.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// raftconf's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle for this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
