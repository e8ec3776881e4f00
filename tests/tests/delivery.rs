//! Delivery tracking across a three-node cluster: `raftconf clients` on any
//! node lists the subscribers of every node with the revision each applied;
//! a hot-reload handle whose validation refuses the live document shows up
//! as refusing (with its reasons) and keeps its old value; a closed stream
//! is listed as disconnected and no longer counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use raftconf_client::{Client, ClientOptions, WatchEvent};
use raftconf_tests::{cli_json, create_env, put, Cluster};
use serde::Deserialize;
use serde_json::Value;
use validator::Validate;

const PATH: &str = "shop/prod/checkout";

#[derive(Debug, Deserialize, Validate)]
struct Checkout {
    #[validate(range(min = 1, max = 64))]
    workers: u32,
}

/// Polls `raftconf clients PATH -o json` on `addr` until `ok` holds.
fn wait_clients(addr: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = cli_json(addr, &["clients", PATH])?;
        if ok(&report) {
            return Ok(report);
        }
        if Instant::now() > deadline {
            bail!("{what}: last report {report:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The row of `client_id`.
fn row<'a>(report: &'a Value, client_id: &str) -> Option<&'a Value> {
    report["subscribers"]
        .as_array()?
        .iter()
        .find(|s| s["client_id"] == client_id)
}

#[test]
fn clients_shows_every_nodes_subscribers_their_revisions_and_refusals() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let [n1, n2, n3] = [0, 1, 2].map(|i| cluster.nodes[i].addr.clone());
    create_env(&n1, "shop", "prod")?;
    let (r1, _) = put(&n1, PATH, r#"{"workers": 4}"#)?;
    // The handles start on followers: from a snapshot of what they applied.
    cluster.wait_converged(r1, Duration::from_secs(20))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // A raw watch on node 2, printing-and-acking like `raftconf watch`, and a
    // typed hot-reload handle with validation on node 3.
    let (raw, handle) = rt.block_on(async {
        let options = |id: &str| ClientOptions::default().client_id(id).label("app", "shop");
        let raw_client = Client::connect_with([n2.as_str()], options("raw-watcher")).await?;
        let mut raw = raw_client.watch([PATH], 0).await?;
        let typed = Client::connect_with([n3.as_str()], options("typed-service")).await?;
        let handle = typed.watched::<Checkout>(PATH).validate().start().await?;
        anyhow::Ok((
            tokio::spawn(async move {
                while let Some(Ok(event)) = raw.next().await {
                    let revision = event.revision();
                    if !matches!(event, WatchEvent::Progress { .. }) {
                        raw.ack(revision);
                    }
                }
            }),
            Arc::new(handle),
        ))
    })?;

    let report = wait_clients(&n1, "both subscribers current", |r| {
        r["current"] == 2 && r["latest_revision"] == r1
    })?;
    for id in ["raw-watcher", "typed-service"] {
        let s = row(&report, id).expect("listed");
        ensure!(s["applied_revision"].as_u64() >= Some(r1), "{s}");
        ensure!(s["labels"]["app"] == "shop", "{s}");
    }
    ensure!(row(&report, "raw-watcher").expect("listed")["node_id"] == 2);
    ensure!(row(&report, "typed-service").expect("listed")["node_id"] == 3);

    // Valid for the server, refused by the service's validation.
    let (r2, _) = put(&n1, PATH, r#"{"workers": 0}"#)?;
    let report = wait_clients(&n1, "the typed service refusing", |r| {
        r["latest_revision"] == r2 && r["current"] == 1 && r["refusing"] == 1
    })?;
    let typed = row(&report, "typed-service").expect("listed");
    ensure!(typed["state"] == "refusing", "{typed}");
    ensure!(typed["refusal"]["revision"] == r2, "{typed}");
    ensure!(
        typed["refusal"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("workers")),
        "{typed}"
    );
    ensure!(handle.load().workers == 4, "the old value stays");
    ensure!(row(&report, "raw-watcher").expect("listed")["state"] == "current");

    // A valid document: both current again.
    let (r3, _) = put(&n1, PATH, r#"{"workers": 8}"#)?;
    wait_clients(&n2, "both current at the fixed revision", |r| {
        r["latest_revision"] == r3 && r["current"] == 2 && r["refusing"] == 0
    })?;
    ensure!(handle.load().workers == 8);

    // The raw watcher leaves: listed as disconnected, not counted.
    raw.abort();
    let report = wait_clients(&n3, "the raw watcher disconnected", |r| {
        row(r, "raw-watcher").is_some_and(|s| s["connected"] == false)
    })?;
    ensure!(report["current"] == 1, "{report:#}");
    ensure!(report["unreachable_nodes"]
        .as_array()
        .is_some_and(|u| u.is_empty()));

    // Text output: a summary line, then the rows.
    let out = raftconf_tests::cli(&n1, &["clients", PATH])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.starts_with(&format!(
            "{PATH} at revision {r3}: 1 current, 0 lagging, 0 refusing"
        )),
        "{text}"
    );
    ensure!(
        text.contains("typed-service") && text.contains("raw-watcher"),
        "{text}"
    );

    // A delete: the latest revision is the delete's, and the hot-reload
    // handle, which keeps its last value, is refusing it.
    let deleted = cli_json(&n1, &["delete", PATH])?["revision"]
        .as_u64()
        .expect("a revision");
    let report = wait_clients(&n1, "the delete refused", |r| {
        r["latest_revision"] == deleted && r["refusing"] == 1
    })?;
    ensure!(
        row(&report, "typed-service").expect("listed")["refusal"]["revision"] == deleted,
        "{report:#}"
    );
    ensure!(handle.load().workers == 8);

    // A bad path is a clear error that names it.
    let out = raftconf_tests::cli(&n1, &["clients", "shop/prod"])?;
    ensure!(!out.status.success());
    ensure!(String::from_utf8_lossy(&out.stderr).contains("shop/prod"));
    drop(handle);
    Ok(())
}

/// A refusal outlives the node that recorded it: when the node a refusing
/// handle streams from is killed, the handle resumes elsewhere and reports
/// its refusal again, so it is not mistaken for current.
#[test]
fn a_refusal_is_reported_again_after_the_subscriber_moves() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let [n1, n2, n3] = [0, 1, 2].map(|i| cluster.nodes[i].addr.clone());
    create_env(&n1, "shop", "prod")?;
    let (first, _) = put(&n1, PATH, r#"{"workers": 4}"#)?;
    // The handle starts on a follower: from a snapshot of what it applied.
    cluster.wait_converged(first, Duration::from_secs(20))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handle = rt.block_on(async {
        let options = ClientOptions::default()
            .client_id("mover")
            .keep_alive(Duration::from_secs(1), Duration::from_secs(1));
        // Node 2 first: it streams from node 2.
        let client = Client::connect_with([n2.as_str(), n3.as_str()], options).await?;
        anyhow::Ok(client.watched::<Checkout>(PATH).validate().start().await?)
    })?;
    let (bad, _) = put(&n1, PATH, r#"{"workers": 0}"#)?;
    wait_clients(&n1, "refusing on node 2", |r| {
        row(r, "mover").is_some_and(|s| s["state"] == "refusing" && s["node_id"] == 2)
    })?;
    cluster.nodes[1].kill()?;
    // An unrelated write: the handle acknowledges a revision past the
    // refused one on its new node, which must still show it refusing.
    put(&n1, "shop/prod/other", r#"{"x": 1}"#)?;
    let report = wait_clients(&n1, "refusing on node 3", |r| {
        row(r, "mover").is_some_and(|s| s["node_id"] == 3 && s["connected"] == true)
    })?;
    let s = row(&report, "mover").expect("listed");
    ensure!(s["state"] == "refusing", "{report:#}");
    ensure!(s["refusal"]["revision"] == bad, "{report:#}");
    ensure!(handle.load().workers == 4);
    Ok(())
}
