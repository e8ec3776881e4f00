//! Hand-made histories for the checkers' tests: a builder that stamps each
//! event 10 ns after the previous one, and valid histories every checker
//! passes (one without transactions, one that goes on with some, one that
//! goes on with schema changes: `schemas.rs`), which the tests then break in
//! one place each.

mod schemas;

pub(crate) use schemas::*;
use serde_json::{json, Value};

use super::{CheckOptions, Context, Verdict};
use crate::history::{
    ChangeKind, Event, FailReason, LogEntry, NsChange, Op, OpOk, SchemaVersion, TxOp, WatchItem,
};

pub(crate) const A: &str = "t/e/a";
pub(crate) const B: &str = "t/e/b";
pub(crate) const C: &str = "t/e/c";
pub(crate) const PREFIX: &str = "t/e/";

/// A value as the workload writes them.
pub(crate) fn val(w: &str) -> Value {
    json!({ "w": w })
}

pub(crate) fn get(ns: &str) -> Op {
    Op::Get { ns: ns.to_string() }
}

pub(crate) fn put(ns: &str, w: &str) -> Op {
    Op::Put {
        ns: ns.to_string(),
        value: val(w),
    }
}

pub(crate) fn cas(ns: &str, expect_version: u64, w: &str) -> Op {
    Op::Cas {
        ns: ns.to_string(),
        expect_version,
        value: val(w),
    }
}

pub(crate) fn del(ns: &str) -> Op {
    Op::Delete { ns: ns.to_string() }
}

/// A transaction: per namespace, the value written (`None`: a delete) and
/// the version required, if any.
pub(crate) fn tx(writes: &[(&str, Option<&str>, Option<u64>)]) -> Op {
    Op::Apply {
        writes: writes
            .iter()
            .map(|&(ns, w, expect_version)| TxOp {
                ns: ns.to_string(),
                value: w.map(val),
                expect_version,
            })
            .collect(),
    }
}

/// A change setting `ns` to `w` (`None`: a delete) at `version`.
pub(crate) fn change(ns: &str, version: u64, w: Option<&str>) -> NsChange {
    NsChange {
        ns: ns.to_string(),
        version,
        value: w.map(val),
        kind: ChangeKind::Document,
    }
}

/// A schema change of the namespace `ns` as a watch delivers it: schema
/// `version` set to `schema`, or (`None`) the schema removed.
pub(crate) fn schema_change(ns: &str, version: u64, schema: Option<Value>) -> NsChange {
    NsChange {
        ns: ns.to_string(),
        version,
        kind: match schema {
            Some(_) => ChangeKind::SchemaSet,
            None => ChangeKind::SchemaDelete,
        },
        value: schema,
    }
}

pub(crate) fn entry(revision: u64, changes: Vec<NsChange>) -> LogEntry {
    LogEntry { revision, changes }
}

/// Builds a history; every event is 10 ns after the previous one.
#[derive(Default)]
pub(crate) struct History {
    pub(crate) events: Vec<Event>,
    t: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.t += 10;
        self.t
    }

    pub(crate) fn invoke(&mut self, process: u64, op_id: u64, op: Op) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Invoke {
            t,
            process,
            op_id,
            op,
        });
        self
    }

    pub(crate) fn ok(&mut self, process: u64, op_id: u64, result: OpOk) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Ok {
            t,
            process,
            op_id,
            result,
        });
        self
    }

    /// A write acknowledged at `revision` with its new `version`.
    pub(crate) fn ok_write(
        &mut self,
        process: u64,
        op_id: u64,
        revision: u64,
        version: u64,
    ) -> &mut Self {
        self.ok(
            process,
            op_id,
            OpOk {
                revision,
                value: None,
                version,
                mod_revision: 0,
            },
        )
    }

    /// A get served at `revision` that read `w` (`None`: missing).
    pub(crate) fn ok_get(
        &mut self,
        process: u64,
        op_id: u64,
        revision: u64,
        w: Option<&str>,
        version: u64,
        mod_revision: u64,
    ) -> &mut Self {
        self.ok(
            process,
            op_id,
            OpOk {
                revision,
                value: w.map(val),
                version,
                mod_revision,
            },
        )
    }

    pub(crate) fn fail(
        &mut self,
        process: u64,
        op_id: u64,
        reason: FailReason,
        revision: Option<u64>,
    ) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Fail {
            t,
            process,
            op_id,
            reason,
            revision,
        });
        self
    }

    pub(crate) fn info(&mut self, process: u64, op_id: u64) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Info {
            t,
            process,
            op_id,
            error: "timeout".to_string(),
        });
        self
    }

    pub(crate) fn watch(&mut self, watcher: u64, item: WatchItem) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Watch { t, watcher, item });
        self
    }

    pub(crate) fn start(&mut self, watcher: u64, session: u64, from_revision: u64) -> &mut Self {
        self.watch(
            watcher,
            WatchItem::Start {
                session,
                node: 1,
                targets: vec![PREFIX.to_string()],
                from_revision,
            },
        )
    }

    pub(crate) fn change(&mut self, watcher: u64, session: u64, entry: LogEntry) -> &mut Self {
        self.watch(watcher, WatchItem::Change { session, entry })
    }

    pub(crate) fn progress(&mut self, watcher: u64, session: u64, revision: u64) -> &mut Self {
        self.watch(watcher, WatchItem::Progress { session, revision })
    }

    pub(crate) fn end(&mut self, watcher: u64, session: u64) -> &mut Self {
        self.watch(
            watcher,
            WatchItem::End {
                session,
                reason: "connection lost".to_string(),
            },
        )
    }

    pub(crate) fn reload(&mut self, reloader: u64, ns: &str, revision: u64, w: &str) -> &mut Self {
        self.reload_value(reloader, ns, revision, val(w))
    }

    /// A reload by incarnation `incarnation` of a reloader process.
    pub(crate) fn reload_in(
        &mut self,
        reloader: u64,
        incarnation: u64,
        ns: &str,
        revision: u64,
        w: &str,
    ) -> &mut Self {
        self.reload_event(reloader, incarnation, ns, revision, val(w))
    }

    pub(crate) fn reload_value(
        &mut self,
        reloader: u64,
        ns: &str,
        revision: u64,
        value: Value,
    ) -> &mut Self {
        self.reload_event(reloader, 0, ns, revision, value)
    }

    fn reload_event(
        &mut self,
        reloader: u64,
        incarnation: u64,
        ns: &str,
        revision: u64,
        value: Value,
    ) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Reload {
            t,
            reloader,
            ns: ns.to_string(),
            revision,
            value,
            incarnation,
            from_cache: false,
        });
        self
    }

    /// A handle on the whole of [`PREFIX`] swapped in `docs` (namespace
    /// name, value written) at `revision`.
    pub(crate) fn reload_set(
        &mut self,
        reloader: u64,
        revision: u64,
        docs: &[(&str, &str)],
    ) -> &mut Self {
        let object = docs
            .iter()
            .map(|(name, w)| (name.to_string(), val(w)))
            .collect();
        self.reload_value(reloader, PREFIX, revision, Value::Object(object))
    }

    pub(crate) fn final_node(
        &mut self,
        node: u64,
        revision: u64,
        digest: &str,
        log: Vec<LogEntry>,
    ) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Final {
            t,
            node,
            revision,
            digest: digest.to_string(),
            log,
        });
        self
    }

    pub(crate) fn schemas(
        &mut self,
        node: u64,
        schemas: std::collections::BTreeMap<String, Vec<SchemaVersion>>,
    ) -> &mut Self {
        let t = self.tick();
        self.events.push(Event::Schemas { t, node, schemas });
        self
    }

    /// Runs one checker over the history with default options.
    pub(crate) fn check(&self, checker: fn(&Context<'_>) -> Verdict) -> Verdict {
        self.check_with(checker, &CheckOptions::default())
    }

    pub(crate) fn check_with(
        &self,
        checker: fn(&Context<'_>) -> Verdict,
        options: &CheckOptions,
    ) -> Verdict {
        checker(&Context::new(&self.events, options))
    }
}

/// The committed log of [`valid_history`]. Revisions 1 and 2 created the
/// tenant and the environment, so the log starts at 3.
pub(crate) fn valid_log() -> Vec<LogEntry> {
    vec![
        entry(3, vec![change(A, 1, Some("a1"))]),
        entry(4, vec![change(A, 2, Some("a2"))]),
        entry(5, vec![change(B, 1, Some("b1"))]),
        entry(6, vec![change(A, 3, None)]),
        entry(7, vec![change(B, 2, Some("b2"))]),
        entry(8, vec![change(A, 4, Some("a4"))]),
    ]
}

/// The client part of the valid history: puts, a CAS that wins and one that
/// loses, a delete, a get of the deleted namespace, a delete that finds
/// nothing, an indeterminate put that did land (revision 7), an
/// indeterminate CAS that did not, a re-creation by CAS, and concurrent ops.
pub(crate) fn valid_ops(h: &mut History) {
    h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
    h.invoke(2, 2, get(A)).ok_get(2, 2, 3, Some("a1"), 1, 3);
    // Concurrent: p1's CAS wins, p2's loses.
    h.invoke(1, 3, cas(A, 1, "a2"))
        .invoke(2, 4, cas(A, 1, "a3"))
        .ok_write(1, 3, 4, 2)
        .fail(
            2,
            4,
            FailReason::VersionMismatch { current: Some(2) },
            Some(4),
        );
    h.invoke(1, 5, put(B, "b1")).ok_write(1, 5, 5, 1);
    h.invoke(2, 6, del(A)).ok_write(2, 6, 6, 3);
    h.invoke(2, 7, get(A)).ok_get(2, 7, 0, None, 0, 0);
    h.invoke(1, 8, del(A))
        .fail(1, 8, FailReason::NotFound, Some(6));
    h.invoke(3, 9, put(B, "b2")).info(3, 9);
    h.invoke(4, 10, cas(B, 7, "b-never")).info(4, 10);
    // Concurrent get and re-creation: the get linearizes first.
    h.invoke(5, 11, cas(A, 0, "a4"))
        .invoke(2, 12, get(A))
        .ok_get(2, 12, 7, None, 0, 0)
        .ok_write(5, 11, 8, 4);
    h.invoke(2, 13, get(A)).ok_get(2, 13, 8, Some("a4"), 4, 8);
    h.invoke(2, 14, get(B)).ok_get(2, 14, 8, Some("b2"), 2, 7);
}

/// Two watchers over `t/e/`: watcher 1 from revision 1 across a resume on
/// another node, watcher 2 from a snapshot.
pub(crate) fn valid_watches(h: &mut History) {
    let log = valid_log();
    h.start(1, 0, 1)
        .change(1, 0, log[0].clone())
        .change(1, 0, log[1].clone())
        .progress(1, 0, 4)
        .end(1, 0)
        .start(1, 1, 5)
        .change(1, 1, log[2].clone())
        .change(1, 1, log[3].clone())
        .change(1, 1, log[4].clone())
        .change(1, 1, log[5].clone())
        .progress(1, 1, 8)
        .end(1, 1);
    h.start(2, 0, 0)
        .watch(
            2,
            WatchItem::Snapshot {
                session: 0,
                revision: 5,
                entries: vec![change(A, 2, Some("a2")), change(B, 1, Some("b1"))],
            },
        )
        .change(2, 0, log[3].clone())
        .change(2, 0, log[4].clone())
        .change(2, 0, log[5].clone());
}

/// Reloader 1 follows `t/e/a`; reloader 2 the whole of `t/e/` (it keeps
/// its value while a namespace it holds is deleted, as the client does).
pub(crate) fn valid_reloads(h: &mut History) {
    h.reload(1, A, 3, "a1")
        .reload(1, A, 4, "a2")
        .reload(1, A, 8, "a4");
    h.reload_set(2, 3, &[("a", "a1")])
        .reload_set(2, 4, &[("a", "a2")])
        .reload_set(2, 5, &[("a", "a2"), ("b", "b1")])
        .reload_set(2, 8, &[("a", "a4"), ("b", "b2")]);
}

pub(crate) fn valid_finals(h: &mut History) {
    for node in 1..=3 {
        h.final_node(node, 8, "d8", valid_log());
    }
}

/// A history every checker passes.
pub(crate) fn valid_history() -> History {
    let mut h = History::default();
    valid_ops(&mut h);
    valid_watches(&mut h);
    valid_reloads(&mut h);
    valid_finals(&mut h);
    h
}

/// [`valid_log`] and then two transactions: revision 9 writes all three
/// namespaces, revision 10 deletes b and writes c.
pub(crate) fn valid_tx_log() -> Vec<LogEntry> {
    let mut log = valid_log();
    log.push(entry(
        9,
        vec![
            change(A, 5, Some("a5")),
            change(B, 3, Some("b3")),
            change(C, 1, Some("c1")),
        ],
    ));
    log.push(entry(
        10,
        vec![change(B, 4, None), change(C, 2, Some("c2"))],
    ));
    log
}

/// The transactions after [`valid_ops`]: one acknowledged with two CASes
/// (revision 9), one refused by a CAS miss, an indeterminate one that landed
/// (revision 10, with a delete), an indeterminate one that did not, one
/// refused because a delete found nothing, and gets of what they left.
pub(crate) fn valid_tx_ops(h: &mut History) {
    h.invoke(
        1,
        15,
        tx(&[
            (A, Some("a5"), Some(4)),
            (B, Some("b3"), None),
            (C, Some("c1"), Some(0)),
        ]),
    )
    .ok_write(1, 15, 9, 0);
    h.invoke(
        2,
        16,
        tx(&[(A, Some("a-late"), Some(4)), (B, Some("b-late"), None)]),
    )
    .fail(
        2,
        16,
        FailReason::VersionMismatch { current: None },
        Some(9),
    );
    h.invoke(6, 17, tx(&[(B, None, None), (C, Some("c2"), None)]))
        .info(6, 17);
    h.invoke(
        7,
        18,
        tx(&[(A, Some("a-never"), None), (C, Some("c-never"), Some(1))]),
    )
    .info(7, 18);
    h.invoke(2, 19, get(B)).ok_get(2, 19, 0, None, 0, 0);
    h.invoke(2, 20, get(C)).ok_get(2, 20, 10, Some("c2"), 2, 10);
    h.invoke(1, 21, tx(&[(A, None, None), (B, None, None)]))
        .fail(1, 21, FailReason::NotFound, Some(10));
}

/// [`valid_history`] going on with [`valid_tx_ops`]: watcher 1 resumes from
/// revision 9, watcher 2 goes on, the reloader sees a5, and the nodes end at
/// revision 10.
pub(crate) fn valid_tx_history() -> History {
    let mut h = History::default();
    valid_ops(&mut h);
    valid_tx_ops(&mut h);
    valid_watches(&mut h);
    let log = valid_tx_log();
    h.start(1, 2, 9)
        .change(1, 2, log[6].clone())
        .change(1, 2, log[7].clone())
        .progress(1, 2, 10);
    h.change(2, 0, log[6].clone()).change(2, 0, log[7].clone());
    valid_reloads(&mut h);
    h.reload(1, A, 9, "a5");
    h.reload_set(2, 9, &[("a", "a5"), ("b", "b3"), ("c", "c1")]);
    for node in 1..=3 {
        h.final_node(node, 10, "d10", valid_tx_log());
    }
    h
}

/// Asserts the verdict failed with an anomaly containing `needle`.
pub(crate) fn assert_flags(verdict: &Verdict, needle: &str) {
    assert!(!verdict.ok, "expected {} to fail:\n{verdict}", verdict.name);
    assert!(
        verdict.anomalies.iter().any(|a| a.contains(needle)),
        "expected an anomaly containing {needle:?}:\n{verdict}"
    );
}

/// Asserts the verdict passed.
pub(crate) fn assert_passes(verdict: &Verdict) {
    assert!(verdict.ok, "expected {} to pass:\n{verdict}", verdict.name);
}
