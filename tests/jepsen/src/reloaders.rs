//! Hot-reload client *processes*: `jepsen-reloader` children, each a
//! `Watched` with every node as an endpoint and its own cache directory. What
//! each prints is recorded as `Reload` events (with the incarnation: a
//! restart is a new one). The harness kills and restarts them on a seeded
//! schedule, and at once whenever the nemesis has every node down, so they
//! start from their cache; at the end it waits until each has taken the
//! namespace's final value.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::history::Event;
use crate::recorder::Recorder;

/// The client id of reloader process `n` (what `raftconf clients` lists).
pub fn client_id(n: u64) -> String {
    format!("jepsen-reloader-{n}")
}

/// One line of `jepsen-reloader`.
#[derive(Deserialize)]
struct Line {
    revision: u64,
    value: Value,
    #[serde(default)]
    from_cache: bool,
}

struct Proc {
    n: u64,
    incarnation: u64,
    child: Child,
    /// Records what it prints, until its stdout closes.
    reader: JoinHandle<()>,
    /// The revision of the last value it printed (any incarnation).
    last: Arc<AtomicU64>,
}

/// The reloader processes of a run.
pub struct Reloaders {
    bin: PathBuf,
    endpoints: Vec<String>,
    ns: String,
    dir: PathBuf,
    rec: Recorder,
    procs: Vec<Proc>,
}

impl Reloaders {
    /// Starts `count` processes numbered `first..`, on `ns`, with cache
    /// directories and stderr logs under `dir`.
    pub async fn start(
        count: usize,
        first: u64,
        endpoints: Vec<String>,
        ns: String,
        dir: &Path,
        rec: Recorder,
    ) -> Result<Reloaders> {
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .context("this program has no directory")?
            .join("jepsen-reloader");
        let mut r = Reloaders {
            bin,
            endpoints,
            ns,
            dir: dir.to_path_buf(),
            rec,
            procs: Vec::new(),
        };
        for n in first..first + count as u64 {
            let last = Arc::new(AtomicU64::new(0));
            let (child, reader) = r.spawn(n, 0, last.clone())?;
            r.procs.push(Proc {
                n,
                incarnation: 0,
                child,
                reader,
                last,
            });
        }
        Ok(r)
    }

    fn spawn(
        &self,
        n: u64,
        incarnation: u64,
        last: Arc<AtomicU64>,
    ) -> Result<(Child, JoinHandle<()>)> {
        let log = std::fs::File::create(self.dir.join(format!("reloader-{n}-{incarnation}.log")))?;
        let mut child = Command::new(&self.bin)
            .arg("--endpoints")
            .arg(self.endpoints.join(","))
            .arg("--path")
            .arg(&self.ns)
            .arg("--cache-dir")
            .arg(self.dir.join(format!("reloader-{n}-cache")))
            .arg("--client-id")
            .arg(client_id(n))
            // Every other one shares its stream with a decoy watch.
            .args(if n.is_multiple_of(2) {
                &["--beside-a-decoy"][..]
            } else {
                &[]
            })
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} (built with this crate)", self.bin.display()))?;
        let stdout = child.stdout.take().context("reloader stdout")?;
        let rec = self.rec.clone();
        let ns = self.ns.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(l) = serde_json::from_str::<Line>(&line) else {
                    continue;
                };
                last.fetch_max(l.revision, Ordering::Relaxed);
                rec.record(Event::Reload {
                    t: rec.now(),
                    reloader: n,
                    ns: ns.clone(),
                    revision: l.revision,
                    value: l.value,
                    incarnation: incarnation + 1,
                    from_cache: l.from_cache,
                });
            }
        });
        Ok((child, reader))
    }

    /// kill -9 process `i` (0-based) and start it again on its cache.
    pub async fn restart(&mut self, i: usize) -> Result<String> {
        let (n, incarnation, last) = {
            let p = &mut self.procs[i];
            let _ = p.child.kill().await;
            // Everything the killed run printed is recorded before the next
            // run prints anything.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut p.reader).await;
            p.incarnation += 1;
            (p.n, p.incarnation, p.last.clone())
        };
        let (child, reader) = self.spawn(n, incarnation, last)?;
        self.procs[i].child = child;
        self.procs[i].reader = reader;
        Ok(format!("reloader {n} (incarnation {})", incarnation + 1))
    }

    /// The client ids of the processes.
    pub fn client_ids(&self) -> Vec<String> {
        self.procs.iter().map(|p| client_id(p.n)).collect()
    }

    /// How many processes there are.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Waits until every process printed a value of revision `revision` or
    /// later; `false` if `timeout` passed first.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self
                .procs
                .iter()
                .all(|p| p.last.load(Ordering::Relaxed) >= revision)
            {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process.
    pub async fn stop(mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill().await;
        }
    }
}

/// Restarts a random reloader every 2–6 s, and one at once each time every
/// node goes down (`all_down` turns true), until `stop`.
pub async fn restart_schedule(
    reloaders: Arc<Mutex<Reloaders>>,
    seed: u64,
    mut all_down: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    rec: Recorder,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(97).wrapping_add(5));
    loop {
        let pause = Duration::from_millis(rng.gen_range(2_000..=6_000));
        let during_outage = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            changed = all_down.changed() => {
                if changed.is_err() || !*all_down.borrow() {
                    continue;
                }
                true
            }
            _ = stop.changed() => return,
        };
        let mut r = reloaders.lock().await;
        if r.is_empty() {
            return;
        }
        let i = rng.gen_range(0..r.len());
        let detail = match r.restart(i).await {
            Ok(d) if during_outage => format!("{d}, every node down"),
            Ok(d) => d,
            Err(e) => format!("failed: {e:#}"),
        };
        for phase in ["start", "stop"] {
            rec.record(Event::Nemesis {
                t: rec.now(),
                fault: "restart-reloader".into(),
                phase: phase.into(),
                detail: detail.clone(),
            });
        }
    }
}
