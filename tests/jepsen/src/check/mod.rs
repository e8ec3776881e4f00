//! The checkers. Each reads the whole history and gives its own [`Verdict`].
//!
//! | verdict | file | what it proves |
//! |---|---|---|
//! | `linearizable` | `linear.rs` (+ `wgl.rs`) | every acknowledged answer fits one order that respects real time: by the revisions the server reported, and independently by a search over the client-visible results alone |
//! | `no_lost_writes` | `lost.rs` | acknowledged writes are in the committed log, failed ones are not, nothing appears that nobody wrote, and a transaction is there whole, in one entry, or not at all |
//! | `convergence` | `convergence.rs` | every node ends with the same revision, digest and log |
//! | `watch` | `watch.rs` | watch streams are ordered, unique, reliable, atomic and resumable |
//! | `hot_reload` | `reload.rs` | the hot-reload handles only move forward, to committed values, a set handle to whole revisions |
//! | `verdict` | `verdict.rs` (+ `schema_history.rs`, `window.rs`) | every node holds the same schema history, delivered as schema changes; every write got the verdict the schema in effect gives it |
//!
//! The committed order all of them compare against is the log of the
//! [`Event::Final`] events, indexed once (`log.rs`); `convergence`
//! cross-checks that the nodes agree on it. The log holds schema changes
//! too (watchers get them under the namespace's path); a namespace's state
//! and values are its document changes only. Client operations are paired
//! with their completions once (`ops.rs`). Tests build histories with
//! `testkit.rs` and simulate correct runs with `sim.rs`.
//!
//! Checkers never panic on what the history contains: anything unexpected
//! is an anomaly.

mod convergence;
mod linear;
mod log;
mod lost;
mod ops;
mod reload;
mod schema_history;
mod verdict;
mod watch;
mod wgl;
mod window;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod testkit;

use std::fmt;
use std::time::Duration;

use crate::history::Event;

pub(crate) use log::{value_key, CommittedLog, NsState};
pub(crate) use ops::{ClientOp, ClientOps, Outcome};

/// One checker's conclusion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// The checker (`linearizable`, `no_lost_writes`, `convergence`,
    /// `watch`, `hot_reload`, `verdict`).
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
        reload::check_delivery(&ctx),
        verdict::check(&ctx),
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use std::collections::HashSet;

    use super::testkit::{valid_history, valid_schema_history, valid_tx_history};
    use super::{check_all, sim, CheckOptions, Verdict};
    use crate::history::{Event, FailReason, Op};

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
                "hot_reload",
                "delivery",
                "verdict"
            ]
        );
        assert_all_pass(&verdicts, "the valid history");
    }

    #[test]
    fn valid_history_with_transactions_passes_every_checker() {
        let h = valid_tx_history();
        assert_all_pass(
            &check_all(&h.events, &CheckOptions::default()),
            "the valid history with transactions",
        );
    }

    #[test]
    fn valid_history_with_schema_changes_passes_every_checker() {
        let h = valid_schema_history();
        assert_all_pass(
            &check_all(&h.events, &CheckOptions::default()),
            "the valid history with schema changes",
        );
    }

    #[test]
    fn simulated_runs_include_schema_changes_and_refusals() {
        let h = sim::simulate(3, 400, 4);
        let schema_ops: HashSet<u64> = h
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Invoke { op_id, op, .. } if op.is_schema() => Some(*op_id),
                _ => None,
            })
            .collect();
        let acknowledged = h
            .events
            .iter()
            .filter(|e| matches!(e, Event::Ok { op_id, .. } if schema_ops.contains(op_id)))
            .count();
        let refused = |pick: fn(&FailReason) -> bool| {
            h.events
                .iter()
                .filter(|e| matches!(e, Event::Fail { reason, .. } if pick(reason)))
                .count()
        };
        let violations = refused(|r| matches!(r, FailReason::SchemaViolation { .. }));
        let incompatible = refused(|r| matches!(r, FailReason::SchemaIncompatible { .. }));
        assert!(
            acknowledged > 0 && violations > 0 && incompatible > 0,
            "{} schema changes, {acknowledged} acknowledged; {violations} writes and {incompatible} schemas refused",
            schema_ops.len()
        );
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

    #[test]
    fn simulated_stale_reads_are_caught_by_both_linearizability_checks() {
        let h = sim::simulate_with_stale_reads(1, 400, 4, 0.1);
        let verdicts = check_all(&h.events, &CheckOptions::default());
        let linear = &verdicts[0];
        assert!(!linear.ok, "{linear}");
        let found = |prefix: &str| linear.anomalies.iter().any(|a| a.starts_with(prefix));
        assert!(found("stale read:") || found("read disagrees"), "{linear}");
        assert!(found("search: t/e/"), "{linear}");
        assert_all_pass(&verdicts[1..], "stale reads leave the rest correct");
    }

    #[test]
    fn simulated_runs_include_transactions_of_every_outcome() {
        let h = sim::simulate(3, 400, 4);
        let tx_ids: std::collections::HashSet<u64> = h
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Invoke {
                    op_id,
                    op: Op::Apply { .. },
                    ..
                } => Some(*op_id),
                _ => None,
            })
            .collect();
        let count = |pick: fn(&Event) -> Option<u64>| {
            h.events
                .iter()
                .filter_map(pick)
                .filter(|id| tx_ids.contains(id))
                .count()
        };
        let ok = count(|e| match e {
            Event::Ok { op_id, .. } => Some(*op_id),
            _ => None,
        });
        let failed = count(|e| match e {
            Event::Fail { op_id, .. } => Some(*op_id),
            _ => None,
        });
        let info = count(|e| match e {
            Event::Info { op_id, .. } => Some(*op_id),
            _ => None,
        });
        assert!(
            ok > 0 && failed > 0 && info > 0,
            "{} transactions: {ok} ok, {failed} failed, {info} indeterminate",
            tx_ids.len()
        );
        let multi = h.events.iter().any(|e| match e {
            Event::Final { log, .. } => log.iter().any(|entry| entry.changes.len() > 1),
            _ => false,
        });
        assert!(multi, "no log entry with several changes");
    }

    #[test]
    fn simulated_torn_transaction_is_caught() {
        // Every node's log loses one change of the first transaction that
        // wrote three namespaces.
        let mut h = sim::simulate(3, 400, 4);
        let revision = h
            .events
            .iter()
            .find_map(|e| match e {
                Event::Final { log, .. } => log
                    .iter()
                    .find(|entry| entry.changes.len() == 3)
                    .map(|entry| entry.revision),
                _ => None,
            })
            .expect("a transaction over three namespaces");
        for event in &mut h.events {
            if let Event::Final { log, .. } = event {
                for entry in log.iter_mut().filter(|e| e.revision == revision) {
                    entry.changes.pop();
                }
            }
        }
        let verdicts = check_all(&h.events, &CheckOptions::default());
        let lost = &verdicts[1];
        assert!(
            lost.anomalies
                .iter()
                .any(|a| a.starts_with("torn") && a.contains(&format!("revision {revision}"))),
            "{lost}"
        );
        let linear = &verdicts[0];
        assert!(!linear.ok, "{linear}");
        let watch = &verdicts[3];
        assert!(
            watch
                .anomalies
                .iter()
                .any(|a| a.contains(&format!("revision {revision} delivered"))),
            "{watch}"
        );
    }

    /// `cargo test --release -p raftconf-jepsen -- --ignored --nocapture`;
    /// `SIM_OPS` and `SIM_PROCS` change the size and the concurrency
    /// (40 000 ops by 60 processes, ~104k events: about 0.3 s).
    #[test]
    #[ignore = "timing; run in release"]
    fn simulated_run_of_100k_events_checks_quickly() {
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default)
        };
        let (n, procs) = (env("SIM_OPS", 40_000), env("SIM_PROCS", 10));
        let h = sim::simulate(7, n, procs);
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
