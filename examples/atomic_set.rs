//! One typed snapshot of several namespaces, swapped atomically per revision.
//!
//! Run with: cargo run -p raftconf-examples --example atomic_set -- [--endpoints 127.0.0.1:7070] [--env demo/dev]
//!
//! Watches every namespace of the environment (`demo/dev/`) as one `Service`
//! value: `frontend` and `backend` documents. Publish both in one transaction,
//!
//! ```text
//! raftconf apply demo/dev -f ./release/     # release/frontend.json, release/backend.json
//! ```
//!
//! and this prints one `reloaded` line with both new documents: a reader of
//! `load()` never sees the new frontend with the old backend. A release that
//! breaks the rule below (frontend's API version must be one the backend
//! serves) is refused as a whole and the old pair stays. Ctrl-C exits.

use std::sync::Arc;

use anyhow::Context;
use raftconf_client::Client;
use raftconf_examples::{init_logging, parse_flags, Flag};
use serde::Deserialize;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct Frontend {
    /// The backend API version this frontend calls.
    api_version: u32,
    #[validate(range(min = 1, max = 600))]
    timeout_s: u32,
}

#[derive(Debug, Deserialize, Validate)]
struct Backend {
    /// The API versions this backend serves.
    #[validate(length(min = 1))]
    api_versions: Vec<u32>,
}

/// The whole environment: one key per namespace name.
#[derive(Debug, Deserialize, Validate)]
struct Service {
    #[validate(nested)]
    frontend: Frontend,
    #[validate(nested)]
    backend: Backend,
}

impl Service {
    /// A rule across namespaces, which no per-document schema can express.
    fn consistent(&self) -> Result<(), String> {
        if self
            .backend
            .api_versions
            .contains(&self.frontend.api_version)
        {
            Ok(())
        } else {
            Err(format!(
                "frontend calls API v{} but the backend serves {:?}",
                self.frontend.api_version, self.backend.api_versions
            ))
        }
    }
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "--endpoints",
        env: "RAFTCONF_ENDPOINTS",
        default: "127.0.0.1:7070",
    },
    Flag {
        name: "--env",
        env: "RAFTCONF_ENV",
        default: "demo/dev",
    },
];
const USAGE: &str = "atomic_set [--endpoints host:port[,host:port...]] [--env tenant/env]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let mut flags = parse_flags(FLAGS, USAGE)?;
    let endpoints = flags.remove("--endpoints").unwrap_or_default();
    let env = flags.remove("--env").unwrap_or_default();
    let client = Client::connect(endpoints.split(',').map(str::trim)).await?;
    let prefix = format!("{}/", env.trim_end_matches('/'));
    let service = client
        .watched::<Service>(&prefix)
        .validate()
        .validate_with(Service::consistent)
        .on_change(|_old: &Arc<Service>, new: &Arc<Service>, revision| {
            println!(
                "reloaded revision={revision} frontend={:?} backend={:?}",
                new.frontend, new.backend
            )
        })
        .on_error(|err| println!("refused: {err}"))
        .start()
        .await
        .with_context(|| format!("loading {prefix} from {endpoints}"))?;
    let (now, revision) = service.load_with_revision();
    println!(
        "loaded revision={revision} frontend={:?} backend={:?}",
        now.frontend, now.backend
    );
    tokio::signal::ctrl_c().await?;
    println!("exiting: {:?}", service.stats());
    Ok(())
}
