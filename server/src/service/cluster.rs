//! The `Cluster` service: the cluster's status as the answering node sees it,
//! and membership changes (on the leader).
//!
//! `Status` asks every other member for its own view (`local_only`, with a
//! short deadline) so that one call shows each member's role, applied index,
//! lag behind the leader and whether it answered at all.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use openraft::ServerState;
use raftconf_api::v1 as pb;
use raftconf_api::v1::cluster_client::ClusterClient;
use raftconf_api::v1::cluster_server::Cluster;
use raftconf_raft::{NodeId, NodeInfo};
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use super::ServiceContext;
use crate::status::ApiError;

/// How long `AddNode` waits for the new node to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `Status` waits for another member's own view.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The `raftconf.v1.Cluster` service.
pub struct ClusterService {
    ctx: Arc<ServiceContext>,
}

impl ClusterService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        ClusterService { ctx }
    }

    async fn status_inner(&self, local_only: bool) -> Result<pb::StatusResponse, ApiError> {
        let node = &self.ctx.node;
        let raft = node.raft();
        let committed_index = raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(|e| ApiError::Unavailable(format!("raft is not running: {e}")))?
            .unwrap_or(0);
        let metrics = node.metrics();
        let (revision, state_digest) = node.state().state_digest()?;
        let applied_index = metrics
            .last_applied
            .map(|l| l.index)
            .unwrap_or_else(|| node.state().applied_index());
        let me = node.node_id();
        let my_role = role(metrics.state);
        let mut members: Vec<pb::Member> = node
            .members()
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                peer_addr: m.info.peer_addr,
                client_addr: m.info.client_addr,
                voter: m.voter,
                role: if m.id == me {
                    my_role.to_string()
                } else {
                    String::new()
                },
                applied_index: if m.id == me { applied_index } else { 0 },
                lag: 0,
                reachable: m.id == me,
            })
            .collect();
        if !local_only {
            probe_members(me, &mut members).await;
            let leader_applied = members
                .iter()
                .find(|m| m.role == "leader")
                .map(|m| m.applied_index);
            if let Some(leader_applied) = leader_applied {
                for m in members.iter_mut().filter(|m| m.reachable) {
                    m.lag = leader_applied.saturating_sub(m.applied_index);
                }
            }
        }
        Ok(pb::StatusResponse {
            header: Some(self.ctx.header(revision)),
            node_id: me,
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

    fn membership_response(&self) -> pb::MembershipResponse {
        pb::MembershipResponse {
            header: Some(self.ctx.current_header()),
            members: self
                .ctx
                .node
                .members()
                .into_iter()
                .map(|m| pb::Member {
                    id: m.id,
                    peer_addr: m.info.peer_addr,
                    client_addr: m.info.client_addr,
                    voter: m.voter,
                    ..Default::default()
                })
                .collect(),
        }
    }

    async fn add_node_inner(
        &self,
        req: pb::AddNodeRequest,
    ) -> Result<pb::MembershipResponse, ApiError> {
        check_id(req.id)?;
        check_addr("peer address", &req.peer_addr)?;
        let client_addr = if req.client_addr.is_empty() {
            self.ask_client_addr(req.id, &req.peer_addr).await?
        } else {
            req.client_addr.clone()
        };
        check_addr("client address", &client_addr)?;
        let node = &self.ctx.node;
        let wanted = NodeInfo {
            peer_addr: req.peer_addr.clone(),
            client_addr,
        };
        match node.members().into_iter().find(|m| m.id == req.id) {
            Some(m) if m.info != wanted => {
                return Err(ApiError::InvalidArgument(format!(
                    "node {} is already a member with {}; remove it first to change its addresses",
                    req.id, m.info
                )))
            }
            Some(m) if m.voter || req.learner => return Ok(self.membership_response()),
            Some(_) => {}
            None => {
                info!(id = req.id, node = %wanted, "adding a learner; waiting until it has caught up");
                node.add_learner(req.id, wanted, true).await?;
            }
        }
        if !req.learner {
            info!(id = req.id, "promoting to voter");
            node.promote(req.id).await?;
        }
        Ok(self.membership_response())
    }

    /// The client address node `id` advertises, asked over its peer address.
    async fn ask_client_addr(&self, id: NodeId, peer_addr: &str) -> Result<String, ApiError> {
        let reply = self
            .ctx
            .peers
            .hello(peer_addr, HELLO_TIMEOUT)
            .await
            .map_err(|s| {
                ApiError::Unavailable(format!(
                    "node {id} at {peer_addr} did not answer ({}); is it running with --join?",
                    s.message()
                ))
            })?;
        if reply.node_id != id {
            return Err(ApiError::InvalidArgument(format!(
                "the node at {peer_addr} is node {}, not node {id}",
                reply.node_id
            )));
        }
        if reply.initialized {
            return Err(ApiError::InvalidArgument(format!(
                "node {id} at {peer_addr} already belongs to a cluster ({}); start it on an empty data directory with --join",
                if reply.cluster_id.is_empty() { "id not yet known" } else { reply.cluster_id.as_str() }
            )));
        }
        Ok(reply.client_addr)
    }

    async fn promote_inner(
        &self,
        req: pb::PromoteNodeRequest,
    ) -> Result<pb::MembershipResponse, ApiError> {
        check_id(req.id)?;
        let node = &self.ctx.node;
        match node.members().into_iter().find(|m| m.id == req.id) {
            None => Err(ApiError::NotFound(format!(
                "node {} is not a member; add it first (cluster add-node)",
                req.id
            ))),
            Some(m) if m.voter => Ok(self.membership_response()),
            Some(_) => {
                info!(id = req.id, "promoting to voter");
                node.promote(req.id).await?;
                Ok(self.membership_response())
            }
        }
    }

    async fn remove_inner(
        &self,
        req: pb::RemoveNodeRequest,
    ) -> Result<pb::MembershipResponse, ApiError> {
        check_id(req.id)?;
        let node = &self.ctx.node;
        let members = node.members();
        let Some(target) = members.iter().find(|m| m.id == req.id) else {
            return Ok(self.membership_response());
        };
        let voters: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        if target.voter && voters.len() == 1 {
            return Err(ApiError::InvalidArgument(format!(
                "node {} is the only voter: removing it would leave no cluster",
                req.id
            )));
        }
        info!(id = req.id, voter = target.voter, "removing a member");
        node.remove_node(req.id).await?;
        Ok(self.membership_response())
    }
}

/// The role name of a Raft server state.
fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

/// Asks every other member for its own view, concurrently, each with a deadline.
async fn probe_members(me: NodeId, members: &mut [pb::Member]) {
    let targets: Vec<(bool, String)> = members
        .iter()
        .map(|m| {
            (
                m.id == me || m.client_addr.is_empty(),
                m.client_addr.clone(),
            )
        })
        .collect();
    let probes = targets.into_iter().map(|(skip, addr)| async move {
        if skip {
            return None;
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(PROBE_TIMEOUT)
            .connect_lazy();
        let mut client = ClusterClient::new(channel);
        let call = client.status(pb::StatusRequest { local_only: true });
        match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    });
    for (m, answer) in members.iter_mut().zip(join_all(probes).await) {
        if let Some(own) = answer {
            m.reachable = true;
            m.applied_index = own.applied_index;
            m.role = own
                .members
                .iter()
                .find(|x| x.id == m.id)
                .map(|x| x.role.clone())
                .unwrap_or_default();
        }
    }
}

fn check_id(id: NodeId) -> Result<(), ApiError> {
    if id == 0 {
        return Err(ApiError::InvalidArgument(
            "node id 0 is not allowed (ids start at 1)".into(),
        ));
    }
    Ok(())
}

fn check_addr(what: &str, addr: &str) -> Result<(), ApiError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "{what} {addr:?} is not HOST:PORT"
        )))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    #[instrument(skip_all)]
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.ctx
            .respond(self.status_inner(request.get_ref().local_only).await)
    }

    #[instrument(skip_all, fields(id = request.get_ref().id))]
    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.ctx
            .respond(self.add_node_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(id = request.get_ref().id))]
    async fn promote_node(
        &self,
        request: Request<pb::PromoteNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.ctx
            .respond(self.promote_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(id = request.get_ref().id))]
    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.ctx
            .respond(self.remove_inner(request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ids_are_checked() {
        assert!(check_addr("peer address", "127.0.0.1:7071").is_ok());
        assert!(check_addr("peer address", "node-2.internal:7071").is_ok());
        assert!(check_addr("peer address", "127.0.0.1").is_err());
        assert!(check_addr("peer address", ":7071").is_err());
        assert!(check_addr("peer address", "h:0").is_err());
        assert!(check_id(0).is_err());
        assert!(check_id(4).is_ok());
    }
}
