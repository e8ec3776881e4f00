//! Start even when the whole cluster is down: the last good configuration is
//! kept in a local cache file and used when no server answers in time.
//!
//! Run with: cargo run -p raftconf-examples --example cache_fallback -- [--endpoints 127.0.0.1:7070] [--path demo/dev/app] [--cache-dir ./raftconf-cache] [--start-timeout-ms 2000]
//!
//! 1. With a server up, run it once: it prints `loaded … source=server` and
//!    writes the cache (temp file, fsync, rename) after every accepted value.
//! 2. Stop the server (or every node) and run it again: after the start
//!    timeout it prints `loaded … source=cache` with the same revision.
//! 3. Start the server again and publish: it resumes the watch from the
//!    cached revision, prints `reloaded`, and `source` turns to `server`.
//!
//! A corrupt or truncated cache file is detected (length and CRC), ignored
//! with a warning, and never loaded. Ctrl-C exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use raftconf_client::Client;
use raftconf_examples::{init_logging, parse_flags, Flag};
use serde::Deserialize;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct AppConfig {
    #[validate(length(min = 1))]
    greeting: String,
    #[validate(range(min = 1, max = 64))]
    workers: u32,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "--endpoints",
        env: "RAFTCONF_ENDPOINTS",
        default: "127.0.0.1:7070",
    },
    Flag {
        name: "--path",
        env: "RAFTCONF_PATH",
        default: "demo/dev/app",
    },
    Flag {
        name: "--cache-dir",
        env: "RAFTCONF_CACHE_DIR",
        default: "./raftconf-cache",
    },
    Flag {
        name: "--start-timeout-ms",
        env: "RAFTCONF_START_TIMEOUT_MS",
        default: "2000",
    },
];
const USAGE: &str = "cache_fallback [--endpoints host:port[,host:port...]] [--path tenant/env/namespace] [--cache-dir DIR] [--start-timeout-ms MS]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let mut flags = parse_flags(FLAGS, USAGE)?;
    let endpoints = flags.remove("--endpoints").unwrap_or_default();
    let path = flags.remove("--path").unwrap_or_default();
    let cache_dir = flags.remove("--cache-dir").unwrap_or_default();
    let timeout: u64 = flags
        .remove("--start-timeout-ms")
        .unwrap_or_default()
        .parse()
        .context("--start-timeout-ms must be a number of milliseconds")?;

    let client = Client::connect(endpoints.split(',').map(str::trim)).await?;
    let config = client
        .watched::<AppConfig>(&path)
        .validate()
        .cache_dir(&cache_dir)
        .start_timeout(Duration::from_millis(timeout))
        .on_change(|_old: &Arc<AppConfig>, new: &Arc<AppConfig>, revision| {
            println!("reloaded revision={revision} config={new:?}")
        })
        .on_error(|err| println!("refused: {err}"))
        .start()
        .await
        .with_context(|| format!("loading {path} from {endpoints} or the cache in {cache_dir}"))?;
    let (value, revision) = config.load_with_revision();
    let source = if config.stats().from_cache {
        "cache"
    } else {
        "server"
    };
    println!("loaded revision={revision} source={source} config={value:?}");

    tokio::signal::ctrl_c().await?;
    println!("exiting: {:?}", config.stats());
    Ok(())
}
