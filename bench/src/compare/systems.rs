//! The two systems under test, started by the bench: a raftconf cluster and an
//! etcd cluster of the same size, on loopback ports the OS picks, data in temp
//! dirs on the same disk, both fsyncing. Every process is killed when its
//! [`Cluster`] is dropped (`kill_on_drop`), also when the run fails.
//!
//! Server CPU time and memory are read from `/proc/PID/stat` and
//! `/proc/PID/status` of every node, summed over the cluster.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_client::Client;
use tokio::process::{Child, Command};

use super::driver::etcd_leader;

/// Bound on a cluster binding its ports and electing a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Revisions raftconf keeps for resuming watches in the bench: scenario e
/// replays 10,000 events, and etcd keeps every revision until compacted.
const REPLAY_WINDOW: u64 = 100_000;

/// Which system a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    Etcd,
    Raftconf,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Etcd => "etcd",
            System::Raftconf => "raftconf",
        })
    }
}

/// One started node.
#[derive(Debug)]
struct Node {
    client_addr: String,
    child: Child,
    log_path: PathBuf,
}

/// A running cluster of one system.
#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    /// The leader's client address: loads and reads go there.
    pub leader: String,
    /// Every node's client address (subscribers are spread over them).
    pub endpoints: Vec<String>,
    nodes: Vec<Node>,
    /// Data dirs and logs; removed on drop.
    dir: tempfile::TempDir,
}

/// Free loopback ports, chosen by the OS (bound and released at once: another
/// process could take one in between, which would show as a start failure).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .context("picking free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Starts one node: its output to `log_path`, killed when dropped.
fn spawn_node(mut command: Command, client_addr: String, log_path: PathBuf) -> Result<Node> {
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {:?}", command.as_std().get_program()))?;
    Ok(Node {
        client_addr,
        child,
        log_path,
    })
}

impl Cluster {
    /// The cluster of `nodes`, its leader not yet known.
    fn assemble(system: System, nodes: Vec<Node>, dir: tempfile::TempDir) -> Cluster {
        Cluster {
            system,
            leader: String::new(),
            endpoints: nodes.iter().map(|n| n.client_addr.clone()).collect(),
            nodes,
            dir,
        }
    }

    /// Starts `nodes` raftconf servers (`bin server`) forming one cluster.
    pub async fn start_raftconf(bin: &Path, nodes: usize) -> Result<Cluster> {
        if !bin.is_file() {
            bail!(
                "{} not found: build it (cargo build --release -p raftconf-server) or pass --bin",
                bin.display()
            );
        }
        let dir = temp_dir("raftconf")?;
        let ports = free_ports(2 * nodes)?;
        let peers: Vec<String> = (0..nodes)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[2 * i + 1]))
            .collect();
        let mut started = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let client_addr = format!("127.0.0.1:{}", ports[2 * i]);
            let log_path = dir.path().join(format!("raftconf-{}.log", i + 1));
            let mut command = Command::new(bin);
            command
                .args(["server", "--node-id", &(i + 1).to_string()])
                .args(["--listen", &client_addr])
                .args(["--peer-listen", &format!("127.0.0.1:{}", ports[2 * i + 1])])
                .args(["--replay-window", &REPLAY_WINDOW.to_string()])
                .arg("--data-dir")
                .arg(dir.path().join(format!("raftconf-{}", i + 1)));
            if nodes > 1 {
                command.args(["--peers", &peers.join(",")]);
            }
            command.env("RUST_LOG", "warn");
            started.push(spawn_node(command, client_addr, log_path)?);
        }
        let mut cluster = Cluster::assemble(System::Raftconf, started, dir);
        cluster.leader = cluster.await_raftconf_leader().await?;
        let client = Client::connect([cluster.leader.clone()]).await?;
        client.create_tenant("bench").await?;
        client.create_env("bench", "run").await?;
        Ok(cluster)
    }

    /// Waits until every node names the same leader with a client address.
    async fn await_raftconf_leader(&mut self) -> Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let mut leaders = Vec::new();
            for addr in &self.endpoints {
                let status = match Client::connect([addr.clone()]).await {
                    Ok(client) => client.status_of(addr).await.ok(),
                    Err(_) => None,
                };
                leaders.push(status.map(|s| s.leader_addr).unwrap_or_default());
            }
            if !leaders[0].is_empty() && leaders.iter().all(|l| *l == leaders[0]) {
                return Ok(leaders[0].clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "raftconf: no agreed leader within {READY_TIMEOUT:?}\n{}",
                    self.log_tails(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `nodes` etcd members (`bin`, e.g. /usr/bin/etcd) forming one cluster.
    pub async fn start_etcd(bin: &Path, nodes: usize) -> Result<Cluster> {
        if !bin.is_file() {
            bail!(
                "{} not found: install etcd (apt-get install etcd-server) or pass --etcd-bin",
                bin.display()
            );
        }
        let dir = temp_dir("etcd")?;
        let ports = free_ports(2 * nodes)?;
        let initial: Vec<String> = (0..nodes)
            .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, ports[2 * i + 1]))
            .collect();
        let mut started = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let client_addr = format!("127.0.0.1:{}", ports[2 * i]);
            let peer_url = format!("http://127.0.0.1:{}", ports[2 * i + 1]);
            let log_path = dir.path().join(format!("etcd-{}.log", i + 1));
            let mut command = Command::new(bin);
            command
                .args(["--name", &format!("e{}", i + 1)])
                .arg("--data-dir")
                .arg(dir.path().join(format!("etcd-{}", i + 1)))
                .args(["--listen-client-urls", &format!("http://{client_addr}")])
                .args(["--advertise-client-urls", &format!("http://{client_addr}")])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "raftconf-bench"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            started.push(spawn_node(command, client_addr, log_path)?);
        }
        let mut cluster = Cluster::assemble(System::Etcd, started, dir);
        let deadline = Instant::now() + READY_TIMEOUT;
        cluster.leader = loop {
            cluster.check_alive()?;
            if let Ok(Some(leader)) = etcd_leader(&cluster.endpoints).await {
                break leader;
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd: no leader within {READY_TIMEOUT:?}\n{}",
                    cluster.log_tails(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(cluster)
    }

    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if let Some(status) = self.nodes[i].child.try_wait()? {
                bail!(
                    "{} node {} exited with {status}\n{}",
                    self.system,
                    i + 1,
                    self.log_tails(20)
                );
            }
        }
        Ok(())
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(&node.log_path).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {}\n", node.log_path.display()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// CPU time (user + system) every node has used so far.
    pub fn cpu_time(&self) -> Duration {
        self.pids().map(cpu_time_of).sum()
    }

    /// Resident memory of every node now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids().map(rss_kib_of).sum()
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes.iter().filter_map(|n| n.child.id())
    }

    /// Kills every node and removes the data.
    pub async fn stop(mut self) -> Result<()> {
        for node in &mut self.nodes {
            let _ = node.child.kill().await;
        }
        self.dir.close().context("removing the cluster's temp dir")
    }
}

fn temp_dir(system: &str) -> Result<tempfile::TempDir> {
    // Under the current directory, not /tmp: /tmp may be a tmpfs, and both
    // systems must write to the same real disk.
    tempfile::Builder::new()
        .prefix(&format!(".bench-{system}-"))
        .tempdir_in(".")
        .context("creating a data dir in the current directory")
}

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ; 100 on Linux x86-64
/// and arm64, which is what `getconf CLK_TCK` prints there).
const USER_HZ: u64 = 100;

/// utime + stime of a process, from `/proc/PID/stat` (0 if it is gone).
fn cpu_time_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    Duration::from_millis(parse_cpu_ticks(&stat).unwrap_or(0) * 1000 / USER_HZ)
}

/// utime + stime in ticks from the text of `/proc/PID/stat`: fields 14 and
/// 15, counted after the command name (which may hold spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a process in KiB (0 if it is gone).
fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_and_15() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1075 0 0 0 37 12 0 0 20 0 9 0 100 1 2";
        assert_eq!(parse_cpu_ticks(stat), Some(49));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(rss_kib_of(me) > 0);
        assert_eq!(rss_kib_of(u32::MAX), 0);
        assert_eq!(cpu_time_of(u32::MAX), Duration::ZERO);
    }
}
