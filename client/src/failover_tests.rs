//! Tests of the failover and write-retry loop with scripted attempts (no server).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::error::{CURRENT_VERSION_METADATA, LEADER_METADATA};
use crate::ClientOptions;

/// A client whose endpoints are never dialled (the scripted attempts ignore
/// the channel), with short pauses so the tests run fast.
async fn client(endpoints: &[&str], call_timeout: Duration) -> Client {
    let options = ClientOptions::default()
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .call_timeout(call_timeout)
        .max_write_retries(3)
        .author("tester");
    Client::connect_with(endpoints.iter().copied(), options)
        .await
        .expect("valid endpoints")
}

type Outcome = std::result::Result<pb::PutResponse, Status>;

/// Runs a put through `call` with `script` as the attempts' outcomes (the last
/// one repeats); returns the result and the write ids of every attempt.
async fn scripted_put(
    client: &Client,
    script: Vec<Outcome>,
) -> (Result<pb::PutResponse>, Vec<(String, u64)>) {
    let script = Mutex::new(VecDeque::from(script));
    let seen = Mutex::new(Vec::new());
    let request = pb::PutRequest {
        path: "t/e/n".into(),
        write_id: Some(client.next_write_id()),
        ..Default::default()
    };
    let result = client
        .call(
            CallKind::Write,
            || "put t/e/n".into(),
            request,
            |_ch, r| {
                let id = r.get_ref().write_id.clone().unwrap_or_default();
                assert_eq!(
                    r.metadata()
                        .get(AUTHOR_METADATA)
                        .and_then(|v| v.to_str().ok()),
                    Some("tester")
                );
                seen.lock()
                    .expect("seen")
                    .push((id.client_id, id.request_id));
                let mut script = script.lock().expect("script");
                let outcome = if script.len() > 1 {
                    script.pop_front()
                } else {
                    script.front().map(clone_outcome)
                };
                async move {
                    outcome
                        .unwrap_or_else(|| Err(Status::internal("empty script")))
                        .map(tonic::Response::new)
                }
            },
        )
        .await;
    (result, seen.into_inner().expect("seen"))
}

fn clone_outcome(o: &Outcome) -> Outcome {
    match o {
        Ok(r) => Ok(r.clone()),
        Err(s) => Err(Status::with_metadata(
            s.code(),
            s.message(),
            s.metadata().clone(),
        )),
    }
}

fn ok(revision: u64) -> Outcome {
    Ok(pb::PutResponse {
        header: Some(pb::ResponseHeader {
            revision,
            leader_addr: "b:2".into(),
            ..Default::default()
        }),
        revision,
        version: 1,
    })
}

/// A connection that broke after the request left: a local error, not a status
/// the server sent.
fn broken_after_send() -> Status {
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    Status::from_error(Box::new(reset))
}

#[tokio::test]
async fn an_unknown_outcome_is_resent_with_the_same_write_id() {
    let c = client(&["a:1", "b:2"], Duration::from_secs(5)).await;
    let (result, ids) = scripted_put(
        &c,
        vec![
            Err(Status::unknown("maybe")),
            Err(broken_after_send()),
            ok(7),
        ],
    )
    .await;
    assert_eq!(result.expect("the original answer").revision, 7);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "same write id: {ids:?}");
    assert_eq!(ids[0].0, c.client_id());
    assert_eq!(c.last_seen_revision(), 7);
    assert_eq!(c.leader_hint().as_deref(), Some("b:2"), "from the header");
    // The next write gets a fresh id.
    let (_, next) = scripted_put(&c, vec![ok(8)]).await;
    assert_eq!(next[0].1, ids[0].1 + 1);
}

#[tokio::test]
async fn retries_are_bounded_and_end_indeterminate() {
    let c = client(&["a:1", "b:2"], Duration::from_secs(5)).await;
    let (result, ids) = scripted_put(&c, vec![Err(Status::unknown("maybe"))]).await;
    assert_eq!(ids.len(), 4, "one send plus max_write_retries re-sends");
    match result {
        Err(e @ Error::Indeterminate(_)) => {
            assert!(e.to_string().contains("put t/e/n"), "{e}");
            assert!(e.is_indeterminate());
        }
        other => panic!("expected Indeterminate, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_after_an_unknown_outcome_is_still_indeterminate() {
    let c = client(&["a:1", "b:2"], Duration::from_millis(200)).await;
    let (result, _) = scripted_put(
        &c,
        vec![
            Err(Status::unknown("maybe")),
            Err(Status::unavailable("no leader")),
        ],
    )
    .await;
    assert!(matches!(result, Err(Error::Indeterminate(_))), "{result:?}");
}

#[tokio::test]
async fn not_proposed_fails_over_and_ends_unavailable() {
    let c = client(&["a:1", "b:2", "c:3"], Duration::from_millis(200)).await;
    let (result, ids) = scripted_put(&c, vec![Err(Status::unavailable("no leader"))]).await;
    assert!(ids.len() >= 3, "every endpoint tried: {}", ids.len());
    match result {
        Err(Error::Unavailable(message)) => {
            for addr in ["a:1", "b:2", "c:3"] {
                assert!(message.contains(addr), "{message}");
            }
            assert!(!message.contains('\n'));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // During an election: unavailable a few times, then an answer.
    let (result, ids) = scripted_put(
        &c,
        vec![
            Err(Status::unavailable("no leader")),
            Err(Status::unavailable("no leader")),
            Err(Status::unavailable("no leader")),
            Err(Status::unavailable("no leader")),
            ok(9),
        ],
    )
    .await;
    assert_eq!(result.expect("answer after the election").revision, 9);
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn a_leader_hint_is_followed() {
    let c = client(&["a:1", "b:2"], Duration::from_secs(5)).await;
    let mut not_leader = Status::unavailable("not the leader");
    not_leader
        .metadata_mut()
        .insert(LEADER_METADATA, "c:3".parse().expect("ascii"));
    let (result, _) = scripted_put(&c, vec![Err(not_leader), ok(4)]).await;
    assert!(result.is_ok());
    assert_eq!(
        c.endpoints(),
        ["a:1", "b:2", "c:3"],
        "the hinted address is added"
    );
}

#[tokio::test]
async fn a_server_answer_is_final() {
    let c = client(&["a:1", "b:2"], Duration::from_secs(5)).await;
    let mut cas = Status::failed_precondition("version is 4");
    cas.metadata_mut()
        .insert(CURRENT_VERSION_METADATA, "4".parse().expect("ascii"));
    let (result, ids) = scripted_put(&c, vec![Err(cas), ok(1)]).await;
    assert_eq!(ids.len(), 1, "no retry");
    assert!(matches!(
        result,
        Err(Error::CasMismatch {
            current_version: Some(4),
            ..
        })
    ));
}

#[tokio::test]
async fn reads_fail_over_on_ambiguous_failures() {
    let c = client(&["a:1", "b:2"], Duration::from_secs(5)).await;
    let attempts = Mutex::new(0);
    let result = c
        .call(
            CallKind::Read,
            || "status".into(),
            pb::StatusRequest { local_only: true },
            |_ch, _r| {
                let n = {
                    let mut n = attempts.lock().expect("attempts");
                    *n += 1;
                    *n
                };
                async move {
                    if n == 1 {
                        Err(broken_after_send())
                    } else {
                        Ok(tonic::Response::new(pb::StatusResponse {
                            node_id: 2,
                            ..Default::default()
                        }))
                    }
                }
            },
        )
        .await;
    assert_eq!(result.expect("second endpoint").node_id, 2);
}

#[tokio::test]
async fn a_dead_cluster_is_unavailable_within_the_call_timeout() {
    // Bound but not listening: connecting is refused, and no other socket
    // can take the port while `held` lives (a released port could be).
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let port = held.local_addr().expect("bound").port();
    let c = client(&[&format!("127.0.0.1:{port}")], Duration::from_millis(300)).await;
    let started = Instant::now();
    match c.get("t/e/n").await {
        Err(Error::Unavailable(message)) => assert!(message.contains(&port.to_string())),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Writes that could not connect were certainly not applied.
    match c.put("t/e/n", &serde_json::json!({"a": 1})).await {
        Err(Error::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A dry run is no write: it takes no write id.
    let before = c.next_write_id().request_id;
    let dry = crate::PutOptions::default().dry_run(true);
    let result = c.put_text("t/e/n", "a: 1", crate::Format::Yaml, dry).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert_eq!(c.next_write_id().request_id, before + 1);
}

#[tokio::test]
async fn arguments_are_checked_before_sending() {
    let c = client(&["a:1"], Duration::from_millis(100)).await;
    assert!(matches!(
        c.get("no-slashes").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.put("t/e/n", &serde_json::json!([1])).await,
        Err(Error::InvalidArgument(m)) if m.contains("an array")
    ));
    assert!(matches!(
        c.list("t/e/n").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.create_tenant("Bad").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.create_env_with("t", "Bad", "why").await,
        Err(Error::InvalidArgument(_))
    ));
    // A delete cannot be tried out: refused rather than done for real.
    assert!(matches!(
        c.delete("t/e/n", crate::DeleteOptions::default().dry_run(true)).await,
        Err(Error::InvalidArgument(m)) if m.contains("dry run")
    ));
    assert!(Client::connect(Vec::<String>::new()).await.is_err());
    assert!(
        Client::connect_with(["a:1"], ClientOptions::default().author("é"))
            .await
            .is_err()
    );
}
