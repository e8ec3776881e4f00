//! `examples/local-cluster.sh`: `start` brings up three nodes and prints the
//! endpoints, the cluster answers, `stop` stops exactly the processes it
//! started (a pid file pointing at anything else is left alone), `clean`
//! removes the directory it named.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use raftconf_tests::{binary, cli_json, put};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("local-cluster.sh")
}

/// A base port whose six cluster ports (base + 100·N and the next) are free now.
fn free_base_port() -> Result<u16> {
    for _ in 0..50 {
        let base: u16 = rand::random::<u16>() % 30_000 + 20_000;
        let free = (1..=3u16).all(|n| {
            let port = base + 100 * n;
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free base port found")
}

fn run(dir: &Path, base: u16, args: &[&str]) -> Result<Output> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("RAFTCONF_CLUSTER_DIR", dir)
        .env("RAFTCONF_BASE_PORT", base.to_string())
        .env("RAFTCONF_BIN", binary())
        .output()
        .context("running local-cluster.sh")?;
    if !out.status.success() {
        bail!(
            "local-cluster.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn starts_serves_and_stops_only_what_it_started() -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("raftconf-local-cluster-")
        .tempdir()?;
    let dir = tmp.path().join("cluster");
    let base = free_base_port()?;
    let out = run(&dir, base, &["start"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let endpoints = stdout
        .lines()
        .find_map(|l| l.strip_prefix("endpoints: "))
        .context("start prints the endpoints")?
        .trim()
        .to_string();
    assert_eq!(endpoints.split(',').count(), 3, "{stdout}");
    let pids: Vec<u32> = (1..=3)
        .map(|n| {
            std::fs::read_to_string(dir.join(format!("n{n}.pid")))
                .context("pid file")?
                .trim()
                .parse()
                .context("a pid")
        })
        .collect::<Result<_>>()?;

    let result = (|| -> Result<()> {
        cli_json(&endpoints, &["tenant", "create", "demo"])?;
        cli_json(&endpoints, &["env", "create", "demo/dev"])?;
        let one = endpoints.split(',').nth(2).context("a third endpoint")?;
        put(one, "demo/dev/app", r#"{"a":1}"#)?;
        let status = cli_json(&endpoints, &["status"])?;
        assert_eq!(status["members"].as_array().map(Vec::len), Some(3));

        // A pid file that names something else: stop must leave it alone.
        let mut decoy = Command::new("sleep").arg("30").spawn()?;
        std::fs::write(dir.join("n1.pid"), decoy.id().to_string())?;
        run(&dir, base, &["stop"])?;
        assert!(
            alive(decoy.id()),
            "stop signalled a process it did not start"
        );
        decoy.kill()?;
        decoy.wait()?;
        assert!(!alive(pids[1]) && !alive(pids[2]), "nodes 2 and 3 stopped");
        Ok(())
    })();
    // Node 1 was hidden from `stop` by the decoy: stop it here, by its pid.
    let _ = Command::new("kill").arg(pids[0].to_string()).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while alive(pids[0]) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if result.is_err() {
        for pid in &pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        eprintln!("cluster directory kept in {}", tmp.keep().display());
        return result;
    }
    run(&dir, base, &["clean"])?;
    assert!(!dir.exists(), "clean removes the directory");
    Ok(())
}
