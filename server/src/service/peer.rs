//! The `RaftPeer` service on the peer port: AppendEntries, Vote and
//! InstallSnapshot from other nodes, handed to openraft; and raftconf's own
//! peer calls, `Hello` and `ReadIndex`.
//!
//! Raft payloads are bincode (v1) of openraft's own request types; the
//! reply's payload is bincode of `Result<response, RaftError>`, so a
//! Raft-level refusal travels as data and only transport or framing problems
//! become a gRPC status. `Hello` and `ReadIndex` are typed messages. Every
//! message carries the sender's cluster id: two clusters never mix.
//!
//! The service answers nothing but `UNAVAILABLE` until its [`PeerGate`]
//! opens: a node with an empty data directory first checks with its peers
//! that the cluster does not already know its id (see [`crate::bootstrap`]),
//! and must not take a vote or a log entry before that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raftconf_api::internal::raft_peer_server::RaftPeer;
use raftconf_api::internal::{
    HelloReply, HelloRequest, PeerMessage, ReadIndexReply, ReadIndexRequest,
};
use raftconf_raft::{NodeInfo, RaftNode, ReadError, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::{instrument, warn};

use crate::metadata;

/// The payload encoding this build speaks.
pub const ENCODING: &str = "bincode1";

/// Largest peer message, both directions: above the document limit and the
/// snapshot chunk size, far above tonic's 4 MiB default.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Whether the peer service answers yet. Closed until the node has made sure
/// it may take part (see the module docs); opened once, never closed again.
#[derive(Clone, Default)]
pub struct PeerGate(Arc<AtomicBool>);

impl PeerGate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets peer traffic in from now on.
    pub fn open(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether peer traffic is let in.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The `raftconf.internal.v1.RaftPeer` service.
pub struct PeerService {
    node: RaftNode,
    /// This node's addresses as it advertises them, for `Hello` (the
    /// membership does not hold them before the cluster is formed).
    me: NodeInfo,
    gate: PeerGate,
}

impl PeerService {
    /// A service handing peer traffic to `node` once `gate` opens.
    pub fn new(node: RaftNode, me: NodeInfo, gate: PeerGate) -> Self {
        PeerService { node, me, gate }
    }

    fn check_gate(&self) -> Result<(), Status> {
        if self.gate.is_open() {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "node {} is starting: it is checking with its peers that the cluster does not \
             already know its id",
            self.node.node_id()
        )))
    }

    /// Checks the envelope and decodes the payload.
    fn open<T: DeserializeOwned>(&self, msg: &PeerMessage) -> Result<T, Status> {
        self.check_gate()?;
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
        let reply = self.node.vote(rpc).await;
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

    #[instrument(level = "debug", skip_all, fields(from = request.get_ref().from))]
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.check_gate()?;
        let req = request.get_ref();
        check_cluster(&self.node.cluster_id(), &req.cluster_id, req.from)?;
        let initialized = self
            .node
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // Once a member, the membership holds the addresses the cluster uses.
        let me = self
            .node
            .members()
            .into_iter()
            .find(|m| m.id == self.node.node_id())
            .map_or_else(|| self.me.clone(), |m| m.info);
        Ok(Response::new(HelloReply {
            node_id: self.node.node_id(),
            cluster_id: self.node.cluster_id(),
            initialized,
            client_addr: me.client_addr,
            peer_addr: me.peer_addr,
            member_ids: self.node.members().iter().map(|m| m.id).collect(),
            leader_id: self.node.leader().leader_id.unwrap_or(0),
        }))
    }

    #[instrument(level = "trace", skip_all, fields(from = request.get_ref().from))]
    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        self.check_gate()?;
        let req = request.get_ref();
        check_cluster(&self.node.cluster_id(), &req.cluster_id, req.from)?;
        match self.node.read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexReply {
                index,
                revision: self.node.state().revision(),
            })),
            Err(ReadError::NotLeader { leader_id, .. }) => {
                let me = self.node.node_id();
                let mut status = Status::unavailable(match leader_id {
                    Some(id) => format!("node {me} is not the leader; the leader is node {id}"),
                    None => format!("node {me} is not the leader and knows no leader yet"),
                });
                if let Some(id) = leader_id {
                    if let Ok(v) = id.to_string().parse() {
                        status.metadata_mut().insert(metadata::LEADER_ID, v);
                    }
                }
                Err(status)
            }
            Err(ReadError::Unavailable(m)) => Err(Status::unavailable(m)),
        }
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
