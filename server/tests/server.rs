//! A real single-node server in-process, on ports the OS picks, each test in
//! its own temp dir: health and reflection, the write and read paths with
//! their statuses and metadata, watch start and shutdown, restart.

use std::time::Duration;

use raftconf_api::v1 as pb;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_api::v1::watch_client::WatchClient;
use raftconf_api::v1::watch_response::Event;
use raftconf_server::metadata;
use raftconf_server::server::{RunningServer, ServerConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

/// Generous bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(20);

async fn start(dir: &std::path::Path) -> (RunningServer, Channel) {
    let mut config = ServerConfig::new();
    config.listen = "127.0.0.1:0".into();
    config.peer_listen = "127.0.0.1:0".into();
    config.data_dir = dir.join("data");
    // In-process restarts only: tasks of the previous server on this
    // directory (a watch pump, the cluster-id recorder) drop their handles on
    // the state a moment after shutdown returns, and until then sled's file
    // lock is held. Retry on that error alone, within the deadline. (A real
    // restart is a new process: the lock went with the old one.)
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let server = loop {
        match RunningServer::start(config.clone()).await {
            Ok(server) => break server,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("server starts: {e}"),
        }
    };
    tokio::time::timeout(DEADLINE, server.wait_ready())
        .await
        .expect("ready in time");
    let channel = Channel::from_shared(format!("http://{}", server.client_addr()))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects");
    (server, channel)
}

async fn seed(channel: &Channel) {
    let mut admin = AdminClient::new(channel.clone());
    admin
        .create_tenant(pb::CreateTenantRequest {
            name: "pay".into(),
            ..Default::default()
        })
        .await
        .expect("tenant created");
    admin
        .create_environment(pb::CreateEnvironmentRequest {
            tenant: "pay".into(),
            name: "prod".into(),
            ..Default::default()
        })
        .await
        .expect("environment created");
}

fn put(path: &str, value: &str, if_version: Option<u64>) -> pb::PutRequest {
    pb::PutRequest {
        path: path.into(),
        value: value.into(),
        if_version,
        ..Default::default()
    }
}

fn md(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "raftconf.v1.Config", "raftconf.v1.Watch"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection answers")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("not empty");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "raftconf.v1.Config",
        "raftconf.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("RaftPeer")), "{names:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_reads_carry_headers_and_precise_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let mut config = ConfigClient::new(channel.clone());

    let w = config
        .put(put("pay/prod/checkout", "{\"b\":1,\"a\":2}", Some(0)))
        .await
        .expect("put applied")
        .into_inner();
    assert_eq!(w.version, 1);
    let header = w.header.expect("a header");
    assert!(!header.cluster_id.is_empty());
    assert_eq!((header.node_id, header.leader_id), (1, 1));
    assert_eq!(header.revision, w.revision);

    let g = config
        .get(pb::GetRequest {
            path: "pay/prod/checkout".into(),
            ..Default::default()
        })
        .await
        .expect("get answers")
        .into_inner();
    assert_eq!(g.value, "{\"a\":2,\"b\":1}");
    assert_eq!((g.version, g.mod_revision), (1, w.revision));
    assert_eq!(g.author, "anonymous");

    let miss = config
        .put(put("pay/prod/checkout", "{}", Some(7)))
        .await
        .unwrap_err();
    assert_eq!(miss.code(), Code::FailedPrecondition, "{miss:?}");
    assert_eq!(md(&miss, metadata::CURRENT_VERSION).as_deref(), Some("1"));
    assert_eq!(md(&miss, metadata::LEADER_ID).as_deref(), Some("1"));

    let unknown = config
        .put(put("nope/prod/x", "{}", None))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("pay"), "{}", unknown.message());

    let bad = config.put(put("Pay/prod/x", "{}", None)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let malformed = config
        .put(put("pay/prod/x", "{\"a\":", None))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("line 1"),
        "{}",
        malformed.message()
    );

    let absent = config
        .get(pb::GetRequest {
            path: "pay/prod/absent".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);
    assert_eq!(absent.message(), "namespace pay/prod/absent does not exist");

    let dry = config
        .put(pb::PutRequest {
            dry_run: true,
            ..put("pay/prod/checkout", "{\"c\":1}", None)
        })
        .await
        .expect("dry run answers")
        .into_inner();
    assert_eq!(dry.version, 1, "a dry run changes nothing");
    server.shutdown().await;
}

async fn subscribe(
    channel: &Channel,
    first: pb::watch_request::Request,
) -> Result<tonic::Streaming<pb::WatchResponse>, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request: Some(first),
    })
    .await
    .expect("queued");
    // Keep our side open for the whole test.
    std::mem::forget(tx);
    WatchClient::new(channel.clone())
        .watch(ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_starts_with_a_snapshot_and_ends_unavailable_on_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let mut config = ConfigClient::new(channel.clone());
    config
        .put(put("pay/prod/a", "{\"x\":1}", None))
        .await
        .expect("put");

    let ack = pb::watch_request::Request::Ack(pb::Ack {
        revision: 1,
        watch_id: 0,
    });
    let refused = subscribe(&channel, ack).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let far = pb::watch_request::Request::Subscribe(pb::Subscribe {
        paths: vec!["pay/prod/".into()],
        start_revision: 1_000,
        ..Default::default()
    });
    assert_eq!(
        subscribe(&channel, far).await.unwrap_err().code(),
        Code::OutOfRange
    );

    let sub = pb::watch_request::Request::Subscribe(pb::Subscribe {
        paths: vec!["pay/prod/".into()],
        start_revision: 0,
        client_id: "test".into(),
        ..Default::default()
    });
    let mut stream = subscribe(&channel, sub).await.expect("subscribed");
    let first = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("an event");
    let Some(Event::Snapshot(snap)) = first.event else {
        panic!("expected a snapshot first, got {first:?}");
    };
    assert!(snap.last_chunk);
    assert_eq!(snap.entries.len(), 1);
    let snapshot_revision = snap.revision;

    config
        .put(put("pay/prod/b", "{\"y\":2}", None))
        .await
        .expect("put");
    let next = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("an event");
    let Some(Event::Change(change)) = next.event else {
        panic!("expected a change, got {next:?}");
    };
    assert_eq!(change.revision, snapshot_revision + 1);

    let shutdown = tokio::spawn(server.shutdown());
    let end = stream_end(&mut stream).await;
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let resume = (change.revision + 1).to_string();
    assert_eq!(md(&end, metadata::RESUME_REVISION), Some(resume));
    shutdown.await.expect("shutdown completes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_the_same_directory_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let w = ConfigClient::new(channel.clone())
        .put(put("pay/prod/a", "{\"x\":1}", None))
        .await
        .expect("put")
        .into_inner();
    let cluster_id = w.header.expect("header").cluster_id;
    drop(channel);
    server.shutdown().await;

    let (server, channel) = start(dir.path()).await;
    let g = ConfigClient::new(channel)
        .get(pb::GetRequest {
            path: "pay/prod/a".into(),
            ..Default::default()
        })
        .await
        .expect("still there")
        .into_inner();
    assert_eq!(g.value, "{\"x\":1}");
    assert_eq!(g.header.expect("header").cluster_id, cluster_id);
    server.shutdown().await;
}

/// A data directory records whose it is: starting another node id on it is
/// refused with a message naming both ids, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn another_node_id_is_refused_on_a_recorded_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    drop(channel);
    server.shutdown().await;

    let mut config = ServerConfig::new();
    config.listen = "127.0.0.1:0".into();
    config.peer_listen = "127.0.0.1:0".into();
    config.data_dir = dir.path().join("data");
    config.node_id = 2;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refusal = loop {
        match RunningServer::start(config.clone()).await {
            Ok(_) => panic!("node 2 must not start on node 1's data directory"),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => break e.to_string(),
        }
    };
    assert!(
        refusal.contains("belongs to node 1, not to node 2"),
        "{refusal}"
    );
    // Node 1 still starts on it, with its data.
    let (server, channel) = start(dir.path()).await;
    let tenants = AdminClient::new(channel)
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("list tenants")
        .into_inner();
    assert!(!tenants.tenants.is_empty());
    server.shutdown().await;
}

/// A get's header revision is the state it read: never older than the
/// document's last change, however many writes land while it is served (the
/// fault suite found gets answering a document of revision R + 1 with header
/// revision R, because the header was taken at the read index and the
/// document read later). The same for list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_report_the_revision_of_the_state_they_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    // Eight writers keep applies landing while reads are served.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut config = ConfigClient::new(channel);
                for i in 0..150 {
                    config
                        .put(put("pay/prod/a", &format!("{{\"w\":{w},\"i\":{i}}}"), None))
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut config = ConfigClient::new(channel);
                let mut reads = 0u32;
                for _ in 0..300 {
                    match config
                        .get(pb::GetRequest {
                            path: "pay/prod/a".into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            let header = r.header.expect("header").revision;
                            assert!(
                                r.mod_revision <= header,
                                "get read a document of revision {} but says it read revision {header}",
                                r.mod_revision
                            );
                            reads += 1;
                        }
                        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound),
                    }
                    let listing = config
                        .list(pb::ListRequest {
                            prefix: "pay/prod/".into(),
                            ..Default::default()
                        })
                        .await
                        .expect("list")
                        .into_inner();
                    let header = listing.header.expect("header").revision;
                    for e in &listing.entries {
                        assert!(
                            e.mod_revision <= header,
                            "list entry of revision {} at {header}",
                            e.mod_revision
                        );
                    }
                }
                reads
            })
        })
        .collect();
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert!(reads > 10, "only {reads} reads succeeded");
    server.shutdown().await;
}

/// Names in requests are checked by the `validator` rules on the request
/// types before anything else: every bad name is named, with why, nested
/// ones included, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn bad_names_in_requests_are_refused_naming_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let refused = AdminClient::new(channel.clone())
        .create_tenant(pb::CreateTenantRequest {
            name: "Pay".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad tenant name");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("tenant") && refused.message().contains("\"Pay\""),
        "{}",
        refused.message()
    );
    let refused = ConfigClient::new(channel.clone())
        .apply(pb::ApplyRequest {
            tenant: "pay".into(),
            env: "Prod".into(),
            writes: vec![
                pb::NamespaceWrite {
                    namespace: "ok".into(),
                    value: "{}".into(),
                    ..Default::default()
                },
                pb::NamespaceWrite {
                    namespace: "no/slash".into(),
                    value: "{}".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .await
        .expect_err("bad names");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let m = refused.message();
    assert!(m.contains("\"Prod\"") && m.contains("\"no/slash\""), "{m}");
    let tenants = AdminClient::new(channel)
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(tenants.tenants.len(), 1, "nothing created");
    server.shutdown().await;
}

/// A watch stream opened with `first`, and its request side for more.
async fn open_stream(
    channel: &Channel,
    first: pb::WatchRequest,
) -> (
    mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("queued");
    let stream = WatchClient::new(channel.clone())
        .watch(ReceiverStream::new(rx))
        .await
        .expect("the stream opens")
        .into_inner();
    (tx, stream)
}

/// Puts `value` at `path`; the revision it got.
async fn written(config: &mut ConfigClient<Channel>, path: &str, value: &str) -> u64 {
    config
        .put(put(path, value, None))
        .await
        .expect("put")
        .into_inner()
        .revision
}

/// The next message of `stream` that is not a progress event.
async fn next_event(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    loop {
        let m = next_message(stream).await;
        if !matches!(m.event, Some(Event::Progress(_))) {
            return m;
        }
    }
}

/// The status that ends `stream`, after whatever it still sends.
async fn stream_end(stream: &mut tonic::Streaming<pb::WatchResponse>) -> tonic::Status {
    loop {
        match tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("the stream ends in time")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

/// The next message of `stream`, within the deadline.
async fn next_message(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a message")
}

fn subscribe_watch(id: u64, path: &str, start_revision: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
            paths: vec![path.into()],
            start_revision,
            client_id: format!("watch-{id}"),
            watch_id: id,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn several_watches_share_one_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let mut config = ConfigClient::new(channel.clone());
    let first = written(&mut config, "pay/prod/a", "{\"x\":1}").await;

    let (tx, mut stream) = open_stream(&channel, subscribe_watch(1, "pay/prod/a", 0)).await;
    tx.send(subscribe_watch(2, "pay/prod/", 0))
        .await
        .expect("queued");
    tx.send(subscribe_watch(3, "Pay/prod/", 0))
        .await
        .expect("queued");
    tx.send(subscribe_watch(4, "pay/prod/", first + 1000))
        .await
        .expect("queued");

    // Each watch answers for itself: two snapshots, two refusals.
    let mut snapshots = Vec::new();
    let mut canceled = Vec::new();
    while snapshots.len() + canceled.len() < 4 {
        let m = next_message(&mut stream).await;
        match m.event {
            Some(Event::Snapshot(s)) => snapshots.push((m.watch_ids, s.entries.len())),
            Some(Event::Canceled(c)) => canceled.push((m.watch_ids, c.code)),
            other => panic!("unexpected {other:?}"),
        }
    }
    snapshots.sort();
    canceled.sort();
    assert_eq!(snapshots, [(vec![1], 1), (vec![2], 1)]);
    assert_eq!(
        canceled,
        [
            (vec![3], Code::InvalidArgument as i32),
            (vec![4], Code::OutOfRange as i32)
        ]
    );

    // A write both watches cover reaches each once, in order; one of the
    // same connection's pumps queues it as the other's shared bytes, and
    // then it goes out once for both.
    let mut merged = 0;
    let mut last = [first, first];
    for i in 0..20 {
        let revision = written(&mut config, "pay/prod/a", &format!("{{\"x\":{i}}}")).await;
        while last != [revision, revision] {
            let m = next_message(&mut stream).await;
            let Some(Event::Change(c)) = m.event else {
                continue; // progress
            };
            if m.watch_ids.len() == 2 {
                merged += 1;
            }
            for id in m.watch_ids {
                let seen = &mut last[id as usize - 1];
                assert_eq!(c.revision, revision, "watch {id} after {seen}");
                *seen = c.revision;
            }
        }
    }
    assert!(merged > 0, "no event went out once for both watches");

    // A write only the prefix covers goes to watch 2 alone.
    let b = written(&mut config, "pay/prod/b", "{\"y\":2}").await;
    let m = next_event(&mut stream).await;
    assert_eq!(m.watch_ids, [2]);

    // Acks are recorded for the watch they name.
    tx.send(pb::WatchRequest {
        request: Some(pb::watch_request::Request::Ack(pb::Ack {
            revision: b,
            watch_id: 2,
        })),
    })
    .await
    .expect("queued");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut watch = WatchClient::new(channel.clone());
    loop {
        let report = watch
            .clients(pb::ClientsRequest {
                path: "pay/prod/b".into(),
                local_only: true,
            })
            .await
            .expect("clients")
            .into_inner();
        let acked: Vec<(String, u64)> = report
            .subscribers
            .iter()
            .map(|s| (s.client_id.clone(), s.applied_revision))
            .collect();
        if acked.contains(&("watch-2".to_string(), b)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{acked:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A canceled watch says so, once, and gets nothing more; the other runs
    // on. Canceling it again, or an id no Subscribe named, gets no answer.
    for id in [1, 1, 3, 50] {
        tx.send(pb::WatchRequest {
            request: Some(pb::watch_request::Request::Cancel(pb::Cancel {
                watch_id: id,
            })),
        })
        .await
        .expect("queued");
    }
    let m = next_event(&mut stream).await;
    assert_eq!(m.watch_ids, [1]);
    assert!(
        matches!(&m.event, Some(Event::Canceled(c)) if c.code == 0),
        "{m:?}"
    );
    let after = written(&mut config, "pay/prod/a", "{\"x\":99}").await;
    let m = next_event(&mut stream).await;
    assert_eq!(m.watch_ids, [2]);
    assert!(matches!(m.event, Some(Event::Change(c)) if c.revision == after));

    // A watch id used again ends the stream: the client lost track of them.
    tx.send(subscribe_watch(1, "pay/prod/", 0))
        .await
        .expect("queued");
    let end = stream_end(&mut stream).await;
    assert_eq!(end.code(), Code::FailedPrecondition, "{end:?}");
    assert!(end.message().contains("watch id 1 "), "{}", end.message());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_several_watches_ends_unavailable_on_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let (tx, mut stream) = open_stream(&channel, subscribe_watch(7, "pay/prod/", 0)).await;
    let m = next_message(&mut stream).await;
    assert_eq!(m.watch_ids, [7]);
    assert!(matches!(m.event, Some(Event::Snapshot(_))), "{m:?}");
    let shutdown = tokio::spawn(server.shutdown());
    let end = stream_end(&mut stream).await;
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("each watch"), "{}", end.message());
    assert_eq!(md(&end, metadata::RESUME_REVISION), None);
    shutdown.await.expect("shutdown completes");
    drop(tx);
}

/// Writes from many tasks at once, a lone write proposed on its caller's
/// task and the ones that queue meanwhile proposed together: each gets an
/// answer of its own, the revisions are every one from the first to the
/// last once, and each namespace's version counts every write to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_get_their_own_revision() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, channel) = start(dir.path()).await;
    seed(&channel).await;
    let (tasks, each) = (16, 25);
    let writers = (0..tasks).map(|t| {
        let mut config = ConfigClient::new(channel.clone());
        tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..each {
                // Alone now and then, so that some writes find nothing in flight.
                if i % 5 == t % 5 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                let path = format!("pay/prod/n{}", t % 4);
                revisions.push(written(&mut config, &path, &format!("{{\"i\":{i}}}")).await);
            }
            revisions
        })
    });
    let mut revisions = Vec::new();
    for writer in writers.collect::<Vec<_>>() {
        let mine = writer.await.expect("writer");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        revisions.extend(mine);
    }
    revisions.sort_unstable();
    let first = revisions[0];
    let expected: Vec<u64> = (first..first + (tasks * each) as u64).collect();
    assert_eq!(revisions, expected);
    let mut kv = ConfigClient::new(channel.clone());
    for n in 0..4 {
        let got = kv
            .get(pb::GetRequest {
                path: format!("pay/prod/n{n}"),
                ..Default::default()
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.version, (tasks / 4 * each) as u64, "n{n}");
    }
    server.shutdown().await;
}
