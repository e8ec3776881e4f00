//! Wiring: listeners, the node, the services, readiness and shutdown.
//!
//! [`RunningServer::start`] binds both listeners first (so a busy port fails
//! fast, before any state is touched), opens the [`RaftNode`], serves the peer
//! port (closed to peer traffic until a fresh node has checked its identity
//! with its peers), serves the client port, and follows the start-up plan of
//! [`crate::bootstrap`]: found a single-node cluster, form the `--peers`
//! cluster, or wait to be contacted. [`run`] adds readiness (health
//! `SERVING` once a leader and the cluster id are known) and the shutdown
//! order: health `NOT_SERVING` → watch streams end with `UNAVAILABLE` → the
//! client port stops → Raft stops → the peer port stops.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use raftconf_api::internal::raft_peer_server::RaftPeerServer;
use raftconf_api::shared_watch::watch_server::WatchServer;
use raftconf_api::v1::admin_server::AdminServer;
use raftconf_api::v1::cluster_server::ClusterServer;
use raftconf_api::v1::config_server::ConfigServer;
use raftconf_api::v1::schema_server::SchemaServer;
use raftconf_raft::{NodeConfig, NodeId, NodeInfo, RaftNode};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::bootstrap::{self, Plan};
use crate::coalesce::CoalescingStream;
use crate::delivery::DeliveryRegistry;
use crate::forward::Forwarder;
use crate::network::{ClusterIdSource, NetworkSettings, PeerChannels, PeerNetwork};
use crate::peers::Peers;
use crate::service::admin::AdminService;
use crate::service::cluster::ClusterService;
use crate::service::config::ConfigService;
use crate::service::peer::{PeerGate, PeerService, MAX_PEER_MESSAGE_BYTES};
use crate::service::schema::SchemaService;
use crate::service::watch::WatchService;
use crate::service::{ServiceContext, ServiceSettings};
use crate::{Error, Result};

/// The client-facing services, by their full gRPC names (for health).
pub const CLIENT_SERVICES: [&str; 4] = [
    "raftconf.v1.Config",
    "raftconf.v1.Admin",
    "raftconf.v1.Watch",
    "raftconf.v1.Cluster",
];

/// How many watch clients the delivery registry remembers.
const DELIVERY_CAPACITY: usize = 100_000;

/// Largest client request the Config service decodes: the largest document
/// text raftconf accepts plus room for the other fields.
const MAX_CLIENT_REQUEST_BYTES: usize = raftconf_schema::MAX_DOCUMENT_TEXT_BYTES + 64 * 1024;

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's id (never 0: 0 means "unknown" in response headers).
    pub node_id: NodeId,
    /// Client gRPC listen address (`host:port`; port 0 picks one).
    pub listen: String,
    /// Peer (Raft) gRPC listen address.
    pub peer_listen: String,
    /// The client address other nodes and clients should use, when it differs
    /// from the bound one (e.g. listening on 0.0.0.0).
    pub advertise: Option<String>,
    /// The peer address other nodes should use, when it differs from the bound one.
    pub advertise_peer: Option<String>,
    /// Where the node keeps its log, state and snapshots.
    pub data_dir: PathBuf,
    /// The initial cluster (`--peers`): node id → peer address, this node
    /// included. Used only on the first start; empty for a single-node cluster.
    pub peers: BTreeMap<NodeId, String>,
    /// Never initialise a cluster: wait to be added by an operator (`--join`).
    pub join: bool,
    /// Build a snapshot (and compact the log behind it) after this many log
    /// entries; `None` = the raft crate's default.
    pub snapshot_every: Option<u64>,
    /// Revisions kept for resuming watches; `None` = the raft crate's default.
    /// Keep it equal on every node (it shapes what each node keeps).
    pub replay_window: Option<u64>,
    /// Replay events older than this are dropped too (`None`: by count only).
    pub replay_max_age: Option<Duration>,
    /// Serve linearizable reads on the leader's read lease (see the raft
    /// crate's `read_lease`); off: a heartbeat round for every read.
    pub read_lease: bool,
    /// Allow non-loopback listen addresses (there is no auth yet).
    pub insecure: bool,
    /// Service tunables (watch send timeout, …).
    pub services: ServiceSettings,
    /// Peer RPC deadlines.
    pub network: NetworkSettings,
    /// How long shutdown waits for in-flight requests on each port.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Defaults: clients on 127.0.0.1:7070, peers on 127.0.0.1:7071, data in
    /// `./raftconf-data`, node 1.
    pub fn new() -> Self {
        ServerConfig {
            node_id: 1,
            listen: "127.0.0.1:7070".into(),
            peer_listen: "127.0.0.1:7071".into(),
            advertise: None,
            advertise_peer: None,
            data_dir: PathBuf::from("raftconf-data"),
            peers: BTreeMap::new(),
            join: false,
            snapshot_every: None,
            replay_window: None,
            replay_max_age: None,
            read_lease: true,
            insecure: false,
            services: ServiceSettings::default(),
            network: NetworkSettings::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The raft node's configuration for this server.
fn node_config(config: &ServerConfig) -> NodeConfig {
    let mut node = NodeConfig::new(config.node_id, &config.data_dir);
    if let Some(n) = config.snapshot_every {
        node.snapshot_every = n.max(1);
    }
    node.replay_max_age = config.replay_max_age;
    if !config.read_lease {
        node.read_lease = None;
    }
    if let Some(n) = config.replay_window {
        node.replay_window = n.max(1);
    }
    node
}

/// Resolves `addr` and refuses a non-loopback one unless `insecure`.
pub async fn resolve_listen(what: &'static str, addr: &str, insecure: bool) -> Result<SocketAddr> {
    let bad = |reason: String| Error::BadAddress {
        what,
        addr: addr.to_string(),
        reason,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bad(e.to_string()))?
        .collect();
    let first = *resolved
        .first()
        .ok_or_else(|| bad("resolves to no address".into()))?;
    if !insecure && !resolved.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::InsecureListen {
            what,
            addr: addr.to_string(),
        });
    }
    Ok(first)
}

/// Connections the kernel may queue before they are accepted (capped by
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 1024: when a
/// thousand services connect at once, SYNs past the queue are dropped and
/// retried by their kernels a second later (measured: 1000 subscribers on
/// their own connections set up at 930/s). etcd (Go) asks for somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    let err = |source| Error::Bind { what, addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // As `TcpListener::bind` does: a restarted server rebinds at once.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)
}

/// A started server: both ports serving, the node open.
pub struct RunningServer {
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    node: RaftNode,
    health: HealthReporter,
    watch_shutdown: watch::Sender<bool>,
    client_task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    peer_task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    stop_client: oneshot::Sender<()>,
    stop_peer: oneshot::Sender<()>,
    /// The founder's cluster formation, while it waits for the other nodes.
    bootstrap_task: Option<JoinHandle<()>>,
    grace: Duration,
}

impl RunningServer {
    /// Binds, opens the node, serves, and joins or forms a cluster (see
    /// [`crate::bootstrap`]).
    pub async fn start(config: ServerConfig) -> Result<Self> {
        bootstrap::validate_peers(config.node_id, &config.peers)?;
        let client_want = resolve_listen("clients", &config.listen, config.insecure).await?;
        let peer_want = resolve_listen("peers", &config.peer_listen, config.insecure).await?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        let client_listener = bind("clients", client_want).await?;
        let peer_listener = bind("peers", peer_want).await?;
        let local = |l: &TcpListener, want: SocketAddr| l.local_addr().unwrap_or(want);
        let client_addr = local(&client_listener, client_want);
        let peer_addr = local(&peer_listener, peer_want);
        info!(
            node_id = config.node_id,
            client = %client_addr,
            peer = %peer_addr,
            data_dir = %config.data_dir.display(),
            "starting raftconf server"
        );
        // How others reach this node: as advertised, else as --peers lists
        // it, else the bound addresses.
        let me = NodeInfo {
            peer_addr: config
                .advertise_peer
                .clone()
                .or_else(|| config.peers.get(&config.node_id).cloned())
                .unwrap_or_else(|| peer_addr.to_string()),
            client_addr: config
                .advertise
                .clone()
                .unwrap_or_else(|| client_addr.to_string()),
        };

        let cluster = ClusterIdSource::new();
        let channels =
            PeerChannels::new(config.network.connect_timeout).with_source(config.network.source);
        let network = PeerNetwork::new(
            config.node_id,
            cluster.clone(),
            config.network.clone(),
            channels.clone(),
        );
        let node = RaftNode::open(node_config(&config), network).await?;
        cluster.set(node.state().clone());
        let peers = Peers::new(config.node_id, cluster, channels.clone());

        let (stop_peer, peer_stopped) = oneshot::channel::<()>();
        let gate = PeerGate::new();
        let peer_service =
            RaftPeerServer::new(PeerService::new(node.clone(), me.clone(), gate.clone()))
                .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let peer_task = tokio::spawn(
            Server::builder()
                .add_service(peer_service)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(peer_listener).with_nodelay(Some(true)),
                    async {
                        let _ = peer_stopped.await;
                    },
                ),
        );

        let initialized = node.is_initialized().await?;
        let dir = config.data_dir.display().to_string();
        let recorded = raftconf_raft::recorded_node_id(&config.data_dir)?;
        if let Some(owner) = recorded.filter(|owner| *owner != config.node_id) {
            let _ = stop_peer.send(());
            node.shutdown().await;
            return Err(Error::NotMyDataDir {
                node_id: config.node_id,
                recorded: owner,
                data_dir: dir,
            });
        }
        // A directory recorded as this node's but without Raft state was
        // started before and never held anything: the identity check passed
        // then, and asking again would refuse a node that lost nothing.
        if !initialized && recorded.is_none() {
            let others: BTreeMap<NodeId, String> = config
                .peers
                .iter()
                .filter(|(id, _)| **id != config.node_id)
                .map(|(id, addr)| (*id, addr.clone()))
                .collect();
            if let Err(e) = bootstrap::check_identity(&peers, config.node_id, &dir, &others).await {
                let _ = stop_peer.send(());
                node.shutdown().await;
                return Err(e);
            }
        }
        if recorded.is_none() {
            raftconf_raft::record_node_id(&config.data_dir, config.node_id)?;
        }
        gate.open();

        let (watch_shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ServiceContext {
            node: node.clone(),
            settings: config.services.clone(),
            delivery: Arc::new(DeliveryRegistry::new(DELIVERY_CAPACITY)),
            shutdown: shutdown_rx,
            leader_lost: node.leader_loss_signal(config.services.watch_leader_loss),
            forwarder: Forwarder::new(channels.clone()),
            peers: peers.clone(),
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::NotServing).await;
        let reflection_v1 = reflection()?.build_v1()?;
        let reflection_v1alpha = reflection()?.build_v1alpha()?;
        let (stop_client, client_stopped) = oneshot::channel::<()>();
        let client_task = tokio::spawn(
            Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(
                    // Room for the largest document text we accept, so an oversize
                    // put gets our limit's message, not the transport's.
                    ConfigServer::new(ConfigService::new(Arc::clone(&ctx)))
                        .max_decoding_message_size(MAX_CLIENT_REQUEST_BYTES),
                )
                .add_service(AdminServer::new(AdminService::new(Arc::clone(&ctx))))
                .add_service(SchemaServer::new(SchemaService::new(Arc::clone(&ctx))))
                .add_service(WatchServer::new(WatchService::new(Arc::clone(&ctx))))
                .add_service(ClusterServer::new(ClusterService::new(Arc::clone(&ctx))))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(client_listener)
                        .with_nodelay(Some(true))
                        .map(|accepted| accepted.map(CoalescingStream::new)),
                    async {
                        let _ = client_stopped.await;
                    },
                ),
        );

        let mut server = RunningServer {
            client_addr,
            peer_addr,
            node,
            health,
            watch_shutdown,
            client_task,
            peer_task,
            stop_client,
            stop_peer,
            bootstrap_task: None,
            grace: config.shutdown_grace,
        };
        let id = config.node_id;
        match bootstrap::plan(id, initialized, &config.peers, config.join) {
            Plan::Member => {
                if !config.peers.is_empty() {
                    info!("this node is already a cluster member; --peers is ignored");
                }
            }
            Plan::FoundSingle => {
                info!(node_id = id, node = %me, "initialising a new single-node cluster");
                server.node.initialize(BTreeMap::from([(id, me)])).await?;
            }
            Plan::FoundCluster => {
                let node = server.node.clone();
                let initial = config.peers.clone();
                server.bootstrap_task = Some(tokio::spawn(async move {
                    if let Err(e) = bootstrap::form_cluster(node, peers, me, initial).await {
                        tracing::error!(error = %e, "forming the cluster failed");
                    }
                }));
            }
            Plan::AwaitFounder { founder } => {
                info!(founder, "waiting for node {founder} to form the cluster");
            }
            Plan::AwaitAdd => {
                info!(node_id = id, node = %me, "waiting to be added to a cluster (raftconf cluster add-node)");
            }
        }
        Ok(server)
    }

    /// The bound client address (useful with port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The node.
    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    /// Waits until a leader and the cluster id are known, then reports the
    /// health of every service as `SERVING`.
    pub async fn wait_ready(&self) {
        let mut metrics = self.node.raft().metrics();
        loop {
            let has_leader = metrics.borrow().current_leader.is_some();
            if has_leader && !self.node.cluster_id().is_empty() {
                break;
            }
            // The cluster id lands with an apply, which also changes the
            // metrics; the timeout is a safety net, not the mechanism.
            let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
        }
        set_health(&self.health, ServingStatus::Serving).await;
    }

    /// Resolves if a gRPC server stops on its own (an error).
    async fn failed(&mut self) -> Error {
        let (what, res) = tokio::select! {
            r = &mut self.client_task => ("clients", r),
            r = &mut self.peer_task => ("peers", r),
        };
        match res {
            Ok(Ok(())) => Error::Raft(raftconf_raft::Error::Unavailable(format!(
                "the {what} server stopped unexpectedly"
            ))),
            Ok(Err(source)) => Error::Transport { what, source },
            Err(join) => Error::Raft(raftconf_raft::Error::Unavailable(format!(
                "the {what} server task failed: {join}"
            ))),
        }
    }

    /// Graceful shutdown, each step bounded by the grace period.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        set_health(&self.health, ServingStatus::NotServing).await;
        if let Some(task) = self.bootstrap_task.take() {
            task.abort();
        }
        let _ = self.watch_shutdown.send(true);
        let _ = self.stop_client.send(());
        stop_task("clients", &mut self.client_task, self.grace).await;
        self.node.shutdown().await;
        let _ = self.stop_peer.send(());
        stop_task("peers", &mut self.peer_task, self.grace).await;
        info!("stopped");
    }
}

async fn stop_task<T>(what: &'static str, task: &mut JoinHandle<T>, grace: Duration) {
    // A task that already ended (and was awaited by `failed`) must not be polled again.
    if task.is_finished() {
        return;
    }
    if tokio::time::timeout(grace, &mut *task).await.is_err() {
        warn!(
            what,
            ?grace,
            "requests still running after the grace period; dropping them"
        );
        task.abort();
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in CLIENT_SERVICES {
        health.set_service_status(name, status).await;
    }
}

fn reflection() -> Result<tonic_reflection::server::Builder<'static>> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(raftconf_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    // Advertise what this port serves (the peer service lives on the peer port).
    for name in CLIENT_SERVICES.iter().chain(&[
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]) {
        b = b.with_service_name(*name);
    }
    Ok(b)
}

/// Runs a server until `shutdown` resolves (or a port fails), then stops it gracefully.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut server = RunningServer::start(config).await?;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = server.wait_ready() => {
            info!(client = %server.client_addr, peer = %server.peer_addr, "ready to serve");
        }
        _ = &mut shutdown => {
            server.shutdown().await;
            return Ok(());
        }
    }
    let outcome = tokio::select! {
        _ = &mut shutdown => Ok(()),
        e = server.failed() => Err(e),
    };
    server.shutdown().await;
    outcome
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("Ctrl-C received"),
        _ = term => info!("SIGTERM received"),
    }
}
