//! The nemesis: faults on a seeded schedule, one at a time, each recorded
//! (start and stop) in the history and in `nemesis.log`.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::history::Event;
use crate::net::Net;
use crate::recorder::Recorder;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9 a node (the leader, a follower, or all of them), restart it later.
    Kill,
    /// SIGSTOP a node for longer than an election timeout, then SIGCONT.
    Pause,
    /// Network partitions: leader isolated, leader in the majority, leader in
    /// the minority, a bridge, one-way loss.
    Partition,
    /// Replace a node (maybe the leader) by a wiped one under a new id.
    Membership,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Kill, Kind::Pause, Kind::Partition, Kind::Membership];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Membership => "membership",
        })
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(Kind::Kill),
            "pause" => Ok(Kind::Pause),
            "partition" => Ok(Kind::Partition),
            "membership" => Ok(Kind::Membership),
            other => Err(format!(
                "unknown nemesis {other:?}: use kill, pause, partition, membership (or none)"
            )),
        }
    }
}

/// How faults are scheduled.
#[derive(Debug, Clone)]
pub struct NemesisOptions {
    /// The kinds to pick from (empty: no faults).
    pub kinds: Vec<Kind>,
    /// The seed of the schedule.
    pub seed: u64,
    /// Quiet time between faults (random within).
    pub quiet: (Duration, Duration),
    /// How long a fault lasts (random within).
    pub hold: (Duration, Duration),
    /// Told `true` while every node is down (a whole-cluster kill), so that
    /// client processes can be restarted then, from their caches.
    pub all_down: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

/// What the nemesis did.
#[derive(Debug, Default, Clone)]
pub struct NemesisReport {
    /// Faults injected, by kind and variant (`kill leader`, `partition bridge`, …).
    pub faults: Vec<String>,
    /// Faults that could not be injected or healed as planned (the run goes
    /// on; a membership change that timed out, for instance).
    pub errors: Vec<String>,
}

/// Logs each step in the history and in the nemesis log.
#[derive(Clone)]
struct Log {
    rec: Recorder,
    file: Arc<StdMutex<std::fs::File>>,
}

impl Log {
    fn event(&self, fault: &str, phase: &str, detail: &str) {
        let t = self.rec.now();
        self.rec.record(Event::Nemesis {
            t,
            fault: fault.to_string(),
            phase: phase.to_string(),
            detail: detail.to_string(),
        });
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{:>10.3}s {fault} {phase}: {detail}", t as f64 / 1e9);
        }
    }
}

/// Runs faults until `until`, then heals everything it did. The cluster is
/// shared with the final phase, which takes it after this returns.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    net: Net,
    opts: NemesisOptions,
    rec: Recorder,
    log_file: std::fs::File,
    until: Instant,
) -> NemesisReport {
    let log = Log {
        rec,
        file: Arc::new(StdMutex::new(log_file)),
    };
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(17));
    let mut report = NemesisReport::default();
    if opts.kinds.is_empty() {
        return report;
    }
    let between = |rng: &mut StdRng, (lo, hi): (Duration, Duration)| {
        rng.gen_range(lo.as_millis() as u64..=hi.as_millis().max(lo.as_millis()) as u64)
    };
    loop {
        let quiet = Duration::from_millis(between(&mut rng, opts.quiet));
        if Instant::now() + quiet >= until {
            break;
        }
        tokio::time::sleep(quiet).await;
        let kind = *opts.kinds.choose(&mut rng).expect("kinds is not empty");
        let hold = Duration::from_millis(between(&mut rng, opts.hold));
        let mut c = cluster.lock().await;
        let result = match kind {
            Kind::Kill => kill(&mut c, &mut rng, hold, &log, opts.all_down.as_deref()).await,
            Kind::Pause => pause(&mut c, &mut rng, hold, &log).await,
            Kind::Partition => partition(&mut c, &net, &mut rng, hold, &log).await,
            Kind::Membership => membership(&mut c, &mut rng, &log).await,
        };
        match result {
            Ok(what) => report.faults.push(what),
            Err(e) => {
                let msg = format!("{kind}: {e:#}");
                log.event(&kind.to_string(), "error", &msg);
                report.errors.push(msg);
                // Whatever half-happened, leave the cluster whole for the next fault.
                let _ = net.heal();
                let _ = c.revive_all();
            }
        }
    }
    report
}

/// The leader's slot (p = `leader_p`) or a random slot.
async fn target(c: &Cluster, rng: &mut StdRng, leader_p: f64) -> (usize, &'static str) {
    let n = c.nodes.len();
    if rng.gen_bool(leader_p) {
        if let Some(l) = c.leader_slot().await {
            return (l, "leader");
        }
    }
    (rng.gen_range(1..=n), "random node")
}

async fn kill(
    c: &mut Cluster,
    rng: &mut StdRng,
    hold: Duration,
    log: &Log,
    all_down: Option<&tokio::sync::watch::Sender<bool>>,
) -> anyhow::Result<String> {
    let n = c.nodes.len();
    if rng.gen_bool(0.15) {
        // Every node at once: what was acknowledged must survive a whole-cluster crash.
        let detail = format!("all {n} nodes");
        log.event("kill", "start", &detail);
        for slot in 1..=n {
            c.kill(slot)?;
        }
        if let Some(tell) = all_down {
            let _ = tell.send(true);
        }
        tokio::time::sleep(hold).await;
        if let Some(tell) = all_down {
            let _ = tell.send(false);
        }
        for slot in 1..=n {
            c.restart(slot)?;
        }
        log.event("kill", "stop", &format!("restarted {detail}"));
        return Ok("kill all".into());
    }
    let (slot, who) = target(c, rng, 0.5).await;
    let detail = format!("{who}: slot {slot} (node {})", c.nodes[slot - 1].id);
    log.event("kill", "start", &detail);
    c.kill(slot)?;
    tokio::time::sleep(hold).await;
    c.restart(slot)?;
    log.event("kill", "stop", &format!("restarted {detail}"));
    Ok(format!("kill {who}"))
}

async fn pause(
    c: &mut Cluster,
    rng: &mut StdRng,
    hold: Duration,
    log: &Log,
) -> anyhow::Result<String> {
    let (slot, who) = target(c, rng, 0.5).await;
    // Longer than an election timeout (1.5 s at most), so the others elect.
    let hold = hold.max(Duration::from_millis(2_000));
    let detail = format!(
        "{who}: slot {slot} (node {}) for {hold:?}",
        c.nodes[slot - 1].id
    );
    log.event("pause", "start", &detail);
    c.pause(slot)?;
    tokio::time::sleep(hold).await;
    c.resume(slot)?;
    log.event("pause", "stop", &detail);
    Ok(format!("pause {who}"))
}

async fn partition(
    c: &mut Cluster,
    net: &Net,
    rng: &mut StdRng,
    hold: Duration,
    log: &Log,
) -> anyhow::Result<String> {
    let n = c.nodes.len();
    let leader = c.leader_slot().await.unwrap_or(1);
    let mut others: Vec<usize> = (1..=n).filter(|s| *s != leader).collect();
    others.shuffle(rng);
    let variant = [
        "leader-isolated",
        "leader-majority",
        "leader-minority",
        "bridge",
        "one-way",
    ]
    .choose(rng)
    .copied()
    .unwrap_or("leader-isolated");
    let detail = match variant {
        "leader-isolated" => {
            net.partition(&[vec![leader], others.clone()])?;
            format!("{{{leader}}} | {others:?}")
        }
        "leader-majority" => {
            // The leader with a majority; the rest cut off from it.
            let keep = n / 2; // others on the leader's side
            let mut side = vec![leader];
            side.extend(&others[..keep]);
            let rest = others[keep..].to_vec();
            net.partition(&[side.clone(), rest.clone()])?;
            format!("{side:?} | {rest:?}")
        }
        "leader-minority" => {
            // The leader with fewer than half (alone with 3 nodes).
            let keep = ((n - 1) / 2).saturating_sub(1);
            let mut side = vec![leader];
            side.extend(&others[..keep]);
            let rest = others[keep..].to_vec();
            net.partition(&[side.clone(), rest.clone()])?;
            format!("{side:?} | {rest:?}")
        }
        "bridge" => {
            // Two halves that cannot see each other; one node sees both.
            let bridge = others[0];
            let mut rest: Vec<usize> = (1..=n).filter(|s| *s != bridge).collect();
            rest.shuffle(rng);
            let half = rest.len() / 2;
            let (a, b) = rest.split_at(half.max(1));
            net.partition(&[a.to_vec(), b.to_vec()])?;
            format!("{a:?} | {b:?}, bridged by {bridge}")
        }
        _ => {
            // One direction only, from the leader or towards it.
            let other = others[0];
            let (from, to) = if rng.gen_bool(0.5) {
                (leader, other)
            } else {
                (other, leader)
            };
            if rng.gen_bool(0.5) {
                net.cut_one_way(from, to)?;
                format!("{from} -> {to} dropped")
            } else {
                net.lossy_one_way(from, to, 50)?;
                format!("{from} -> {to} 50% loss")
            }
        }
    };
    log.event("partition", "start", &format!("{variant}: {detail}"));
    tokio::time::sleep(hold).await;
    net.heal()?;
    log.event("partition", "stop", &format!("{variant}: healed"));
    Ok(format!("partition {variant}"))
}

async fn membership(c: &mut Cluster, rng: &mut StdRng, log: &Log) -> anyhow::Result<String> {
    let (slot, who) = target(c, rng, 0.3).await;
    let old = c.nodes[slot - 1].id;
    log.event(
        "membership",
        "start",
        &format!("replace {who}: slot {slot} (node {old}): remove, wipe, add as learner, promote"),
    );
    let (old, new) = c.replace(slot, Duration::from_secs(60)).await?;
    log.event(
        "membership",
        "stop",
        &format!("slot {slot}: node {old} removed, node {new} added and promoted"),
    );
    Ok(format!("membership replace {who}"))
}
