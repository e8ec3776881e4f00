//! `raftconf-bench compare`: raftconf and etcd side by side, same machine,
//! same load generator, one run. Both clusters are started by the bench (one
//! or three nodes each, loopback, data in the current directory, both
//! fsyncing) and stay up for the whole run, except for the fan-out steps,
//! which measure memory growth and get fresh clusters of their own. Every
//! step runs against both systems before the next step, in alternating order
//! from round to round, so drift on a busy machine hits both alike. The table gives each figure's
//! median over the rounds and the median of the per-round ratios.
//!
//! | module | what it holds |
//! |---|---|
//! | `systems` | starting and stopping both clusters; CPU and memory from `/proc` |
//! | `driver` | one connection and one subscription to either system |
//! | `scenarios` | the scenarios a–g and their sizes |
//! | `table` | pairing the rounds, the Markdown table and the JSON |

mod driver;
mod scenarios;
mod systems;
mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use scenarios::{Row, Sizes, Step, Target};
use systems::Cluster;
use table::Results;

/// Flags of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The etcd server binary (Debian: `apt-get install etcd-server`).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,

    /// Nodes in each cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub nodes: u32,

    /// Rounds: every step runs this many times against each system.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// Tiny sizes (seconds): a check that every scenario still runs, not figures.
    #[arg(long)]
    pub smoke: bool,

    /// Only these scenarios, by letter (e.g. `df`; d and f are one step).
    #[arg(long)]
    pub only: Option<String>,

    /// Also write the Markdown table (with its header) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Also write every figure, with each round's raw values, as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// Runs the comparison and prints the table.
pub async fn run(args: &CompareArgs, raftconf_bin: PathBuf) -> Result<()> {
    let sizes = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    let nodes = args.nodes as usize;
    eprintln!("starting etcd ({nodes} node(s)) and raftconf ({nodes} node(s)) …");
    let etcd = start("etcd", || Cluster::start_etcd(&args.etcd_bin, nodes)).await?;
    let raftconf = start("raftconf", || Cluster::start_raftconf(&raftconf_bin, nodes)).await?;
    let mut results = Results::default();
    let outcome = measure(args, &sizes, &etcd, &raftconf, &raftconf_bin, &mut results).await;
    etcd.stop().await?;
    raftconf.stop().await?;
    outcome?;

    let mut report = header(args, &sizes, &raftconf_bin)?;
    report.push('\n');
    report.push_str(&results.to_markdown());
    print!("{report}");
    if let Some(path) = &args.out {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&results.to_json())?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn measure(
    args: &CompareArgs,
    sizes: &Sizes,
    etcd: &Cluster,
    raftconf: &Cluster,
    raftconf_bin: &Path,
    results: &mut Results,
) -> Result<()> {
    let nodes = args.nodes as usize;
    for round in 0..args.rounds as usize {
        for step in Step::all(sizes) {
            if args
                .only
                .as_ref()
                .is_some_and(|only| !step.letters().chars().any(|c| only.contains(c)))
            {
                continue;
            }
            let fresh = if step.fresh_cluster() {
                Some((
                    start("etcd", || Cluster::start_etcd(&args.etcd_bin, nodes)).await?,
                    start("raftconf", || Cluster::start_raftconf(raftconf_bin, nodes)).await?,
                ))
            } else {
                None
            };
            let (e, r) = fresh.as_ref().map_or((etcd, raftconf), |(e, r)| (e, r));
            // Who goes first alternates from round to round.
            let order = if round % 2 == 0 { [e, r] } else { [r, e] };
            for cluster in order {
                if !step.applies_to(cluster.system) {
                    continue;
                }
                eprintln!("round {}: {step:?} on {}", round + 1, cluster.system);
                let rows = scenarios::run(step, cluster, sizes)
                    .await
                    .with_context(|| {
                        format!("{step:?} on {}\n{}", cluster.system, cluster.log_tails(15))
                    })?;
                results.add(round, cluster.system, rows);
            }
            if let Some((e, r)) = fresh {
                e.stop().await?;
                r.stop().await?;
            }
        }
        for cluster in [etcd, raftconf] {
            let rss = Row {
                key: "mem.rss".into(),
                scenario: 'f',
                label: "server memory (RSS, all nodes) after the round (MiB)".into(),
                value: cluster.rss_kib() as f64 / 1024.0,
                target: Target::None,
            };
            results.add(round, cluster.system, vec![rss]);
        }
    }
    Ok(())
}

/// Starts a cluster, again on fresh ports if a node dies at start-up: a
/// port picked free can be taken (by any outgoing connection on this
/// machine) before the node binds it.
async fn start<F, Fut>(what: &str, start: F) -> Result<Cluster>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Cluster>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Ok(cluster) => return Ok(cluster),
            Err(e) if attempt < 3 => {
                eprintln!("{what}: start attempt {attempt} failed, trying again: {e:#}");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the run was: machine, versions, sizes.
fn header(args: &CompareArgs, sizes: &Sizes, raftconf_bin: &Path) -> Result<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let etcd_version = command_line(&args.etcd_bin, "--version");
    let raftconf_version = command_line(raftconf_bin, "--version");
    Ok(format!(
        "- mode: {}, {} node(s) per system, {} round(s), values {} bytes\n\
         - machine: {cores} cores, {cpu}; kernel {}\n\
         - etcd: {etcd_version} ({})\n\
         - raftconf: {raftconf_version} ({})\n\
         - sizes: {sizes:?}\n",
        if args.smoke { "smoke" } else { "full" },
        args.nodes,
        args.rounds,
        driver::VALUE_BYTES,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        args.etcd_bin.display(),
        raftconf_bin.display(),
    ))
}

/// The first line `bin arg` prints.
fn command_line(bin: &Path, arg: &str) -> String {
    std::process::Command::new(bin)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown version".into())
}
