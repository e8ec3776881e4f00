//! What the state machine stores and what readers get back: documents,
//! version records, tenants, environments and watch events.

use std::sync::Arc;

use raftconf_schema::NsPath;
use serde::{Deserialize, Serialize};

/// What a change did (the open `kind` of watch events and history records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A document was created or replaced.
    Put,
    /// A document was deleted (a tombstone version).
    Delete,
    /// A tenant was created.
    TenantCreate,
    /// An environment was created.
    EnvCreate,
    /// A tenant was deleted (with everything in it).
    TenantDelete,
    /// An environment was deleted (with its namespaces).
    EnvDelete,
    /// A schema version was set (`version` is the schema version, `value` its JSON).
    SchemaSet,
    /// The schema was removed (`version` is the schema version of the removal).
    SchemaDelete,
    /// A tenant's settings changed.
    TenantSettings,
}

/// Replicated settings of a tenant (`None`: the cluster's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    /// Versions of each namespace (and of each schema) kept in history.
    pub history_depth: Option<u64>,
    /// Most live namespaces in one environment.
    pub max_namespaces_per_env: Option<u64>,
}

impl TenantSettings {
    /// The history depth in force, given the cluster's default.
    pub fn history_depth(&self, default: u64) -> u64 {
        self.history_depth.unwrap_or(default)
    }

    /// The namespace limit in force.
    pub fn max_namespaces_per_env(&self) -> u64 {
        self.max_namespaces_per_env
            .unwrap_or(raftconf_schema::MAX_NAMESPACES_PER_ENV)
    }
}

/// One version of the schema of a `tenant/namespace`, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// Counts every set and delete of this namespace's schema; never resets.
    pub version: u64,
    /// The revision of the change.
    pub revision: u64,
    /// Canonical JSON of the schema; `None` for a removal.
    pub schema: Option<String>,
    /// Set over live documents that did not validate (`force`).
    pub forced: bool,
    /// Who.
    pub author: String,
    /// When (ms since the epoch, leader-stamped).
    pub time_ms: i64,
    /// Why.
    pub message: String,
}

/// The current state of a namespace (live or tombstone), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Canonical JSON; `None` for a tombstone.
    pub value: Option<String>,
    /// Counts every put and delete; never resets.
    pub version: u64,
    /// Revision at which the current incarnation was created.
    pub create_revision: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
    /// Author of the last change.
    pub author: String,
    /// Time of the last change (ms since the epoch, leader-stamped).
    pub time_ms: i64,
    /// Message of the last change.
    pub message: String,
}

/// A live namespace as returned to readers.
#[derive(Debug, Clone, PartialEq)]
pub struct DocEntry {
    /// `tenant/env/namespace`.
    pub path: NsPath,
    /// The stored record (never a tombstone here).
    pub record: DocRecord,
}

impl DocEntry {
    /// The document's canonical JSON.
    pub fn value(&self) -> &str {
        self.record.value.as_deref().unwrap_or("")
    }
}

/// One version of a namespace: the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Revision of this change.
    pub revision: u64,
    /// Version after this change.
    pub version: u64,
    /// Put or delete.
    pub kind: ChangeKind,
    /// Canonical JSON; `None` for a delete.
    pub value: Option<String>,
    /// Who.
    pub author: String,
    /// When (ms since the epoch, leader-stamped).
    pub time_ms: i64,
    /// Why.
    pub message: String,
}

/// A tenant and its environments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Name.
    pub name: String,
    /// Revision that created it.
    pub create_revision: u64,
    /// Its environments, sorted.
    pub environments: Vec<String>,
    /// Versions of each namespace and schema kept (its setting, else the cluster's).
    pub history_depth: u64,
    /// Most live namespaces in one environment.
    pub max_namespaces_per_env: u64,
}

/// An environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvInfo {
    /// Tenant name.
    pub tenant: String,
    /// Environment name.
    pub name: String,
    /// Revision that created it.
    pub create_revision: u64,
    /// Live namespaces in it.
    pub namespaces: u64,
}

/// One change inside a [`ChangeEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The namespace (for tenant/env changes: `tenant/env/` style paths are not
    /// namespaces, so those carry the tenant and env with an empty namespace).
    pub path: String,
    /// Namespace version after the change (0 for tenant/env changes).
    pub version: u64,
    /// The whole new document; `None` for deletes and non-document changes.
    pub value: Option<String>,
}

/// Everything one revision changed: the unit the watch hub delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The revision.
    pub revision: u64,
    /// Who made it.
    pub author: String,
    /// When (ms since the epoch, leader-stamped).
    pub time_ms: i64,
    /// Why.
    pub message: String,
    /// The changes (several for a transaction).
    pub changes: Vec<Change>,
}

/// What a watch subscription yields.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// The changes of one revision that match the subscription (never empty).
    Change(Arc<ChangeEvent>),
    /// The whole watched range at `revision` (one item; the server chunks it).
    Snapshot {
        /// The revision the snapshot reflects.
        revision: u64,
        /// Every live namespace in range.
        entries: Vec<DocEntry>,
        /// Why it was sent: "start", "compacted" or "raft-snapshot".
        reason: &'static str,
    },
    /// Everything matching up to `revision` has been delivered.
    Progress(u64),
}
