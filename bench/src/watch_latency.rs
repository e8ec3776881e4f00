//! Watch delivery latency: one writer puts to a namespace, `watchers`
//! watchers (each with its own [`Client`], so its own connection) watch it,
//! and every put's revision is timed from the writer's side to each watcher.
//!
//! Two clocks, both this process's monotonic clock:
//! - **sent→recv**: from just before the put is sent to a watcher yielding
//!   that revision: what a service waits for after an operator hits enter.
//! - **ack→recv**: from the put's reply reaching the writer to the watcher
//!   yielding it: how far delivery trails acknowledgement. It can be
//!   negative: the server publishes a change when it applies it, which may
//!   be before the writer has read its reply.
//!
//! For more than one watcher, **ack→all** / **sent→all** time until the last
//! watcher has the revision (the fan-out figure).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_client::{Client, WatchEvent, WatchStream};
use tokio::sync::watch;

use crate::load::document;
use crate::stats::signed_ms;

/// How a watch run is shaped.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Measured puts.
    pub count: usize,
    /// Unmeasured puts first (through the same watchers).
    pub warmup: usize,
    pub watchers: usize,
    /// Pause between puts, so each is delivered on its own.
    pub interval: Duration,
    pub doc_bytes: usize,
}

/// What a watch run measured, in milliseconds.
#[derive(Debug, Default)]
pub struct WatchRun {
    /// One per (measured put, watcher).
    pub ack_to_recv: Vec<f64>,
    pub sent_to_recv: Vec<f64>,
    /// One per measured put: until the last watcher had it.
    pub ack_to_all: Vec<f64>,
    pub sent_to_all: Vec<f64>,
    /// (put, watcher) pairs never delivered as a change (e.g. folded into a
    /// snapshot): should be 0.
    pub missed: usize,
    /// Snapshot events after the opening one: should be 0.
    pub snapshots: usize,
}

/// When each watcher yielded each revision.
#[derive(Debug, Default)]
struct Received {
    at: HashMap<u64, Instant>,
    snapshots: usize,
}

/// How long a watcher may wait for its opening snapshot or the last put.
const WAIT: Duration = Duration::from_secs(30);

pub async fn run(
    endpoints: &[String],
    writer: &Client,
    path: &str,
    p: &WatchParams,
) -> Result<WatchRun> {
    // The namespace exists before anyone watches, so every put is an update.
    writer
        .put(path, &document(p.doc_bytes, 0))
        .await
        .with_context(|| format!("put {path}"))?;

    let (target_tx, target_rx) = watch::channel(u64::MAX);
    let mut watchers = Vec::with_capacity(p.watchers);
    for i in 0..p.watchers {
        let client = Client::connect(endpoints.to_vec()).await?;
        let mut stream = client
            .watch([path], 0)
            .await
            .with_context(|| format!("watch {path}"))?;
        // Subscribed once the opening snapshot is here.
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(WatchEvent::Snapshot { .. }))) => {}
            Ok(Some(Ok(other))) => bail!("watcher {i}: expected a snapshot first, got {other:?}"),
            Ok(Some(Err(e))) => return Err(e).context(format!("watcher {i}")),
            Ok(None) => bail!("watcher {i}: the stream ended before its snapshot"),
            Err(_) => bail!("watcher {i}: no snapshot within {WAIT:?}"),
        }
        watchers.push(tokio::spawn(receive(client, stream, target_rx.clone())));
    }

    let mut writes = Vec::with_capacity(p.count);
    let mut last = 0;
    for i in 0..p.warmup + p.count {
        let doc = document(p.doc_bytes, 1 + i as u64);
        let sent = Instant::now();
        let w = writer
            .put(path, &doc)
            .await
            .with_context(|| format!("put {path}"))?;
        let acked = Instant::now();
        if i >= p.warmup {
            writes.push((w.revision, sent, acked));
        }
        last = w.revision;
        tokio::time::sleep(p.interval).await;
    }
    let _ = target_tx.send(last);

    let mut received = Vec::with_capacity(p.watchers);
    for (i, h) in watchers.into_iter().enumerate() {
        let r = tokio::time::timeout(WAIT, h)
            .await
            .with_context(|| format!("watcher {i}: revision {last} not delivered within {WAIT:?}"))?
            .context("watcher task panicked")?
            .with_context(|| format!("watcher {i}"))?;
        received.push(r);
    }
    Ok(tally(&writes, &received))
}

/// Yields events until it has seen `target` (set once the writer is done).
async fn receive(
    _client: Client,
    mut stream: WatchStream,
    mut target: watch::Receiver<u64>,
) -> Result<Received> {
    let mut got = Received::default();
    let mut last = 0;
    loop {
        if last >= *target.borrow_and_update() {
            return Ok(got);
        }
        tokio::select! {
            event = stream.next() => {
                let at = Instant::now();
                match event {
                    Some(Ok(WatchEvent::Change { revision, .. })) => {
                        got.at.insert(revision, at);
                        last = revision;
                    }
                    Some(Ok(WatchEvent::Snapshot { revision, .. })) => {
                        got.snapshots += 1;
                        last = revision;
                    }
                    Some(Ok(WatchEvent::Progress { .. })) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("the watch stream ended"),
                }
            }
            changed = target.changed() => {
                if changed.is_err() {
                    bail!("the writer went away");
                }
            }
        }
    }
}

/// Pairs each measured put with each watcher's receipt.
fn tally(writes: &[(u64, Instant, Instant)], received: &[Received]) -> WatchRun {
    let mut run = WatchRun {
        snapshots: received.iter().map(|r| r.snapshots).sum(),
        ..WatchRun::default()
    };
    for &(revision, sent, acked) in writes {
        let mut latest: Option<Instant> = None;
        let mut all = true;
        for r in received {
            match r.at.get(&revision) {
                Some(&at) => {
                    run.ack_to_recv.push(signed_ms(at, acked));
                    run.sent_to_recv.push(signed_ms(at, sent));
                    latest = Some(latest.map_or(at, |l| l.max(at)));
                }
                None => {
                    run.missed += 1;
                    all = false;
                }
            }
        }
        if let (true, Some(at)) = (all, latest) {
            run.ack_to_all.push(signed_ms(at, acked));
            run.sent_to_all.push(signed_ms(at, sent));
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_takes_the_last_watcher_for_all_and_counts_misses() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        // Put 5 sent at 0, acked at 1000 µs; put 6 sent at 5000, acked at 6000.
        let writes = [(5, at(0), at(1000)), (6, at(5000), at(6000))];
        let w1 = Received {
            at: HashMap::from([(5, at(900)), (6, at(6500))]),
            snapshots: 0,
        };
        let w2 = Received {
            at: HashMap::from([(5, at(3000))]),
            snapshots: 1,
        };
        let run = tally(&writes, &[w1, w2]);
        assert_eq!(run.ack_to_recv, vec![-0.1, 2.0, 0.5]);
        assert_eq!(run.sent_to_recv, vec![0.9, 3.0, 1.5]);
        assert_eq!(run.ack_to_all, vec![2.0]);
        assert_eq!(run.sent_to_all, vec![3.0]);
        assert_eq!((run.missed, run.snapshots), (1, 1));
    }
}
