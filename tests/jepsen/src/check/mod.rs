//! The checkers. Each reads the whole history and gives its own [`Verdict`].
//!
//! | verdict | file | what it proves |
//! |---|---|---|
//! | `linearizable` | `linear.rs` (+ `wgl.rs`) | every acknowledged answer fits one order that respects real time: by the revisions the server reported, and independently by a search over the client-visible results alone |
//! | `no_lost_writes` | `lost.rs` | acknowledged writes are in the committed log, failed ones are not, nothing appears that nobody wrote |
//! | `convergence` | `convergence.rs` | every node ends with the same revision, digest and log |
//! | `watch` | `watch.rs` | watch streams are ordered, unique, reliable, atomic and resumable |
//! | `hot_reload` | `reload.rs` | the hot-reload handle only moves forward, to committed values |
//!
//! The committed order all of them compare against is the log of the
//! [`Event::Final`] events ([`CommittedLog`]); `convergence` cross-checks
//! that the nodes agree on it. Client operations are paired once
//! ([`ClientOps`]) and shared.
//!
//! Checkers never panic on what the history contains: anything unexpected
//! is an anomaly.

mod convergence;
mod linear;
mod lost;
mod reload;
mod watch;
mod wgl;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod testkit;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::history::{Event, FailReason, LogEntry, NsChange, Op, OpOk};

/// One checker's conclusion.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The checker (`linearizable`, `no_lost_writes`, `convergence`,
    /// `watch`, `hot_reload`).
    pub name: &'static str,
    /// Whether the history passed.
    pub ok: bool,
    /// One line: what was checked, how much, how many anomalies.
    pub summary: String,
    /// The anomalies found (at most [`CheckOptions::max_anomalies`]), each
    /// one line naming op ids, revisions, namespaces, values and times.
    pub anomalies: Vec<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.ok { "ok" } else { "FAILED" };
        write!(f, "{}: {status}: {}", self.name, self.summary)?;
        for anomaly in &self.anomalies {
            write!(f, "\n  - {anomaly}")?;
        }
        Ok(())
    }
}

/// How the checkers run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// How long the linearizability search may take over all namespaces
    /// together; a search that does not finish in time fails the verdict.
    pub wgl_time_limit: Duration,
    /// How many anomalies each checker lists (it still counts them all).
    pub max_anomalies: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            wgl_time_limit: Duration::from_secs(30),
            max_anomalies: 50,
        }
    }
}

/// Runs every checker over `history`, in the order of the table above.
pub fn check_all(history: &[Event], options: &CheckOptions) -> Vec<Verdict> {
    let ctx = Context::new(history, options);
    vec![
        linear::check(&ctx),
        lost::check(&ctx),
        convergence::check(&ctx),
        watch::check(&ctx),
        reload::check(&ctx),
    ]
}

/// What every checker reads, built once per history.
pub(crate) struct Context<'h> {
    pub(crate) history: &'h [Event],
    pub(crate) options: &'h CheckOptions,
    /// `None` when the history has no [`Event::Final`].
    pub(crate) log: Option<CommittedLog<'h>>,
    pub(crate) ops: ClientOps<'h>,
}

impl<'h> Context<'h> {
    pub(crate) fn new(history: &'h [Event], options: &'h CheckOptions) -> Self {
        Context {
            history,
            options,
            log: CommittedLog::from_history(history),
            ops: ClientOps::from_history(history),
        }
    }
}

/// The anomalies a checker found: all counted, the first
/// [`CheckOptions::max_anomalies`] kept.
pub(crate) struct Anomalies {
    kept: Vec<String>,
    total: usize,
    max: usize,
}

impl Anomalies {
    pub(crate) fn new(max: usize) -> Self {
        Anomalies {
            kept: Vec::new(),
            total: 0,
            max,
        }
    }

    /// Records one anomaly (one line).
    pub(crate) fn push(&mut self, anomaly: String) {
        self.total += 1;
        if self.kept.len() < self.max {
            self.kept.push(anomaly);
        }
    }

    /// The verdict: ok when there was no anomaly; `summary` gets the count.
    pub(crate) fn verdict(self, name: &'static str, summary: String) -> Verdict {
        let summary = match self.total {
            0 => format!("{summary}; no anomalies"),
            n if n > self.kept.len() => {
                format!(
                    "{summary}; {n} anomalies (first {} listed)",
                    self.kept.len()
                )
            }
            n => format!("{summary}; {n} anomalies"),
        };
        Verdict {
            name,
            ok: self.total == 0,
            summary,
            anomalies: self.kept,
        }
    }
}

/// The verdict of a checker that needs the committed log when the history
/// has none.
pub(crate) fn no_log_verdict(name: &'static str) -> Verdict {
    Verdict {
        name,
        ok: false,
        summary: "no Final event: nothing to check against".to_string(),
        anomalies: vec!["the history has no Final event, so no committed log".to_string()],
    }
}

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
    /// Per namespace, its changes sorted by revision.
    per_ns: HashMap<&'h str, Vec<(u64, &'h NsChange)>>,
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
        for (i, entry) in entries.iter().enumerate() {
            by_revision.entry(entry.revision).or_insert(i);
            max_revision = max_revision.max(entry.revision);
            for change in &entry.changes {
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

    /// The change of `ns` at `revision`.
    pub(crate) fn change_at(&self, revision: u64, ns: &str) -> Option<&'h NsChange> {
        self.entry_at(revision)?.changes.iter().find(|c| c.ns == ns)
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

    /// Every namespace the log ever changed.
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &'h str> + '_ {
        self.per_ns.keys().copied()
    }

    /// `ns`'s changes, sorted by revision.
    pub(crate) fn changes_of(&self, ns: &str) -> &[(u64, &'h NsChange)] {
        self.per_ns.get(ns).map_or(&[], Vec::as_slice)
    }

    /// The revisions (sorted) whose entry changes a namespace under `prefix`.
    pub(crate) fn revisions_under(&self, prefix: &str) -> Vec<u64> {
        let mut revisions: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.changes.iter().any(|c| c.ns.starts_with(prefix)))
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

/// How a client operation ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'h> {
    Ok {
        t: u64,
        result: &'h OpOk,
    },
    Fail {
        t: u64,
        reason: &'h FailReason,
        /// The revision the answer was given at; `None` when unknown
        /// (a reported `0` counts as unknown).
        revision: Option<u64>,
    },
    /// Indeterminate; `t` is `None` when the history ended first.
    Info {
        t: Option<u64>,
    },
}

/// One client operation: its invocation and how it ended.
#[derive(Debug, Clone)]
pub(crate) struct ClientOp<'h> {
    pub(crate) op_id: u64,
    pub(crate) process: u64,
    pub(crate) op: &'h Op,
    pub(crate) invoke_t: u64,
    pub(crate) outcome: Outcome<'h>,
}

impl ClientOp<'_> {
    /// When it completed, `None` for an indeterminate operation.
    pub(crate) fn complete_t(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { t, .. } | Outcome::Fail { t, .. } => Some(t),
            Outcome::Info { .. } => None,
        }
    }
}

impl fmt::Display for ClientOp<'_> {
    /// One line: `op 17 (p3 put t/e/a {"w":"p3-17"}, t=100..250 ok rev 12 v3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {} (p{} ", self.op_id, self.process)?;
        match self.op {
            Op::Get { ns } => write!(f, "get {ns}")?,
            Op::Put { ns, value } => write!(f, "put {ns} {value}")?,
            Op::Cas {
                ns,
                expect_version,
                value,
            } => write!(f, "cas {ns} if v{expect_version} {value}")?,
            Op::Delete { ns } => write!(f, "delete {ns}")?,
        }
        match self.outcome {
            Outcome::Ok { t, result } => {
                write!(f, ", t={}..{t} ok rev {}", self.invoke_t, result.revision)?;
                if let Op::Get { .. } = self.op {
                    match &result.value {
                        Some(v) => write!(
                            f,
                            " {v} v{} mod rev {}",
                            result.version, result.mod_revision
                        )?,
                        None => write!(f, " none v{}", result.version)?,
                    }
                } else {
                    write!(f, " v{}", result.version)?;
                }
            }
            Outcome::Fail {
                t,
                reason,
                revision,
            } => {
                write!(f, ", t={}..{t} fail ", self.invoke_t)?;
                match reason {
                    FailReason::NotFound => write!(f, "not found")?,
                    FailReason::VersionMismatch { current: Some(c) } => {
                        write!(f, "version mismatch (current v{c})")?
                    }
                    FailReason::VersionMismatch { current: None } => write!(f, "version mismatch")?,
                    FailReason::Other { message } => write!(f, "other: {message}")?,
                }
                if let Some(r) = revision {
                    write!(f, " at rev {r}")?;
                }
            }
            Outcome::Info { t: Some(t) } => write!(f, ", t={}..{t} info", self.invoke_t)?,
            Outcome::Info { t: None } => write!(f, ", t={}.. never completed", self.invoke_t)?,
        }
        write!(f, ")")
    }
}

/// Every client operation of the history, invocations paired with their
/// completions, in invocation order; and what did not pair up.
pub(crate) struct ClientOps<'h> {
    pub(crate) ops: Vec<ClientOp<'h>>,
    /// Completions without an invocation, second completions, a process
    /// invoking while its previous operation is open, …
    pub(crate) malformed: Vec<String>,
}

impl<'h> ClientOps<'h> {
    pub(crate) fn from_history(history: &'h [Event]) -> Self {
        let mut ops: Vec<ClientOp<'h>> = Vec::new();
        let mut malformed = Vec::new();
        let mut by_id: HashMap<u64, usize> = HashMap::new();
        let mut completed: Vec<bool> = Vec::new();
        // process → the op it has open.
        let mut open: HashMap<u64, u64> = HashMap::new();
        for event in history {
            let (t, process, op_id, outcome) = match event {
                Event::Invoke {
                    t,
                    process,
                    op_id,
                    op,
                } => {
                    if by_id.contains_key(op_id) {
                        malformed.push(format!(
                            "op {op_id} invoked twice (again by p{process} at t={t})"
                        ));
                        continue;
                    }
                    if let Some(previous) = open.insert(*process, *op_id) {
                        malformed.push(format!(
                            "p{process} invoked op {op_id} at t={t} while its op {previous} was still open"
                        ));
                    }
                    by_id.insert(*op_id, ops.len());
                    completed.push(false);
                    ops.push(ClientOp {
                        op_id: *op_id,
                        process: *process,
                        op,
                        invoke_t: *t,
                        outcome: Outcome::Info { t: None },
                    });
                    continue;
                }
                Event::Ok {
                    t,
                    process,
                    op_id,
                    result,
                } => (*t, *process, *op_id, Outcome::Ok { t: *t, result }),
                Event::Fail {
                    t,
                    process,
                    op_id,
                    reason,
                    revision,
                } => (
                    *t,
                    *process,
                    *op_id,
                    Outcome::Fail {
                        t: *t,
                        reason,
                        revision: revision.filter(|&r| r > 0),
                    },
                ),
                Event::Info {
                    t, process, op_id, ..
                } => (*t, *process, *op_id, Outcome::Info { t: Some(*t) }),
                _ => continue,
            };
            let Some(&i) = by_id.get(&op_id) else {
                malformed.push(format!(
                    "op {op_id} completed by p{process} at t={t} was never invoked"
                ));
                continue;
            };
            let (Some(op), Some(done)) = (ops.get_mut(i), completed.get_mut(i)) else {
                continue;
            };
            if *done {
                malformed.push(format!("op {op_id} completed twice (again at t={t})"));
                continue;
            }
            if op.process != process {
                malformed.push(format!(
                    "op {op_id} invoked by p{} but completed by p{process} at t={t}",
                    op.process
                ));
            }
            if t < op.invoke_t {
                malformed.push(format!(
                    "op {op_id} completed at t={t} before it was invoked at t={}",
                    op.invoke_t
                ));
            }
            if open.get(&op.process) == Some(&op_id) {
                open.remove(&op.process);
            }
            *done = true;
            op.outcome = outcome;
        }
        ClientOps { ops, malformed }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::testkit::valid_history;
    use super::{check_all, sim, CheckOptions, Verdict};

    fn assert_all_pass(verdicts: &[Verdict], what: &str) {
        let failed: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.ok)
            .map(|v| v.to_string())
            .collect();
        assert!(failed.is_empty(), "{what}:\n{}", failed.join("\n"));
    }

    #[test]
    fn valid_history_passes_every_checker() {
        let h = valid_history();
        let verdicts = check_all(&h.events, &CheckOptions::default());
        let names: Vec<&str> = verdicts.iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [
                "linearizable",
                "no_lost_writes",
                "convergence",
                "watch",
                "hot_reload"
            ]
        );
        assert_all_pass(&verdicts, "the valid history");
    }

    #[test]
    fn simulated_correct_runs_pass_every_checker() {
        for seed in 0..20 {
            let h = sim::simulate(seed, 400, 2 + seed % 6);
            assert_all_pass(
                &check_all(&h.events, &CheckOptions::default()),
                &format!("seed {seed}"),
            );
        }
    }

    /// `cargo test --release -p raftconf-jepsen -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release"]
    fn simulated_run_of_100k_events_checks_quickly() {
        let n = std::env::var("SIM_OPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30_000);
        let h = sim::simulate(7, n, 10);
        let started = Instant::now();
        let verdicts = check_all(&h.events, &CheckOptions::default());
        println!(
            "{} events checked in {:?}",
            h.events.len(),
            started.elapsed()
        );
        for v in &verdicts {
            println!("{v}");
        }
        assert_all_pass(&verdicts, "seed 7");
    }
}
