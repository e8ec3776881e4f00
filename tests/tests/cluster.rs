//! Three real `raftconf server` processes forming one cluster with `--peers`:
//! formation in any start order, any node answering, restarts, a wiped node
//! refused under its old id, and a leader killed with SIGKILL in the middle
//! of a stream of writes while watchers run. Each node runs on OS-chosen
//! ports in its own temp dir, kept with its logs when a test fails; the start
//! order is seeded and printed (`RAFTCONF_TEST_SEED` replays it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use raftconf_client::{Client, ClientOptions, WatchEvent};
use raftconf_tests::{cli_json, put, Cluster};
use serde_json::json;

/// Generous bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The nodes form one cluster whatever order they start in; every node
/// answers writes and linearizable reads (writes stamped by the leader with
/// the caller's author); a full restart keeps the same cluster (no second
/// initialisation); a node whose data directory was wiped is refused under
/// its old id with a one-line error.
#[test]
fn three_nodes_form_one_cluster_in_any_order_and_any_node_answers() -> Result<()> {
    let mut c = Cluster::start(3)?;
    let leader = c.wait_agreed_leader(DEADLINE)?;
    let first = cli_json(&c.nodes[leader].addr, &["status"])?;
    let cluster_id = first["cluster_id"]
        .as_str()
        .context("cluster id")?
        .to_string();
    let members = first["members"].as_array().context("members")?;
    ensure!(members.len() == 3, "three members: {first}");
    for node in &c.nodes {
        let m = members
            .iter()
            .find(|m| m["id"].as_u64() == Some(node.node_id))
            .context("every node is a member")?;
        assert_eq!(m["voter"], true, "{m}");
        assert_eq!(
            m["client_addr"].as_str(),
            Some(node.addr.as_str()),
            "the founder learned every client address"
        );
        assert_eq!(m["peer_addr"].as_str(), Some(node.peer_addr.as_str()));
    }

    // Any node answers: tenant, environment and puts through the followers,
    // reads (linearizable) through every node.
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cli_json(&c.nodes[followers[0]].addr, &["tenant", "create", "pay"])?;
    cli_json(&c.nodes[followers[1]].addr, &["env", "create", "pay/prod"])?;
    let (rev, _) = put(&c.nodes[followers[0]].addr, "pay/prod/a", r#"{"x":1}"#)?;
    for node in &c.nodes {
        let got = cli_json(&node.addr, &["get", "pay/prod/a"])?;
        assert_eq!(
            got["value"],
            json!({"x": 1}),
            "read on node {}",
            node.node_id
        );
        assert!(got["store_revision"].as_u64().unwrap_or(0) >= rev);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let options = ClientOptions::default().author("alice");
        let client = Client::connect_with([c.nodes[followers[1]].addr.clone()], options).await?;
        let w = client.put("pay/prod/b", &json!({"y": 2})).await?;
        let doc = client.get("pay/prod/b").await?;
        assert_eq!(doc.mod_revision, w.revision);
        assert_eq!(
            doc.author, "alice",
            "the author travels with a forwarded write"
        );
        // A CAS miss through a follower is the leader's answer, with its details.
        let miss = client
            .put_with(
                "pay/prod/b",
                &json!({"y": 3}),
                raftconf_client::PutOptions::default().if_version(0),
            )
            .await
            .expect_err("the namespace exists");
        match miss {
            raftconf_client::Error::CasMismatch {
                current_version, ..
            } => assert_eq!(current_version, Some(1)),
            other => bail!("expected a CAS miss, got {other}"),
        }
        anyhow::Ok(())
    })?;

    // A full restart (SIGKILL every node, restart in another order): the
    // persisted membership wins over --peers, the cluster id stays.
    for node in &mut c.nodes {
        node.kill()?;
    }
    for i in [2, 0, 1] {
        c.nodes[i].restart_no_wait()?;
    }
    let leader = c.wait_ready(DEADLINE)?;
    let after = cli_json(&c.nodes[leader].addr, &["status"])?;
    assert_eq!(after["cluster_id"].as_str(), Some(cluster_id.as_str()));
    let got = cli_json(&c.nodes[(leader + 1) % 3].addr, &["get", "pay/prod/b"])?;
    assert_eq!(got["value"], json!({"y": 2}));

    // A follower whose data directory is lost must not come back as itself.
    let victim = (leader + 1) % 3;
    let node = &mut c.nodes[victim];
    node.kill()?;
    std::fs::remove_dir_all(&node.data_dir)?;
    node.restart_no_wait()?;
    let (code, log) = node.wait_exit(DEADLINE)?;
    assert_eq!(code, Some(1), "refused: {log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .context("one error line")?;
    assert!(
        line.contains("empty data directory") && line.contains("new --node-id"),
        "{line}"
    );
    // The two others still serve.
    put(&c.nodes[leader].addr, "pay/prod/c", r#"{"z":1}"#)?;
    Ok(())
}

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    path: String,
    revision: u64,
    sent: Instant,
    acked: Instant,
}

/// Runs a watch on `endpoint` only, from `from`, appending every change's
/// revision to `seen` until the task is aborted.
fn watch_into(
    rt: &tokio::runtime::Runtime,
    endpoint: String,
    from: u64,
    seen: Arc<Mutex<Vec<u64>>>,
) -> tokio::task::JoinHandle<Result<()>> {
    rt.spawn(async move {
        let client = Client::connect([endpoint]).await?;
        let mut stream = client.watch(["pay/prod/"], from).await?;
        while let Some(event) = stream.next().await {
            match event? {
                WatchEvent::Change { revision, .. } => lock(&seen).push(revision),
                WatchEvent::Snapshot { revision, .. } => {
                    bail!("unexpected snapshot at revision {revision}")
                }
                WatchEvent::Progress { .. } => {}
            }
        }
        Ok(())
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGKILL the leader while writers send through every endpoint: a new
/// leader is elected, writes continue (also through each surviving endpoint
/// alone), every acknowledged write is on every node once the old leader is
/// back, and all nodes end with the same revision and state digest. A
/// watcher on a follower keeps receiving across the kill with no gap and no
/// duplicate; a watcher stopped on the old leader and resumed on another
/// node from last_seen + 1 gets exactly the revisions it missed.
#[test]
fn leader_killed_during_writes_loses_nothing_and_watches_continue() -> Result<()> {
    const WRITERS: usize = 3;
    let mut c = Cluster::start(3)?;
    let endpoints = c.endpoints();
    let leader = c.wait_agreed_leader(DEADLINE)?;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let rt = tokio::runtime::Runtime::new()?;
    let start = rt.block_on(async {
        let admin = Client::connect(endpoints.clone()).await?;
        admin.create_tenant("pay").await?;
        anyhow::Ok(admin.create_env("pay", "prod").await? + 1)
    })?;

    let on_follower = Arc::new(Mutex::new(Vec::new()));
    let follower_watch = watch_into(&rt, endpoints[follower].clone(), start, on_follower.clone());
    let on_leader = Arc::new(Mutex::new(Vec::new()));
    let leader_watch = watch_into(&rt, endpoints[leader].clone(), start, on_leader.clone());

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            // Each writer lists every endpoint, starting at a different one.
            let mut mine = endpoints.clone();
            mine.rotate_left(w);
            let (acks, errors, stop) = (acks.clone(), errors.clone(), stop.clone());
            rt.spawn(async move {
                let client =
                    Client::connect_with(mine, ClientOptions::default().author("w")).await?;
                // Paced: a steady stream, a few hundred writes in all.
                let mut pace = tokio::time::interval(Duration::from_millis(25));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let path = format!("pay/prod/w{w}-{i}");
                    i += 1;
                    let sent = Instant::now();
                    match client.put(&path, &json!({"w": w, "i": i})).await {
                        Ok(r) => lock(&acks).push(Ack {
                            path,
                            revision: r.revision,
                            sent,
                            acked: Instant::now(),
                        }),
                        Err(e) => lock(&errors).push(format!("{path}: {e}")),
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let acked = || lock(&acks).len();

    wait_for("60 writes before the kill", DEADLINE, || acked() >= 60)?;
    // Stop the watcher on the leader-to-be-killed; it resumes elsewhere later.
    leader_watch.abort();
    let _ = rt.block_on(leader_watch);
    let seen_on_leader = lock(&on_leader).clone();

    c.nodes[leader].kill()?;
    let killed_at = Instant::now();
    let after_kill = || lock(&acks).iter().filter(|a| a.sent >= killed_at).count();
    wait_for("60 writes after the kill", DEADLINE, || after_kill() >= 60)?;
    let failover = lock(&acks)
        .iter()
        .filter(|a| a.sent >= killed_at)
        .map(|a| a.acked - killed_at)
        .min()
        .context("a write after the kill")?;
    eprintln!(
        "failover: leader killed -> first write sent afterwards acknowledged in {failover:?}"
    );
    // Each surviving endpoint alone takes writes (forwarded to the new leader if need be).
    for (i, node) in [follower, other].into_iter().enumerate() {
        put(
            &endpoints[node],
            &format!("pay/prod/direct{i}"),
            r#"{"d":1}"#,
        )
        .with_context(|| format!("a write through node {}", c.nodes[node].node_id))?;
    }

    c.nodes[leader].restart()?;
    let restarted_at = Instant::now();
    wait_for("30 writes after the restart", DEADLINE, || {
        lock(&acks)
            .iter()
            .filter(|a| a.sent >= restarted_at)
            .count()
            >= 30
    })?;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w)??;
    }
    let acks = lock(&acks).clone();
    let errors = lock(&errors).clone();
    eprintln!(
        "{} writes acknowledged, {} failed: {errors:?}",
        acks.len(),
        errors.len()
    );

    let last_acked = acks.iter().map(|a| a.revision).max().context("acks")?;
    let (revision, digest) = c.wait_converged(last_acked, DEADLINE)?;
    eprintln!("converged at revision {revision}, digest {digest}");

    // Every acknowledged write is there, at its revision; and every revision
    // from `start` on is one of the writes (the truth the watchers must match).
    let listing = rt.block_on(async {
        let client = Client::connect([endpoints[leader].clone()]).await?;
        anyhow::Ok(client.list("pay/prod/").await?)
    })?;
    let by_path: std::collections::BTreeMap<&str, u64> = listing
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.mod_revision))
        .collect();
    for a in &acks {
        assert_eq!(
            by_path.get(a.path.as_str()),
            Some(&a.revision),
            "acknowledged write {} at revision {}",
            a.path,
            a.revision
        );
    }
    let mut truth: Vec<u64> = by_path.values().copied().collect();
    truth.sort_unstable();
    let expected: Vec<u64> = (start..=revision).collect();
    assert_eq!(
        truth, expected,
        "every revision since the start is one write"
    );

    // The follower's watcher saw everything, once, in order, across the kill.
    wait_for("the follower's watcher to reach the end", DEADLINE, || {
        lock(&on_follower).last().is_some_and(|r| *r >= revision)
    })?;
    assert_eq!(
        *lock(&on_follower),
        truth,
        "watch on a follower across the kill"
    );
    follower_watch.abort();

    // The watcher stopped on the old leader resumes on another node.
    let last_seen = seen_on_leader.last().copied().unwrap_or(start - 1);
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let resumed_watch = watch_into(
        &rt,
        endpoints[other].clone(),
        last_seen + 1,
        resumed.clone(),
    );
    wait_for("the resumed watcher to reach the end", DEADLINE, || {
        lock(&resumed).last().is_some_and(|r| *r >= revision)
    })?;
    resumed_watch.abort();
    let mut joined = seen_on_leader.clone();
    joined.extend(lock(&resumed).iter().copied());
    assert_eq!(
        joined, truth,
        "seen on the old leader + resumed elsewhere from last_seen + 1 = every write once"
    );
    Ok(())
}
