//! `no_lost_writes`: the committed log holds exactly the writes it should.
//! An acknowledged write is in the log at its revision (a put or CAS with
//! its value, a delete as a delete of its namespace), alone there; a failed
//! write's value is nowhere; an indeterminate write's value is there at most
//! once; every value in the log was written by some invocation, to that
//! namespace, and appears once. Values are unique per run, so a value names
//! its write.
//!
//! A transaction is all or nothing: acknowledged, every one of its writes is
//! in the one log entry at its revision, which changes nothing else; failed,
//! none of its values is anywhere; indeterminate, either all of it is in one
//! entry like that (at the revision of its values) or none of its values is
//! anywhere. Anything between is a *torn* transaction.

use std::collections::HashMap;

use super::{
    no_log_verdict, value_key, Anomalies, ClientOp, CommittedLog, Context, Outcome, Verdict,
};
use crate::history::{NsWrite, Op};

const NAME: &str = "no_lost_writes";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let Some(log) = &ctx.log else {
        return no_log_verdict(NAME);
    };
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    let mut counts = Counts::default();
    // value key → the ops that wrote it, and to which namespace.
    let mut writers: HashMap<String, Vec<(&ClientOp<'_>, &str)>> = HashMap::new();
    for op in &ctx.ops.ops {
        for w in op.op.writes() {
            let Some(value) = w.value else { continue };
            let ops = writers.entry(value_key(value)).or_default();
            if let Some((first, _)) = ops.first() {
                anomalies.push(format!(
                    "value written twice (values must be unique): {first} and {op}"
                ));
            }
            ops.push((op, w.ns));
        }
        if op.op.is_transaction() {
            check_transaction(log, op, &mut counts, &mut anomalies);
        } else {
            check_op(log, op, &mut counts, &mut anomalies);
        }
    }

    // Every value in the log: written by someone, to that namespace, once.
    let mut found: Vec<(u64, String)> = Vec::new();
    for (key, places) in log.values() {
        let Some(&(revision, ns)) = places.first() else {
            continue;
        };
        match writers.get(key) {
            None => found.push((revision, format!("phantom value {key} in {ns} at revision {revision}: no op wrote it"))),
            Some(ops) if !ops.iter().any(|(_, to)| *to == ns) => found.push((
                revision,
                format!("value {key} in {ns} at revision {revision} was written to another namespace by {}", ops[0].0),
            )),
            Some(_) => {}
        }
        if places.len() > 1 {
            let at: Vec<String> = places.iter().map(|(r, ns)| format!("{ns}@{r}")).collect();
            found.push((
                revision,
                format!(
                    "value {key} appears {} times in the log: {}",
                    places.len(),
                    at.join(", ")
                ),
            ));
        }
    }
    found.sort();
    for (_, anomaly) in found {
        anomalies.push(anomaly);
    }

    let summary = format!(
        "{} acknowledged writes, {} failed writes, {} indeterminate writes ({} applied, {} not applied, {} deletes unresolvable), {} of them transactions, against node {}'s log of {} revisions",
        counts.acknowledged,
        counts.failed,
        counts.info_applied + counts.info_not_applied + counts.info_deletes,
        counts.info_applied,
        counts.info_not_applied,
        counts.info_deletes,
        counts.transactions,
        log.node,
        log.entries.len(),
    );
    anomalies.verdict(NAME, summary)
}

#[derive(Default)]
struct Counts {
    acknowledged: usize,
    failed: usize,
    info_applied: usize,
    info_not_applied: usize,
    info_deletes: usize,
    transactions: usize,
}

/// `nowhere in the log` or `at t/e/a@7, t/e/b@9`.
fn places_text(places: &[(u64, &str)]) -> String {
    let at: Vec<String> = places.iter().map(|(r, ns)| format!("{ns}@{r}")).collect();
    match at.is_empty() {
        true => "nowhere in the log".to_string(),
        false => format!("at {}", at.join(", ")),
    }
}

/// `its value is nowhere in the log` or `its value is at t/e/a@7`.
fn where_value_is(places: &[(u64, &str)]) -> String {
    format!("its value is {}", places_text(places))
}

/// The namespaces the log entry at `revision` changes that `writes` do not
/// write, comma-separated; `None` when there are none.
fn other_changes(log: &CommittedLog<'_>, revision: u64, writes: &[NsWrite<'_>]) -> Option<String> {
    let others: Vec<&str> = log
        .entry_at(revision)?
        .changes
        .iter()
        .map(|c| c.ns.as_str())
        .filter(|ns| !writes.iter().any(|w| w.ns == *ns))
        .collect();
    (!others.is_empty()).then(|| others.join(", "))
}

fn check_op(
    log: &CommittedLog<'_>,
    op: &ClientOp<'_>,
    counts: &mut Counts,
    anomalies: &mut Anomalies,
) {
    let writes = op.op.writes();
    let [w] = writes.as_slice() else {
        return;
    };
    let (ns, written) = (w.ns, w.value);
    let places = written.map_or(&[][..], |v| log.find_value(v));
    match op.outcome {
        Outcome::Ok { result, .. } => {
            counts.acknowledged += 1;
            let revision = result.revision;
            let change = log.change_at(revision, ns);
            match (op.op, change) {
                (Op::Delete { .. }, Some(c)) if c.value.is_none() => {}
                (Op::Delete { .. }, _) => anomalies.push(format!(
                    "lost acknowledged delete: {op}: no delete of {ns} at revision {revision}"
                )),
                (_, Some(c)) if c.value.as_ref() == written => {}
                (_, Some(c)) => {
                    anomalies.push(format!(
                    "lost acknowledged write: {op}: revision {revision} set {ns} to {} instead; {}",
                    c.value.as_ref().map_or("nothing (a delete)".to_string(), |v| v.to_string()),
                    where_value_is(places)
                ))
                }
                (_, None) => anomalies.push(format!(
                    "lost acknowledged write: {op}: no change of {ns} at revision {revision}; {}",
                    where_value_is(places)
                )),
            }
            if let Some(others) = change.and_then(|_| other_changes(log, revision, &writes)) {
                anomalies.push(format!(
                    "acknowledged write not alone at its revision: {op}: revision {revision} also changes {others}"
                ));
            }
        }
        Outcome::Fail { .. } => {
            counts.failed += 1;
            if !places.is_empty() {
                anomalies.push(format!(
                    "failed write took effect: {op}: {}",
                    where_value_is(places)
                ));
            }
        }
        Outcome::Info { .. } => match (written, places.len()) {
            (None, _) => counts.info_deletes += 1,
            (_, 0) => counts.info_not_applied += 1,
            (_, 1) => counts.info_applied += 1,
            // Reported once, with the log's values.
            (_, _) => {}
        },
    }
}

/// What keeps `writes` from being exactly the log entry at `revision`: for
/// each write not there, what is there instead (and where its value is);
/// then the other namespaces the entry changes. Returns how many writes are
/// missing, and the list.
fn problems_at(
    log: &CommittedLog<'_>,
    writes: &[NsWrite<'_>],
    revision: u64,
) -> (usize, Vec<String>) {
    let mut missing = 0;
    let mut problems = Vec::new();
    for w in writes {
        let ns = w.ns;
        let change = log.change_at(revision, ns);
        let problem = match (w.value, change) {
            (None, Some(c)) if c.value.is_none() => continue,
            (Some(v), Some(c)) if c.value.as_ref() == Some(v) => continue,
            (None, Some(c)) => format!(
                "{ns} set to {} instead of deleted",
                c.value.as_ref().map_or(String::new(), |v| v.to_string())
            ),
            (None, None) => format!("no delete of {ns}"),
            (Some(v), Some(c)) => format!(
                "{ns} set to {} instead, {}",
                c.value
                    .as_ref()
                    .map_or("nothing (a delete)".to_string(), |v| v.to_string()),
                where_value_is(log.find_value(v))
            ),
            (Some(v), None) => format!("no change of {ns}, {}", where_value_is(log.find_value(v))),
        };
        missing += 1;
        problems.push(problem);
    }
    if let Some(others) = other_changes(log, revision, writes) {
        problems.push(format!("the entry also changes {others}"));
    }
    (missing, problems)
}

fn check_transaction(
    log: &CommittedLog<'_>,
    op: &ClientOp<'_>,
    counts: &mut Counts,
    anomalies: &mut Anomalies,
) {
    counts.transactions += 1;
    let writes = op.op.writes();
    // Each value's places in the log, in request order.
    let placed: Vec<(&NsWrite<'_>, &[(u64, &str)])> = writes
        .iter()
        .filter_map(|w| Some((w, log.find_value(w.value?))))
        .collect();
    let n = writes.len();
    match op.outcome {
        Outcome::Ok { result, .. } => {
            counts.acknowledged += 1;
            let revision = result.revision;
            let (missing, problems) = problems_at(log, &writes, revision);
            let what = match missing {
                0 if problems.is_empty() => return,
                0 => "acknowledged transaction not alone at its revision",
                m if m == n => "lost acknowledged transaction",
                _ => "torn acknowledged transaction",
            };
            anomalies.push(format!(
                "{what}: {op}: at revision {revision}, {}",
                problems.join("; ")
            ));
        }
        Outcome::Fail { .. } => {
            counts.failed += 1;
            let landed: Vec<String> = placed
                .iter()
                .filter(|(_, places)| !places.is_empty())
                .map(|(w, places)| format!("{}'s value is {}", w.ns, places_text(places)))
                .collect();
            if !landed.is_empty() {
                anomalies.push(format!(
                    "failed transaction took effect: {op}: {}",
                    landed.join("; ")
                ));
            }
        }
        Outcome::Info { .. } => {
            // Where the first of its values that landed is: all of it must be there.
            let Some(&(revision, _)) = placed.iter().find_map(|(_, places)| places.first()) else {
                match placed.is_empty() {
                    true => counts.info_deletes += 1,
                    false => counts.info_not_applied += 1,
                }
                return;
            };
            let (missing, problems) = problems_at(log, &writes, revision);
            if problems.is_empty() {
                counts.info_applied += 1;
                return;
            }
            let what = match missing {
                0 => "indeterminate transaction not alone at its revision",
                _ => "torn transaction",
            };
            anomalies.push(format!(
                "{what}: {op}: {} of its {n} writes at revision {revision}; {}",
                n - missing,
                problems.join("; ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::check;
    use crate::history::FailReason;

    #[test]
    fn valid_history_loses_nothing() {
        let verdict = valid_history().check(check);
        assert_passes(&verdict);
        assert!(
            verdict.summary.contains("(1 applied, 1 not applied"),
            "{verdict}"
        );
    }

    #[test]
    fn lost_acknowledged_write_is_flagged() {
        // Revision 7 (p3's indeterminate put of b2) is gone from the log, and
        // so is p2's acknowledged put of b3 at revision 9.
        let mut h = History::default();
        valid_ops(&mut h);
        h.invoke(2, 20, put(B, "b3")).ok_write(2, 20, 9, 3);
        let mut log = valid_log();
        log.retain(|e| e.revision != 7);
        h.final_node(1, 9, "d", log);
        let verdict = h.check(check);
        assert_flags(&verdict, "lost acknowledged write: op 20");
        assert!(
            verdict.summary.contains("(0 applied, 2 not applied"),
            "{verdict}"
        );
    }

    #[test]
    fn lost_acknowledged_delete_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        let mut log = valid_log();
        log.retain(|e| e.revision != 6);
        h.final_node(1, 8, "d", log);
        assert_flags(&h.check(check), "lost acknowledged delete: op 6");
    }

    #[test]
    fn failed_write_in_the_log_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        let mut log = valid_log();
        log.push(entry(9, vec![change(A, 5, Some("a3"))]));
        h.final_node(1, 9, "d", log);
        assert_flags(&h.check(check), "failed write took effect: op 4");
    }

    #[test]
    fn phantom_value_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        let mut log = valid_log();
        log.push(entry(9, vec![change(B, 3, Some("nobody"))]));
        h.final_node(1, 9, "d", log);
        assert_flags(
            &h.check(check),
            r#"phantom value {"w":"nobody"} in t/e/b at revision 9"#,
        );
    }

    #[test]
    fn value_appearing_twice_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        let mut log = valid_log();
        log.push(entry(9, vec![change(B, 3, Some("b2"))]));
        h.final_node(1, 9, "d", log);
        assert_flags(
            &h.check(check),
            r#"value {"w":"b2"} appears 2 times in the log: t/e/b@7, t/e/b@9"#,
        );
    }

    #[test]
    fn value_in_another_namespace_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        let mut log = valid_log();
        log[0].changes[0].ns = B.to_string();
        h.final_node(1, 8, "d", log);
        assert_flags(
            &h.check(check),
            r#"value {"w":"a1"} in t/e/b at revision 3 was written to another namespace"#,
        );
    }

    /// `t/e/a` and `t/e/b` written by one transaction (op 1) and how it
    /// ended; the nodes' log.
    fn one_transaction(
        end: impl FnOnce(&mut History),
        log: Vec<crate::history::LogEntry>,
    ) -> History {
        let mut h = History::default();
        h.invoke(1, 1, tx(&[(A, Some("a1"), None), (B, Some("b1"), None)]));
        end(&mut h);
        h.final_node(1, 4, "d", log);
        h
    }

    #[test]
    fn valid_transactions_lose_nothing() {
        let verdict = valid_tx_history().check(check);
        assert_passes(&verdict);
        assert!(
            verdict.summary.contains(
                "(2 applied, 2 not applied, 0 deletes unresolvable), 5 of them transactions"
            ),
            "{verdict}"
        );
    }

    #[test]
    fn acknowledged_transaction_split_across_two_revisions_is_flagged() {
        let h = one_transaction(
            |h| {
                h.ok_write(1, 1, 3, 0);
            },
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(B, 1, Some("b1"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            "torn acknowledged transaction: op 1 (p1 apply [t/e/a {\"w\":\"a1\"}, t/e/b {\"w\":\"b1\"}], t=10..20 ok rev 3): at revision 3, no change of t/e/b, its value is at t/e/b@4",
        );
    }

    #[test]
    fn acknowledged_transaction_with_a_value_missing_is_flagged() {
        let h = one_transaction(
            |h| {
                h.ok_write(1, 1, 3, 0);
            },
            vec![entry(3, vec![change(A, 1, Some("a1"))])],
        );
        assert_flags(
            &h.check(check),
            "at revision 3, no change of t/e/b, its value is nowhere in the log",
        );
    }

    #[test]
    fn acknowledged_transaction_with_another_value_is_flagged() {
        let h = one_transaction(
            |h| {
                h.ok_write(1, 1, 3, 0);
            },
            vec![entry(
                3,
                vec![change(A, 1, Some("a1")), change(B, 1, Some("b-other"))],
            )],
        );
        assert_flags(
            &h.check(check),
            r#"at revision 3, t/e/b set to {"w":"b-other"} instead, its value is nowhere in the log"#,
        );
    }

    #[test]
    fn acknowledged_transaction_not_in_the_log_at_all_is_lost() {
        let h = one_transaction(
            |h| {
                h.ok_write(1, 1, 3, 0);
            },
            vec![],
        );
        assert_flags(&h.check(check), "lost acknowledged transaction: op 1");
    }

    #[test]
    fn acknowledged_transaction_sharing_its_entry_is_flagged() {
        let h = one_transaction(
            |h| {
                h.ok_write(1, 1, 3, 0);
            },
            vec![entry(
                3,
                vec![
                    change(A, 1, Some("a1")),
                    change(B, 1, Some("b1")),
                    change(C, 1, None),
                ],
            )],
        );
        assert_flags(
            &h.check(check),
            "acknowledged transaction not alone at its revision: op 1",
        );
    }

    #[test]
    fn indeterminate_transaction_half_applied_is_flagged() {
        let h = one_transaction(
            |h| {
                h.info(1, 1);
            },
            vec![entry(3, vec![change(A, 1, Some("a1"))])],
        );
        assert_flags(
            &h.check(check),
            "torn transaction: op 1 (p1 apply [t/e/a {\"w\":\"a1\"}, t/e/b {\"w\":\"b1\"}], t=10..20 info): 1 of its 2 writes at revision 3; no change of t/e/b, its value is nowhere in the log",
        );
    }

    #[test]
    fn indeterminate_transaction_split_across_two_revisions_is_flagged() {
        let h = one_transaction(
            |h| {
                h.info(1, 1);
            },
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![change(B, 1, Some("b1"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            "1 of its 2 writes at revision 3; no change of t/e/b, its value is at t/e/b@4",
        );
    }

    #[test]
    fn indeterminate_transaction_without_its_delete_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, put(B, "b1")).ok_write(1, 1, 3, 1);
        h.invoke(2, 2, tx(&[(A, Some("a1"), None), (B, None, None)]))
            .info(2, 2);
        h.final_node(
            1,
            4,
            "d",
            vec![
                entry(3, vec![change(B, 1, Some("b1"))]),
                entry(4, vec![change(A, 1, Some("a1"))]),
            ],
        );
        assert_flags(
            &h.check(check),
            "torn transaction: op 2 (p2 apply [t/e/a {\"w\":\"a1\"}, t/e/b delete], t=30..40 info): 1 of its 2 writes at revision 4; no delete of t/e/b",
        );
    }

    #[test]
    fn failed_transaction_with_a_value_in_the_log_is_flagged() {
        let h = one_transaction(
            |h| {
                h.fail(1, 1, FailReason::VersionMismatch { current: None }, None);
            },
            vec![entry(3, vec![change(B, 1, Some("b1"))])],
        );
        assert_flags(
            &h.check(check),
            "failed transaction took effect: op 1 (p1 apply [t/e/a {\"w\":\"a1\"}, t/e/b {\"w\":\"b1\"}], t=10..20 fail version mismatch): t/e/b's value is at t/e/b@3",
        );
    }

    #[test]
    fn no_final_event_fails() {
        let mut h = History::default();
        valid_ops(&mut h);
        assert_flags(&h.check(check), "no Final event");
    }
}
