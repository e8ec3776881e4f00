//! The hot-reload figures: what `Watched::load()` costs a reader, how long a
//! write takes to become what `load()` returns in another process, and what
//! an idle subscription costs the server.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use raftconf_client::{Client, Watched};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::load::document;
use crate::spawned::SpawnedServer;

/// Nanoseconds since the Unix epoch: the clock two processes share.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// How a reader gets the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `Watched::load()`: an `Arc<T>` (one shared reference-count increment).
    Load,
    /// `Watched::read()`: a borrowed guard (no shared counter touched).
    Guard,
}

/// `load()` (or `read()`) called in a loop by `threads` plain threads for
/// `duration`: nanoseconds per call, per thread (each thread's calls over its time).
pub async fn load_cost(
    client: &Client,
    path: &str,
    threads: usize,
    duration: Duration,
    how: Read,
) -> Result<f64> {
    client.put(path, &document(200, 0)).await?;
    let watched: Watched<Value> = client.watched(path).start().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let watched = watched.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match how {
                        Read::Load => {
                            for _ in 0..1000 {
                                std::hint::black_box(watched.load());
                            }
                        }
                        Read::Guard => {
                            for _ in 0..1000 {
                                std::hint::black_box(watched.read().revision());
                            }
                        }
                    }
                    calls += 1000;
                }
                start.elapsed().as_nanos() as f64 / calls as f64
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_call = Vec::new();
    for h in handles {
        per_call.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a load() thread panicked"))?,
        );
    }
    Ok(per_call.iter().sum::<f64>() / per_call.len() as f64)
}

/// What one reload-latency run measured, in milliseconds.
#[derive(Debug, Default)]
pub struct ReloadRun {
    /// From the put's reply to the other process's `load()` returning it.
    pub ack_to_visible: Vec<f64>,
    /// From sending the put to the same.
    pub sent_to_visible: Vec<f64>,
}

/// Runs `raftconf-bench reloader` in a child process (a `Watched` on `path`
/// that prints each revision it swaps in, with the time), puts `count`
/// documents `interval` apart, and pairs each put with the child's line.
pub async fn reload_latency(
    client: &Client,
    endpoints: &[String],
    path: &str,
    count: usize,
    interval: Duration,
    cache: bool,
) -> Result<ReloadRun> {
    client.put(path, &document(200, 0)).await?;
    let exe = std::env::current_exe().context("finding this executable")?;
    let cache_dir = tempfile::tempdir()?;
    let mut command = Command::new(exe);
    command.args([
        "reloader",
        "--path",
        path,
        "--endpoints",
        &endpoints.join(","),
    ]);
    if cache {
        command.arg("--cache-dir").arg(cache_dir.path());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the reloader process")?;
    let mut lines = BufReader::new(child.stdout.take().context("reloader stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("the reloader did not start within 20 s")??;
    if first.as_deref().is_none_or(|l| !l.starts_with("ready")) {
        bail!("the reloader said {first:?} instead of ready");
    }
    let mut run = ReloadRun::default();
    for seq in 1..=count as u64 {
        let sent = unix_nanos();
        let revision = client.put(path, &document(200, seq)).await?.revision;
        let acked = unix_nanos();
        let seen = loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .with_context(|| format!("revision {revision} not seen within 10 s"))??
                .context("the reloader exited")?;
            let mut parts = line.split_whitespace();
            let (Some("seen"), Some(r), Some(t)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("unexpected reloader line {line:?}");
            };
            if r.parse::<u64>()? >= revision {
                break t.parse::<u128>()?;
            }
        };
        run.ack_to_visible.push((seen as f64 - acked as f64) / 1e6);
        run.sent_to_visible.push((seen as f64 - sent as f64) / 1e6);
        tokio::time::sleep(interval).await;
    }
    let _ = child.kill().await;
    Ok(run)
}

/// The child of [`reload_latency`]: prints `ready`, then `seen REVISION
/// UNIX_NANOS` right after each swap, read back through `load()`.
pub async fn reloader(
    endpoints: &[String],
    path: &str,
    cache_dir: Option<&std::path::Path>,
) -> Result<()> {
    let client = Client::connect(endpoints.to_vec()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut builder = client.watched::<Value>(path);
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let watched = builder
        // Runs right after the swap: from now on load() returns the new value.
        .on_change(move |_, _, revision| {
            let _ = tx.send((revision, unix_nanos()));
        })
        .start()
        .await?;
    println!("ready");
    while let Some((revision, at)) = rx.recv().await {
        std::hint::black_box(watched.load());
        println!("seen {revision} {at}");
    }
    Ok(())
}

/// What idle subscriptions cost a spawned server.
#[derive(Debug)]
pub struct IdleCost {
    pub subscriptions: usize,
    pub per_connection: usize,
    /// Server RSS growth per subscription, KiB.
    pub kib_each: f64,
    /// Subscriptions set up per second (first value received).
    pub setup_per_sec: f64,
}

/// Opens `count` idle `Watched` subscriptions on `path`, `per_connection` to a
/// client (one HTTP/2 connection each), and measures the server's RSS growth.
pub async fn idle_cost(
    server: &SpawnedServer,
    path: &str,
    count: usize,
    per_connection: usize,
) -> Result<IdleCost> {
    let client = Client::connect([server.addr.as_str()]).await?;
    client.put(path, &document(200, 0)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().context("reading the server's RSS")?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let connections = count.div_ceil(per_connection);
    for c in 0..connections {
        let addr = server.addr.clone();
        let path = path.to_string();
        let n = per_connection.min(count - c * per_connection);
        tasks.spawn(async move {
            let client = Client::connect([addr.as_str()]).await?;
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                handles.push(client.watched::<Value>(&path).start().await?);
            }
            anyhow::Ok((client, handles))
        });
    }
    let mut held = Vec::new();
    while let Some(done) = tasks.join_next().await {
        held.push(done??);
    }
    let setup = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().context("reading the server's RSS")?;
    drop(held);
    Ok(IdleCost {
        subscriptions: count,
        per_connection,
        kib_each: after.saturating_sub(before) as f64 / count as f64,
        setup_per_sec: count as f64 / setup.as_secs_f64(),
    })
}
