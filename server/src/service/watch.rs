//! The `Watch` service: one bidirectional stream per subscriber.
//!
//! The first client message must be a `Subscribe`. Then two futures run per
//! stream: a *pump* that takes items from the node's [`Subscription`] and
//! queues `WatchResponse`s into a bounded channel (run with the other pumps
//! of the same client connection, see [`super::pump_group`]; a write's event
//! is encoded once for all its subscribers, see [`super::shared_events`]),
//! and a *reader*
//! task that records the client's acks and refusals in the
//! [`crate::delivery::DeliveryRegistry`].
//!
//! The response stream ([`OutboundStream`]) tracks how far the subscriber has
//! been served, so that when the server ends the stream — the subscriber did
//! not drain it within the send timeout (`RESOURCE_EXHAUSTED`), the node shuts
//! down (`UNAVAILABLE`) — the final status names the revision to resume from.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};
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

/// The `raftconf.v1.Watch` service.
pub struct WatchService {
    ctx: Arc<ServiceContext>,
    pumps: Arc<PumpGroups>,
    shared: Arc<SharedEvents>,
}

impl WatchService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        WatchService {
            ctx,
            pumps: Arc::default(),
            shared: Arc::default(),
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
            paths = ?sub.paths,
            start_revision = sub.start_revision,
            "watch subscribed"
        );
        let labels: BTreeMap<String, String> = sub.labels.into_iter().collect();
        let id = self
            .ctx
            .delivery
            .subscribed(&sub.client_id, labels, sub.paths.clone());

        let (tx, rx) = mpsc::channel(self.ctx.settings.watch_queue.max(1));
        let (end_tx, end_rx) = oneshot::channel();
        let reader = tokio::spawn(read_reports(
            Arc::clone(&self.ctx.delivery),
            inbound,
            id,
            sub.client_id.clone(),
        ));
        self.pumps.spawn(
            peer,
            Box::pin(pump(
                Arc::clone(&self.ctx),
                Arc::clone(&self.shared),
                subscription,
                tx,
                end_tx,
                reader,
                (id, sub.client_id),
            )),
        );
        let ctx = Arc::clone(&self.ctx);
        Ok(OutboundStream::new(
            rx,
            end_rx,
            sub.start_revision,
            Arc::new(move || ctx.current_header()),
        ))
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
        self.ctx
            .respond(self.subscribe(peer, request.into_inner()).await)
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn clients(
        &self,
        request: Request<pb::ClientsRequest>,
    ) -> Result<Response<pb::ClientsResponse>, Status> {
        self.ctx
            .respond(clients::clients(&self.ctx, request.into_inner()).await)
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
    reader: JoinHandle<()>,
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
    reader.abort();
}

/// Records what the subscriber reports until its side of the stream ends.
async fn read_reports(
    delivery: Arc<DeliveryRegistry>,
    mut inbound: Streaming<pb::WatchRequest>,
    id: SubscriptionId,
    client_id: String,
) {
    loop {
        match inbound.message().await {
            Ok(Some(pb::WatchRequest { request: Some(r) })) => match r {
                Incoming::Ack(a) => {
                    debug!(%client_id, revision = a.revision, "watch ack");
                    delivery.acked(id, a.revision);
                }
                Incoming::Refusal(r) => {
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
                Incoming::Subscribe(_) => {
                    debug!(%client_id, "a second Subscribe on one stream is ignored");
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

/// The response stream of one watch: the queued responses, then, if the
/// server ended the watch, a status naming the revision to resume from.
pub struct OutboundStream {
    rx: mpsc::Receiver<Outgoing>,
    end: Option<oneshot::Receiver<WatchEnd>>,
    /// The start revision that continues exactly after what was handed out.
    resume_from: u64,
    /// The header of the final status, as of when it is sent.
    header: HeaderFn,
    done: bool,
}

/// Builds a response header on demand.
pub type HeaderFn = Arc<dyn Fn() -> pb::ResponseHeader + Send + Sync>;

impl OutboundStream {
    /// A stream of what `rx` carries, ended by what `end` reports.
    pub fn new(
        rx: mpsc::Receiver<Outgoing>,
        end: oneshot::Receiver<WatchEnd>,
        start_revision: u64,
        header: HeaderFn,
    ) -> Self {
        OutboundStream {
            rx,
            end: Some(end),
            resume_from: start_revision,
            header,
            done: false,
        }
    }

    fn finish(&mut self, reason: WatchEnd) -> Poll<Option<Result<WatchReply, Status>>> {
        self.done = true;
        // What is still queued is dropped: the resume revision says where to
        // continue, and a slow subscriber should not get more first.
        self.rx.close();
        let header = (self.header)();
        Poll::Ready(Some(Err(status::watch_end(
            reason,
            self.resume_from,
            &header,
        ))))
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Option<WatchEnd> {
        let end = self.end.as_mut()?;
        match Pin::new(end).poll(cx) {
            Poll::Ready(Ok(reason)) => Some(reason),
            Poll::Ready(Err(_)) => {
                // The pump ended without a reason: the client went away.
                self.end = None;
                None
            }
            Poll::Pending => None,
        }
    }
}

impl Stream for OutboundStream {
    type Item = Result<WatchReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(reason) = this.poll_end(cx) {
            return this.finish(reason);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(out)) => {
                if let Some(r) = out.completes {
                    this.resume_from = r + 1;
                }
                Poll::Ready(Some(Ok(out.response)))
            }
            Poll::Ready(None) => {
                // The pump sends its reason before it drops the queue.
                if let Some(reason) = this.poll_end(cx) {
                    return this.finish(reason);
                }
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
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
            }),
            completes: Some(revision),
        }
    }

    fn stream(
        start: u64,
    ) -> (
        mpsc::Sender<Outgoing>,
        oneshot::Sender<WatchEnd>,
        OutboundStream,
    ) {
        let (tx, rx) = mpsc::channel(8);
        let (end_tx, end_rx) = oneshot::channel();
        let header: HeaderFn = Arc::new(pb::ResponseHeader::default);
        (tx, end_tx, OutboundStream::new(rx, end_rx, start, header))
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
