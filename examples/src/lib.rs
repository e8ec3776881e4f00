//! Runnable raftconf examples live next to this crate's `Cargo.toml` (see its
//! `[[example]]` entries). Run one with, e.g.,
//! `cargo run -p raftconf-examples --example hot_reload`.
//!
//! This library holds only what every example needs and is not about
//! raftconf: reading `--flag value` arguments and setting up logging.

use std::collections::BTreeMap;

use anyhow::{bail, Context};

/// One `--name value` flag: its environment variable and default.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// `--endpoints`
    pub name: &'static str,
    /// `RAFTCONF_ENDPOINTS`: used when the flag is not given.
    pub env: &'static str,
    /// Used when neither is given.
    pub default: &'static str,
}

/// The flag values, from the command line, else the environment, else the
/// defaults. `--help` prints `usage` and exits.
pub fn parse_flags(flags: &[Flag], usage: &str) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut values: BTreeMap<&'static str, String> = flags
        .iter()
        .map(|f| {
            let value = std::env::var(f.env).unwrap_or_else(|_| f.default.to_string());
            (f.name, value)
        })
        .collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("usage: {usage}");
            std::process::exit(0);
        }
        let Some(flag) = flags.iter().find(|f| f.name == arg) else {
            bail!("unexpected argument {arg:?} (try --help)");
        };
        let value = args
            .next()
            .with_context(|| format!("{} needs a value", flag.name))?;
        values.insert(flag.name, value);
    }
    Ok(values)
}

/// Logs to stderr at `RUST_LOG` (default: warnings).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
