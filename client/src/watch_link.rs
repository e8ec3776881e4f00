//! How one watch session reaches its server: a gRPC stream of its own, or
//! its place on a stream it shares with the client's other watches on the
//! same endpoint (a stream of several watches, see the `Watch` rpc).
//!
//! A shared stream is driven by a task of its own, which takes each response
//! and hands it to every watch it names: an event that several watches need
//! arrives once, decoded once. That task is a hand-off a stream of its own
//! does not have (its session reads the connection from the caller's own
//! `poll_next`), and a stream of several costs the server a little more than
//! a stream of one. So the first watch on an endpoint gets a stream of its
//! own, and the watches that come while it runs share one
//! ([`crate::ClientOptions::share_watch_streams`] turns sharing off): a
//! service with one watch pays nothing for it.
//!
//! A shared stream lives while some watch is on it. When it breaks, every
//! watch on it gets the status and resumes by itself, on a new stream, from
//! its own last revision. One watch whose caller falls behind does not hold
//! the others up: once [`INBOX`] of its events wait, it leaves the stream
//! (the server is told to cancel it) and, when its caller has taken what
//! waited, joins again from its last revision. A server that does not know
//! watch ids answers as if the stream had one watch; the first response
//! without ids ends the shared stream, and that endpoint then gets streams of
//! their own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_client::WatchClient;
use raftconf_api::v1::watch_request::Request;
use raftconf_api::v1::watch_response::Event;
use tokio::sync::mpsc;
use tokio::sync::mpsc::WeakUnboundedSender;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Client-to-server messages buffered on a stream of one watch.
const OUTBOUND_BUFFER: usize = 64;

/// Events that may wait for one watch of a shared stream. The stream's task
/// never waits for a watch: one whose caller lets this many wait leaves the
/// stream and joins again once its caller has taken them (the server replays
/// what it missed), so the other watches on the stream run on. Snapshot
/// chunks before the last do not count: a large snapshot is one event.
pub(crate) const INBOX: usize = 64;

/// What a session sends and receives through.
pub(crate) enum Link {
    Own {
        inbound: Box<Streaming<pb::WatchResponse>>,
        out: mpsc::Sender<pb::WatchRequest>,
        /// Counts it as the endpoint's watch with a stream of its own.
        _first: Option<FirstWatch>,
    },
    Shared(Member),
}

impl Link {
    /// Opens a stream of its own on `channel` with `first` (a `Subscribe`)
    /// and `then` (acks and refusals to re-send) as its first messages.
    pub(crate) async fn own(
        channel: Channel,
        max_response_bytes: usize,
        first: Request,
        then: Vec<Request>,
        first_watch: Option<FirstWatch>,
    ) -> Result<Link, Status> {
        let (out, out_rx) = mpsc::channel(OUTBOUND_BUFFER);
        for request in std::iter::once(first).chain(then) {
            let _ = out.try_send(wrap(request));
        }
        let inbound = WatchClient::new(channel)
            .max_decoding_message_size(max_response_bytes)
            .watch(ReceiverStream::new(out_rx))
            .await?
            .into_inner();
        let inbound = Box::new(inbound);
        Ok(Link::Own {
            inbound,
            out,
            _first: first_watch,
        })
    }

    /// What comes next for this watch.
    pub(crate) async fn message(&mut self) -> Result<Received, Status> {
        match self {
            Link::Own { inbound, .. } => Ok(match inbound.message().await? {
                Some(response) => Received::Response(response),
                None => Received::Ended,
            }),
            Link::Shared(member) => match member.inbox.recv().await {
                Some(Routed::Response(response)) => {
                    if counts(&response) {
                        member.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    match response.event {
                        Some(Event::Canceled(c)) => match Code::from(c.code) {
                            Code::Ok => Ok(Received::Ended),
                            code => Err(Status::new(code, c.message)),
                        },
                        _ => Ok(Received::Response(response)),
                    }
                }
                Some(Routed::FellBehind) => Ok(Received::FellBehind),
                Some(Routed::Ended(status)) => Err(status),
                None => Err(shared_stream_ended()),
            },
        }
    }

    /// Queues `request` for the server; `false` if it could not be (a
    /// full buffer or a closed stream).
    pub(crate) fn send(&self, request: Request) -> bool {
        match self {
            Link::Own { out, .. } => out.try_send(wrap(request)).is_ok(),
            Link::Shared(member) => member.send(request),
        }
    }
}

/// What a watch's link gave it.
#[derive(Debug)]
pub(crate) enum Received {
    Response(pb::WatchResponse),
    /// The server ended the stream (or, shared, the watch) without an error.
    Ended,
    /// It left its shared stream, [`INBOX`] events behind; everything that
    /// waited was given before this. It joins again from its last revision.
    FellBehind,
}

/// Whether `response` counts against a watch's [`INBOX`]: every event but a
/// snapshot chunk before the last.
fn counts(response: &pb::WatchResponse) -> bool {
    !matches!(&response.event, Some(Event::Snapshot(s)) if !s.last_chunk)
}

fn shared_stream_ended() -> Status {
    Status::unavailable("the shared watch stream ended")
}

fn wrap(request: Request) -> pb::WatchRequest {
    pb::WatchRequest {
        request: Some(request),
    }
}

/// Sets the watch id a request is for.
fn address(request: Request, id: u64) -> Request {
    match request {
        Request::Subscribe(mut s) => {
            s.watch_id = id;
            Request::Subscribe(s)
        }
        Request::Ack(mut a) => {
            a.watch_id = id;
            Request::Ack(a)
        }
        Request::Refusal(mut r) => {
            r.watch_id = id;
            Request::Refusal(r)
        }
        Request::Cancel(_) => Request::Cancel(pb::Cancel { watch_id: id }),
    }
}

/// What the task of a shared stream hands a watch.
pub(crate) enum Routed {
    Response(pb::WatchResponse),
    /// The watch was taken off the stream, [`INBOX`] events behind.
    FellBehind,
    /// The stream broke (or never opened): every watch on it resumes.
    Ended(Status),
}

/// The shared streams of one client, by endpoint.
#[derive(Default)]
pub(crate) struct SharedStreams {
    streams: Mutex<HashMap<String, Weak<SharedStream>>>,
    /// Endpoints whose server does not know watch ids.
    single_only: Mutex<HashSet<String>>,
    /// Endpoints with a watch on a stream of its own.
    first: Arc<Mutex<HashSet<String>>>,
}

/// The watch that has a stream of its own on an endpoint, while it lasts.
pub(crate) struct FirstWatch {
    addr: String,
    first: Arc<Mutex<HashSet<String>>>,
}

impl Drop for FirstWatch {
    fn drop(&mut self) {
        lock(&self.first).remove(&self.addr);
    }
}

/// One stream of several watches.
pub(crate) struct SharedStream {
    /// Dropped with the last watch on the stream, which ends it.
    requests: mpsc::UnboundedSender<pb::WatchRequest>,
    routes: Arc<Routes>,
    next_id: AtomicU64,
}

/// Where the stream's task hands each watch's responses.
#[derive(Default)]
struct Routes {
    inner: Mutex<RoutesInner>,
}

#[derive(Default)]
struct RoutesInner {
    by_id: HashMap<u64, Route>,
    /// The stream ended: no watch may join it.
    ended: bool,
}

/// Where one watch's responses go.
#[derive(Clone)]
struct Route {
    to: mpsc::UnboundedSender<Routed>,
    /// Its events not yet taken (see [`counts`]).
    waiting: Arc<AtomicUsize>,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoutesInner> {
        lock(&self.inner)
    }

    /// Ends the stream for every watch on it, each told `status`.
    fn end(&self, status: &Status) {
        let routes = {
            let mut inner = self.lock();
            inner.ended = true;
            std::mem::take(&mut inner.by_id)
        };
        for (_, route) in routes {
            let _ = route.to.send(Routed::Ended(status.clone()));
        }
    }
}

/// One watch's place on a shared stream; leaving it (dropping this) cancels
/// the watch on the server.
pub(crate) struct Member {
    stream: Arc<SharedStream>,
    id: u64,
    inbox: mpsc::UnboundedReceiver<Routed>,
    /// Its events in `inbox` (see [`counts`]).
    waiting: Arc<AtomicUsize>,
}

impl Member {
    fn send(&self, request: Request) -> bool {
        self.stream
            .requests
            .send(wrap(address(request, self.id)))
            .is_ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let route = self.stream.routes.lock().by_id.remove(&self.id);
        if route.is_some() {
            self.send(Request::Cancel(pb::Cancel::default()));
        }
    }
}

impl SharedStreams {
    /// `Some` if a watch on `addr` should have a stream of its own (and it
    /// counts as that endpoint's first watch while it is held): when no
    /// other watch runs there alone, or the server does not know watch ids.
    pub(crate) fn first_watch(&self, addr: &str) -> Result<Option<FirstWatch>, ()> {
        if lock(&self.single_only).contains(addr) {
            return Ok(None);
        }
        if !lock(&self.first).insert(addr.to_string()) {
            return Err(());
        }
        Ok(Some(FirstWatch {
            addr: addr.to_string(),
            first: Arc::clone(&self.first),
        }))
    }

    /// Starts a watch (`subscribe`, then `then`: acks and refusals to
    /// re-send) on the shared stream to `addr`, opening one on `channel` if
    /// there is none.
    pub(crate) fn join(
        self: &Arc<Self>,
        addr: &str,
        channel: &Channel,
        max_response_bytes: usize,
        open_timeout: std::time::Duration,
        subscribe: Request,
        then: Vec<Request>,
    ) -> Member {
        let (to, inbox) = mpsc::unbounded_channel();
        let route = Route {
            to,
            waiting: Arc::default(),
        };
        let mut streams = lock(&self.streams);
        let existing = streams.get(addr).and_then(Weak::upgrade);
        let stream = match existing {
            Some(stream) if !stream.routes.lock().ended => stream,
            _ => {
                let stream = self.open(addr, channel, max_response_bytes, open_timeout);
                streams.insert(addr.to_string(), Arc::downgrade(&stream));
                stream
            }
        };
        drop(streams);
        // The id taken and its Subscribe queued under one lock: the server
        // wants ids to increase in the order Subscribes arrive.
        let mut routes = stream.routes.lock();
        let id = stream.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            stream: Arc::clone(&stream),
            id,
            inbox,
            waiting: Arc::clone(&route.waiting),
        };
        if routes.ended {
            // It broke just now: this watch resumes like the others.
            let _ = route.to.send(Routed::Ended(shared_stream_ended()));
        } else {
            routes.by_id.insert(id, route);
            for request in std::iter::once(subscribe).chain(then) {
                member.send(request);
            }
        }
        drop(routes);
        member
    }

    /// A new shared stream to `addr`, and the task that drives it.
    fn open(
        self: &Arc<Self>,
        addr: &str,
        channel: &Channel,
        max_response_bytes: usize,
        open_timeout: std::time::Duration,
    ) -> Arc<SharedStream> {
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let stream = Arc::new(SharedStream {
            requests,
            routes: Arc::default(),
            next_id: AtomicU64::new(1),
        });
        let routes = Arc::clone(&stream.routes);
        // Weak: the stream ends when its last watch leaves.
        let requests = stream.requests.downgrade();
        let mut client =
            WatchClient::new(channel.clone()).max_decoding_message_size(max_response_bytes);
        let streams = Arc::downgrade(self);
        let addr = addr.to_string();
        tokio::spawn(async move {
            let opened = tokio::time::timeout(
                open_timeout,
                client.watch(UnboundedReceiverStream::new(requests_rx)),
            )
            .await;
            let inbound = match opened {
                Err(_) => Err(Status::unavailable(format!(
                    "no answer within {open_timeout:?}"
                ))),
                Ok(opened) => opened.map(tonic::Response::into_inner),
            };
            let status = match inbound {
                Ok(inbound) => drive(inbound, &routes, &requests).await,
                Err(status) => Ended::Status(status),
            };
            let status = match status {
                Ended::Status(status) => status,
                Ended::SingleOnly => {
                    if let Some(streams) = streams.upgrade() {
                        tracing::info!(
                            endpoint = %addr,
                            "the server does not know watch ids: its watches get streams of their own"
                        );
                        lock(&streams.single_only).insert(addr);
                    }
                    Status::unavailable("the server does not carry several watches on one stream")
                }
            };
            routes.end(&status);
        });
        stream
    }
}

/// Why a shared stream ended.
enum Ended {
    Status(Status),
    /// Its server answered without watch ids.
    SingleOnly,
}

/// Hands each response to the watches it names, until the stream ends;
/// returns why it ended. Never waits for a watch: one with [`INBOX`] events
/// waiting is taken off the stream instead (and canceled on the server).
async fn drive(
    mut inbound: Streaming<pb::WatchResponse>,
    routes: &Routes,
    requests: &WeakUnboundedSender<pb::WatchRequest>,
) -> Ended {
    let mut targets: Vec<(u64, Route)> = Vec::new();
    loop {
        let mut response = match inbound.message().await {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Ended::Status(Status::unavailable("the server ended the watch stream"))
            }
            Err(status) => return Ended::Status(status),
        };
        let ids = std::mem::take(&mut response.watch_ids);
        if ids.is_empty() {
            return Ended::SingleOnly;
        }
        {
            let routes = routes.lock();
            targets.extend(
                ids.iter()
                    .filter_map(|id| Some((*id, routes.by_id.get(id)?.clone()))),
            );
        }
        let counted = counts(&response);
        let mut response = Some(response);
        let last = targets.len().saturating_sub(1);
        for (i, (id, route)) in targets.drain(..).enumerate() {
            if counted && route.waiting.fetch_add(1, Ordering::AcqRel) >= INBOX {
                fell_behind(id, routes, requests);
                continue;
            }
            let response = if i == last {
                response.take()
            } else {
                response.clone()
            };
            if let Some(response) = response {
                let _ = route.to.send(Routed::Response(response));
            }
        }
    }
}

/// Takes watch `id` off the stream, [`INBOX`] events behind: it is told
/// after what waited for it, and the server is told to cancel it.
fn fell_behind(id: u64, routes: &Routes, requests: &WeakUnboundedSender<pb::WatchRequest>) {
    let Some(route) = routes.lock().by_id.remove(&id) else {
        return;
    };
    tracing::debug!(watch_id = id, "a watch fell behind its shared stream");
    let _ = route.to.send(Routed::FellBehind);
    if let Some(requests) = requests.upgrade() {
        let _ = requests.send(wrap(Request::Cancel(pb::Cancel { watch_id: id })));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here is left half-changed by a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::transport::Endpoint;

    use super::*;

    fn subscribe() -> Request {
        Request::Subscribe(pb::Subscribe {
            paths: vec!["t/e/".into()],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn watches_on_one_endpoint_share_a_stream_until_it_ends() {
        // Nothing listens there: the stream ends as soon as it tries.
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let streams = Arc::new(SharedStreams::default());
        let join = || {
            streams.join(
                "127.0.0.1:9",
                &channel,
                1 << 20,
                Duration::from_secs(5),
                subscribe(),
                Vec::new(),
            )
        };
        let (a, b) = (join(), join());
        assert!(Arc::ptr_eq(&a.stream, &b.stream));
        assert_ne!(a.id, b.id);
        let first = Arc::clone(&a.stream);
        for member in [a, b] {
            let err = Link::Shared(member).message().await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{err}");
        }
        // Ended: the next watch gets a new one.
        let c = join();
        assert!(!Arc::ptr_eq(&c.stream, &first));
    }

    #[test]
    fn the_first_watch_on_an_endpoint_has_a_stream_of_its_own() {
        let streams = SharedStreams::default();
        let first = streams
            .first_watch("a:1")
            .expect("the first")
            .expect("counted");
        assert!(streams.first_watch("a:1").is_err(), "the next shares");
        assert!(streams.first_watch("b:1").is_ok(), "another endpoint");
        drop(first);
        assert!(
            streams.first_watch("a:1").is_ok(),
            "gone: the next is first"
        );
        lock(&streams.single_only).insert("c:1".into());
        assert!(matches!(streams.first_watch("c:1"), Ok(None)));
        assert!(matches!(streams.first_watch("c:1"), Ok(None)));
    }

    #[test]
    fn requests_are_addressed_to_their_watch() {
        let ack = address(
            Request::Ack(pb::Ack {
                revision: 5,
                watch_id: 0,
            }),
            7,
        );
        assert_eq!(
            ack,
            Request::Ack(pb::Ack {
                revision: 5,
                watch_id: 7
            })
        );
        let Request::Subscribe(s) = address(subscribe(), 8) else {
            panic!("a subscribe")
        };
        assert_eq!(s.watch_id, 8);
        assert_eq!(
            address(Request::Cancel(pb::Cancel::default()), 9),
            Request::Cancel(pb::Cancel { watch_id: 9 })
        );
    }
}

#[cfg(test)]
#[path = "watch_link_tests.rs"]
mod old_server_tests;
