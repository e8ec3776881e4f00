//! How a node becomes part of a cluster on start-up.
//!
//! - **Persisted state wins.** A node whose data directory holds Raft state
//!   (a log or a vote) is a member already: `--peers` is ignored.
//! - **No `--peers`, no `--join`:** a fresh node founds a single-node cluster
//!   (the quickstart).
//! - **`--peers 1=HOST:PORT,2=…`** (like etcd's `--initial-cluster`): the
//!   cluster forms exactly once, in whatever order the nodes start. Only the
//!   lowest id of the list (the *founder*) ever initialises: it says `Hello`
//!   to every other listed node until all of them have answered in one round
//!   (learning their client addresses), and initialises with all of them as
//!   voters only if neither it nor any of them holds Raft state. The others
//!   never initialise: the founder's vote request makes them members.
//! - **`--join`:** never initialise; wait to be added (`cluster add-node`).
//!
//! Before a node with an empty data directory lets any peer traffic in (its
//! [`crate::service::peer::PeerGate`] stays closed), it asks the peers it
//! knows whether the cluster already has a member with its id. If one does,
//! the node has lost its vote and log (it could help elect two leaders in one
//! term) and refuses to start ([`check_identity`]). Because the founder waits
//! for every node to answer, and a node answers only after that check, the
//! check never sees the membership of the cluster being formed for it.
//!
//! Once past that check the node records its id in the data directory
//! ([`raftconf_raft::record_node_id`]). A directory with that record but no
//! Raft state belongs to a node that was started before and never received a
//! vote request or an entry (both are fsynced before they are answered), so
//! it skips the check (it would otherwise be refused if it crashed between
//! the cluster forming and its first entry); a directory recorded as another
//! node's is refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use raftconf_api::internal::HelloReply;
use raftconf_raft::{NodeId, NodeInfo, RaftNode};
use tracing::{debug, info, warn};

use crate::peers::Peers;
use crate::{Error, Result};

/// Deadline of one `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two rounds of `Hello` while the founder waits for the others.
const HELLO_RETRY: Duration = Duration::from_millis(250);
/// How often the founder says whom it is still waiting for.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);

/// What a starting node does about cluster membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already a member (persisted Raft state): nothing to do.
    Member,
    /// Found a single-node cluster now.
    FoundSingle,
    /// Form the cluster of `--peers` once every node answers.
    FoundCluster,
    /// Wait for the founder (node `founder`) to form the cluster.
    AwaitFounder {
        /// The lowest id of `--peers`.
        founder: NodeId,
    },
    /// `--join`: wait to be added by an operator.
    AwaitAdd,
}

/// Decides the [`Plan`] of node `me`.
pub fn plan(me: NodeId, initialized: bool, peers: &BTreeMap<NodeId, String>, join: bool) -> Plan {
    if initialized {
        return Plan::Member;
    }
    if join {
        return Plan::AwaitAdd;
    }
    match peers.keys().next() {
        None => Plan::FoundSingle,
        Some(&founder) if founder == me => Plan::FoundCluster,
        Some(&founder) => Plan::AwaitFounder { founder },
    }
}

/// Checks `--peers`: it must name this node (when given), with `HOST:PORT` addresses.
pub fn validate_peers(me: NodeId, peers: &BTreeMap<NodeId, String>) -> Result<()> {
    if peers.is_empty() {
        return Ok(());
    }
    if !peers.contains_key(&me) {
        let ids: Vec<String> = peers.keys().map(u64::to_string).collect();
        return Err(Error::Peers(format!(
            "it lists nodes {} but not this node's id {me}",
            ids.join(", ")
        )));
    }
    for (id, addr) in peers {
        if *id == 0 {
            return Err(Error::Peers(
                "node id 0 is not allowed (ids start at 1)".into(),
            ));
        }
        let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(Error::Peers(format!(
                "the address {addr:?} of node {id} is not HOST:PORT"
            )));
        }
    }
    Ok(())
}

/// Parses `1=HOST:PORT,2=HOST:PORT,…` (the `--peers` syntax).
pub fn parse_peers(text: &str) -> std::result::Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} in {part:?} is not a node id"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    Ok(peers)
}

/// Says `Hello` to every node of `targets` at once; each answer or error by id.
async fn hello_all(
    peers: &Peers,
    targets: &BTreeMap<NodeId, String>,
) -> Vec<(NodeId, String, std::result::Result<HelloReply, String>)> {
    let calls = targets.iter().map(|(id, addr)| async move {
        let answer = match peers.hello(addr, HELLO_TIMEOUT).await {
            Ok(reply) if reply.node_id != *id => Err(format!(
                "the node at {addr} says it is node {}, but --peers lists node {id} there",
                reply.node_id
            )),
            Ok(reply) => Ok(reply),
            Err(status) => Err(status.message().to_string()),
        };
        (*id, addr.clone(), answer)
    });
    join_all(calls).await
}

/// Refuses to start node `me`, whose data directory is empty, when a peer it
/// can reach already counts it as a member. One round, each call bounded by
/// [`HELLO_TIMEOUT`]; peers that do not answer are skipped.
pub async fn check_identity(
    peers: &Peers,
    me: NodeId,
    data_dir: &str,
    others: &BTreeMap<NodeId, String>,
) -> Result<()> {
    for (id, addr, answer) in hello_all(peers, others).await {
        match answer {
            Ok(reply) if reply.member_ids.contains(&me) => {
                return Err(Error::IdentityTaken {
                    node_id: me,
                    data_dir: data_dir.to_string(),
                    seen_by: id,
                    seen_at: addr,
                });
            }
            Ok(_) => debug!(peer = id, "peer does not know this node's id"),
            Err(e) => debug!(peer = id, error = %e, "peer did not answer the identity check"),
        }
    }
    Ok(())
}

/// The founder's loop: says `Hello` to every other node of `initial` until
/// all of them answer in one round, then initialises the cluster with every
/// node as a voter, unless this node or any other already holds Raft state
/// (then a cluster exists and this node waits to be contacted).
pub async fn form_cluster(
    node: RaftNode,
    peers: Peers,
    me: NodeInfo,
    initial: BTreeMap<NodeId, String>,
) -> Result<()> {
    let my_id = node.node_id();
    let others: BTreeMap<NodeId, String> = initial
        .iter()
        .filter(|(id, _)| **id != my_id)
        .map(|(id, addr)| (*id, addr.clone()))
        .collect();
    info!(
        node_id = my_id,
        peers = ?initial,
        "forming the cluster once every node answers"
    );
    let mut last_log = Instant::now();
    loop {
        if node.is_initialized().await? {
            info!("this node was contacted by a cluster; not forming a new one");
            return Ok(());
        }
        let mut members = BTreeMap::from([(my_id, me.clone())]);
        let mut missing: Vec<String> = Vec::new();
        for (id, addr, answer) in hello_all(&peers, &others).await {
            match answer {
                Ok(reply) if reply.initialized => {
                    info!(
                        peer = id,
                        cluster_id = %reply.cluster_id,
                        "node {id} already belongs to a cluster; not forming a new one, \
                         waiting to be contacted"
                    );
                    return Ok(());
                }
                Ok(reply) => {
                    if reply.peer_addr != addr {
                        debug!(
                            peer = id,
                            advertised = %reply.peer_addr,
                            listed = %addr,
                            "peer advertises another peer address; using the --peers one"
                        );
                    }
                    members.insert(
                        id,
                        NodeInfo {
                            peer_addr: addr,
                            client_addr: reply.client_addr,
                        },
                    );
                }
                Err(e) => missing.push(format!("node {id} at {addr}: {e}")),
            }
        }
        if missing.is_empty() {
            info!(members = ?members, "every node answered; initialising the cluster");
            return match node.initialize(members).await {
                Ok(()) => Ok(()),
                // Contacted between the check and now: a cluster exists.
                Err(_) if node.is_initialized().await? => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        if last_log.elapsed() >= WAITING_LOG_EVERY {
            warn!(
                waiting_for = %missing.join("; "),
                "still waiting for every node of --peers to answer before forming the cluster"
            );
            last_log = Instant::now();
        }
        tokio::time::sleep(HELLO_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(text: &str) -> BTreeMap<NodeId, String> {
        parse_peers(text).expect("valid")
    }

    #[test]
    fn peers_parse_and_validate() {
        let p = peers("2=127.0.0.1:7171, 1=127.0.0.1:7071,3=h:7271");
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(p[&2], "127.0.0.1:7171");
        assert!(validate_peers(1, &p).is_ok());
        assert!(validate_peers(4, &p).unwrap_err().to_string().contains("4"));
        assert!(parse_peers("1=a:1,1=b:2").unwrap_err().contains("twice"));
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("1:a:1").is_err());
        assert!(validate_peers(1, &peers("1=nohost")).is_err());
        assert!(validate_peers(1, &peers("1=h:0")).is_err());
        assert!(validate_peers(1, &BTreeMap::new()).is_ok());
    }

    #[test]
    fn only_the_lowest_id_of_a_fresh_cluster_founds_it() {
        let p = peers("1=a:1,2=b:2,3=c:3");
        assert_eq!(plan(1, false, &p, false), Plan::FoundCluster);
        assert_eq!(plan(2, false, &p, false), Plan::AwaitFounder { founder: 1 });
        assert_eq!(
            plan(1, true, &p, false),
            Plan::Member,
            "persisted state wins"
        );
        assert_eq!(plan(1, false, &BTreeMap::new(), false), Plan::FoundSingle);
        assert_eq!(plan(1, false, &BTreeMap::new(), true), Plan::AwaitAdd);
        assert_eq!(
            plan(1, false, &p, true),
            Plan::AwaitAdd,
            "--join never founds"
        );
    }
}
