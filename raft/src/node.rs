//! [`RaftNode`]: one raftconf node's consensus and storage, opened on a data
//! directory, with the write, read-barrier and membership calls the server needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{ChangeMembers, RaftNetworkFactory, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};

use crate::command::{Applied, Command, Proposal, Rejection, Request, ENTRY_FORMAT_VERSION};
use crate::log_store::LogStore;
use crate::read_lease::{Holding, Leadership, ReadLease};
use crate::state_machine::StateMachine;
use crate::state_view::StateView;
use crate::types::{NodeId, NodeInfo, Raft, TypeConfig};
use crate::{Error, Result};

/// Tunables of one node. `Default` gives values suited to shared 2-core machines.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in the cluster.
    pub node_id: NodeId,
    /// Where the log, the state machine and snapshots live.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range (randomised within). A follower that hears
    /// from no leader calls an election after the leader lease (openraft: the
    /// maximum of this range) plus a random timeout within it: with 500–750
    /// ms, 1.25–1.5 s after the leader's last heartbeat (etcd: 1–2 s).
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and allow purging the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// How long the de-duplication table remembers a `(client_id, request_id)`.
    pub dedup_ttl: Duration,
    /// How many revisions the watch replay window keeps.
    pub replay_window: u64,
    /// With a value, replay events older than this (leader-stamped time) are
    /// dropped too, even within `replay_window`.
    pub replay_max_age: Option<Duration>,
    /// Versions of each namespace kept in history.
    pub history_depth: u64,
    /// Capacity of the watch hub's fan-out queue (events) before a subscriber
    /// counts as lagging and is caught up from the replay window.
    pub watch_queue: usize,
    /// How often an idle watch gets a progress event.
    pub progress_interval: Duration,
    /// How long a write waits for its commit before answering `Unknown`.
    pub write_timeout: Duration,
    /// How long after a confirmed read round the leader serves linearizable
    /// reads without another round (`None`: every read takes a round). Must
    /// be shorter than `election_timeout.1`, the followers' leader lease; see
    /// [`crate::read_lease`].
    pub read_lease: Option<Duration>,
}

impl NodeConfig {
    /// Defaults for `node_id` on `data_dir`.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            node_id,
            data_dir: data_dir.into(),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(750)),
            snapshot_every: 10_000,
            dedup_ttl: Duration::from_secs(600),
            replay_window: 10_000,
            replay_max_age: None,
            history_depth: 100,
            watch_queue: 4096,
            progress_interval: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            // Half the followers' lease (750 ms): the rest covers clocks of
            // different hosts ticking at different rates, many times over.
            read_lease: Some(Duration::from_millis(375)),
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

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Its addresses.
    pub info: NodeInfo,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// Maps a membership change's result (errors as for writes).
fn membership_result(
    result: std::result::Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
    >,
) -> std::result::Result<(), WriteError> {
    match result {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader {
                leader_id: f.leader_id,
                leader: f.leader_node,
            })
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(WriteError::Rejected(Rejection::Invalid {
                reason: e.to_string(),
            }))
        }
        Err(RaftError::Fatal(e)) => Err(WriteError::Unknown(format!("raft stopped: {e}"))),
    }
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
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    raft: Raft,
    state: StateView,
    /// Linearizable reads queue here; see [`read_batcher`].
    reads: mpsc::Sender<oneshot::Sender<std::result::Result<u64, ReadError>>>,
    /// Lets reads skip the queue while a confirmed lease holds.
    lease: Arc<ReadLease>,
    /// Writes queue here; see [`proposer`].
    writes: mpsc::Sender<PendingWrite>,
    /// Held by whoever has a proposal in flight: the proposer, or a write
    /// proposed on its caller's task (see [`RaftNode::write`]).
    proposing: Arc<tokio::sync::Mutex<()>>,
}

/// Name of the file in the data directory that records whose it is.
const NODE_ID_FILE: &str = "node-id";

/// The node id recorded in `data_dir` by [`record_node_id`], if any.
pub fn recorded_node_id(data_dir: &Path) -> Result<Option<NodeId>> {
    let Some(bytes) = crate::log_store::atomic_file::read(data_dir, NODE_ID_FILE)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        Error::Storage(format!(
            "{}: not a node id record",
            data_dir.join(NODE_ID_FILE).display()
        ))
    })?;
    Ok(Some(NodeId::from_le_bytes(bytes)))
}

/// Records, durably, that `data_dir` belongs to node `id`: a node whose data
/// directory holds this record but no Raft state was started before and never
/// received anything (a vote or a log entry is fsynced before it is answered),
/// whereas a directory without it is new or was wiped.
pub fn record_node_id(data_dir: &Path, id: NodeId) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    crate::log_store::atomic_file::write(data_dir, NODE_ID_FILE, &id.to_le_bytes())?;
    Ok(())
}

/// Opens the log store and the state machine of `config.data_dir` (creating it).
pub async fn open_storage(config: &NodeConfig) -> Result<(LogStore, StateMachine)> {
    std::fs::create_dir_all(&config.data_dir)?;
    let log = LogStore::open(&config.data_dir.join("log"))?;
    let sm = StateMachine::open(config)?;
    Ok((log, sm))
}

impl RaftNode {
    /// Opens (or creates) the node's storage in `config.data_dir` and starts Raft.
    /// Does not initialise a cluster: see [`RaftNode::initialize`].
    pub async fn open<N>(config: NodeConfig, network: N) -> Result<Self>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        if config
            .read_lease
            .is_some_and(|lease| lease >= config.election_timeout.1)
        {
            return Err(Error::Storage(format!(
                "invalid raft configuration: read lease {:?} must be shorter than the election timeout's maximum {:?} \
                 (the followers' leader lease)",
                config.read_lease, config.election_timeout.1
            )));
        }
        let (mut log, sm) = open_storage(&config).await?;
        let restored = restored_leadership(&mut log, config.node_id).await?;
        let state = sm.view();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let raft_config = openraft::Config {
            cluster_name: "raftconf".into(),
            heartbeat_interval: ms(config.heartbeat),
            election_timeout_min: ms(config.election_timeout.0),
            election_timeout_max: ms(config.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every.min(1000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Storage(format!("invalid raft configuration: {e}")))?;
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| Error::Storage(format!("raft failed to start: {e}")))?;
        let (reads, reads_rx) = mpsc::channel(4096);
        let lease = Arc::new(ReadLease::new(config.read_lease));
        tokio::spawn(read_batcher(
            raft.clone(),
            reads_rx,
            lease.clone(),
            config.write_timeout,
            restored,
        ));
        let (writes, writes_rx) = mpsc::channel(MAX_PROPOSAL_WRITES * 4);
        let proposing = Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(proposer(
            raft.clone(),
            writes_rx,
            Arc::clone(&proposing),
            config.write_timeout,
        ));
        tokio::spawn(record_cluster_id(
            raft.clone(),
            state.clone(),
            config.node_id,
        ));
        tracing::info!(
            node_id = config.node_id,
            data_dir = %config.data_dir.display(),
            revision = state.revision(),
            applied_index = state.applied_index(),
            "raft node opened"
        );
        Ok(RaftNode {
            inner: Arc::new(Inner {
                config,
                raft,
                state,
                reads,
                lease,
                writes,
                proposing,
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The configuration the node was opened with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The openraft handle (for the peer service: append_entries and
    /// install_snapshot; votes go through [`RaftNode::vote`]).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Handles a candidate's vote request. Ends this node's read lease first:
    /// openraft grants a leader's vote without a lease, and a candidate that
    /// wins with it may commit writes that a leased read here would miss.
    /// Revoked again once openraft has handled the request, so that a read
    /// round that ran meanwhile (its heartbeats possibly confirmed by a quorum
    /// just before this node gave its vote away) grants no lease either.
    pub async fn vote(
        &self,
        request: VoteRequest<NodeId>,
    ) -> std::result::Result<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.inner.lease.revoke();
        let answer = self.inner.raft.vote(request).await;
        self.inner.lease.revoke();
        answer
    }

    /// Linearizable read rounds (heartbeats to a quorum) this node has run;
    /// reads served on a lease take none.
    pub fn read_rounds(&self) -> u64 {
        self.inner.lease.rounds()
    }

    /// Read access to the applied state, and watches.
    pub fn state(&self) -> &StateView {
        &self.inner.state
    }

    /// Whether this node has ever been part of an initialised cluster.
    pub async fn is_initialized(&self) -> Result<bool> {
        self.inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Initialises a new cluster with `members` (voters). Once a leader is
    /// elected it records a freshly generated cluster id. Call once, on one node.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<()> {
        self.inner
            .raft
            .initialize(members)
            .await
            .map_err(|e| Error::Unavailable(format!("cluster initialisation failed: {e}")))
    }

    /// Proposes `request` and waits for apply's answer (bounded by `write_timeout`).
    /// Writes that arrive while an entry is being made durable are proposed
    /// together in the next one (see [`proposer`]). A write that finds no
    /// proposal in flight and none queued is proposed here, on the caller's
    /// task: the proposer would only pass it on, a hand-off to its task and
    /// one back for the answer.
    pub async fn write(&self, request: Request) -> std::result::Result<Applied, WriteError> {
        if let Some(why) = self.removed() {
            return Err(WriteError::Unavailable(why));
        }
        let timeout = self.inner.config.write_timeout;
        let writes = &self.inner.writes;
        if writes.capacity() == writes.max_capacity() {
            if let Ok(_proposing) = self.inner.proposing.try_lock() {
                let mut answers = propose(&self.inner.raft, vec![request], timeout).await;
                return answers
                    .pop()
                    .unwrap_or_else(|| Err(WriteError::Unknown("apply gave no answer".into())));
            }
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .writes
            .send((request, tx))
            .await
            .map_err(|_| WriteError::Unavailable("node is shutting down".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(WriteError::Unknown(format!(
                "not committed within {timeout:?}; it may still be applied"
            ))),
            Ok(Err(_)) => Err(WriteError::Unknown(
                "the node stopped while the write was in flight".into(),
            )),
            Ok(Ok(result)) => result,
        }
    }

    /// Linearizable read barrier: confirms leadership with a quorum (concurrent
    /// callers share one round) and waits until this node has applied that far.
    /// Returns the applied store revision to serve the read at.
    pub async fn read_barrier(&self) -> std::result::Result<u64, ReadError> {
        self.read_index().await?;
        Ok(self.inner.state.revision())
    }

    /// The read index, on the leader: confirms leadership with a quorum
    /// (concurrent callers share one round) and returns the log index a
    /// reader must have applied to serve a linearizable read. This node has
    /// applied it when this returns. A follower asks the leader for it and
    /// then calls [`RaftNode::wait_applied`].
    pub async fn read_index(&self) -> std::result::Result<u64, ReadError> {
        if let Some(why) = self.removed() {
            return Err(ReadError::Unavailable(why));
        }
        let leadership = Leadership::of(&self.inner.raft.metrics().borrow());
        if let Some(holding) = self.inner.lease.holding(leadership) {
            if let Some(index) = self.leased_read_index(holding).await {
                let timeout = self.inner.config.write_timeout;
                self.wait_applied(index, timeout).await?;
                return Ok(index);
            }
        }
        let (tx, rx) = oneshot::channel();
        let closed = || ReadError::Unavailable("node is shutting down".into());
        self.inner.reads.send(tx).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// The read index while the read lease holds (see [`crate::read_lease`]):
    /// the commit index as openraft's core holds it, or the applied index if
    /// higher. `None` when the lease, or this node's leadership in its term,
    /// ended meanwhile: the read then takes a round.
    async fn leased_read_index(&self, holding: Holding) -> Option<u64> {
        let me = self.node_id();
        let (committed, vote) = self
            .inner
            .raft
            .with_raft_state(|st| (st.committed.map(|l| l.index), *st.vote_ref()))
            .await
            .ok()?;
        let leads =
            vote.committed && vote.leader_id.node_id == me && vote.leader_id.term == holding.term();
        if !leads || !self.inner.lease.still(&holding) {
            return None;
        }
        Some(committed.unwrap_or(0).max(self.inner.state.applied_index()))
    }

    /// Waits (at most `timeout`) until this node has applied log index
    /// `index`, and returns the store revision to serve a read at.
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> std::result::Result<u64, ReadError> {
        let state = &self.inner.state;
        if state.wait_for_applied_index(index, timeout).await {
            Ok(state.revision())
        } else {
            Err(ReadError::Unavailable(format!(
                "this node has applied log index {}, not yet {index}, after {timeout:?}",
                state.applied_index()
            )))
        }
    }

    /// Adds `id` as a learner (it receives the log, does not vote) and, when
    /// `wait_caught_up`, waits until it has caught up with the leader.
    pub async fn add_learner(
        &self,
        id: NodeId,
        node: NodeInfo,
        wait_caught_up: bool,
    ) -> std::result::Result<(), WriteError> {
        membership_result(self.inner.raft.add_learner(id, node, wait_caught_up).await)
    }

    /// Makes learner `id` a voter (joint consensus).
    pub async fn promote(&self, id: NodeId) -> std::result::Result<(), WriteError> {
        self.membership_change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    /// Removes `id` from the cluster, voter or learner (the leader included:
    /// it steps down once the change is committed).
    pub async fn remove_node(&self, id: NodeId) -> std::result::Result<(), WriteError> {
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        if is_voter {
            self.membership_change(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await
        } else {
            self.membership_change(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await
        }
    }

    /// Changes the voters. The read lease ends before and again after: a
    /// lease confirmed by a quorum of one configuration says nothing about
    /// who may be elected in the next.
    async fn membership_change(
        &self,
        change: ChangeMembers<NodeId, NodeInfo>,
    ) -> std::result::Result<(), WriteError> {
        self.inner.lease.revoke();
        let result = self.inner.raft.change_membership(change, false).await;
        self.inner.lease.revoke();
        membership_result(result)
    }

    /// The members of the cluster as this node knows them (the effective
    /// membership config: during a joint change, voters of either config).
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, info)| Member {
                id: *id,
                info: info.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// `Some(reason)` when this node knows a membership that no longer
    /// includes it: it was removed. It may still believe it leads (openraft
    /// 0.9 keeps a removed leader's role), so it must not take writes or
    /// confirm reads: clients go to the members instead.
    pub fn removed(&self) -> Option<String> {
        let members = self.members();
        let me = self.node_id();
        (!members.is_empty() && !members.iter().any(|m| m.id == me)).then(|| {
            format!(
                "node {me} is no longer a member of the cluster (it was removed); use another node"
            )
        })
    }

    /// A signal that is `true` while this node has had no usable leader (none
    /// known, or it was removed) for longer than `after` without a break, and
    /// `false` again once a leader is known. One task follows openraft's
    /// metrics for every holder: a watch stream waiting on it is woken when
    /// the signal flips, not at each metrics update (several per write).
    /// Stays as it is after Raft stopped (shutdown ends streams another way).
    pub fn leader_loss_signal(&self, after: Duration) -> watch::Receiver<bool> {
        let me = self.node_id();
        let leaderless = move |m: &openraft::RaftMetrics<NodeId, NodeInfo>| {
            let membership = m.membership_config.membership();
            let removed = membership.nodes().next().is_some() && membership.get_node(&me).is_none();
            m.current_leader.is_none() || removed
        };
        let mut metrics = self.inner.raft.metrics();
        let (lost, signal) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let waited = tokio::select! {
                    waited = metrics.wait_for(|m| leaderless(m)) => waited.is_ok(),
                    () = lost.closed() => false,
                };
                if !waited {
                    return;
                }
                let regained = tokio::time::timeout(after, metrics.wait_for(|m| !leaderless(m)))
                    .await
                    .map(|r| r.is_ok());
                match regained {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(_) => {}
                }
                lost.send_replace(true);
                let regained = tokio::select! {
                    regained = metrics.wait_for(|m| !leaderless(m)) => regained.is_ok(),
                    () = lost.closed() => false,
                };
                if !regained {
                    return;
                }
                lost.send_replace(false);
            }
        });
        signal
    }

    /// openraft's metrics: roles, replication progress of each follower (on
    /// the leader), last log and applied indexes.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, NodeInfo> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Leadership as this node sees it.
    pub fn leader(&self) -> LeaderInfo {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let me = self.node_id();
        let membership = m.membership_config.membership();
        if membership.nodes().next().is_some() && membership.get_node(&me).is_none() {
            // Removed: whatever it believes, it leads nothing clients should use.
            return LeaderInfo {
                leader_id: None,
                leader: None,
                term: m.current_term,
            };
        }
        LeaderInfo {
            leader_id: m.current_leader,
            leader: m
                .current_leader
                .and_then(|id| m.membership_config.membership().get_node(&id).cloned()),
            term: m.current_term,
        }
    }

    /// The cluster id ("" until initialisation is applied).
    pub fn cluster_id(&self) -> String {
        self.inner.state.cluster_id()
    }

    /// Ends watches and stops Raft; storage is closed when the last handle drops.
    pub async fn shutdown(&self) {
        self.inner.state.shutdown_watches();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// A write waiting for its turn, and where its answer goes.
type PendingWrite = (
    Request,
    oneshot::Sender<std::result::Result<Applied, WriteError>>,
);

/// Most bytes of documents and messages in one proposal (one log entry), so
/// entries stay well below the peer message limit. A single larger write is
/// proposed alone.
const MAX_PROPOSAL_BYTES: usize = 2 * 1024 * 1024;
/// Most writes in one proposal.
const MAX_PROPOSAL_WRITES: usize = 1024;

/// Group commit. openraft 0.9 appends one entry per `client_write` and waits
/// for its fsync before taking the next, so concurrent writes each paid a
/// whole fsync. This loop proposes one entry at a time, carrying every write
/// that queued meanwhile; apply answers each write separately, in order.
/// `proposing` is held while an entry is in flight, by this loop or by a
/// write proposed on its caller's task.
async fn proposer(
    raft: Raft,
    mut rx: mpsc::Receiver<PendingWrite>,
    proposing: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
) {
    let mut carry: Option<PendingWrite> = None;
    loop {
        let first = match carry.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let _proposing = proposing.lock().await;
        let mut bytes = approx_size(&first.0);
        // Sized for what is queued: growing it by pushes was 2.5 % of the
        // server's CPU at 64 concurrent writers (a request is large to move).
        let mut batch = Vec::with_capacity((rx.len() + 1).min(MAX_PROPOSAL_WRITES));
        batch.push(first);
        while batch.len() < MAX_PROPOSAL_WRITES {
            let Ok(next) = rx.try_recv() else { break };
            let size = approx_size(&next.0);
            if bytes + size > MAX_PROPOSAL_BYTES {
                carry = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        let (requests, waiters): (Vec<Request>, Vec<_>) = batch.into_iter().unzip();
        let answers = propose(&raft, requests, timeout).await;
        for (waiter, answer) in waiters.into_iter().zip(answers) {
            let _ = waiter.send(answer);
        }
    }
}

/// Proposes `requests` as one entry and returns apply's answer to each, in
/// order (all the same error if the entry was not applied, or not known to be).
async fn propose(
    raft: &Raft,
    requests: Vec<Request>,
    timeout: Duration,
) -> Vec<std::result::Result<Applied, WriteError>> {
    let n = requests.len();
    let outcome = tokio::time::timeout(timeout, raft.client_write(Proposal { requests })).await;
    let failure = match outcome {
        Ok(Ok(resp)) if resp.data.responses.len() == n => {
            return resp
                .data
                .responses
                .into_iter()
                .map(|response| response.outcome.map_err(WriteError::Rejected))
                .collect();
        }
        Ok(Ok(resp)) => WriteError::Unknown(format!(
            "apply answered {} of {n} writes",
            resp.data.responses.len()
        )),
        Err(_) => WriteError::Unknown(format!(
            "not committed within {timeout:?}; it may still be applied"
        )),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            WriteError::NotLeader {
                leader_id: f.leader_id,
                leader: f.leader_node,
            }
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            WriteError::Unavailable(e.to_string())
        }
        Ok(Err(RaftError::Fatal(e))) => WriteError::Unknown(format!("raft stopped: {e}")),
    };
    vec![Err(failure); n]
}

/// Roughly how many bytes a request adds to an entry.
fn approx_size(request: &Request) -> usize {
    let payload = match &request.command {
        Command::Put { value, .. } => value.len(),
        _ => 0,
    };
    payload + request.message.len() + request.author.len() + request.client_id.len() + 128
}

/// Leadership a node takes back at start-up without an election: openraft
/// 0.9 does so when the persisted vote is the node's own committed one.
#[derive(Debug, Clone, Copy)]
struct RestoredLeadership {
    /// The term it leads again.
    term: u64,
    /// The last log index it held at start-up.
    last_index: u64,
}

/// Whether this node will restore its leadership (see [`RestoredLeadership`]).
///
/// Why it matters: the committed index is not persisted, and openraft's read
/// index for such a leader is the first entry of its term, not what was
/// committed before the restart. The state machine (sled buffers its writes)
/// may restart behind the log, so that leader could serve a "linearizable"
/// read that misses a write acknowledged before the crash (the fault suite
/// found exactly this after killing every node). Reads on it therefore wait
/// until it has applied everything it held at start-up: every acknowledged
/// write is in its log, since a leader acknowledges only what it appended.
async fn restored_leadership(log: &mut LogStore, me: NodeId) -> Result<Option<RestoredLeadership>> {
    use openraft::storage::RaftLogStorage;
    let vote = log
        .read_vote()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    let state = log
        .get_log_state()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    Ok(match (vote, state.last_log_id) {
        (Some(v), Some(last)) if v.committed && v.leader_id.node_id == me => {
            Some(RestoredLeadership {
                term: v.leader_id.term,
                last_index: last.index,
            })
        }
        _ => None,
    })
}

/// Serves linearizable reads in rounds: every read that arrived while a round
/// was running shares the next one, which starts after they all arrived (a
/// round that started earlier could miss a write acknowledged before the read
/// began). One `ensure_linearizable` = one heartbeat round to the voters.
/// A round that confirms this node's leadership renews its read lease.
async fn read_batcher(
    raft: Raft,
    mut rx: mpsc::Receiver<oneshot::Sender<std::result::Result<u64, ReadError>>>,
    lease: Arc<ReadLease>,
    timeout: Duration,
    restored: Option<RestoredLeadership>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let round = lease.start_round(Leadership::of(&raft.metrics().borrow()));
        let result = match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
            Err(_) => Err(ReadError::Unavailable(format!(
                "leadership not confirmed by a quorum within {timeout:?}"
            ))),
            Ok(Ok(read_log_id)) => {
                let index = read_log_id.map_or(0, |l| l.index);
                read_floor(&raft, restored, index, timeout).await
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(ReadError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(ReadError::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => {
                Err(ReadError::Unavailable(format!("raft stopped: {e}")))
            }
        };
        if result.is_ok() {
            lease.confirm(round, Leadership::of(&raft.metrics().borrow()));
        }
        for tx in waiting {
            let _ = tx.send(result.clone());
        }
    }
}

/// The read index `index`, raised to everything a restored leader held at
/// start-up while it still leads that term (waiting until it has applied it).
async fn read_floor(
    raft: &Raft,
    restored: Option<RestoredLeadership>,
    index: u64,
    timeout: Duration,
) -> std::result::Result<u64, ReadError> {
    let Some(r) = restored else {
        return Ok(index);
    };
    let term = raft.metrics().borrow().vote.leader_id.term;
    if term != r.term || index >= r.last_index {
        return Ok(index);
    }
    raft.wait(Some(timeout))
        .applied_index_at_least(Some(r.last_index), "read after a restored leadership")
        .await
        .map_err(|e| {
            ReadError::Unavailable(format!(
                "this leader has not yet applied what it held at start-up (log index {}): {e}",
                r.last_index
            ))
        })?;
    Ok(r.last_index)
}

/// While this node leads a cluster without a recorded cluster id, proposes one.
/// Apply keeps the first one recorded, so duplicates are harmless.
async fn record_cluster_id(raft: Raft, state: StateView, node_id: NodeId) {
    let mut metrics = raft.metrics();
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            m.current_leader == Some(node_id) && m.state == ServerState::Leader
        };
        if leading && state.cluster_id().is_empty() {
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            let request = Request {
                format: ENTRY_FORMAT_VERSION,
                client_id: String::new(),
                request_id: 0,
                author: format!("node-{node_id}"),
                time_ms: 0,
                message: "cluster initialised".into(),
                command: Command::InitCluster { cluster_id },
            };
            match raft
                .client_write(Proposal {
                    requests: vec![request],
                })
                .await
            {
                Ok(_) => tracing::info!(cluster_id = %state.cluster_id(), "cluster id recorded"),
                Err(e) => {
                    tracing::debug!(error = %e, "recording the cluster id failed; will retry")
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
