//! One run: start the cluster, drive clients, watchers and the hot-reload
//! handles while the nemesis injects faults, heal, wait for convergence,
//! record every node's final state (its log and its schema history), and
//! check the history.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use raftconf_client::TenantSettings;
use raftconf_schema::MAX_HISTORY_DEPTH;
use serde_json::json;
use tokio::sync::{watch, Mutex};

use crate::check::{check_all, CheckOptions, Verdict};
use crate::cluster::{client_addr, Cluster, ClusterOptions};
use crate::history::{schema_path, Delivered, Event, FailReason, Op, OpOk};
use crate::nemesis::{self, Kind, NemesisOptions, NemesisReport};
use crate::net::Net;
use crate::recorder::Recorder;
use crate::reloaders::{self, Reloaders};
use crate::schemas::read_schemas;
use crate::watchers::{read_log, run_watcher, WatcherOptions};
use crate::workload::{self, namespace, run_process, WorkloadOptions, PREFIX};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The seed of the workload and the schedule.
    pub seed: u64,
    /// How long the workload and the faults run.
    pub time: Duration,
    /// Fault kinds.
    pub nemesis: Vec<Kind>,
    /// Nodes (3 or 5).
    pub nodes: usize,
    /// Client processes.
    pub clients: usize,
    /// Namespaces.
    pub keys: usize,
    /// Watchers.
    pub watchers: usize,
    /// Hot-reload client processes (with a cache, restarted during the run).
    pub reloaders: usize,
    /// The `raftconf` binary.
    pub bin: PathBuf,
    /// This run's directory.
    pub dir: PathBuf,
    /// Bound on one client operation.
    pub op_timeout: Duration,
    /// `--snapshot-every` of the nodes.
    pub snapshot_every: u64,
    /// The command that replays this run (printed and saved).
    pub replay: String,
}

/// What a run found.
#[derive(Debug)]
pub struct RunResult {
    /// Every checker's verdict.
    pub verdicts: Vec<Verdict>,
    /// The one-line summary.
    pub summary: String,
}

impl RunResult {
    /// Whether every checker passed.
    pub fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }
}

/// Runs the whole thing. `Err` means the harness could not do its job (the
/// cluster never formed, …), not that a checker failed.
pub async fn run(opts: RunOptions) -> Result<RunResult> {
    std::fs::create_dir_all(&opts.dir)?;
    std::fs::write(opts.dir.join("command.txt"), format!("{}\n", opts.replay))?;
    let (rec, writer) = Recorder::create(&opts.dir.join("history.jsonl"))?;
    let net = Net;
    net.heal()?;

    println!(
        "starting {} nodes (logs in {})",
        opts.nodes,
        opts.dir.display()
    );
    let cluster = Cluster::start(ClusterOptions {
        bin: opts.bin.clone(),
        dir: opts.dir.clone(),
        nodes: opts.nodes,
        snapshot_every: opts.snapshot_every,
    })
    .await?;
    let endpoints = cluster.endpoints();
    setup(&cluster, &rec).await?;

    // The hot-reload handles start before any workload write: one on
    // namespace 0, one on the whole environment (a set, which must take
    // each transaction whole).
    let mut reloaders = Vec::new();
    for (reloader, target) in [(1, namespace(0)), (2, PREFIX.to_string())] {
        let handle = workload::start_reloader(reloader, endpoints.clone(), target, rec.clone())
            .await
            .with_context(|| format!("starting hot-reload handle {reloader}"))?;
        reloaders.push(handle);
    }

    // Processes with a cache: restarted on a schedule and while every node is down.
    let reloader_procs = Reloaders::start(
        opts.reloaders,
        3,
        endpoints.clone(),
        namespace(0),
        &opts.dir,
        rec.clone(),
    )
    .await?;
    ensure!(
        reloader_procs.wait_for(1, Duration::from_secs(30)).await,
        "the hot-reload processes did not start (see reloader-*.log in {})",
        opts.dir.display()
    );
    let reloader_procs = Arc::new(Mutex::new(reloader_procs));
    let (all_down_tx, all_down_rx) = watch::channel(false);

    let cluster = Arc::new(Mutex::new(cluster));
    let until = Instant::now() + opts.time;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (target_tx, target_rx) = watch::channel(None::<u64>);
    let nemesis_log = std::fs::File::create(opts.dir.join("nemesis.log"))?;
    let nemesis = tokio::spawn(nemesis::run(
        cluster.clone(),
        net.clone(),
        NemesisOptions {
            kinds: opts.nemesis.clone(),
            seed: opts.seed,
            quiet: (Duration::from_millis(1_000), Duration::from_millis(3_000)),
            hold: (Duration::from_millis(1_500), Duration::from_millis(5_000)),
            all_down: Some(Arc::new(all_down_tx)),
        },
        rec.clone(),
        nemesis_log,
        until,
    ));
    let workload_opts = WorkloadOptions {
        clients: opts.clients,
        keys: opts.keys,
        op_timeout: opts.op_timeout,
        think: Duration::from_millis(5),
        seed: opts.seed,
        reads_only: false,
        stride: (opts.clients + endpoints.len()) as u64,
    };
    let mut processes: Vec<_> = (1..=opts.clients)
        .map(|slot| {
            tokio::spawn(run_process(
                slot,
                endpoints.clone(),
                workload_opts.clone(),
                rec.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    // One reader per node, asking that node only (see `workload`).
    let reader_opts = WorkloadOptions {
        reads_only: true,
        ..workload_opts.clone()
    };
    processes.extend(endpoints.iter().enumerate().map(|(i, endpoint)| {
        tokio::spawn(run_process(
            opts.clients + 1 + i,
            vec![endpoint.clone()],
            reader_opts.clone(),
            rec.clone(),
            stop_rx.clone(),
        ))
    }));
    let restarts = tokio::spawn(reloaders::restart_schedule(
        reloader_procs.clone(),
        opts.seed,
        all_down_rx,
        stop_rx.clone(),
        rec.clone(),
    ));
    let (watchers_stop_tx, watchers_stop_rx) = watch::channel(false);
    let watchers: Vec<_> = (1..=opts.watchers as u64)
        .map(|w| {
            tokio::spawn(run_watcher(
                w,
                WatcherOptions {
                    // The third watches two namespaces by path, the others
                    // the environment's prefix.
                    targets: match w {
                        3 if opts.keys >= 2 => vec![namespace(0), namespace(1)],
                        _ => vec![PREFIX.to_string()],
                    },
                    nodes: opts.nodes,
                    // The first watcher starts from a snapshot, the others from revision 1.
                    first_from: u64::from(w != 1),
                    max_session: Duration::from_secs(6),
                    seed: opts.seed,
                    // The second runs beside a decoy on a stream of several.
                    several: w == 2,
                },
                rec.clone(),
                target_rx.clone(),
                watchers_stop_rx.clone(),
            ))
        })
        .collect();

    println!(
        "workload and faults for {:?} (seed {})",
        opts.time, opts.seed
    );
    tokio::time::sleep_until(until.into()).await;
    let _ = stop_tx.send(true);
    let mut attempted = 0;
    for p in processes {
        attempted += p.await.unwrap_or(0);
    }
    let report = nemesis.await.unwrap_or_default();
    let _ = restarts.await;

    println!("healing and waiting for convergence");
    net.heal()?;
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("the nemesis still holds the cluster"))?
        .into_inner();
    cluster.revive_all()?;
    cluster.wait_leader(Duration::from_secs(60)).await?;
    cluster.ensure_members(Duration::from_secs(60)).await?;
    // A last value for the hot-reload clients to converge to (and report
    // through `raftconf clients`), even if the workload deleted the namespace.
    recorded_put(
        cluster.admin(),
        &rec,
        &namespace(0),
        // "p0-0" passes every schema the workload sets (see `schemas`).
        json!({ "w": "p0-0" }),
    )
    .await
    .context("the final write")?;
    let final_revision = converge(&cluster, Duration::from_secs(90)).await?;

    let _ = target_tx.send(Some(final_revision));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for w in watchers {
        if tokio::time::timeout_at(deadline, w).await.is_err() {
            let _ = watchers_stop_tx.send(true);
        }
    }
    let _ = watchers_stop_tx.send(true);
    for reloader in &reloaders {
        reloader
            .wait_for_revision(final_revision, Duration::from_secs(30))
            .await;
    }
    drop(reloaders);
    let reloader_procs = Arc::try_unwrap(reloader_procs)
        .map_err(|_| anyhow::anyhow!("the restart schedule still holds the reloaders"))?
        .into_inner();
    record_delivery(&cluster, &reloader_procs, &rec).await?;
    reloader_procs.stop().await;

    let schema_paths: Vec<String> = (0..opts.keys)
        .filter_map(|k| schema_path(&namespace(k)))
        .collect();
    for slot in 1..=cluster.nodes.len() {
        let status = cluster.admin().status_of(&client_addr(slot)).await?;
        let log = read_log(
            slot,
            &[PREFIX.to_string()],
            status.revision,
            Duration::from_secs(60),
        )
        .await?;
        let node = cluster.nodes[slot - 1].id;
        rec.record(Event::Final {
            t: rec.now(),
            node,
            revision: status.revision,
            digest: status.state_digest,
            log,
        });
        // The digest covers only the schemas in force: ask for the history.
        let schemas = read_schemas(slot, &schema_paths, Duration::from_secs(30)).await?;
        rec.record(Event::Schemas {
            t: rec.now(),
            node,
            schemas,
        });
    }
    cluster.stop_all();
    drop(rec);
    let events = writer.await.context("history writer")??;

    println!("checking {} events", events.len());
    let verdicts = check_all(&events, &CheckOptions::default());
    let summary = summarize(&events, attempted, &report, &verdicts);
    write_results(&opts, &verdicts, &report, &summary)?;
    Ok(RunResult { verdicts, summary })
}

/// Creates the tenant and environment, sets the tenant's history depth to
/// the most it may be, and gives namespace 0 a first value
/// (recorded like any write, by process 0) for the hot-reload handle.
async fn setup(cluster: &Cluster, rec: &Recorder) -> Result<()> {
    let admin = cluster.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tenant = admin.create_tenant("jepsen").await;
        let env = admin.create_env("jepsen", "t").await;
        let done = |r: &raftconf_client::Result<u64>| {
            matches!(r, Ok(_) | Err(raftconf_client::Error::AlreadyExists(_)))
        };
        if done(&tenant) && done(&env) {
            break;
        }
        if Instant::now() > deadline {
            bail!("could not create the tenant and environment: {tenant:?} {env:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The verdict checker needs every schema version: keep as many as a
    // tenant may (a run sets a few hundred per namespace at most).
    let settings = TenantSettings {
        history_depth: Some(MAX_HISTORY_DEPTH),
        ..TenantSettings::default()
    };
    loop {
        let set = admin
            .set_tenant_settings("jepsen", &settings, "keep every schema version")
            .await;
        if set.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("could not set the tenant's history depth: {set:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recorded_put(admin, rec, &namespace(0), json!({ "w": "setup" }))
        .await
        .context("the setup write")?;
    Ok(())
}

/// A put by process 0 (the harness), recorded like any client's.
async fn recorded_put(
    admin: &raftconf_client::Client,
    rec: &Recorder,
    ns: &str,
    value: serde_json::Value,
) -> Result<u64> {
    let ns = ns.to_string();
    let op_id = rec.op_id();
    rec.record(Event::Invoke {
        t: rec.now(),
        process: 0,
        op_id,
        op: Op::Put {
            ns: ns.clone(),
            value: value.clone(),
        },
    });
    let w = admin.put(&ns, &value).await?;
    rec.record(Event::Ok {
        t: rec.now(),
        process: 0,
        op_id,
        result: OpOk {
            revision: w.revision,
            value: None,
            version: w.version,
            mod_revision: 0,
        },
    });
    Ok(w.revision)
}

/// Waits until every node reports the same applied revision and state
/// digest twice in a row, a second apart; returns that revision.
async fn converge(cluster: &Cluster, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut last: Option<(u64, String)> = None;
    loop {
        let mut seen = BTreeMap::new();
        for slot in 1..=cluster.nodes.len() {
            match cluster.admin().status_of(&client_addr(slot)).await {
                Ok(s) => {
                    seen.insert(slot, (s.revision, s.state_digest));
                }
                Err(e) => {
                    seen.insert(slot, (0, format!("no answer: {e}")));
                }
            }
        }
        let first = seen.values().next().cloned();
        let agree = seen.values().all(|v| Some(v) == first.as_ref());
        if agree && first.is_some() && first == last {
            return Ok(first.map(|f| f.0).unwrap_or(0));
        }
        last = if agree { first } else { None };
        if Instant::now() > deadline {
            bail!("the nodes did not converge within {timeout:?}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn summarize(
    events: &[Event],
    attempted: u64,
    report: &NemesisReport,
    verdicts: &[Verdict],
) -> String {
    let (mut ok, mut failed, mut info) = (0, 0, 0);
    // The transactions and schema changes invoked, and how many were
    // acknowledged; the writes refused because a value broke a schema.
    let (mut transactions, mut schema_changes) = (HashSet::new(), HashSet::new());
    let (mut transactions_ok, mut schema_changes_ok, mut schema_refusals) = (0, 0, 0);
    for e in events {
        match e {
            Event::Invoke { op_id, op, .. } if op.is_transaction() => {
                transactions.insert(*op_id);
            }
            Event::Invoke { op_id, op, .. } if op.is_schema() => {
                schema_changes.insert(*op_id);
            }
            Event::Ok { process, op_id, .. } if *process != 0 => {
                ok += 1;
                transactions_ok += usize::from(transactions.contains(op_id));
                schema_changes_ok += usize::from(schema_changes.contains(op_id));
            }
            Event::Fail { reason, .. } => {
                failed += 1;
                schema_refusals +=
                    usize::from(matches!(reason, FailReason::SchemaViolation { .. }));
            }
            Event::Info { .. } => info += 1,
            _ => {}
        }
    }
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &report.faults {
        *faults
            .entry(f.split(' ').next().unwrap_or("?"))
            .or_default() += 1;
    }
    let faults_text = if faults.is_empty() {
        "none".to_string()
    } else {
        faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let checks = verdicts
        .iter()
        .map(|v| format!("{} {}", v.name, if v.ok { "ok" } else { "FAILED" }))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "ops attempted {attempted} / ok {ok} / failed {failed} / indeterminate {info}; \
         transactions attempted {} / ok {transactions_ok}; \
         schema changes attempted {} / ok {schema_changes_ok}; \
         writes refused by a schema {schema_refusals}; \
         faults {} ({faults_text}{}); checkers: {checks}",
        transactions.len(),
        schema_changes.len(),
        report.faults.len(),
        if report.errors.is_empty() {
            String::new()
        } else {
            format!("; {} nemesis errors", report.errors.len())
        }
    )
}

fn write_results(
    opts: &RunOptions,
    verdicts: &[Verdict],
    report: &NemesisReport,
    summary: &str,
) -> Result<()> {
    let results = json!({
        "seed": opts.seed,
        "replay": opts.replay,
        "summary": summary,
        "ok": verdicts.iter().all(|v| v.ok),
        "checkers": verdicts,
        "faults": report.faults,
        "nemesis_errors": report.errors,
    });
    std::fs::write(
        opts.dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    Ok(())
}

/// Waits (bounded) until every reloader process has taken namespace 0's
/// final value and `raftconf clients` shows each current, then records what
/// `clients` reported, for the `delivery` checker to judge.
async fn record_delivery(cluster: &Cluster, reloaders: &Reloaders, rec: &Recorder) -> Result<()> {
    let ns = namespace(0);
    let admin = cluster.admin();
    let latest = match admin.get(&ns).await {
        Ok(doc) => doc.mod_revision,
        Err(raftconf_client::Error::NotFound(_)) => 0,
        Err(e) => return Err(e).context(format!("reading {ns} after the run")),
    };
    if latest > 0 && !reloaders.wait_for(latest, Duration::from_secs(30)).await {
        println!(
            "some reloader process did not reach revision {latest}; the checkers will say which"
        );
    }
    let ids: Vec<String> = reloaders.client_ids();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = admin.clients(&ns).await.context("raftconf clients")?;
        let all_current = ids.iter().all(|id| {
            report.subscribers.iter().any(|s| {
                &s.client_id == id
                    && s.connected
                    && s.state == raftconf_client::SubscriberState::Current
            })
        });
        if all_current || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    rec.record(Event::Delivery {
        t: rec.now(),
        ns,
        latest_revision: report.latest_revision,
        subscribers: report
            .subscribers
            .iter()
            .map(|s| Delivered {
                client_id: s.client_id.clone(),
                applied_revision: s.applied_revision,
                state: s.state.as_str().to_string(),
                connected: s.connected,
            })
            .collect(),
    });
    Ok(())
}
