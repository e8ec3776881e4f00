//! A hot-reload client process for the fault suite: a `Watched` JSON value
//! of one namespace with several endpoints and a cache directory. It prints
//! one JSON line per value it exposes: `{"revision":R,"value":V,"from_cache":B}`
//! (the first value, from a server or from the cache, then every swap).
//!
//! The harness kills and restarts it (also while every node is down) on the
//! same cache directory and client id, and checks what it printed.
//!
//! With `--beside-a-decoy` it first opens a plain watch of the same
//! namespace and keeps reading it, so that the `Watched` is the client's
//! second watch on its server and shares that watch's stream: the client's
//! shared streams then meet every fault the suite injects.
//!
//! `jepsen-reloader --endpoints A,B,C --path T/E/N --cache-dir DIR --client-id ID [--beside-a-decoy]`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftconf_client::Client;
use raftconf_jepsen::workload::client_options;
use serde_json::{json, Value};

fn print(revision: u64, value: &Value, from_cache: bool) {
    let line = json!({"revision": revision, "value": value, "from_cache": from_cache});
    let mut out = std::io::stdout().lock();
    // The harness reads lines as they come: flush each.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut endpoints = String::new();
    let mut path = String::new();
    let mut cache_dir = String::new();
    let mut client_id = String::new();
    let mut decoy = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--beside-a-decoy" {
            decoy = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoints" => endpoints = value,
            "--path" => path = value,
            "--cache-dir" => cache_dir = value,
            "--client-id" => client_id = value,
            other => bail!("unknown flag {other}"),
        }
    }
    let options = client_options(Duration::from_secs(5)).client_id(client_id);
    let client = Client::connect_with(endpoints.split(','), options).await?;
    if decoy {
        let mut stream = client.watch([path.as_str()], 0).await?;
        // Its first event, if a server answers soon: by then it holds the
        // stream the `Watched` will share.
        let first = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
        if let Ok(Some(Err(e))) = first {
            bail!("the decoy watch failed: {e}");
        }
        tokio::spawn(async move { while stream.next().await.is_some() {} });
    }
    // No server and no cache yet (a first start during an outage): try again.
    let handle = loop {
        let started = client
            .watched::<Value>(&path)
            .cache_dir(&cache_dir)
            .start_timeout(Duration::from_secs(1))
            .on_change(|_, new: &Arc<Value>, revision| print(revision, new, false))
            .start()
            .await;
        match started {
            Ok(handle) => break handle,
            Err(e) => {
                eprintln!("jepsen-reloader: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (value, revision) = handle.load_with_revision();
    print(revision, &value, handle.stats().from_cache);
    std::future::pending::<()>().await;
    Ok(())
}
