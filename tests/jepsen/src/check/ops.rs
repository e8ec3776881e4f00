//! Client operations: each invocation paired with its completion, once
//! for every checker.

use std::collections::HashMap;
use std::fmt;

use crate::history::{Event, FailReason, Op, OpOk};

/// How a client operation ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'h> {
    Ok {
        t: u64,
        result: &'h OpOk,
    },
    Fail {
        t: u64,
        reason: &'h FailReason,
        /// The revision the answer was given at; `None` when unknown
        /// (a reported `0` counts as unknown).
        revision: Option<u64>,
    },
    /// Indeterminate; `t` is `None` when the history ended first.
    Info {
        t: Option<u64>,
    },
}

/// One client operation: its invocation and how it ended.
#[derive(Debug, Clone)]
pub(crate) struct ClientOp<'h> {
    pub(crate) op_id: u64,
    pub(crate) process: u64,
    pub(crate) op: &'h Op,
    pub(crate) invoke_t: u64,
    pub(crate) outcome: Outcome<'h>,
}

impl ClientOp<'_> {
    /// When it completed, `None` for an indeterminate operation.
    pub(crate) fn complete_t(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { t, .. } | Outcome::Fail { t, .. } => Some(t),
            Outcome::Info { .. } => None,
        }
    }
}

impl fmt::Display for ClientOp<'_> {
    /// One line: `op 17 (p3 put t/e/a {"w":"p3-17"}, t=100..250 ok rev 12 v3)`,
    /// `op 18 (p3 apply [t/e/a if v3 {"w":"p3-18-0"}, t/e/b delete], t=260..300 ok rev 13)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {} (p{} ", self.op_id, self.process)?;
        match self.op {
            Op::Get { ns } => write!(f, "get {ns}")?,
            Op::Put { ns, value } => write!(f, "put {ns} {value}")?,
            Op::Cas {
                ns,
                expect_version,
                value,
            } => write!(f, "cas {ns} if v{expect_version} {value}")?,
            Op::Delete { ns } => write!(f, "delete {ns}")?,
            Op::Apply { writes } => {
                write!(f, "apply [")?;
                for (i, w) in writes.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", w.ns)?;
                    if let Some(v) = w.expect_version {
                        write!(f, " if v{v}")?;
                    }
                    match &w.value {
                        Some(value) => write!(f, " {value}")?,
                        None => write!(f, " delete")?,
                    }
                }
                write!(f, "]")?;
            }
            Op::SetSchema {
                path,
                schema,
                force,
            } => {
                let name = schema.get("description").and_then(|d| d.as_str());
                write!(f, "set schema {path} {}", name.unwrap_or("(unnamed)"))?;
                if *force {
                    write!(f, " force")?;
                }
            }
            Op::DeleteSchema { path } => write!(f, "delete schema {path}")?,
        }
        match self.outcome {
            Outcome::Ok { t, result } => {
                write!(f, ", t={}..{t} ok rev {}", self.invoke_t, result.revision)?;
                if let Op::Get { .. } = self.op {
                    match &result.value {
                        Some(v) => write!(
                            f,
                            " {v} v{} mod rev {}",
                            result.version, result.mod_revision
                        )?,
                        None => write!(f, " none v{}", result.version)?,
                    }
                } else if !self.op.is_transaction() {
                    write!(f, " v{}", result.version)?;
                }
            }
            Outcome::Fail {
                t,
                reason,
                revision,
            } => {
                write!(f, ", t={}..{t} fail ", self.invoke_t)?;
                match reason {
                    FailReason::NotFound => write!(f, "not found")?,
                    FailReason::VersionMismatch { current: Some(c) } => {
                        write!(f, "version mismatch (current v{c})")?
                    }
                    FailReason::VersionMismatch { current: None } => write!(f, "version mismatch")?,
                    FailReason::SchemaViolation { namespaces, .. } => {
                        write!(f, "schema violation by {}", namespaces.join(", "))?
                    }
                    FailReason::SchemaIncompatible { broken, .. } => write!(
                        f,
                        "incompatible with live documents at {}",
                        broken.join(", ")
                    )?,
                    FailReason::Other { message } => write!(f, "other: {message}")?,
                }
                if let Some(r) = revision {
                    write!(f, " at rev {r}")?;
                }
            }
            Outcome::Info { t: Some(t) } => write!(f, ", t={}..{t} info", self.invoke_t)?,
            Outcome::Info { t: None } => write!(f, ", t={}.. never completed", self.invoke_t)?,
        }
        write!(f, ")")
    }
}

/// Every client operation of the history, invocations paired with their
/// completions, in invocation order; and what did not pair up.
pub(crate) struct ClientOps<'h> {
    pub(crate) ops: Vec<ClientOp<'h>>,
    /// Completions without an invocation, second completions, a process
    /// invoking while its previous operation is open, …
    pub(crate) malformed: Vec<String>,
}

impl<'h> ClientOps<'h> {
    pub(crate) fn from_history(history: &'h [Event]) -> Self {
        let mut ops: Vec<ClientOp<'h>> = Vec::new();
        let mut malformed = Vec::new();
        let mut by_id: HashMap<u64, usize> = HashMap::new();
        let mut completed: Vec<bool> = Vec::new();
        // process → the op it has open.
        let mut open: HashMap<u64, u64> = HashMap::new();
        for event in history {
            let (t, process, op_id, outcome) = match event {
                Event::Invoke {
                    t,
                    process,
                    op_id,
                    op,
                } => {
                    if by_id.contains_key(op_id) {
                        malformed.push(format!(
                            "op {op_id} invoked twice (again by p{process} at t={t})"
                        ));
                        continue;
                    }
                    if let Some(previous) = open.insert(*process, *op_id) {
                        malformed.push(format!(
                            "p{process} invoked op {op_id} at t={t} while its op {previous} was still open"
                        ));
                    }
                    by_id.insert(*op_id, ops.len());
                    completed.push(false);
                    ops.push(ClientOp {
                        op_id: *op_id,
                        process: *process,
                        op,
                        invoke_t: *t,
                        outcome: Outcome::Info { t: None },
                    });
                    continue;
                }
                Event::Ok {
                    t,
                    process,
                    op_id,
                    result,
                } => (*t, *process, *op_id, Outcome::Ok { t: *t, result }),
                Event::Fail {
                    t,
                    process,
                    op_id,
                    reason,
                    revision,
                } => (
                    *t,
                    *process,
                    *op_id,
                    Outcome::Fail {
                        t: *t,
                        reason,
                        revision: revision.filter(|&r| r > 0),
                    },
                ),
                Event::Info {
                    t, process, op_id, ..
                } => (*t, *process, *op_id, Outcome::Info { t: Some(*t) }),
                _ => continue,
            };
            let Some(&i) = by_id.get(&op_id) else {
                malformed.push(format!(
                    "op {op_id} completed by p{process} at t={t} was never invoked"
                ));
                continue;
            };
            let (Some(op), Some(done)) = (ops.get_mut(i), completed.get_mut(i)) else {
                continue;
            };
            if *done {
                malformed.push(format!("op {op_id} completed twice (again at t={t})"));
                continue;
            }
            if op.process != process {
                malformed.push(format!(
                    "op {op_id} invoked by p{} but completed by p{process} at t={t}",
                    op.process
                ));
            }
            if t < op.invoke_t {
                malformed.push(format!(
                    "op {op_id} completed at t={t} before it was invoked at t={}",
                    op.invoke_t
                ));
            }
            if open.get(&op.process) == Some(&op_id) {
                open.remove(&op.process);
            }
            *done = true;
            op.outcome = outcome;
        }
        ClientOps { ops, malformed }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::{ClientOps, Outcome};

    #[test]
    fn an_invocation_without_completion_is_indeterminate() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1"));
        let ops = ClientOps::from_history(&h.events);
        assert!(matches!(ops.ops[0].outcome, Outcome::Info { t: None }));
        assert!(ops.malformed.is_empty());
    }

    #[test]
    fn a_transaction_shows_each_write_and_no_version() {
        let mut h = History::default();
        h.invoke(
            1,
            1,
            tx(&[
                (A, Some("a1"), Some(3)),
                (B, None, None),
                (C, Some("c1"), None),
            ]),
        )
        .ok_write(1, 1, 7, 0);
        let ops = ClientOps::from_history(&h.events);
        assert_eq!(
            ops.ops[0].to_string(),
            r#"op 1 (p1 apply [t/e/a if v3 {"w":"a1"}, t/e/b delete, t/e/c {"w":"c1"}], t=10..20 ok rev 7)"#
        );
    }

    #[test]
    fn completions_that_do_not_pair_up_are_malformed() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1"))
            .invoke(1, 2, get(A))
            .ok_write(1, 1, 3, 1)
            .ok_write(1, 1, 3, 1)
            .ok_write(2, 2, 3, 1)
            .info(3, 9);
        let malformed = ClientOps::from_history(&h.events).malformed;
        assert_eq!(
            malformed,
            [
                "p1 invoked op 2 at t=20 while its op 1 was still open",
                "op 1 completed twice (again at t=40)",
                "op 2 invoked by p1 but completed by p2 at t=50",
                "op 9 completed by p3 at t=60 was never invoked",
            ]
        );
    }
}
