//! The cluster controller: real `raftconf server` processes, one per slot,
//! each on its own loopback address (see [`crate::net`]) with its own data
//! directory and log file. It can kill -9 and restart a node on its data
//! directory, pause and resume it (SIGSTOP/SIGCONT), and replace a node by a
//! wiped one under a new id (remove, wipe, add as learner, promote).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use raftconf_client::{Client, ClientOptions};

use crate::net::slot_ip;

/// Client port of every node (each node has its own address).
pub const CLIENT_PORT: u16 = 7070;
/// Peer port of every node.
pub const PEER_PORT: u16 = 7071;

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `raftconf` binary.
    pub bin: PathBuf,
    /// The run directory: `node<slot>/data` and `node<slot>.log` go there.
    pub dir: PathBuf,
    /// How many nodes.
    pub nodes: usize,
    /// `--snapshot-every` of each node (low, so snapshots and installs happen).
    pub snapshot_every: u64,
}

/// One node slot: a fixed address, and the node id that currently runs there
/// (a replaced node comes back under a new id).
#[derive(Debug)]
pub struct Node {
    /// 1-based slot.
    pub slot: usize,
    /// The node id running in this slot.
    pub id: u64,
    /// Started with `--join` (a replacement) rather than `--peers`.
    pub joined: bool,
    child: Option<Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

/// The running cluster.
pub struct Cluster {
    opts: ClusterOptions,
    /// The slots, `nodes[slot - 1]`.
    pub nodes: Vec<Node>,
    next_id: u64,
    admin: Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// The client address of slot `slot`.
pub fn client_addr(slot: usize) -> String {
    format!("{}:{CLIENT_PORT}", slot_ip(slot))
}

/// The peer address of slot `slot`.
pub fn peer_addr(slot: usize) -> String {
    format!("{}:{PEER_PORT}", slot_ip(slot))
}

/// Client options for the harness's own calls: short, so a dead node costs little.
pub fn admin_options() -> ClientOptions {
    ClientOptions::default()
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(10))
}

impl Cluster {
    /// Starts every node with `--peers` and waits until one leader serves.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster> {
        let endpoints: Vec<String> = (1..=opts.nodes).map(client_addr).collect();
        let admin = Client::connect_with(endpoints, admin_options()).await?;
        let nodes = (1..=opts.nodes)
            .map(|slot| Node {
                slot,
                id: slot as u64,
                joined: false,
                child: None,
                paused: false,
            })
            .collect();
        let mut cluster = Cluster {
            next_id: opts.nodes as u64 + 1,
            opts,
            nodes,
            admin,
        };
        for slot in 1..=cluster.opts.nodes {
            cluster.spawn(slot)?;
        }
        cluster.wait_leader(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Every node's client address.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.nodes.len()).map(client_addr).collect()
    }

    /// The data directory of a slot.
    pub fn data_dir(&self, slot: usize) -> PathBuf {
        self.opts.dir.join(format!("node{slot}")).join("data")
    }

    /// The log file of a slot (every start of it appends).
    pub fn log_path(&self, slot: usize) -> PathBuf {
        self.opts.dir.join(format!("node{slot}.log"))
    }

    fn node(&mut self, slot: usize) -> &mut Node {
        &mut self.nodes[slot - 1]
    }

    /// Starts slot `slot`'s process (its current id) without waiting.
    fn spawn(&mut self, slot: usize) -> Result<()> {
        let n = self.nodes.len();
        let data = self.data_dir(slot);
        std::fs::create_dir_all(&data)?;
        let log_path = self.log_path(slot);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let node = &self.nodes[slot - 1];
        let mut args: Vec<String> = vec![
            "server".into(),
            "--node-id".into(),
            node.id.to_string(),
            "--listen".into(),
            client_addr(slot),
            "--peer-listen".into(),
            peer_addr(slot),
            "--source-addr".into(),
            slot_ip(slot),
            "--snapshot-every".into(),
            self.opts.snapshot_every.to_string(),
            // Keep every revision: the final check reads the whole run back.
            "--replay-window".into(),
            "1000000000".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        if node.joined {
            args.push("--join".into());
        } else {
            let peers: Vec<String> = (1..=n).map(|s| format!("{s}={}", peer_addr(s))).collect();
            args.push("--peers".into());
            args.push(peers.join(","));
        }
        writeln!(
            log,
            "=== jepsen: starting node {} in slot {slot}: raftconf {}",
            node.id,
            args.join(" ")
        )?;
        // setpriv: the node dies with this process, whatever ends it.
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.opts.bin)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.opts.bin.display()))?;
        let node = self.node(slot);
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Whether slot `slot`'s process runs (paused counts as running).
    pub fn is_running(&mut self, slot: usize) -> bool {
        match self.node(slot).child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self, slot: usize) -> Result<()> {
        let node = self.node(slot);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        node.paused = false;
        Ok(())
    }

    /// Starts a killed node again on its data directory (no wait).
    pub fn restart(&mut self, slot: usize) -> Result<()> {
        if self.is_running(slot) {
            return Ok(());
        }
        self.spawn(slot)
    }

    /// SIGSTOP.
    pub fn pause(&mut self, slot: usize) -> Result<()> {
        self.signal(slot, "STOP")?;
        self.node(slot).paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, slot: usize) -> Result<()> {
        if self.node(slot).paused {
            self.signal(slot, "CONT")?;
            self.node(slot).paused = false;
        }
        Ok(())
    }

    fn signal(&mut self, slot: usize, sig: &str) -> Result<()> {
        let pid = self
            .node(slot)
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("slot {slot} is not running"))?;
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// The slot of the leader as some node reports it, if any.
    pub async fn leader_slot(&self) -> Option<usize> {
        for slot in 1..=self.nodes.len() {
            if self.nodes[slot - 1].paused {
                continue;
            }
            if let Ok(status) = self.admin.status_of(&client_addr(slot)).await {
                if status.leader_id != 0 {
                    return self.slot_of(status.leader_id);
                }
            }
        }
        None
    }

    /// The slot node `id` runs in.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().find(|n| n.id == id).map(|n| n.slot)
    }

    /// Waits until some node reports a leader that answers writes' status.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for slot in 1..=self.nodes.len() {
                if !self.is_running(slot) {
                    if let Some(child) = self.node(slot).child.as_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!(
                                "node in slot {slot} exited with {status}; see {}",
                                self.log_path(slot).display()
                            );
                        }
                    }
                }
            }
            if let Some(slot) = self.leader_slot().await {
                return Ok(slot);
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces the node of `slot` by a wiped one under a new id: remove it
    /// from the membership (it may be the leader), kill it, wipe its data
    /// directory, start a new node there with `--join`, add it as a learner
    /// (it catches up, by snapshot when the log was compacted), then promote
    /// it. Returns the new id. Each membership call retries until it takes
    /// effect or `timeout` passes.
    pub async fn replace(&mut self, slot: usize, timeout: Duration) -> Result<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        let old = self.node(slot).id;
        retry(deadline, &format!("remove node {old}"), || {
            self.admin.remove_node(old)
        })
        .await?;
        self.kill(slot)?;
        wipe(&self.data_dir(slot))?;
        let new = self.next_id;
        self.next_id += 1;
        {
            let node = self.node(slot);
            node.id = new;
            node.joined = true;
        }
        self.spawn(slot)?;
        let (peer, client) = (peer_addr(slot), client_addr(slot));
        retry(deadline, &format!("add node {new} as a learner"), || {
            self.admin.add_node(new, &peer, &client, true)
        })
        .await?;
        retry(deadline, &format!("promote node {new}"), || {
            self.admin.promote_node(new)
        })
        .await?;
        Ok((old, new))
    }

    /// Ends every fault a node can be in: resumes paused nodes and restarts
    /// dead ones on their data directories.
    pub fn revive_all(&mut self) -> Result<()> {
        for slot in 1..=self.nodes.len() {
            self.resume(slot)?;
            self.restart(slot)?;
        }
        Ok(())
    }

    /// Makes every slot's node a voter again, after a membership change the
    /// nemesis could not finish (the node was wiped and started under its new
    /// id but not added, or added but not promoted). Idempotent.
    pub async fn ensure_members(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let status = retry(deadline, "cluster status", || self.admin.status()).await?;
        for slot in 1..=self.nodes.len() {
            let id = self.nodes[slot - 1].id;
            let voter = status.members.iter().any(|m| m.id == id && m.voter);
            if voter {
                continue;
            }
            let (peer, client) = (peer_addr(slot), client_addr(slot));
            retry(deadline, &format!("add node {id} as a learner"), || {
                self.admin.add_node(id, &peer, &client, true)
            })
            .await?;
            retry(deadline, &format!("promote node {id}"), || {
                self.admin.promote_node(id)
            })
            .await?;
        }
        Ok(())
    }

    /// The harness's admin client (failover across every node).
    pub fn admin(&self) -> &Client {
        &self.admin
    }

    /// Kills every node.
    pub fn stop_all(&mut self) {
        for slot in 1..=self.nodes.len() {
            let _ = self.resume(slot);
            let _ = self.kill(slot);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn wipe(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("wiping {}", dir.display())),
    }
}

/// Calls `f` until it succeeds or `deadline` passes (membership calls are
/// idempotent, so a retry after an unknown outcome is safe).
async fn retry<T, F, Fut>(deadline: Instant, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = raftconf_client::Result<T>>,
{
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "{what}: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("{what}: {e}"),
        }
    }
}
