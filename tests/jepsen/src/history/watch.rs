//! What the nodes committed and what watchers saw: the changes of a
//! revision ([`LogEntry`], [`NsChange`]) and the items of a watch session
//! ([`WatchItem`]).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// What a change is about. A watch delivers a namespace's schema changes
/// under the namespace's own path (one change per environment of the
/// tenant), so a change must say whether it is about the document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The namespace's document: a put (with a value) or a delete (without).
    #[default]
    Document,
    /// A new version of the namespace's schema: `version` is the schema
    /// version, `value` the schema.
    SchemaSet,
    /// The schema was removed: `version` is the schema version of the removal.
    SchemaDelete,
    /// A kind this suite does not know (the wire value).
    Other(i32),
}

impl ChangeKind {
    /// Whether this is a document change (for `skip_serializing_if`).
    pub fn is_document(&self) -> bool {
        *self == ChangeKind::Document
    }
}

/// One change of a namespace (its document or its schema) within a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NsChange {
    /// `tenant/env/namespace`.
    pub ns: String,
    /// The namespace's version after the change (for a schema change: the
    /// schema's version).
    pub version: u64,
    /// The value after the change; `None` for a delete. For a schema set:
    /// the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// What the change is about; absent in the JSON for a document change.
    #[serde(default, skip_serializing_if = "ChangeKind::is_document")]
    pub kind: ChangeKind,
}

impl NsChange {
    /// Whether the change is to the namespace's document (a put or delete).
    pub fn is_document(&self) -> bool {
        self.kind.is_document()
    }
}

/// One committed revision's changes within a watched range (a transaction
/// has several; a schema change has one per watched environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The revision.
    pub revision: u64,
    /// Its changes, in the order the server lists them.
    pub changes: Vec<NsChange>,
}

/// Whether a watch of `targets` (`tenant/env/` prefixes, `tenant/env/namespace`
/// paths) covers the namespace `ns`, as the server matches them: a prefix
/// covers the namespaces directly in that environment, a path only itself.
pub fn covers(targets: &[String], ns: &str) -> bool {
    targets.iter().any(|t| match t.ends_with('/') {
        true => ns
            .strip_prefix(t.as_str())
            .is_some_and(|name| !name.is_empty() && !name.contains('/')),
        false => t == ns,
    })
}

/// What a watcher saw or did. A watcher runs sessions one after another; a
/// session watches its targets from `from_revision` (inclusive) on one node
/// until it ends, and the next session resumes from the last revision seen + 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WatchItem {
    /// A session starts.
    Start {
        /// Session number within the watcher, from 0.
        session: u64,
        /// The node it talks to.
        node: u64,
        /// What it watches: `tenant/env/` prefixes and `tenant/env/namespace`
        /// paths (older histories name one `prefix`).
        #[serde(alias = "prefix", deserialize_with = "one_or_many")]
        targets: Vec<String>,
        /// The start revision (inclusive); 0 = a snapshot first.
        from_revision: u64,
    },
    /// A change event.
    Change {
        /// The session.
        session: u64,
        /// The revision, with every change of it within the targets.
        entry: LogEntry,
    },
    /// A snapshot event: the whole range as of `revision`.
    Snapshot {
        /// The session.
        session: u64,
        /// The revision the snapshot is at.
        revision: u64,
        /// Every live namespace of the range (version and value).
        entries: Vec<NsChange>,
    },
    /// A progress event: nothing in the range up to `revision` that was not
    /// already sent.
    Progress {
        /// The session.
        session: u64,
        /// The revision.
        revision: u64,
    },
    /// The session ended (by the watcher, or an error).
    End {
        /// The session.
        session: u64,
        /// Why.
        reason: String,
    },
}

/// A list of targets, or (older histories) one prefix.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(ts) => ts,
    })
}

#[cfg(test)]
mod tests {
    use super::{covers, WatchItem};

    #[test]
    fn prefixes_cover_their_environment_and_paths_only_themselves() {
        let targets = ["t/e/".to_string(), "t/f/k1".to_string()];
        assert!(covers(&targets, "t/e/k1"));
        assert!(covers(&targets, "t/f/k1"));
        assert!(!covers(&targets, "t/f/k10"), "a path is not a prefix");
        assert!(!covers(&targets, "t/e2/k1"));
        assert!(!covers(&targets, "t/f/k2"));
        assert!(!covers(&targets, "t/e/"), "a prefix is not a namespace");
    }

    #[test]
    fn a_session_start_of_an_older_history_names_one_prefix() {
        let old = r#"{"kind":"start","session":0,"node":1,"prefix":"t/e/","from_revision":1}"#;
        let item: WatchItem = serde_json::from_str(old).expect("reads back");
        assert_eq!(
            item,
            WatchItem::Start {
                session: 0,
                node: 1,
                targets: vec!["t/e/".into()],
                from_revision: 1
            }
        );
        let line = serde_json::to_string(&item).expect("serializes");
        assert_eq!(
            line,
            r#"{"kind":"start","session":0,"node":1,"targets":["t/e/"],"from_revision":1}"#
        );
    }
}
