//! The task behind a [`WatchStream`]: subscribes, decodes, merges snapshot
//! chunks, drops anything already seen, forwards acks and refusals, and on a
//! broken stream resubscribes elsewhere from `last_seen + 1`. It is not
//! spawned: the stream polls it from its own `poll_next`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_request::Request;
use raftconf_schema::Target;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tonic::Code;

use crate::error::one_line_status;
use crate::types::{parse_optional_value, ChangeKind, NamespaceEntry};
use crate::watch::{Change, Control, WatchEvent, WatchStream};
use crate::watch_link::{Link, Received};
use crate::{Client, Error, Result};

/// Events buffered between the task and the caller. Small on purpose: a slow
/// caller should slow the stream down (the server catches slow subscribers up
/// from its replay window), not grow a queue here.
const EVENT_BUFFER: usize = 16;

impl Client {
    /// Opens a watch on `targets` (`tenant/env/namespace` paths and
    /// `tenant/env/` prefixes) from `from_revision` (inclusive; 0 = a snapshot
    /// of the current state, then every change after it).
    ///
    /// The targets are checked here; the connection is made by the stream's
    /// background task, which keeps reconnecting until the stream is dropped or
    /// the server refuses the subscription.
    pub async fn watch<I, S>(&self, targets: I, from_revision: u64) -> Result<WatchStream>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.watch_counted(targets, from_revision, Arc::default())
            .await
    }

    /// [`Client::watch`], counting reconnects in `reconnects` (shared with
    /// whoever reports them, across streams that replace one another).
    pub(crate) async fn watch_counted<I, S>(
        &self,
        targets: I,
        from_revision: u64,
        reconnects: Arc<AtomicU64>,
    ) -> Result<WatchStream>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut paths = Vec::new();
        for target in targets {
            let target: String = target.into();
            paths.push(target.parse::<Target>()?.to_string());
        }
        if paths.is_empty() {
            return Err(Error::InvalidArgument(
                "a watch needs at least one path or prefix".into(),
            ));
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let last_error = Arc::new(Mutex::new(None));
        let task = WatchTask {
            client: self.clone(),
            paths,
            from_revision,
            events: events_tx,
            control: control_rx,
            guard: RevisionGuard::default(),
            last_acked: 0,
            ack_waiting: None,
            refusals: BTreeMap::new(),
            last_error: last_error.clone(),
            reconnects: reconnects.clone(),
        };
        Ok(WatchStream::new(
            events_rx,
            control_tx,
            last_error,
            reconnects,
            Box::pin(task.run()),
        ))
    }
}

/// Drops anything at or below the highest revision already yielded, so the
/// caller sees revisions strictly increase whatever reconnects replay.
#[derive(Debug, Default)]
pub(crate) struct RevisionGuard {
    last_seen: Option<u64>,
}

impl RevisionGuard {
    /// Where to (re)subscribe: right after the last revision yielded, or the
    /// caller's start revision if nothing was yielded yet.
    pub(crate) fn resume_from(&self, from_revision: u64) -> u64 {
        self.last_seen.map_or(from_revision, |r| r + 1)
    }

    /// Whether anything was yielded yet (later subscriptions are resumes).
    pub(crate) fn has_seen(&self) -> bool {
        self.last_seen.is_some()
    }

    /// Whether `event` may be yielded; records its revision if so.
    pub(crate) fn admit(&mut self, event: &WatchEvent) -> bool {
        let revision = event.revision();
        if let Some(last_seen) = self.last_seen {
            if revision <= last_seen {
                if matches!(event, WatchEvent::Progress { .. }) {
                    // A progress event at the resume point is normal after a reconnect.
                    tracing::trace!(revision, last_seen, "progress already covered");
                } else {
                    tracing::warn!(
                        revision,
                        last_seen,
                        "dropping a watch event at or below the last revision seen"
                    );
                }
                return false;
            }
        }
        self.last_seen = Some(revision);
        true
    }
}

/// Merges the chunks of one snapshot into one event.
#[derive(Debug, Default)]
pub(crate) struct SnapshotAssembler {
    partial: Option<(u64, Vec<NamespaceEntry>, String)>,
}

impl SnapshotAssembler {
    /// Adds a chunk; returns the whole snapshot with its last chunk. A chunk of
    /// another revision while one is being assembled is a protocol error.
    pub(crate) fn push(
        &mut self,
        revision: u64,
        entries: Vec<NamespaceEntry>,
        last_chunk: bool,
        reason: String,
    ) -> std::result::Result<Option<WatchEvent>, String> {
        let (rev, mut all, reason) = match self.partial.take() {
            Some((rev, _, _)) if rev != revision => {
                return Err(format!(
                    "snapshot chunk at revision {revision} inside a snapshot at revision {rev}"
                ))
            }
            Some((rev, all, reason)) => (rev, all, reason),
            None => (revision, Vec::new(), reason),
        };
        all.extend(entries);
        if last_chunk {
            all.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(Some(WatchEvent::Snapshot {
                revision: rev,
                entries: all,
                reason,
            }))
        } else {
            self.partial = Some((rev, all, reason));
            Ok(None)
        }
    }

    /// Whether a snapshot is half received (any other event now is a protocol error).
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }
}

/// Why one connection's session ended.
enum SessionEnd {
    /// The caller dropped the stream.
    CallerGone,
    /// The server refused the subscription: tell the caller and stop.
    Fatal(Error),
    /// Reconnect and resume.
    Broken { delivered: bool, reason: String },
    /// The watch left its shared stream, its caller
    /// [`INBOX`](crate::watch_link::INBOX) events behind:
    /// join again at once, from the last revision yielded. Nothing broke.
    FellBehind,
}

struct WatchTask {
    client: Client,
    paths: Vec<String>,
    from_revision: u64,
    events: mpsc::Sender<Result<WatchEvent>>,
    control: mpsc::UnboundedReceiver<Control>,
    guard: RevisionGuard,
    /// The highest revision acknowledged to a server, re-sent after a reconnect.
    last_acked: u64,
    /// The highest revision acknowledged by the caller and not yet sent
    /// (held for up to `ClientOptions::ack_delay`).
    ack_waiting: Option<u64>,
    /// The latest refusal of each namespace, re-sent after a reconnect: the
    /// node that recorded it may be gone, and without it the new node would
    /// count this subscriber as current.
    refusals: BTreeMap<String, (u64, Vec<String>)>,
    last_error: Arc<Mutex<Option<String>>>,
    /// Broken sessions so far.
    reconnects: Arc<AtomicU64>,
}

/// Statuses that retrying cannot fix. `OUT_OF_RANGE` is one only for the
/// caller's own start revision: a resume from `last_seen + 1` is a revision
/// some node already delivered, so a node answering it is out of range is
/// merely behind (a fresh leader, a restarted node) and another try will do.
fn is_fatal(code: Code, resuming: bool) -> bool {
    match code {
        Code::OutOfRange => !resuming,
        _ => matches!(
            code,
            Code::InvalidArgument
                | Code::NotFound
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::Unimplemented
        ),
    }
}

impl WatchTask {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let start = self.guard.resume_from(self.from_revision);
            let endpoints = self.client.endpoint_set();
            let Some(addr) = endpoints.order(false).into_iter().next() else {
                return;
            };
            match self.session(&addr, start).await {
                SessionEnd::CallerGone => return,
                SessionEnd::FellBehind => {
                    tracing::debug!(
                        endpoint = %addr,
                        resume_from = self.guard.resume_from(self.from_revision),
                        "watch fell behind its shared stream; joining again"
                    );
                    continue;
                }
                SessionEnd::Fatal(err) => {
                    tracing::warn!(endpoint = %addr, error = %err, "watch refused by the server");
                    let _ = self.events.send(Err(err)).await;
                    return;
                }
                SessionEnd::Broken { delivered, reason } => {
                    failures = if delivered { 0 } else { failures + 1 };
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        endpoint = %addr,
                        resume_from = self.guard.resume_from(self.from_revision),
                        failures,
                        %reason,
                        "watch disconnected; reconnecting"
                    );
                    *self
                        .last_error
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Some(format!("{addr}: {reason}"));
                    self.client.endpoint_set().mark_bad(&addr);
                }
            }
            let pause = self.client.options().backoff_for(failures);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.events.closed() => return,
            }
        }
    }

    /// One subscription on one endpoint, until it breaks or the caller leaves.
    async fn session(&mut self, addr: &str, start: u64) -> SessionEnd {
        let options = self.client.options().clone();
        let broken = |reason: String| SessionEnd::Broken {
            delivered: false,
            reason,
        };
        let channel = match self.client.endpoint_set().channel(addr) {
            Ok(channel) => channel,
            Err(e) => return broken(e.to_string()),
        };
        let subscribe = Request::Subscribe(pb::Subscribe {
            paths: self.paths.clone(),
            start_revision: start,
            client_id: self.client.client_id().to_string(),
            labels: options.labels.clone().into_iter().collect(),
            watch_id: 0,
        });
        // What was acknowledged, including an ack still waiting to be sent,
        // and the refusals the server may not have: sent again.
        let mut then = Vec::new();
        let acked = self.ack_waiting.take().unwrap_or(0).max(self.last_acked);
        if acked > 0 {
            then.push(Request::Ack(pb::Ack {
                revision: acked,
                watch_id: 0,
            }));
            self.last_acked = acked;
        }
        for (path, (revision, reasons)) in &self.refusals {
            then.push(Request::Refusal(pb::Refusal {
                revision: *revision,
                path: path.clone(),
                reasons: reasons.clone(),
                watch_id: 0,
            }));
        }
        tracing::debug!(endpoint = addr, start, paths = ?self.paths, "subscribing");
        let shared = self.client.inner.shared_streams.as_ref();
        let first = shared.map(|s| s.first_watch(addr)).unwrap_or(Ok(None));
        let mut link = match (shared, first) {
            (Some(shared), Err(())) => Link::Shared(shared.join(
                addr,
                &channel,
                options.max_response_bytes,
                options.request_timeout,
                subscribe,
                then,
            )),
            (_, first) => {
                let first = first.ok().flatten();
                let opened = tokio::select! {
                    r = tokio::time::timeout(
                        options.request_timeout,
                        Link::own(channel, options.max_response_bytes, subscribe, then, first),
                    ) => r,
                    _ = self.events.closed() => return SessionEnd::CallerGone,
                };
                match opened {
                    Err(_) => {
                        return broken(format!("no answer within {:?}", options.request_timeout))
                    }
                    Ok(Err(status)) => {
                        self.client
                            .endpoint_set()
                            .note_leader_metadata(status.metadata());
                        return if is_fatal(status.code(), self.guard.has_seen())
                            && std::error::Error::source(&status).is_none()
                        {
                            SessionEnd::Fatal(status.into())
                        } else {
                            broken(one_line_status(&status))
                        };
                    }
                    Ok(Ok(link)) => link,
                }
            }
        };
        let mut assembler = SnapshotAssembler::default();
        let mut delivered = false;
        // When the waiting ack is due (polled only while one waits).
        let ack_delay = options.ack_delay;
        let ack_due = tokio::time::sleep(ack_delay);
        tokio::pin!(ack_due);
        loop {
            tokio::select! {
                () = &mut ack_due, if self.ack_waiting.is_some() => {
                    self.send_waiting_ack(&link);
                }
                message = link.message() => {
                    let response = match message {
                        Ok(Received::Response(response)) => response,
                        Ok(Received::Ended) => return SessionEnd::Broken {
                            delivered,
                            reason: "the server ended the stream".into(),
                        },
                        Ok(Received::FellBehind) => return SessionEnd::FellBehind,
                        Err(status) => {
                            return if is_fatal(status.code(), self.guard.has_seen())
                                && std::error::Error::source(&status).is_none()
                            {
                                SessionEnd::Fatal(status.into())
                            } else {
                                SessionEnd::Broken {
                                    delivered,
                                    reason: one_line_status(&status),
                                }
                            };
                        }
                    };
                    if let Some(header) = &response.header {
                        self.client.endpoint_set().note_leader(&header.leader_addr);
                    }
                    let event = match decode(response, &mut assembler) {
                        Ok(Some(event)) => event,
                        Ok(None) => continue,
                        Err(reason) => return SessionEnd::Broken { delivered, reason },
                    };
                    if !self.guard.admit(&event) {
                        continue;
                    }
                    // A serializable read after this must not show older state.
                    self.client
                        .inner
                        .seen_revision
                        .fetch_max(event.revision(), Ordering::Relaxed);
                    if self.events.send(Ok(event)).await.is_err() {
                        return SessionEnd::CallerGone;
                    }
                    if !delivered {
                        // Once per session: this endpoint serves.
                        self.client.endpoint_set().mark_good(addr);
                        delivered = true;
                    }
                }
                // Taken without registering for a wake-up: the caller sends
                // them from its own side and then polls this task (see
                // `WatchStream::poll_next`).
                control = std::future::poll_fn(|_| match self.control.try_recv() {
                    Ok(control) => Poll::Ready(Some(control)),
                    Err(TryRecvError::Empty) => Poll::Pending,
                    Err(TryRecvError::Disconnected) => Poll::Ready(None),
                }) => {
                    let Some(control) = control else {
                        return SessionEnd::CallerGone;
                    };
                    if matches!(control, Control::Ack(_)) && self.ack_waiting.is_none() {
                        ack_due
                            .as_mut()
                            .reset(tokio::time::Instant::now() + ack_delay);
                    }
                    self.forward(&link, control);
                    if ack_delay.is_zero() {
                        self.send_waiting_ack(&link);
                    }
                }
            }
        }
    }

    /// Records an ack to send once the ack delay has passed, or sends a
    /// refusal on the current connection (after the ack waiting, so the
    /// server sees them in the caller's order). Never blocks: if the outbound
    /// buffer is full, an ack is dropped (a later one covers it).
    fn forward(&mut self, link: &Link, control: Control) {
        match control {
            Control::Ack(revision) => {
                if revision > self.last_acked {
                    self.ack_waiting = Some(self.ack_waiting.unwrap_or(0).max(revision));
                }
            }
            Control::Refuse {
                revision,
                path,
                reasons,
            } => {
                self.send_waiting_ack(link);
                self.refusals
                    .insert(path.clone(), (revision, reasons.clone()));
                let refusal = pb::Refusal {
                    revision,
                    path,
                    reasons,
                    watch_id: 0,
                };
                if !link.send(Request::Refusal(refusal)) {
                    tracing::warn!(revision, "could not send a refusal to the server");
                }
            }
        }
    }

    /// Sends the ack that is waiting, if any.
    fn send_waiting_ack(&mut self, link: &Link) {
        if let Some(revision) = self.ack_waiting.take().filter(|&r| r > self.last_acked) {
            self.send_ack(link, revision);
        }
    }

    /// Queues an ack of `revision`; it counts as sent once queued.
    fn send_ack(&mut self, link: &Link, revision: u64) {
        let ack = pb::Ack {
            revision,
            watch_id: 0,
        };
        if link.send(Request::Ack(ack)) {
            self.last_acked = revision;
        }
    }
}

/// Turns one server message into an event (or nothing, while a snapshot is
/// being assembled). `Err` is a protocol error: the stream is restarted.
pub(crate) fn decode(
    response: pb::WatchResponse,
    assembler: &mut SnapshotAssembler,
) -> std::result::Result<Option<WatchEvent>, String> {
    use pb::watch_response::Event;
    let Some(event) = response.event else {
        tracing::debug!("ignoring a watch message of a kind this client does not know");
        return Ok(None);
    };
    if assembler.in_progress() && !matches!(event, Event::Snapshot(_)) {
        return Err("an event arrived in the middle of a snapshot".into());
    }
    Ok(match event {
        Event::Change(c) => {
            let changes = c
                .changes
                .into_iter()
                .map(|ch| Change {
                    value: lenient_value(&ch.path, c.revision, &ch.value),
                    kind: ChangeKind::from(ch.kind),
                    path: ch.path,
                    version: ch.version,
                })
                .collect();
            Some(WatchEvent::Change {
                revision: c.revision,
                changes,
                author: c.author,
                time_ms: c.time_ms,
                message: c.message,
            })
        }
        Event::Snapshot(s) => {
            let entries = s
                .entries
                .into_iter()
                .map(|e| NamespaceEntry {
                    value: lenient_value(&e.path, e.mod_revision, &e.value),
                    path: e.path,
                    version: e.version,
                    mod_revision: e.mod_revision,
                })
                .collect();
            assembler.push(s.revision, entries, s.last_chunk, s.reason)?
        }
        Event::Progress(p) => Some(WatchEvent::Progress {
            revision: p.revision,
        }),
        // Only a stream of several watches has these; this one has one.
        Event::Canceled(c) => {
            return Err(format!(
                "the server canceled the watch (code {}): {}",
                c.code, c.message
            ))
        }
    })
}

/// A document value; one that is not valid JSON (a server bug) is logged and
/// passed on as `None` so the caller can refuse it rather than the stream loop.
fn lenient_value(path: &str, revision: u64, text: &str) -> Option<serde_json::Value> {
    match parse_optional_value(path, revision, text) {
        Ok(value) => value,
        Err(err) => {
            tracing::warn!(path, revision, error = %err, "watch delivered an unreadable document");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn out_of_range_ends_only_a_first_subscription() {
        assert!(
            super::is_fatal(Code::OutOfRange, false),
            "the caller's own start revision"
        );
        assert!(
            !super::is_fatal(Code::OutOfRange, true),
            "a resume: that node is behind"
        );
        assert!(super::is_fatal(Code::InvalidArgument, true));
        assert!(!super::is_fatal(Code::Unavailable, false));
    }

    use super::*;

    fn progress(revision: u64) -> WatchEvent {
        WatchEvent::Progress { revision }
    }

    fn change(revision: u64) -> WatchEvent {
        WatchEvent::Change {
            revision,
            changes: vec![],
            author: String::new(),
            time_ms: 0,
            message: String::new(),
        }
    }

    #[test]
    fn guard_drops_duplicates_and_reordered_events() {
        let mut guard = RevisionGuard::default();
        assert_eq!(guard.resume_from(0), 0, "nothing seen: the caller's start");
        assert_eq!(guard.resume_from(7), 7);
        assert!(guard.admit(&change(5)));
        assert!(!guard.admit(&change(5)), "duplicate");
        assert!(!guard.admit(&change(3)), "older");
        assert!(guard.admit(&change(6)));
        assert!(!guard.admit(&progress(6)), "progress at the last revision");
        assert!(guard.admit(&progress(9)));
        assert_eq!(guard.resume_from(0), 10, "resume after the last yielded");
        assert!(!guard.admit(&change(8)), "covered by progress 9");
        assert!(guard.admit(&change(10)));
    }

    fn entry(path: &str) -> NamespaceEntry {
        NamespaceEntry {
            path: path.into(),
            version: 1,
            mod_revision: 1,
            value: Some(serde_json::json!({})),
        }
    }

    #[test]
    fn snapshot_chunks_merge_into_one_event() {
        let mut a = SnapshotAssembler::default();
        assert_eq!(
            a.push(4, vec![entry("t/e/b")], false, "start".into()),
            Ok(None)
        );
        assert!(a.in_progress());
        assert_eq!(a.push(4, vec![], false, "start".into()), Ok(None));
        let done = a
            .push(4, vec![entry("t/e/a")], true, "start".into())
            .expect("same revision");
        assert_eq!(
            done,
            Some(WatchEvent::Snapshot {
                revision: 4,
                entries: vec![entry("t/e/a"), entry("t/e/b")],
                reason: "start".into(),
            })
        );
        assert!(!a.in_progress());
        assert_eq!(
            a.push(5, vec![], true, "compacted".into()),
            Ok(Some(WatchEvent::Snapshot {
                revision: 5,
                entries: vec![],
                reason: "compacted".into()
            })),
            "a one-chunk snapshot"
        );
        a.push(6, vec![], false, "start".into())
            .expect("first chunk");
        assert!(a.push(7, vec![], true, "start".into()).is_err());
    }

    fn response(event: pb::watch_response::Event) -> pb::WatchResponse {
        pb::WatchResponse {
            header: None,
            event: Some(event),
            watch_ids: Vec::new(),
        }
    }

    #[test]
    fn decode_converts_and_refuses_interleaving() {
        use pb::watch_response::Event;
        let mut a = SnapshotAssembler::default();
        let change = Event::Change(pb::ChangeEvent {
            revision: 3,
            changes: vec![
                pb::Change {
                    kind: pb::ChangeKind::Put as i32,
                    path: "t/e/n".into(),
                    version: 2,
                    value: r#"{"a":1}"#.into(),
                },
                pb::Change {
                    kind: pb::ChangeKind::Delete as i32,
                    path: "t/e/m".into(),
                    version: 5,
                    value: String::new(),
                },
            ],
            author: "ops".into(),
            time_ms: 1,
            message: "m".into(),
        });
        match decode(response(change.clone()), &mut a) {
            Ok(Some(WatchEvent::Change {
                revision, changes, ..
            })) => {
                assert_eq!(revision, 3);
                assert_eq!(changes[0].kind, ChangeKind::Put);
                assert_eq!(changes[0].value, Some(serde_json::json!({"a": 1})));
                assert_eq!(changes[1].kind, ChangeKind::Delete);
                assert_eq!(changes[1].value, None);
            }
            other => panic!("unexpected {other:?}"),
        }
        let chunk = Event::Snapshot(pb::SnapshotEvent {
            revision: 9,
            entries: vec![],
            last_chunk: false,
            reason: "start".into(),
        });
        assert_eq!(decode(response(chunk), &mut a), Ok(None));
        assert!(decode(response(change), &mut a).is_err());
        let unknown = pb::WatchResponse {
            header: None,
            event: None,
            watch_ids: Vec::new(),
        };
        assert_eq!(decode(unknown, &mut SnapshotAssembler::default()), Ok(None));
    }

    #[tokio::test]
    async fn a_watch_on_a_dead_cluster_keeps_trying_and_stops_when_dropped() {
        // Bound but not listening: connecting is refused, and no other socket
        // can take the port while `held` lives (a released port could be).
        let held = tokio::net::TcpSocket::new_v4().expect("socket");
        held.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let port = held.local_addr().expect("bound").port();
        let options = crate::ClientOptions::default()
            .backoff(
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(20),
            )
            .connect_timeout(std::time::Duration::from_millis(200));
        let client = Client::connect_with([format!("127.0.0.1:{port}")], options)
            .await
            .expect("valid endpoint");
        assert!(client.watch(["not a path"], 0).await.is_err());
        let mut stream = client.watch(["t/e/n"], 0).await.expect("valid target");
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
        assert!(waited.is_err(), "no event, no error: it keeps reconnecting");
        let last = stream.last_error().expect("a reconnect reason");
        assert!(last.contains(&port.to_string()), "{last}");
    }
}
