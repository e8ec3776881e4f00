//! Test harness for raftconf's multi-process integration tests.
//!
//! [`Server`] runs the real `raftconf` binary on ports the OS picked, with its
//! own temp data directory and log file; it can be SIGKILLed and restarted on
//! the same data directory. [`cli`] runs the same binary as the operator CLI
//! with `-o json`. Nothing here is mocked: these are the processes a user runs.
//!
//! The binary is found next to the test executable (`target/<profile>/raftconf`,
//! built by `cargo test --workspace`), or at `$RAFTCONF_BIN`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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

/// Path of a built example (`target/<profile>/examples/<name>`).
pub fn example_binary(name: &str) -> PathBuf {
    binary()
        .parent()
        .expect("binary has a parent")
        .join("examples")
        .join(name)
}

/// A port that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One `raftconf server` process.
pub struct Server {
    /// Client address, `127.0.0.1:PORT`.
    pub addr: String,
    /// Peer address.
    pub peer_addr: String,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Where the server's stdout/stderr go (kept on failure for the postmortem).
    pub log_path: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    restarts: u32,
}

impl Server {
    /// Starts a single-node server in a fresh temp dir and waits until it serves.
    pub fn start() -> Result<Server> {
        let tmp = tempfile::Builder::new().prefix("raftconf-it-").tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut s = Server {
            addr: format!("127.0.0.1:{}", free_port()),
            peer_addr: format!("127.0.0.1:{}", free_port()),
            log_path: tmp.path().join("server-0.log"),
            data_dir,
            child: None,
            _tmp: Some(tmp),
            restarts: 0,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log_path)?;
        let child = Command::new(binary())
            .args(["server", "--node-id", "1", "--listen", &self.addr])
            .args(["--peer-listen", &self.peer_addr, "--data-dir"])
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary().display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    /// Waits until `raftconf status` answers with a leader and a cluster id.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("server exited with {status}; log:\n{}", self.log());
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
                bail!("server not ready within {timeout:?}; log:\n{}", self.log());
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

    /// Starts the server again on the same data directory and ports.
    pub fn restart(&mut self) -> Result<()> {
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
                eprintln!("test failed: server data and logs kept in {}", p.display());
            }
        }
        let _ = self.kill();
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
