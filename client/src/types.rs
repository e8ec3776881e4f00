//! The typed values the client returns, and their conversions from the wire types.

use raftconf_api::v1 as pb;
use serde_json::Value;

use crate::{Error, Result};

/// One namespace's document as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `tenant/env/namespace`.
    pub path: String,
    /// The document, always a JSON object.
    pub value: Value,
    /// The namespace's version: 1 at creation, +1 per put or delete.
    pub version: u64,
    /// The revision of the namespace's last change.
    pub mod_revision: u64,
    /// The revision at which the current incarnation was created.
    pub create_revision: u64,
    /// The store revision the read was served at (≥ `mod_revision`).
    pub store_revision: u64,
    /// Who made the last change.
    pub author: String,
    /// When the last change was made, in milliseconds since the Unix epoch
    /// (stamped by the leader).
    pub time_ms: i64,
    /// Why the last change was made.
    pub message: String,
}

/// What a successful write did.
///
/// For a dry run ([`WriteOptions::dry_run`]) nothing was written: it is what
/// the server answered about the namespace as it is, its version and the
/// revision of its last change (both 0 when it does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    /// The revision the write created.
    pub revision: u64,
    /// The namespace's version after the write (for a delete: the tombstone's).
    pub version: u64,
}

/// Conditions and a message for a put or a delete.
///
/// ```
/// use raftconf_client::WriteOptions;
///
/// let opts = WriteOptions::default().if_version(3).message("raise the pool size");
/// assert_eq!(opts.if_version, Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `Some(0)`: the namespace must not exist; `Some(n)`: its current version
    /// must be `n`.
    pub if_version: Option<u64>,
    /// The namespace must have been last modified at this revision.
    pub if_revision: Option<u64>,
    /// Why: kept in history.
    pub message: String,
    /// Puts only: have the server parse and validate the document (against
    /// the schema, the limits, the tenant and environment) and answer, without
    /// writing anything. A delete with this set is refused before it is sent,
    /// rather than deleting for real.
    pub dry_run: bool,
}

/// Options of a put.
pub type PutOptions = WriteOptions;
/// Options of a delete.
pub type DeleteOptions = WriteOptions;

impl WriteOptions {
    /// Sets [`WriteOptions::if_version`].
    pub fn if_version(mut self, version: u64) -> Self {
        self.if_version = Some(version);
        self
    }

    /// Sets [`WriteOptions::if_revision`].
    pub fn if_revision(mut self, revision: u64) -> Self {
        self.if_revision = Some(revision);
        self
    }

    /// Sets [`WriteOptions::message`].
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets [`WriteOptions::dry_run`].
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Reflects every write acknowledged before the call (the serving node
    /// confirms with the leader first).
    #[default]
    Linearizable,
    /// The answering node's applied state: cheaper, may lag the leader, but
    /// never older than what this client has already seen.
    Serializable,
}

/// Which state of a namespace a read returns, and how fresh it must be.
///
/// ```
/// use raftconf_client::{Consistency, GetOptions};
///
/// let opts = GetOptions::default().revision(17).consistency(Consistency::Serializable);
/// assert_eq!(opts.revision, 17);
/// assert_eq!(GetOptions::default().consistency, Consistency::Linearizable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// The document as of this store revision (from history); 0 = the current one.
    pub revision: u64,
    /// Linearizable (the default) or serializable.
    pub consistency: Consistency,
}

impl GetOptions {
    /// Sets [`GetOptions::revision`].
    pub fn revision(mut self, revision: u64) -> Self {
        self.revision = revision;
        self
    }

    /// Sets [`GetOptions::consistency`].
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }
}

/// One namespace in a listing or a watch snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceEntry {
    /// `tenant/env/namespace`.
    pub path: String,
    /// Current version.
    pub version: u64,
    /// Revision of its last change.
    pub mod_revision: u64,
    /// The document: in a listing only when values were asked for; in a
    /// snapshot always (`None` only if the server sent unreadable JSON).
    pub value: Option<Value>,
}

/// The namespaces of an environment at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The store revision the listing was served at.
    pub revision: u64,
    /// Sorted by path.
    pub entries: Vec<NamespaceEntry>,
}

/// What a change did. Open: a server newer than this client may send kinds it
/// does not know, as [`ChangeKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A document was written.
    Put,
    /// A document was deleted.
    Delete,
    /// A schema was set.
    SchemaSet,
    /// A schema was deleted.
    SchemaDelete,
    /// A tenant was created.
    TenantCreate,
    /// A tenant was deleted.
    TenantDelete,
    /// An environment was created.
    EnvCreate,
    /// An environment was deleted.
    EnvDelete,
    /// A tenant's settings changed.
    TenantSettings,
    /// A kind this client does not know (the wire value).
    Unknown(i32),
}

impl From<i32> for ChangeKind {
    fn from(raw: i32) -> Self {
        match pb::ChangeKind::try_from(raw) {
            Ok(pb::ChangeKind::Put) => ChangeKind::Put,
            Ok(pb::ChangeKind::Delete) => ChangeKind::Delete,
            Ok(pb::ChangeKind::SchemaSet) => ChangeKind::SchemaSet,
            Ok(pb::ChangeKind::SchemaDelete) => ChangeKind::SchemaDelete,
            Ok(pb::ChangeKind::TenantCreate) => ChangeKind::TenantCreate,
            Ok(pb::ChangeKind::TenantDelete) => ChangeKind::TenantDelete,
            Ok(pb::ChangeKind::EnvCreate) => ChangeKind::EnvCreate,
            Ok(pb::ChangeKind::EnvDelete) => ChangeKind::EnvDelete,
            Ok(pb::ChangeKind::TenantSettings) => ChangeKind::TenantSettings,
            Ok(pb::ChangeKind::Unspecified) | Err(_) => ChangeKind::Unknown(raw),
        }
    }
}

/// One version of a namespace: an entry of its audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// The revision of this change.
    pub revision: u64,
    /// The namespace's version after it.
    pub version: u64,
    /// Put or delete.
    pub kind: ChangeKind,
    /// The document; `None` for a delete.
    pub value: Option<Value>,
    /// Who made it.
    pub author: String,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Why.
    pub message: String,
}

/// One page of a namespace's history, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The records, newest first.
    pub records: Vec<HistoryRecord>,
    /// Pass as `before_version` to get the next page; `None` when this was the last.
    pub next_before_version: Option<u64>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInfo {
    /// Its name.
    pub name: String,
    /// The revision that created it.
    pub create_revision: u64,
    /// Its environments' names.
    pub environments: Vec<String>,
    /// Versions of each namespace and schema kept in history.
    pub history_depth: u64,
    /// Most live namespaces in one environment.
    pub max_namespaces_per_env: u64,
}

/// A tenant's settings to change (`None` leaves one as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// Versions of each namespace and schema kept in history (1 to 10,000).
    pub history_depth: Option<u64>,
    /// Most live namespaces in one environment (1 to 10,000).
    pub max_namespaces_per_env: Option<u64>,
}

/// An environment of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInfo {
    /// The tenant.
    pub tenant: String,
    /// The environment's name.
    pub name: String,
    /// The revision that created it.
    pub create_revision: u64,
    /// How many live namespaces it holds.
    pub namespaces: u64,
}

/// A cluster member as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Address for peer (Raft) traffic.
    pub peer_addr: String,
    /// Address for client traffic.
    pub client_addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// "leader", "follower", "learner", "candidate" as the member reports
    /// itself; empty when it did not answer.
    pub role: String,
    /// The member's applied log index (0 when it did not answer).
    pub applied_index: u64,
    /// Log entries it is behind the leader's applied index.
    pub lag: u64,
    /// Whether it answered the answering node's probe.
    pub reachable: bool,
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            id: m.id,
            peer_addr: m.peer_addr,
            client_addr: m.client_addr,
            voter: m.voter,
            role: m.role,
            applied_index: m.applied_index,
            lag: m.lag,
            reachable: m.reachable,
        }
    }
}

/// One node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The cluster's id, generated at initialisation.
    pub cluster_id: String,
    /// The answering node.
    pub node_id: u64,
    /// The leader it knows (0 = none).
    pub leader_id: u64,
    /// The leader's client address, when known.
    pub leader_addr: String,
    /// Its Raft term.
    pub term: u64,
    /// The store revision it has applied.
    pub revision: u64,
    /// Its applied log index.
    pub applied_index: u64,
    /// Its committed log index.
    pub committed_index: u64,
    /// The membership it knows.
    pub members: Vec<Member>,
    /// The server's version string.
    pub server_version: String,
    /// Digest of its documents at `revision`, for convergence checks.
    pub state_digest: String,
}

/// Parses a canonical JSON document sent by the server.
pub(crate) fn parse_value(path: &str, revision: u64, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Deserialize {
        path: path.to_string(),
        revision,
        message: format!("the server sent invalid JSON: {e}"),
    })
}

/// Like [`parse_value`], but an empty string (a delete) is `None`.
pub(crate) fn parse_optional_value(path: &str, revision: u64, text: &str) -> Result<Option<Value>> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_value(path, revision, text).map(Some)
    }
}

impl Document {
    pub(crate) fn from_response(r: pb::GetResponse) -> Result<Self> {
        let store_revision = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let value = parse_value(&r.path, r.mod_revision, &r.value)?;
        Ok(Document {
            path: r.path,
            value,
            version: r.version,
            mod_revision: r.mod_revision,
            create_revision: r.create_revision,
            store_revision,
            author: r.author,
            time_ms: r.time_ms,
            message: r.message,
        })
    }
}

impl NamespaceEntry {
    pub(crate) fn from_proto(e: pb::NamespaceEntry) -> Result<Self> {
        let value = parse_optional_value(&e.path, e.mod_revision, &e.value)?;
        Ok(NamespaceEntry {
            path: e.path,
            version: e.version,
            mod_revision: e.mod_revision,
            value,
        })
    }
}

impl HistoryRecord {
    pub(crate) fn from_proto(path: &str, r: pb::VersionRecord) -> Result<Self> {
        Ok(HistoryRecord {
            value: parse_optional_value(path, r.revision, &r.value)?,
            revision: r.revision,
            version: r.version,
            kind: ChangeKind::from(r.kind),
            author: r.author,
            time_ms: r.time_ms,
            message: r.message,
        })
    }
}

impl From<pb::TenantInfo> for TenantInfo {
    fn from(t: pb::TenantInfo) -> Self {
        TenantInfo {
            name: t.name,
            create_revision: t.create_revision,
            environments: t.environments,
            history_depth: t.history_depth,
            max_namespaces_per_env: t.max_namespaces_per_env,
        }
    }
}

impl From<pb::EnvironmentInfo> for EnvInfo {
    fn from(e: pb::EnvironmentInfo) -> Self {
        EnvInfo {
            tenant: e.tenant,
            name: e.name,
            create_revision: e.create_revision,
            namespaces: e.namespaces,
        }
    }
}

impl From<pb::StatusResponse> for ClusterStatus {
    fn from(s: pb::StatusResponse) -> Self {
        let header = s.header.unwrap_or_default();
        ClusterStatus {
            cluster_id: header.cluster_id,
            node_id: s.node_id,
            leader_id: s.leader_id,
            leader_addr: header.leader_addr,
            term: s.term,
            revision: s.revision,
            applied_index: s.applied_index,
            committed_index: s.committed_index,
            members: s.members.into_iter().map(Member::from).collect(),
            server_version: s.server_version,
            state_digest: s.state_digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_kinds_are_open() {
        assert_eq!(ChangeKind::from(1), ChangeKind::Put);
        assert_eq!(ChangeKind::from(2), ChangeKind::Delete);
        assert_eq!(ChangeKind::from(0), ChangeKind::Unknown(0));
        assert_eq!(ChangeKind::from(99), ChangeKind::Unknown(99));
    }

    #[test]
    fn documents_convert_from_the_wire() {
        let response = pb::GetResponse {
            header: Some(pb::ResponseHeader {
                revision: 12,
                ..Default::default()
            }),
            path: "t/e/n".into(),
            value: r#"{"a":1}"#.into(),
            version: 3,
            mod_revision: 10,
            create_revision: 2,
            author: "ops".into(),
            time_ms: 5,
            message: "why".into(),
        };
        let doc = Document::from_response(response).expect("valid");
        assert_eq!(doc.value, serde_json::json!({"a": 1}));
        assert_eq!(
            (doc.version, doc.mod_revision, doc.store_revision),
            (3, 10, 12)
        );
        let bad = pb::GetResponse {
            value: "{".into(),
            ..Default::default()
        };
        assert!(matches!(
            Document::from_response(bad),
            Err(Error::Deserialize { .. })
        ));
        let entry = NamespaceEntry::from_proto(pb::NamespaceEntry {
            path: "t/e/n".into(),
            version: 1,
            mod_revision: 1,
            value: String::new(),
        })
        .expect("valid");
        assert_eq!(entry.value, None);
    }
}
