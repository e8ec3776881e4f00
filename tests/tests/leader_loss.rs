//! A node that loses its leader for longer than an election ends its watch
//! streams with a status the client resumes from; once a leader is back the
//! watch continues from last_seen + 1 without gap or duplicate.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_client::{Client, WatchEvent};
use raftconf_tests::{create_env, put, Cluster};

#[test]
fn a_leaderless_node_ends_its_watches_and_the_watch_resumes_without_gap() -> Result<()> {
    let mut c = Cluster::start(3)?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;
    let (first, _) = put(&all, "pay/prod/a", r#"{"n":0}"#)?;
    let leader = c.wait_agreed_leader(Duration::from_secs(20))?;
    let follower = (0..3).find(|i| *i != leader).context("a follower")?;
    let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();

    let rt = tokio::runtime::Runtime::new()?;
    // The watch is served by the follower (first endpoint); the others are its fallbacks.
    let mut endpoints = vec![c.nodes[follower].addr.clone()];
    endpoints.extend(others.iter().map(|i| c.nodes[*i].addr.clone()));
    let client = rt.block_on(Client::connect(endpoints))?;
    let mut stream = rt.block_on(client.watch(["pay/prod/"], first))?;
    let mut seen = Vec::new();
    let next_change = |stream: &mut raftconf_client::WatchStream,
                       seen: &mut Vec<u64>,
                       timeout: Duration|
     -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rt.block_on(async { tokio::time::timeout(left, stream.next()).await }) {
                Ok(Some(Ok(WatchEvent::Change { revision, .. }))) => {
                    seen.push(revision);
                    return Ok(revision);
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => bail!("watch failed: {e}"),
                Ok(None) => bail!("watch ended"),
                Err(_) => bail!("no change within {timeout:?}; seen {seen:?}"),
            }
        }
    };
    assert_eq!(
        next_change(&mut stream, &mut seen, Duration::from_secs(20))?,
        first
    );

    // The follower loses its leader (the two others crash).
    for i in &others {
        c.nodes[*i].kill()?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Progress events keep the stream busy; the error shows once the node gives up.
        let _ = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        });
        if stream
            .last_error()
            .is_some_and(|e| e.contains("lost its leader"))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the leaderless follower kept the watch open: {:?}",
                stream.last_error()
            );
        }
    }

    // The others come back; a leader is elected; the watch continues.
    for i in &others {
        c.nodes[*i].restart_no_wait()?;
    }
    c.wait_ready(Duration::from_secs(60))?;
    let mut written = vec![first];
    for n in 1..=5 {
        let (rev, _) = put(&all, "pay/prod/a", &format!(r#"{{"n":{n}}}"#))?;
        written.push(rev);
    }
    while seen.last() != written.last() {
        next_change(&mut stream, &mut seen, Duration::from_secs(30))?;
    }
    assert_eq!(seen, written, "no gap, no duplicate across the leader loss");
    Ok(())
}
