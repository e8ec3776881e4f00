//! The schema part of the hand-made histories: schema operations, the
//! schema history the nodes serve, and a valid history with schema changes
//! (after [`super::valid_tx_history`]) every checker passes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    change, entry, put, schema_change, tx, valid_ops, valid_reloads, valid_tx_log, valid_tx_ops,
    valid_watches, History, A, B,
};
use crate::history::{FailReason, LogEntry, Op, SchemaVersion};

/// The schema path of [`A`] (and of [`B`]).
pub(crate) const SCHEMA_A: &str = "t/a";
pub(crate) const SCHEMA_B: &str = "t/b";

/// A schema named `name` whose values of `w` must match `pattern`.
pub(crate) fn pattern_schema(name: &str, pattern: &str) -> Value {
    json!({
        "description": name,
        "type": "object",
        "properties": {"w": {"type": "string", "pattern": pattern}},
    })
}

/// The schema op 22 sets on `t/a`: values ending in an even digit.
pub(crate) fn even_schema() -> Value {
    pattern_schema("p1-22", "[02468]$")
}

/// The schema op 26 fails to set on `t/a` (without force): odd digits.
pub(crate) fn odd_schema() -> Value {
    pattern_schema("p3-26", "[13579]$")
}

pub(crate) fn set_schema(path: &str, schema: Value, force: bool) -> Op {
    Op::SetSchema {
        path: path.to_string(),
        schema,
        force,
    }
}

pub(crate) fn delete_schema(path: &str) -> Op {
    Op::DeleteSchema {
        path: path.to_string(),
    }
}

/// A refusal of the values written to `namespaces` by their schemas.
pub(crate) fn schema_violation(namespaces: &[&str]) -> FailReason {
    FailReason::SchemaViolation {
        namespaces: namespaces.iter().map(|ns| ns.to_string()).collect(),
        message: "violates its schema".to_string(),
    }
}

/// [`valid_tx_log`] and then: revision 11 sets [`even_schema`] on `t/a`
/// (forced over a5), 12 writes a6, 13 removes the schema, 14 writes a13.
pub(crate) fn valid_schema_log() -> Vec<LogEntry> {
    let mut log = valid_tx_log();
    log.push(entry(11, vec![schema_change(A, 1, Some(even_schema()))]));
    log.push(entry(12, vec![change(A, 6, Some("a6"))]));
    log.push(entry(13, vec![schema_change(A, 2, None)]));
    log.push(entry(14, vec![change(A, 7, Some("a13"))]));
    log
}

/// The schema history every node serves after [`valid_schema_log`].
pub(crate) fn valid_schemas() -> BTreeMap<String, Vec<SchemaVersion>> {
    BTreeMap::from([
        (
            SCHEMA_A.to_string(),
            vec![
                SchemaVersion {
                    version: 1,
                    revision: 11,
                    schema: Some(even_schema()),
                    forced: true,
                },
                SchemaVersion {
                    version: 2,
                    revision: 13,
                    schema: None,
                    forced: false,
                },
            ],
        ),
        (SCHEMA_B.to_string(), Vec::new()),
    ])
}

/// The schema ops after [`valid_tx_ops`]: a forced set of [`even_schema`]
/// over a5 (revision 11); a put of a6 it accepts (12) and one of a7 it
/// refuses; a transaction refused for t/e/a's value; a set of
/// [`odd_schema`] without force refused over a6; the schema's removal (13);
/// a put of a13 accepted without a schema (14); a removal of `t/b`'s
/// schema, which it never had.
pub(crate) fn valid_schema_ops(h: &mut History) {
    h.invoke(1, 22, set_schema(SCHEMA_A, even_schema(), true))
        .ok_write(1, 22, 11, 1);
    h.invoke(2, 23, put(A, "a6")).ok_write(2, 23, 12, 6);
    h.invoke(2, 24, put(A, "a7"))
        .fail(2, 24, schema_violation(&[A]), None);
    h.invoke(1, 25, tx(&[(A, Some("a9"), None), (B, Some("b5"), None)]))
        .fail(1, 25, schema_violation(&[A]), None);
    h.invoke(3, 26, set_schema(SCHEMA_A, odd_schema(), false))
        .fail(
            3,
            26,
            FailReason::SchemaIncompatible {
                broken: vec!["e:/w".to_string()],
                message: "breaks t/e/a".to_string(),
            },
            None,
        );
    h.invoke(3, 27, delete_schema(SCHEMA_A))
        .ok_write(3, 27, 13, 2);
    h.invoke(2, 28, put(A, "a13")).ok_write(2, 28, 14, 7);
    h.invoke(1, 29, delete_schema(SCHEMA_B))
        .fail(1, 29, FailReason::NotFound, None);
}

/// Every node's schema history after [`valid_schema_log`].
pub(crate) fn valid_schema_finals(h: &mut History) {
    for node in 1..=3 {
        h.final_node(node, 14, "d14", valid_schema_log());
        h.schemas(node, valid_schemas());
    }
}

/// [`valid_tx_history`] going on with [`valid_schema_ops`]: both watchers
/// get the schema changes as revisions of their own, reloader 1 takes a6 and
/// a13 and nothing of the schemas (reloader 2 holds b, deleted at 10, so it
/// takes nothing more).
pub(crate) fn valid_schema_history() -> History {
    let mut h = History::default();
    valid_ops(&mut h);
    valid_tx_ops(&mut h);
    valid_schema_ops(&mut h);
    valid_watches(&mut h);
    let log = valid_schema_log();
    h.start(1, 2, 9);
    for e in &log[6..] {
        h.change(1, 2, e.clone());
    }
    h.progress(1, 2, 14);
    for e in &log[6..] {
        h.change(2, 0, e.clone());
    }
    valid_reloads(&mut h);
    h.reload(1, A, 9, "a5")
        .reload(1, A, 12, "a6")
        .reload(1, A, 14, "a13");
    h.reload_set(2, 9, &[("a", "a5"), ("b", "b3"), ("c", "c1")]);
    valid_schema_finals(&mut h);
    h
}
