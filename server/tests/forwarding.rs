//! Three real servers in-process forming one cluster (`peers`), talked to
//! over raw gRPC so that what a follower does is visible: it forwards writes
//! to the leader (the answer is the leader's, with the leader hint), relays
//! the leader's refusals with their metadata, never forwards a forwarded
//! write again, serves linearizable reads from a read index; the leader
//! serves them on its lease only while a quorum backs it; and the peer calls
//! (`Hello`, `ReadIndex`) answer as documented.

use std::collections::BTreeMap;
use std::time::Duration;

use raftconf_api::v1 as pb;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_server::forward::FORWARDED_BY;
use raftconf_server::metadata;
use raftconf_server::network::{ClusterIdSource, PeerChannels};
use raftconf_server::peers::Peers;
use raftconf_server::server::{RunningServer, ServerConfig};
use raftconf_tests::free_port;
use tonic::transport::Channel;
use tonic::Code;

/// Generous bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start_cluster(dir: &std::path::Path) -> Vec<RunningServer> {
    start_cluster_with(dir, Duration::from_secs(3)).await
}

async fn start_cluster_with(dir: &std::path::Path, election_wait: Duration) -> Vec<RunningServer> {
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let configs: Vec<ServerConfig> = peers
        .iter()
        .map(|(id, peer_addr)| {
            let mut c = ServerConfig::new();
            c.node_id = *id;
            c.listen = "127.0.0.1:0".into();
            c.peer_listen = peer_addr.clone();
            c.data_dir = dir.join(format!("n{id}"));
            c.peers = peers.clone();
            c.services.election_wait = election_wait;
            c
        })
        .collect();
    let servers = futures::future::join_all(configs.into_iter().map(RunningServer::start)).await;
    let servers: Vec<RunningServer> = servers
        .into_iter()
        .map(|s| s.expect("server starts"))
        .collect();
    for s in &servers {
        tokio::time::timeout(DEADLINE, s.wait_ready())
            .await
            .expect("ready in time");
    }
    servers
}

async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.client_addr()))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}

/// Creates tenant `pay` and its environment `prod` through `server`.
async fn create_pay_prod(server: &RunningServer) {
    let mut admin = AdminClient::new(channel(server).await);
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

fn md(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_forward_writes_and_serve_linearizable_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = start_cluster(dir.path()).await;
    let leader_id = servers[0].node().leader().leader_id.expect("a leader");
    let leader = &servers[leader_id as usize - 1];
    let followers: Vec<&RunningServer> = servers
        .iter()
        .filter(|s| s.node().node_id() != leader_id)
        .collect();
    let leader_addr = leader.client_addr().to_string();

    // Admin writes through a follower.
    create_pay_prod(followers[0]).await;

    // A put through a follower: the leader's answer, and the leader hint.
    let mut config = ConfigClient::new(channel(followers[0]).await);
    let put_request = || {
        let mut request = tonic::Request::new(pb::PutRequest {
            path: "pay/prod/a".into(),
            value: r#"{"x":1}"#.into(),
            write_id: Some(pb::WriteId {
                client_id: "t".into(),
                request_id: 1,
            }),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert(metadata::AUTHOR, "bob".parse().expect("ascii"));
        request
    };
    let response = config.put(put_request()).await.expect("forwarded put");
    assert_eq!(
        response
            .metadata()
            .get(metadata::LEADER)
            .and_then(|v| v.to_str().ok()),
        Some(leader_addr.as_str()),
        "the leader hint comes with a forwarded answer"
    );
    let put = response.into_inner();
    let header = put.header.expect("header");
    assert_eq!(header.node_id, leader_id, "the answer is the leader's");
    assert_eq!(put.version, 1);

    // The same write id again: the original answer, nothing applied twice.
    let again = config.put(put_request()).await.expect("retry").into_inner();
    assert_eq!((again.revision, again.version), (put.revision, 1));

    // A linearizable read on the other follower sees it at once, stamped by
    // the leader with the caller's author.
    let mut other = ConfigClient::new(channel(followers[1]).await);
    let got = other
        .get(pb::GetRequest {
            path: "pay/prod/a".into(),
            ..Default::default()
        })
        .await
        .expect("linearizable read on a follower")
        .into_inner();
    assert_eq!(got.mod_revision, put.revision);
    assert_eq!(got.author, "bob");
    assert!(got.time_ms > 0, "time stamped by the leader");
    assert_eq!(
        got.header.expect("header").node_id,
        followers[1].node().node_id()
    );

    // The leader's refusal comes back with its metadata.
    let miss = config
        .put(pb::PutRequest {
            path: "pay/prod/a".into(),
            value: r#"{"x":2}"#.into(),
            if_version: Some(0),
            ..Default::default()
        })
        .await
        .expect_err("CAS miss");
    assert_eq!(miss.code(), Code::FailedPrecondition);
    assert_eq!(md(&miss, metadata::CURRENT_VERSION).as_deref(), Some("1"));
    assert_eq!(
        md(&miss, metadata::LEADER).as_deref(),
        Some(leader_addr.as_str())
    );

    // A write forwarded once is not forwarded again: the follower says who leads.
    let mut twice = tonic::Request::new(pb::PutRequest {
        path: "pay/prod/b".into(),
        value: "{}".into(),
        ..Default::default()
    });
    twice
        .metadata_mut()
        .insert(FORWARDED_BY, "9".parse().expect("ascii"));
    let refused = config.put(twice).await.expect_err("not forwarded twice");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        md(&refused, metadata::LEADER).as_deref(),
        Some(leader_addr.as_str())
    );

    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_calls_answer_hello_and_read_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = start_cluster(dir.path()).await;
    let leader_id = servers[0].node().leader().leader_id.expect("a leader");
    let cluster_id = servers[0].node().cluster_id();
    let peers = Peers::new(
        7,
        ClusterIdSource::new(),
        PeerChannels::new(Duration::from_secs(1)),
    );
    for s in &servers {
        let hello = peers
            .hello(&s.peer_addr().to_string(), Duration::from_secs(2))
            .await
            .expect("hello");
        assert_eq!(hello.node_id, s.node().node_id());
        assert_eq!(hello.cluster_id, cluster_id);
        assert!(hello.initialized);
        assert_eq!(hello.member_ids, [1, 2, 3]);
        assert_eq!(hello.leader_id, leader_id);
        assert_eq!(hello.client_addr, s.client_addr().to_string());
        let read = peers
            .read_index(&s.peer_addr().to_string(), Duration::from_secs(2))
            .await;
        if s.node().node_id() == leader_id {
            assert!(read.expect("the leader gives a read index").index >= 1);
        } else {
            let status = read.expect_err("a follower gives none");
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(
                md(&status, metadata::LEADER_ID),
                Some(leader_id.to_string())
            );
        }
    }
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_quorum_a_follower_answers_unavailable_after_a_bounded_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wait = Duration::from_millis(1500);
    let mut servers = start_cluster_with(dir.path(), wait).await;
    let leader_id = servers[0].node().leader().leader_id.expect("a leader");
    // Keep one follower; stop the leader and the other follower.
    let keep = servers
        .iter()
        .position(|s| s.node().node_id() != leader_id)
        .expect("a follower");
    let survivor = servers.remove(keep);
    for s in servers {
        s.shutdown().await;
    }
    let mut config = ConfigClient::new(channel(&survivor).await);
    let started = std::time::Instant::now();
    let refused = config
        .put(pb::PutRequest {
            path: "pay/prod/a".into(),
            value: "{}".into(),
            ..Default::default()
        })
        .await
        .expect_err("no quorum");
    let took = started.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("no leader took the write"),
        "{}",
        refused.message()
    );
    assert!(
        took >= wait && took < wait + Duration::from_secs(3),
        "{took:?}"
    );
    let read = config
        .get(pb::GetRequest {
            path: "pay/prod/a".into(),
            ..Default::default()
        })
        .await
        .expect_err("no linearizable read without a leader");
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert!(
        read.message().contains("serializable"),
        "{}",
        read.message()
    );
    survivor.shutdown().await;
}

/// Reads on the leader's lease: after one read round, reads on the leader
/// take no round of their own, yet still see every acknowledged write; a
/// vote request ends the lease at once; and once the followers are gone the
/// leader stops answering linearizable reads within the lease, well before a
/// new leader could have been elected (the followers' lease, 750 ms).
#[tokio::test(flavor = "multi_thread")]
async fn the_leader_reads_on_its_lease_only_while_a_quorum_backs_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut servers = start_cluster(dir.path()).await;
    let leader_id = servers[0].node().leader().leader_id.expect("a leader");
    let at = servers
        .iter()
        .position(|s| s.node().node_id() == leader_id)
        .expect("the leader is one of them");
    let leader = servers.remove(at);
    let node = leader.node().clone();
    create_pay_prod(&leader).await;
    let mut config = ConfigClient::new(channel(&leader).await);
    let get = || pb::GetRequest {
        path: "pay/prod/a".into(),
        ..Default::default()
    };

    // Twenty puts, each read back at once: every read sees the put before it.
    let rounds_before = node.read_rounds();
    for i in 1..=20 {
        let put = config
            .put(pb::PutRequest {
                path: "pay/prod/a".into(),
                value: format!(r#"{{"i":{i}}}"#),
                ..Default::default()
            })
            .await
            .expect("put")
            .into_inner();
        let got = config.get(get()).await.expect("read").into_inner();
        assert_eq!(got.mod_revision, put.revision, "read {i} misses put {i}");
    }
    let rounds = node.read_rounds() - rounds_before;
    assert!(
        rounds < 20,
        "{rounds} read rounds for 20 reads: none was served on the lease"
    );

    // A vote request, even a stale one that is refused, ends the lease.
    let held = node.read_rounds();
    let stale = openraft::raft::VoteRequest::new(openraft::Vote::new(0, 99), None);
    let answer = node.vote(stale).await.expect("vote answered");
    assert!(!answer.vote_granted, "a stale vote is refused");
    config.get(get()).await.expect("read after the vote");
    assert_eq!(
        node.read_rounds(),
        held + 1,
        "the read after a vote request takes a round"
    );

    // Without its followers the leader refuses linearizable reads once the
    // lease (at most 375 ms after the last round began) is over.
    for s in servers {
        s.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(750)).await;
    let refused = config
        .get(get())
        .await
        .expect_err("no linearizable read without a quorum");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    leader.shutdown().await;
}
