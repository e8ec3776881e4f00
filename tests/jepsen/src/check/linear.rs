//! `linearizable`: every acknowledged answer fits one total order that
//! respects real time. Two independent checks:
//!
//! - **By revision.** The server says where each operation took effect: a
//!   write at its revision, a get at the revision it was served at, a
//!   definite failure at the revision its answer was given at. Each answer
//!   must match the committed log there (a get: the namespace's state as of
//!   that revision; a write: its change at that revision, whose condition
//!   held just before; a transaction: that for each of its namespaces, all
//!   at its one revision; a refused transaction: not all of its conditions
//!   held there), and the positions must respect real time: if A completed
//!   before B was invoked, `pos(A) ≤ pos(B)`, strictly when B is a write. An
//!   indeterminate write (or transaction) whose values are in the log, at one
//!   revision, is placed there too, and its conditions must have held. The
//!   log itself must follow the register's rules.
//! - **By search** (`wgl.rs`): the client-visible results alone, without
//!   revisions, must linearize; this also covers the answers that carry no
//!   revision (gets of missing namespaces).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{wgl, Anomalies, ClientOp, CommittedLog, Context, NsState, Outcome, Verdict};
use crate::history::{FailReason, Op};

const NAME: &str = "linearizable";

/// Runs both checks.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    for malformed in &ctx.ops.malformed {
        anomalies.push(format!("malformed history: {malformed}"));
    }
    for op in &ctx.ops.ops {
        let mismatch = matches!(
            op.outcome,
            Outcome::Fail {
                reason: FailReason::VersionMismatch { .. },
                ..
            }
        );
        let conditional = op.op.writes().iter().any(|w| w.expect_version.is_some());
        if mismatch && !conditional {
            anomalies.push(format!(
                "malformed history: a version mismatch for an op without a version condition: {op}"
            ));
        }
    }

    let positioned = match &ctx.log {
        Some(log) => {
            check_log_rules(log, &mut anomalies);
            let points = check_answers(log, &ctx.ops.ops, &mut anomalies);
            check_real_time(log, &points, &ctx.ops.ops, &mut anomalies);
            format!(
                "{} ops placed by revision against node {}'s log",
                points.len(),
                log.node
            )
        }
        None => {
            anomalies.push(
                "no Final event: no committed log to check the revisions against".to_string(),
            );
            "no revision check (no log)".to_string()
        }
    };

    let limit = ctx.options.wgl_time_limit;
    let now = Instant::now();
    // A limit too large to add is no limit (a year will do).
    let deadline = now
        .checked_add(limit)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
    let search = wgl::search_all(&ctx.ops.ops, deadline, &format!("{limit:?}"));
    for failure in search.failures {
        anomalies.push(format!("search: {failure}"));
    }
    let summary = format!(
        "{} client ops; {positioned}; search over {} ops in {} namespaces ({} unfinished)",
        ctx.ops.ops.len(),
        search.ops,
        search.namespaces,
        search.unfinished,
    );
    anomalies.verdict(NAME, summary)
}

/// The committed log must itself be a register history: per namespace each
/// change bumps the version by one (from 0), and only a live namespace is
/// deleted.
fn check_log_rules(log: &CommittedLog<'_>, anomalies: &mut Anomalies) {
    let mut namespaces: Vec<&str> = log.namespaces().collect();
    namespaces.sort_unstable();
    for ns in namespaces {
        let mut before = NsState {
            value: None,
            version: 0,
            mod_revision: 0,
        };
        for &(revision, change) in log.changes_of(ns) {
            if change.version != before.version.saturating_add(1) {
                anomalies.push(format!(
                    "log: {ns} at revision {revision} has version {} after {before}",
                    change.version
                ));
            }
            if change.value.is_none() && !before.live() {
                anomalies.push(format!(
                    "log: {ns} deleted at revision {revision} while {before}"
                ));
            }
            before = NsState {
                value: change.value.as_ref(),
                version: change.version,
                mod_revision: revision,
            };
        }
    }
}

/// Where an operation took effect, by revision.
struct Point {
    /// Index into the client ops.
    op: usize,
    pos: u64,
    write: bool,
}

/// Checks each answer that carries a revision against the log, and returns
/// where each such op (and each indeterminate write found in the log) sits.
fn check_answers(
    log: &CommittedLog<'_>,
    ops: &[ClientOp<'_>],
    anomalies: &mut Anomalies,
) -> Vec<Point> {
    let mut points = Vec::new();
    // revision → the acknowledged write there.
    let mut writes_at: HashMap<u64, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op.outcome {
            Outcome::Ok { result, .. } if op.op.is_write() => {
                let revision = result.revision;
                if revision == 0 {
                    anomalies.push(format!("acknowledged write without a revision: {op}"));
                    continue;
                }
                if let Some(&other) = writes_at.get(&revision) {
                    anomalies.push(format!(
                        "two acknowledged writes at revision {revision}: {} and {op}",
                        ops[other]
                    ));
                }
                writes_at.insert(revision, i);
                // A transaction's answer names no versions.
                let version = (!op.op.is_transaction()).then_some(result.version);
                check_write(log, op, revision, version, anomalies);
                check_conditions(log, op, revision, "acknowledged", anomalies);
                points.push(Point {
                    op: i,
                    pos: revision,
                    write: true,
                });
            }
            Outcome::Ok { result, .. } => {
                let revision = result.revision;
                let Some(ns) = op.op.ns() else { continue };
                if revision == 0 {
                    // Unknown: a get of a missing namespace; the search covers it.
                    continue;
                }
                if revision > log.max_revision {
                    anomalies.push(format!(
                        "read served at revision {revision}, beyond any node's applied revision {}: {op}",
                        log.max_revision
                    ));
                }
                let state = log.state_at(ns, revision);
                let matches = match &result.value {
                    Some(value) => {
                        state.value == Some(value)
                            && state.version == result.version
                            && state.mod_revision == result.mod_revision
                    }
                    None => !state.live(),
                };
                if !matches {
                    anomalies.push(format!(
                        "read disagrees with the log: {op}, but at revision {revision} {ns} is {state}"
                    ));
                }
                points.push(Point {
                    op: i,
                    pos: revision,
                    write: false,
                });
            }
            Outcome::Fail {
                reason,
                revision: Some(revision),
                ..
            } => {
                let state = |ns| log.state_at(ns, revision);
                let consistent = match (reason, op.op) {
                    // All or nothing: refused when some condition did not hold.
                    (
                        FailReason::NotFound | FailReason::VersionMismatch { .. },
                        Op::Apply { .. },
                    ) => !op.op.writes().iter().all(|w| {
                        let s = state(w.ns);
                        w.holds(s.live(), s.version)
                    }),
                    (FailReason::NotFound, single) => match single.ns() {
                        Some(ns) => !state(ns).live(),
                        None => continue,
                    },
                    (
                        FailReason::VersionMismatch { .. },
                        Op::Cas {
                            ns, expect_version, ..
                        },
                    ) => !cas_holds(*expect_version, state(ns)),
                    _ => continue,
                };
                if !consistent {
                    anomalies.push(format!(
                        "failure disagrees with the log: {op}, but at revision {revision} {}",
                        states_at(log, op, revision)
                    ));
                }
                points.push(Point {
                    op: i,
                    pos: revision,
                    write: false,
                });
            }
            Outcome::Info { .. } => {
                // An indeterminate write that landed is placed where it did.
                if let Some(revision) = landed_at(log, op) {
                    check_conditions(log, op, revision, "indeterminate", anomalies);
                    points.push(Point {
                        op: i,
                        pos: revision,
                        write: true,
                    });
                }
            }
            Outcome::Fail { revision: None, .. } => {}
        }
    }
    points
}

/// Where an indeterminate write took effect: the one revision at which the
/// log has every value it wrote, each once and in its own namespace. `None`
/// when it wrote no value (deletes only), or its values are not all there
/// that way (`lost.rs` says which).
fn landed_at(log: &CommittedLog<'_>, op: &ClientOp<'_>) -> Option<u64> {
    let mut at = None;
    for w in op.op.writes() {
        let Some(value) = w.value else { continue };
        let [(revision, ns)] = log.find_value(value) else {
            return None;
        };
        if *ns != w.ns || at.is_some_and(|r| r != *revision) {
            return None;
        }
        at = Some(*revision);
    }
    at
}

/// `t/e/a is {"w":"x"} v3 (mod rev 7), t/e/b is never created`: the state
/// of each of the op's namespaces at `revision`.
fn states_at(log: &CommittedLog<'_>, op: &ClientOp<'_>, revision: u64) -> String {
    op.op
        .namespaces()
        .into_iter()
        .map(|ns| format!("{ns} is {}", log.state_at(ns, revision)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a CAS expecting `expect` succeeds on `state`.
fn cas_holds(expect: u64, state: NsState<'_>) -> bool {
    match expect {
        0 => !state.live(),
        v => state.live() && state.version == v,
    }
}

/// An acknowledged write: for each namespace it wrote, the log's change at
/// its revision must be what it wrote, with the version it reported (when
/// it reported one: a transaction does not).
fn check_write(
    log: &CommittedLog<'_>,
    op: &ClientOp<'_>,
    revision: u64,
    version: Option<u64>,
    anomalies: &mut Anomalies,
) {
    for w in op.op.writes() {
        let ns = w.ns;
        let Some(change) = log.change_at(revision, ns) else {
            anomalies.push(format!(
                "acknowledged write not in the log: {op}: no change of {ns} at revision {revision}"
            ));
            continue;
        };
        if change.value.as_ref() != w.value {
            let logged = change
                .value
                .as_ref()
                .map_or("a delete".to_string(), |v| v.to_string());
            anomalies.push(format!(
                "acknowledged write differs from the log: {op}, but revision {revision} has {logged} in {ns}"
            ));
        } else if let Some(version) = version.filter(|&v| v != change.version) {
            anomalies.push(format!(
                "acknowledged version differs from the log: {op}, but revision {revision} made v{} (not v{version})",
                change.version
            ));
        }
    }
}

/// A write that took effect at `revision`: each of its conditions (a CAS's
/// version, a delete's live namespace) held just before.
fn check_conditions(
    log: &CommittedLog<'_>,
    op: &ClientOp<'_>,
    revision: u64,
    what: &str,
    anomalies: &mut Anomalies,
) {
    for w in op.op.writes() {
        let before = log.state_at(w.ns, revision.saturating_sub(1));
        if !w.holds(before.live(), before.version) {
            anomalies.push(format!(
                "{what} write whose condition did not hold: {op}, but before revision {revision} {} was {before}",
                w.ns
            ));
        }
    }
}

/// If A completed before B was invoked, `pos(A) ≤ pos(B)`, and `<` when B
/// is a write. One sweep: ops by invocation time, against the highest
/// position among the ops completed strictly before.
fn check_real_time(
    log: &CommittedLog<'_>,
    points: &[Point],
    ops: &[ClientOp<'_>],
    anomalies: &mut Anomalies,
) {
    let mut by_completion: Vec<(u64, &Point)> = points
        .iter()
        .filter_map(|p| Some((ops.get(p.op)?.complete_t()?, p)))
        .collect();
    by_completion.sort_by_key(|(t, _)| *t);
    let mut by_invocation: Vec<(u64, &Point)> = points
        .iter()
        .filter_map(|p| Some((ops.get(p.op)?.invoke_t, p)))
        .collect();
    by_invocation.sort_by_key(|(t, _)| *t);

    let mut done = by_completion.iter().peekable();
    let mut highest: Option<&Point> = None;
    for &(invoke_t, b) in &by_invocation {
        while let Some(&(_, a)) = done.next_if(|(t, _)| *t < invoke_t) {
            if highest.is_none_or(|h| a.pos > h.pos) {
                highest = Some(a);
            }
        }
        let Some(a) = highest else { continue };
        let violated = if b.write {
            a.pos >= b.pos
        } else {
            a.pos > b.pos
        };
        if violated {
            let (op_a, op_b) = (&ops[a.op], &ops[b.op]);
            let changed = |ns| log.state_at(ns, b.pos) != log.state_at(ns, a.pos);
            let what = match (b.write, op_b.op.is_write()) {
                (true, _) => "write ordered before an op that completed before it began",
                (false, false) if op_b.op.ns().is_some_and(changed) => "stale read",
                // What it returned is still right, but it was served too early.
                (false, false) => "read served at an old revision",
                (false, true) => "failure decided at an old revision",
            };
            anomalies.push(format!(
                "{what}: {op_b} took effect at revision {}, but {op_a}, at revision {}, completed before it was invoked",
                b.pos, a.pos
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testkit::*;
    use super::super::{wgl, CheckOptions, ClientOps};
    use super::check;
    use crate::history::{Event, FailReason};

    /// The search alone over `h` with every revision a client saw zeroed:
    /// its failures.
    fn search_without_revisions(h: &History, limit: Duration) -> Vec<String> {
        let mut events = h.events.clone();
        for event in &mut events {
            match event {
                Event::Ok { result, .. } => {
                    result.revision = 0;
                    result.mod_revision = 0;
                }
                Event::Fail { revision, .. } => *revision = None,
                _ => {}
            }
        }
        let ops = ClientOps::from_history(&events);
        wgl::search_all(&ops.ops, Instant::now() + limit, &format!("{limit:?}")).failures
    }

    fn assert_search_flags(failures: &[String], needle: &str) {
        assert!(
            failures.iter().any(|f| f.contains(needle)),
            "expected a search failure containing {needle:?}: {failures:#?}"
        );
    }

    #[test]
    fn valid_history_is_linearizable() {
        assert_passes(&valid_history().check(check));
    }

    #[test]
    fn valid_history_without_revisions_passes_the_search() {
        let failures = search_without_revisions(&valid_history(), Duration::from_secs(30));
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn stale_read_history() -> History {
        // p1's put of a2 completes at revision 4; p2 then reads a1 at revision 3.
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, put(A, "a2")).ok_write(1, 2, 4, 2);
        h.invoke(2, 3, get(A)).ok_get(2, 3, 3, Some("a1"), 1, 3);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(A, 2, Some("a2"))]),
            ],
        );
        h
    }

    /// b0 at revision 3; a transaction writes a1 and b1 at revision 4 and
    /// is acknowledged only after two readers ran during it: the first reads
    /// a1 (so the transaction had taken effect), the second, which began
    /// after the first completed, reads b0 at `b_revision`.
    fn readers_during_a_transaction(b_revision: u64) -> History {
        let mut h = History::default();
        h.invoke(1, 1, put(B, "b0")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]));
        h.invoke(2, 3, get(A)).ok_get(2, 3, 4, Some("a1"), 1, 4);
        h.invoke(2, 4, get(B))
            .ok_get(2, 4, b_revision, Some("b0"), 1, 3);
        h.ok_write(1, 2, 4, 0);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(B, 1, Some("b0"))]),
                entry(4, vec![change(A, 1, Some("a1")), change(B, 2, Some("b1"))]),
            ],
        );
        h
    }

    #[test]
    fn readers_seeing_half_a_transaction_are_flagged() {
        // Each namespace alone linearizes (the transaction was still in
        // flight when b0 was read); across both, the second reader saw the
        // state before a transaction the first reader saw after.
        let before = readers_during_a_transaction(3).check(check);
        assert_flags(&before, "stale read: op 4");
        assert_eq!(before.anomalies.len(), 1, "{before}");
        let at = readers_during_a_transaction(4).check(check);
        assert_flags(&at, "read disagrees with the log: op 4");
        assert_eq!(at.anomalies.len(), 1, "{at}");
    }

    #[test]
    fn stale_read_is_caught_by_revision_order() {
        let verdict = stale_read_history().check(check);
        assert_flags(&verdict, "stale read: op 3");
    }

    #[test]
    fn stale_read_is_caught_by_the_search_without_revisions() {
        let failures = search_without_revisions(&stale_read_history(), Duration::from_secs(30));
        assert_search_flags(
            &failures,
            "t/e/a: not linearizable (3 ops): the longest linearization found has 1 ops, after which op 2 (p1 put t/e/a {\"w\":\"a2\"}, t=30..40 ok rev 0 v2) cannot take effect: the register holds {\"w\":\"a1\"} v1, and it would leave v1 behind, which op 3",
        );
    }

    #[test]
    fn stale_read_without_a_revision_is_caught_by_the_search_alone() {
        // The get did not say where it was served: only the search sees it.
        let mut h = stale_read_history();
        for event in &mut h.events {
            if let Event::Ok {
                op_id: 3, result, ..
            } = event
            {
                result.revision = 0;
            }
        }
        let verdict = h.check(check);
        assert_flags(&verdict, "search: t/e/a: not linearizable");
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn read_served_before_a_completed_write_to_another_namespace_is_flagged() {
        // b did not change, so the value is right, but revision 3 is before
        // the put of a that was acknowledged at 4 before the get began.
        let mut h = History::default();
        h.invoke(1, 1, put(B, "b1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, put(A, "a1")).ok_write(1, 2, 4, 1);
        h.invoke(2, 3, get(B)).ok_get(2, 3, 3, Some("b1"), 1, 3);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(B, 1, Some("b1"))]),
                entry(4, vec![change(A, 1, Some("a1"))]),
            ],
        );
        let verdict = h.check(check);
        assert_flags(&verdict, "read served at an old revision: op 3");
        assert_eq!(
            verdict.anomalies.len(),
            1,
            "the search has nothing to say: {verdict}"
        );
    }

    #[test]
    fn stale_read_at_a_fresh_revision_disagrees_with_the_log() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, put(A, "a2")).ok_write(1, 2, 4, 2);
        h.invoke(2, 3, get(A)).ok_get(2, 3, 4, Some("a1"), 1, 3);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(A, 2, Some("a2"))]),
            ],
        );
        assert_flags(&h.check(check), "read disagrees with the log: op 3");
    }

    #[test]
    fn cas_refused_while_the_version_matched_is_not_linearizable() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(2, 2, cas(A, 1, "a2")).fail(
            2,
            2,
            FailReason::VersionMismatch { current: Some(1) },
            None,
        );
        h.invoke(2, 3, get(A)).ok_get(2, 3, 3, Some("a1"), 1, 3);
        h.final_node(1, 3, "d", vec![entry(3, vec![change(A, 1, Some("a1"))])]);
        let verdict = h.check(check);
        assert_flags(&verdict, "search: t/e/a: not linearizable");
        assert_flags(&verdict, "op 2 (p2 cas t/e/a if v1");
    }

    #[test]
    fn cas_refused_at_a_revision_where_the_version_matched_disagrees_with_the_log() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(2, 2, cas(A, 1, "a2")).fail(
            2,
            2,
            FailReason::VersionMismatch { current: Some(1) },
            Some(3),
        );
        h.final_node(1, 3, "d", vec![entry(3, vec![change(A, 1, Some("a1"))])]);
        assert_flags(&h.check(check), "failure disagrees with the log: op 2");
    }

    #[test]
    fn acknowledged_version_must_match_the_log() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 2);
        h.final_node(1, 3, "d", vec![entry(3, vec![change(A, 1, Some("a1"))])]);
        assert_flags(
            &h.check(check),
            "acknowledged version differs from the log: op 1",
        );
    }

    #[test]
    fn recreation_that_restarts_the_version_at_one_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, del(A)).ok_write(1, 2, 4, 2);
        h.invoke(1, 3, put(A, "a3")).ok_write(1, 3, 5, 1);
        h.final_node(
            1,
            5,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(A, 2, None)]),
                entry(5, vec![change(A, 1, Some("a3"))]),
            ],
        );
        let verdict = h.check(check);
        assert_flags(&verdict, "log: t/e/a at revision 5 has version 1");
        assert_flags(&verdict, "search: t/e/a: not linearizable");
    }

    #[test]
    fn indeterminate_write_placed_before_a_completed_write_is_flagged() {
        // p2's put was invoked after revision 4 was acknowledged, yet the
        // log has it at revision 3.
        let mut h = History::default();
        h.invoke(1, 1, put(B, "b1")).ok_write(1, 1, 4, 1);
        h.invoke(2, 2, put(A, "a1")).info(2, 2);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(B, 1, Some("b1"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            "write ordered before an op that completed before it began: op 2",
        );
    }

    #[test]
    fn search_that_runs_out_of_time_fails() {
        // After an acknowledged put, 60 indeterminate puts and 60
        // indeterminate CASes expecting versions 2..=61, all concurrent with
        // a delete that failed NotFound. Nothing ever deletes, so that failure
        // fits nowhere, and proving it means trying every subset of the CASes.
        let mut h = History::default();
        h.invoke(0, 0, put(A, "first")).ok_write(0, 0, 3, 1);
        for p in 1..=60 {
            h.invoke(p, p, put(A, &format!("put-{p}")));
            h.invoke(100 + p, 100 + p, cas(A, p + 1, &format!("cas-{p}")));
        }
        h.invoke(1000, 1000, del(A))
            .fail(1000, 1000, FailReason::NotFound, None);
        for p in 1..=60 {
            h.info(p, p).info(100 + p, 100 + p);
        }
        valid_finals(&mut h);
        let options = CheckOptions {
            wgl_time_limit: Duration::from_millis(1),
            ..CheckOptions::default()
        };
        let verdict = h.check_with(check, &options);
        assert_flags(&verdict, "search: t/e/a: search did not finish in 1ms");
    }

    #[test]
    fn valid_transactions_are_linearizable() {
        let verdict = valid_tx_history().check(check);
        assert_passes(&verdict);
        assert!(
            verdict.summary.contains("search over 23 ops in 3 namespaces"),
            "14 single ops, and each transaction an op on each of its namespaces but the refused ones: {verdict}"
        );
    }

    #[test]
    fn valid_transactions_without_revisions_pass_the_search() {
        let failures = search_without_revisions(&valid_tx_history(), Duration::from_secs(30));
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn acknowledged_transaction_split_across_two_revisions_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]))
            .ok_write(1, 1, 3, 0);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(B, 1, Some("b1"))]),
            ],
        );
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            "acknowledged write not in the log: op 1 (p1 apply [t/e/a {\"w\":\"a1\"}, t/e/b {\"w\":\"b1\"}], t=10..20 ok rev 3): no change of t/e/b at revision 3",
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn acknowledged_transaction_whose_cas_did_not_hold_is_flagged() {
        // The CAS on b expects v2, but b was at v1 before revision 4.
        let mut h = History::default();
        h.invoke(1, 1, put(B, "b1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, tx(&[(A, Some("a1"), None), (B, Some("b2"), Some(2))]))
            .ok_write(1, 2, 4, 0);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(B, 1, Some("b1"))]),
                entry(4, vec![change(A, 1, Some("a1")), change(B, 2, Some("b2"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            r#"acknowledged write whose condition did not hold: op 2 (p1 apply [t/e/a {"w":"a1"}, t/e/b if v2 {"w":"b2"}], t=30..40 ok rev 4), but before revision 4 t/e/b was {"w":"b1"} v1 (mod rev 3)"#,
        );
    }

    #[test]
    fn refused_transaction_whose_conditions_all_held_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, tx(&[(A, Some("a2"), Some(1)), (B, None, None)]))
            .fail(1, 2, FailReason::NotFound, Some(3));
        h.invoke(1, 3, put(B, "b1")).ok_write(1, 3, 4, 1);
        h.invoke(1, 4, tx(&[(A, Some("a3"), Some(1)), (B, None, None)]))
            .fail(1, 4, FailReason::VersionMismatch { current: None }, Some(4));
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(B, 1, Some("b1"))]),
            ],
        );
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            r#"failure disagrees with the log: op 4 (p1 apply [t/e/a if v1 {"w":"a3"}, t/e/b delete], t=70..80 fail version mismatch at rev 4), but at revision 4 t/e/a is {"w":"a1"} v1 (mod rev 3), t/e/b is {"w":"b1"} v1 (mod rev 4)"#,
        );
        assert_eq!(
            verdict.anomalies.len(),
            1,
            "op 2 was rightly refused: b did not exist: {verdict}"
        );
    }

    #[test]
    fn transaction_ordered_before_a_completed_write_is_flagged() {
        // The transaction was invoked after revision 4 was acknowledged, yet
        // the log (and its answer) has it at revision 3.
        let mut h = History::default();
        h.invoke(1, 1, put(C, "c1")).ok_write(1, 1, 4, 1);
        h.invoke(2, 2, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]))
            .ok_write(2, 2, 3, 0);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(A, 1, Some("a1")), change(B, 1, Some("b1"))]),
                entry(4, vec![change(C, 1, Some("c1"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            "write ordered before an op that completed before it began: op 2",
        );
    }

    #[test]
    fn search_projects_a_transaction_onto_each_namespace() {
        // b read nothing after the transaction that wrote it completed: only
        // b's register is not linearizable.
        let mut h = History::default();
        h.invoke(1, 1, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]))
            .ok_write(1, 1, 3, 0);
        h.invoke(2, 2, get(A)).ok_get(2, 2, 3, Some("a1"), 1, 3);
        h.invoke(2, 3, get(B)).ok_get(2, 3, 0, None, 0, 0);
        h.final_node(
            1,
            3,
            "d",
            vec![entry(
                3,
                vec![change(A, 1, Some("a1")), change(B, 1, Some("b1"))],
            )],
        );
        let failures = search_without_revisions(&h, Duration::from_secs(30));
        assert_eq!(failures.len(), 1, "{failures:#?}");
        assert_search_flags(
            &failures,
            "t/e/b: not linearizable (2 ops): the longest linearization found has 1 ops, after which op 3 (p2 get t/e/b, t=50..60 ok rev 0 none v0) cannot take effect: the register holds a value no get read, v1",
        );
    }

    #[test]
    fn search_sees_each_namespace_alone_and_the_revisions_see_the_torn_read() {
        // An indeterminate transaction: one get sees its a, a later get sees
        // b as before it. Each namespace alone linearizes (the transaction's
        // b write may come later), so the search passes; the revision the
        // second get was served at, after the transaction's, shows the tear.
        let mut h = History::default();
        h.invoke(1, 1, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]))
            .info(1, 1);
        h.invoke(2, 2, get(A)).ok_get(2, 2, 3, Some("a1"), 1, 3);
        h.invoke(2, 3, get(B)).ok_get(2, 3, 3, None, 0, 0);
        h.final_node(
            1,
            3,
            "d",
            vec![entry(
                3,
                vec![change(A, 1, Some("a1")), change(B, 1, Some("b1"))],
            )],
        );
        let failures = search_without_revisions(&h, Duration::from_secs(30));
        assert!(failures.is_empty(), "{failures:#?}");
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            r#"read disagrees with the log: op 3 (p2 get t/e/b, t=50..60 ok rev 3 none v0), but at revision 3 t/e/b is {"w":"b1"} v1 (mod rev 3)"#,
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn malformed_pairing_is_reported() {
        let mut h = valid_history();
        h.ok_write(9, 999, 3, 1);
        assert_flags(&h.check(check), "malformed history: op 999 completed by p9");
    }
}
