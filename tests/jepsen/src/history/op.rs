//! Client operations as the history records them: what was invoked
//! ([`Op`]), what an acknowledgement returned ([`OpOk`]) and why a definite
//! failure did not take effect ([`FailReason`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An operation a client process invokes: on namespaces, or on a
/// namespace's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Linearizable read.
    Get {
        /// `tenant/env/namespace`.
        ns: String,
    },
    /// Unconditional write of a unique value.
    Put {
        /// `tenant/env/namespace`.
        ns: String,
        /// The value written.
        value: Value,
    },
    /// Write only if the namespace's version is `expect_version` (`0`: only
    /// if it does not exist).
    Cas {
        /// `tenant/env/namespace`.
        ns: String,
        /// The version required.
        expect_version: u64,
        /// The value written.
        value: Value,
    },
    /// Delete the namespace.
    Delete {
        /// `tenant/env/namespace`.
        ns: String,
    },
    /// A transaction: writes to several namespaces of one environment,
    /// applied together at one revision or not at all.
    Apply {
        /// One per namespace, each to a different one, in request order.
        writes: Vec<TxOp>,
    },
    /// A new version of a namespace's schema. It binds the namespace in
    /// every environment of the tenant, writes no namespace, and takes a
    /// revision of its own.
    SetSchema {
        /// `tenant/namespace`.
        path: String,
        /// The JSON Schema; the workload makes each one unique (its
        /// `description` names the operation), so a schema names its write.
        schema: Value,
        /// Set even over live documents it refuses (else such a schema is
        /// refused, naming them).
        force: bool,
    },
    /// Removes a namespace's schema (a new schema version without one).
    DeleteSchema {
        /// `tenant/namespace`.
        path: String,
    },
}

/// One namespace's write in an [`Op::Apply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxOp {
    /// `tenant/env/namespace`.
    pub ns: String,
    /// The value written; `None` deletes the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Only if the namespace is at this version (`0`: only if it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<u64>,
}

/// One namespace's part of a write: a put, CAS or delete is one, a
/// transaction has one per namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NsWrite<'a> {
    /// `tenant/env/namespace`.
    pub ns: &'a str,
    /// The value written; `None` for a delete.
    pub value: Option<&'a Value>,
    /// The version required (`0`: must not exist), if any.
    pub expect_version: Option<u64>,
}

impl NsWrite<'_> {
    /// Whether the write may take effect on a namespace that is `live` (has
    /// a value) at `version`: its version condition holds, and a delete
    /// finds something to delete.
    pub fn holds(&self, live: bool, version: u64) -> bool {
        let version_ok = match self.expect_version {
            None => true,
            Some(0) => !live,
            Some(v) => live && version == v,
        };
        version_ok && (self.value.is_some() || live)
    }
}

impl Op {
    /// The namespace of a single-namespace operation; `None` for a
    /// transaction (see [`Op::namespaces`]) and for schema operations.
    pub fn ns(&self) -> Option<&str> {
        match self {
            Op::Get { ns } | Op::Put { ns, .. } | Op::Cas { ns, .. } | Op::Delete { ns } => {
                Some(ns)
            }
            Op::Apply { .. } | Op::SetSchema { .. } | Op::DeleteSchema { .. } => None,
        }
    }

    /// Every namespace the operation reads or writes, in request order
    /// (none for a schema operation).
    pub fn namespaces(&self) -> Vec<&str> {
        match self {
            Op::Apply { writes } => writes.iter().map(|w| w.ns.as_str()).collect(),
            _ => self.ns().into_iter().collect(),
        }
    }

    /// Whether the operation may change state.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// Whether the operation is a transaction.
    pub fn is_transaction(&self) -> bool {
        matches!(self, Op::Apply { .. })
    }

    /// Whether the operation changes a schema.
    pub fn is_schema(&self) -> bool {
        matches!(self, Op::SetSchema { .. } | Op::DeleteSchema { .. })
    }

    /// What the operation writes, per namespace (nothing for a get or a
    /// schema operation).
    pub fn writes(&self) -> Vec<NsWrite<'_>> {
        let (ns, value, expect_version) = match self {
            Op::Get { .. } | Op::SetSchema { .. } | Op::DeleteSchema { .. } => return Vec::new(),
            Op::Put { ns, value } => (ns, Some(value), None),
            Op::Cas {
                ns,
                expect_version,
                value,
            } => (ns, Some(value), Some(*expect_version)),
            Op::Delete { ns } => (ns, None, None),
            Op::Apply { writes } => {
                return writes
                    .iter()
                    .map(|w| NsWrite {
                        ns: &w.ns,
                        value: w.value.as_ref(),
                        expect_version: w.expect_version,
                    })
                    .collect()
            }
        };
        vec![NsWrite {
            ns,
            value,
            expect_version,
        }]
    }
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOk {
    /// For a write (a transaction and a schema change too): the revision it
    /// was committed at. For a get: the store revision the read was served
    /// at (the read is linearized there); `0` when the answer did not say
    /// (a get of a missing namespace).
    pub revision: u64,
    /// For a get: the value read, `None` when the namespace does not exist
    /// (never created, or deleted). For writes: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// For a get: the namespace's version (`0` when it does not exist). For
    /// a put/CAS/delete: the version it created. For a transaction: `0` (the
    /// server does not say; each namespace's version goes up by one). For a
    /// schema change: the schema version it created.
    pub version: u64,
    /// For a get: the revision of the namespace's last change. Writes: 0.
    #[serde(default)]
    pub mod_revision: u64,
}

/// Why an operation definitely did not take effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailReason {
    /// Delete of a namespace that does not exist (or is deleted); a schema
    /// delete of a namespace without a schema. For a transaction: its first
    /// refused write was such a delete.
    NotFound,
    /// A CAS whose expected version did not hold; `current`: the version the
    /// server reported, when it did. For a transaction: its first refused
    /// write was a CAS miss (the server names no version).
    VersionMismatch {
        /// The version at the time, if known.
        current: Option<u64>,
    },
    /// A put, CAS or transaction whose value breaks its namespace's schema
    /// (for a transaction: its first refused write did). Nothing was written.
    SchemaViolation {
        /// The namespaces (`tenant/env/namespace`) whose values the server
        /// said break their schema.
        namespaces: Vec<String>,
        /// The server's message.
        message: String,
    },
    /// A schema set without force that documents live in some environment
    /// break (the server lists them, `env:pointer` each). Nothing was set.
    SchemaIncompatible {
        /// Where the live documents break it, as the server listed them.
        broken: Vec<String>,
        /// The server's message.
        message: String,
    },
    /// Refused for another reason without taking effect (e.g. `UNAVAILABLE`
    /// before it was sent to a leader).
    Other {
        /// The error text.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{NsWrite, Op};

    #[test]
    fn write_conditions() {
        let value = json!({"w": "x"});
        let w = |value, expect_version| NsWrite {
            ns: "t/e/a",
            value,
            expect_version,
        };
        // (live, version) → holds, for: put, CAS v2, CAS "absent", delete, delete if v2.
        let cases = [
            (w(Some(&value), None), [true, true, true]),
            (w(Some(&value), Some(2)), [false, true, false]),
            (w(Some(&value), Some(0)), [true, false, false]),
            (w(None, None), [false, true, true]),
            (w(None, Some(2)), [false, true, false]),
        ];
        for (write, expected) in cases {
            let got = [
                write.holds(false, 2),
                write.holds(true, 2),
                write.holds(true, 3),
            ];
            assert_eq!(got, expected, "{write:?}");
        }
    }

    #[test]
    fn schema_operations_write_no_namespace() {
        let set = Op::SetSchema {
            path: "t/a".into(),
            schema: json!({"type": "object"}),
            force: true,
        };
        let delete = Op::DeleteSchema { path: "t/a".into() };
        for op in [set, delete] {
            assert!(op.is_write() && op.is_schema() && !op.is_transaction());
            assert_eq!(op.ns(), None);
            assert!(op.namespaces().is_empty() && op.writes().is_empty());
        }
    }
}
