//! `watch`: the stream guarantees of DESIGN.md ("Watch guarantees"), per
//! watcher, against the committed log.
//!
//! A watch's *range* is its targets: `tenant/env/` prefixes and
//! `tenant/env/namespace` paths. The server delivers a revision when it
//! changes a namespace in range, its document or its schema: a schema change
//! of `tenant/namespace` comes as one change per environment of the tenant,
//! under `tenant/env/namespace` (kind `schema_set`/`schema_delete`), so it is
//! in the range of a prefix of that environment and of that path alike, and
//! it is a revision the watch must deliver. Tenant, environment and
//! settings changes name no namespace and are in no range.
//!
//! Within a session: changes are **ordered** and **unique** (revisions
//! strictly increase, none before the start revision or a snapshot's); each
//! is the log's entry at that revision restricted to the range, whole
//! (**atomic**: a transaction delivered in part is *torn*); a snapshot equals
//! the log's live documents in range at its revision (schemas are not
//! documents: a snapshot holds none); a progress event at P is never below
//! the start revision − 1 and comes only once every change through P has
//! been delivered. **Reliable**: from the session's start (or a snapshot) to
//! the last revision it delivered or a progress covered, every log revision
//! in range was delivered. Across sessions (**resumable**): a session starts
//! at last seen + 1 (at most the last progress + 1), and never delivers
//! again what an earlier session did. In the end every watcher has reached
//! the last log revision in its range, or it *stalled*.

use std::collections::HashMap;

use super::{no_log_verdict, Anomalies, CommittedLog, Context, Verdict};
use crate::history::{covers, ChangeKind, Event, LogEntry, NsChange, WatchItem};

const NAME: &str = "watch";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let Some(log) = &ctx.log else {
        return no_log_verdict(NAME);
    };
    let mut checker = Checker {
        log,
        anomalies: Anomalies::new(ctx.options.max_anomalies),
        revisions_under: HashMap::new(),
    };
    let mut watchers: HashMap<u64, Watcher<'_>> = HashMap::new();
    let (mut items, mut sessions) = (0usize, 0usize);
    for event in ctx.history {
        let Event::Watch { t, watcher, item } = event else {
            continue;
        };
        items += 1;
        let w = watchers.entry(*watcher).or_insert_with(Watcher::new);
        let at = format!("watcher {watcher} t={t}");
        match item {
            WatchItem::Start {
                session,
                node,
                targets,
                from_revision,
            } => {
                sessions += 1;
                checker.start(w, &at, *session, *node, targets, *from_revision);
            }
            WatchItem::Change { session, entry } => {
                if let Some(s) = checker.open_session(&mut w.open, &at, *session, "change") {
                    checker.change(s, &mut w.reach, &at, entry);
                }
            }
            WatchItem::Snapshot {
                session,
                revision,
                entries,
            } => {
                if let Some(s) = checker.open_session(&mut w.open, &at, *session, "snapshot") {
                    checker.snapshot(s, &mut w.reach, &at, *revision, entries);
                }
            }
            WatchItem::Progress { session, revision } => {
                if let Some(s) = checker.open_session(&mut w.open, &at, *session, "progress") {
                    checker.progress(s, &mut w.reach, &at, *revision);
                }
            }
            WatchItem::End { session, .. } => {
                if checker
                    .open_session(&mut w.open, &at, *session, "end")
                    .is_some()
                {
                    w.open = None;
                }
            }
        }
    }

    let mut ids: Vec<u64> = watchers.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(w) = watchers.get(&id) else { continue };
        let Some(targets) = w.targets else { continue };
        let Some(&target) = checker.revisions(targets).last() else {
            continue;
        };
        if w.reach.covered.is_none_or(|c| c < target) {
            let reached = w
                .reach
                .covered
                .map_or("nothing".to_string(), |c| format!("revision {c}"));
            checker.anomalies.push(format!(
                "stalled: watcher {id} reached {reached}, but the last change under {} is at revision {target}",
                shown(targets)
            ));
        }
    }
    let summary = format!(
        "{} watchers, {sessions} sessions, {items} items",
        watchers.len()
    );
    checker.anomalies.verdict(NAME, summary)
}

/// How far a watcher got, over all its sessions.
#[derive(Default)]
struct Reach {
    /// The highest revision delivered (change or snapshot).
    seen: Option<u64>,
    /// Everything in range through here is known delivered: `seen`,
    /// progress, or the first session's start − 1.
    covered: Option<u64>,
}

impl Reach {
    fn saw(&mut self, revision: u64) {
        self.seen = self.seen.max(Some(revision));
        self.covered = self.covered.max(Some(revision));
    }
}

struct Watcher<'h> {
    next_session: u64,
    /// The first session's start revision; `None` before any session.
    first_from: Option<u64>,
    targets: Option<&'h [String]>,
    reach: Reach,
    open: Option<Session<'h>>,
}

impl Watcher<'_> {
    fn new() -> Self {
        Watcher {
            next_session: 0,
            first_from: None,
            targets: None,
            reach: Reach::default(),
            open: None,
        }
    }
}

struct Session<'h> {
    id: u64,
    targets: &'h [String],
    from: u64,
    /// Started from 0 and no snapshot yet.
    awaiting_snapshot: bool,
    /// The last revision delivered in this session (change or snapshot).
    last: Option<u64>,
    /// Everything in range through here was delivered (or is before
    /// the start); `None` while awaiting the snapshot.
    covered: Option<u64>,
    /// What earlier sessions delivered: this one must not deliver it again.
    earlier_seen: Option<u64>,
}

struct Checker<'l, 'h> {
    log: &'l CommittedLog<'h>,
    anomalies: Anomalies,
    /// targets → the log revisions that change something in their range.
    revisions_under: HashMap<&'h [String], Vec<u64>>,
}

impl<'h> Checker<'_, 'h> {
    fn revisions(&mut self, targets: &'h [String]) -> &[u64] {
        let log = self.log;
        self.revisions_under
            .entry(targets)
            .or_insert_with(|| log.revisions_under(targets))
    }

    /// The log revisions in the range of `targets` in `after < r < until`, described.
    fn missing(&mut self, targets: &'h [String], after: u64, until: u64) -> Option<String> {
        let revisions = self.revisions(targets);
        let lo = revisions.partition_point(|&r| r <= after);
        let hi = revisions.partition_point(|&r| r < until);
        let missing = revisions.get(lo..hi).filter(|m| !m.is_empty())?;
        if let [single] = missing {
            return Some(format!("revision {single}"));
        }
        let shown: Vec<String> = missing.iter().take(5).map(u64::to_string).collect();
        let more = if missing.len() > 5 { ", …" } else { "" };
        Some(format!(
            "{} revisions [{}{more}]",
            missing.len(),
            shown.join(", ")
        ))
    }

    fn start(
        &mut self,
        w: &mut Watcher<'h>,
        at: &str,
        session: u64,
        node: u64,
        targets: &'h [String],
        from: u64,
    ) {
        if session != w.next_session {
            self.anomalies.push(format!(
                "session: {at}: session {session} started, expected session {}",
                w.next_session
            ));
        }
        w.next_session = session.saturating_add(1);
        match w.first_from {
            None => {
                w.first_from = Some(from);
                w.reach.covered = from.checked_sub(1);
            }
            Some(first_from) => {
                // A resume: from last seen + 1, or later up to what progress covered.
                let lower = w.reach.seen.map_or(first_from, |s| s.saturating_add(1));
                let upper = w
                    .reach
                    .covered
                    .map_or(first_from, |c| c.saturating_add(1))
                    .max(lower);
                if from < lower || from > upper {
                    let expected = match lower == upper {
                        true => lower.to_string(),
                        false => format!("{lower}..={upper}"),
                    };
                    let skipped = match w.reach.covered {
                        Some(c) if from > upper => self
                            .missing(targets, c, from)
                            .map_or(String::new(), |m| format!(", skipping {m}")),
                        _ => String::new(),
                    };
                    self.anomalies.push(format!(
                        "resume: {at}: session {session} on node {node} starts from revision {from}, expected {expected}{skipped}"
                    ));
                }
            }
        }
        w.targets = Some(targets);
        w.open = Some(Session {
            id: session,
            targets,
            from,
            awaiting_snapshot: from == 0,
            last: None,
            covered: from.checked_sub(1),
            earlier_seen: w.reach.seen,
        });
    }

    /// The watcher's open session if it is `session`; else an anomaly.
    fn open_session<'w>(
        &mut self,
        open: &'w mut Option<Session<'h>>,
        at: &str,
        session: u64,
        what: &str,
    ) -> Option<&'w mut Session<'h>> {
        let current = match open {
            Some(s) if s.id == session => return open.as_mut(),
            Some(s) => s.id.to_string(),
            None => "none".to_string(),
        };
        self.anomalies.push(format!(
            "session: {at}: {what} for session {session}, which is not open (open: {current})"
        ));
        None
    }

    fn change(&mut self, s: &mut Session<'h>, reach: &mut Reach, at: &str, entry: &LogEntry) {
        let r = entry.revision;
        let here = format!("{at} session {}", s.id);
        match s.last {
            Some(last) if r == last => {
                self.anomalies
                    .push(format!("duplicate: {here}: revision {r} delivered twice"));
                return;
            }
            Some(last) if r < last => {
                self.anomalies.push(format!(
                    "reordering: {here}: revision {r} delivered after revision {last}"
                ));
                return;
            }
            _ => {}
        }
        if s.awaiting_snapshot {
            self.anomalies.push(format!(
                "before snapshot: {here}: change at revision {r} before the snapshot of a session from 0"
            ));
        }
        if s.from > 0 && r < s.from {
            self.anomalies.push(format!(
                "before start: {here}: revision {r} delivered in a session from revision {}",
                s.from
            ));
        } else if let Some(seen) = s.earlier_seen.filter(|&seen| r <= seen) {
            self.anomalies.push(format!(
                "regression: {here}: revision {r} delivered again after a resume (earlier sessions saw through {seen})"
            ));
        } else if let Some(c) = s.covered {
            if r <= c {
                self.anomalies.push(format!(
                    "late: {here}: revision {r} delivered after progress had claimed everything through {c} was sent"
                ));
            } else if let Some(m) = self.missing(s.targets, c, r) {
                self.anomalies.push(format!(
                    "gap: {here}: {m} under {} missing between revision {c} and revision {r}",
                    shown(s.targets)
                ));
            }
        }
        self.compare_entry(s.targets, &here, entry);
        s.last = Some(r);
        s.covered = s.covered.max(Some(r));
        reach.saw(r);
    }

    /// A change event must be the log's entry at its revision, restricted to
    /// the range, whole and in order (schema changes included, with their kind).
    fn compare_entry(&mut self, targets: &[String], here: &str, entry: &LogEntry) {
        let r = entry.revision;
        let expected: Vec<&NsChange> = self
            .log
            .entry_at(r)
            .map(|e| {
                e.changes
                    .iter()
                    .filter(|c| covers(targets, &c.ns))
                    .collect()
            })
            .unwrap_or_default();
        let got = &entry.changes;
        if got.len() == expected.len() && got.iter().zip(&expected).all(|(g, e)| g == *e) {
            return;
        }
        let (got_text, expected_text) = (describe(got.iter()), describe(expected.iter().copied()));
        let anomaly = if expected.is_empty() {
            format!("phantom: {here}: revision {r} delivered {got_text}, but the log has no change under {} there", shown(targets))
        } else if got.len() < expected.len() && is_subsequence(got, &expected) {
            format!(
                "torn: {here}: revision {r} delivered {} of its {} changes: {got_text}; the log has {expected_text}",
                got.len(),
                expected.len()
            )
        } else {
            format!("differs: {here}: revision {r} delivered {got_text}, but the log has {expected_text}")
        };
        self.anomalies.push(anomaly);
    }

    fn snapshot(
        &mut self,
        s: &mut Session<'h>,
        reach: &mut Reach,
        at: &str,
        revision: u64,
        entries: &[NsChange],
    ) {
        let here = format!("{at} session {}", s.id);
        if let Some(last) = s.last.filter(|&last| revision < last) {
            self.anomalies.push(format!(
                "reordering: {here}: snapshot at revision {revision} after revision {last}"
            ));
        } else if let Some(seen) = s.earlier_seen.filter(|&seen| revision < seen) {
            self.anomalies.push(format!(
                "regression: {here}: snapshot at revision {revision} after a resume (earlier sessions saw through {seen})"
            ));
        }
        if revision > self.log.max_revision {
            self.anomalies.push(format!(
                "future: {here}: snapshot at revision {revision}, beyond any node's applied revision {}",
                self.log.max_revision
            ));
        }
        self.compare_snapshot(s.targets, &here, revision, entries);
        s.awaiting_snapshot = false;
        s.last = s.last.max(Some(revision));
        s.covered = s.covered.max(Some(revision));
        reach.saw(revision);
    }

    /// A snapshot must hold exactly the live namespaces in range at its
    /// revision, with their versions and values (documents only).
    fn compare_snapshot(
        &mut self,
        targets: &[String],
        here: &str,
        revision: u64,
        entries: &[NsChange],
    ) {
        let mut expected: Vec<(&str, u64, &serde_json::Value)> = self
            .log
            .namespaces()
            .filter(|ns| covers(targets, ns))
            .filter_map(|ns| {
                let state = self.log.state_at(ns, revision);
                Some((ns, state.version, state.value?))
            })
            .collect();
        expected.sort_unstable_by_key(|(ns, _, _)| *ns);
        let mut got: HashMap<&str, &NsChange> = HashMap::new();
        let mut diffs = Vec::new();
        for entry in entries {
            if got.insert(entry.ns.as_str(), entry).is_some() {
                diffs.push(format!("{} twice", entry.ns));
            }
        }
        for &(ns, version, value) in &expected {
            match got.remove(ns) {
                None => diffs.push(format!("{ns} (v{version} {value}) missing")),
                Some(e) if e.version == version && e.value.as_ref() == Some(value) => {}
                Some(e) => diffs.push(format!(
                    "{} but the log has v{version} {value}",
                    describe_one(e)
                )),
            }
        }
        let mut extra: Vec<&NsChange> = got.into_values().collect();
        extra.sort_unstable_by_key(|e| e.ns.as_str());
        diffs.extend(
            extra
                .into_iter()
                .map(|e| format!("{} not live in the log", describe_one(e))),
        );
        if !diffs.is_empty() {
            let more = if diffs.len() > 3 { "; …" } else { "" };
            diffs.truncate(3);
            self.anomalies.push(format!(
                "snapshot: {here}: snapshot at revision {revision} differs from the log under {}: {}{more}",
                shown(targets),
                diffs.join("; ")
            ));
        }
    }

    fn progress(&mut self, s: &mut Session<'h>, reach: &mut Reach, at: &str, revision: u64) {
        let here = format!("{at} session {}", s.id);
        let Some(c) = s.covered.filter(|_| !s.awaiting_snapshot) else {
            self.anomalies.push(format!(
                "progress: {here}: progress at revision {revision} before the snapshot of a session from 0"
            ));
            return;
        };
        if s.from > 0 && revision.saturating_add(1) < s.from {
            self.anomalies.push(format!(
                "progress: {here}: progress at revision {revision}, below the start revision {} − 1",
                s.from
            ));
        }
        if revision > self.log.max_revision {
            self.anomalies.push(format!(
                "future: {here}: progress at revision {revision}, beyond any node's applied revision {}",
                self.log.max_revision
            ));
        }
        if let Some(m) = self.missing(s.targets, c, revision.saturating_add(1)) {
            self.anomalies.push(format!(
                "gap: {here}: progress at revision {revision}, but {m} under {} after revision {c} were never delivered",
                shown(s.targets)
            ));
        }
        s.covered = s.covered.max(Some(revision));
        reach.covered = reach.covered.max(Some(revision));
    }
}

/// The targets of a watch as one word: `t/e/` or `t/e/a,t/e/b`.
fn shown(targets: &[String]) -> String {
    targets.join(",")
}

/// `t/e/a v3 {"w":"x"}`, `t/e/b v2 deleted`, `t/e/a schema v2 {…}`,
/// `t/e/a schema v3 deleted`.
fn describe_one(c: &NsChange) -> String {
    let what = match c.kind {
        ChangeKind::Document => String::new(),
        ChangeKind::SchemaSet | ChangeKind::SchemaDelete => "schema ".to_string(),
        ChangeKind::Other(k) => format!("change of kind {k} "),
    };
    match &c.value {
        Some(v) => format!("{} {what}v{} {v}", c.ns, c.version),
        None => format!("{} {what}v{} deleted", c.ns, c.version),
    }
}

/// `[t/e/a v3 {"w":"x"}, t/e/b v2 deleted]`, or `nothing`.
fn describe<'a>(changes: impl Iterator<Item = &'a NsChange>) -> String {
    let parts: Vec<String> = changes.map(describe_one).collect();
    match parts.is_empty() {
        true => "nothing".to_string(),
        false => format!("[{}]", parts.join(", ")),
    }
}

fn is_subsequence(part: &[NsChange], whole: &[&NsChange]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| *w == p))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::check;
    use crate::history::{covers, WatchItem};

    /// Watcher 1's items replaced by `items`; the rest of the valid history kept.
    fn with_watcher(items: impl FnOnce(&mut History)) -> History {
        let mut h = History::default();
        items(&mut h);
        valid_finals(&mut h);
        h
    }

    /// A log with a transaction at revision 9 changing both namespaces.
    fn log_with_transaction() -> Vec<crate::history::LogEntry> {
        let mut log = valid_log();
        log.push(entry(
            9,
            vec![change(A, 5, Some("a5")), change(B, 3, Some("b3"))],
        ));
        log
    }

    #[test]
    fn valid_history_watches_pass() {
        assert_passes(&valid_history().check(check));
    }

    #[test]
    fn gap_in_a_session_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1);
            for e in [&log[0], &log[2], &log[3], &log[4], &log[5]] {
                h.change(1, 0, e.clone());
            }
        });
        assert_flags(&h.check(check), "gap: watcher 1 t=30 session 0: revision 4 under t/e/ missing between revision 3 and revision 5");
    }

    #[test]
    fn duplicate_revision_in_a_session_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1);
            for e in [
                &log[0], &log[1], &log[1], &log[2], &log[3], &log[4], &log[5],
            ] {
                h.change(1, 0, e.clone());
            }
        });
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            "duplicate: watcher 1 t=40 session 0: revision 4 delivered twice",
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn revisions_going_backwards_are_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1);
            for e in [&log[0], &log[2], &log[1], &log[3], &log[4], &log[5]] {
                h.change(1, 0, e.clone());
            }
        });
        assert_flags(
            &h.check(check),
            "reordering: watcher 1 t=40 session 0: revision 4 delivered after revision 5",
        );
    }

    #[test]
    fn torn_transaction_is_flagged() {
        let mut h = History::default();
        h.start(1, 0, 9)
            .change(1, 0, entry(9, vec![change(A, 5, Some("a5"))]));
        h.final_node(1, 9, "d9", log_with_transaction());
        assert_flags(
            &h.check(check),
            "torn: watcher 1 t=20 session 0: revision 9 delivered 1 of its 2 changes",
        );
    }

    #[test]
    fn whole_transaction_passes() {
        let mut h = History::default();
        h.start(1, 0, 9)
            .change(1, 0, log_with_transaction()[6].clone());
        h.final_node(1, 9, "d9", log_with_transaction());
        assert_passes(&h.check(check));
    }

    /// The transactions of the valid history, watched by watcher 1 from
    /// revision 9 with `entries` delivered, and the nodes' log.
    fn watching_transactions(entries: Vec<crate::history::LogEntry>) -> History {
        let mut h = History::default();
        valid_ops(&mut h);
        valid_tx_ops(&mut h);
        h.start(1, 0, 9);
        for e in entries {
            h.change(1, 0, e);
        }
        for node in 1..=3 {
            h.final_node(node, 10, "d10", valid_tx_log());
        }
        h
    }

    #[test]
    fn watcher_seeing_whole_transactions_passes() {
        let log = valid_tx_log();
        let h = watching_transactions(vec![log[6].clone(), log[7].clone()]);
        assert_passes(&h.check(check));
        assert_passes(&valid_tx_history().check(check));
    }

    #[test]
    fn watcher_seeing_part_of_an_acknowledged_transaction_is_flagged_torn() {
        // Op 15's revision 9 without its change of t/e/b.
        let log = valid_tx_log();
        let mut part = log[6].clone();
        part.changes.remove(1);
        let h = watching_transactions(vec![part, log[7].clone()]);
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            r#"torn: watcher 1 t=440 session 0: revision 9 delivered 2 of its 3 changes: [t/e/a v5 {"w":"a5"}, t/e/c v1 {"w":"c1"}]; the log has [t/e/a v5 {"w":"a5"}, t/e/b v3 {"w":"b3"}, t/e/c v1 {"w":"c1"}]"#,
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn watcher_seeing_a_transaction_in_two_events_is_flagged() {
        // Revision 10 (op 17's delete of b and write of c) as two events.
        let log = valid_tx_log();
        let (mut first, mut second) = (log[7].clone(), log[7].clone());
        first.changes.truncate(1);
        second.changes.remove(0);
        let h = watching_transactions(vec![log[6].clone(), first, second]);
        let verdict = h.check(check);
        assert_flags(&verdict, "torn: watcher 1 t=450 session 0: revision 10 delivered 1 of its 2 changes: [t/e/b v4 deleted]");
        assert_flags(
            &verdict,
            "duplicate: watcher 1 t=460 session 0: revision 10 delivered twice",
        );
    }

    #[test]
    fn duplicate_across_a_resume_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1)
                .change(1, 0, log[0].clone())
                .change(1, 0, log[1].clone())
                .end(1, 0);
            // Resumes from 4 instead of 5 and gets revision 4 again.
            h.start(1, 1, 4);
            for e in &log[1..] {
                h.change(1, 1, e.clone());
            }
        });
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            "resume: watcher 1 t=50: session 1 on node 1 starts from revision 4, expected 5",
        );
        assert_flags(
            &verdict,
            "regression: watcher 1 t=60 session 1: revision 4 delivered again after a resume",
        );
    }

    #[test]
    fn resume_from_past_the_last_progress_is_accepted() {
        // Watching t/e/a only (revisions 3, 4, 6, 8): progress 5 lets the
        // resume start at 6.
        let log = valid_log();
        let start = |session, from_revision| WatchItem::Start {
            session,
            node: 2,
            targets: vec![A.to_string()],
            from_revision,
        };
        let h = with_watcher(|h| {
            h.watch(1, start(0, 1))
                .change(1, 0, log[0].clone())
                .change(1, 0, log[1].clone());
            h.progress(1, 0, 5).end(1, 0);
            h.watch(1, start(1, 6))
                .change(1, 1, log[3].clone())
                .change(1, 1, log[5].clone());
        });
        assert_passes(&h.check(check));
    }

    #[test]
    fn resume_that_skips_revisions_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1).change(1, 0, log[0].clone()).end(1, 0);
            h.start(1, 1, 5);
            for e in &log[2..] {
                h.change(1, 1, e.clone());
            }
        });
        assert_flags(
            &h.check(check),
            "starts from revision 5, expected 4, skipping revision 4",
        );
    }

    #[test]
    fn stalled_watcher_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1)
                .change(1, 0, log[0].clone())
                .change(1, 0, log[1].clone())
                .end(1, 0);
        });
        assert_flags(&h.check(check), "stalled: watcher 1 reached revision 4, but the last change under t/e/ is at revision 8");
    }

    #[test]
    fn progress_past_an_undelivered_revision_is_flagged() {
        let log = valid_log();
        let h = with_watcher(|h| {
            h.start(1, 0, 1)
                .change(1, 0, log[0].clone())
                .progress(1, 0, 8);
        });
        assert_flags(&h.check(check), "gap: watcher 1 t=30 session 0: progress at revision 8, but 5 revisions [4, 5, 6, 7, 8]");
    }

    #[test]
    fn snapshot_that_differs_from_the_log_is_flagged() {
        let h = with_watcher(|h| {
            h.start(1, 0, 0).watch(
                1,
                WatchItem::Snapshot {
                    session: 0,
                    revision: 6,
                    entries: vec![change(A, 2, Some("a2")), change(B, 1, Some("b1"))],
                },
            );
        });
        assert_flags(
            &h.check(check),
            r#"snapshot at revision 6 differs from the log under t/e/: t/e/a v2 {"w":"a2"} not live in the log"#,
        );
    }

    #[test]
    fn change_that_is_not_in_the_log_is_flagged() {
        let h = with_watcher(|h| {
            h.start(1, 0, 8)
                .change(1, 0, entry(8, vec![change(A, 4, Some("other"))]));
        });
        assert_flags(
            &h.check(check),
            "differs: watcher 1 t=20 session 0: revision 8 delivered",
        );
    }

    /// Watcher 3 on `paths` from revision 9 in the valid history with
    /// schema changes, delivered `revisions` of the log restricted to them.
    fn path_watcher(paths: &[&str], revisions: &[u64]) -> History {
        let mut h = valid_schema_history();
        let targets: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        h.watch(
            3,
            WatchItem::Start {
                session: 0,
                node: 2,
                targets: targets.clone(),
                from_revision: 9,
            },
        );
        for e in valid_schema_log()
            .into_iter()
            .filter(|e| revisions.contains(&e.revision))
        {
            let mut e = e;
            e.changes.retain(|c| covers(&targets, &c.ns));
            h.change(3, 0, e);
        }
        h
    }

    #[test]
    fn schema_changes_are_revisions_of_the_watched_range() {
        // t/e/a changes at 9 (part of a transaction), its schema at 11 and
        // 13, its document at 12 and 14; t/e/b and t/e/c only at 9 and 10.
        assert_passes(&path_watcher(&[A], &[9, 11, 12, 13, 14]).check(check));
        assert_passes(&path_watcher(&[B, C], &[9, 10]).check(check));
        assert_passes(&valid_schema_history().check(check));
    }

    #[test]
    fn schema_change_left_out_is_a_gap() {
        let verdict = path_watcher(&[A], &[9, 12, 13, 14]).check(check);
        assert_flags(
            &verdict,
            "gap: watcher 3 t=1090 session 0: revision 11 under t/e/a missing between revision 9 and revision 12",
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn schema_change_delivered_as_a_document_is_flagged() {
        let mut h = path_watcher(&[A], &[9]);
        let log = valid_schema_log();
        let mut e = log[8].clone();
        e.changes[0].kind = crate::history::ChangeKind::Document;
        h.change(3, 0, e);
        for e in &log[9..] {
            h.change(3, 0, e.clone());
        }
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            r#"differs: watcher 3 t=1090 session 0: revision 11 delivered [t/e/a v1 {"description":"p1-22","#,
        );
        assert_flags(
            &verdict,
            r#"but the log has [t/e/a schema v1 {"description":"p1-22","#,
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }
}
