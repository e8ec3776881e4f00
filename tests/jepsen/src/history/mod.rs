//! The history of a run: every invocation and completion of a client
//! operation, every item a watcher received, every value the hot-reload
//! handle swapped in, every fault, and the final state of each node. Written
//! as JSON lines (one [`Event`] per line) with one monotonic clock (`t`,
//! nanoseconds since the run started), read back by the checkers.
//!
//! Namespace values are JSON objects; the workload makes every written value
//! unique (`{"w": "p<process>-<n>"}`, and `{"w": "p<process>-<n>-<k>"}` for
//! namespace `k` of a transaction), so a value identifies its write; so is
//! every schema it sets (its `description` names the operation).
//!
//! The parts: client operations (`op.rs`), committed changes and watch
//! items (`watch.rs`), schema history (`schema.rs`).

mod op;
mod schema;
mod watch;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use op::{FailReason, NsWrite, Op, OpOk, TxOp};
pub use schema::{schema_path, SchemaVersion};
pub use watch::{covers, ChangeKind, LogEntry, NsChange, WatchItem};

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
    /// A hot-reload handle swapped in a new value.
    Reload {
        /// Monotonic time.
        t: u64,
        /// The hot-reload client.
        reloader: u64,
        /// The namespace (`tenant/env/namespace`), or for a handle on a whole
        /// environment its prefix (`tenant/env/`).
        ns: String,
        /// The revision the value stands for: the newest revision that wrote
        /// one of its documents.
        revision: u64,
        /// The value swapped in: the namespace's document, or for a prefix
        /// an object of every live namespace's document by name.
        value: Value,
        /// Which run of a reloader process (1, 2, … a restart is a new one);
        /// 0 for the in-process handles, which are never restarted.
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
        /// The revision that wrote its current document (of its delete, if deleted).
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
        /// Every committed change of the run's namespaces (documents and
        /// schemas) as this node serves it (a watch from revision 1 on this
        /// node), in revision order.
        log: Vec<LogEntry>,
    },
    /// The schema history of the run's namespaces as one node serves it,
    /// after the run (recorded with the `Final` events).
    Schemas {
        /// Monotonic time.
        t: u64,
        /// The node.
        node: u64,
        /// Schema path (`tenant/namespace`) → every version kept, oldest
        /// first (empty when it never had a schema).
        schemas: BTreeMap<String, Vec<SchemaVersion>>,
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
            | Event::Final { t, .. }
            | Event::Schemas { t, .. } => *t,
        }
    }
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

    use super::{Event, Op, TxOp};

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
}
