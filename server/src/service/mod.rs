//! The gRPC services, one module each, and what they share.
//!
//! - [`config`]: Get, List, Put, Delete, History of namespaces.
//! - [`admin`]: tenants and environments.
//! - [`schema`]: the JSON Schema of each `tenant/namespace`.
//! - [`watch`]: the bidirectional watch stream.
//! - [`clients`]: delivery tracking (`Watch.Clients`): which subscribers run
//!   which revision, gathered from every node.
//! - [`cluster`]: the `Status` of this node and its cluster.
//! - [`peer`]: Raft traffic between nodes (on the peer port only).
//!
//! Every service holds an `Arc<`[`ServiceContext`]`>`: the node, the tunables,
//! the delivery registry, the shutdown signal, and the means to reach the
//! leader ([`crate::forward`]). Service methods do their work in a function
//! returning [`ApiError`], and convert it to a `Status` in one call
//! ([`ServiceContext::status`]) so every error carries the header.
//!
//! Any node answers: writes on a node that does not lead are forwarded to
//! the leader ([`crate::forward::serve_write`]); linearizable reads get a
//! read index from the leader and are served from the local state
//! ([`ServiceContext::read_revision`]).

pub mod admin;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod peer;
pub mod pump_group;
pub mod schema;
pub mod shared_events;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftconf_api::v1::{Consistency, ResponseHeader, WriteId};
use raftconf_raft::RaftNode;
use raftconf_schema::MAX_MESSAGE_BYTES;
use tokio::sync::watch as signal;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::delivery::DeliveryRegistry;
use crate::forward::{self, Forwarder};
use crate::metadata;
use crate::peers::Peers;
use crate::status::{self, ApiError};

/// Tunables of the client-facing services.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How long a watch stream may stay unable to take the next message before
    /// it is ended with `RESOURCE_EXHAUSTED` (the subscriber resumes later).
    pub watch_send_timeout: Duration,
    /// Capacity of each watch stream's outgoing queue (messages).
    pub watch_queue: usize,
    /// How long a serializable read waits for `min_revision` to be applied here.
    pub min_revision_wait: Duration,
    /// How long a watch on a node that is not the leader waits for the node
    /// to apply the revision before its start revision.
    pub watch_catch_up_wait: Duration,
    /// How long a write or a linearizable read waits for a leader to be
    /// elected (or to become reachable) before it fails with `UNAVAILABLE`.
    pub election_wait: Duration,
    /// How long a node may be without a leader before it ends its watch
    /// streams (so their subscribers resume on a node that has one), and ends
    /// at once a stream opened while the loss lasts: longer than an election
    /// (1-1.5 s) plus the old leader's lease (1.5 s).
    pub watch_leader_loss: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            watch_send_timeout: Duration::from_secs(30),
            watch_queue: 256,
            min_revision_wait: Duration::from_secs(5),
            watch_catch_up_wait: Duration::from_secs(5),
            watch_leader_loss: Duration::from_secs(4),
            election_wait: Duration::from_secs(3),
        }
    }
}

/// What every service shares.
pub struct ServiceContext {
    /// The Raft node whose state is served.
    pub node: RaftNode,
    /// Tunables.
    pub settings: ServiceSettings,
    /// Acks and refusals reported by watch subscribers.
    pub delivery: Arc<DeliveryRegistry>,
    /// Becomes `true` when the server shuts down: watch streams end with
    /// `UNAVAILABLE` so their clients resume on another node.
    pub shutdown: signal::Receiver<bool>,
    /// `true` while this node has been without a leader for longer than
    /// `settings.watch_leader_loss`: watch streams end so their clients
    /// resume on a node that has one.
    pub leader_lost: signal::Receiver<bool>,
    /// Connections to the leader's client port, for forwarded writes.
    pub forwarder: Forwarder,
    /// Calls to other nodes' peer ports (read index).
    pub peers: Peers,
}

impl ServiceContext {
    /// Proposes `command` on this node (the leader) as one write of `author`,
    /// with the caller's write id for de-duplication, and returns apply's
    /// answer. A CAS miss keeps what it knows for the status metadata.
    pub async fn propose(
        &self,
        author: String,
        id: Option<WriteId>,
        message: String,
        command: raftconf_raft::Command,
    ) -> Result<raftconf_raft::Applied, ApiError> {
        check_message(&message)?;
        let (client_id, request_id) = write_id(id);
        let request = raftconf_raft::Request {
            format: raftconf_raft::command::ENTRY_FORMAT_VERSION,
            client_id,
            request_id,
            author,
            time_ms: now_ms(),
            message,
            command,
        };
        self.node.write(request).await.map_err(ApiError::from_write)
    }

    /// A response header as of `revision`, with leadership as this node sees it.
    pub fn header(&self, revision: u64) -> ResponseHeader {
        let leader = self.node.leader();
        ResponseHeader {
            cluster_id: self.node.cluster_id(),
            revision,
            node_id: self.node.node_id(),
            leader_id: leader.leader_id.unwrap_or(0),
            term: leader.term,
            leader_addr: leader.leader.map(|n| n.client_addr).unwrap_or_default(),
        }
    }

    /// A header at this node's applied revision.
    pub fn current_header(&self) -> ResponseHeader {
        self.header(self.node.state().revision())
    }

    /// The `Status` for `err`, with the header in its metadata.
    pub fn status(&self, err: ApiError) -> Status {
        if matches!(
            err,
            ApiError::Internal(_) | ApiError::State(raftconf_raft::Error::Storage(_))
        ) {
            tracing::error!(error = %err, "request failed");
        } else {
            tracing::debug!(error = %err, "request refused");
        }
        status::to_status(err, &self.current_header())
    }

    /// A service method's answer: the response, or the error as a `Status`
    /// carrying the header (the one place every service turns errors into
    /// statuses).
    pub fn respond<T>(&self, result: Result<T, ApiError>) -> Result<tonic::Response<T>, Status> {
        result.map(tonic::Response::new).map_err(|e| self.status(e))
    }

    /// The revision to serve a read at: for linearizable reads after a read
    /// barrier (on the leader) or the leader's read index (elsewhere); for
    /// serializable ones after waiting (bounded) for `min_revision`.
    pub async fn read_revision(
        &self,
        consistency: i32,
        min_revision: u64,
    ) -> Result<u64, ApiError> {
        let state = self.node.state();
        match Consistency::try_from(consistency) {
            Ok(Consistency::Serializable) => {
                if min_revision > state.revision()
                    && !state
                        .wait_for_revision(min_revision, self.settings.min_revision_wait)
                        .await
                {
                    return Err(ApiError::Unavailable(format!(
                        "this node has applied revision {}, below the requested min_revision \
                         {min_revision}; try another node or a linearizable read",
                        state.revision()
                    )));
                }
                Ok(state.revision())
            }
            // Unknown values get the strongest guarantee.
            _ => forward::linearizable_revision(self).await,
        }
    }
}

/// The author of a write: the `x-raftconf-author` metadata, else "anonymous".
pub fn author(md: &MetadataMap) -> String {
    md.get(metadata::AUTHOR)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "anonymous".to_string())
}

/// The request's own checks (the naming rule on its fields, as `validator`
/// attributes on the request types): every failure named in one message.
pub fn check<R: raftconf_api::validate::Validate>(request: &R) -> Result<(), ApiError> {
    request
        .validate()
        .map_err(|e| ApiError::InvalidArgument(raftconf_api::validate::describe(&e)))
}

/// Refuses submitted text (a document, a schema) longer than the server
/// parses, naming the limit (`what`: e.g. "document text size").
pub fn check_text_size(what: &'static str, text: &str) -> Result<(), ApiError> {
    if text.len() > raftconf_schema::MAX_DOCUMENT_TEXT_BYTES {
        return Err(ApiError::Schema(raftconf_schema::Error::LimitExceeded {
            limit: what,
            max: raftconf_schema::MAX_DOCUMENT_TEXT_BYTES as u64,
            actual: text.len() as u64,
        }));
    }
    Ok(())
}

/// The de-duplication key of a write: `("", 0)` when absent.
pub fn write_id(id: Option<WriteId>) -> (String, u64) {
    id.map(|w| (w.client_id, w.request_id)).unwrap_or_default()
}

/// Milliseconds since the Unix epoch: the leader stamps writes with it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Refuses a history message over [`MAX_MESSAGE_BYTES`].
pub fn check_message(message: &str) -> Result<(), ApiError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::Schema(raftconf_schema::Error::LimitExceeded {
            limit: "message size",
            max: MAX_MESSAGE_BYTES as u64,
            actual: message.len() as u64,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn author_defaults_to_anonymous() {
        let mut md = MetadataMap::new();
        assert_eq!(author(&md), "anonymous");
        md.insert(metadata::AUTHOR, MetadataValue::from_static("alice"));
        assert_eq!(author(&md), "alice");
    }

    #[test]
    fn long_messages_are_refused() {
        assert!(check_message("fine").is_ok());
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(check_message(&long), Err(ApiError::Schema(_))));
    }

    #[test]
    fn write_id_defaults() {
        assert_eq!(write_id(None), (String::new(), 0));
        let id = WriteId {
            client_id: "c".into(),
            request_id: 4,
        };
        assert_eq!(write_id(Some(id)), ("c".to_string(), 4));
    }
}
