//! `no_lost_writes`: the committed log holds exactly the writes it should.
//! An acknowledged write is in the log at its revision (a put or CAS with
//! its value, a delete as a delete of its namespace); a failed write's value
//! is nowhere; an indeterminate write's value is there at most once; every
//! value in the log was written by some invocation, to that namespace, and
//! appears once. Values are unique per run, so a value names its write.

use std::collections::HashMap;

use super::{
    no_log_verdict, value_key, Anomalies, ClientOp, CommittedLog, Context, Outcome, Verdict,
};
use crate::history::Op;

const NAME: &str = "no_lost_writes";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let Some(log) = &ctx.log else {
        return no_log_verdict(NAME);
    };
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    let mut counts = Counts::default();
    // value key → the ops that wrote it.
    let mut writers: HashMap<String, Vec<&ClientOp<'_>>> = HashMap::new();
    for op in &ctx.ops.ops {
        if let Some(value) = op.op.written_value() {
            let ops = writers.entry(value_key(value)).or_default();
            if let Some(first) = ops.first() {
                anomalies.push(format!(
                    "value written twice (values must be unique): {first} and {op}"
                ));
            }
            ops.push(op);
        }
        check_op(log, op, &mut counts, &mut anomalies);
    }

    // Every value in the log: written by someone, to that namespace, once.
    let mut found: Vec<(u64, String)> = Vec::new();
    for (key, places) in log.values() {
        let Some(&(revision, ns)) = places.first() else {
            continue;
        };
        match writers.get(key) {
            None => found.push((revision, format!("phantom value {key} in {ns} at revision {revision}: no op wrote it"))),
            Some(ops) if !ops.iter().any(|op| op.op.ns() == ns) => found.push((
                revision,
                format!("value {key} in {ns} at revision {revision} was written to another namespace by {}", ops[0]),
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
        "{} acknowledged writes, {} failed writes, {} indeterminate writes ({} applied, {} not applied, {} deletes unresolvable) against node {}'s log of {} revisions",
        counts.acknowledged,
        counts.failed,
        counts.info_applied + counts.info_not_applied + counts.info_deletes,
        counts.info_applied,
        counts.info_not_applied,
        counts.info_deletes,
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
}

fn check_op(
    log: &CommittedLog<'_>,
    op: &ClientOp<'_>,
    counts: &mut Counts,
    anomalies: &mut Anomalies,
) {
    if !op.op.is_write() {
        return;
    }
    let ns = op.op.ns();
    let written = op.op.written_value();
    let places = written.map_or(&[][..], |v| log.find_value(v));
    let where_it_is = || {
        let at: Vec<String> = places.iter().map(|(r, ns)| format!("{ns}@{r}")).collect();
        match at.is_empty() {
            true => "its value is nowhere in the log".to_string(),
            false => format!("its value is at {}", at.join(", ")),
        }
    };
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
                    where_it_is()
                ))
                }
                (_, None) => anomalies.push(format!(
                    "lost acknowledged write: {op}: no change of {ns} at revision {revision}; {}",
                    where_it_is()
                )),
            }
        }
        Outcome::Fail { .. } => {
            counts.failed += 1;
            if !places.is_empty() {
                anomalies.push(format!("failed write took effect: {op}: {}", where_it_is()));
            }
        }
        Outcome::Info { .. } => match (op.op, places.len()) {
            (Op::Delete { .. }, _) => counts.info_deletes += 1,
            (_, 0) => counts.info_not_applied += 1,
            (_, 1) => counts.info_applied += 1,
            // Reported once, with the log's values.
            (_, _) => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::check;

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

    #[test]
    fn no_final_event_fails() {
        let mut h = History::default();
        valid_ops(&mut h);
        assert_flags(&h.check(check), "no Final event");
    }
}
