//! The `Watch` service: one bidirectional stream per subscriber, carrying
//! one watch or several.
//!
//! The first client message must be a `Subscribe`. Each watch has a *pump*
//! that takes items from the node's [`Subscription`] and queues
//! `WatchResponse`s into the watch's bounded channel (run with the other pumps
//! of the same client connection, see [`super::pump_group`]; a write's event
//! is encoded once for all its subscribers, see [`super::shared_events`]).
//! A *reader* task records the client's acks and refusals in the
//! [`crate::delivery::DeliveryRegistry`] and, on a stream of several watches,
//! starts and cancels them as the client asks.
//!
//! The response stream ([`OutboundStream`]) takes the watches' queues in turn.
//! On a stream of several it sends an event that several of its watches have
//! queued (the same shared bytes) once, with all their ids. It tracks how far
//! a single watch has been served, so that when the server ends the stream —
//! the subscriber did not drain it within the send timeout
//! (`RESOURCE_EXHAUSTED`), the node shuts down (`UNAVAILABLE`) — the final
//! status names the revision to resume from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use raftconf_api::codec::WatchReply;
use raftconf_api::shared_watch::watch_server::Watch;
use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_request::Request as Incoming;
use raftconf_api::v1::watch_response::Event;
use raftconf_raft::model::WatchItem;
use raftconf_raft::Subscription;
use raftconf_schema::Target;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, info, instrument, warn};

use super::clients;
use super::pump_group::PumpGroups;
use super::shared_events::SharedEvents;
use super::ServiceContext;
use crate::convert;
use crate::delivery::{DeliveryRegistry, Refused, SubscriptionId};
use crate::status::{self, ApiError, WatchEnd};

/// Most entries in one snapshot chunk.
pub const SNAPSHOT_CHUNK_ENTRIES: usize = 1000;
/// Approximate largest snapshot chunk, in bytes of paths and values.
pub const SNAPSHOT_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Most paths and prefixes in one `Subscribe`.
pub const MAX_WATCH_TARGETS: usize = 1000;
/// Most watches running at once on one stream.
pub const MAX_WATCHES_PER_STREAM: usize = 10_000;

/// The `raftconf.v1.Watch` service.
pub struct WatchService {
    starter: Arc<Starter>,
}

/// Starts watches: what every stream of the service shares.
struct Starter {
    ctx: Arc<ServiceContext>,
    pumps: Arc<PumpGroups>,
    shared: Arc<SharedEvents>,
}

/// A watch that runs: its queue and end for the response stream, and what
/// the reader needs to record its reports and cancel it.
struct Started {
    slot: Slot,
    delivery: SubscriptionId,
    cancel: oneshot::Sender<()>,
}

impl WatchService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        WatchService {
            starter: Arc::new(Starter {
                ctx,
                pumps: Arc::default(),
                shared: Arc::default(),
            }),
        }
    }

    async fn subscribe(
        &self,
        peer: Option<SocketAddr>,
        mut inbound: Streaming<pb::WatchRequest>,
    ) -> Result<OutboundStream, ApiError> {
        let sub = match inbound.message().await {
            Ok(Some(pb::WatchRequest {
                request: Some(Incoming::Subscribe(s)),
            })) => s,
            Ok(Some(_)) => {
                return Err(ApiError::InvalidArgument(
                    "the first message of a watch stream must be a Subscribe".into(),
                ))
            }
            Ok(None) => {
                return Err(ApiError::InvalidArgument(
                    "the watch stream closed before sending a Subscribe".into(),
                ))
            }
            Err(status) => {
                return Err(ApiError::InvalidArgument(format!(
                    "could not read the Subscribe: {}",
                    status.message()
                )))
            }
        };
        let ctx = &self.starter.ctx;
        let header: HeaderFn = {
            let ctx = Arc::clone(ctx);
            Arc::new(move || ctx.current_header())
        };
        if sub.watch_id != 0 {
            // A stream of several watches: the reader starts them all,
            // this first one included, and reports failures per watch.
            let (joins_tx, joins_rx) = mpsc::unbounded_channel();
            let reader = tokio::spawn(serve_several(
                Arc::clone(&self.starter),
                peer,
                sub,
                inbound,
                joins_tx,
            ));
            return Ok(OutboundStream::several(
                joins_rx,
                header,
                reader.abort_handle(),
            ));
        }
        let start_revision = sub.start_revision;
        let client_id = sub.client_id.clone();
        let started = self.starter.start(peer, sub).await?;
        // The single watch is never canceled but by the stream's end.
        let Started { slot, delivery, .. } = started;
        let reader = tokio::spawn(read_reports(
            Arc::clone(&ctx.delivery),
            inbound,
            delivery,
            client_id,
        ));
        Ok(OutboundStream::single(
            slot,
            start_revision,
            header,
            reader.abort_handle(),
        ))
    }
}

impl Starter {
    /// Checks `sub`, subscribes to the node's state, registers the watch for
    /// delivery tracking and starts its pump.
    async fn start(
        &self,
        peer: Option<SocketAddr>,
        sub: pb::Subscribe,
    ) -> Result<Started, ApiError> {
        let targets = parse_targets(&sub.paths)?;
        // The leader knows the newest revision (once it has applied what is
        // committed): beyond it + 1 is out of range at once. Any other node
        // may just be behind: it waits to catch up.
        let node = &self.ctx.node;
        let behind = sub.start_revision.saturating_sub(1) > node.state().revision();
        let wait = self.ctx.settings.watch_catch_up_wait;
        let catch_up = if node.leader().leader_id != Some(node.node_id()) {
            wait
        } else if !behind {
            std::time::Duration::ZERO
        } else {
            // A new leader may not have applied all that is committed yet;
            // once its read index is confirmed the comparison is exact.
            // Unconfirmed, it is just behind like anyone else: wait.
            match node.read_index().await {
                Ok(_) => std::time::Duration::ZERO,
                Err(_) => wait,
            }
        };
        let subscription = node
            .state()
            .watch(targets, sub.start_revision, catch_up)
            .await?;
        debug!(
            client_id = %sub.client_id,
            watch_id = sub.watch_id,
            paths = ?sub.paths,
            start_revision = sub.start_revision,
            "watch subscribed"
        );
        let labels: BTreeMap<String, String> = sub.labels.into_iter().collect();
        let delivery = self
            .ctx
            .delivery
            .subscribed(&sub.client_id, labels, sub.paths.clone());

        let (tx, rx) = mpsc::channel(self.ctx.settings.watch_queue.max(1));
        let (end_tx, end_rx) = oneshot::channel();
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.pumps.spawn(
            peer,
            Box::pin(pump(
                Arc::clone(&self.ctx),
                Arc::clone(&self.shared),
                subscription,
                tx,
                end_tx,
                cancel_rx,
                (delivery, sub.client_id),
            )),
        );
        Ok(Started {
            slot: Slot::new(sub.watch_id, rx, end_rx),
            delivery,
            cancel: cancel_tx,
        })
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = OutboundStream;

    #[instrument(skip_all)]
    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer = request.remote_addr();
        self.starter
            .ctx
            .respond(self.subscribe(peer, request.into_inner()).await)
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn clients(
        &self,
        request: Request<pb::ClientsRequest>,
    ) -> Result<Response<pb::ClientsResponse>, Status> {
        let ctx = &self.starter.ctx;
        ctx.respond(clients::clients(ctx, request.into_inner()).await)
    }
}

/// Parses the paths and prefixes of a `Subscribe`.
pub fn parse_targets(paths: &[String]) -> Result<Vec<Target>, ApiError> {
    if paths.is_empty() {
        return Err(ApiError::InvalidArgument(
            "Subscribe names no path: give tenant/env/namespace paths or tenant/env/ prefixes"
                .into(),
        ));
    }
    if paths.len() > MAX_WATCH_TARGETS {
        return Err(ApiError::InvalidArgument(format!(
            "Subscribe names {} paths, at most {MAX_WATCH_TARGETS} are allowed",
            paths.len()
        )));
    }
    paths
        .iter()
        .map(|p| p.parse::<Target>().map_err(ApiError::from))
        .collect()
}

/// One queued response, and the revision through which the subscriber has
/// everything once it is sent (`None` for a snapshot chunk that is not the last).
#[derive(Debug)]
pub struct Outgoing {
    response: WatchReply,
    completes: Option<u64>,
}

/// Turns one subscription item into the responses that carry it.
fn outgoing(ctx: &ServiceContext, shared: &SharedEvents, item: WatchItem) -> Vec<Outgoing> {
    let header = || Some(ctx.current_header());
    match item {
        WatchItem::Change(ev) => vec![Outgoing {
            response: shared.reply(&ev, || ctx.current_header()),
            completes: Some(ev.revision),
        }],
        WatchItem::Progress(revision) => vec![Outgoing {
            response: WatchReply::message(pb::WatchResponse {
                header: header(),
                event: Some(Event::Progress(pb::ProgressEvent { revision })),
                watch_ids: Vec::new(),
            }),
            completes: Some(revision),
        }],
        WatchItem::Snapshot {
            revision,
            entries,
            reason,
        } => {
            let entries = entries
                .iter()
                .map(|d| convert::namespace_entry(d, true))
                .collect();
            let chunks = chunk_entries(entries, SNAPSHOT_CHUNK_ENTRIES, SNAPSHOT_CHUNK_BYTES);
            let last = chunks.len().saturating_sub(1);
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, entries)| Outgoing {
                    response: WatchReply::message(pb::WatchResponse {
                        header: header(),
                        event: Some(Event::Snapshot(pb::SnapshotEvent {
                            revision,
                            entries,
                            last_chunk: i == last,
                            reason: reason.to_string(),
                        })),
                        watch_ids: Vec::new(),
                    }),
                    completes: (i == last).then_some(revision),
                })
                .collect()
        }
    }
}

/// Splits snapshot entries into chunks of at most `max_entries` entries and
/// about `max_bytes` bytes (a single larger entry gets a chunk of its own).
/// Always at least one chunk, so an empty range still sends its snapshot.
pub fn chunk_entries(
    entries: Vec<pb::NamespaceEntry>,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<pb::NamespaceEntry>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for e in entries {
        let size = e.path.len() + e.value.len() + 16;
        if !current.is_empty() && (current.len() >= max_entries || bytes + size > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(e);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Feeds the subscriber: subscription items → responses → the bounded queue.
async fn pump(
    ctx: Arc<ServiceContext>,
    shared: Arc<SharedEvents>,
    mut sub: Subscription,
    tx: mpsc::Sender<Outgoing>,
    end: oneshot::Sender<WatchEnd>,
    cancel: oneshot::Receiver<()>,
    (id, client_id): (SubscriptionId, String),
) {
    let send_timeout = ctx.settings.watch_send_timeout;
    let mut shutdown = ctx.shutdown.clone();
    let mut leader_lost = ctx.leader_lost.clone();
    // What ends the stream from outside, as one future polled from item to
    // item: its waits are registered once, not again for every event of
    // every subscriber.
    let ended = async {
        tokio::select! {
            _ = shutdown.wait_for(|down| *down) => Some(WatchEnd::ShuttingDown),
            // An error: Raft stopped; shutdown ends the stream then.
            Ok(_) = leader_lost.wait_for(|lost| *lost) => Some(WatchEnd::LeaderLost),
            // The client went away.
            () = tx.closed() => None,
            // The client canceled this watch (a dropped sender cancels nothing).
            Ok(()) = cancel => None,
        }
    };
    tokio::pin!(ended);
    let reason = 'outer: loop {
        let item = tokio::select! {
            biased;
            reason = &mut ended => break reason,
            item = sub.next() => item,
        };
        let item = match item {
            Ok(item) => item,
            Err(_) if *ctx.shutdown.borrow() => break Some(WatchEnd::ShuttingDown),
            Err(e) => {
                let s = ctx.status(ApiError::State(e));
                break Some(WatchEnd::Failed(s.code(), s.message().to_string()));
            }
        };
        for out in outgoing(&ctx, &shared, item) {
            // Room in the queue is the usual case: no timer for it.
            let out = match tx.try_send(out) {
                Ok(()) => continue,
                Err(TrySendError::Closed(_)) => break 'outer None,
                Err(TrySendError::Full(out)) => out,
            };
            let sent = tokio::select! {
                biased;
                reason = &mut ended => break 'outer reason,
                sent = tokio::time::timeout(send_timeout, tx.send(out)) => sent,
            };
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'outer None,
                Err(_) => {
                    warn!(%client_id, ?send_timeout, "watch subscriber too slow; ending its stream");
                    break 'outer Some(WatchEnd::TooSlow);
                }
            }
        }
    };
    debug!(%client_id, ?reason, "watch ended");
    ctx.delivery.disconnected(id);
    if let Some(reason) = reason {
        let _ = end.send(reason);
    }
}

/// Records what the subscriber of a single watch reports until its side of
/// the stream ends.
async fn read_reports(
    delivery: Arc<DeliveryRegistry>,
    mut inbound: Streaming<pb::WatchRequest>,
    id: SubscriptionId,
    client_id: String,
) {
    loop {
        match inbound.message().await {
            Ok(Some(pb::WatchRequest { request: Some(r) })) => match r {
                Incoming::Ack(a) => record_ack(&delivery, id, &client_id, a.revision),
                Incoming::Refusal(r) => record_refusal(&delivery, id, &client_id, r),
                Incoming::Subscribe(_) => {
                    debug!(%client_id, "a second Subscribe on a stream of one watch is ignored");
                }
                Incoming::Cancel(_) => {
                    debug!(%client_id, "a Cancel on a stream of one watch is ignored");
                }
            },
            Ok(Some(pb::WatchRequest { request: None })) => {}
            Ok(None) => break,
            Err(status) => {
                debug!(%client_id, %status, "watch request stream ended");
                break;
            }
        }
    }
}

fn record_ack(delivery: &DeliveryRegistry, id: SubscriptionId, client_id: &str, revision: u64) {
    debug!(%client_id, revision, "watch ack");
    delivery.acked(id, revision);
}

fn record_refusal(
    delivery: &DeliveryRegistry,
    id: SubscriptionId,
    client_id: &str,
    r: pb::Refusal,
) {
    info!(
        %client_id,
        revision = r.revision,
        path = %r.path,
        reasons = ?r.reasons,
        "subscriber refused a document"
    );
    delivery.refused(
        id,
        Refused {
            revision: r.revision,
            path: r.path,
            reasons: r.reasons,
        },
    );
}

/// One watch of a stream of several, as the reader knows it.
enum Known {
    /// Being started; `canceled` once the client canceled it meanwhile. The
    /// client may report on it already (a resuming client re-sends its ack
    /// and refusals right after the `Subscribe`): kept until it runs, as the
    /// delivery registry keeps them (the highest ack, the latest refusal of
    /// each namespace).
    Starting {
        canceled: bool,
        acked: u64,
        refusals: HashMap<String, pb::Refusal>,
    },
    /// Running until `cancel` is used or its pump ends (then it is closed).
    Running {
        delivery: SubscriptionId,
        cancel: oneshot::Sender<()>,
    },
}

impl Known {
    /// Whether its pump may still run (it is being started, or its pump has
    /// not ended).
    fn may_run(&self) -> bool {
        match self {
            Known::Starting { .. } => true,
            Known::Running { cancel, .. } => !cancel.is_closed(),
        }
    }
}

/// The watches of one stream of several, shared by its reader and the tasks
/// starting its watches.
#[derive(Default)]
struct WatchTable {
    /// By id, the ones that may run.
    known: HashMap<u64, Known>,
    /// The highest id a `Subscribe` used: ids are never used twice, so
    /// nothing sent for an old watch can be taken for a new one's.
    highest: u64,
}

type Watches = Arc<Mutex<WatchTable>>;

fn lock(watches: &Watches) -> std::sync::MutexGuard<'_, WatchTable> {
    // Nothing here is left half-changed by a panic.
    watches.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reader of a stream of several watches: starts each `Subscribe`'s
/// watch (in a task of its own, so that one waiting for this node to catch
/// up holds up nothing else), records acks and refusals by watch, and
/// cancels watches, until the client's side of the stream ends.
async fn serve_several(
    starter: Arc<Starter>,
    peer: Option<SocketAddr>,
    first: pb::Subscribe,
    mut inbound: Streaming<pb::WatchRequest>,
    joins: mpsc::UnboundedSender<Join>,
) {
    let client_id = first.client_id.clone();
    let watches: Watches = Arc::default();
    let delivery = Arc::clone(&starter.ctx.delivery);
    let mut next = Some(first);
    loop {
        let request = match next.take() {
            Some(sub) => Incoming::Subscribe(sub),
            None => match inbound.message().await {
                Ok(Some(pb::WatchRequest { request: Some(r) })) => r,
                Ok(Some(pb::WatchRequest { request: None })) => continue,
                Ok(None) => break,
                Err(status) => {
                    debug!(%client_id, %status, "watch request stream ended");
                    break;
                }
            },
        };
        match request {
            Incoming::Subscribe(sub) => {
                let id = sub.watch_id;
                match admit(&watches, id) {
                    Ok(()) => {}
                    Err(NotAdmitted::Watch(status)) => {
                        let _ = joins.send(Join::Canceled(id, Box::new(status)));
                        continue;
                    }
                    // The client misuses ids: nothing it is told about one
                    // watch could be trusted, so the stream ends.
                    Err(NotAdmitted::Stream(status)) => {
                        let _ = joins.send(Join::End(Box::new(status)));
                        break;
                    }
                }
                let (starter, watches, joins) =
                    (Arc::clone(&starter), Arc::clone(&watches), joins.clone());
                let client_id = client_id.clone();
                tokio::spawn(async move {
                    let started = starter.start(peer, sub).await;
                    let known = &mut lock(&watches).known;
                    let (canceled, acked, refusals) = match known.remove(&id) {
                        Some(Known::Starting {
                            canceled,
                            acked,
                            refusals,
                        }) => (canceled, acked, refusals),
                        _ => (false, 0, HashMap::new()),
                    };
                    match started {
                        Err(e) => {
                            let _ = joins.send(Join::Canceled(id, Box::new(starter.ctx.status(e))));
                        }
                        Ok(started) if canceled => {
                            // Dropping `started` ends its pump.
                            drop(started);
                            let _ = joins.send(Join::Canceled(id, Box::new(canceled_by_client())));
                        }
                        Ok(Started {
                            slot,
                            delivery,
                            cancel,
                        }) => {
                            let registry = &starter.ctx.delivery;
                            if acked > 0 {
                                record_ack(registry, delivery, &client_id, acked);
                            }
                            for r in refusals.into_values() {
                                record_refusal(registry, delivery, &client_id, r);
                            }
                            known.insert(id, Known::Running { delivery, cancel });
                            let _ = joins.send(Join::Watch(Box::new(slot)));
                        }
                    }
                });
            }
            Incoming::Ack(a) => match lock(&watches).known.get_mut(&a.watch_id) {
                Some(Known::Running { delivery: d, .. }) => {
                    record_ack(&delivery, *d, &client_id, a.revision)
                }
                Some(Known::Starting { acked, .. }) => *acked = (*acked).max(a.revision),
                None => {}
            },
            Incoming::Refusal(r) => match lock(&watches).known.get_mut(&r.watch_id) {
                Some(Known::Running { delivery: d, .. }) => {
                    record_refusal(&delivery, *d, &client_id, r)
                }
                Some(Known::Starting { refusals, .. }) => {
                    refusals.insert(r.path.clone(), r);
                }
                None => {}
            },
            Incoming::Cancel(c) => {
                let known = &mut lock(&watches).known;
                if let Some(Known::Starting { canceled, .. }) = known.get_mut(&c.watch_id) {
                    // Its start task sees this and stops it.
                    *canceled = true;
                    continue;
                }
                // Its queue closes; the response stream then says so. One
                // that ended already had its `canceled` response (and one
                // never known gets none, as etcd answers an unknown id).
                if let Some(Known::Running { cancel, .. }) = known.remove(&c.watch_id) {
                    let _ = cancel.send(());
                }
            }
        }
    }
}

/// Why a `Subscribe` on a stream of several cannot start its watch.
enum NotAdmitted {
    /// This watch is refused; the others run on.
    Watch(Status),
    /// The client misuses watch ids: the stream ends.
    Stream(Status),
}

/// Whether a `Subscribe` may start watch `id` on a stream of several; if
/// so it is recorded as being started.
fn admit(watches: &Watches, id: u64) -> Result<(), NotAdmitted> {
    if id == 0 {
        return Err(NotAdmitted::Stream(Status::invalid_argument(
            "on a stream of several watches every Subscribe needs a watch_id other than 0",
        )));
    }
    let mut table = lock(watches);
    if id <= table.highest {
        return Err(NotAdmitted::Stream(Status::failed_precondition(format!(
            "watch id {id} is not higher than every watch id before it on this stream ({})",
            table.highest
        ))));
    }
    table.known.retain(|_, w| w.may_run());
    if table.known.len() >= MAX_WATCHES_PER_STREAM {
        return Err(NotAdmitted::Watch(Status::resource_exhausted(format!(
            "this stream already runs {MAX_WATCHES_PER_STREAM} watches, the most one may"
        ))));
    }
    table.highest = id;
    let starting = Known::Starting {
        canceled: false,
        acked: 0,
        refusals: HashMap::new(),
    };
    table.known.insert(id, starting);
    Ok(())
}

fn canceled_by_client() -> Status {
    Status::new(Code::Ok, "canceled by the client")
}

/// What the reader of a stream of several watches hands its response stream.
/// Boxed: the channel allocates room for 32 when it opens.
pub enum Join {
    /// A watch that runs.
    Watch(Box<Slot>),
    /// A watch that will get nothing more (or was never started), and why.
    Canceled(u64, Box<Status>),
    /// The stream ends with this status.
    End(Box<Status>),
}

/// One watch's queue, as the response stream takes from it.
pub struct Slot {
    id: u64,
    rx: mpsc::Receiver<Outgoing>,
    /// Why the pump ended the stream, if it did; `None` once it ended
    /// without a reason.
    end: Option<oneshot::Receiver<WatchEnd>>,
    /// The response taken from `rx` and not sent yet.
    next: Option<Outgoing>,
    /// `rx` is closed and empty.
    drained: bool,
}

impl Slot {
    /// Watch `id`'s queue, ended by what `end` reports.
    pub fn new(id: u64, rx: mpsc::Receiver<Outgoing>, end: oneshot::Receiver<WatchEnd>) -> Self {
        Slot {
            id,
            rx,
            end: Some(end),
            next: None,
            drained: false,
        }
    }

    /// The reason the pump gave for ending the stream, once it gave one.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Option<WatchEnd> {
        let end = self.end.as_mut()?;
        match Pin::new(end).poll(cx) {
            Poll::Ready(Ok(reason)) => Some(reason),
            Poll::Ready(Err(_)) => {
                // The pump ended without a reason: the client went away or
                // canceled the watch.
                self.end = None;
                None
            }
            Poll::Pending => None,
        }
    }

    /// Takes the next queued response into `next` if there is none there.
    fn fill(&mut self, cx: &mut Context<'_>) {
        if self.next.is_some() || self.drained {
            return;
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(out)) => self.next = Some(out),
            Poll::Ready(None) => self.drained = true,
            Poll::Pending => {}
        }
    }
}

/// The response stream of one watch stream: the watches' queued responses,
/// then, if the server ended the stream, a status (naming the revision to
/// resume from, for a single watch).
pub struct OutboundStream {
    slots: Vec<Slot>,
    /// The watches that start later and the ones that end, on a stream of
    /// several; `None` for a single watch, or once the reader ended.
    joins: Option<mpsc::UnboundedReceiver<Join>>,
    several: bool,
    /// `canceled` responses to send before anything else.
    notices: VecDeque<WatchReply>,
    /// The slot to look at first, so that every watch gets its turn.
    turn: usize,
    /// For a single watch, the start revision that continues exactly after
    /// what was handed out.
    resume_from: u64,
    /// The header of the final status, as of when it is sent.
    header: HeaderFn,
    /// The stream's reader, stopped when the stream ends.
    reader: AbortHandle,
    done: bool,
}

/// Builds a response header on demand.
pub type HeaderFn = Arc<dyn Fn() -> pb::ResponseHeader + Send + Sync>;

impl OutboundStream {
    /// The stream of a single watch.
    pub fn single(slot: Slot, start_revision: u64, header: HeaderFn, reader: AbortHandle) -> Self {
        OutboundStream {
            slots: vec![slot],
            joins: None,
            several: false,
            notices: VecDeque::new(),
            turn: 0,
            resume_from: start_revision,
            header,
            reader,
            done: false,
        }
    }

    /// A stream of several watches, which `joins` brings as they start.
    pub fn several(
        joins: mpsc::UnboundedReceiver<Join>,
        header: HeaderFn,
        reader: AbortHandle,
    ) -> Self {
        OutboundStream {
            slots: Vec::new(),
            joins: Some(joins),
            several: true,
            notices: VecDeque::new(),
            turn: 0,
            resume_from: 0,
            header,
            reader,
            done: false,
        }
    }

    /// Ends the stream: what is still queued is dropped (the resume revision
    /// says where to continue, and a slow subscriber should not get more
    /// first), and the reader stops.
    fn stop(&mut self) {
        self.done = true;
        for slot in &mut self.slots {
            slot.rx.close();
        }
        self.reader.abort();
    }

    fn finish(&mut self, reason: WatchEnd) -> Poll<Option<Result<WatchReply, Status>>> {
        self.stop();
        let header = (self.header)();
        let status = if self.several {
            status::watches_end(reason, &header)
        } else {
            status::watch_end(reason, self.resume_from, &header)
        };
        Poll::Ready(Some(Err(status)))
    }

    /// Slot `k`'s pump ended for `reason`: on a stream of several, a watch
    /// that failed is canceled alone (`None`); anything else ends the stream.
    fn ended(
        &mut self,
        k: usize,
        reason: WatchEnd,
    ) -> Option<Poll<Option<Result<WatchReply, Status>>>> {
        match reason {
            WatchEnd::Failed(code, message) if self.several => {
                let slot = self.slots.swap_remove(k);
                let notice = self.canceled(slot.id, &Status::new(code, message));
                self.notices.push_back(notice);
                None
            }
            reason => Some(self.finish(reason)),
        }
    }

    /// A `canceled` response for watch `id`.
    fn canceled(&self, id: u64, status: &Status) -> WatchReply {
        canceled(&self.header, id, status)
    }
}

/// A `canceled` response for watch `id`.
fn canceled(header: &HeaderFn, id: u64, status: &Status) -> WatchReply {
    WatchReply::message(pb::WatchResponse {
        header: Some(header()),
        event: Some(Event::Canceled(pb::WatchCanceled {
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
        watch_ids: vec![id],
    })
}

impl OutboundStream {
    /// Takes in the watches that started and the ones the reader refused;
    /// `Some` if the reader ends the stream.
    fn poll_joins(&mut self, cx: &mut Context<'_>) -> Option<Status> {
        let joins = self.joins.as_mut()?;
        loop {
            match joins.poll_recv(cx) {
                Poll::Ready(Some(Join::Watch(slot))) => self.slots.push(*slot),
                Poll::Ready(Some(Join::Canceled(id, status))) => {
                    self.notices.push_back(canceled(&self.header, id, &status));
                }
                Poll::Ready(Some(Join::End(status))) => return Some(*status),
                Poll::Ready(None) => {
                    // The reader ended (the client's side closed, or it
                    // stopped): the watches that run go on.
                    self.joins = None;
                    return None;
                }
                Poll::Pending => return None,
            }
        }
    }

    /// The next response of the watches, in turn; one event that several
    /// watches queued as the same shared bytes goes out once, for all of them.
    fn poll_slots(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<WatchReply, Status>>> {
        for slot in &mut self.slots {
            slot.fill(cx);
        }
        // Watches that ended: their queue is drained and their pump gone.
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &mut self.slots[i];
            if !(slot.drained && slot.next.is_none()) {
                i += 1;
                continue;
            }
            // The pump sends its reason before it drops the queue.
            if let Some(reason) = slot.poll_end(cx) {
                match self.ended(i, reason) {
                    Some(end) => return end,
                    None => continue,
                }
            }
            let slot = self.slots.swap_remove(i);
            if !self.several {
                self.done = true;
                return Poll::Ready(None);
            }
            let notice = self.canceled(slot.id, &canceled_by_client());
            self.notices.push_back(notice);
        }
        if let Some(notice) = self.notices.pop_front() {
            return Poll::Ready(Some(Ok(notice)));
        }
        let count = self.slots.len();
        let Some(first) = (0..count)
            .map(|k| (self.turn + k) % count)
            .find(|&k| self.slots[k].next.is_some())
        else {
            if self.several && self.joins.is_none() && self.slots.is_empty() {
                // Nothing runs and nothing can start: the stream is over.
                self.done = true;
                return Poll::Ready(None);
            }
            return Poll::Pending;
        };
        self.turn = (first + 1) % count;
        let out = self.slots[first].next.take().expect("found with one");
        if !self.several {
            if let Some(r) = out.completes {
                self.resume_from = r + 1;
            }
            return Poll::Ready(Some(Ok(out.response)));
        }
        let mut ids = vec![self.slots[first].id];
        for (k, slot) in self.slots.iter_mut().enumerate() {
            if k != first
                && slot
                    .next
                    .as_ref()
                    .is_some_and(|o| o.response.same_shared_bytes(&out.response))
            {
                slot.next = None;
                ids.push(slot.id);
            }
        }
        Poll::Ready(Some(Ok(out.response.for_watches(&ids))))
    }
}

impl Drop for OutboundStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Stream for OutboundStream {
    type Item = Result<WatchReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut k = 0;
        while k < this.slots.len() {
            match this.slots[k].poll_end(cx) {
                Some(reason) => {
                    if let Some(end) = this.ended(k, reason) {
                        return end;
                    }
                }
                None => k += 1,
            }
        }
        if let Some(status) = this.poll_joins(cx) {
            this.stop();
            return Poll::Ready(Some(Err(status)));
        }
        this.poll_slots(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize, size: usize) -> pb::NamespaceEntry {
        pb::NamespaceEntry {
            path: format!("t/e/n{i}"),
            version: 1,
            mod_revision: 1,
            value: "x".repeat(size),
        }
    }

    #[test]
    fn snapshot_chunks_respect_count_and_size() {
        let chunks = chunk_entries((0..2500).map(|i| entry(i, 10)).collect(), 1000, 1 << 30);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );

        let chunks = chunk_entries((0..10).map(|i| entry(i, 100)).collect(), 1000, 350);
        assert!(
            chunks.iter().all(|c| c.len() <= 3),
            "{:?}",
            chunks.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 10);

        let chunks = chunk_entries(vec![entry(0, 1000)], 1000, 10);
        assert_eq!(chunks.len(), 1);

        let chunks = chunk_entries(Vec::new(), 1000, 10);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].is_empty());
    }

    fn change(revision: u64) -> Outgoing {
        Outgoing {
            response: WatchReply::message(pb::WatchResponse {
                header: None,
                event: Some(Event::Progress(pb::ProgressEvent { revision })),
                watch_ids: Vec::new(),
            }),
            completes: Some(revision),
        }
    }

    /// A reader that does nothing, for the stream to stop.
    fn idle_reader() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn header() -> HeaderFn {
        Arc::new(pb::ResponseHeader::default)
    }

    /// Watch `id`'s slot, with the ends the pump holds.
    fn slot(id: u64) -> (mpsc::Sender<Outgoing>, oneshot::Sender<WatchEnd>, Slot) {
        let (tx, rx) = mpsc::channel(8);
        let (end_tx, end_rx) = oneshot::channel();
        (tx, end_tx, Slot::new(id, rx, end_rx))
    }

    fn stream(
        start: u64,
    ) -> (
        mpsc::Sender<Outgoing>,
        oneshot::Sender<WatchEnd>,
        OutboundStream,
    ) {
        let (tx, end_tx, slot) = slot(0);
        let out = OutboundStream::single(slot, start, header(), idle_reader());
        (tx, end_tx, out)
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_where_to_resume() {
        use futures::StreamExt;
        let (tx, end, mut out) = stream(5);
        tx.send(change(5)).await.expect("queued");
        tx.send(change(6)).await.expect("queued");
        tx.send(change(7)).await.expect("queued");
        let first = out.next().await.expect("an item").expect("ok");
        assert!(matches!(
            first.to_message().expect("decodes").event,
            Some(Event::Progress(pb::ProgressEvent { revision: 5 }))
        ));
        // The pump gives up: what is still queued is dropped.
        end.send(WatchEnd::TooSlow).expect("stream alive");
        drop(tx);
        let status = out.next().await.expect("a final status").unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "subscriber too slow; resume from revision 6"
        );
        assert!(out.next().await.is_none());
    }

    #[tokio::test]
    async fn shutdown_ends_with_unavailable_even_after_the_queue_closed() {
        use futures::StreamExt;
        let (tx, end, mut out) = stream(0);
        end.send(WatchEnd::ShuttingDown).expect("stream alive");
        drop(tx);
        let status = out.next().await.expect("a final status").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("resume from revision 0"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn a_pump_that_ends_silently_ends_the_stream() {
        use futures::StreamExt;
        let (tx, end, mut out) = stream(1);
        tx.send(change(1)).await.expect("queued");
        drop(end);
        drop(tx);
        assert!(out.next().await.expect("the queued item").is_ok());
        assert!(out.next().await.is_none());
    }

    fn shared(reply: &WatchReply, revision: u64) -> Outgoing {
        Outgoing {
            response: reply.clone(),
            completes: Some(revision),
        }
    }

    fn event(reply: &WatchReply) -> (Option<Event>, Vec<u64>) {
        let m = reply.to_message().expect("decodes");
        (m.event, m.watch_ids)
    }

    /// A stream of several watches, and the sender the reader would hold.
    fn several() -> (mpsc::UnboundedSender<Join>, OutboundStream) {
        let (joins_tx, joins_rx) = mpsc::unbounded_channel();
        let out = OutboundStream::several(joins_rx, header(), idle_reader());
        (joins_tx, out)
    }

    /// Watch `id` joins the stream; the ends its pump would hold.
    fn join(
        joins: &mpsc::UnboundedSender<Join>,
        id: u64,
    ) -> (mpsc::Sender<Outgoing>, oneshot::Sender<WatchEnd>) {
        let (tx, end, s) = slot(id);
        joins.send(Join::Watch(Box::new(s))).expect("stream alive");
        (tx, end)
    }

    fn progress_event(revision: u64) -> pb::WatchResponse {
        pb::WatchResponse {
            header: None,
            event: Some(Event::Progress(pb::ProgressEvent { revision })),
            watch_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_event_queued_by_several_watches_goes_out_once_with_their_ids() {
        use futures::StreamExt;
        let (joins, mut out) = several();
        let (tx1, _end1) = join(&joins, 1);
        let (tx2, _end2) = join(&joins, 2);
        let (tx3, _end3) = join(&joins, 3);
        let five = WatchReply::encoded(&progress_event(5));
        // Equal, but encoded apart (a filtered part): not the same bytes.
        let five_apart = WatchReply::encoded(&progress_event(5));
        tx1.send(shared(&five, 5)).await.expect("queued");
        tx2.send(shared(&five, 5)).await.expect("queued");
        tx3.send(shared(&five_apart, 5)).await.expect("queued");
        let mut sent = Vec::new();
        for _ in 0..2 {
            let reply = out.next().await.expect("an item").expect("ok");
            sent.push(event(&reply).1);
        }
        sent.sort();
        assert_eq!(sent, [vec![1, 2], vec![3]]);
    }

    #[tokio::test]
    async fn every_watch_gets_its_turn_and_keeps_its_order() {
        use futures::StreamExt;
        let (joins, mut out) = several();
        let (tx1, _end1) = join(&joins, 1);
        let (tx2, _end2) = join(&joins, 2);
        for r in 1..=3 {
            tx1.send(change(r)).await.expect("queued");
            tx2.send(change(10 + r)).await.expect("queued");
        }
        let mut order = Vec::new();
        for _ in 0..6 {
            let reply = out.next().await.expect("an item").expect("ok");
            let (Some(Event::Progress(p)), ids) = event(&reply) else {
                panic!("a progress event")
            };
            order.push((ids, p.revision));
        }
        let first: Vec<u64> = order
            .iter()
            .filter(|(i, _)| i == &[1])
            .map(|o| o.1)
            .collect();
        let second: Vec<u64> = order
            .iter()
            .filter(|(i, _)| i == &[2])
            .map(|o| o.1)
            .collect();
        assert_eq!(first, [1, 2, 3]);
        assert_eq!(second, [11, 12, 13]);
        // In turn: neither watch waits for the other's queue to empty.
        assert_ne!(order[0].0, order[1].0, "{order:?}");
    }

    #[tokio::test]
    async fn a_watch_that_ends_is_canceled_alone() {
        use futures::StreamExt;
        let (joins, mut out) = several();
        let (tx1, end1) = join(&joins, 1);
        let (tx2, end2) = join(&joins, 2);
        let (tx3, _end3) = join(&joins, 3);
        // Watch 1 canceled by the client: its pump ends without a reason.
        drop((tx1, end1));
        // Watch 2's subscription failed.
        end2.send(WatchEnd::Failed(Code::Internal, "broken".into()))
            .expect("stream alive");
        drop(tx2);
        // A Subscribe the reader refused.
        joins
            .send(Join::Canceled(
                9,
                Box::new(Status::invalid_argument("bad path")),
            ))
            .expect("stream alive");
        let mut canceled = Vec::new();
        for _ in 0..3 {
            let reply = out.next().await.expect("an item").expect("ok");
            match event(&reply) {
                (Some(Event::Canceled(c)), ids) => canceled.push((ids, c.code, c.message)),
                other => panic!("unexpected {other:?}"),
            }
        }
        canceled.sort();
        assert_eq!(
            canceled,
            [
                (
                    vec![1],
                    Code::Ok as i32,
                    "canceled by the client".to_string()
                ),
                (vec![2], Code::Internal as i32, "broken".to_string()),
                (
                    vec![9],
                    Code::InvalidArgument as i32,
                    "bad path".to_string()
                ),
            ]
        );
        // Watch 3 runs on.
        tx3.send(change(4)).await.expect("queued");
        let reply = out.next().await.expect("an item").expect("ok");
        assert_eq!(event(&reply).1, [3]);
    }

    #[tokio::test]
    async fn a_slow_watch_ends_the_stream_of_several() {
        use futures::StreamExt;
        let (joins, mut out) = several();
        let (tx1, end1) = join(&joins, 1);
        let (_tx2, _end2) = join(&joins, 2);
        end1.send(WatchEnd::TooSlow).expect("stream alive");
        drop(tx1);
        let status = out.next().await.expect("a final status").unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("each watch's last revision received + 1"),
            "{}",
            status.message()
        );
        assert!(out.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_of_several_ends_when_nothing_runs_or_can_start() {
        use futures::StreamExt;
        let (joins, mut out) = several();
        let (tx1, end1) = join(&joins, 1);
        drop(joins);
        drop((tx1, end1));
        let reply = out.next().await.expect("the cancel").expect("ok");
        assert!(matches!(event(&reply).0, Some(Event::Canceled(_))));
        assert!(out.next().await.is_none());
    }

    /// The reader's channel to its response stream allocates 32 of these
    /// when a stream of several opens.
    #[test]
    fn a_join_is_small() {
        let size = std::mem::size_of::<Join>();
        assert!(size <= 24, "Join is {size} bytes: 32 of them per stream");
    }

    /// tokio's bounded channel allocates its slots 32 at a time, the first
    /// 32 when it opens: every idle subscription holds that many of these.
    #[test]
    fn a_queued_response_is_small() {
        let size = std::mem::size_of::<Outgoing>();
        assert!(
            size <= 64,
            "Outgoing is {size} bytes: 32 of them per subscriber"
        );
    }

    #[test]
    fn targets_are_checked() {
        assert!(parse_targets(&[]).is_err());
        assert!(parse_targets(&["pay/prod/".into(), "pay/dev/checkout".into()]).is_ok());
        let err = parse_targets(&["Pay/prod/x".into()]).unwrap_err();
        assert!(err.to_string().contains("Pay"), "{err}");
    }
}
