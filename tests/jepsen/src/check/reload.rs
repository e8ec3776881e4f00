//! `hot_reload`: the hot-reload handles only move forward, to committed
//! values, and never show part of a revision. Per reloader, the revisions it
//! swaps in strictly increase (never back, never the same twice), and each
//! value is the committed state at that revision: for a handle on one
//! namespace, the namespace's document (the namespace live there); for a
//! handle on a whole environment (`tenant/env/`), an object holding exactly
//! the documents live there, by name. A transaction applied to some of the
//! namespaces of a set handle but not the others matches no revision: that
//! is a *torn* view. Schema changes are not documents: a handle that swapped
//! one in would show a value the log does not hold.

use std::collections::HashMap;

use serde_json::Value;

use super::{no_log_verdict, Anomalies, CommittedLog, Context, Verdict};
use crate::history::{covers, Event};

const NAME: &str = "hot_reload";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let Some(log) = &ctx.log else {
        return no_log_verdict(NAME);
    };
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    // reloader → (time, revision) of its last swap.
    let mut last: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut reloads = 0usize;
    for event in ctx.history {
        let Event::Reload {
            t,
            reloader,
            ns,
            revision,
            value,
        } = event
        else {
            continue;
        };
        reloads += 1;
        let at =
            format!("reloader {reloader} swapped in {ns} {value} at revision {revision} (t={t})");
        if let Some(&(last_t, last_revision)) = last.get(reloader) {
            if *revision < last_revision {
                anomalies.push(format!(
                    "went backwards: {at} after revision {last_revision} (t={last_t})"
                ));
            } else if *revision == last_revision {
                anomalies.push(format!(
                    "repeated: {at}, revision {last_revision} again (first at t={last_t})"
                ));
            }
        }
        if last.get(reloader).is_none_or(|&(_, r)| *revision > r) {
            last.insert(*reloader, (*t, *revision));
        }
        if *revision > log.max_revision {
            anomalies.push(format!(
                "from the future: {at}, beyond any node's applied revision {}",
                log.max_revision
            ));
            continue;
        }
        if ns.ends_with('/') {
            if let Some(diffs) = set_differs(log, ns, *revision, value) {
                anomalies.push(format!(
                    "not the committed state: {at}, but at revision {revision} {diffs}"
                ));
            }
            continue;
        }
        let state = log.state_at(ns, *revision);
        if state.value != Some(value) {
            anomalies.push(format!(
                "not the committed value: {at}, but at revision {revision} {ns} is {state}"
            ));
        }
    }
    let summary = format!("{reloads} reloads by {} reloaders", last.len());
    anomalies.verdict(NAME, summary)
}

/// How a set handle's `value` differs from every document live under
/// `prefix` at `revision`; `None` when it is exactly that.
fn set_differs(
    log: &CommittedLog<'_>,
    prefix: &str,
    revision: u64,
    value: &Value,
) -> Option<String> {
    let Value::Object(got) = value else {
        return Some("the value is not an object of namespaces".to_string());
    };
    let prefix_targets = [prefix.to_string()];
    let mut namespaces: Vec<&str> = log
        .namespaces()
        .filter(|ns| covers(&prefix_targets, ns))
        .collect();
    namespaces.sort_unstable();
    let mut diffs = Vec::new();
    for ns in &namespaces {
        let name = ns.strip_prefix(prefix).unwrap_or(ns);
        let state = log.state_at(ns, revision);
        if state.value != got.get(name) {
            let shown = got
                .get(name)
                .map_or("absent".to_string(), |v| v.to_string());
            diffs.push(format!("{ns} is {state}, not {shown}"));
        }
    }
    let unknown = got.keys().filter(|name| {
        !namespaces
            .iter()
            .any(|ns| ns.strip_prefix(prefix) == Some(name))
    });
    diffs.extend(unknown.map(|name| format!("{prefix}{name} was never written")));
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::check;

    fn with_reloads(reloads: impl FnOnce(&mut History)) -> History {
        let mut h = History::default();
        reloads(&mut h);
        valid_finals(&mut h);
        h
    }

    #[test]
    fn valid_history_reloads_forward_to_committed_values() {
        assert_passes(&valid_history().check(check));
    }

    #[test]
    fn value_that_does_not_match_the_log_is_flagged() {
        let h = with_reloads(|h| {
            h.reload(1, A, 3, "a1").reload(1, A, 4, "a1");
        });
        assert_flags(
            &h.check(check),
            r#"not the committed value: reloader 1 swapped in t/e/a {"w":"a1"} at revision 4"#,
        );
    }

    #[test]
    fn value_of_a_deleted_namespace_is_flagged() {
        let h = with_reloads(|h| {
            h.reload(1, A, 7, "a2");
        });
        assert_flags(&h.check(check), "but at revision 7 t/e/a is deleted v3");
    }

    #[test]
    fn revision_going_backwards_is_flagged() {
        let h = with_reloads(|h| {
            h.reload(1, A, 4, "a2").reload(1, A, 3, "a1");
        });
        assert_flags(
            &h.check(check),
            "went backwards: reloader 1 swapped in t/e/a {\"w\":\"a1\"} at revision 3",
        );
    }

    #[test]
    fn repeated_revision_is_flagged() {
        let h = with_reloads(|h| {
            h.reload(1, A, 4, "a2").reload(1, A, 4, "a2");
        });
        assert_flags(&h.check(check), "repeated: reloader 1");
    }

    #[test]
    fn reloaders_are_checked_independently() {
        let h = with_reloads(|h| {
            h.reload(1, A, 4, "a2")
                .reload(2, A, 3, "a1")
                .reload(2, B, 5, "b1");
        });
        assert_passes(&h.check(check));
    }

    #[test]
    fn set_handle_taking_whole_transactions_passes() {
        assert_passes(&valid_tx_history().check(check));
    }

    #[test]
    fn set_handle_showing_part_of_a_transaction_is_flagged_torn() {
        // Revision 9 (op 15) wrote a5, b3 and c1 together; the handle shows
        // a5 and c1 with the b from before.
        let mut h = History::default();
        h.reload_set(2, 9, &[("a", "a5"), ("b", "b2"), ("c", "c1")]);
        h.final_node(1, 10, "d10", valid_tx_log());
        assert_flags(
            &h.check(check),
            r#"not the committed state: reloader 2 swapped in t/e/ {"a":{"w":"a5"},"b":{"w":"b2"},"c":{"w":"c1"}} at revision 9 (t=10), but at revision 9 t/e/b is {"w":"b3"} v3 (mod rev 9), not {"w":"b2"}"#,
        );
    }

    #[test]
    fn set_handle_missing_or_inventing_a_namespace_is_flagged() {
        let h = with_reloads(|h| {
            h.reload_set(2, 5, &[("a", "a2")])
                .reload_set(2, 7, &[("b", "b2"), ("z", "a4")]);
        });
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            r#"t/e/b is {"w":"b1"} v1 (mod rev 5), not absent"#,
        );
        assert_flags(&verdict, "t/e/z was never written");
    }

    #[test]
    fn schema_taken_for_a_document_is_flagged() {
        // Revision 9 set t/a's schema; a handle on t/e/a that swapped the
        // schema in as its document is wrong.
        let schema = serde_json::json!({"type": "object"});
        let mut log = valid_log();
        log.push(entry(9, vec![schema_change(A, 1, Some(schema.clone()))]));
        let mut h = History::default();
        h.reload_value(1, A, 9, schema);
        h.final_node(1, 9, "d9", log);
        assert_flags(
            &h.check(check),
            r#"not the committed value: reloader 1 swapped in t/e/a {"type":"object"} at revision 9 (t=10), but at revision 9 t/e/a is {"w":"a4"} v4 (mod rev 8)"#,
        );
    }
}
