//! `convergence`: once faults are healed every node ends in the same place.
//! There is at least one `Final` event, one per node; every node reports the
//! same applied revision and state digest and serves the same log; each log's
//! revisions strictly increase, no entry is empty, and none is beyond the
//! node's applied revision.

use std::collections::HashSet;

use super::{Anomalies, Context, Verdict};
use crate::history::{Event, LogEntry};

const NAME: &str = "convergence";

struct Final<'h> {
    node: u64,
    revision: u64,
    digest: &'h str,
    log: &'h [LogEntry],
}

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    let finals: Vec<Final<'_>> = ctx
        .history
        .iter()
        .filter_map(|e| match e {
            Event::Final {
                node,
                revision,
                digest,
                log,
                ..
            } => Some(Final {
                node: *node,
                revision: *revision,
                digest,
                log,
            }),
            _ => None,
        })
        .collect();
    let Some(reference) = finals.first() else {
        anomalies.push("no Final event: no node reported its final state".to_string());
        return anomalies.verdict(NAME, "0 nodes".to_string());
    };

    let mut nodes = HashSet::new();
    for f in &finals {
        if !nodes.insert(f.node) {
            anomalies.push(format!("node {} reported its final state twice", f.node));
        }
        check_log_shape(f, &mut anomalies);
    }
    for f in &finals[1..] {
        if (f.revision, f.digest) != (reference.revision, reference.digest) {
            anomalies.push(format!(
                "node {} ended at revision {} with digest {}, node {} at revision {} with digest {}",
                f.node, f.revision, f.digest, reference.node, reference.revision, reference.digest
            ));
        }
        if let Some(difference) = first_difference(reference, f) {
            anomalies.push(difference);
        }
    }
    let summary = format!(
        "{} nodes; node {} at revision {}, digest {}, log of {} revisions",
        finals.len(),
        reference.node,
        reference.revision,
        reference.digest,
        reference.log.len()
    );
    anomalies.verdict(NAME, summary)
}

fn check_log_shape(f: &Final<'_>, anomalies: &mut Anomalies) {
    let mut previous: Option<u64> = None;
    for entry in f.log {
        if let Some(p) = previous.filter(|&p| entry.revision <= p) {
            anomalies.push(format!(
                "node {}'s log goes from revision {p} to {}: not strictly increasing",
                f.node, entry.revision
            ));
        }
        if entry.changes.is_empty() {
            anomalies.push(format!(
                "node {}'s log has an empty entry at revision {}",
                f.node, entry.revision
            ));
        }
        previous = Some(entry.revision);
    }
    if let Some(last) = previous.filter(|&last| last > f.revision) {
        anomalies.push(format!(
            "node {}'s log reaches revision {last}, beyond its applied revision {}",
            f.node, f.revision
        ));
    }
}

/// Where `other`'s log first differs from `reference`'s, as one line.
fn first_difference(reference: &Final<'_>, other: &Final<'_>) -> Option<String> {
    let (r, o) = (reference.log, other.log);
    let describe =
        |entry: &LogEntry| serde_json::to_string(entry).unwrap_or_else(|e| format!("<{e}>"));
    if let Some((a, b)) = r.iter().zip(o).find(|(a, b)| a != b) {
        return Some(format!(
            "node {}'s log differs from node {}'s at revision {}: {} has {}, {} has {}",
            other.node,
            reference.node,
            a.revision.min(b.revision),
            reference.node,
            describe(a),
            other.node,
            describe(b)
        ));
    }
    let (longer, shorter, extra) = match r.len().cmp(&o.len()) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Greater => (reference, other, &r[o.len()]),
        std::cmp::Ordering::Less => (other, reference, &o[r.len()]),
    };
    Some(format!(
        "node {}'s log differs from node {}'s at revision {}: node {} has {}, node {}'s log ends before it",
        other.node,
        reference.node,
        extra.revision,
        longer.node,
        describe(extra),
        shorter.node
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::check;

    #[test]
    fn valid_history_converges() {
        assert_passes(&valid_history().check(check));
    }

    #[test]
    fn nodes_with_different_digests_are_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        h.final_node(1, 8, "d8", valid_log())
            .final_node(2, 8, "d8", valid_log())
            .final_node(3, 8, "other", valid_log());
        assert_flags(
            &h.check(check),
            "node 3 ended at revision 8 with digest other, node 1 at revision 8 with digest d8",
        );
    }

    #[test]
    fn nodes_with_different_logs_name_the_first_differing_revision() {
        let mut h = History::default();
        let mut diverged = valid_log();
        diverged[3].changes[0].version = 9;
        h.final_node(1, 8, "d8", valid_log())
            .final_node(2, 8, "d8", diverged);
        assert_flags(
            &h.check(check),
            "node 2's log differs from node 1's at revision 6",
        );
    }

    #[test]
    fn a_node_missing_the_log_tail_is_flagged() {
        let mut h = History::default();
        let mut short = valid_log();
        short.pop();
        h.final_node(1, 8, "d8", valid_log())
            .final_node(2, 8, "d8", short);
        assert_flags(
            &h.check(check),
            "node 2's log differs from node 1's at revision 8",
        );
    }

    #[test]
    fn log_revisions_must_strictly_increase() {
        let mut h = History::default();
        let mut log = valid_log();
        log.swap(1, 2);
        h.final_node(1, 8, "d8", log);
        assert_flags(&h.check(check), "node 1's log goes from revision 5 to 4");
    }

    #[test]
    fn no_final_event_fails() {
        let mut h = History::default();
        valid_ops(&mut h);
        assert_flags(&h.check(check), "no Final event");
    }
}
