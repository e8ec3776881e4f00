//! The command line of `raftconf-bench`: one subcommand per measurement, and
//! global flags that say which server to drive and how to print the figures.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load generator for raftconf: put, get and watch latency through the public
/// client library. Prints figures; asserts nothing.
#[derive(Debug, Parser)]
#[command(name = "raftconf-bench", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes (before or after its name).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Servers to drive, comma-separated `host:port` (ignored with --spawn).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,

    /// Start a fresh single-node `raftconf server` in a temp dir on ports the
    /// OS picks, run against it, and kill it at the end.
    #[arg(long, global = true)]
    pub spawn: bool,

    /// The `raftconf` binary for --spawn (default: `raftconf` in the directory
    /// of this executable, e.g. target/release/raftconf).
    #[arg(long, global = true)]
    pub bin: Option<PathBuf>,

    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// Smoke-check sizes (about 50 operations per measurement): seconds, not
    /// minutes; the figures are then only a sanity check.
    #[arg(long, global = true)]
    pub quick: bool,

    /// Size of each written document, in bytes of canonical JSON.
    #[arg(long, global = true, default_value_t = 200)]
    pub doc_bytes: usize,

    /// Do not send writes to the leader the servers name: send them to the
    /// first endpoint (a follower forwards them). Measures the forwarding path.
    #[arg(long, global = true)]
    pub via_endpoint: bool,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sequential (or --concurrency C closed-loop) puts to one namespace.
    PutLatency(LoadArgs),
    /// Time from a put to its revision arriving at one or more watchers.
    WatchLatency(WatchArgs),
    /// Sequential (or --concurrency C closed-loop) linearizable gets.
    GetLatency(LoadArgs),
    /// `Watched::load()` cost: threads calling it in a loop.
    LoadCost(LoadCostArgs),
    /// Time from a put's reply to the new value returned by `load()` in
    /// another process (a `Watched` in a child `raftconf-bench reloader`).
    ReloadLatency(ReloadArgs),
    /// Server memory per idle subscription and subscription set-up rate
    /// (needs --spawn: the server's RSS is read from /proc).
    IdleSubscriptions(IdleArgs),
    /// Everything with defaults, in one table.
    All(AllArgs),
    /// raftconf and etcd side by side: starts both clusters, runs every
    /// scenario against both in alternating rounds, prints the ratio table.
    Compare(crate::compare::CompareArgs),
    /// The child process of reload-latency (prints what it swaps in).
    #[command(hide = true)]
    Reloader(ReloaderArgs),
}

/// Flags of `load-cost`.
#[derive(Debug, Args)]
pub struct LoadCostArgs {
    /// Reader threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// How long they read, in milliseconds [default: 2000; --quick: 200].
    #[arg(long)]
    pub millis: Option<u64>,
}

/// Flags of `reload-latency`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Measured puts [default: 300; --quick: 30].
    #[arg(long, short = 'n')]
    pub count: Option<usize>,
    /// Pause between two puts, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
    /// Give the reloader a cache directory (each swap then waits for the
    /// cache file's fsync).
    #[arg(long)]
    pub cache: bool,
}

/// Flags of `idle-subscriptions`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Subscriptions [default: 1000; --quick: 50].
    #[arg(long, short = 'n')]
    pub count: Option<usize>,
    /// Subscriptions sharing one client connection (1: each its own).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub per_connection: u32,
}

/// Flags of the hidden `reloader`.
#[derive(Debug, Args)]
pub struct ReloaderArgs {
    /// The namespace to follow.
    #[arg(long)]
    pub path: String,
    /// Its cache directory, if any.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Flags of `put-latency` and `get-latency`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Measured operations in total, across all tasks [default: 2000, or
    /// 100 per task when that is more; --quick: 50, or 10 per task].
    #[arg(long, short = 'n')]
    pub count: Option<usize>,

    /// Unmeasured operations first, sequential [default: 100; --quick: 10].
    #[arg(long)]
    pub warmup: Option<usize>,

    /// Tasks, each issuing its operations one after another on one shared
    /// client (one HTTP/2 connection).
    #[arg(long, short = 'c', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// Pause after each measured operation, outside the timed part, in
    /// milliseconds: lets a cluster go idle between sequential writes (ops/s
    /// then counts the pauses).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

/// Flags of `watch-latency`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Measured puts [default: 500; --quick: 50].
    #[arg(long, short = 'n')]
    pub count: Option<usize>,

    /// Watchers, each with its own client and connection.
    #[arg(long, short = 'w', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub watchers: u32,

    /// Pause between two puts, in milliseconds, so each is delivered on its own.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
}

/// Flags of `all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    /// Tasks for the extra concurrent put and get rows (1 leaves them out)
    /// [default: 64; --quick: 4].
    #[arg(long, short = 'c')]
    pub concurrency: Option<u32>,

    /// Watchers for the extra fan-out watch rows (1 leaves them out)
    /// [default: 10; --quick: 4].
    #[arg(long, short = 'w')]
    pub watchers: Option<u32>,
}

/// How many measured and warm-up operations a load run does.
pub fn load_sizes(args: &LoadArgs, quick: bool) -> (usize, usize) {
    let tasks = args.concurrency as usize;
    let count = args.count.unwrap_or(if quick {
        (10 * tasks).max(50)
    } else {
        (100 * tasks).max(2000)
    });
    let warmup = args.warmup.unwrap_or(if quick { 10 } else { 100 });
    (count, warmup)
}

/// How many measured puts a watch run does.
pub fn watch_count(args: &WatchArgs, quick: bool) -> usize {
    args.count.unwrap_or(if quick { 50 } else { 500 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_parse_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["b", "all", "--spawn", "--quick", "--json"]).expect("parses");
        assert!(cli.global.spawn && cli.global.quick && cli.global.json);
        assert_eq!(cli.global.endpoints, ["127.0.0.1:7070"]);
        let cli = Cli::try_parse_from(["b", "--endpoints", "a:1,b:2", "put-latency", "-c", "8"])
            .expect("parses");
        assert_eq!(cli.global.endpoints, ["a:1", "b:2"]);
        let Command::PutLatency(args) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(load_sizes(&args, false), (2000, 100));
        assert_eq!(load_sizes(&args, true), (80, 10));
    }
}
