//! Membership changes on a running three-process cluster: add a node (learner,
//! caught up, promoted), remove voters, the leader included, while writes go
//! on; a node whose data was wiped comes back only under a new id, caught up
//! by snapshot; a watcher resuming below the replay window gets a snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_tests::{cli, cli_json, create_env, put, Cluster, Server};
use serde_json::{json, Value};

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `raftconf cluster …` against `endpoints`; fails with its stderr.
fn cluster_cmd(endpoints: &str, args: &[&str]) -> Result<Value> {
    let mut full = vec!["cluster"];
    full.extend_from_slice(args);
    cli_json(endpoints, &full)
}

/// The member ids and whether each is a voter, as `status` on `addr` reports.
fn members(addr: &str) -> Result<Vec<(u64, bool)>> {
    let v = cli_json(addr, &["status"])?;
    Ok(v["members"]
        .as_array()
        .context("members")?
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap_or(0),
                m["voter"].as_bool().unwrap_or(false),
            )
        })
        .collect())
}

/// Writes through the client library (all `endpoints`, failover and leader
/// hints as a service would have them) until stopped; records (path,
/// revision) of acknowledged writes.
fn background_writer(
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Runtime::new() else {
            return;
        };
        rt.block_on(async move {
            let Ok(client) = raftconf_client::Client::connect(endpoints).await else {
                return;
            };
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let path = format!("pay/prod/m{i}");
                if let Ok(w) = client.put(&path, &json!({ "i": i })).await {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((path, w.revision));
                }
                i += 1;
            }
        })
    })
}

#[test]
fn add_promote_and_remove_nodes_including_the_leader_while_serving() -> Result<()> {
    let mut c = Cluster::start(3)?;
    let mut n4 = Server::prepare(4)?;
    n4.extra_args = vec!["--join".into()];
    n4.spawn()?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut endpoints = c.endpoints();
    endpoints.push(n4.addr.clone());
    let writer = background_writer(endpoints, stop.clone(), acked.clone());

    // Add node 4: a learner that catches up, then a voter. Its client address
    // is asked from the node itself.
    cluster_cmd(&all, &["add-node", "--id", "4", "--addr", &n4.peer_addr])?;
    assert!(members(&all)?.contains(&(4, true)), "node 4 is a voter");
    let status = cli_json(&n4.addr, &["cluster", "status"])?;
    let row = status["members"]
        .as_array()
        .context("members")?
        .iter()
        .find(|m| m["id"] == 4)
        .cloned()
        .context("node 4 listed")?;
    assert_eq!(
        row["client_addr"],
        n4.addr.as_str(),
        "client address learned from the node"
    );
    assert_eq!(row["reachable"], true);

    // Remove a voter that is not the leader, then the leader itself.
    let leader = c.wait_agreed_leader(Duration::from_secs(20))?;
    let follower = (0..3).find(|i| *i != leader).context("a follower")?;
    let follower_id = c.nodes[follower].node_id;
    cluster_cmd(&all, &["remove-node", "--id", &follower_id.to_string()])?;
    let leader_id = c.nodes[leader].node_id;
    cluster_cmd(&all, &["remove-node", "--id", &leader_id.to_string()])?;
    let remaining = members(&n4.addr)?;
    assert_eq!(remaining.len(), 2, "two members left: {remaining:?}");
    assert!(remaining
        .iter()
        .all(|(id, voter)| *voter && *id != leader_id && *id != follower_id));

    // The two remaining voters elect a leader and keep serving.
    let before = acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    if let Err(e) = wait_for(
        "writes after the leader's removal",
        Duration::from_secs(30),
        || acked.lock().unwrap_or_else(|e| e.into_inner()).len() >= before + 20,
    ) {
        for n in c.nodes.iter().chain([&n4]) {
            eprintln!(
                "node {}: {:?}",
                n.node_id,
                cli_json(&n.addr, &["status"]).map(|v| v.to_string())
            );
            eprintln!(
                "{}",
                n.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")
            );
        }
        return Err(e);
    }
    stop.store(true, Ordering::SeqCst);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;

    // Every acknowledged write is on the remaining members.
    let survivors: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.node_id != leader_id && n.node_id != follower_id)
        .map(|n| n.addr.clone())
        .chain([n4.addr.clone()])
        .collect();
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(acked.len() >= 20);
    for addr in &survivors {
        for (path, rev) in &acked {
            let got = cli_json(addr, &["get", path])?;
            assert_eq!(got["revision"].as_u64(), Some(*rev), "{path} on {addr}");
        }
    }
    Ok(())
}

#[test]
fn a_wiped_node_rejoins_under_a_new_id_caught_up_by_snapshot() -> Result<()> {
    let mut c = Cluster::start_with(3, &["--snapshot-every", "20"])?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;
    for i in 0..60 {
        put(&all, &format!("pay/prod/s{i}"), &format!(r#"{{"i":{i}}}"#))?;
    }
    // Node 3 loses its data: it is removed, and comes back as node 5.
    let n3 = c
        .nodes
        .iter()
        .position(|n| n.node_id == 3)
        .context("node 3")?;
    c.nodes[n3].kill()?;
    cluster_cmd(&all, &["remove-node", "--id", "3"])?;
    let mut n5 = Server::prepare(5)?;
    n5.extra_args = vec!["--join".into(), "--snapshot-every".into(), "20".into()];
    n5.spawn()?;
    cluster_cmd(
        &all,
        &[
            "add-node",
            "--id",
            "5",
            "--addr",
            &n5.peer_addr,
            "--learner",
        ],
    )?;
    assert!(members(&all)?.contains(&(5, false)), "node 5 is a learner");
    let installed = || n5.log().contains("installed snapshot");
    wait_for(
        "node 5 to install a snapshot",
        Duration::from_secs(30),
        installed,
    )?;
    let got = cli_json(
        &n5.addr,
        &["get", "pay/prod/s59", "--consistency", "serializable"],
    )?;
    assert_eq!(got["value"], json!({"i": 59}), "the learner has the data");

    cluster_cmd(&all, &["promote", "--id", "5"])?;
    assert!(members(&all)?.contains(&(5, true)), "node 5 is a voter");
    let (rev, _) = put(
        &format!("{all},{}", n5.addr),
        "pay/prod/after",
        r#"{"ok":true}"#,
    )?;
    c.nodes.remove(n3);
    c.nodes.push(n5);
    c.wait_converged(rev, Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn a_watcher_resuming_below_the_replay_window_gets_a_snapshot_then_live_events() -> Result<()> {
    let mut s = Server::prepare(1)?;
    s.extra_args = vec!["--replay-window".into(), "10".into()];
    s.spawn()?;
    s.wait_ready(Duration::from_secs(30))?;
    create_env(&s.addr, "pay", "prod")?;
    for i in 0..30 {
        put(
            &s.addr,
            &format!("pay/prod/k{}", i % 5),
            &format!(r#"{{"i":{i}}}"#),
        )?;
    }
    let mut child = std::process::Command::new(raftconf_tests::binary())
        .args([
            "--endpoints",
            &s.addr,
            "-o",
            "json",
            "watch",
            "pay/prod/",
            "--from-revision",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || -> Result<Value> {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .context("a watch line")?;
        Ok(serde_json::from_str(&line)?)
    };
    // Five namespaces in the snapshot, at the current revision.
    let mut snapshot = Vec::new();
    for _ in 0..5 {
        let v = next()?;
        assert_eq!(v["type"], "snapshot", "{v}");
        snapshot.push(v);
    }
    assert!(snapshot
        .iter()
        .all(|v| v["revision"] == snapshot[0]["revision"]));
    let (rev, _) = put(&s.addr, "pay/prod/k0", r#"{"live":true}"#)?;
    let live = loop {
        let v = next()?;
        if v["type"] != "progress" {
            break v;
        }
    };
    assert_eq!(live["type"], "put");
    assert_eq!(live["revision"].as_u64(), Some(rev));
    let _ = child.kill();
    let _ = child.wait();
    // The CLI refuses a cluster change without a node id (a local check).
    assert!(!cli(&s.addr, &["cluster", "promote"])?.status.success());
    Ok(())
}
