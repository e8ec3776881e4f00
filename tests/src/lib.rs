//! Test harness for raftconf's multi-process integration tests.
//!
//! [`Server`] runs the real `raftconf` binary on ports the OS picked, with its
//! own temp data directory and log file; it can be SIGKILLed and restarted on
//! the same data directory. [`Cluster`] runs several of them as one cluster
//! (`--peers`), started in a seeded random order. [`cli`] runs the same
//! binary as the operator CLI with `-o json`. Nothing here is mocked: these
//! are the processes a user runs. When a test fails, every node's temp dir
//! (data and logs) is kept and its path printed.
//!
//! The binary is found next to the test executable (`target/<profile>/raftconf`,
//! built by `cargo test --workspace`), or at `$RAFTCONF_BIN`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Path of the `raftconf` binary under test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("RAFTCONF_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/raftconf
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    profile_dir.join("raftconf")
}

/// A running example program whose stdout is read line by line.
pub struct Example {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Example {
    /// Starts example `name` (built by `cargo test --workspace`) with `args`.
    pub fn start(name: &str, args: &[&str]) -> Result<Example> {
        let bin = example_binary(name);
        let mut child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (built by cargo test --workspace)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Example { child, lines })
    }

    /// Waits for a line starting with `prefix`; fails on timeout, showing what came.
    pub fn expect_line(&self, prefix: &str) -> Result<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => bail!("no line starting with {prefix:?}; saw {seen:?}"),
            }
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a built example (`target/<profile>/examples/<name>`).
pub fn example_binary(name: &str) -> PathBuf {
    binary()
        .parent()
        .expect("binary has a parent")
        .join("examples")
        .join(name)
}

/// A port that was free a moment ago, never the same one twice in a process.
///
/// Taken below the OS's ephemeral range when that leaves room. A port the OS
/// picks for `bind(127.0.0.1:0)` comes from that range, and once released the
/// OS may hand it to the next `bind(:0)` of a test running alongside, or to an
/// outgoing connection, before the server meant to use it binds it: CI saw
/// "Address already in use" from exactly that. Below the range only another
/// test's pick can collide; each process starts at a random place and walks
/// on.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    const FLOOR: u32 = 10_000;
    let low = ephemeral_low();
    if low < FLOOR + 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
    }
    let span = low - FLOOR;
    let start = *START.get_or_init(|| rand::thread_rng().gen_range(0..span));
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FLOOR + (start + offset) % span;
        let port = u16::try_from(port).expect("invariant: below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FLOOR} and {low}");
}

/// The first port of the OS's ephemeral range (Linux's default when unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// One `raftconf server` process.
pub struct Server {
    /// Its node id.
    pub node_id: u64,
    /// Client address, `127.0.0.1:PORT`.
    pub addr: String,
    /// Peer address.
    pub peer_addr: String,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Where the server's stdout/stderr go (kept on failure for the postmortem).
    pub log_path: PathBuf,
    /// Flags added to `raftconf server` (e.g. `--peers …`).
    pub extra_args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    restarts: u32,
}

impl Server {
    /// Starts a single-node server in a fresh temp dir and waits until it serves.
    pub fn start() -> Result<Server> {
        let mut s = Server::prepare(1)?;
        s.spawn()?;
        s.wait_ready(Duration::from_secs(30))?;
        Ok(s)
    }

    /// A server not started yet: node `node_id`, ports picked, its own temp dir.
    pub fn prepare(node_id: u64) -> Result<Server> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("raftconf-it-n{node_id}-"))
            .tempdir()?;
        Ok(Server {
            node_id,
            addr: format!("127.0.0.1:{}", free_port()),
            peer_addr: format!("127.0.0.1:{}", free_port()),
            log_path: tmp.path().join("server-0.log"),
            data_dir: tmp.path().join("data"),
            extra_args: Vec::new(),
            child: None,
            _tmp: Some(tmp),
            restarts: 0,
        })
    }

    /// Starts the process (without waiting for it to serve).
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log_path)?;
        let child = Command::new(binary())
            .args(["server", "--node-id", &self.node_id.to_string()])
            .args(["--listen", &self.addr])
            .args(["--peer-listen", &self.peer_addr, "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process runs (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit on its own and returns its exit code and log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(Option<i32>, String)> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("not started")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok((status.code(), self.log()));
            }
            if Instant::now() > deadline {
                bail!(
                    "server still running after {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `raftconf status` answers with a leader and a cluster id.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "node {} exited with {status}; log:\n{}",
                        self.node_id,
                        self.log()
                    );
                }
            }
            if let Ok(v) = cli_json(&self.addr, &["status"]) {
                if v["leader_id"].as_u64().unwrap_or(0) != 0
                    && !v["cluster_id"].as_str().unwrap_or("").is_empty()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready within {timeout:?}; log:\n{}",
                    self.node_id,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown path runs, like a crash.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and ports, and
    /// waits until it serves.
    pub fn restart(&mut self) -> Result<()> {
        self.restart_no_wait()?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// Starts the server again on the same data directory and ports (a new
    /// log file), without waiting.
    pub fn restart_no_wait(&mut self) -> Result<()> {
        self.kill()?;
        self.restarts += 1;
        self.log_path = self
            .log_path
            .with_file_name(format!("server-{}.log", self.restarts));
        self.spawn()
    }

    /// The current log file's content.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Keeps the temp dir (data and logs) after the test, and returns its path.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self._tmp.take().map(|t| t.keep())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(p) = self.keep() {
                eprintln!(
                    "test failed: node {} data and logs kept in {}",
                    self.node_id,
                    p.display()
                );
            }
        }
        let _ = self.kill();
    }
}

/// Several `raftconf server` processes forming one cluster with `--peers`.
pub struct Cluster {
    /// The nodes; `nodes[i]` has node id `i + 1`.
    pub nodes: Vec<Server>,
    /// The seed of the start order (printed, so a failing order can be replayed
    /// with `RAFTCONF_TEST_SEED`).
    pub seed: u64,
}

impl Cluster {
    /// Starts `n` nodes with the same `--peers` in a seeded random order, with
    /// seeded random gaps between them (an input of the test, not a wait for
    /// anything), then waits until every node serves and all of them report
    /// the same cluster id and leader.
    pub fn start(n: usize) -> Result<Cluster> {
        Cluster::start_with(n, &[])
    }

    /// [`Cluster::start`] with more `raftconf server` flags for every node.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Result<Cluster> {
        let seed = std::env::var("RAFTCONF_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut nodes = (1..=n as u64)
            .map(Server::prepare)
            .collect::<Result<Vec<_>>>()?;
        let peers = nodes
            .iter()
            .map(|s| format!("{}={}", s.node_id, s.peer_addr))
            .collect::<Vec<_>>()
            .join(",");
        for node in &mut nodes {
            node.extra_args = vec!["--peers".into(), peers.clone()];
            node.extra_args
                .extend(extra_args.iter().map(|a| a.to_string()));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let ids: Vec<u64> = order.iter().map(|i| *i as u64 + 1).collect();
        eprintln!("cluster: starting nodes in order {ids:?} (RAFTCONF_TEST_SEED={seed})");
        let mut cluster = Cluster { nodes, seed };
        for i in order {
            cluster.nodes[i].spawn()?;
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        }
        cluster.wait_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// Waits until every running node serves and all report one cluster id
    /// and one leader; returns the leader's index in [`Cluster::nodes`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
        for node in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
            node.wait_ready(timeout)?;
        }
        self.wait_agreed_leader(timeout)
    }

    /// Waits until all running nodes name the same leader and cluster id;
    /// returns the leader's index in [`Cluster::nodes`].
    pub fn wait_agreed_leader(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for node in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
                let v = cli_json(&node.addr, &["status"]).unwrap_or_default();
                seen.push((
                    v["cluster_id"].as_str().unwrap_or("").to_string(),
                    v["leader_id"].as_u64().unwrap_or(0),
                ));
            }
            let agreed = seen.windows(2).all(|w| w[0] == w[1]);
            if let Some((cluster_id, leader)) = seen.first() {
                if agreed && !cluster_id.is_empty() && *leader != 0 {
                    let index = self
                        .nodes
                        .iter()
                        .position(|n| n.node_id == *leader)
                        .context("the leader is one of the nodes")?;
                    return Ok(index);
                }
            }
            if Instant::now() > deadline {
                bail!("nodes do not agree on a cluster and a leader within {timeout:?}: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's client address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Waits until every running node reports the same revision and state
    /// digest, at least `min_revision`; returns them.
    pub fn wait_converged(
        &mut self,
        min_revision: u64,
        timeout: Duration,
    ) -> Result<(u64, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for node in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
                let v = cli_json(&node.addr, &["status"]).unwrap_or_default();
                seen.push((
                    v["revision"].as_u64().unwrap_or(0),
                    v["state_digest"].as_str().unwrap_or("").to_string(),
                ));
            }
            let agreed = seen.windows(2).all(|w| w[0] == w[1]);
            if let Some((revision, digest)) = seen.first() {
                if agreed && *revision >= min_revision && !digest.is_empty() {
                    return Ok((*revision, digest.clone()));
                }
            }
            if Instant::now() > deadline {
                bail!("nodes did not converge within {timeout:?}: (revision, digest) = {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `raftconf --endpoints ADDR ARGS…` and returns its output.
pub fn cli(addr: &str, args: &[&str]) -> Result<Output> {
    cli_with_stdin(addr, args, None)
}

/// Like [`cli`], feeding `stdin`.
pub fn cli_with_stdin(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let mut cmd = Command::new(binary());
    cmd.args(["--endpoints", addr]).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting the CLI")?;
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().context("stdin")?.write_all(input)?;
    }
    Ok(child.wait_with_output()?)
}

/// Runs a CLI command with `-o json`; fails with its stderr if it exits non-zero.
pub fn cli_json(addr: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let out = cli(addr, &full)?;
    if !out.status.success() {
        bail!(
            "raftconf {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "raftconf {} printed no JSON: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Creates tenant `t` and environment `t/e`.
pub fn create_env(addr: &str, tenant: &str, env: &str) -> Result<()> {
    cli_json(addr, &["tenant", "create", tenant])?;
    cli_json(addr, &["env", "create", &format!("{tenant}/{env}")])?;
    Ok(())
}

/// Puts a JSON document through the CLI (stdin) and returns (revision, version).
pub fn put(addr: &str, path: &str, json: &str) -> Result<(u64, u64)> {
    let out = cli_with_stdin(addr, &["-o", "json", "put", path], Some(json.as_bytes()))?;
    if !out.status.success() {
        bail!(
            "put {path} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        v["revision"].as_u64().context("revision")?,
        v["version"].as_u64().context("version")?,
    ))
}
