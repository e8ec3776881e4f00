//! The `raftconf` binary: `raftconf server` runs a node, every other
//! subcommand is an operator command. Run `raftconf --help`.

use std::process::ExitCode;

use clap::Parser;
use raftconf_server::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_tracing(&args);
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what is wrong, with its causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}
