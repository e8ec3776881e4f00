//! The scenarios of the comparison (issue 7's a–g), each run the same way
//! against either system through [`Conn`]: one load generator, two drivers.
//!
//! A step returns [`Row`]s: one figure each, keyed so that the same figure of
//! the other system (and of other rounds) pairs with it. Every step also
//! reports the servers' CPU time per operation it caused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::driver::{Conn, Sub};
use super::systems::{Cluster, System};
use crate::reload;
use crate::stats::{ms, Summary};

/// How a figure compares: which way is better, and the target for
/// the ratio raftconf / etcd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The ratio must be at most this (latencies, memory).
    AtMost(f64),
    /// The ratio must be at least this (throughput, rates).
    AtLeast(f64),
    /// Reported, no target.
    None,
}

/// One figure of one step for one system.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable key pairing the figure across systems and rounds, e.g. `a.p50`.
    pub key: String,
    /// The scenario letter.
    pub scenario: char,
    /// What is measured, with its unit.
    pub label: String,
    pub value: f64,
    pub target: Target,
}

/// Sizes of every scenario: the full run, or `--smoke` (seconds).
#[derive(Debug, Clone)]
pub struct Sizes {
    pub warmup: usize,
    /// a: sequential puts.
    pub sequential: usize,
    /// b, c: operations of a 64-client run.
    pub concurrent: usize,
    /// b: (clients, connections) of the many-clients run, and its operations.
    pub many: (usize, usize, usize),
    /// c: operations of a 1-client read run.
    pub reads_single: usize,
    /// d, f: (subscribers, per connection) of each fan-out run.
    pub fanout: Vec<(usize, usize)>,
    /// d: writes observed by each fan-out run.
    pub fanout_writes: usize,
    /// e: events in the backlog a subscriber replays.
    pub backlog: usize,
    /// g: writes timed to the other process's `load()`.
    pub reloads: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            warmup: 200,
            sequential: 2000,
            concurrent: 20_000,
            many: (1000, 100, 30_000),
            reads_single: 3000,
            fanout: vec![(1000, 1), (1000, 10), (10_000, 1), (10_000, 10)],
            fanout_writes: 20,
            backlog: 10_000,
            reloads: 300,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            warmup: 5,
            sequential: 30,
            concurrent: 256,
            many: (20, 4, 200),
            reads_single: 30,
            fanout: vec![(10, 1), (20, 10)],
            fanout_writes: 3,
            backlog: 100,
            reloads: 5,
        }
    }
}

/// The steps of one round, in order. Each runs against both systems before
/// the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// a: sequential writes, 1 client.
    SequentialWrites,
    /// b: 64 clients on one connection.
    Writes64,
    /// b: many clients on many connections.
    WritesMany,
    /// c: reads, 1 and 64 clients, linearizable and serializable.
    Reads,
    /// d and f: fan-out to `.0` subscribers, `.1` to a connection; their
    /// memory and set-up rate.
    FanOut(usize, usize),
    /// e: replay of a backlog after a reconnect.
    Backlog,
    /// g: write acknowledged → `load()` in another process (raftconf only).
    Reload,
}

impl Step {
    /// Every step of a round with these sizes.
    pub fn all(sizes: &Sizes) -> Vec<Step> {
        let mut steps = vec![
            Step::SequentialWrites,
            Step::Writes64,
            Step::WritesMany,
            Step::Reads,
        ];
        steps.extend(sizes.fanout.iter().map(|&(n, per)| Step::FanOut(n, per)));
        steps.extend([Step::Backlog, Step::Reload]);
        steps
    }

    /// The scenario letters the step measures.
    pub fn letters(self) -> &'static str {
        match self {
            Step::SequentialWrites => "a",
            Step::Writes64 | Step::WritesMany => "b",
            Step::Reads => "c",
            Step::FanOut(..) => "df",
            Step::Backlog => "e",
            Step::Reload => "g",
        }
    }

    /// Whether the step has a figure for `system`.
    pub fn applies_to(self, system: System) -> bool {
        self != Step::Reload || system == System::Raftconf
    }

    /// Whether the step needs clusters of its own, started for it: memory
    /// growth is only comparable from a fresh process (a Go heap and a
    /// malloc arena both keep what earlier steps freed, and reuse it).
    pub fn fresh_cluster(self) -> bool {
        matches!(self, Step::FanOut(..))
    }
}

/// Runs `step` against `cluster` and returns its figures, the servers' CPU
/// time per operation included.
pub async fn run(step: Step, cluster: &Cluster, sizes: &Sizes) -> Result<Vec<Row>> {
    let cpu_before = cluster.cpu_time();
    let (mut rows, ops, scenario) = match step {
        Step::SequentialWrites => sequential_writes(cluster, sizes).await?,
        Step::Writes64 => writes_64(cluster, sizes).await?,
        Step::WritesMany => writes_many(cluster, sizes).await?,
        Step::Reads => reads(cluster, sizes).await?,
        Step::FanOut(count, per_conn) => fan_out(cluster, sizes, count, per_conn).await?,
        Step::Backlog => backlog(cluster, sizes).await?,
        Step::Reload => reload_latency(cluster, sizes).await?,
    };
    let cpu = cluster.cpu_time().saturating_sub(cpu_before);
    rows.push(Row {
        key: format!("{scenario}.{step:?}.cpu"),
        scenario,
        label: format!("{} — server CPU per op (µs)", step_name(step, sizes)),
        value: cpu.as_secs_f64() * 1e6 / ops.max(1) as f64,
        target: Target::None,
    });
    Ok(rows)
}

fn step_name(step: Step, sizes: &Sizes) -> String {
    match step {
        Step::SequentialWrites => "sequential writes".into(),
        Step::Writes64 => "writes, 64 clients".into(),
        Step::WritesMany => format!("writes, {} clients/{} conns", sizes.many.0, sizes.many.1),
        Step::Reads => "reads".into(),
        Step::FanOut(count, 1) => format!("fan-out to {count}, own conns"),
        Step::FanOut(count, per_conn) => format!("fan-out to {count}, {per_conn}/conn"),
        Step::Backlog => "backlog replay".into(),
        Step::Reload => "write → load()".into(),
    }
}

fn row(key: &str, scenario: char, label: impl Into<String>, value: f64, target: Target) -> Row {
    Row {
        key: key.to_string(),
        scenario,
        label: label.into(),
        value,
        target,
    }
}

/// What one closed-loop run measured.
struct LoadRun {
    latencies_ms: Vec<f64>,
    elapsed: Duration,
}

impl LoadRun {
    fn summary(&self) -> Summary {
        Summary::of(self.latencies_ms.clone()).expect("a load run has samples")
    }

    fn ops_per_sec(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The operation a closed loop repeats.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Puts; client `i` writes key `load-{i % 64}` (contending, as services'
    /// configs do, without one key per client: 1000 raftconf namespaces).
    Put,
    /// Gets of key `read`.
    Get { linearizable: bool },
}

/// `clients_per_conn` clients on each of `connections` connections to the
/// leader, each sequential, `total` measured operations spread over them.
async fn closed_loop(
    cluster: &Cluster,
    connections: usize,
    clients_per_conn: usize,
    total: usize,
    op: Op,
) -> Result<LoadRun> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(cluster.system, &cluster.leader).await?);
    }
    let clients = connections * clients_per_conn;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let conn = conns[client % connections].clone();
        let n = total / clients + usize::from(client < total % clients);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            for i in 0..n {
                let t0 = Instant::now();
                match op {
                    Op::Put => {
                        let key = format!("load-{}", client % 64);
                        conn.put(&key, (client * n + i) as u64).await?;
                    }
                    Op::Get { linearizable } => conn.get("read", linearizable).await?,
                }
                latencies.push(ms(t0.elapsed()));
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies_ms = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        latencies_ms.extend(done.context("a load task panicked")??);
    }
    Ok(LoadRun {
        latencies_ms,
        elapsed: start.elapsed(),
    })
}

async fn warm_up(cluster: &Cluster, sizes: &Sizes, op: Op) -> Result<()> {
    closed_loop(cluster, 1, 1, sizes.warmup, op).await.map(drop)
}

type StepResult = (Vec<Row>, usize, char);

async fn sequential_writes(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    warm_up(cluster, sizes, Op::Put).await?;
    let run = closed_loop(cluster, 1, 1, sizes.sequential, Op::Put).await?;
    let s = run.summary();
    let rows = vec![
        row(
            "a.p50",
            'a',
            "sequential write, 1 client: p50 (ms)",
            s.p50,
            Target::AtMost(0.75),
        ),
        row(
            "a.p99",
            'a',
            "sequential write, 1 client: p99 (ms)",
            s.p99,
            Target::AtMost(1.0),
        ),
    ];
    Ok((rows, sizes.sequential, 'a'))
}

async fn writes_64(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    warm_up(cluster, sizes, Op::Put).await?;
    let run = closed_loop(cluster, 1, 64, sizes.concurrent, Op::Put).await?;
    let rows = vec![
        row(
            "b.64.tput",
            'b',
            "writes, 64 clients on 1 conn: ops/s",
            run.ops_per_sec(),
            Target::AtLeast(1.5),
        ),
        row(
            "b.64.p99",
            'b',
            "writes, 64 clients on 1 conn: p99 (ms)",
            run.summary().p99,
            Target::AtMost(1.0),
        ),
    ];
    Ok((rows, sizes.concurrent, 'b'))
}

async fn writes_many(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    let (clients, connections, total) = sizes.many;
    warm_up(cluster, sizes, Op::Put).await?;
    let run = closed_loop(cluster, connections, clients / connections, total, Op::Put).await?;
    let what = format!("writes, {clients} clients on {connections} conns");
    let rows = vec![
        row(
            "b.many.tput",
            'b',
            format!("{what}: ops/s"),
            run.ops_per_sec(),
            Target::AtLeast(1.5),
        ),
        row(
            "b.many.p99",
            'b',
            format!("{what}: p99 (ms)"),
            run.summary().p99,
            Target::AtMost(1.0),
        ),
    ];
    Ok((rows, total, 'b'))
}

async fn reads(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    Conn::open(cluster.system, &cluster.leader)
        .await?
        .put("read", 0)
        .await?;
    let mut rows = Vec::new();
    let mut ops = 0;
    for linearizable in [true, false] {
        let kind = if linearizable {
            "linearizable"
        } else {
            "serializable"
        };
        let op = Op::Get { linearizable };
        warm_up(cluster, sizes, op).await?;
        for clients in [1, 64] {
            let total = if clients == 1 {
                sizes.reads_single
            } else {
                sizes.concurrent
            };
            let run = closed_loop(cluster, 1, clients, total, op).await?;
            ops += total;
            rows.push(row(
                &format!("c.{kind}.{clients}"),
                'c',
                format!(
                    "{kind} reads, {clients} client{}: ops/s",
                    if clients == 1 { "" } else { "s" }
                ),
                run.ops_per_sec(),
                Target::AtLeast(1.5),
            ));
        }
    }
    Ok((rows, ops, 'c'))
}

/// Subscribers (each a task holding a [`Sub`]) tell the collector each
/// revision they receive, and when.
type Receipts = mpsc::UnboundedSender<(u64, Instant)>;

async fn subscriber(mut sub: Sub, receipts: Receipts) -> Result<()> {
    loop {
        let revisions = sub.next_revisions().await?;
        let now = Instant::now();
        for revision in revisions {
            if receipts.send((revision, now)).is_err() {
                return Ok(());
            }
        }
    }
}

/// d and f: set up `count` subscribers (spread over every node, `per_conn`
/// to a connection), read the servers' memory growth and the set-up rate,
/// then time writes until every subscriber has each.
async fn fan_out(
    cluster: &Cluster,
    sizes: &Sizes,
    count: usize,
    per_conn: usize,
) -> Result<StepResult> {
    let writer = Conn::open(cluster.system, &cluster.leader).await?;
    writer.put("fanout", 0).await?;
    let mut rows = Vec::new();
    let shape = if per_conn == 1 {
        format!("{count} subscribers, own conns")
    } else {
        format!("{count} subscribers, {per_conn}/conn")
    };
    let key = format!("{count}x{per_conn}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = cluster.rss_kib();
    let (receipts, mut received) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut setups = JoinSet::new();
    for c in 0..count.div_ceil(per_conn) {
        let system = cluster.system;
        let addr = cluster.endpoints[c % cluster.endpoints.len()].clone();
        let n = per_conn.min(count - c * per_conn);
        setups.spawn(async move {
            let conn = Conn::open(system, &addr).await?;
            let mut subs = Vec::with_capacity(n);
            for _ in 0..n {
                subs.push(conn.subscribe("fanout", None).await?);
            }
            anyhow::Ok((conn, subs))
        });
    }
    let mut conns = Vec::new();
    let mut watchers = JoinSet::new();
    while let Some(done) = setups.join_next().await {
        let (conn, subs) = done.context("a subscriber set-up panicked")??;
        conns.push(conn);
        for sub in subs {
            watchers.spawn(subscriber(sub, receipts.clone()));
        }
    }
    let setup = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kib_each = cluster.rss_kib().saturating_sub(rss_before) as f64 / count as f64;
    rows.push(row(
        &format!("f.{key}.kib"),
        'f',
        format!("{shape}: server memory per idle subscriber (KiB)"),
        kib_each,
        Target::AtMost(0.33),
    ));
    rows.push(row(
        &format!("f.{key}.setup"),
        'f',
        format!("{shape}: subscriptions set up per second"),
        count as f64 / setup.as_secs_f64(),
        Target::AtLeast(1.0),
    ));

    let mut all_have_it = Vec::with_capacity(sizes.fanout_writes);
    let mut seen: HashMap<u64, (usize, Instant)> = HashMap::new();
    for seq in 1..=sizes.fanout_writes as u64 {
        let sent = Instant::now();
        let revision = writer.put("fanout", seq).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(&(n, last)) = seen.get(&revision) {
                if n == count {
                    all_have_it.push(ms(last - sent));
                    break;
                }
            }
            let Ok(receipt) = tokio::time::timeout_at(deadline, received.recv()).await else {
                let n = seen.get(&revision).map_or(0, |s| s.0);
                bail!("{shape}: revision {revision} reached {n} of {count} within 60 s");
            };
            let (r, at) = receipt.context("every subscriber ended")?;
            let entry = seen.entry(r).or_insert((0, at));
            entry.0 += 1;
            entry.1 = entry.1.max(at);
        }
        seen.remove(&revision);
        if let Some(Ok(Err(e))) = watchers.try_join_next() {
            return Err(e.context(format!("{shape}: a subscriber failed")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = Summary::of(all_have_it).expect("fan-out writes");
    rows.push(row(
        &format!("d.{key}.p50"),
        'd',
        format!("{shape}: write → all have it, p50 (ms)"),
        s.p50,
        Target::AtMost(0.5),
    ));
    rows.push(row(
        &format!("d.{key}.p99"),
        'd',
        format!("{shape}: write → all have it, p99 (ms)"),
        s.p99,
        Target::AtMost(0.5),
    ));
    watchers.shutdown().await;
    drop(conns);
    Ok((rows, sizes.fanout_writes * count, 'd'))
}

/// e: `backlog` writes to one key, then a new connection subscribes from
/// the first of them and receives all.
async fn backlog(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    let writer = Conn::open(cluster.system, &cluster.leader).await?;
    let first = writer.put("backlog", 0).await?;
    let mut writers = JoinSet::new();
    let per_writer = (sizes.backlog - 1).div_ceil(16);
    for w in 0..16 {
        let writer = writer.clone();
        let n = per_writer.min((sizes.backlog - 1).saturating_sub(w * per_writer));
        writers.spawn(async move {
            let mut last = 0;
            for i in 0..n {
                last = last.max(
                    writer
                        .put("backlog", (w * per_writer + i + 1) as u64)
                        .await?,
                );
            }
            anyhow::Ok(last)
        });
    }
    let mut last = first;
    while let Some(done) = writers.join_next().await {
        last = last.max(done.context("a backlog writer panicked")??);
    }
    let started = Instant::now();
    let conn = Conn::open(cluster.system, &cluster.leader).await?;
    let mut sub = conn.subscribe("backlog", Some(first)).await?;
    let mut events = 0;
    let mut reached = 0;
    while reached < last {
        let revisions = tokio::time::timeout(Duration::from_secs(60), sub.next_revisions())
            .await
            .context("the backlog replay stalled for 60 s")??;
        events += revisions.len();
        reached = reached.max(revisions.into_iter().max().unwrap_or(0));
    }
    let elapsed = started.elapsed();
    if events != sizes.backlog {
        bail!(
            "{}: replayed {events} events of {} ({first}..={last})",
            cluster.system,
            sizes.backlog
        );
    }
    let rows = vec![row(
        "e.replay",
        'e',
        format!("reconnect and replay {} events (ms)", sizes.backlog),
        ms(elapsed),
        Target::AtMost(0.1),
    )];
    Ok((rows, sizes.backlog, 'e'))
}

/// g: a write acknowledged → the new value returned by `load()` of a
/// `Watched` in another process.
async fn reload_latency(cluster: &Cluster, sizes: &Sizes) -> Result<StepResult> {
    let Conn::Raftconf(client) = Conn::open(cluster.system, &cluster.leader).await? else {
        bail!("write → load() is measured on raftconf only");
    };
    let run = reload::reload_latency(
        &client,
        &cluster.endpoints,
        "bench/run/reload",
        sizes.reloads,
        Duration::from_millis(5),
        false,
    )
    .await?;
    let s = Summary::of(run.ack_to_visible).context("no reload samples")?;
    let rows = vec![
        row(
            "g.p50",
            'g',
            "write acked → load() in another process, p50 (ms)",
            s.p50,
            Target::None,
        ),
        row(
            "g.p99",
            'g',
            "write acked → load() in another process, p99 (ms)",
            s.p99,
            Target::None,
        ),
    ];
    Ok((rows, sizes.reloads, 'g'))
}
