//! `Watched<T>` against real servers: a set of namespaces published by one
//! transaction is swapped in whole; killing the node a handle streams from
//! moves it to another node without missing or repeating a revision.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use raftconf_client::{Client, ClientOptions, NamespaceWrite};
use raftconf_tests::{create_env, Cluster, Server};
use serde::Deserialize;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
struct Doc {
    n: u64,
}

#[derive(Debug, Deserialize)]
struct Pair {
    front: Doc,
    back: Doc,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Every value of a set handle, as (revision, front.n, back.n), in order.
type Seen = Arc<Mutex<Vec<(u64, u64, u64)>>>;

/// One `apply` writing two namespaces is one revision for the handle: it
/// swaps from (k, k) to (k+1, k+1) and never shows (k+1, k).
#[test]
fn a_set_handle_takes_each_transaction_whole() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "shop", "prod")?;
    runtime()?.block_on(async {
        let client = Client::connect([s.addr.as_str()]).await?;
        let both = |n: u64| {
            [
                NamespaceWrite::put("front", json!({ "n": n })),
                NamespaceWrite::put("back", json!({ "n": n })),
            ]
        };
        client.apply("shop/prod", &both(0), "initial").await?;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let config = client
            .watched::<Pair>("shop/prod/")
            .on_change(move |_, new: &Arc<Pair>, revision| {
                record
                    .lock()
                    .expect("seen")
                    .push((revision, new.front.n, new.back.n))
            })
            .start()
            .await?;
        ensure!(config.load().front.n == 0 && config.load().back.n == 0);

        let mut revisions = Vec::new();
        for n in 1..=30 {
            revisions.push(client.apply("shop/prod", &both(n), "both").await?);
            // An unrelated namespace of the environment: not part of `Pair`,
            // but a prefix covers it; an extra key does not break `Pair`.
            if n % 10 == 0 {
                client.put("shop/prod/other", &json!({ "x": n })).await?;
            }
        }
        let last = *revisions.last().context("writes")?;
        ensure!(
            config.wait_for_revision(last, DEADLINE).await,
            "the handle reaches revision {last}"
        );
        let seen = seen.lock().expect("seen").clone();
        for (revision, front, back) in &seen {
            ensure!(front == back, "half a transaction at {revision}: {seen:?}");
        }
        // Every transaction was swapped in at its own revision.
        let swapped: Vec<u64> = seen.iter().map(|(r, _, _)| *r).collect();
        for r in &revisions {
            ensure!(swapped.contains(r), "transaction at {r} not seen: {seen:?}");
        }
        ensure!(
            swapped.windows(2).all(|w| w[0] < w[1]),
            "in order: {seen:?}"
        );
        let (value, revision) = config.load_with_revision();
        ensure!(value.front.n == 30 && revision == last + 1, "{revision}");
        Ok(())
    })
}

/// Kill -9 the node the handle streams from, in a three-node cluster, while
/// writes continue through the others: the handle resumes on another node and
/// sees every acknowledged write once, in order.
#[test]
fn killing_the_streaming_node_misses_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let endpoints = cluster.endpoints();
    create_env(&endpoints[0], "svc", "prod")?;
    runtime()?.block_on(async {
        // The reader lists node 1 first, so it streams from node 1.
        let reader = Client::connect_with(
            endpoints.clone(),
            ClientOptions::default().keep_alive(Duration::from_secs(1), Duration::from_secs(1)),
        )
        .await?;
        // The writer never talks to node 1.
        let writer = Client::connect(endpoints[1..].to_vec()).await?;
        let mut acked = vec![
            writer
                .put("svc/prod/app", &json!({ "n": 0 }))
                .await?
                .revision,
        ];
        let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let record = seen.clone();
        let config = reader
            .watched::<Doc>("svc/prod/app")
            .on_change(move |_, new: &Arc<Doc>, revision| {
                record.lock().expect("seen").push((revision, new.n))
            })
            .start()
            .await?;
        for n in 1..=20 {
            acked.push(
                writer
                    .put("svc/prod/app", &json!({ "n": n }))
                    .await?
                    .revision,
            );
        }
        ensure!(config.wait_for_revision(acked[20], DEADLINE).await);

        cluster.nodes[0].kill()?;
        for n in 21..=40 {
            // Writes may meet an election when node 1 led; the client library
            // retries what is safe to retry.
            let mut tries = 0;
            let revision = loop {
                match writer.put("svc/prod/app", &json!({ "n": n })).await {
                    Ok(w) => break w.revision,
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("put {n}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            acked.push(revision);
        }
        let last = *acked.last().context("writes")?;
        ensure!(
            config.wait_for_revision(last, DEADLINE).await,
            "the handle reaches revision {last} on another node: {:?}",
            config.stats()
        );
        let seen = seen.lock().expect("seen").clone();
        let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
        // A put retried after an unknown outcome may have landed twice (two
        // revisions with the same n); every acknowledged revision is seen.
        for r in &acked[1..] {
            ensure!(revisions.contains(r), "revision {r} missed: {seen:?}");
        }
        ensure!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "in order, none twice: {revisions:?}"
        );
        ensure!(config.load().n == 40);
        ensure!(
            config.stats().reconnects >= 1,
            "the stream moved: {:?}",
            config.stats()
        );
        Ok(())
    })
}
