//! `verdict`: every write got the verdict its schema gives it, and every
//! node gives the same. Against the schema history the nodes serve after the
//! run ([`Event::Schemas`]), validated with the server's own code:
//!
//! - **Same history everywhere.** Every node reports the same versions of
//!   every schema (version, revision, schema, forced), from version 1 on.
//!   The state digest `convergence` compares covers only the schema in force
//!   now, not the history; together with the identical logs it means every
//!   node applied the same writes under the same schemas.
//! - **Delivered.** Each schema version is in the committed log at its
//!   revision, as a schema change under `tenant/env/namespace` for every
//!   environment the log shows by then (so watchers, checked against the log
//!   by `watch`, must deliver it), and the log has no other schema change.
//! - **Accepted writes are valid.** A document committed at revision `R`
//!   (acknowledged, or anything else the log holds) is valid under the schema
//!   in effect at `R − 1`, the state apply checked it on.
//! - **Refused writes are invalid.** A put, CAS or transaction refused with a
//!   schema violation has, in each namespace the refusal named, a value that
//!   breaks some schema version in effect during its *lifetime window*
//!   (`window.rs`: the revisions between what completed before it began and
//!   what began after it completed). The window is exact rather than "any
//!   version ever": a server that refused a write under a stale schema, one
//!   no longer (or not yet) in effect while the write was in flight, is
//!   caught, and the window needs nothing but the clients' own revisions.
//!   It is empty only when real time and revisions disagree, which
//!   `linearizable` reports; such a refusal is counted, not judged.
//! - **Schema changes.** An acknowledged set is in the history at its
//!   revision with its schema (every schema is unique), a removal as a
//!   removal; a failed one nowhere; none appears twice or without a writer.
//!   A set over live documents it breaks is recorded forced, and only a set
//!   with force may be (the log holds every environment of the run's
//!   tenant); a set refused as incompatible broke a live document at some
//!   revision of its window; a removal refused as not found found no schema
//!   at some revision of its window.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::schema_history::{compile, SchemaHistory, Version};
use super::window::{Window, Windows};
use super::{value_key, Anomalies, ClientOp, CommittedLog, Context, Outcome, Verdict};
use crate::history::{schema_path, Event, FailReason, Op, SchemaVersion};

const NAME: &str = "verdict";

/// Runs the check.
pub(crate) fn check(ctx: &Context<'_>) -> Verdict {
    let mut anomalies = Anomalies::new(ctx.options.max_anomalies);
    let nodes: Vec<(u64, &BTreeMap<String, Vec<SchemaVersion>>)> = ctx
        .history
        .iter()
        .filter_map(|e| match e {
            Event::Schemas { node, schemas, .. } => Some((*node, schemas)),
            _ => None,
        })
        .collect();
    let Some(&(node, reference)) = nodes.first() else {
        let concerned = ctx.ops.ops.iter().any(|op| {
            op.op.is_schema()
                || matches!(
                    op.outcome,
                    Outcome::Fail {
                        reason: FailReason::SchemaViolation { .. }
                            | FailReason::SchemaIncompatible { .. },
                        ..
                    }
                )
        }) || ctx
            .log
            .as_ref()
            .is_some_and(|l| !l.schema_changes().is_empty());
        if concerned {
            anomalies.push(
                "no Schemas event: the history has schema changes or refusals but no node's schema history"
                    .to_string(),
            );
        }
        return anomalies.verdict(NAME, "no schema history recorded".to_string());
    };
    compare_nodes(&nodes, &mut anomalies);
    let (history, problems) = SchemaHistory::new(node, reference);
    for problem in problems {
        anomalies.push(problem);
    }
    let Some(log) = &ctx.log else {
        anomalies.push("no Final event: no committed log to check the verdicts against".into());
        return anomalies.verdict(NAME, format!("{} nodes' schema histories", nodes.len()));
    };
    check_delivered(log, &history, &mut anomalies);

    let windows = Windows::new(&ctx.ops.ops, log.max_revision);
    let mut checker = Checker {
        log,
        history: &history,
        anomalies,
        counts: Counts::default(),
    };
    // value key of each schema → the ops that set it.
    let mut setters: HashMap<String, Vec<&ClientOp<'_>>> = HashMap::new();
    let mut acknowledged_at: HashMap<u64, &ClientOp<'_>> = HashMap::new();
    for op in &ctx.ops.ops {
        if let Op::SetSchema { schema, .. } = op.op {
            setters.entry(value_key(schema)).or_default().push(op);
        }
        match (op.op, op.outcome) {
            (Op::SetSchema { .. } | Op::DeleteSchema { .. }, _) => {
                checker.schema_op(op, windows.of(op));
            }
            (_, Outcome::Ok { result, .. }) if op.op.is_write() => {
                acknowledged_at.insert(result.revision, op);
                checker.accepted(op, result.revision);
            }
            (
                _,
                Outcome::Fail {
                    reason: FailReason::SchemaViolation { namespaces, .. },
                    ..
                },
            ) => checker.refused(op, namespaces, windows.of(op)),
            _ => {}
        }
    }
    checker.committed(&acknowledged_at);
    checker.schema_writers(&setters);

    let versions: usize = history
        .paths()
        .iter()
        .map(|p| history.versions(p).len())
        .sum();
    let c = &checker.counts;
    let summary = format!(
        "{} nodes agree on {versions} schema versions of {} namespaces; {} accepted writes valid under the schema in effect ({} more from the log), {} schema refusals invalid within their windows{}, {} schema changes matched",
        nodes.len(),
        history.paths().len(),
        c.accepted,
        c.committed,
        c.refused,
        match c.unjudged {
            0 => String::new(),
            n => format!(" ({n} without a window: real time and revisions disagree, see linearizable)"),
        },
        c.schema_ops,
    );
    checker.anomalies.verdict(NAME, summary)
}

#[derive(Default)]
struct Counts {
    accepted: usize,
    committed: usize,
    refused: usize,
    /// Refusals whose window is empty (see `linearizable`).
    unjudged: usize,
    schema_ops: usize,
}

/// Every node's schema history must equal the first node's.
fn compare_nodes(
    nodes: &[(u64, &BTreeMap<String, Vec<SchemaVersion>>)],
    anomalies: &mut Anomalies,
) {
    let Some(&(first, reference)) = nodes.first() else {
        return;
    };
    let describe = |v: Option<&SchemaVersion>| {
        v.map_or("nothing".to_string(), |v| {
            serde_json::to_string(v).unwrap_or_else(|e| format!("<{e}>"))
        })
    };
    for &(node, schemas) in &nodes[1..] {
        let mut paths: Vec<&String> = reference.keys().chain(schemas.keys()).collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths {
            let (a, b) = (reference.get(path), schemas.get(path));
            let (a, b) = (
                a.map_or(&[][..], Vec::as_slice),
                b.map_or(&[][..], Vec::as_slice),
            );
            let differs = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i));
            if let Some(i) = differs {
                anomalies.push(format!(
                    "nodes disagree: node {node}'s schema history of {path} differs from node {first}'s at its version {}: node {first} has {}, node {node} has {}",
                    i + 1,
                    describe(a.get(i)),
                    describe(b.get(i))
                ));
            }
        }
    }
}

/// Each schema version is a schema change in the log at its revision, for
/// every environment of its tenant the log shows by then; the log has no
/// other schema change.
fn check_delivered(log: &CommittedLog<'_>, history: &SchemaHistory<'_>, anomalies: &mut Anomalies) {
    for &(revision, change) in log.schema_changes() {
        let Some(path) = schema_path(&change.ns) else {
            anomalies.push(format!(
                "not delivered right: the log has a schema change of {} at revision {revision}, which is no namespace",
                change.ns
            ));
            continue;
        };
        let matches = history.at(&path, revision).is_some_and(|v| {
            v.record.version == change.version && v.record.schema.as_ref() == change.value.as_ref()
        });
        if !matches {
            let known = history
                .at(&path, revision)
                .map_or("no version of it".to_string(), |v| v.to_string());
            anomalies.push(format!(
                "not delivered right: the log has schema v{} of {path} under {} at revision {revision}, but the schema history has {known} there",
                change.version, change.ns
            ));
        }
    }
    // tenant → (environment prefix, first revision the log shows it).
    let mut envs: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for entry in log.entries {
        for change in &entry.changes {
            let Some((env_prefix, _)) = change.ns.rsplit_once('/') else {
                continue;
            };
            let tenant = env_prefix.split('/').next().unwrap_or(env_prefix);
            let first = envs
                .entry(tenant)
                .or_default()
                .entry(env_prefix)
                .or_insert(entry.revision);
            *first = (*first).min(entry.revision);
        }
    }
    for path in history.paths() {
        let Some((tenant, name)) = path.split_once('/') else {
            continue;
        };
        for version in history.versions(path) {
            let revision = version.record.revision;
            for (&env, &since) in envs.get(tenant).into_iter().flatten() {
                let ns = format!("{env}/{name}");
                let delivered = log
                    .entry_at(revision)
                    .is_some_and(|e| e.changes.iter().any(|c| c.ns == ns && !c.is_document()));
                if since <= revision && !delivered {
                    anomalies.push(format!(
                        "not delivered: {version} is not in the log under {ns} at revision {revision}"
                    ));
                }
            }
        }
    }
}

struct Checker<'l, 'h> {
    log: &'l CommittedLog<'h>,
    history: &'l SchemaHistory<'h>,
    anomalies: Anomalies,
    counts: Counts,
}

impl<'h> Checker<'_, 'h> {
    /// The schema path of `ns`, or an anomaly.
    fn path_of(&mut self, ns: &str, op: &ClientOp<'_>) -> Option<String> {
        let path = schema_path(ns);
        if path.is_none() {
            self.anomalies.push(format!(
                "malformed history: {op} writes {ns}, which is no namespace path"
            ));
        }
        path
    }

    /// An acknowledged write at `revision`: each value it wrote is valid
    /// under the schema in effect just before.
    fn accepted(&mut self, op: &ClientOp<'_>, revision: u64) {
        self.counts.accepted += 1;
        for w in op.op.writes() {
            let Some(value) = w.value else { continue };
            let Some(path) = self.path_of(w.ns, op) else {
                continue;
            };
            let before = revision.saturating_sub(1);
            if let Some(v) = self
                .history
                .in_effect(&path, before)
                .filter(|v| !v.accepts(value))
            {
                self.anomalies.push(format!(
                    "accepted an invalid write: {op}: {}'s value breaks {v}, in effect at revision {before}",
                    w.ns
                ));
            }
        }
    }

    /// Every document in the log at a revision no acknowledged write
    /// accounts for (indeterminate writes that landed) is valid under the
    /// schema in effect just before.
    fn committed(&mut self, acknowledged_at: &HashMap<u64, &ClientOp<'_>>) {
        for entry in self.log.entries {
            if acknowledged_at.contains_key(&entry.revision) {
                continue;
            }
            for change in entry.changes.iter().filter(|c| c.is_document()) {
                let (Some(value), Some(path)) = (&change.value, schema_path(&change.ns)) else {
                    continue;
                };
                self.counts.committed += 1;
                let before = entry.revision.saturating_sub(1);
                if let Some(v) = self
                    .history
                    .in_effect(&path, before)
                    .filter(|v| !v.accepts(value))
                {
                    self.anomalies.push(format!(
                        "committed an invalid write: {} {value} at revision {}, which breaks {v}, in effect at revision {before}",
                        change.ns, entry.revision
                    ));
                }
            }
        }
    }

    /// A write refused with a schema violation naming `namespaces`: each
    /// named value breaks some version in effect during `window`.
    fn refused(&mut self, op: &ClientOp<'_>, namespaces: &[String], window: Window) {
        if window.lo > window.hi {
            // Real time and revisions disagree around it: exactly what
            // `linearizable` checks (and reports); nothing to judge here.
            self.counts.unjudged += 1;
            return;
        }
        self.counts.refused += 1;
        let writes = op.op.writes();
        if namespaces.is_empty() {
            self.anomalies
                .push(format!("refusal names no namespace: {op}"));
        }
        for ns in namespaces {
            let Some(value) = writes.iter().find(|w| w.ns == ns).and_then(|w| w.value) else {
                self.anomalies.push(format!(
                    "refusal names a namespace it did not write: {op}: {ns}"
                ));
                continue;
            };
            let Some(path) = self.path_of(ns, op) else {
                continue;
            };
            let (start, within) = self.history.during(&path, window);
            let refuses = start.into_iter().chain(within).any(|v| !v.accepts(value));
            if !refuses {
                let mut seen: Vec<String> = start
                    .into_iter()
                    .chain(within)
                    .map(Version::to_string)
                    .collect();
                if start.is_none() {
                    seen.insert(0, "no schema".to_string());
                }
                self.anomalies.push(format!(
                    "refused a valid write: {op}: {ns}'s value is valid under everything in effect between revisions {} and {}: {}",
                    window.lo,
                    window.hi,
                    seen.join(", ")
                ));
            }
        }
    }

    /// A schema set or removal, by its outcome.
    fn schema_op(&mut self, op: &ClientOp<'_>, window: Window) {
        self.counts.schema_ops += 1;
        let history = self.history;
        let (path, schema, force) = match op.op {
            Op::SetSchema {
                path,
                schema,
                force,
            } => (path, Some(schema), *force),
            Op::DeleteSchema { path } => (path, None, false),
            _ => return,
        };
        match op.outcome {
            Outcome::Ok { result, .. } => {
                let revision = result.revision;
                let Some(v) = history.at(path, revision) else {
                    self.anomalies.push(format!("lost schema change: {op}: the schema history of {path} has no version at revision {revision}"));
                    return;
                };
                if v.record.version != result.version || v.record.schema.as_ref() != schema {
                    self.anomalies.push(format!("schema change differs from the history: {op}, but revision {revision} made {v}"));
                    return;
                }
                if let Some(schema) = schema {
                    self.forced(op, v, schema, force);
                }
            }
            Outcome::Info { .. } => {
                // A set that landed is judged like an acknowledged one.
                let landed = schema.and_then(|s| {
                    history
                        .versions(path)
                        .iter()
                        .find(|v| v.record.schema.as_ref() == Some(s))
                        .map(|v| (v, s))
                });
                if let Some((v, s)) = landed {
                    self.forced(op, v, s, force);
                }
            }
            Outcome::Fail {
                reason: FailReason::SchemaIncompatible { .. },
                ..
            } => match schema {
                Some(schema) if !force => self.incompatible(op, path, schema, window),
                _ => self.anomalies.push(format!(
                    "refused as incompatible although forced or a removal: {op}"
                )),
            },
            Outcome::Fail {
                reason: FailReason::NotFound,
                ..
            } if schema.is_none() => {
                let (start, within) = history.during(path, window);
                let none =
                    start.is_none_or(Version::is_removal) || within.iter().any(Version::is_removal);
                if window.lo <= window.hi && !none {
                    self.anomalies.push(format!(
                        "refused a removal of a schema that was there: {op}: {path} had a schema throughout revisions {}..={}",
                        window.lo, window.hi
                    ));
                }
            }
            Outcome::Fail { .. } => {}
        }
    }

    /// The live documents of `path` (every environment in the log) at `revision`.
    fn documents(&self, path: &str, revision: u64) -> Vec<(&'h str, &'h Value)> {
        let mut docs: Vec<(&'h str, &'h Value)> = self
            .log
            .namespaces()
            .filter(|ns| schema_path(ns).as_deref() == Some(path))
            .filter_map(|ns| Some((ns, self.log.state_at(ns, revision).value?)))
            .collect();
        docs.sort_unstable_by_key(|(ns, _)| *ns);
        docs
    }

    /// A set that took effect as version `v`: forced exactly when a live
    /// document broke it just before, and then only if set with force.
    fn forced(&mut self, op: &ClientOp<'_>, v: &Version<'_>, schema: &Value, force: bool) {
        let compiled = match compile(schema) {
            Ok(c) => c,
            Err(e) => {
                self.anomalies.push(format!(
                    "accepted a schema that does not compile: {op}: {e}"
                ));
                return;
            }
        };
        let before = v.record.revision.saturating_sub(1);
        let broken: Vec<&str> = self
            .documents(v.path, before)
            .into_iter()
            .filter(|(_, value)| !compiled.validate(value).is_empty())
            .map(|(ns, _)| ns)
            .collect();
        if !broken.is_empty() && !force {
            self.anomalies.push(format!(
                "accepted an incompatible schema without force: {op}: at revision {before} {} broke it",
                broken.join(", ")
            ));
        } else if v.record.forced == broken.is_empty() {
            // Recorded forced with nothing broken, or not forced over broken documents.
            let why = match broken.is_empty() {
                true => "no live document broke it".to_string(),
                false => format!("{} broke it", broken.join(", ")),
            };
            self.anomalies.push(format!(
                "wrong forced flag: {v} is recorded forced={}, but at revision {before} {why}: {op}",
                v.record.forced
            ));
        }
    }

    /// A set refused as incompatible: some live document broke it at some
    /// revision of its window.
    fn incompatible(&mut self, op: &ClientOp<'_>, path: &str, schema: &Value, window: Window) {
        let Ok(compiled) = compile(schema) else {
            return;
        };
        if window.lo > window.hi {
            return;
        }
        let mut revisions = vec![window.lo];
        for ns in self
            .log
            .namespaces()
            .filter(|ns| schema_path(ns).as_deref() == Some(path))
        {
            let changes = self.log.changes_of(ns);
            let from = changes.partition_point(|(r, _)| *r <= window.lo);
            let to = changes.partition_point(|(r, _)| *r <= window.hi);
            revisions.extend(changes.get(from..to).unwrap_or(&[]).iter().map(|(r, _)| *r));
        }
        let breaks = revisions.iter().any(|&r| {
            self.documents(path, r)
                .iter()
                .any(|(_, value)| !compiled.validate(value).is_empty())
        });
        if !breaks {
            self.anomalies.push(format!(
                "refused a compatible schema: {op}: no live document of {path} breaks it at any revision in {}..={}",
                window.lo, window.hi
            ));
        }
    }

    /// Every schema in the history was set by one op, once, and no failed
    /// set's schema is there.
    fn schema_writers(&mut self, setters: &HashMap<String, Vec<&ClientOp<'_>>>) {
        let history = self.history;
        let mut seen: HashMap<String, &Version<'_>> = HashMap::new();
        for path in history.paths() {
            for v in history.versions(path) {
                let Some(schema) = &v.record.schema else {
                    continue;
                };
                let key = value_key(schema);
                if let Some(first) = seen.insert(key.clone(), v) {
                    self.anomalies
                        .push(format!("schema set twice: {first} and {v}"));
                }
                match setters.get(&key) {
                    None => self
                        .anomalies
                        .push(format!("phantom schema: {v}: no op set it")),
                    Some(ops) => {
                        for op in ops
                            .iter()
                            .filter(|op| matches!(op.outcome, Outcome::Fail { .. }))
                        {
                            self.anomalies
                                .push(format!("failed schema change took effect: {op}: it is {v}"));
                        }
                        let wrong_path = ops
                            .iter()
                            .all(|op| !matches!(op.op, Op::SetSchema { path: p, .. } if p == path));
                        if wrong_path {
                            self.anomalies.push(format!(
                                "schema in the wrong namespace: {v} was set on another by {}",
                                ops[0]
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::super::testkit::*;
    use super::check;
    use crate::history::{LogEntry, SchemaVersion};

    /// Schema path `t/a` with `versions` (version, revision, schema, forced).
    fn schemas_of(
        versions: &[(u64, u64, Option<Value>, bool)],
    ) -> BTreeMap<String, Vec<SchemaVersion>> {
        let versions = versions
            .iter()
            .map(|(version, revision, schema, forced)| SchemaVersion {
                version: *version,
                revision: *revision,
                schema: schema.clone(),
                forced: *forced,
            })
            .collect();
        BTreeMap::from([(SCHEMA_A.to_string(), versions)])
    }

    /// Three nodes ending at the log's last revision with `log` and `schemas`.
    fn finals(h: &mut History, log: Vec<LogEntry>, schemas: BTreeMap<String, Vec<SchemaVersion>>) {
        let last = log.last().map_or(2, |e| e.revision);
        for node in 1..=3 {
            h.final_node(node, last, "d", log.clone());
            h.schemas(node, schemas.clone());
        }
    }

    #[test]
    fn clean_history_with_schema_changes_passes() {
        let verdict = valid_schema_history().check(check);
        assert_passes(&verdict);
        assert!(
            verdict.summary.starts_with(
                "3 nodes agree on 2 schema versions of 2 namespaces; 8 accepted writes valid under the schema in effect (2 more from the log), 2 schema refusals invalid within their windows, 4 schema changes matched"
            ),
            "{verdict}"
        );
    }

    #[test]
    fn history_without_schemas_passes_and_says_so() {
        let verdict = valid_tx_history().check(check);
        assert_passes(&verdict);
        assert!(
            verdict.summary.starts_with("no schema history recorded"),
            "{verdict}"
        );
    }

    #[test]
    fn accepted_invalid_write_is_flagged() {
        // Under the even-digit schema set at 3, a1 was acknowledged at 4.
        let mut h = History::default();
        h.invoke(1, 1, set_schema(SCHEMA_A, even_schema(), true))
            .ok_write(1, 1, 3, 1);
        h.invoke(1, 2, put(A, "a1")).ok_write(1, 2, 4, 1);
        finals(
            &mut h,
            vec![
                entry(3, vec![schema_change(A, 1, Some(even_schema()))]),
                entry(4, vec![change(A, 1, Some("a1"))]),
            ],
            schemas_of(&[(1, 3, Some(even_schema()), false)]),
        );
        assert_flags(
            &h.check(check),
            r#"accepted an invalid write: op 2 (p1 put t/e/a {"w":"a1"}, t=30..40 ok rev 4 v1): t/e/a's value breaks schema v1 of t/a (revision 3, p1-22), in effect at revision 3"#,
        );
    }

    #[test]
    fn refused_valid_write_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, set_schema(SCHEMA_A, even_schema(), true))
            .ok_write(1, 1, 3, 1);
        h.invoke(1, 2, put(A, "a2"))
            .fail(1, 2, schema_violation(&[A]), None);
        finals(
            &mut h,
            vec![entry(3, vec![schema_change(A, 1, Some(even_schema()))])],
            schemas_of(&[(1, 3, Some(even_schema()), false)]),
        );
        assert_flags(
            &h.check(check),
            "refused a valid write: op 2 (p1 put t/e/a {\"w\":\"a2\"}, t=30..40 fail schema violation by t/e/a): t/e/a's value is valid under everything in effect between revisions 3 and 3: schema v1 of t/a (revision 3, p1-22)",
        );
    }

    #[test]
    fn write_refused_under_a_schema_no_longer_in_effect_is_flagged() {
        // a1 breaks the even schema (revision 3) but not the odd one that
        // replaced it (4) before the put began: the refusal used a stale
        // schema. "Invalid under some version ever set" would let it pass.
        let mut h = History::default();
        h.invoke(1, 1, set_schema(SCHEMA_A, even_schema(), true))
            .ok_write(1, 1, 3, 1);
        h.invoke(1, 2, set_schema(SCHEMA_A, odd_schema(), true))
            .ok_write(1, 2, 4, 2);
        h.invoke(1, 3, put(A, "a1"))
            .fail(1, 3, schema_violation(&[A]), None);
        finals(
            &mut h,
            vec![
                entry(3, vec![schema_change(A, 1, Some(even_schema()))]),
                entry(4, vec![schema_change(A, 2, Some(odd_schema()))]),
            ],
            schemas_of(&[
                (1, 3, Some(even_schema()), false),
                (2, 4, Some(odd_schema()), false),
            ]),
        );
        let verdict = h.check(check);
        assert_flags(&verdict, "refused a valid write: op 3");
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn refused_transaction_is_judged_by_the_namespaces_it_names() {
        // The refusal names t/e/b, whose value no schema refuses.
        let mut h = History::default();
        valid_ops(&mut h);
        valid_tx_ops(&mut h);
        valid_schema_ops(&mut h);
        h.invoke(1, 30, tx(&[(A, Some("a20"), None), (B, Some("b7"), None)]))
            .fail(1, 30, schema_violation(&[B]), None);
        valid_schema_finals(&mut h);
        assert_flags(&h.check(check), "refused a valid write: op 30");
    }

    #[test]
    fn node_with_a_different_schema_history_is_flagged() {
        let mut h = History::default();
        valid_ops(&mut h);
        valid_tx_ops(&mut h);
        valid_schema_ops(&mut h);
        for node in 1..=3 {
            let mut schemas = valid_schemas();
            if node == 2 {
                if let Some(v) = schemas.get_mut(SCHEMA_A).and_then(|v| v.first_mut()) {
                    v.forced = false;
                }
            }
            h.final_node(node, 14, "d14", valid_schema_log());
            h.schemas(node, schemas);
        }
        let verdict = h.check(check);
        assert_flags(
            &verdict,
            "nodes disagree: node 2's schema history of t/a differs from node 1's at its version 1",
        );
        assert_eq!(verdict.anomalies.len(), 1, "{verdict}");
    }

    #[test]
    fn schema_version_missing_from_the_log_is_flagged_undelivered() {
        let mut h = History::default();
        valid_ops(&mut h);
        valid_tx_ops(&mut h);
        valid_schema_ops(&mut h);
        let mut log = valid_schema_log();
        log.retain(|e| e.revision != 13);
        for node in 1..=3 {
            h.final_node(node, 14, "d14", log.clone());
            h.schemas(node, valid_schemas());
        }
        assert_flags(
            &h.check(check),
            "not delivered: schema v2 of t/a (revision 13, removed) is not in the log under t/e/a at revision 13",
        );
    }

    #[test]
    fn incompatible_schema_accepted_without_force_is_flagged() {
        // a1 is live and breaks the even schema, set without force.
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, set_schema(SCHEMA_A, even_schema(), false))
            .ok_write(1, 2, 4, 1);
        finals(
            &mut h,
            vec![
                entry(3, vec![change(A, 1, Some("a1"))]),
                entry(4, vec![schema_change(A, 1, Some(even_schema()))]),
            ],
            schemas_of(&[(1, 4, Some(even_schema()), true)]),
        );
        assert_flags(
            &h.check(check),
            "accepted an incompatible schema without force: op 2 (p1 set schema t/a p1-22, t=30..40 ok rev 4 v1): at revision 3 t/e/a broke it",
        );
    }

    #[test]
    fn compatible_schema_refused_is_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a2")).ok_write(1, 1, 3, 1);
        h.invoke(1, 2, set_schema(SCHEMA_A, even_schema(), false))
            .fail(
                1,
                2,
                crate::history::FailReason::SchemaIncompatible {
                    broken: vec!["e:/w".into()],
                    message: "breaks".into(),
                },
                None,
            );
        finals(
            &mut h,
            vec![entry(3, vec![change(A, 1, Some("a2"))])],
            schemas_of(&[]),
        );
        assert_flags(&h.check(check), "refused a compatible schema: op 2");
    }

    #[test]
    fn schema_nobody_set_and_a_failed_set_that_took_effect_are_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, set_schema(SCHEMA_A, even_schema(), true))
            .fail(
                1,
                1,
                crate::history::FailReason::Other {
                    message: "unavailable".into(),
                },
                None,
            );
        let phantom = pattern_schema("nobody", ".");
        finals(
            &mut h,
            vec![
                entry(3, vec![schema_change(A, 1, Some(even_schema()))]),
                entry(4, vec![schema_change(A, 2, Some(phantom.clone()))]),
            ],
            schemas_of(&[
                (1, 3, Some(even_schema()), false),
                (2, 4, Some(phantom), false),
            ]),
        );
        let verdict = h.check(check);
        assert_flags(&verdict, "failed schema change took effect: op 1");
        assert_flags(
            &verdict,
            "phantom schema: schema v2 of t/a (revision 4, nobody): no op set it",
        );
    }

    #[test]
    fn schema_changes_without_any_schema_history_are_flagged() {
        let mut h = History::default();
        h.invoke(1, 1, set_schema(SCHEMA_A, even_schema(), true))
            .ok_write(1, 1, 3, 1);
        h.final_node(
            1,
            3,
            "d",
            vec![entry(3, vec![schema_change(A, 1, Some(even_schema()))])],
        );
        assert_flags(&h.check(check), "no Schemas event");
    }
}
