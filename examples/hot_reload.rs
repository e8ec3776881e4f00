//! Hot reload: keep a typed, validated configuration current with `Watched<T>`.
//!
//! Run with: cargo run -p raftconf-examples --example hot_reload -- [--endpoints 127.0.0.1:7070] [--path demo/dev/app]
//!
//! (`RAFTCONF_ENDPOINTS` and `RAFTCONF_PATH` work too; endpoints are comma-separated.)
//! The namespace must exist and hold a valid document, e.g. `{"greeting": "hello", "workers": 4}`.
//! Then change it from another terminal: each accepted change prints a
//! `reloaded` line; a document that fails validation (say `"workers": 0`) is
//! refused, the old value stays in effect, and the server is told why.
//! Ctrl-C exits.

use std::sync::Arc;

use anyhow::Context;
use raftconf_client::Client;
use raftconf_examples::{init_logging, parse_flags, Flag};
use serde::Deserialize;
use validator::Validate;

/// The application's configuration. Serde says what shape it has; validator
/// says what values make sense. Both are checked before a document is used.
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
];
const USAGE: &str =
    "hot_reload [--endpoints host:port[,host:port...]] [--path tenant/env/namespace]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let mut flags = parse_flags(FLAGS, USAGE)?;
    let endpoints = flags.remove("--endpoints").unwrap_or_default();
    let path = flags.remove("--path").unwrap_or_default();

    let client = Client::connect(endpoints.split(',').map(str::trim)).await?;
    let config = client
        .watched::<AppConfig>(&path)
        .validate()
        .on_change(|_old: &Arc<AppConfig>, new: &Arc<AppConfig>, revision| {
            println!("reloaded revision={revision} config={new:?}")
        })
        .on_error(|err| println!("refused: {err}"))
        .start()
        .await
        .with_context(|| format!("loading {path} from {endpoints}"))?;
    println!(
        "loaded revision={} config={:?}",
        config.revision(),
        config.load()
    );

    // The application reads `config.load()` wherever it needs the values: it is
    // lock-free and always returns a whole, validated configuration.
    tokio::signal::ctrl_c().await?;
    println!(
        "exiting at revision={} after {} refusal(s)",
        config.revision(),
        config.errors()
    );
    Ok(())
}
