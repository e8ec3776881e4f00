//! The client against a server that does not know watch ids (one from before
//! streams of several watches): a stub that answers every stream as a stream
//! of one watch, with no `watch_ids` in its responses.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use raftconf_api::v1::watch_server::{Watch, WatchServer};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request as GrpcRequest, Response};

use super::*;
use crate::{Client, ClientOptions, WatchEvent, WatchStream};

/// Answers each stream's first `Subscribe` with an empty snapshot, then sends
/// every revision published on `changes`, as one change of `t/e/n`. Later
/// requests on the stream (acks, other `Subscribe`s) are read and ignored,
/// as an older server ignores fields and watches it does not know.
struct OldServer {
    changes: broadcast::Sender<u64>,
}

type Responses = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for OldServer {
    type WatchStream = Responses;

    async fn watch(
        &self,
        request: GrpcRequest<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let mut inbound = request.into_inner();
        let Some(pb::WatchRequest {
            request: Some(Request::Subscribe(_)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument(
                "the first message must be a Subscribe",
            ));
        };
        let mut changes = self.changes.subscribe();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let snapshot = Event::Snapshot(pb::SnapshotEvent {
                revision: 1,
                last_chunk: true,
                reason: "start".into(),
                ..Default::default()
            });
            let mut next = Some(snapshot);
            loop {
                if let Some(event) = next.take() {
                    let response = pb::WatchResponse {
                        event: Some(event),
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    request = inbound.message() => match request {
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    revision = changes.recv() => {
                        let Ok(revision) = revision else { return };
                        next = Some(Event::Change(pb::ChangeEvent {
                            revision,
                            changes: vec![pb::Change {
                                kind: pb::ChangeKind::Put as i32,
                                path: "t/e/n".into(),
                                version: revision,
                                value: format!(r#"{{"n":{revision}}}"#),
                            }],
                            ..Default::default()
                        }));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn clients(
        &self,
        _: GrpcRequest<pb::ClientsRequest>,
    ) -> Result<Response<pb::ClientsResponse>, Status> {
        Err(Status::unimplemented("an old server"))
    }
}

/// The next event of `stream` that is not a progress event.
async fn next(stream: &mut WatchStream) -> WatchEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream runs")
            .expect("no error");
        if !matches!(event, WatchEvent::Progress { .. }) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_server_without_watch_ids_each_watch_gets_a_stream_of_its_own() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("bound").to_string();
    let (changes, _) = broadcast::channel(16);
    let server = WatchServer::new(OldServer {
        changes: changes.clone(),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let options =
        ClientOptions::default().backoff(Duration::from_millis(10), Duration::from_millis(50));
    let client = Client::connect_with([addr.as_str()], options)
        .await
        .expect("a client");

    // The first watch has a stream of its own: an old server serves it as ever.
    let mut first = client.watch(["t/e/"], 0).await.expect("watch");
    assert!(matches!(
        next(&mut first).await,
        WatchEvent::Snapshot { revision: 1, .. }
    ));
    // The second would share a stream. The old server answers its Subscribe
    // without watch ids, which ends that stream; the watch then resumes on a
    // stream of its own and the endpoint is marked as knowing no ids.
    let mut second = client.watch(["t/e/"], 0).await.expect("watch");
    assert!(matches!(
        next(&mut second).await,
        WatchEvent::Snapshot { revision: 1, .. }
    ));
    assert_eq!(second.reconnects(), 1, "{:?}", second.last_error());
    let shared = client.inner.shared_streams.as_ref().expect("sharing is on");
    assert!(lock(&shared.single_only).contains(&addr));
    // A third goes straight to a stream of its own.
    let mut third = client.watch(["t/e/"], 0).await.expect("watch");
    assert!(matches!(
        next(&mut third).await,
        WatchEvent::Snapshot { revision: 1, .. }
    ));
    assert_eq!(third.reconnects(), 0, "{:?}", third.last_error());

    // And every one of them gets every change.
    for revision in 2..=4 {
        changes.send(revision).expect("the server's streams listen");
        for watch in [&mut first, &mut second, &mut third] {
            match next(watch).await {
                WatchEvent::Change { revision: r, .. } => assert_eq!(r, revision),
                other => panic!("a change at {revision}, not {other:?}"),
            }
        }
    }
    assert_eq!(first.reconnects(), 0, "{:?}", first.last_error());
}
