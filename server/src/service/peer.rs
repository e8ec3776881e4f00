//! The `RaftPeer` service on the peer port: AppendEntries, Vote and
//! InstallSnapshot from other nodes, handed to openraft.
//!
//! Payloads are bincode (v1) of openraft's own request types; the reply's
//! payload is bincode of `Result<response, RaftError>`, so a Raft-level
//! refusal travels as data and only transport or framing problems become a
//! gRPC status. Every message carries the sender's cluster id: two clusters
//! never mix.

use raftconf_api::internal::raft_peer_server::RaftPeer;
use raftconf_api::internal::PeerMessage;
use raftconf_raft::{RaftNode, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::{instrument, warn};

/// The payload encoding this build speaks.
pub const ENCODING: &str = "bincode1";

/// Largest peer message, both directions: above the document limit and the
/// snapshot chunk size, far above tonic's 4 MiB default.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The `raftconf.internal.v1.RaftPeer` service.
pub struct PeerService {
    node: RaftNode,
}

impl PeerService {
    /// A service handing peer traffic to `node`.
    pub fn new(node: RaftNode) -> Self {
        PeerService { node }
    }

    /// Checks the envelope and decodes the payload.
    fn open<T: DeserializeOwned>(&self, msg: &PeerMessage) -> Result<T, Status> {
        check_cluster(&self.node.cluster_id(), &msg.cluster_id, msg.from)?;
        if !msg.encoding.is_empty() && msg.encoding != ENCODING {
            return Err(Status::invalid_argument(format!(
                "unknown peer payload encoding {:?} (this node speaks {ENCODING})",
                msg.encoding
            )));
        }
        bincode::deserialize(&msg.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable peer payload: {e}")))
    }

    fn seal<T: Serialize>(&self, reply: &T) -> Result<Response<PeerMessage>, Status> {
        let payload = bincode::serialize(reply)
            .map_err(|e| Status::internal(format!("cannot encode peer reply: {e}")))?;
        Ok(Response::new(PeerMessage {
            cluster_id: self.node.cluster_id(),
            from: self.node.node_id(),
            payload,
            encoding: ENCODING.to_string(),
        }))
    }
}

/// Refuses a message from another cluster. A side that has no cluster id yet
/// (a fresh node, or a cluster whose initialisation is not applied yet)
/// cannot tell, and accepts.
pub fn check_cluster(mine: &str, theirs: &str, from: u64) -> Result<(), Status> {
    if mine.is_empty() || theirs.is_empty() || mine == theirs {
        return Ok(());
    }
    warn!(
        from,
        theirs, mine, "refused a peer message from another cluster"
    );
    Err(Status::failed_precondition(format!(
        "cluster id mismatch: node {from} belongs to cluster {theirs}, this node to {mine}"
    )))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    #[instrument(level = "trace", skip_all, fields(from = request.get_ref().from))]
    async fn append_entries(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = self.open(request.get_ref())?;
        let reply = self.node.raft().append_entries(rpc).await;
        self.seal(&reply)
    }

    #[instrument(level = "debug", skip_all, fields(from = request.get_ref().from))]
    async fn vote(&self, request: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::VoteRequest<u64> = self.open(request.get_ref())?;
        let reply = self.node.raft().vote(rpc).await;
        self.seal(&reply)
    }

    #[instrument(level = "debug", skip_all, fields(from = request.get_ref().from))]
    async fn install_snapshot(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            self.open(request.get_ref())?;
        let reply = self.node.raft().install_snapshot(rpc).await;
        self.seal(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_must_match_when_both_are_known() {
        assert!(check_cluster("", "a", 2).is_ok());
        assert!(check_cluster("a", "", 2).is_ok());
        assert!(check_cluster("a", "a", 2).is_ok());
        let e = check_cluster("a", "b", 2).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    }
}
