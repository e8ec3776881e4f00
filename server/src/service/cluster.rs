//! The `Cluster` service: this node's view of the cluster (local, no quorum needed).

use std::collections::BTreeSet;
use std::sync::Arc;

use raftconf_api::v1 as pb;
use raftconf_api::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::ServiceContext;
use crate::status::ApiError;

/// The `raftconf.v1.Cluster` service.
pub struct ClusterService {
    ctx: Arc<ServiceContext>,
}

impl ClusterService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        ClusterService { ctx }
    }

    async fn status_inner(&self) -> Result<pb::StatusResponse, ApiError> {
        let node = &self.ctx.node;
        let raft = node.raft();
        let committed_index = raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(|e| ApiError::Unavailable(format!("raft is not running: {e}")))?
            .unwrap_or(0);
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, info)| pb::Member {
                id: *id,
                peer_addr: info.peer_addr.clone(),
                client_addr: info.client_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let (revision, state_digest) = node.state().state_digest()?;
        let applied_index = metrics
            .last_applied
            .map(|l| l.index)
            .unwrap_or_else(|| node.state().applied_index());
        Ok(pb::StatusResponse {
            header: Some(self.ctx.header(revision)),
            node_id: node.node_id(),
            leader_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            revision,
            applied_index,
            committed_index: committed_index.max(applied_index),
            members,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            state_digest,
        })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    #[instrument(skip_all)]
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.status_inner()
            .await
            .map(Response::new)
            .map_err(|e| self.ctx.status(e))
    }
}
