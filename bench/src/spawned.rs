//! `--spawn`: a fresh single-node `raftconf server` for one bench run, in its
//! own temp dir, on ports the OS picks (`127.0.0.1:0`; the bound address is
//! read back from the server's JSON log). Killed when the run ends, also on
//! error (`kill_on_drop`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_client::Client;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The server's log line that names its bound addresses.
const STARTING: &str = "starting raftconf server";
/// Bound on the server binding its ports and electing itself leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server and what it owns.
#[derive(Debug)]
pub struct SpawnedServer {
    /// Client address, `127.0.0.1:PORT`.
    pub addr: String,
    pub log_path: PathBuf,
    child: Child,
    /// Holds the data dir and log; removed on drop.
    dir: tempfile::TempDir,
}

/// `raftconf` next to this executable (e.g. target/release/raftconf).
pub fn default_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    Ok(dir.join("raftconf"))
}

impl SpawnedServer {
    /// Starts `bin server` and waits until it answers `status` with a leader.
    pub async fn start(bin: &Path) -> Result<SpawnedServer> {
        if !bin.is_file() {
            bail!(
                "{} not found: build it (cargo build --release -p raftconf-server) or pass --bin",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("raftconf-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(bin)
            .args(["server", "--node-id", "1"])
            .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--data-dir"])
            .arg(dir.path().join("data"))
            // The line naming the bound ports is logged at info.
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = SpawnedServer {
            addr: String::new(),
            log_path,
            child,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.addr.is_empty() {
            self.check_alive()?;
            if let Some(addr) = client_addr(&self.log()) {
                self.addr = addr;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the server logged no address within {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = Client::connect([self.addr.clone()]).await?;
        loop {
            self.check_alive()?;
            match client.status_of(&self.addr).await {
                Ok(s) if s.leader_id != 0 => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!(
                        "no leader within {READY_TIMEOUT:?}; log:\n{}",
                        self.log_tail(20)
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the server exited with {status}; log:\n{}",
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// The server's resident memory now, in KiB (Linux only).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the server (SIGKILL: nothing of it is kept) and removes its dir.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("killing the server")?;
        self.dir.close().context("removing the server's temp dir")
    }
}

/// The client address from the server's JSON log, once it has bound.
fn client_addr(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        let fields = v.get("fields")?;
        if fields.get("message")?.as_str()? != STARTING {
            return None;
        }
        Some(fields.get("client")?.as_str()?.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bound_address_from_the_json_log() {
        let log = concat!(
            "not json\n",
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"other","client":"x"}}"#,
            "\n",
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"starting raftconf server","node_id":1,"client":"127.0.0.1:40123","peer":"127.0.0.1:40124"},"target":"raftconf_server::server"}"#,
            "\n",
        );
        assert_eq!(client_addr(log).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(client_addr("{}\n"), None);
    }
}
