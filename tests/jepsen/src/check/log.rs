//! The committed order: the log of the `Final` events, indexed so a
//! checker can ask for a namespace's state at any revision, the entry at a
//! revision, or where a value is. The log holds schema changes too (a watch
//! delivers them under the namespace's path); a namespace's state and the
//! values are its document changes only.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::history::{covers, Event, LogEntry, NsChange};

/// A namespace's state at some revision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NsState<'h> {
    /// `None`: never created, or deleted.
    pub(crate) value: Option<&'h Value>,
    /// `0` when never created; a deleted namespace keeps its tombstone's.
    pub(crate) version: u64,
    /// The revision of the last change, `0` when never created.
    pub(crate) mod_revision: u64,
}

impl NsState<'_> {
    const NEVER: NsState<'static> = NsState {
        value: None,
        version: 0,
        mod_revision: 0,
    };

    pub(crate) fn live(&self) -> bool {
        self.value.is_some()
    }
}

impl fmt::Display for NsState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.value, self.version) {
            (Some(v), version) => write!(f, "{v} v{version} (mod rev {})", self.mod_revision),
            (None, 0) => write!(f, "never created"),
            (None, version) => write!(f, "deleted v{version} (rev {})", self.mod_revision),
        }
    }
}

/// The committed order: the log of one [`Event::Final`] (the one that got
/// furthest), indexed by revision and by namespace.
pub(crate) struct CommittedLog<'h> {
    /// The node whose log this is.
    pub(crate) node: u64,
    pub(crate) entries: &'h [LogEntry],
    by_revision: HashMap<u64, usize>,
    /// Per namespace, its document changes sorted by revision.
    per_ns: HashMap<&'h str, Vec<(u64, &'h NsChange)>>,
    /// Every schema change, in log order.
    schema_changes: Vec<(u64, &'h NsChange)>,
    /// [`value_key`] of every value the log holds → where (revision, ns).
    by_value: HashMap<String, Vec<(u64, &'h str)>>,
    /// The highest applied revision any node reported: nothing can have
    /// been read or watched beyond it.
    pub(crate) max_revision: u64,
}

impl<'h> CommittedLog<'h> {
    /// `None` when the history has no [`Event::Final`].
    pub(crate) fn from_history(history: &'h [Event]) -> Option<Self> {
        let finals = history.iter().filter_map(|e| match e {
            Event::Final {
                node,
                revision,
                log,
                ..
            } => Some((*node, *revision, log)),
            _ => None,
        });
        let mut best: Option<(u64, u64, &'h Vec<LogEntry>)> = None;
        let mut max_revision = 0;
        for (node, revision, log) in finals {
            max_revision = max_revision.max(revision);
            let reach = |log: &Vec<LogEntry>| log.last().map_or(0, |e| e.revision);
            if best.is_none_or(|(_, _, b)| (reach(log), log.len()) > (reach(b), b.len())) {
                best = Some((node, revision, log));
            }
        }
        let (node, _, entries) = best?;
        let mut by_revision = HashMap::with_capacity(entries.len());
        let mut per_ns: HashMap<&'h str, Vec<(u64, &'h NsChange)>> = HashMap::new();
        let mut by_value: HashMap<String, Vec<(u64, &'h str)>> = HashMap::new();
        let mut schema_changes = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            by_revision.entry(entry.revision).or_insert(i);
            max_revision = max_revision.max(entry.revision);
            for change in &entry.changes {
                if !change.is_document() {
                    schema_changes.push((entry.revision, change));
                    continue;
                }
                per_ns
                    .entry(change.ns.as_str())
                    .or_default()
                    .push((entry.revision, change));
                if let Some(value) = &change.value {
                    by_value
                        .entry(value_key(value))
                        .or_default()
                        .push((entry.revision, change.ns.as_str()));
                }
            }
        }
        for changes in per_ns.values_mut() {
            // Already sorted unless the log is broken (convergence says so).
            changes.sort_by_key(|(revision, _)| *revision);
        }
        Some(CommittedLog {
            node,
            entries,
            by_revision,
            per_ns,
            schema_changes,
            by_value,
            max_revision,
        })
    }

    /// The entry committed at `revision`, if it changed a namespace.
    pub(crate) fn entry_at(&self, revision: u64) -> Option<&'h LogEntry> {
        self.by_revision
            .get(&revision)
            .and_then(|&i| self.entries.get(i))
    }

    /// The document change of `ns` at `revision`.
    pub(crate) fn change_at(&self, revision: u64, ns: &str) -> Option<&'h NsChange> {
        self.entry_at(revision)?
            .changes
            .iter()
            .find(|c| c.ns == ns && c.is_document())
    }

    /// `ns`'s state after applying every revision ≤ `revision`.
    pub(crate) fn state_at(&self, ns: &str, revision: u64) -> NsState<'h> {
        let Some(changes) = self.per_ns.get(ns) else {
            return NsState::NEVER;
        };
        let applied = changes.partition_point(|(r, _)| *r <= revision);
        match applied.checked_sub(1).and_then(|i| changes.get(i)) {
            None => NsState::NEVER,
            Some((r, change)) => NsState {
                value: change.value.as_ref(),
                version: change.version,
                mod_revision: *r,
            },
        }
    }

    /// The revision of `ns`'s last live value (the last put, whatever
    /// deletes followed it); `None` if it never had one.
    pub(crate) fn last_live(&self, ns: &str) -> Option<u64> {
        self.per_ns
            .get(ns)?
            .iter()
            .rev()
            .find(|(_, change)| change.value.is_some())
            .map(|(r, _)| *r)
    }

    /// Where (revision, namespace) the log holds `value`, in log order.
    pub(crate) fn find_value(&self, value: &Value) -> &[(u64, &'h str)] {
        self.by_value
            .get(&value_key(value))
            .map_or(&[], Vec::as_slice)
    }

    /// Every value the log holds: its [`value_key`] and where.
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &[(u64, &'h str)])> + '_ {
        self.by_value
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Every namespace whose document the log ever changed.
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &'h str> + '_ {
        self.per_ns.keys().copied()
    }

    /// `ns`'s document changes, sorted by revision.
    pub(crate) fn changes_of(&self, ns: &str) -> &[(u64, &'h NsChange)] {
        self.per_ns.get(ns).map_or(&[], Vec::as_slice)
    }

    /// Every schema change (revision, change), in log order.
    pub(crate) fn schema_changes(&self) -> &[(u64, &'h NsChange)] {
        &self.schema_changes
    }

    /// The revisions (sorted) a watch of `targets` delivers: those whose
    /// entry changes a covered namespace's document or schema.
    pub(crate) fn revisions_under(&self, targets: &[String]) -> Vec<u64> {
        let mut revisions: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.changes.iter().any(|c| covers(targets, &c.ns)))
            .map(|e| e.revision)
            .collect();
        revisions.sort_unstable();
        revisions.dedup();
        revisions
    }
}

/// A key for a JSON value that is equal exactly when the values are
/// (object keys sorted, whatever order the map keeps them in).
pub(crate) fn value_key(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(key) {
                        write(v, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::CommittedLog;

    #[test]
    fn state_at_follows_deletes_recreation_and_revision_gaps() {
        let mut h = History::default();
        h.final_node(1, 8, "d", valid_log());
        let log = CommittedLog::from_history(&h.events).expect("a Final event");
        let a = |r| log.state_at(A, r).to_string();
        assert_eq!(a(2), "never created");
        assert_eq!(a(3), r#"{"w":"a1"} v1 (mod rev 3)"#);
        assert_eq!(
            a(5),
            r#"{"w":"a2"} v2 (mod rev 4)"#,
            "revision 5 changed only b"
        );
        assert_eq!(a(6), "deleted v3 (rev 6)");
        assert_eq!(a(8), r#"{"w":"a4"} v4 (mod rev 8)"#);
        assert_eq!(a(100), r#"{"w":"a4"} v4 (mod rev 8)"#);
        assert_eq!(log.find_value(&val("b2")), &[(7, B)]);
        assert_eq!(log.revisions_under(&[PREFIX.into()]), [3, 4, 5, 6, 7, 8]);
        assert_eq!(log.revisions_under(&[B.into()]), [5, 7]);
    }

    #[test]
    fn the_log_that_got_furthest_is_the_reference() {
        let mut h = History::default();
        let mut short = valid_log();
        short.pop();
        h.final_node(1, 7, "d", short)
            .final_node(2, 8, "d", valid_log());
        let log = CommittedLog::from_history(&h.events).expect("a Final event");
        assert_eq!((log.node, log.entries.len()), (2, 6));
    }
}
