//! The clients of a run. Each client process is sequential, like a Jepsen
//! process: it invokes one operation, records its completion, and only then
//! invokes the next. Operations are linearizable gets, puts of unique values,
//! CAS on the version, deletes, and transactions writing 2–3 of the
//! namespaces at once (puts, some CAS, sometimes a delete), over a few
//! namespaces so they contend. A
//! process whose operation ended with an unknown outcome never invokes again:
//! a fresh process (and a fresh client, so a fresh client id for write
//! de-duplication) takes its place.
//!
//! The hot-reload client is the client library's typed handle on one
//! namespace; every value it swaps in is recorded with its revision.

use std::sync::Arc;
use std::time::Duration;

use raftconf_client::{Client, ClientOptions, Error, NamespaceWrite, WriteOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::history::{Event, FailReason, Op, OpOk, TxOp};
use crate::recorder::Recorder;

/// The tenant and environment every namespace of a run lives in.
pub const PREFIX: &str = "jepsen/t/";

/// That environment, as [`Client::apply`] names it.
const ENV: &str = "jepsen/t";

/// The share of operations (in percent) that are transactions.
const TRANSACTION_PERCENT: u32 = 10;

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
    // Process ids of slot s: s, s + clients, s + 2 * clients, …
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
        let (op, keys) = if roll < TRANSACTION_PERCENT && opts.keys >= 2 {
            transaction(&mut rng, process, n, opts.keys, &known_version)
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
                match &op {
                    Op::Apply { writes } => {
                        // The answer names no versions; a CAS tells what it made.
                        for (w, &k) in writes.iter().zip(&keys) {
                            if let Some(v) = w.expect_version {
                                known_version[k] = v + 1;
                            }
                        }
                    }
                    _ => known_version[keys[0]] = result.version,
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
            process += opts.clients as u64;
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
            write_outcome(c.put_with(ns, value, WriteOptions::default()).await)
        }
        Op::Cas {
            ns,
            expect_version,
            value,
        } => write_outcome(
            c.put_with(
                ns,
                value,
                WriteOptions::default().if_version(*expect_version),
            )
            .await,
        ),
        Op::Delete { ns } => write_outcome(c.delete(ns, WriteOptions::default()).await),
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
    }
}

/// As [`write_outcome`]; a refused transaction (all or nothing: nothing
/// applied) answers with the code of its first refused write, and a CAS miss
/// comes as a plain `FailedPrecondition`, without the current version.
fn transaction_outcome(result: raftconf_client::Result<u64>) -> Outcome {
    match result {
        Ok(revision) => Outcome::Ok(OpOk {
            revision,
            value: None,
            version: 0,
            mod_revision: 0,
        }),
        Err(Error::FailedPrecondition(_)) => {
            Outcome::Fail(FailReason::VersionMismatch { current: None }, None)
        }
        Err(e) => write_outcome(Err(e)),
    }
}

fn write_outcome(result: raftconf_client::Result<raftconf_client::WriteResult>) -> Outcome {
    match result {
        Ok(w) => Outcome::Ok(OpOk {
            revision: w.revision,
            value: None,
            version: w.version,
            mod_revision: 0,
        }),
        Err(Error::CasMismatch {
            current_version, ..
        }) => Outcome::Fail(
            FailReason::VersionMismatch {
                current: current_version,
            },
            None,
        ),
        Err(Error::NotFound(_)) => Outcome::Fail(FailReason::NotFound, None),
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

/// The hot-reload client: a typed handle on `ns` whose every swap is
/// recorded. Its first value is recorded before the workload starts writing,
/// so nothing can change between starting it and recording that value.
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
