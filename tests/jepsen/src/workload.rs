//! The clients of a run. Each client process is sequential, like a Jepsen
//! process: it invokes one operation, records its completion, and only then
//! invokes the next. Operations are linearizable gets, puts of unique values,
//! CAS on the version, deletes, transactions writing 2–3 of the namespaces
//! at once (puts, some CAS, sometimes a delete), and schema changes on the
//! namespaces (sets of the rules in [`crate::schemas`], mostly with force,
//! and sometimes a removal), over a few namespaces so they contend. A write
//! refused because its value breaks the schema is a definite failure. A
//! process whose operation ended with an unknown outcome never invokes again:
//! a fresh process (and a fresh client, so a fresh client id for write
//! de-duplication) takes its place.
//!
//! Besides them, one reader per node does nothing but linearizable gets
//! through that node alone. The clients' writes go wherever a leader is, so
//! while a partition cuts a node off, its reader keeps asking it while the
//! others commit writes: a node that answers a linearizable read it can no
//! longer vouch for (an old leader past its read lease) shows up as a stale
//! read. The clients alone rarely catch this: each soon waits on a write to
//! the cut-off leader and asks nothing else until the partition heals.
//!
//! The hot-reload clients are the client library's handles on one namespace
//! and on the whole environment; every value they swap in is recorded with
//! its revision.

use std::sync::Arc;
use std::time::Duration;

use raftconf_client::{
    Client, ClientOptions, Error, FieldViolation, NamespaceWrite, SchemaOptions, WriteOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::history::{schema_path, Event, FailReason, Op, OpOk, TxOp};
use crate::recorder::Recorder;
use crate::schemas::Rule;

/// The tenant and environment every namespace of a run lives in.
pub const PREFIX: &str = "jepsen/t/";

/// That environment, as [`Client::apply`] names it.
const ENV: &str = "jepsen/t";

/// The share of operations (in percent) that are transactions.
const TRANSACTION_PERCENT: u32 = 10;

/// The share of operations (in percent) that are schema changes.
const SCHEMA_PERCENT: u32 = 3;

/// The namespace `k` of a run.
pub fn namespace(k: usize) -> String {
    format!("{PREFIX}k{k}")
}

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Concurrent client processes.
    pub clients: usize,
    /// Namespaces they share.
    pub keys: usize,
    /// Bound on one operation; past it the outcome is unknown.
    pub op_timeout: Duration,
    /// Pause between two operations of a process.
    pub think: Duration,
    /// The seed of every process's choices.
    pub seed: u64,
    /// Only linearizable gets (the readers pinned to one node each).
    pub reads_only: bool,
    /// Step between the process ids of one slot: every process slot of the
    /// run (clients and readers), so that ids never repeat across slots.
    pub stride: u64,
}

/// Options of the workload's clients: a write that cannot be confirmed within
/// the op timeout is indeterminate anyway, so the library's own budget fits in it.
pub fn client_options(op_timeout: Duration) -> ClientOptions {
    ClientOptions::default()
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .call_timeout(op_timeout)
        .keep_alive(Duration::from_secs(2), Duration::from_secs(2))
}

/// Runs process slot `slot` until `stop` turns true. Returns how many
/// operations it invoked.
pub async fn run_process(
    slot: usize,
    endpoints: Vec<String>,
    opts: WorkloadOptions,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut rng =
        StdRng::seed_from_u64(opts.seed.wrapping_mul(1_000_003).wrapping_add(slot as u64));
    // Process ids of slot s: s, s + stride, s + 2 * stride, …
    let mut process = slot as u64;
    let mut client: Option<Client> = None;
    let mut known_version = vec![0u64; opts.keys];
    let mut invoked = 0u64;
    let mut n = 0u64;
    while !*stop.borrow() {
        let c = match &client {
            Some(c) => c.clone(),
            None => match Client::connect_with(endpoints.clone(), client_options(opts.op_timeout))
                .await
            {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        n += 1;
        let roll = rng.gen_range(0..100);
        let (op, keys) = if opts.reads_only {
            let k = rng.gen_range(0..opts.keys);
            (Op::Get { ns: namespace(k) }, vec![k])
        } else if roll < TRANSACTION_PERCENT && opts.keys >= 2 {
            transaction(&mut rng, process, n, opts.keys, &known_version)
        } else if roll < TRANSACTION_PERCENT + SCHEMA_PERCENT {
            (schema_change(&mut rng, process, n, opts.keys), Vec::new())
        } else {
            let k = rng.gen_range(0..opts.keys);
            (single(&mut rng, process, n, k, known_version[k]), vec![k])
        };
        let op_id = rec.op_id();
        rec.record(Event::Invoke {
            t: rec.now(),
            process,
            op_id,
            op: op.clone(),
        });
        invoked += 1;
        let outcome = tokio::time::timeout(opts.op_timeout, execute(&c, &op)).await;
        let t = rec.now();
        let event = match outcome {
            Ok(Outcome::Ok(result)) => {
                match (&op, keys.as_slice()) {
                    (Op::Apply { writes }, _) => {
                        // The answer names no versions; a CAS tells what it made.
                        for (w, &k) in writes.iter().zip(&keys) {
                            if let Some(v) = w.expect_version {
                                known_version[k] = v + 1;
                            }
                        }
                    }
                    // A schema change's version is the schema's.
                    (_, [k]) if !op.is_schema() => known_version[*k] = result.version,
                    _ => {}
                }
                Event::Ok {
                    t,
                    process,
                    op_id,
                    result,
                }
            }
            Ok(Outcome::Fail(reason, revision)) => {
                if let (FailReason::VersionMismatch { current: Some(v) }, [k]) =
                    (&reason, keys.as_slice())
                {
                    known_version[*k] = *v;
                }
                Event::Fail {
                    t,
                    process,
                    op_id,
                    reason,
                    revision,
                }
            }
            Ok(Outcome::Unknown(error)) => Event::Info {
                t,
                process,
                op_id,
                error,
            },
            Err(_) if !op.is_write() => Event::Fail {
                t,
                process,
                op_id,
                reason: FailReason::Other {
                    message: format!("read timed out after {:?}", opts.op_timeout),
                },
                revision: None,
            },
            Err(_) => Event::Info {
                t,
                process,
                op_id,
                error: format!("timed out after {:?}", opts.op_timeout),
            },
        };
        if matches!(event, Event::Info { .. }) {
            // This identity is done: its write may still land at any time.
            process += opts.stride;
            client = None;
        }
        rec.record(event);
        if !opts.think.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(opts.think) => {}
                _ = stop.changed() => {}
            }
        }
    }
    invoked
}

/// A get, put, CAS or delete of namespace `k`.
fn single(rng: &mut StdRng, process: u64, n: u64, k: usize, known_version: u64) -> Op {
    let ns = namespace(k);
    let value = json!({ "w": format!("p{process}-{n}") });
    let roll = rng.gen_range(0..100);
    if roll < 45 {
        Op::Get { ns }
    } else if roll < 70 {
        Op::Put { ns, value }
    } else if roll < 92 {
        // Mostly the version this process last saw, sometimes "must not exist".
        let expect_version = if rng.gen_bool(0.15) { 0 } else { known_version };
        Op::Cas {
            ns,
            expect_version,
            value,
        }
    } else {
        Op::Delete { ns }
    }
}

/// A transaction over 2–3 distinct namespaces: puts of unique values, some
/// on the version this process last saw, and in one of five a delete.
/// Returns it with the namespaces' indexes, in its order.
fn transaction(
    rng: &mut StdRng,
    process: u64,
    n: u64,
    keys: usize,
    known_version: &[u64],
) -> (Op, Vec<usize>) {
    let count = rng.gen_range(2..=3.min(keys));
    let picked = rand::seq::index::sample(rng, keys, count).into_vec();
    let delete_at = rng.gen_bool(0.2).then(|| rng.gen_range(0..count));
    let writes = picked
        .iter()
        .enumerate()
        .map(|(i, &k)| TxOp {
            ns: namespace(k),
            value: (delete_at != Some(i)).then(|| json!({ "w": format!("p{process}-{n}-{k}") })),
            expect_version: rng.gen_bool(0.3).then(|| known_version[k]),
        })
        .collect();
    (Op::Apply { writes }, picked)
}

/// A schema change on namespace `k`: one in six removes its schema, the
/// others set one of the rules, four in five with force (without, a schema
/// that live documents break is refused, naming them).
fn schema_change(rng: &mut StdRng, process: u64, n: u64, keys: usize) -> Op {
    let k = rng.gen_range(0..keys);
    let path =
        schema_path(&namespace(k)).expect("invariant: the workload's paths are tenant/env/ns");
    if rng.gen_bool(1.0 / 6.0) {
        return Op::DeleteSchema { path };
    }
    let rule = Rule::ALL[rng.gen_range(0..Rule::ALL.len())];
    Op::SetSchema {
        path,
        schema: rule.schema(&format!("p{process}-{n}")),
        force: rng.gen_bool(0.8),
    }
}

enum Outcome {
    Ok(OpOk),
    Fail(FailReason, Option<u64>),
    Unknown(String),
}

async fn execute(c: &Client, op: &Op) -> Outcome {
    match op {
        Op::Get { ns } => match c.get(ns).await {
            Ok(doc) => Outcome::Ok(OpOk {
                revision: doc.store_revision,
                value: Some(doc.value),
                version: doc.version,
                mod_revision: doc.mod_revision,
            }),
            Err(Error::NotFound(_)) => Outcome::Ok(OpOk {
                revision: 0,
                value: None,
                version: 0,
                mod_revision: 0,
            }),
            // A read changes nothing: any failure is a failure.
            Err(e) => Outcome::Fail(
                FailReason::Other {
                    message: e.to_string(),
                },
                None,
            ),
        },
        Op::Put { ns, value } => {
            write_outcome(ns, c.put_with(ns, value, WriteOptions::default()).await)
        }
        Op::Cas {
            ns,
            expect_version,
            value,
        } => write_outcome(
            ns,
            c.put_with(
                ns,
                value,
                WriteOptions::default().if_version(*expect_version),
            )
            .await,
        ),
        Op::Delete { ns } => write_outcome(ns, c.delete(ns, WriteOptions::default()).await),
        Op::Apply { writes } => {
            let writes: Vec<NamespaceWrite> = writes
                .iter()
                .map(|w| {
                    let name = w.ns.strip_prefix(PREFIX).unwrap_or(&w.ns);
                    let write = match &w.value {
                        Some(value) => NamespaceWrite::put(name, value.clone()),
                        None => NamespaceWrite::delete(name),
                    };
                    match w.expect_version {
                        Some(v) => write.if_version(v),
                        None => write,
                    }
                })
                .collect();
            transaction_outcome(c.apply(ENV, &writes, "jepsen").await)
        }
        Op::SetSchema {
            path,
            schema,
            force,
        } => {
            let options = SchemaOptions::default().force(*force).message("jepsen");
            schema_outcome(c.set_schema(path, schema, options).await)
        }
        Op::DeleteSchema { path } => schema_outcome(c.delete_schema(path, "jepsen").await),
    }
}

/// As [`write_outcome`]. A refused transaction (all or nothing: nothing
/// applied) answers with the code of its first refused write and lists every
/// refused write in its details (`namespace:pointer`). So a CAS miss comes
/// as `FAILED_PRECONDITION` with details, which the library reads as
/// [`Error::SchemaIncompatible`] (or, without details, as
/// [`Error::FailedPrecondition`]), without the current version; a schema
/// violation as [`Error::SchemaViolation`].
fn transaction_outcome(result: raftconf_client::Result<u64>) -> Outcome {
    match result {
        Ok(revision) => written(revision, 0),
        Err(Error::FailedPrecondition(_) | Error::SchemaIncompatible { .. }) => {
            Outcome::Fail(FailReason::VersionMismatch { current: None }, None)
        }
        Err(Error::SchemaViolation {
            message,
            violations,
        }) => Outcome::Fail(
            FailReason::SchemaViolation {
                namespaces: refused_namespaces(&violations),
                message,
            },
            None,
        ),
        Err(e) => write_outcome("", Err(e)),
    }
}

/// The namespaces a refused transaction's details name as breaking their
/// schema: `name:/pointer` each. A write refused for another reason is
/// listed as `name:` (no pointer); the run's schemas only constrain `/w`,
/// so their violations always carry a pointer.
fn refused_namespaces(violations: &[FieldViolation]) -> Vec<String> {
    let mut namespaces: Vec<String> = violations
        .iter()
        .filter_map(|v| v.field.split_once(':'))
        .filter(|(_, pointer)| pointer.starts_with('/'))
        .map(|(name, _)| format!("{PREFIX}{name}"))
        .collect();
    namespaces.dedup();
    namespaces
}

/// A write that succeeded at `revision`, leaving `version`.
fn written(revision: u64, version: u64) -> Outcome {
    Outcome::Ok(OpOk {
        revision,
        value: None,
        version,
        mod_revision: 0,
    })
}

/// A schema set or delete: a set that live documents break is refused
/// (listing where), a delete of a schema that is not there is not found.
fn schema_outcome(result: raftconf_client::Result<raftconf_client::SchemaWrite>) -> Outcome {
    match result {
        Ok(w) => written(w.revision, w.version),
        Err(Error::SchemaIncompatible {
            message,
            violations,
        }) => Outcome::Fail(
            FailReason::SchemaIncompatible {
                broken: violations.into_iter().map(|v| v.field).collect(),
                message,
            },
            None,
        ),
        Err(e) => write_outcome("", Err(e)),
    }
}

/// The outcome of a write to `ns` (empty when the caller maps schema
/// violations itself).
fn write_outcome(
    ns: &str,
    result: raftconf_client::Result<raftconf_client::WriteResult>,
) -> Outcome {
    match result {
        Ok(w) => written(w.revision, w.version),
        Err(Error::CasMismatch {
            current_version, ..
        }) => Outcome::Fail(
            FailReason::VersionMismatch {
                current: current_version,
            },
            None,
        ),
        Err(Error::NotFound(_)) => Outcome::Fail(FailReason::NotFound, None),
        // Checked at commit (or refused by the leader's pre-check): nothing written.
        Err(Error::SchemaViolation { message, .. }) => Outcome::Fail(
            FailReason::SchemaViolation {
                namespaces: vec![ns.to_string()],
                message,
            },
            None,
        ),
        // The library answers these only for writes that certainly were not applied.
        Err(
            e @ (Error::Unavailable(_) | Error::InvalidArgument(_) | Error::ResourceExhausted(_)),
        ) => Outcome::Fail(
            FailReason::Other {
                message: e.to_string(),
            },
            None,
        ),
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// A hot-reload client: a handle on `ns` (a namespace path: the value is
/// its document; or a `tenant/env/` prefix: the value is an object of every
/// namespace of the environment by name, swapped per revision) whose every
/// swap is recorded. Its first value is recorded before the workload starts
/// writing, so nothing can change between starting it and recording that
/// value. It ignores schema changes (they are not documents).
pub async fn start_reloader(
    reloader: u64,
    endpoints: Vec<String>,
    ns: String,
    rec: Recorder,
) -> anyhow::Result<raftconf_client::Watched<Value>> {
    let client = Client::connect_with(endpoints, client_options(Duration::from_secs(10))).await?;
    let hook_rec = rec.clone();
    let hook_ns = ns.clone();
    let handle = client
        .watched::<Value>(&ns)
        .on_change(move |_old: &Arc<Value>, new: &Arc<Value>, revision| {
            hook_rec.record(Event::Reload {
                t: hook_rec.now(),
                reloader,
                ns: hook_ns.clone(),
                revision,
                value: (**new).clone(),
                incarnation: 0,
                from_cache: false,
            });
        })
        .start()
        .await?;
    rec.record(Event::Reload {
        t: rec.now(),
        reloader,
        ns,
        revision: handle.revision(),
        value: (*handle.load()).clone(),
        incarnation: 0,
        from_cache: false,
    });
    Ok(handle)
}
