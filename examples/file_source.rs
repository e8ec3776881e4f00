//! The same typed, validated handle fed from a local file instead of a
//! cluster: for development, tests and sidecars.
//!
//! Run with: cargo run -p raftconf-examples --example file_source -- [--file ./app.yaml]
//!
//! The file may be JSON, YAML or TOML (by extension), e.g. `app.yaml`:
//!
//! ```yaml
//! greeting: hello
//! workers: 4
//! ```
//!
//! Edit it in any editor (in place or save-by-rename, as vim does): each
//! accepted version prints `reloaded`; a version that does not parse (the
//! error names line and column) or fails validation is refused and the old
//! value stays. Ctrl-C exits.

use std::sync::Arc;

use anyhow::Context;
use raftconf_client::Watched;
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

const FLAGS: &[Flag] = &[Flag {
    name: "--file",
    env: "RAFTCONF_FILE",
    default: "./app.yaml",
}];
const USAGE: &str = "file_source [--file PATH.json|.yaml|.toml]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let mut flags = parse_flags(FLAGS, USAGE)?;
    let file = flags.remove("--file").unwrap_or_default();
    let config = Watched::<AppConfig>::from_file(&file)
        .validate()
        .on_change(|_old: &Arc<AppConfig>, new: &Arc<AppConfig>, version| {
            println!("reloaded version={version} config={new:?}")
        })
        .on_error(|err| println!("refused: {err}"))
        .start()
        .await
        .with_context(|| format!("loading {file}"))?;
    println!("loaded config={:?}", config.load());
    tokio::signal::ctrl_c().await?;
    println!("exiting: {:?}", config.stats());
    Ok(())
}
