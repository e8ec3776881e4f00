//! raftconf's own calls to other nodes on their peer port: `Hello` (who are
//! you, what do you know of the cluster) and `ReadIndex` (a read index from
//! the leader, for linearizable reads served elsewhere).
//!
//! [`Peers`] reuses the node's [`PeerChannels`] (one lazily connected channel
//! per peer address) and puts a deadline on every call, enforced locally as
//! well as sent as `grpc-timeout`: a blackholed peer costs the caller the
//! deadline, never a hang.

use std::time::Duration;

use raftconf_api::internal::raft_peer_client::RaftPeerClient;
use raftconf_api::internal::{HelloReply, HelloRequest, ReadIndexReply, ReadIndexRequest};
use raftconf_raft::NodeId;
use tonic::Status;

use crate::network::{ClusterIdSource, PeerChannels};

/// This node's client for raftconf's own peer calls.
#[derive(Clone)]
pub struct Peers {
    self_id: NodeId,
    cluster: ClusterIdSource,
    channels: PeerChannels,
}

impl Peers {
    /// Calls from node `self_id`, stamped with the cluster id of `cluster`,
    /// over `channels`.
    pub fn new(self_id: NodeId, cluster: ClusterIdSource, channels: PeerChannels) -> Self {
        Peers {
            self_id,
            cluster,
            channels,
        }
    }

    /// Asks the node at `peer_addr` who it is and what it knows of the cluster.
    pub async fn hello(&self, peer_addr: &str, deadline: Duration) -> Result<HelloReply, Status> {
        let message = HelloRequest {
            cluster_id: self.cluster.get(),
            from: self.self_id,
        };
        self.call(peer_addr, deadline, message, |mut c, r| async move {
            c.hello(r).await
        })
        .await
    }

    /// Asks the node at `peer_addr` (the leader, as far as the caller knows)
    /// for a read index. A node that is not the leader answers `UNAVAILABLE`.
    pub async fn read_index(
        &self,
        peer_addr: &str,
        deadline: Duration,
    ) -> Result<ReadIndexReply, Status> {
        let message = ReadIndexRequest {
            cluster_id: self.cluster.get(),
            from: self.self_id,
        };
        self.call(peer_addr, deadline, message, |mut c, r| async move {
            c.read_index(r).await
        })
        .await
    }

    async fn call<M, R, F, Fut>(
        &self,
        peer_addr: &str,
        deadline: Duration,
        message: M,
        send: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(RaftPeerClient<tonic::transport::Channel>, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let channel = self
            .channels
            .get(peer_addr)
            .map_err(Status::invalid_argument)?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, send(RaftPeerClient::new(channel), request)).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "node at {peer_addr} did not answer within {deadline:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Peers {
        Peers::new(
            1,
            ClusterIdSource::new(),
            PeerChannels::new(Duration::from_millis(500)),
        )
    }

    #[tokio::test]
    async fn a_blackholed_peer_costs_the_deadline_not_a_hang() {
        // Accepts TCP connections (the kernel does) but never speaks HTTP/2.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound").to_string();
        let started = std::time::Instant::now();
        let err = peers()
            .hello(&addr, Duration::from_millis(300))
            .await
            .expect_err("no answer");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        let err = peers()
            .read_index(&addr, Duration::from_millis(300))
            .await
            .expect_err("no answer");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        drop(listener);
    }

    #[tokio::test]
    async fn a_closed_port_fails_at_once() {
        let err = peers()
            .hello("127.0.0.1:1", Duration::from_secs(5))
            .await
            .expect_err("nothing listens");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        let err = peers()
            .hello("not an address", Duration::from_secs(5))
            .await
            .expect_err("bad address");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
}
