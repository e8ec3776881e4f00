//! gRPC metadata keys raftconf reads and writes, in one place.
//!
//! Every response header field is mirrored into metadata on errors (a
//! `Status` has no body), so a client learns the leader and the revision
//! even from a refusal.

/// Request: who makes the change (until auth exists; then the token's name wins).
pub const AUTHOR: &str = "x-raftconf-author";
/// Error metadata: the leader's client address, when known.
pub const LEADER: &str = "x-raftconf-leader";
/// Error metadata: the leader's node id (absent when unknown).
pub const LEADER_ID: &str = "x-raftconf-leader-id";
/// Error metadata: the Raft term as known by the answering node.
pub const TERM: &str = "x-raftconf-term";
/// Error metadata: the cluster id.
pub const CLUSTER_ID: &str = "x-raftconf-cluster-id";
/// Error metadata: the store revision the request was served at.
pub const REVISION: &str = "x-raftconf-revision";
/// Error metadata: the answering node.
pub const NODE_ID: &str = "x-raftconf-node-id";
/// CAS miss: the namespace's current version (0 = never existed).
pub const CURRENT_VERSION: &str = "x-raftconf-current-version";
/// CAS miss: the revision of the namespace's last change, when known.
pub const CURRENT_REVISION: &str = "x-raftconf-current-revision";
/// A watch that ended: the start revision to resume from.
pub const RESUME_REVISION: &str = "x-raftconf-resume-revision";
