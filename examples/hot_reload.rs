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

use anyhow::{bail, Context};
use raftconf_client::Client;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let (endpoints, path) = parse_args()?;

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

/// `--endpoints a,b` and `--path t/e/n`, else the environment, else defaults.
fn parse_args() -> anyhow::Result<(String, String)> {
    let mut endpoints =
        std::env::var("RAFTCONF_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:7070".into());
    let mut path = std::env::var("RAFTCONF_PATH").unwrap_or_else(|_| "demo/dev/app".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoints" => endpoints = args.next().context("--endpoints needs a value")?,
            "--path" => path = args.next().context("--path needs a value")?,
            "-h" | "--help" => {
                println!("usage: hot_reload [--endpoints host:port[,host:port...]] [--path tenant/env/namespace]");
                std::process::exit(0);
            }
            other => bail!("unexpected argument {other:?} (try --help)"),
        }
    }
    Ok((endpoints, path))
}
