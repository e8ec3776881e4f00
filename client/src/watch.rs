//! Watch streams: [`WatchStream`] yields [`WatchEvent`]s in strictly increasing
//! revision order, across reconnects, and carries acks and refusals back to
//! the server.
//!
//! The work behind a stream (see `watch_task`: subscribe, decode, reconnect,
//! send acks) is a future that [`WatchStream`] polls inside its own
//! `poll_next`, on the caller's task: an event goes from the connection to the
//! caller with one wake-up, not three (connection → a task of its own →
//! caller, and the caller's ack back to that task). A stream that is not
//! polled does nothing; dropping it ends the subscription.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::types::{ChangeKind, NamespaceEntry};
use crate::Result;

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// Everything one revision changed in the watched range (a transaction is one event).
    Change {
        /// The revision of the change.
        revision: u64,
        /// The namespaces it touched.
        changes: Vec<Change>,
        /// Who made it.
        author: String,
        /// When, in milliseconds since the Unix epoch.
        time_ms: i64,
        /// Why.
        message: String,
    },
    /// The whole watched range at one revision: every namespace that exists then
    /// (one that is absent does not exist). Sent first for a watch from revision
    /// 0, and when the server cannot replay from where the stream was (the
    /// revisions were compacted away, or the node jumped ahead by a Raft
    /// snapshot). The server may send it in chunks; they are merged here.
    Snapshot {
        /// The revision the snapshot shows.
        revision: u64,
        /// Every namespace of the watched range, sorted by path.
        entries: Vec<NamespaceEntry>,
        /// Why the server sent it: "start", "compacted" or "raft-snapshot".
        reason: String,
    },
    /// Everything matching up to `revision` has been delivered.
    Progress {
        /// The revision reached.
        revision: u64,
    },
}

impl WatchEvent {
    /// The event's revision.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Change { revision, .. }
            | WatchEvent::Snapshot { revision, .. }
            | WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// One namespace's change within a [`WatchEvent::Change`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Put, delete, or a schema set or deleted for the namespace
    /// ([`ChangeKind::SchemaSet`], [`ChangeKind::SchemaDelete`]: one change
    /// per environment of the tenant). Open: newer servers may send more kinds.
    pub kind: ChangeKind,
    /// `tenant/env/namespace`.
    pub path: String,
    /// The namespace's version after the change; for a schema change, the
    /// schema's version.
    pub version: u64,
    /// The whole new document; for a schema set, the schema; `None` for a
    /// delete of either.
    pub value: Option<Value>,
}

/// A message from the caller's half to the task, forwarded to the server.
/// The task takes them with `try_recv` when it is next polled (which is from
/// the caller's `poll_next`), so sending one wakes nothing.
#[derive(Debug)]
pub(crate) enum Control {
    Ack(u64),
    Refuse {
        revision: u64,
        path: String,
        reasons: Vec<String>,
    },
}

/// A resumable watch. Yields `Result<WatchEvent>`; an `Err` is final (the
/// server refused the subscription: bad path, unknown namespace, start
/// revision out of range) and is followed by the end of the stream. Broken
/// connections are not errors: the stream reconnects by itself (with backoff,
/// to another endpoint) and resumes after the last revision it yielded.
///
/// Guarantees: revisions strictly increase and none repeats, whatever the
/// server or the reconnects do (anything at or below the last yielded revision
/// is dropped and logged).
///
/// Each event is acknowledged to the server (`Ack`) when the caller asks for
/// the next one (sent after [`crate::ClientOptions::ack_delay`], one ack for
/// all that time); [`WatchStream::ack`] acknowledges earlier, and
/// [`WatchStream::refuse`] reports a document the caller could not use instead.
///
/// The stream does its work (connecting, reconnecting, sending acks and
/// refusals) while it is polled, like any Rust stream: keep asking for the
/// next event, as a reload loop does. One that is left unpolled holds its
/// connection without reading it, and the server ends it as a stuck subscriber.
///
/// ```no_run
/// use raftconf_client::{Client, WatchEvent};
///
/// # async fn example() -> Result<(), raftconf_client::Error> {
/// let client = Client::connect(["127.0.0.1:7070"]).await?;
/// let mut stream = client.watch(["payments/prod/"], 0).await?;
/// while let Some(event) = stream.next().await {
///     match event? {
///         WatchEvent::Snapshot { revision, entries, .. } => {
///             println!("{} namespaces at revision {revision}", entries.len())
///         }
///         WatchEvent::Change { revision, changes, .. } => {
///             for c in changes {
///                 println!("{revision}: {:?} {}", c.kind, c.path)
///             }
///         }
///         WatchEvent::Progress { .. } => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct WatchStream {
    events: mpsc::Receiver<Result<WatchEvent>>,
    control: mpsc::UnboundedSender<Control>,
    /// The revision of the last event handed out, acknowledged when the caller
    /// comes back for the next one.
    pending_ack: Option<u64>,
    /// The last reason the stream had to reconnect, for diagnostics.
    last_error: Arc<Mutex<Option<String>>>,
    /// Broken connections so far (each followed by a resume elsewhere).
    reconnects: Arc<AtomicU64>,
    /// The task's future (see `watch_task`), polled from `poll_next`; `None`
    /// once it ended (the server refused the subscription).
    task: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("pending_ack", &self.pending_ack)
            .field("last_error", &self.last_error())
            .finish()
    }
}

impl WatchStream {
    pub(crate) fn new(
        events: mpsc::Receiver<Result<WatchEvent>>,
        control: mpsc::UnboundedSender<Control>,
        last_error: Arc<Mutex<Option<String>>>,
        reconnects: Arc<AtomicU64>,
        task: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Self {
        WatchStream {
            events,
            control,
            pending_ack: None,
            last_error,
            reconnects,
            task: Some(task),
        }
    }

    /// The next event; `None` when the stream ended (after a final error).
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Tells the server everything up to `revision` has been applied (sent
    /// while the stream is next polled).
    pub fn ack(&mut self, revision: u64) {
        if self.pending_ack.is_some_and(|r| r <= revision) {
            self.pending_ack = None;
        }
        let _ = self.control.send(Control::Ack(revision));
    }

    /// Tells the server the document at `revision` (the revision that wrote
    /// it) was refused, and why. The event last yielded is then not
    /// acknowledged; a later ack covers it. Sent while the stream is next polled.
    pub fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>) {
        self.pending_ack = None;
        let _ = self.control.send(Control::Refuse {
            revision,
            path: path.to_string(),
            reasons,
        });
    }

    /// How many times the connection broke and the stream resubscribed.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Why the stream last had to reconnect, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl WatchStream {
    /// The next event the task queued, if any; `Ready(None)` once the task
    /// ended and everything it queued was taken.
    fn take_queued(&mut self) -> Poll<Option<Result<WatchEvent>>> {
        match self.events.try_recv() {
            Ok(item) => {
                if let Ok(event) = &item {
                    self.pending_ack = Some(event.revision());
                }
                Poll::Ready(Some(item))
            }
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // Asking for the next event means the previous one was dealt with.
        if let Some(revision) = this.pending_ack.take() {
            let _ = this.control.send(Control::Ack(revision));
        }
        if let Poll::Ready(item) = this.take_queued() {
            return Poll::Ready(item);
        }
        // Nothing queued: run the task until it queues something or waits
        // (on the connection, a timer or a back-off, each of which wakes this
        // caller's task). The queue is read with `try_recv`, so an event the
        // task queues here wakes nothing.
        if let Some(task) = this.task.as_mut() {
            if task.as_mut().poll(cx).is_ready() {
                // Dropping it closes the queue's sending half: what it queued
                // is still taken below, then the stream ends.
                this.task = None;
            }
        }
        this.take_queued()
    }
}
