//! The watch hub: fan-out of applied changes to subscribers.
//!
//! Apply publishes each [`ChangeEvent`] once (an `Arc`, shared by every
//! subscriber) into a bounded broadcast queue and never waits. A subscriber
//! that falls behind the queue is caught up from the replay window kept in
//! the state machine; one whose start revision is older than the window gets
//! a snapshot of its range instead (never stranded).
//!
//! Gap-freedom rests on one ordering: apply makes its changes visible in the
//! store (`state_machine::store`) *before* publishing its events, and a
//! subscription subscribes to the queue *before* reading the store. So every revision is either in what the subscription read
//! from sled, or arrives on its queue, or both (duplicates are dropped by
//! revision).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use raftconf_schema::{NsPath, Target};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Sleep};

use crate::model::{ChangeEvent, DocEntry, DocRecord, WatchItem};
use crate::state_machine::apply::ApplyCtx;
use crate::state_machine::codec::decode;
use crate::state_machine::keys;
use crate::state_machine::Shared;
use crate::{Error, Result};

/// What travels on the hub's queue.
#[derive(Debug, Clone)]
pub(crate) enum HubMsg {
    /// One applied revision.
    Event(Arc<ChangeEvent>),
    /// The state machine was replaced by a Raft snapshot at this revision.
    Reset(u64),
    /// The node shuts down (wakes the waiting subscriptions; one that
    /// lagged past this sees `WatchHub::shutdown`'s flag instead).
    Shutdown,
}

/// How far the state machine has applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AppliedPos {
    pub revision: u64,
    pub index: u64,
}

pub(crate) struct WatchHub {
    tx: broadcast::Sender<HubMsg>,
    applied: watch::Sender<AppliedPos>,
    shutdown: watch::Sender<bool>,
    progress_interval: Duration,
}

impl WatchHub {
    pub fn new(capacity: usize, progress_interval: Duration, revision: u64, index: u64) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        WatchHub {
            tx,
            applied: watch::Sender::new(AppliedPos { revision, index }),
            shutdown: watch::Sender::new(false),
            progress_interval,
        }
    }

    /// Called by apply after its batch is committed. Never blocks.
    pub fn publish(&self, events: Vec<Arc<ChangeEvent>>, revision: u64, index: u64) {
        for event in events {
            // An error only means nobody is subscribed.
            let _ = self.tx.send(HubMsg::Event(event));
        }
        self.applied.send_replace(AppliedPos { revision, index });
    }

    /// Called after a Raft snapshot replaced the state.
    pub fn reset(&self, revision: u64, index: u64) {
        let _ = self.tx.send(HubMsg::Reset(revision));
        self.applied.send_replace(AppliedPos { revision, index });
    }

    pub fn applied(&self) -> AppliedPos {
        *self.applied.borrow()
    }

    pub fn applied_rx(&self) -> watch::Receiver<AppliedPos> {
        self.applied.subscribe()
    }

    /// Ends every subscription with `Error::Unavailable`.
    pub fn shutdown(&self) {
        // The flag first: a subscription that starts listening after this
        // message was sent checks the flag before it waits.
        self.shutdown.send_replace(true);
        let _ = self.tx.send(HubMsg::Shutdown);
    }
}

/// One watch: yields [`WatchItem`]s in revision order, with no gap and no duplicate.
pub struct Subscription {
    shared: Arc<Shared>,
    targets: Vec<Target>,
    rx: broadcast::Receiver<HubMsg>,
    shutdown: watch::Receiver<bool>,
    /// Every revision below this one has been processed (delivered or filtered out).
    next_rev: u64,
    pending: VecDeque<WatchItem>,
    snapshot_due: Option<&'static str>,
    last_sent: Instant,
    /// When the next progress event is due. Kept from call to call: moving
    /// a registered timer later is cheap, registering a new one per event
    /// (for every subscriber) is not.
    progress_timer: Pin<Box<Sleep>>,
}

impl Subscription {
    /// Starts a subscription from `start_revision` (inclusive; 0 = snapshot first).
    pub(crate) fn start(
        shared: Arc<Shared>,
        targets: Vec<Target>,
        start_revision: u64,
    ) -> Result<Self> {
        // Subscribe before reading sled: see the module docs.
        let rx = shared.hub.tx.subscribe();
        let shutdown = shared.hub.shutdown.subscribe();
        let progress_interval = shared.hub.progress_interval;
        let current = ApplyCtx::stored_revision(&shared.store)?;
        if start_revision > current + 1 {
            return Err(Error::OutOfRange {
                requested: start_revision,
                current,
            });
        }
        let mut sub = Subscription {
            shared,
            targets,
            rx,
            shutdown,
            next_rev: start_revision.max(1),
            pending: VecDeque::new(),
            snapshot_due: None,
            last_sent: Instant::now(),
            progress_timer: Box::pin(tokio::time::sleep(progress_interval)),
        };
        if start_revision == 0 {
            sub.snapshot_due = Some("start");
        } else {
            sub.catch_up_to(current)?;
        }
        Ok(sub)
    }

    /// The next item: a change, a snapshot, or (when nothing was sent for the
    /// progress interval) a progress event. Errors when the node shuts down.
    pub async fn next(&mut self) -> Result<WatchItem> {
        loop {
            if let Some(reason) = self.snapshot_due.take() {
                let (revision, entries) = self.snapshot()?;
                self.pending.clear();
                self.next_rev = revision + 1;
                self.last_sent = Instant::now();
                return Ok(WatchItem::Snapshot {
                    revision,
                    entries,
                    reason,
                });
            }
            if let Some(item) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Ok(item);
            }
            if *self.shutdown.borrow() {
                return Err(Error::Unavailable("node is shutting down".into()));
            }
            let deadline = self.last_sent + self.shared.hub.progress_interval;
            if self.progress_timer.deadline() != deadline {
                self.progress_timer.as_mut().reset(deadline);
            }
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Ok(HubMsg::Event(event)) => self.on_event(event)?,
                    Ok(HubMsg::Reset(revision)) => {
                        if revision >= self.next_rev {
                            self.snapshot_due = Some("raft-snapshot");
                        }
                    }
                    // The flag is checked at the top of the loop.
                    Ok(HubMsg::Shutdown) => {}
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::debug!(skipped, next_revision = self.next_rev, "watcher lagged; catching up from the replay window");
                        let current = ApplyCtx::stored_revision(&self.shared.store)?;
                        self.catch_up_to(current)?;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(Error::Unavailable("node is shutting down".into()));
                    }
                },
                () = self.progress_timer.as_mut() => {
                    self.last_sent = Instant::now();
                    return Ok(WatchItem::Progress(self.next_rev - 1));
                }
            }
        }
    }

    /// The revision up to which everything matching has been delivered or queued.
    pub fn progress_revision(&self) -> u64 {
        self.next_rev - 1
    }

    fn on_event(&mut self, event: Arc<ChangeEvent>) -> Result<()> {
        if event.revision < self.next_rev {
            return Ok(());
        }
        if event.revision > self.next_rev {
            self.catch_up_to(event.revision - 1)?;
            if self.snapshot_due.is_some() {
                return Ok(());
            }
        }
        self.deliver(event);
        Ok(())
    }

    fn deliver(&mut self, event: Arc<ChangeEvent>) {
        self.next_rev = event.revision + 1;
        if let Some(item) = filter(&self.targets, event) {
            self.pending.push_back(WatchItem::Change(item));
        }
    }

    /// Delivers revisions `next_rev..=to` from the replay window, or schedules a
    /// snapshot if the window no longer reaches back to `next_rev`.
    fn catch_up_to(&mut self, to: u64) -> Result<()> {
        if to < self.next_rev {
            return Ok(());
        }
        let store = &self.shared.store;
        let mut expected = self.next_rev;
        let mut events = Vec::new();
        for (k, v) in store.range(keys::replay(self.next_rev)..=keys::replay(to))? {
            if keys::replay_revision(&k) != Some(expected) {
                break;
            }
            events.push(Arc::new(decode::<ChangeEvent>(&v)?));
            expected += 1;
        }
        if expected != to + 1 {
            tracing::debug!(
                from = self.next_rev,
                to,
                "start revision is older than the replay window; sending a snapshot"
            );
            self.snapshot_due = Some("compacted");
            return Ok(());
        }
        for event in events {
            self.deliver(event);
        }
        Ok(())
    }

    /// Every live namespace in range, at one revision.
    fn snapshot(&self) -> Result<(u64, Vec<DocEntry>)> {
        let shared = &self.shared;
        let _guard = shared.commit_lock.read().unwrap_or_else(|e| e.into_inner());
        let revision = ApplyCtx::stored_revision(&shared.store)?;
        let mut found: BTreeMap<NsPath, DocRecord> = BTreeMap::new();
        for target in &self.targets {
            match target {
                Target::Namespace(path) => {
                    if let Some(v) = shared.store.get(keys::doc(path))? {
                        let rec: DocRecord = decode(&v)?;
                        if rec.value.is_some() {
                            found.insert(path.clone(), rec);
                        }
                    }
                }
                Target::Prefix(env) => {
                    for (k, v) in shared
                        .store
                        .scan_prefix(keys::doc_prefix(&env.tenant, &env.env))?
                    {
                        let rec: DocRecord = decode(&v)?;
                        if let (Some(path), true) = (keys::doc_path(&k), rec.value.is_some()) {
                            found.insert(path, rec);
                        }
                    }
                }
            }
        }
        let entries = found
            .into_iter()
            .map(|(path, record)| DocEntry { path, record })
            .collect();
        Ok((revision, entries))
    }
}

/// The part of `event` that `targets` watch; `None` if nothing matches. The
/// shared `Arc` is reused when every change matches.
fn filter(targets: &[Target], event: Arc<ChangeEvent>) -> Option<Arc<ChangeEvent>> {
    let matches = |path: &str| targets.iter().any(|t| t.matches_str(path));
    let n = event.changes.iter().filter(|c| matches(&c.path)).count();
    if n == 0 {
        None
    } else if n == event.changes.len() {
        Some(event)
    } else {
        let mut partial = (*event).clone();
        partial.changes.retain(|c| matches(&c.path));
        Some(Arc::new(partial))
    }
}
