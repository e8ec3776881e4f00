//! One invocation: choose the target (the given endpoints, or a spawned
//! server), create tenant `bench` and environment `bench/run`, run the chosen
//! measurements, and collect their figures in a [`Report`].

use std::time::Duration;

use anyhow::{Context, Result};
use raftconf_client::{Client, ClientOptions, Error};

use crate::cli::{
    load_sizes, watch_count, Cli, Command, GlobalArgs, IdleArgs, LoadArgs, LoadCostArgs,
    ReloadArgs, WatchArgs,
};
use crate::load::{self, document, Op};
use crate::reload::{self, Read};
use crate::report::{Report, Row};
use crate::spawned::{default_binary, SpawnedServer};
use crate::stats::Summary;
use crate::watch_latency::{self, WatchParams};

const TENANT: &str = "bench";
const ENV: &str = "run";
const PUT_PATH: &str = "bench/run/put";
const GET_PATH: &str = "bench/run/get";
const WATCH_PATH: &str = "bench/run/watch";
const LOAD_PATH: &str = "bench/run/load";
const RELOAD_PATH: &str = "bench/run/reload";
const IDLE_PATH: &str = "bench/run/idle";

/// Runs what `cli` asks for. A spawned server is killed at the end, also
/// when a measurement fails (its log tail is printed then).
pub async fn run(cli: Cli) -> Result<Report> {
    let g = &cli.global;
    let server = if g.spawn {
        let bin = match &g.bin {
            Some(bin) => bin.clone(),
            None => default_binary()?,
        };
        eprintln!("starting {} …", bin.display());
        Some(SpawnedServer::start(&bin).await?)
    } else {
        None
    };
    let endpoints = match &server {
        Some(s) => vec![s.addr.clone()],
        None => g.endpoints.clone(),
    };
    let mut result = measure(&cli, &endpoints, server.as_ref()).await;
    if let Some(server) = server {
        match &mut result {
            Ok(report) => {
                if let Some(kib) = server.rss_kib() {
                    report.setup(
                        "server RSS at end",
                        format!("{:.1} MiB", kib as f64 / 1024.0),
                    );
                }
            }
            Err(_) => eprintln!("server log (last lines):\n{}", server.log_tail(30)),
        }
        server.stop().await?;
    }
    result
}

async fn measure(
    cli: &Cli,
    endpoints: &[String],
    server: Option<&SpawnedServer>,
) -> Result<Report> {
    let g = &cli.global;
    let options = ClientOptions::default().prefer_leader(!g.via_endpoint);
    let client = Client::connect_with(endpoints.to_vec(), options).await?;
    prepare(&client).await?;
    let status = client.status().await.context("status")?;

    let mut report = Report::default();
    let target = if g.spawn {
        format!("spawned single node at {}", endpoints.join(","))
    } else {
        endpoints.join(",")
    };
    report.setup("target", target);
    report.setup(
        "server",
        format!(
            "{} (node {}, leader {}, {} member(s), term {})",
            status.server_version,
            status.node_id,
            status.leader_id,
            status.members.len(),
            status.term
        ),
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    report.setup("bench build", profile);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.setup("cores", cores);
    report.setup("document", format!("{} bytes of JSON", g.doc_bytes));
    if g.quick {
        report.setup("mode", "--quick (smoke check: small samples)");
    }

    match &cli.command {
        Command::PutLatency(args) => load_row(&mut report, &client, Op::Put, args, g).await?,
        Command::GetLatency(args) => load_row(&mut report, &client, Op::Get, args, g).await?,
        Command::WatchLatency(args) => watch_rows(&mut report, endpoints, &client, args, g).await?,
        Command::LoadCost(args) => load_cost_note(&mut report, &client, args, g).await?,
        Command::ReloadLatency(args) => {
            reload_rows(&mut report, endpoints, &client, args, g).await?
        }
        Command::IdleSubscriptions(args) => {
            let server =
                server.context("idle-subscriptions reads the server's memory: use --spawn")?;
            idle_note(&mut report, server, args, g).await?
        }
        Command::Reloader(_) | Command::Compare(_) => {
            unreachable!("main runs these without a report")
        }
        Command::All(args) => {
            let tasks = args.concurrency.unwrap_or(if g.quick { 4 } else { 64 });
            let watchers = args.watchers.unwrap_or(if g.quick { 4 } else { 10 });
            for op in [Op::Put, Op::Get] {
                for concurrency in dedup([1, tasks]) {
                    let args = LoadArgs {
                        count: None,
                        warmup: None,
                        concurrency,
                        pause_ms: 0,
                    };
                    load_row(&mut report, &client, op, &args, g).await?;
                }
            }
            for watchers in dedup([1, watchers]) {
                let args = WatchArgs {
                    count: None,
                    watchers,
                    interval_ms: 5,
                };
                watch_rows(&mut report, endpoints, &client, &args, g).await?;
            }
            let cost = LoadCostArgs {
                threads: None,
                millis: None,
            };
            load_cost_note(&mut report, &client, &cost, g).await?;
            for cache in [false, true] {
                let reload = ReloadArgs {
                    count: None,
                    interval_ms: 5,
                    cache,
                };
                reload_rows(&mut report, endpoints, &client, &reload, g).await?;
            }
            if let Some(server) = server {
                for per_connection in [1, 10] {
                    let idle = IdleArgs {
                        count: None,
                        per_connection,
                    };
                    idle_note(&mut report, server, &idle, g).await?;
                }
            }
        }
    }
    Ok(report)
}

async fn load_cost_note(
    report: &mut Report,
    client: &Client,
    args: &LoadCostArgs,
    g: &GlobalArgs,
) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let duration = Duration::from_millis(args.millis.unwrap_or(if g.quick { 200 } else { 2000 }));
    for (how, name) in [(Read::Load, "load()"), (Read::Guard, "read()")] {
        let mut parts = Vec::new();
        for threads in dedup([1, args.threads.unwrap_or(cores) as u32]) {
            eprintln!("{name} on {threads} thread(s) for {duration:?} …");
            let ns = reload::load_cost(client, LOAD_PATH, threads as usize, duration, how).await?;
            parts.push(format!("{ns:.1} ns per call on {threads} thread(s)"));
        }
        report.note(format!("Watched::{name}: {}", parts.join(", ")));
    }
    Ok(())
}

async fn reload_rows(
    report: &mut Report,
    endpoints: &[String],
    client: &Client,
    args: &ReloadArgs,
    g: &GlobalArgs,
) -> Result<()> {
    let count = args.count.unwrap_or(if g.quick { 30 } else { 300 });
    eprintln!("reload in another process: {count} puts …");
    let interval = Duration::from_millis(args.interval_ms);
    let run =
        reload::reload_latency(client, endpoints, RELOAD_PATH, count, interval, args.cache).await?;
    let clients = if args.cache {
        "1 process, cache"
    } else {
        "1 process"
    };
    for (scenario, samples) in [
        ("put ack->load() elsewhere", run.ack_to_visible),
        ("put sent->load() elsewhere", run.sent_to_visible),
    ] {
        if let Some(latency) = Summary::of(samples) {
            report.rows.push(Row {
                scenario: scenario.to_string(),
                clients: clients.into(),
                ops_per_sec: None,
                latency,
            });
        }
    }
    Ok(())
}

async fn idle_note(
    report: &mut Report,
    server: &SpawnedServer,
    args: &IdleArgs,
    g: &GlobalArgs,
) -> Result<()> {
    let count = args.count.unwrap_or(if g.quick { 50 } else { 1000 });
    let per = args.per_connection as usize;
    eprintln!("{count} idle subscriptions, {per} per connection …");
    let cost = reload::idle_cost(server, IDLE_PATH, count, per).await?;
    report.note(format!(
        "idle subscriptions: {} with {} per connection: {:.1} KiB of server RSS each, \
         set up at {:.0}/s",
        cost.subscriptions, cost.per_connection, cost.kib_each, cost.setup_per_sec
    ));
    Ok(())
}

/// `[1, n]`, or `[1]` when `n` is 1 (or 0).
fn dedup(values: [u32; 2]) -> Vec<u32> {
    let mut v: Vec<u32> = values.into_iter().filter(|&n| n > 0).collect();
    v.dedup();
    v
}

/// Creates tenant `bench` and environment `bench/run` unless they exist.
async fn prepare(client: &Client) -> Result<()> {
    match client.create_tenant(TENANT).await {
        Ok(_) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e).context(format!("creating tenant {TENANT}")),
    }
    match client.create_env(TENANT, ENV).await {
        Ok(_) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e).context(format!("creating environment {TENANT}/{ENV}")),
    }
    Ok(())
}

async fn load_row(
    report: &mut Report,
    client: &Client,
    op: Op,
    args: &LoadArgs,
    g: &GlobalArgs,
) -> Result<()> {
    let (count, warmup) = load_sizes(args, g.quick);
    let (scenario, path) = match op {
        Op::Put => ("put", PUT_PATH),
        Op::Get => ("get (linearizable)", GET_PATH),
    };
    let clients = format!("c={}", args.concurrency);
    eprintln!("{scenario} {clients}: {warmup} warm-up + {count} measured …");
    if op == Op::Get {
        client
            .put(GET_PATH, &document(g.doc_bytes, 0))
            .await
            .with_context(|| format!("put {GET_PATH}"))?;
    }
    let tasks = args.concurrency as usize;
    let shape = load::Shape {
        tasks,
        count,
        warmup,
        doc_bytes: g.doc_bytes,
        pause: Duration::from_millis(args.pause_ms),
    };
    let run = load::run(client, op, path, shape).await?;
    let ops_per_sec = run.ops_per_sec();
    report.rows.push(Row {
        scenario: scenario.to_string(),
        clients,
        ops_per_sec: Some(ops_per_sec),
        latency: Summary::of(run.latencies_ms).context("nothing measured (--count 0?)")?,
    });
    Ok(())
}

async fn watch_rows(
    report: &mut Report,
    endpoints: &[String],
    client: &Client,
    args: &WatchArgs,
    g: &GlobalArgs,
) -> Result<()> {
    let params = WatchParams {
        count: watch_count(args, g.quick),
        warmup: if g.quick { 5 } else { 20 },
        watchers: args.watchers as usize,
        interval: Duration::from_millis(args.interval_ms),
        doc_bytes: g.doc_bytes,
    };
    let clients = format!("w={}", params.watchers);
    eprintln!(
        "watch {clients}: {} warm-up + {} measured puts, {} ms apart …",
        params.warmup, params.count, args.interval_ms
    );
    let run = watch_latency::run(endpoints, client, WATCH_PATH, &params).await?;
    let mut series = vec![
        ("watch ack->recv", run.ack_to_recv),
        ("watch sent->recv", run.sent_to_recv),
    ];
    if params.watchers > 1 {
        series.push(("watch ack->all", run.ack_to_all));
        series.push(("watch sent->all", run.sent_to_all));
    }
    for (scenario, samples) in series {
        if let Some(latency) = Summary::of(samples) {
            report.rows.push(Row {
                scenario: scenario.to_string(),
                clients: clients.clone(),
                ops_per_sec: None,
                latency,
            });
        }
    }
    if run.missed > 0 {
        report.note(format!(
            "watch {clients}: {} (put, watcher) pairs were not delivered as a change",
            run.missed
        ));
    }
    if run.snapshots > 0 {
        report.note(format!(
            "watch {clients}: {} snapshot event(s) arrived mid-run",
            run.snapshots
        ));
    }
    Ok(())
}
