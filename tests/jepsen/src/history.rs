//! The history of a run: every invocation and completion of a client
//! operation, every item a watcher received, every value the hot-reload
//! handle swapped in, every fault, and the final state of each node. Written
//! as JSON lines (one [`Event`] per line) with one monotonic clock (`t`,
//! nanoseconds since the run started), read back by the checkers.
//!
//! Namespace values are JSON objects; the workload makes every written value
//! unique (`{"w": "<process>-<n>"}`), so a value identifies its write.

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
}

impl Op {
    /// The namespace the operation is on.
    pub fn ns(&self) -> &str {
        match self {
            Op::Get { ns } | Op::Put { ns, .. } | Op::Cas { ns, .. } | Op::Delete { ns } => ns,
        }
    }

    /// Whether the operation may change state.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// The value a put or CAS writes.
    pub fn written_value(&self) -> Option<&Value> {
        match self {
            Op::Put { value, .. } | Op::Cas { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOk {
    /// For a write: the revision it was committed at. For a get: the store
    /// revision the read was served at (the read is linearized there); `0`
    /// when the answer did not say (a get of a missing namespace).
    pub revision: u64,
    /// For a get: the value read, `None` when the namespace does not exist
    /// (never created, or deleted). For writes: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// For a get: the namespace's version (`0` when it does not exist). For
    /// a put/CAS/delete: the version it created.
    pub version: u64,
    /// For a get: the revision of the namespace's last change. Writes: 0.
    #[serde(default)]
    pub mod_revision: u64,
}

/// Why an operation definitely did not take effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailReason {
    /// Delete of a namespace that does not exist (or is deleted).
    NotFound,
    /// A CAS whose expected version did not hold; `current`: the version the
    /// server reported, when it did.
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
