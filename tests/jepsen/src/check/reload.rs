//! `hot_reload`: the hot-reload handle only moves forward, to committed
//! values. Per reloader, the revisions it swaps in strictly increase (never
//! back, never the same twice), and each value is the namespace's committed
//! value at that revision (the namespace live there).

use std::collections::HashMap;

use super::{no_log_verdict, Anomalies, Context, Verdict};
use crate::history::Event;

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
}
