//! [`RaftNode`]: one raftconf node's consensus and storage, opened on a data
//! directory, with the write, read-barrier and membership calls the server needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openraft::RaftNetworkFactory;

use crate::command::{Applied, Rejection, Request};
use crate::state_view::StateView;
use crate::types::{NodeId, NodeInfo, Raft, TypeConfig};
use crate::Result;

/// Tunables of one node. `Default` gives values suited to shared 2-core machines.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in the cluster.
    pub node_id: NodeId,
    /// Where the log, the state machine and snapshots live.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range (randomised within).
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and allow purging the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// How long the de-duplication table remembers a `(client_id, request_id)`.
    pub dedup_ttl: Duration,
    /// How many revisions the watch replay window keeps.
    pub replay_window: u64,
    /// Versions of each namespace kept in history.
    pub history_depth: u64,
    /// Capacity of the watch hub's fan-out queue (events) before a subscriber
    /// counts as lagging and is caught up from the replay window.
    pub watch_queue: usize,
    /// How often an idle watch gets a progress event.
    pub progress_interval: Duration,
    /// How long a write waits for its commit before answering `Unknown`.
    pub write_timeout: Duration,
}

impl NodeConfig {
    /// Defaults for `node_id` on `data_dir`.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            node_id,
            data_dir: data_dir.into(),
            heartbeat: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(1000), Duration::from_millis(1500)),
            snapshot_every: 10_000,
            dedup_ttl: Duration::from_secs(600),
            replay_window: 100_000,
            history_depth: 100,
            watch_queue: 4096,
            progress_interval: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a write did not get an apply answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Apply refused it; nothing changed.
    #[error(transparent)]
    Rejected(Rejection),
    /// This node is not the leader; the write was not proposed (safe to retry there).
    #[error("not the leader; leader is {leader_id:?}")]
    NotLeader {
        /// The leader, when known.
        leader_id: Option<NodeId>,
        /// Its addresses, when known.
        leader: Option<NodeInfo>,
    },
    /// Certainly not proposed (no leader, shutting down before proposing).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// May or may not have been applied: retry with the same request id to learn.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// Why a linearizable read could not be served here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// This node is not the leader.
    #[error("not the leader; leader is {leader_id:?}")]
    NotLeader {
        /// The leader, when known.
        leader_id: Option<NodeId>,
        /// Its addresses, when known.
        leader: Option<NodeInfo>,
    },
    /// No quorum answered in time, or shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What the node knows about leadership, from Raft metrics.
#[derive(Debug, Clone, Default)]
pub struct LeaderInfo {
    /// The current leader, if known.
    pub leader_id: Option<NodeId>,
    /// Its addresses, if it is a member.
    pub leader: Option<NodeInfo>,
    /// The current term.
    pub term: u64,
}

/// One raftconf node: openraft with raftconf's log store and state machine.
#[derive(Clone)]
pub struct RaftNode {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    raft: Raft,
    state: StateView,
}

impl RaftNode {
    /// Opens (or creates) the node's storage in `config.data_dir` and starts Raft.
    /// Does not initialise a cluster: see [`RaftNode::initialize`].
    pub async fn open<N>(config: NodeConfig, network: N) -> Result<Self>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let _ = (config, network);
        todo!("open")
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The configuration the node was opened with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The openraft handle (for the peer service: append_entries, vote, install_snapshot).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Read access to the applied state, and watches.
    pub fn state(&self) -> &StateView {
        &self.inner.state
    }

    /// Whether this node has ever been part of an initialised cluster.
    pub async fn is_initialized(&self) -> Result<bool> {
        todo!("is_initialized")
    }

    /// Initialises a new cluster with `members` (voters) and, once a leader is
    /// elected, records a freshly generated cluster id. Call once, on one node.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<()> {
        let _ = members;
        todo!("initialize")
    }

    /// Proposes `request` and waits for apply's answer (bounded by `write_timeout`).
    pub async fn write(&self, request: Request) -> std::result::Result<Applied, WriteError> {
        let _ = request;
        todo!("write")
    }

    /// Linearizable read barrier: confirms leadership with a quorum (concurrent
    /// callers share one round) and waits until this node has applied that far.
    /// Returns the applied store revision to serve the read at.
    pub async fn read_barrier(&self) -> std::result::Result<u64, ReadError> {
        todo!("read_barrier")
    }

    /// Leadership as this node sees it.
    pub fn leader(&self) -> LeaderInfo {
        todo!("leader")
    }

    /// The cluster id ("" until initialisation is applied).
    pub fn cluster_id(&self) -> String {
        self.inner.state.cluster_id()
    }

    /// Stops Raft; storage is closed when the last handle drops.
    pub async fn shutdown(&self) {
        todo!("shutdown")
    }
}
