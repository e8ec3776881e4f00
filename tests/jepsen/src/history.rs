//! The history of a run: every invocation and completion of a client
//! operation, every item a watcher received, every value the hot-reload
//! handle swapped in, every fault, and the final state of each node. Written
//! as JSON lines (one [`Event`] per line) with one monotonic clock (`t`,
//! nanoseconds since the run started), read back by the checkers.
//!
//! Namespace values are JSON objects; the workload makes every written value
//! unique (`{"w": "p<process>-<n>"}`, and `{"w": "p<process>-<n>-<k>"}` for
//! namespace `k` of a transaction), so a value identifies its write.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A namespace operation a client process invokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Linearizable read.
    Get {
        /// `tenant/env/namespace`.
        ns: String,
    },
    /// Unconditional write of a unique value.
    Put {
        /// `tenant/env/namespace`.
        ns: String,
        /// The value written.
        value: Value,
    },
    /// Write only if the namespace's version is `expect_version` (`0`: only
    /// if it does not exist).
    Cas {
        /// `tenant/env/namespace`.
        ns: String,
        /// The version required.
        expect_version: u64,
        /// The value written.
        value: Value,
    },
    /// Delete the namespace.
    Delete {
        /// `tenant/env/namespace`.
        ns: String,
    },
    /// A transaction: writes to several namespaces of one environment,
    /// applied together at one revision or not at all.
    Apply {
        /// One per namespace, each to a different one, in request order.
        writes: Vec<TxOp>,
    },
}

/// One namespace's write in an [`Op::Apply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxOp {
    /// `tenant/env/namespace`.
    pub ns: String,
    /// The value written; `None` deletes the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Only if the namespace is at this version (`0`: only if it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<u64>,
}

/// One namespace's part of a write: a put, CAS or delete is one, a
/// transaction has one per namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NsWrite<'a> {
    /// `tenant/env/namespace`.
    pub ns: &'a str,
    /// The value written; `None` for a delete.
    pub value: Option<&'a Value>,
    /// The version required (`0`: must not exist), if any.
    pub expect_version: Option<u64>,
}

impl NsWrite<'_> {
    /// Whether the write may take effect on a namespace that is `live` (has
    /// a value) at `version`: its version condition holds, and a delete
    /// finds something to delete.
    pub fn holds(&self, live: bool, version: u64) -> bool {
        let version_ok = match self.expect_version {
            None => true,
            Some(0) => !live,
            Some(v) => live && version == v,
        };
        version_ok && (self.value.is_some() || live)
    }
}

impl Op {
    /// The namespace of a single-namespace operation; `None` for a
    /// transaction (see [`Op::namespaces`]).
    pub fn ns(&self) -> Option<&str> {
        match self {
            Op::Get { ns } | Op::Put { ns, .. } | Op::Cas { ns, .. } | Op::Delete { ns } => {
                Some(ns)
            }
            Op::Apply { .. } => None,
        }
    }

    /// Every namespace the operation is on, in request order.
    pub fn namespaces(&self) -> Vec<&str> {
        match self {
            Op::Apply { writes } => writes.iter().map(|w| w.ns.as_str()).collect(),
            _ => self.ns().into_iter().collect(),
        }
    }

    /// Whether the operation may change state.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// Whether the operation is a transaction.
    pub fn is_transaction(&self) -> bool {
        matches!(self, Op::Apply { .. })
    }

    /// What the operation writes, per namespace (nothing for a get).
    pub fn writes(&self) -> Vec<NsWrite<'_>> {
        let (ns, value, expect_version) = match self {
            Op::Get { .. } => return Vec::new(),
            Op::Put { ns, value } => (ns, Some(value), None),
            Op::Cas {
                ns,
                expect_version,
                value,
            } => (ns, Some(value), Some(*expect_version)),
            Op::Delete { ns } => (ns, None, None),
            Op::Apply { writes } => {
                return writes
                    .iter()
                    .map(|w| NsWrite {
                        ns: &w.ns,
                        value: w.value.as_ref(),
                        expect_version: w.expect_version,
                    })
                    .collect()
            }
        };
        vec![NsWrite {
            ns,
            value,
            expect_version,
        }]
    }
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOk {
    /// For a write (a transaction too): the revision it was committed at.
    /// For a get: the store revision the read was served at (the read is
    /// linearized there); `0` when the answer did not say (a get of a
    /// missing namespace).
    pub revision: u64,
    /// For a get: the value read, `None` when the namespace does not exist
    /// (never created, or deleted). For writes: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// For a get: the namespace's version (`0` when it does not exist). For
    /// a put/CAS/delete: the version it created. For a transaction: `0` (the
    /// server does not say; each namespace's version goes up by one).
    pub version: u64,
    /// For a get: the revision of the namespace's last change. Writes: 0.
    #[serde(default)]
    pub mod_revision: u64,
}

/// Why an operation definitely did not take effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailReason {
    /// Delete of a namespace that does not exist (or is deleted). For a
    /// transaction: its first refused write was such a delete.
    NotFound,
    /// A CAS whose expected version did not hold; `current`: the version the
    /// server reported, when it did. For a transaction: its first refused
    /// write was a CAS miss (the server names no version).
    VersionMismatch {
        /// The version at the time, if known.
        current: Option<u64>,
    },
    /// Refused for another reason without taking effect (e.g. `UNAVAILABLE`
    /// before it was sent to a leader).
    Other {
        /// The error text.
        message: String,
    },
}

/// One subscriber as `raftconf clients` listed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// Its client id.
    pub client_id: String,
    /// The highest revision it acknowledged.
    pub applied_revision: u64,
    /// `current`, `lagging` or `refusing`.
    pub state: String,
    /// Whether its stream was open.
    pub connected: bool,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A client process starts an operation. A process runs one operation at
    /// a time; `op_id` is unique in the run.
    Invoke {
        /// Monotonic time, ns since the run started.
        t: u64,
        /// The client process (a process whose operation ended `Info` never
        /// invokes again; a fresh process id takes its place).
        process: u64,
        /// Identifies the operation; its completion carries the same id.
        op_id: u64,
        /// The operation.
        op: Op,
    },
    /// The operation succeeded.
    Ok {
        /// Monotonic time.
        t: u64,
        /// The process.
        process: u64,
        /// The operation.
        op_id: u64,
        /// What it returned.
        result: OpOk,
    },
    /// The operation definitely did not take effect.
    Fail {
        /// Monotonic time.
        t: u64,
        /// The process.
        process: u64,
        /// The operation.
        op_id: u64,
        /// Why.
        #[serde(flatten)]
        reason: FailReason,
        /// The revision the answer was given at, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
    },
    /// The outcome is unknown (timeout, connection lost, `Indeterminate`):
    /// the write may or may not have taken effect, at any time after its
    /// invocation.
    Info {
        /// Monotonic time.
        t: u64,
        /// The process.
        process: u64,
        /// The operation.
        op_id: u64,
        /// The error text.
        error: String,
    },
    /// Something a watcher saw or did.
    Watch {
        /// Monotonic time.
        t: u64,
        /// The watcher (one per watcher task, across its sessions).
        watcher: u64,
        /// What happened.
        item: WatchItem,
    },
    /// The hot-reload handle swapped in a new value (`None`: the handle's
    /// state has no value, which the typed handle never swaps in).
    Reload {
        /// Monotonic time.
        t: u64,
        /// The hot-reload client.
        reloader: u64,
        /// The namespace.
        ns: String,
        /// The revision of the value.
        revision: u64,
        /// The value swapped in.
        value: Value,
        /// Which run of a reloader process (1, 2, … a restart is a new one);
        /// 0 for the in-process handle, which is never restarted.
        #[serde(default)]
        incarnation: u64,
        /// The process started from its cache (no server answered in time).
        #[serde(default)]
        from_cache: bool,
    },
    /// What `raftconf clients` reported for a namespace after the run.
    Delivery {
        /// Monotonic time.
        t: u64,
        /// The namespace.
        ns: String,
        /// The revision that wrote its current document (0: deleted).
        latest_revision: u64,
        /// Each subscriber: client id, applied revision, state, connected.
        subscribers: Vec<Delivered>,
    },
    /// A fault started or ended.
    Nemesis {
        /// Monotonic time.
        t: u64,
        /// `kill`, `pause`, `partition`, `membership`, …
        fault: String,
        /// `start` or `stop`.
        phase: String,
        /// What exactly (nodes, partition sides).
        detail: String,
    },
    /// A node's state after the run, once faults are healed and it caught up.
    Final {
        /// Monotonic time.
        t: u64,
        /// The node.
        node: u64,
        /// Its applied store revision.
        revision: u64,
        /// Its state digest (as `raftconf cluster status` reports it).
        digest: String,
        /// Every committed namespace change of the run as this node serves
        /// it (a watch from revision 1 on this node), in revision order.
        log: Vec<LogEntry>,
    },
}

impl Event {
    /// The event's time.
    pub fn t(&self) -> u64 {
        match self {
            Event::Invoke { t, .. }
            | Event::Ok { t, .. }
            | Event::Fail { t, .. }
            | Event::Info { t, .. }
            | Event::Watch { t, .. }
            | Event::Reload { t, .. }
            | Event::Delivery { t, .. }
            | Event::Nemesis { t, .. }
            | Event::Final { t, .. } => *t,
        }
    }
}

/// One change of a namespace within a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NsChange {
    /// `tenant/env/namespace`.
    pub ns: String,
    /// The namespace's version after the change.
    pub version: u64,
    /// The value after the change; `None` for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// One committed revision's namespace changes (a transaction has several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The revision.
    pub revision: u64,
    /// Its changes, in the order the server lists them.
    pub changes: Vec<NsChange>,
}

/// What a watcher saw or did. A watcher runs sessions one after another; a
/// session watches `prefix` from `from_revision` (inclusive) on one node
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
        /// The prefix watched (`tenant/env/`).
        prefix: String,
        /// The start revision (inclusive); 0 = a snapshot first.
        from_revision: u64,
    },
    /// A change event.
    Change {
        /// The session.
        session: u64,
        /// The revision, with every change of it within the prefix.
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

/// Appends events to a JSON-lines file.
#[derive(Debug)]
pub struct HistoryWriter {
    out: std::io::BufWriter<std::fs::File>,
}

impl HistoryWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(HistoryWriter {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
        })
    }

    /// Writes one event as one line.
    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    /// Flushes to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Reads a JSON-lines history; the error names the line that does not parse.
pub fn read_history(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path)?;
    let mut events = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Event, NsWrite, Op, TxOp};

    #[test]
    fn a_transaction_is_one_json_line_and_reads_back() {
        let op = Op::Apply {
            writes: vec![
                TxOp {
                    ns: "t/e/a".into(),
                    value: Some(json!({"w": "p1-2-0"})),
                    expect_version: Some(3),
                },
                TxOp {
                    ns: "t/e/b".into(),
                    value: None,
                    expect_version: None,
                },
            ],
        };
        let event = Event::Invoke {
            t: 5,
            process: 1,
            op_id: 2,
            op: op.clone(),
        };
        let line = serde_json::to_string(&event).expect("serializes");
        assert_eq!(
            line,
            r#"{"type":"invoke","t":5,"process":1,"op_id":2,"op":{"f":"apply","writes":[{"ns":"t/e/a","value":{"w":"p1-2-0"},"expect_version":3},{"ns":"t/e/b"}]}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).ok(), Some(event));
        assert_eq!(op.ns(), None);
        assert_eq!(op.namespaces(), ["t/e/a", "t/e/b"]);
    }

    #[test]
    fn write_conditions() {
        let value = json!({"w": "x"});
        let w = |value, expect_version| NsWrite {
            ns: "t/e/a",
            value,
            expect_version,
        };
        // (live, version) → holds, for: put, CAS v2, CAS "absent", delete, delete if v2.
        let cases = [
            (w(Some(&value), None), [true, true, true]),
            (w(Some(&value), Some(2)), [false, true, false]),
            (w(Some(&value), Some(0)), [true, false, false]),
            (w(None, None), [false, true, true]),
            (w(None, Some(2)), [false, true, false]),
        ];
        for (write, expected) in cases {
            let got = [
                write.holds(false, 2),
                write.holds(true, 2),
                write.holds(true, 3),
            ];
            assert_eq!(got, expected, "{write:?}");
        }
    }
}
