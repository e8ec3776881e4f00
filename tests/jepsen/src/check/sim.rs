//! A simulated run of a correct store, for the checkers' tests: concurrent
//! processes whose operations (transactions over 2–3 namespaces among them,
//! and schema changes with the workload's rules, checked with the server's
//! schema code) take effect atomically somewhere between invocation and
//! completion, some ending indeterminate (applied or not), revisions that
//! change no namespace, two watchers (one resuming, one from a snapshot), a
//! reloader and three agreeing nodes. Every checker must pass it; seeded,
//! so a failure names its seed.

use std::collections::{BTreeMap, HashMap};

use raftconf_schema::CompiledSchema;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::schema_history::compile;
use super::testkit::{schema_change, History, PREFIX};
use crate::history::{
    schema_path, ChangeKind, FailReason, LogEntry, NsChange, Op, OpOk, SchemaVersion, TxOp,
    WatchItem,
};
use crate::schemas::Rule;

const NAMESPACES: [&str; 3] = ["t/e/a", "t/e/b", "t/e/c"];

/// The correct store: one revision counter, namespaces as registers, a
/// schema per namespace (one environment, so a schema change is one change).
#[derive(Default)]
struct Store {
    revision: u64,
    /// ns → (value, version, mod revision).
    state: BTreeMap<String, (Option<Value>, u64, u64)>,
    log: Vec<LogEntry>,
    /// Schema path → every version, oldest first.
    schemas: BTreeMap<String, Vec<SchemaVersion>>,
    /// Schema path → the schema in force, compiled.
    in_force: HashMap<String, CompiledSchema>,
}

impl Store {
    fn version(&self, ns: &str) -> u64 {
        self.state.get(ns).map_or(0, |s| s.1)
    }

    fn live(&self, ns: &str) -> bool {
        self.state.get(ns).is_some_and(|s| s.0.is_some())
    }

    fn write(&mut self, ns: &str, value: Option<Value>) -> OpOk {
        self.write_all(vec![(ns.to_string(), value)])
    }

    /// Writes every `(ns, value)` at one new revision, as one log entry.
    /// The version returned is the last namespace's.
    fn write_all(&mut self, writes: Vec<(String, Option<Value>)>) -> OpOk {
        self.revision += 1;
        let mut changes = Vec::with_capacity(writes.len());
        let mut version = 0;
        for (ns, value) in writes {
            version = self.version(&ns) + 1;
            self.state
                .insert(ns.clone(), (value.clone(), version, self.revision));
            changes.push(NsChange {
                ns,
                version,
                value,
                kind: ChangeKind::Document,
            });
        }
        self.log.push(LogEntry {
            revision: self.revision,
            changes,
        });
        OpOk {
            revision: self.revision,
            value: None,
            version,
            mod_revision: 0,
        }
    }

    /// Whether `value` breaks the schema in force for `ns`.
    fn breaks(&self, ns: &str, value: &Value) -> bool {
        schema_path(ns)
            .and_then(|path| self.in_force.get(&path))
            .is_some_and(|schema| !schema.validate(value).is_empty())
    }

    /// A transaction, all or nothing, refused with its first refused
    /// write's reason as the server does (a CAS miss names no version; a
    /// schema violation names every namespace whose value breaks its schema).
    fn transaction(&mut self, op: &Op) -> Result<OpOk, FailReason> {
        let mut first: Option<FailReason> = None;
        let mut broken = Vec::new();
        for w in op.writes() {
            let (live, version) = (self.live(w.ns), self.version(w.ns));
            let version_ok = match w.expect_version {
                None => true,
                Some(0) => !live,
                Some(v) => live && version == v,
            };
            let refusal = if !version_ok {
                Some(FailReason::VersionMismatch { current: None })
            } else if w.value.is_none() && !live {
                Some(FailReason::NotFound)
            } else if w.value.is_some_and(|v| self.breaks(w.ns, v)) {
                broken.push(w.ns.to_string());
                Some(FailReason::SchemaViolation {
                    namespaces: Vec::new(),
                    message: "breaks its schema".into(),
                })
            } else {
                None
            };
            first = first.or(refusal);
        }
        if let Some(reason) = first {
            return Err(match reason {
                FailReason::SchemaViolation { message, .. } => FailReason::SchemaViolation {
                    namespaces: broken,
                    message,
                },
                other => other,
            });
        }
        let writes = op
            .writes()
            .iter()
            .map(|w| (w.ns.to_string(), w.value.cloned()))
            .collect();
        Ok(OpOk {
            version: 0,
            ..self.write_all(writes)
        })
    }

    fn apply(&mut self, op: &Op) -> Result<OpOk, FailReason> {
        match op {
            Op::Get { ns } => Ok(match self.state.get(ns.as_str()) {
                Some((Some(value), version, mod_revision)) => OpOk {
                    revision: self.revision,
                    value: Some(value.clone()),
                    version: *version,
                    mod_revision: *mod_revision,
                },
                _ => OpOk {
                    revision: 0,
                    value: None,
                    version: 0,
                    mod_revision: 0,
                },
            }),
            Op::Put { ns, value } if self.breaks(ns, value) => Err(violation(ns)),
            Op::Put { ns, value } => Ok(self.write(ns, Some(value.clone()))),
            Op::Cas {
                ns,
                expect_version,
                value,
            } => {
                let holds = match expect_version {
                    0 => !self.live(ns),
                    v => self.live(ns) && self.version(ns) == *v,
                };
                match holds {
                    true if self.breaks(ns, value) => Err(violation(ns)),
                    true => Ok(self.write(ns, Some(value.clone()))),
                    false => Err(FailReason::VersionMismatch {
                        current: Some(self.version(ns)),
                    }),
                }
            }
            Op::Delete { ns } => match self.live(ns) {
                true => Ok(self.write(ns, None)),
                false => Err(FailReason::NotFound),
            },
            Op::Apply { .. } => self.transaction(op),
            Op::SetSchema {
                path,
                schema,
                force,
            } => self.set_schema(path, schema, *force),
            Op::DeleteSchema { path } => match self.in_force.remove(path) {
                Some(_) => Ok(self.record_schema(path, None, false)),
                None => Err(FailReason::NotFound),
            },
        }
    }

    /// Sets `schema` on `path` unless a live document breaks it and it is
    /// not forced.
    fn set_schema(&mut self, path: &str, schema: &Value, force: bool) -> Result<OpOk, FailReason> {
        let compiled = compile(schema).expect("invariant: the rules' schemas compile");
        let broken: Vec<String> = NAMESPACES
            .iter()
            .filter(|ns| schema_path(ns).as_deref() == Some(path))
            .filter_map(|ns| self.state.get(*ns)?.0.as_ref())
            .filter(|value| !compiled.validate(value).is_empty())
            .map(|_| "e:/w".to_string())
            .collect();
        if !broken.is_empty() && !force {
            return Err(FailReason::SchemaIncompatible {
                broken,
                message: "live documents break it".into(),
            });
        }
        self.in_force.insert(path.to_string(), compiled);
        Ok(self.record_schema(path, Some(schema.clone()), !broken.is_empty()))
    }

    /// A new schema version of `path` at a new revision, delivered as a
    /// schema change of its namespace.
    fn record_schema(&mut self, path: &str, schema: Option<Value>, forced: bool) -> OpOk {
        self.revision += 1;
        let versions = self.schemas.entry(path.to_string()).or_default();
        let version = versions.len() as u64 + 1;
        versions.push(SchemaVersion {
            version,
            revision: self.revision,
            schema: schema.clone(),
            forced,
        });
        let name = path.split_once('/').map_or(path, |(_, name)| name);
        self.log.push(LogEntry {
            revision: self.revision,
            changes: vec![schema_change(&format!("{PREFIX}{name}"), version, schema)],
        });
        OpOk {
            revision: self.revision,
            value: None,
            version,
            mod_revision: 0,
        }
    }

    /// A buggy get: `ns` as it was just before its last change, served at
    /// that revision.
    fn stale_get(&self, ns: &str) -> Option<OpOk> {
        let last = self
            .log
            .iter()
            .rposition(|e| e.changes.iter().any(|c| c.ns == ns && c.is_document()))?;
        let revision = self.log[last].revision - 1;
        let before = self.log[..last].iter().rev().find_map(|e| {
            e.changes
                .iter()
                .find(|c| c.ns == ns && c.is_document())
                .map(|c| (e.revision, c))
        });
        Some(match before {
            Some((mod_revision, c)) if c.value.is_some() => OpOk {
                revision,
                value: c.value.clone(),
                version: c.version,
                mod_revision,
            },
            _ => OpOk {
                revision: 0,
                value: None,
                version: 0,
                mod_revision: 0,
            },
        })
    }

    /// Every live namespace under the prefix at `revision`, from the log.
    fn snapshot(&self, revision: u64) -> Vec<NsChange> {
        let mut at: BTreeMap<&str, &NsChange> = BTreeMap::new();
        for entry in self.log.iter().take_while(|e| e.revision <= revision) {
            for change in entry.changes.iter().filter(|c| c.is_document()) {
                at.insert(change.ns.as_str(), change);
            }
        }
        at.into_values()
            .filter(|c| c.value.is_some())
            .cloned()
            .collect()
    }
}

enum Phase {
    Invoked,
    /// Took effect at the revision (or, for `None`, never will: it ends
    /// indeterminate).
    Applied(Option<(Result<OpOk, FailReason>, u64)>),
}

struct InFlight {
    op_id: u64,
    op: Op,
    phase: Phase,
}

/// A correct run of `n_ops` operations by `processes` concurrent processes.
pub(crate) fn simulate(seed: u64, n_ops: u64, processes: u64) -> History {
    simulate_with_stale_reads(seed, n_ops, processes, 0.0)
}

/// A run in which each get, with probability `stale`, returns the state
/// from before its namespace's last change.
pub(crate) fn simulate_with_stale_reads(
    seed: u64,
    n_ops: u64,
    processes: u64,
    stale: f64,
) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = History::default();
    let mut store = Store {
        revision: 2,
        ..Store::default()
    };
    // slot → (its process id, its op in flight)
    let mut slots: Vec<(u64, Option<InFlight>)> = (0..processes).map(|p| (p, None)).collect();
    let mut next_process = processes;
    let mut started = 0;
    while started < n_ops || slots.iter().any(|(_, f)| f.is_some()) {
        let slot = rng.gen_range(0..slots.len());
        let (process, in_flight) = &mut slots[slot];
        let process = *process;
        match in_flight.take() {
            None if started < n_ops => {
                started += 1;
                let op_id = started;
                let ns = NAMESPACES[rng.gen_range(0..NAMESPACES.len())];
                let value = serde_json::json!({ "w": format!("p{process}-{op_id}") });
                let op = match rng.gen_range(0..100) {
                    0..10 => transaction(&mut rng, &store, process, op_id),
                    10..13 => schema_op(&mut rng, ns, process, op_id),
                    13..46 => Op::Get { ns: ns.to_string() },
                    46..68 => Op::Put {
                        ns: ns.to_string(),
                        value,
                    },
                    68..86 => Op::Cas {
                        ns: ns.to_string(),
                        expect_version: expect_version(&mut rng, &store, ns),
                        value,
                    },
                    _ => Op::Delete { ns: ns.to_string() },
                };
                h.invoke(process, op_id, op.clone());
                *in_flight = Some(InFlight {
                    op_id,
                    op,
                    phase: Phase::Invoked,
                });
            }
            None => {}
            Some(InFlight {
                op_id,
                op,
                phase: Phase::Invoked,
            }) => {
                if rng.gen_bool(0.03) {
                    store.revision += 1; // a tenant or environment change
                }
                // Rarely, an op that never takes effect and ends indeterminate.
                let result = match (&op, rng.gen_bool(stale)) {
                    (Op::Get { ns }, true) => store.stale_get(ns).map(Ok),
                    _ => None,
                }
                .or_else(|| (!rng.gen_bool(0.04)).then(|| store.apply(&op)))
                .map(|result| (result, store.revision));
                *in_flight = Some(InFlight {
                    op_id,
                    op,
                    phase: Phase::Applied(result),
                });
            }
            Some(InFlight {
                op_id,
                phase: Phase::Applied(result),
                ..
            }) => match result {
                Some((Ok(ok), _)) if rng.gen_bool(0.95) => {
                    h.ok(process, op_id, ok);
                }
                Some((Err(reason), revision)) if rng.gen_bool(0.95) => {
                    h.fail(process, op_id, reason, Some(revision));
                }
                _ => {
                    h.info(process, op_id);
                    slots[slot].0 = next_process;
                    next_process += 1;
                }
            },
        }
    }
    watch_and_reload(&mut h, &store);
    for node in 1..=3 {
        h.final_node(node, store.revision, "digest", store.log.clone());
        h.schemas(node, store.schemas.clone());
    }
    h
}

/// A refusal of `ns`'s value by its schema.
fn violation(ns: &str) -> FailReason {
    FailReason::SchemaViolation {
        namespaces: vec![ns.to_string()],
        message: "breaks its schema".into(),
    }
}

/// As the workload: one in six removes `ns`'s schema, the others set one of
/// the rules, four in five with force.
fn schema_op(rng: &mut StdRng, ns: &str, process: u64, op_id: u64) -> Op {
    let path = schema_path(ns).expect("invariant: the namespaces are tenant/env/ns");
    if rng.gen_bool(1.0 / 6.0) {
        return Op::DeleteSchema { path };
    }
    let rule = Rule::ALL[rng.gen_range(0..Rule::ALL.len())];
    Op::SetSchema {
        path,
        schema: rule.schema(&format!("p{process}-{op_id}")),
        force: rng.gen_bool(0.8),
    }
}

/// Mostly the namespace's current version, else anything up to one past it.
fn expect_version(rng: &mut StdRng, store: &Store, ns: &str) -> u64 {
    match rng.gen_bool(0.6) {
        true if store.live(ns) => store.version(ns),
        _ => rng.gen_range(0..=store.version(ns) + 1),
    }
}

/// A transaction over 2–3 distinct namespaces: puts of unique values, some
/// with a version condition, and in one of five a delete.
fn transaction(rng: &mut StdRng, store: &Store, process: u64, op_id: u64) -> Op {
    let count = rng.gen_range(2..=NAMESPACES.len());
    let picked = rand::seq::index::sample(rng, NAMESPACES.len(), count).into_vec();
    let delete_at = rng.gen_bool(0.2).then(|| rng.gen_range(0..count));
    let writes = picked
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let ns = NAMESPACES[k];
            TxOp {
                ns: ns.to_string(),
                value: (delete_at != Some(i))
                    .then(|| serde_json::json!({ "w": format!("p{process}-{op_id}-{k}") })),
                expect_version: rng.gen_bool(0.3).then(|| expect_version(rng, store, ns)),
            }
        })
        .collect();
    Op::Apply { writes }
}

/// Watcher 1 from revision 1, cut in two sessions at the middle of the log
/// with a progress event; watcher 2 from a snapshot in the middle;
/// reloader 1 following `t/e/a`.
fn watch_and_reload(h: &mut History, store: &Store) {
    let log = &store.log;
    let middle = log.len() / 2;
    let (first, second) = log.split_at(middle);
    h.start(1, 0, 1);
    for entry in first {
        h.change(1, 0, entry.clone());
    }
    // Nothing under the prefix before the next entry: progress up to it.
    let progress = second.first().map_or(store.revision, |e| e.revision - 1);
    h.progress(1, 0, progress).end(1, 0);
    h.watch(
        1,
        WatchItem::Start {
            session: 1,
            node: 2,
            targets: vec![PREFIX.to_string()],
            from_revision: progress + 1,
        },
    );
    for entry in second {
        h.change(1, 1, entry.clone());
    }
    h.progress(1, 1, store.revision);

    let snapshot_at = first.last().map_or(2, |e| e.revision);
    h.start(2, 0, 0).watch(
        2,
        WatchItem::Snapshot {
            session: 0,
            revision: snapshot_at,
            entries: store.snapshot(snapshot_at),
        },
    );
    for entry in second {
        h.change(2, 0, entry.clone());
    }

    for entry in log {
        for change in entry
            .changes
            .iter()
            .filter(|c| c.ns == NAMESPACES[0] && c.is_document())
        {
            if let Some(Value::Object(map)) = &change.value {
                if let Some(Value::String(w)) = map.get("w") {
                    h.reload(1, &change.ns, entry.revision, w);
                }
            }
        }
    }
}
