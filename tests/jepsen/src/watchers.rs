//! Watchers: raw gRPC watch streams (not the client library's resuming
//! stream, which would hide a server's duplicates), each session on a node
//! picked at random, cut after a random time and resumed from `last_seen + 1`
//! on another. Everything they receive is recorded as it arrives, each
//! change with its kind: a schema change comes under the namespace's path
//! and must not be taken for its document.
//!
//! A watcher may run its watch as one of two on a stream of several
//! ([`WatcherOptions::several`]): the other, on the same targets from the same
//! revision, is a decoy whose events the server sends with the watcher's own
//! where it can. Only what names the watcher's watch is recorded.

use std::time::Duration;

use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_client::WatchClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::cluster::client_addr;
use crate::history::{ChangeKind, Event, LogEntry, NsChange, WatchItem};
use crate::recorder::Recorder;

/// What a watcher does.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// What it watches: `tenant/env/` prefixes and `tenant/env/namespace` paths.
    pub targets: Vec<String>,
    /// Node slots to pick from.
    pub nodes: usize,
    /// Start revision of the first session (1: everything; 0: a snapshot first).
    pub first_from: u64,
    /// Longest session before the watcher cuts it and resumes elsewhere.
    pub max_session: Duration,
    /// The seed of its choices.
    pub seed: u64,
    /// Each session is watch 1 of a stream of several, beside a decoy (watch 2).
    pub several: bool,
}

/// The watcher's own watch on a stream of several.
const OWN_WATCH: u64 = 1;
/// The decoy beside it.
const DECOY_WATCH: u64 = 2;

/// Runs watcher `watcher` until `target` holds a revision it has reached
/// (the run sets it once the cluster converged), or `stop` turns true.
/// Returns the last revision it reached.
pub async fn run_watcher(
    watcher: u64,
    opts: WatcherOptions,
    rec: Recorder,
    target: watch::Receiver<Option<u64>>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_mul(7_919).wrapping_add(watcher));
    let mut last_seen: Option<u64> = None;
    let mut session = 0u64;
    let reached = |last: Option<u64>| {
        let t = *target.borrow();
        matches!((t, last), (Some(t), Some(l)) if l >= t)
    };
    while !*stop.borrow() && !reached(last_seen) {
        let slot = rng.gen_range(1..=opts.nodes);
        let from = last_seen.map_or(opts.first_from, |l| l + 1);
        rec.record(Event::Watch {
            t: rec.now(),
            watcher,
            item: WatchItem::Start {
                session,
                node: slot as u64,
                targets: opts.targets.clone(),
                from_revision: from,
            },
        });
        let length = Duration::from_millis(
            rng.gen_range(200..=opts.max_session.as_millis().max(201) as u64),
        );
        let reason = tokio::select! {
            r = session_run(watcher, session, slot, &opts, from, &rec, &mut last_seen, &target) => r,
            _ = tokio::time::sleep(length) => "cut by the watcher".to_string(),
            _ = stop.changed() => "run stopped".to_string(),
        };
        rec.record(Event::Watch {
            t: rec.now(),
            watcher,
            item: WatchItem::End { session, reason },
        });
        session += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    }
    last_seen.unwrap_or(0)
}

/// One session; returns why it ended (it also ends when the target is reached).
#[allow(clippy::too_many_arguments)]
async fn session_run(
    watcher: u64,
    session: u64,
    slot: usize,
    opts: &WatcherOptions,
    from: u64,
    rec: &Recorder,
    last_seen: &mut Option<u64>,
    target: &watch::Receiver<Option<u64>>,
) -> String {
    let endpoint = match Endpoint::from_shared(format!("http://{}", client_addr(slot))) {
        Ok(e) => e.connect_timeout(Duration::from_secs(1)),
        Err(e) => return format!("bad address: {e}"),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return format!("connect: {e}"),
    };
    let (tx, rx) = mpsc::channel(4);
    let subscribe = |watch_id: u64| pb::WatchRequest {
        request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
            paths: opts.targets.clone(),
            start_revision: from,
            client_id: format!("jepsen-watcher-{watcher}"),
            labels: Default::default(),
            watch_id,
        })),
    };
    let first = if opts.several { OWN_WATCH } else { 0 };
    if tx.send(subscribe(first)).await.is_err() {
        return "request stream closed".into();
    }
    if opts.several && tx.send(subscribe(DECOY_WATCH)).await.is_err() {
        return "request stream closed".into();
    }
    let mut stream = match WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return format!("{:?}: {}", status.code(), status.message()),
    };
    let mut chunks: Vec<NsChange> = Vec::new();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return "stream ended by the server".into(),
            Err(status) => return format!("{:?}: {}", status.code(), status.message()),
        };
        if opts.several && !msg.watch_ids.contains(&OWN_WATCH) {
            continue; // the decoy's
        }
        let item = match msg.event {
            Some(pb::watch_response::Event::Change(c)) => {
                *last_seen = Some(c.revision);
                WatchItem::Change {
                    session,
                    entry: LogEntry {
                        revision: c.revision,
                        changes: c.changes.into_iter().map(change).collect(),
                    },
                }
            }
            Some(pb::watch_response::Event::Snapshot(s)) => {
                chunks.extend(s.entries.into_iter().map(|e| NsChange {
                    ns: e.path,
                    version: e.version,
                    value: parse(&e.value),
                    kind: ChangeKind::Document,
                }));
                if !s.last_chunk {
                    continue;
                }
                *last_seen = Some(s.revision);
                WatchItem::Snapshot {
                    session,
                    revision: s.revision,
                    entries: std::mem::take(&mut chunks),
                }
            }
            Some(pb::watch_response::Event::Progress(p)) => {
                *last_seen = Some(last_seen.map_or(p.revision, |l| l.max(p.revision)));
                WatchItem::Progress {
                    session,
                    revision: p.revision,
                }
            }
            Some(pb::watch_response::Event::Canceled(c)) => {
                return format!("canceled ({}): {}", c.code, c.message)
            }
            None => continue,
        };
        rec.record(Event::Watch {
            t: rec.now(),
            watcher,
            item,
        });
        let t = *target.borrow();
        if let (Some(t), Some(l)) = (t, *last_seen) {
            if l >= t {
                return "reached the final revision".into();
            }
        }
    }
}

/// A change as the history records it, with its kind.
fn change(ch: pb::Change) -> NsChange {
    let kind = match pb::ChangeKind::try_from(ch.kind) {
        Ok(pb::ChangeKind::Put | pb::ChangeKind::Delete) => ChangeKind::Document,
        Ok(pb::ChangeKind::SchemaSet) => ChangeKind::SchemaSet,
        Ok(pb::ChangeKind::SchemaDelete) => ChangeKind::SchemaDelete,
        _ => ChangeKind::Other(ch.kind),
    };
    NsChange {
        ns: ch.path,
        version: ch.version,
        value: parse(&ch.value),
        kind,
    }
}

fn parse(text: &str) -> Option<Value> {
    if text.is_empty() {
        None
    } else {
        // The server sends canonical JSON; anything else is kept as a string
        // so the checker reports it rather than the harness hiding it.
        Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
    }
}

/// Reads node `slot`'s whole committed history of `targets` (a watch from
/// revision 1: documents and schemas) up to `revision`, for the final
/// convergence check.
pub async fn read_log(
    slot: usize,
    targets: &[String],
    revision: u64,
    timeout: Duration,
) -> anyhow::Result<Vec<LogEntry>> {
    let channel = Endpoint::from_shared(format!("http://{}", client_addr(slot)))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
            paths: targets.to_vec(),
            start_revision: 1,
            client_id: "jepsen-final".into(),
            labels: Default::default(),
            watch_id: 0,
        })),
    })
    .await?;
    let mut stream = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut log = Vec::new();
    let read = async {
        while let Some(msg) = stream.message().await? {
            match msg.event {
                Some(pb::watch_response::Event::Change(c)) => {
                    let rev = c.revision;
                    log.push(LogEntry {
                        revision: rev,
                        changes: c.changes.into_iter().map(change).collect(),
                    });
                    if rev >= revision {
                        break;
                    }
                }
                Some(pb::watch_response::Event::Progress(p)) if p.revision >= revision => break,
                Some(pb::watch_response::Event::Snapshot(s)) => anyhow::bail!(
                    "node in slot {slot} sent a snapshot ({}) for a watch from revision 1: \
                     its replay window does not hold the whole run",
                    s.reason
                ),
                _ => {}
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| anyhow::anyhow!("reading node {slot}'s log timed out"))??;
    drop(tx);
    Ok(log)
}
