//! openraft's network over the `RaftPeer` gRPC service.
//!
//! [`PeerNetwork`] is the `RaftNetworkFactory`: `new_client` cannot fail, so
//! it only hands out the peer's lazily connecting channel ([`PeerClient`]).
//! [`PeerChannels`] keeps one channel per peer address, shared by Raft
//! traffic and raftconf's own peer calls ([`crate::peers`]), so a peer is
//! reached over one connection however often openraft rebuilds its clients.
//! Every RPC has a deadline (a blackholed HTTP/2 stream would otherwise hang
//! replication): a missed deadline is `RPCError::Timeout`, a transport
//! failure or a refusal of the envelope is `RPCError::Unreachable` (openraft
//! backs off), and the remote's Raft error comes back as `RPCError::RemoteError`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes};
use raftconf_api::internal::raft_peer_client::RaftPeerClient;
use raftconf_api::internal::PeerMessage;
use raftconf_raft::{NodeId, NodeInfo, StateView, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::service::peer::{ENCODING, MAX_PEER_MESSAGE_BYTES};

/// Deadlines and connection settings of peer RPCs.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// Deadline of one AppendEntries (heartbeats included).
    pub append_timeout: Duration,
    /// Deadline of one Vote.
    pub vote_timeout: Duration,
    /// Deadline of one InstallSnapshot chunk.
    pub snapshot_timeout: Duration,
    /// How long establishing a TCP connection may take.
    pub connect_timeout: Duration,
    /// The local address of this node's outgoing connections to other nodes
    /// (`None`: the OS picks). Lets a firewall tell nodes on one host apart.
    pub source: Option<IpAddr>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            append_timeout: Duration::from_secs(2),
            vote_timeout: Duration::from_secs(2),
            snapshot_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            source: None,
        }
    }
}

/// Where the network reads the cluster id it stamps on every message. The
/// network is built before the node opens, so the state view is set later.
#[derive(Clone, Default)]
pub struct ClusterIdSource(Arc<OnceLock<StateView>>);

impl ClusterIdSource {
    /// An empty source ("" until [`ClusterIdSource::set`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the id from `state` from now on. Only the first call has effect.
    pub fn set(&self, state: StateView) {
        let _ = self.0.set(state);
    }

    /// The cluster id, "" while unknown.
    pub fn get(&self) -> String {
        self.0.get().map(StateView::cluster_id).unwrap_or_default()
    }
}

/// One lazily connecting channel per address, shared by every caller on this
/// node (peer traffic, and forwarded writes to the leader's client port). A
/// channel reconnects by itself after a failure.
#[derive(Clone)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    source: Option<IpAddr>,
}

impl PeerChannels {
    /// An empty pool whose channels give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        PeerChannels {
            channels: Arc::new(Mutex::new(HashMap::new())),
            connect_timeout,
            source: None,
        }
    }

    /// The same pool, connecting from local address `source` (`None`: any).
    pub fn with_source(mut self, source: Option<IpAddr>) -> Self {
        self.source = source;
        self
    }

    /// The channel to `addr` (`host:port`), created on first use. `Err` names
    /// why the address is unusable.
    pub fn get(&self, addr: &str) -> Result<Channel, String> {
        // A panic while holding this short, non-async lock leaves valid data.
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("address {addr:?} is unusable: {e}"))?
            .connect_timeout(self.connect_timeout)
            .local_address(self.source)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The `RaftNetworkFactory` of a node.
#[derive(Clone)]
pub struct PeerNetwork {
    self_id: NodeId,
    cluster: ClusterIdSource,
    settings: NetworkSettings,
    channels: PeerChannels,
}

impl PeerNetwork {
    /// The network of node `self_id`, reaching peers through `channels`.
    pub fn new(
        self_id: NodeId,
        cluster: ClusterIdSource,
        settings: NetworkSettings,
        channels: PeerChannels,
    ) -> Self {
        PeerNetwork {
            self_id,
            cluster,
            settings,
            channels,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        let client = self
            .channels
            .get(&node.peer_addr)
            .map(|channel| {
                RaftPeerClient::new(channel)
                    .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
            })
            .map_err(|e| format!("node {target}: {e}"));
        if let Err(e) = &client {
            tracing::warn!(target, error = %e, "peer unreachable by configuration");
        }
        PeerClient {
            self_id: self.self_id,
            target,
            target_node: node.clone(),
            client,
            cluster: self.cluster.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    self_id: NodeId,
    target: NodeId,
    target_node: NodeInfo,
    /// `Err` when the peer's address does not even parse: every RPC is then
    /// `Unreachable`, naming why.
    client: Result<RaftPeerClient<Channel>, String>,
    cluster: ClusterIdSource,
    settings: NetworkSettings,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, E>>;

impl PeerClient {
    /// Sends `rpc` as `action` and decodes the reply `Result<Resp, E>`.
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        rpc: &Req,
        deadline: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::from(AnyError::error(e)))),
        };
        let payload =
            bincode::serialize(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(PeerMessage {
            cluster_id: self.cluster.get(),
            from: self.self_id,
            payload,
            encoding: ENCODING.to_string(),
        });
        request.set_timeout(deadline);
        let send = async move {
            match action {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(deadline, send).await {
            Err(_elapsed) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.self_id,
                    target: self.target,
                    timeout: deadline,
                }))
            }
            // The channel enforces the grpc-timeout too, and reports it as
            // Cancelled ("Timeout expired"); the server as DeadlineExceeded.
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                ) =>
            {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.self_id,
                    target: self.target,
                    timeout: deadline,
                }))
            }
            Ok(Err(status)) => {
                tracing::debug!(target = self.target, %status, "peer rpc failed");
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let decoded: Result<Resp, E> = bincode::deserialize(&reply.payload)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        decoded.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.target_node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let deadline = self.settings.append_timeout.min(option.hard_ttl());
        self.call(RPCTypes::AppendEntries, &rpc, deadline).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let deadline = self.settings.snapshot_timeout.min(option.hard_ttl());
        self.call(RPCTypes::InstallSnapshot, &rpc, deadline).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let deadline = self.settings.vote_timeout.min(option.hard_ttl());
        self.call(RPCTypes::Vote, &rpc, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::error::Fatal;
    use openraft::Vote;
    use raftconf_api::internal::raft_peer_server::{RaftPeer, RaftPeerServer};
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    /// A peer that answers every Vote the same way.
    #[derive(Clone, Copy)]
    enum Peer {
        Grant,
        Stopped,
        Hang,
        OtherCluster,
    }

    #[tonic::async_trait]
    impl RaftPeer for Peer {
        async fn append_entries(
            &self,
            _r: Request<PeerMessage>,
        ) -> Result<Response<PeerMessage>, Status> {
            Err(Status::unimplemented("test"))
        }

        async fn vote(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
            let req: VoteRequest<NodeId> =
                bincode::deserialize(&r.get_ref().payload).expect("a vote request");
            let reply: Result<VoteResponse<NodeId>, RaftError<NodeId>> = match self {
                Peer::Grant => Ok(VoteResponse::new(req.vote, None, true)),
                Peer::Stopped => Err(RaftError::Fatal(Fatal::Stopped)),
                Peer::Hang => std::future::pending().await,
                Peer::OtherCluster => {
                    return Err(Status::failed_precondition("cluster id mismatch"))
                }
            };
            Ok(Response::new(PeerMessage {
                cluster_id: String::new(),
                from: 2,
                payload: bincode::serialize(&reply).expect("encodable"),
                encoding: ENCODING.into(),
            }))
        }

        async fn install_snapshot(
            &self,
            _r: Request<PeerMessage>,
        ) -> Result<Response<PeerMessage>, Status> {
            Err(Status::unimplemented("test"))
        }

        async fn hello(
            &self,
            _r: Request<raftconf_api::internal::HelloRequest>,
        ) -> Result<Response<raftconf_api::internal::HelloReply>, Status> {
            Err(Status::unimplemented("test"))
        }

        async fn read_index(
            &self,
            _r: Request<raftconf_api::internal::ReadIndexRequest>,
        ) -> Result<Response<raftconf_api::internal::ReadIndexReply>, Status> {
            Err(Status::unimplemented("test"))
        }
    }

    async fn serve(peer: Peer) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftPeerServer::new(peer))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addr
    }

    async fn vote(peer_addr: String) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let settings = NetworkSettings {
            vote_timeout: Duration::from_millis(300),
            ..NetworkSettings::default()
        };
        let channels = PeerChannels::new(settings.connect_timeout);
        let mut net = PeerNetwork::new(1, ClusterIdSource::new(), settings, channels);
        let node = NodeInfo {
            peer_addr,
            client_addr: String::new(),
        };
        let mut client = net.new_client(2, &node).await;
        let req = VoteRequest::new(Vote::new(3, 1), None);
        client
            .vote(req, RPCOption::new(Duration::from_secs(5)))
            .await
    }

    #[tokio::test]
    async fn a_granted_vote_comes_back() {
        let resp = vote(serve(Peer::Grant).await).await.expect("granted");
        assert!(resp.vote_granted);
        assert_eq!(resp.vote, Vote::new(3, 1));
    }

    #[tokio::test]
    async fn a_remote_raft_error_is_a_remote_error() {
        let err = vote(serve(Peer::Stopped).await).await.unwrap_err();
        match err {
            RPCError::RemoteError(e) => {
                assert_eq!(e.target, 2);
                assert!(matches!(e.source, RaftError::Fatal(Fatal::Stopped)));
            }
            other => panic!("expected RemoteError, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hanging_peer_hits_the_deadline() {
        let err = vote(serve(Peer::Hang).await).await.unwrap_err();
        assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");
    }

    #[tokio::test]
    async fn refusals_and_closed_ports_are_unreachable() {
        let err = vote(serve(Peer::OtherCluster).await).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        let err = vote("127.0.0.1:1".into()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        let err = vote("not an address".into()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}
