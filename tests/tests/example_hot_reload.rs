//! The `hot_reload` example runs against a real server and reloads when the
//! configuration changes; a document its validation refuses leaves the old
//! value in effect.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftconf_tests::{create_env, example_binary, put, Server};

struct Example {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Example {
    /// Waits for a line starting with `prefix`; fails on timeout, showing what came.
    fn expect_line(&self, prefix: &str) -> Result<String> {
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

#[test]
fn example_reloads_on_change_and_refuses_invalid_config() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "demo", "dev")?;
    let (r1, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"hello","workers":4}"#,
    )?;

    let bin = example_binary("hot_reload");
    let mut child = Command::new(&bin)
        .args(["--endpoints", &s.addr, "--path", "demo/dev/app"])
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
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let ex = Example { child, lines };

    let loaded = ex.expect_line("loaded")?;
    assert!(loaded.contains(&format!("revision={r1}")), "{loaded}");
    assert!(loaded.contains("hello"), "{loaded}");

    let (r2, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"bonjour","workers":8}"#,
    )?;
    let reloaded = ex.expect_line("reloaded")?;
    assert!(
        reloaded.contains(&format!("revision={r2}")) && reloaded.contains("bonjour"),
        "{reloaded}"
    );

    // workers = 0 fails the example's validator: refused, old value kept.
    put(&s.addr, "demo/dev/app", r#"{"greeting":"bad","workers":0}"#)?;
    let refused = ex.expect_line("refused")?;
    assert!(
        refused.contains("workers"),
        "the refusal names the field: {refused}"
    );

    let (r4, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"hola","workers":2}"#,
    )?;
    let again = ex.expect_line("reloaded")?;
    assert!(
        again.contains(&format!("revision={r4}")) && again.contains("hola"),
        "{again}"
    );
    Ok(())
}
