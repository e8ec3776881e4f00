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
        let mut last = 0;
        for n in 1..=30 {
            revisions.push(client.apply("shop/prod", &both(n), "both").await?);
            // An unrelated namespace of the environment: not part of `Pair`,
            // but a prefix covers it; an extra key does not break `Pair`.
            if n % 10 == 0 {
                last = client
                    .put("shop/prod/other", &json!({ "x": n }))
                    .await?
                    .revision;
            }
        }
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
        ensure!(
            value.front.n == 30 && revision == last,
            "{revision} vs {last}"
        );
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

/// The cache fallback, with the server really gone: a handle started while
/// no server answers runs from the last good value its predecessor cached;
/// when the server is back it resumes right after the cached revision, so a
/// write made after the cache was written (while no handle ran) is not
/// skipped; a damaged cache file is never loaded.
#[test]
fn starts_from_the_cache_when_no_server_answers_and_resumes_without_a_gap() -> Result<()> {
    let mut s = Server::start()?;
    create_env(&s.addr, "svc", "prod")?;
    let cache = tempfile::tempdir()?;
    let rt = runtime()?;
    let client = rt.block_on(Client::connect([s.addr.as_str()]))?;
    let start = |timeout_ms: u64, seen: Arc<Mutex<Vec<(u64, u64)>>>| {
        let client = client.clone();
        let dir = cache.path().to_path_buf();
        async move {
            client
                .watched::<Doc>("svc/prod/app")
                .cache_dir(dir)
                .start_timeout(Duration::from_millis(timeout_ms))
                .on_change(move |_, new: &Arc<Doc>, revision| {
                    seen.lock().expect("seen").push((revision, new.n))
                })
                .start()
                .await
        }
    };

    // A first handle caches revision r3.
    let r3 = rt.block_on(async {
        let mut last = 0;
        for n in 1..=3 {
            last = client
                .put("svc/prod/app", &json!({ "n": n }))
                .await?
                .revision;
        }
        let first = start(5_000, Arc::default()).await?;
        ensure!(first.wait_for_revision(last, DEADLINE).await);
        ensure!(!first.stats().from_cache);
        anyhow::Ok(last)
    })?;
    // Written while no handle runs: the cache still says r3.
    let (r4, _) = raftconf_tests::put(&s.addr, "svc/prod/app", r#"{"n": 4}"#)?;
    s.kill()?;

    // No server: the new handle starts from the cache.
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let handle = rt.block_on(start(300, seen.clone()))?;
    let (value, revision) = handle.load_with_revision();
    ensure!(
        value.n == 3 && revision == r3,
        "cached value {value:?} at {revision}"
    );
    ensure!(handle.stats().from_cache, "{:?}", handle.stats());

    // The server comes back: r4 (missed while down) and then r5 arrive, in order.
    s.restart()?;
    let (r5, _) = raftconf_tests::put(&s.addr, "svc/prod/app", r#"{"n": 5}"#)?;
    rt.block_on(async {
        ensure!(
            handle.wait_for_revision(r5, DEADLINE).await,
            "resumed: {:?}",
            handle.stats()
        );
        Ok(())
    })?;
    ensure!(
        *seen.lock().expect("seen") == [(r4, 4), (r5, 5)],
        "no gap after the cached revision: {:?}",
        seen.lock().expect("seen")
    );
    ensure!(!handle.stats().from_cache);
    drop(handle);

    // A damaged cache file is ignored: with no server, the start fails.
    let file = std::fs::read_dir(cache.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cache"))
        .context("a cache file")?;
    let mut bytes = std::fs::read(&file)?;
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&file, bytes)?;
    s.kill()?;
    match rt.block_on(start(300, Arc::default())) {
        Err(raftconf_client::Error::Timeout(message)) => {
            ensure!(message.contains("svc/prod/app"), "{message}")
        }
        other => anyhow::bail!("a damaged cache must not be loaded: {other:?}"),
    }
    Ok(())
}
