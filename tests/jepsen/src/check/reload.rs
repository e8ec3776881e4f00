//! `hot_reload`: hot-reload clients only move forward, to committed values,
//! and end on the final one. Per reloader, the revisions it exposes strictly
//! increase within one run of its process; a restarted process (a new
//! incarnation, maybe started from its cache while every node was down)
//! starts at the revision it had reached or later, never earlier; each value
//! is the namespace's committed value at that revision; and its last value is
//! the namespace's last live value.
//!
//! A handle on a whole environment (`tenant/env/`) must show an object
//! holding exactly the documents live at its revision, by name: a
//! transaction applied to some of its namespaces but not the others matches
//! no revision, a *torn* view. Schema changes are not documents: a handle
//! that swapped one in would show a value the log does not hold.
//!
//! `delivery`: after the run, `raftconf clients` lists every reloader process
//! as connected and current at the namespace's latest revision.

use std::collections::HashMap;

use serde_json::Value;

use super::{no_log_verdict, Anomalies, CommittedLog, Context, Verdict};
use crate::history::{covers, Event};
use crate::reloaders::client_id;

const NAME: &str = "hot_reload";
const DELIVERY: &str = "delivery";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let Some(log) = &ctx.log else {
        return no_log_verdict(NAME);
    };
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    // reloader → (incarnation, time, revision, ns) of its last value.
    let mut last: HashMap<u64, (u64, u64, u64, &str)> = HashMap::new();
    let mut reloads = 0usize;
    let mut restarts = 0usize;
    for event in ctx.history {
        let Event::Reload {
            t,
            reloader,
            ns,
            revision,
            value,
            incarnation,
            ..
        } = event
        else {
            continue;
        };
        reloads += 1;
        let at = format!(
            "reloader {reloader} (run {incarnation}) exposed {ns} {value} at revision {revision} (t={t})"
        );
        match last.get(reloader) {
            Some(&(inc, last_t, last_revision, _)) if inc == *incarnation => {
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
            Some(&(_, last_t, last_revision, _)) => {
                restarts += 1;
                if *revision < last_revision {
                    anomalies.push(format!(
                        "went backwards across a restart: {at}, the previous run had reached \
                         revision {last_revision} (t={last_t})"
                    ));
                }
            }
            None => {}
        }
        let newer = last
            .get(reloader)
            .is_none_or(|&(inc, _, r, _)| *revision > r || inc != *incarnation);
        if newer {
            last.insert(*reloader, (*incarnation, *t, *revision, ns.as_str()));
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
    let mut reloaders: Vec<_> = last.iter().collect();
    reloaders.sort();
    for (reloader, &(_, _, revision, ns)) in reloaders {
        if let Some(final_revision) = log.last_live(ns) {
            if revision < final_revision {
                anomalies.push(format!(
                    "did not converge: reloader {reloader} ended at revision {revision}, \
                     {ns}'s last value is from revision {final_revision}"
                ));
            }
        }
    }
    let summary = format!(
        "{reloads} reloads by {} reloaders, {restarts} restarts",
        last.len()
    );
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

/// The `delivery` check.
pub(crate) fn check_delivery(ctx: &Context<'_>) -> Verdict {
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    let mut processes: Vec<u64> = ctx
        .history
        .iter()
        .filter_map(|e| match e {
            Event::Reload {
                reloader,
                incarnation,
                ..
            } if *incarnation > 0 => Some(*reloader),
            _ => None,
        })
        .collect();
    processes.sort();
    processes.dedup();
    let reports: Vec<_> = ctx
        .history
        .iter()
        .filter_map(|e| match e {
            Event::Delivery {
                ns,
                latest_revision,
                subscribers,
                ..
            } => Some((ns, *latest_revision, subscribers)),
            _ => None,
        })
        .collect();
    if processes.is_empty() {
        return anomalies.verdict(DELIVERY, "no reloader processes in this history".into());
    }
    let Some((ns, latest, subscribers)) = reports.last() else {
        anomalies.push("no `raftconf clients` report was recorded after the run".into());
        return anomalies.verdict(DELIVERY, String::new());
    };
    for n in &processes {
        let id = client_id(*n);
        let Some(s) = subscribers
            .iter()
            .filter(|s| s.client_id == id)
            .max_by_key(|s| (s.connected, s.applied_revision))
        else {
            anomalies.push(format!("{id} is not listed by `raftconf clients {ns}`"));
            continue;
        };
        if !s.connected {
            anomalies.push(format!("{id} is listed as disconnected"));
        } else if *latest > 0 && (s.state != "current" || s.applied_revision < *latest) {
            anomalies.push(format!(
                "{id} is {} at revision {}, the latest is {latest}",
                s.state, s.applied_revision
            ));
        }
    }
    anomalies.verdict(
        DELIVERY,
        format!(
            "{} reloader processes reported current at revision {latest}",
            processes.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::{check, check_delivery};
    use crate::history::{Delivered, Event};

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
            r#"not the committed value: reloader 1 (run 0) exposed t/e/a {"w":"a1"} at revision 4"#,
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
            "went backwards: reloader 1 (run 0) exposed t/e/a {\"w\":\"a1\"} at revision 3",
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
                .reload(2, B, 5, "b1")
                .reload(1, A, 8, "a4")
                .reload(2, B, 7, "b2");
        });
        assert_passes(&h.check(check));
    }

    #[test]
    fn a_reloader_that_ends_before_the_last_value_is_flagged() {
        let h = with_reloads(|h| {
            h.reload(1, A, 4, "a2");
        });
        assert_flags(
            &h.check(check),
            "did not converge: reloader 1 ended at revision 4, t/e/a's last value is from revision 8",
        );
    }

    #[test]
    fn a_restart_may_repeat_the_last_revision_but_not_go_below_it() {
        let ok = with_reloads(|h| {
            h.reload_in(2, 1, A, 4, "a2")
                .reload_in(2, 2, A, 4, "a2")
                .reload_in(2, 2, A, 8, "a4");
        });
        assert_passes(&ok.check(check));
        let back = with_reloads(|h| {
            h.reload_in(2, 1, A, 4, "a2")
                .reload_in(2, 2, A, 3, "a1")
                .reload_in(2, 2, A, 8, "a4");
        });
        assert_flags(
            &back.check(check),
            "went backwards across a restart: reloader 2 (run 2) exposed t/e/a {\"w\":\"a1\"} at revision 3",
        );
    }

    fn delivered(id: &str, applied: u64, state: &str, connected: bool) -> Delivered {
        Delivered {
            client_id: id.into(),
            applied_revision: applied,
            state: state.into(),
            connected,
        }
    }

    fn with_delivery(subscribers: Vec<Delivered>) -> History {
        let mut h = with_reloads(|h| {
            h.reload_in(2, 1, A, 8, "a4").reload_in(3, 1, A, 8, "a4");
        });
        h.events.push(Event::Delivery {
            t: 99,
            ns: A.into(),
            latest_revision: 8,
            subscribers,
        });
        h
    }

    #[test]
    fn delivery_passes_when_every_reloader_process_is_current() {
        let h = with_delivery(vec![
            delivered("jepsen-reloader-2", 9, "current", true),
            delivered("jepsen-reloader-3", 8, "current", true),
        ]);
        assert_passes(&h.check(check_delivery));
    }

    #[test]
    fn delivery_flags_a_missing_a_disconnected_and_a_lagging_reloader() {
        let missing = with_delivery(vec![delivered("jepsen-reloader-2", 8, "current", true)]);
        assert_flags(
            &missing.check(check_delivery),
            "jepsen-reloader-3 is not listed",
        );
        let gone = with_delivery(vec![
            delivered("jepsen-reloader-2", 8, "current", true),
            delivered("jepsen-reloader-3", 8, "current", false),
        ]);
        assert_flags(
            &gone.check(check_delivery),
            "jepsen-reloader-3 is listed as disconnected",
        );
        let lagging = with_delivery(vec![
            delivered("jepsen-reloader-2", 8, "current", true),
            delivered("jepsen-reloader-3", 5, "lagging", true),
        ]);
        assert_flags(
            &lagging.check(check_delivery),
            "jepsen-reloader-3 is lagging at revision 5, the latest is 8",
        );
        let unrecorded = with_reloads(|h| {
            h.reload_in(2, 1, A, 8, "a4");
        });
        assert_flags(
            &unrecorded.check(check_delivery),
            "no `raftconf clients` report",
        );
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
            r#"not the committed state: reloader 2 (run 0) exposed t/e/ {"a":{"w":"a5"},"b":{"w":"b2"},"c":{"w":"c1"}} at revision 9 (t=10), but at revision 9 t/e/b is {"w":"b3"} v3 (mod rev 9), not {"w":"b2"}"#,
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
            r#"not the committed value: reloader 1 (run 0) exposed t/e/a {"type":"object"} at revision 9 (t=10), but at revision 9 t/e/a is {"w":"a4"} v4 (mod rev 8)"#,
        );
    }
}
