//! `raftconf-jepsen`: runs the fault suite once and exits 0 only when every
//! checker passes.
//!
//! ```text
//! cargo run --release -p raftconf-jepsen -- --seed 7 --time 60s \
//!     --nemesis kill,pause,partition,membership --nodes 3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use raftconf_jepsen::check::{check_all, CheckOptions};
use raftconf_jepsen::history::read_history;
use raftconf_jepsen::nemesis::Kind;
use raftconf_jepsen::net;
use raftconf_jepsen::run::{run, RunOptions};

/// Jepsen-style fault suite for raftconf: real processes, injected faults,
/// checked histories.
#[derive(Debug, Parser)]
#[command(name = "raftconf-jepsen")]
struct Args {
    /// Seed of the workload and the fault schedule (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long the workload and faults run (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    time: Duration,
    /// Fault kinds, comma-separated: kill, pause, partition, membership; or none.
    #[arg(long, default_value = "kill,pause,partition,membership")]
    nemesis: String,
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Namespaces the clients share.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Watchers.
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// Hot-reload client processes with a cache directory, restarted during
    /// the run (also while every node is down).
    #[arg(long, default_value_t = 2)]
    reloaders: usize,
    /// Bound on one client operation; past it the outcome is unknown.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    op_timeout: Duration,
    /// The nodes' --snapshot-every (low, so snapshots are built and installed).
    #[arg(long, default_value_t = 300)]
    snapshot_every: u64,
    /// The raftconf binary (default: $RAFTCONF_BIN, else `raftconf` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where runs are kept (`<dir>/<time>-<seed>/`).
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Only check an existing history (a run's history.jsonl) and exit.
    #[arg(long)]
    check: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: give a unit (ms, s, m)"))?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match main_result(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("raftconf-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main_result(args: Args) -> Result<bool> {
    if let Some(path) = &args.check {
        let events = read_history(path)?;
        let verdicts = check_all(&events, &CheckOptions::default());
        for v in &verdicts {
            print_verdict(v);
        }
        return Ok(verdicts.iter().all(|v| v.ok));
    }
    let kinds = parse_kinds(&args.nemesis)?;
    if args.nodes < 3 {
        bail!(
            "--nodes {}: a fault suite needs at least 3 nodes",
            args.nodes
        );
    }
    if args.nodes > 200 {
        bail!(
            "--nodes {}: one loopback address per node, 127.0.0.11 up",
            args.nodes
        );
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => default_bin()?,
    };
    if !bin.exists() {
        bail!(
            "the raftconf binary {} does not exist: build it (cargo build --release) or pass --bin",
            bin.display()
        );
    }
    let bin = bin.canonicalize()?;
    // Before any thread: re-executes in a private network namespace.
    net::enter_private_namespace()?;

    let seed = args.seed.unwrap_or_else(rand::random::<u64>);
    let dir = args.runs_dir.join(format!("{}-{seed}", timestamp()));
    let replay = format!(
        "cargo run --release -p raftconf-jepsen -- --seed {seed} --time {}s --nemesis {} \
         --nodes {} --clients {} --keys {} --watchers {} --reloaders {} --op-timeout {}ms --snapshot-every {}",
        args.time.as_secs(),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(Kind::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        args.nodes,
        args.clients,
        args.keys,
        args.watchers,
        args.reloaders,
        args.op_timeout.as_millis(),
        args.snapshot_every,
    );
    println!("replay with: {replay}");
    let opts = RunOptions {
        seed,
        time: args.time,
        nemesis: kinds,
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        watchers: args.watchers,
        reloaders: args.reloaders,
        bin,
        dir: dir.clone(),
        op_timeout: args.op_timeout,
        snapshot_every: args.snapshot_every,
        replay: replay.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(run(opts));
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("run directory (history and node logs): {}", dir.display());
            eprintln!("replay with: {replay}");
            return Err(e);
        }
    };
    for v in &result.verdicts {
        print_verdict(v);
    }
    println!("{}", result.summary);
    if result.ok() {
        println!("PASS seed {seed}: {}", dir.display());
    } else {
        println!(
            "FAIL seed {seed}: history, nemesis log, node logs and results in {}",
            dir.display()
        );
        println!("replay with: {replay}");
    }
    Ok(result.ok())
}

fn print_verdict(v: &raftconf_jepsen::check::Verdict) {
    println!(
        "  {:<16} {}  {}",
        v.name,
        if v.ok { "ok    " } else { "FAILED" },
        v.summary
    );
    for a in v.anomalies.iter().take(10) {
        println!("      {a}");
    }
    if v.anomalies.len() > 10 {
        println!("      … {} more in results.json", v.anomalies.len() - 10);
    }
}

fn parse_kinds(text: &str) -> Result<Vec<Kind>> {
    if text == "none" || text.is_empty() {
        return Ok(Vec::new());
    }
    let mut kinds = Vec::new();
    for part in text.split(',').map(str::trim) {
        let k: Kind = part.parse().map_err(anyhow::Error::msg)?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    Ok(kinds)
}

fn default_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCONF_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this program has no directory")?;
    // target/<profile>/raftconf-jepsen, or target/<profile>/deps/… for tests.
    let sibling = dir.join("raftconf");
    if sibling.exists() {
        return Ok(sibling);
    }
    Ok(dir.parent().map(|p| p.join("raftconf")).unwrap_or(sibling))
}

/// `YYYYmmdd-HHMMSS` (UTC) now.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
