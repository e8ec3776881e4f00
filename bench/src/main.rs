//! `raftconf-bench`: a load generator that prints latency and throughput
//! figures for a raftconf server, driving it only through the public client
//! library (`raftconf-client`), as a service would.
//!
//! Run with: cargo run --release -p raftconf-bench -- all --spawn
//!
//! | subcommand | measures |
//! |---|---|
//! | `put-latency` | sequential puts of a ~200 B document to one namespace (`-c C`: C closed-loop tasks on one client) |
//! | `get-latency` | linearizable gets, the same way |
//! | `watch-latency` | a put's revision reaching `-w W` watchers (each on its own connection): from the put's reply, and from its sending |
//! | `load-cost` | `Watched::load()` called in a loop by every core: ns per call |
//! | `reload-latency` | a put's reply → the new value returned by `load()` in another process |
//! | `idle-subscriptions` | server RSS per idle `Watched` subscription, and set-up rate (`--spawn`) |
//! | `all` | put, get and watch with defaults, plus concurrent, fan-out and hot-reload rows, in one table |
//! | `compare` | raftconf and etcd side by side (issue 7's scenarios a–g), ratio table; see `bench/run.sh` |
//!
//! Against `--endpoints` (default `127.0.0.1:7070`), or `--spawn` a fresh
//! single-node server (`--bin`, default `raftconf` next to this executable).
//! `--quick` shrinks every sample to about 50 operations: a smoke check CI can
//! run in seconds against a debug build (`--bin target/debug/raftconf`).
//! `--json` prints one JSON object instead of the table.
//!
//! Performance targets live in what people read from this output, never in
//! timed test assertions.
//!
//! | module | what it holds |
//! |---|---|
//! | `cli` | flags and their defaults |
//! | `runner` | target choice, tenant/env setup, which measurements run |
//! | `spawned` | `--spawn`: start, await and kill a server |
//! | `load` | closed-loop put/get tasks; the benchmark document |
//! | `watch_latency` | the writer, the watchers, and pairing their clocks |
//! | `reload` | `load()` cost, reload latency across processes, idle subscription cost |
//! | `stats` | nearest-rank percentiles |
//! | `report` | the text table and the JSON object |

mod cli;
mod compare;
mod load;
mod reload;
mod report;
mod runner;
mod spawned;
mod stats;
mod watch_latency;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Reloader(args) = &cli.command {
        return match reload::reloader(&cli.global.endpoints, &args.path, args.cache_dir.as_deref())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("reloader: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let cli::Command::Compare(args) = &cli.command {
        let run = async {
            let bin = match &cli.global.bin {
                Some(bin) => bin.clone(),
                None => spawned::default_binary()?,
            };
            compare::run(args, bin).await
        };
        return match run.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let json = cli.global.json;
    match runner::run(cli).await {
        Ok(report) if json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
