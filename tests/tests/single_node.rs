//! End-to-end tests of one real `raftconf server` process driven through the
//! real CLI: the write/read/history path, CAS, watches, crash durability and
//! bad input. Each test starts its own server on OS-chosen ports in a temp dir
//! (kept, with logs, when the test fails).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_tests::{binary, cli, cli_json, cli_with_stdin, create_env, put, Server};
use serde_json::{json, Value};

/// A `raftconf -o json watch …` process whose stdout lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Watcher {
    fn start(addr: &str, targets: &[&str], from_revision: u64) -> Result<Watcher> {
        let mut child = Command::new(binary())
            .args(["--endpoints", addr, "-o", "json", "watch"])
            .args(targets)
            .args(["--from-revision", &from_revision.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watcher { child, lines })
    }

    /// Collects change lines (put/delete) until one at `revision` or beyond arrives.
    fn changes_until(&self, revision: u64, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = match self.lines.recv_timeout(left) {
                Ok(v) => v,
                Err(_) => bail!("watch stalled before revision {revision}; got {out:?}"),
            };
            let rev = v["revision"].as_u64().unwrap_or(0);
            if matches!(v["type"].as_str(), Some("put") | Some("delete")) {
                out.push(v);
            }
            if rev >= revision {
                return Ok(out);
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn revisions(changes: &[Value]) -> Vec<u64> {
    changes
        .iter()
        .filter_map(|c| c["revision"].as_u64())
        .collect()
}

fn store_revision(addr: &str) -> Result<u64> {
    cli_json(addr, &["status"])?["revision"]
        .as_u64()
        .context("status has a revision")
}

/// Put, then get and history show exactly what was written, by whom and in which order.
#[test]
fn put_get_history() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let (r1, v1) = put(
        &s.addr,
        "pay/prod/checkout",
        r#"{"timeout_ms": 250, "retries": 3}"#,
    )?;
    assert_eq!(v1, 1);

    let yaml = s.data_dir.parent().context("tmp")?.join("checkout.yaml");
    std::fs::write(&yaml, "timeout_ms: 300\nretries: 3\nfeatures:\n  - fast\n")?;
    let out = cli_json(
        &s.addr,
        &[
            "put",
            "pay/prod/checkout",
            "-f",
            yaml.to_str().context("utf8")?,
            "-m",
            "slower",
        ],
    )?;
    let (r2, v2) = (
        out["revision"].as_u64().context("rev")?,
        out["version"].as_u64().context("ver")?,
    );
    assert_eq!(
        (r2, v2),
        (r1 + 1, 2),
        "one revision per write, version counts changes"
    );

    let got = cli_json(&s.addr, &["get", "pay/prod/checkout"])?;
    assert_eq!(
        got["value"],
        json!({"timeout_ms": 300, "retries": 3, "features": ["fast"]})
    );
    assert_eq!(got["version"], 2);
    assert_eq!(got["revision"], r2, "revision is the modified revision");
    assert!(got["store_revision"].as_u64().context("store_revision")? >= r2);

    let old = cli_json(
        &s.addr,
        &["get", "pay/prod/checkout", "--revision", &r1.to_string()],
    )?;
    assert_eq!(
        old["value"],
        json!({"timeout_ms": 250, "retries": 3}),
        "reads at an older revision come from history"
    );

    let hist = cli(&s.addr, &["-o", "json", "history", "pay/prod/checkout"])?;
    assert!(
        hist.status.success(),
        "{}",
        String::from_utf8_lossy(&hist.stderr)
    );
    let text = String::from_utf8_lossy(&hist.stdout);
    let first_v2 = text
        .find("\"version\":2")
        .context("history lists version 2")?;
    let first_v1 = text
        .find("\"version\":1")
        .context("history lists version 1")?;
    assert!(first_v2 < first_v1, "newest first: {text}");
    assert!(text.contains("slower"), "the message is kept: {text}");
    Ok(())
}

/// A compare-and-set miss fails with the current version and changes nothing.
#[test]
fn cas_miss_changes_nothing() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    put(&s.addr, "pay/prod/a", r#"{"x":1}"#)?;
    let before = store_revision(&s.addr)?;
    let out = cli_with_stdin(
        &s.addr,
        &["put", "pay/prod/a", "--if-version", "0"],
        Some(br#"{"x":2}"#),
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version") && err.contains('1'),
        "names the current version: {err}"
    );
    let out = cli_with_stdin(
        &s.addr,
        &["put", "pay/prod/a", "--if-version", "7"],
        Some(br#"{"x":2}"#),
    )?;
    assert!(!out.status.success());
    assert_eq!(
        store_revision(&s.addr)?,
        before,
        "a rejected write takes no revision"
    );
    assert_eq!(
        cli_json(&s.addr, &["get", "pay/prod/a"])?["value"],
        json!({"x": 1})
    );
    // The right version succeeds.
    let ok = cli_with_stdin(
        &s.addr,
        &["-o", "json", "put", "pay/prod/a", "--if-version", "1"],
        Some(br#"{"x":3}"#),
    )?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    Ok(())
}

/// A watcher receives every write, in revision order, each exactly once.
#[test]
fn watch_receives_every_write_in_order() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let start = store_revision(&s.addr)? + 1;
    let w = Watcher::start(&s.addr, &["pay/prod/"], start)?;
    let mut written = Vec::new();
    for i in 0..20 {
        let (rev, _) = put(
            &s.addr,
            &format!("pay/prod/ns{}", i % 4),
            &format!(r#"{{"i":{i}}}"#),
        )?;
        written.push(rev);
    }
    let del = cli_json(&s.addr, &["delete", "pay/prod/ns0"])?;
    written.push(del["revision"].as_u64().context("delete revision")?);
    let got = w.changes_until(*written.last().context("writes")?, Duration::from_secs(20))?;
    assert_eq!(revisions(&got), written);
    assert_eq!(got.last().context("last")?["type"], "delete");
    assert_eq!(
        got[19]["value"],
        json!({"i": 19}),
        "changes carry the whole document"
    );
    Ok(())
}

/// SIGKILL while a writer runs: every acknowledged write is there after the
/// restart; a watcher that resumes from last_seen + 1 after the restart sees
/// no gap and no duplicate, and so does one left running across the crash
/// (the client library resumes it by itself).
#[test]
fn sigkill_loses_no_acknowledged_write_and_watch_resumes_gapless() -> Result<()> {
    const WRITES: usize = 300;
    let mut s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let start = store_revision(&s.addr)? + 1;
    let survivor = Watcher::start(&s.addr, &["pay/prod/"], start)?;
    let before = Watcher::start(&s.addr, &["pay/prod/"], start)?;

    let addr = s.addr.clone();
    let (acked_tx, acked_rx) = mpsc::channel::<(String, u64)>();
    let writer = std::thread::spawn(move || {
        for i in 0..WRITES {
            let path = format!("pay/prod/w{i}");
            // A write in flight during the crash fails (outcome unknown): not acknowledged.
            if let Ok((rev, _)) = put(&addr, &path, &format!(r#"{{"i":{i}}}"#)) {
                if acked_tx.send((path, rev)).is_err() {
                    return;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 40 {
        acked.push(
            acked_rx
                .recv_timeout(Duration::from_secs(30))
                .context("writer made progress")?,
        );
    }
    s.kill()?;
    // What the first watcher saw before the crash (it cannot see more now).
    let mut seen_before = Vec::new();
    while let Ok(v) = before.lines.recv_timeout(Duration::from_millis(300)) {
        if matches!(v["type"].as_str(), Some("put")) {
            seen_before.push(v["revision"].as_u64().context("revision")?);
        }
    }
    drop(before);
    s.restart()?;
    let last_seen = seen_before.last().copied().unwrap_or(start - 1);
    let resumed = Watcher::start(&s.addr, &["pay/prod/"], last_seen + 1)?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    acked.extend(acked_rx.try_iter());

    for (path, rev) in &acked {
        let got = cli_json(&s.addr, &["get", path]).with_context(|| {
            format!("acknowledged write {path} at revision {rev} survives the crash")
        })?;
        assert_eq!(got["revision"].as_u64(), Some(*rev), "{path}");
    }
    // The truth after the fact: every namespace that exists, at the revision that wrote it.
    let mut truth = Vec::new();
    for i in 0..WRITES {
        if let Ok(v) = cli_json(&s.addr, &["get", &format!("pay/prod/w{i}")]) {
            truth.push(v["revision"].as_u64().context("revision")?);
        }
    }
    truth.sort_unstable();
    let last = *truth.last().context("some writes landed")?;

    let mut joined = seen_before.clone();
    joined.extend(revisions(
        &resumed.changes_until(last, Duration::from_secs(30))?,
    ));
    assert_eq!(
        joined, truth,
        "seen before the crash + resumed from last_seen + 1 = every write, once, in order"
    );
    let across = revisions(&survivor.changes_until(last, Duration::from_secs(30))?);
    assert_eq!(
        across, truth,
        "a watch left running across the crash resumes by itself without gap or duplicate"
    );
    Ok(())
}

/// Bad input gets a clear one-line error and changes nothing.
#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    put(&s.addr, "pay/prod/ok", r#"{"a":1}"#)?;
    let before = store_revision(&s.addr)?;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1024 * 1024 + 10));
    let cases: Vec<(Vec<&str>, Vec<u8>, &[&str])> = vec![
        (
            vec!["put", "pay/prod/bad"],
            b"{\"a\": 1,\n  \"b\": }".to_vec(),
            &["line 2", "column"],
        ),
        (
            vec!["put", "pay/prod/bad", "--format", "yaml"],
            b"a: [1, 2\nb: 3\n".to_vec(),
            &["YAML", "line"],
        ),
        (
            vec!["put", "pay/prod/bad"],
            b"[1, 2, 3]".to_vec(),
            &["object"],
        ),
        (
            vec!["put", "Pay/prod/bad"],
            b"{}".to_vec(),
            &["tenant", "Pay"],
        ),
        (vec!["put", "pay/prod"], b"{}".to_vec(), &["path"]),
        (
            vec!["put", "pay/staging/bad"],
            b"{}".to_vec(),
            &["staging", "prod"],
        ),
        (
            vec!["put", "pay/prod/bad"],
            big.into_bytes(),
            &["size", "1048576"],
        ),
    ];
    for (args, input, needles) in cases {
        let out = cli_with_stdin(&s.addr, &args, Some(&input))?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        for n in needles {
            assert!(
                err.contains(n),
                "{args:?}: error {err:?} should mention {n:?}"
            );
        }
    }
    assert_eq!(store_revision(&s.addr)?, before, "nothing changed");
    let missing = cli(&s.addr, &["get", "pay/prod/bad"])?;
    assert!(!missing.status.success());
    Ok(())
}

/// Concurrent writers through the client library: writes that share a log
/// entry (group commit) still each get their own revision, with no hole and
/// no duplicate, and every one is readable afterwards.
#[test]
fn concurrent_writes_get_distinct_contiguous_revisions() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let base = store_revision(&s.addr)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut revisions: Vec<u64> = rt.block_on(async {
        let client = raftconf_client::Client::connect([s.addr.clone()]).await?;
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut revs = Vec::new();
                    for j in 0..10 {
                        let path = format!("pay/prod/c{i}-{j}");
                        let w = client.put(&path, &json!({"i": i, "j": j})).await?;
                        anyhow::ensure!(w.version == 1, "{path}: version {}", w.version);
                        revs.push(w.revision);
                    }
                    anyhow::Ok(revs)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    revisions.sort_unstable();
    let expected: Vec<u64> = (base + 1..=base + 640).collect();
    assert_eq!(
        revisions, expected,
        "one revision per write, no hole, no duplicate"
    );
    assert_eq!(store_revision(&s.addr)?, base + 640);
    let got = cli_json(&s.addr, &["get", "pay/prod/c63-9"])?;
    assert_eq!(got["value"], json!({"i": 63, "j": 9}));
    Ok(())
}

/// `env delete` and `tenant delete` refuse while something is inside, naming
/// it, and change nothing; with `--force` each is one revision that deletes
/// everything inside (a watcher sees the namespace deletes), and a deleted
/// environment refuses writes like one that never existed.
#[test]
fn env_and_tenant_delete_refuse_unless_forced() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    put(&s.addr, "pay/prod/a", r#"{"x":1}"#)?;
    put(&s.addr, "pay/prod/b", r#"{"x":1}"#)?;
    let before = store_revision(&s.addr)?;

    let out = cli(&s.addr, &["env", "delete", "pay/prod"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("still holds 2 namespaces (a, b)"), "{err}");
    let out = cli(&s.addr, &["tenant", "delete", "pay"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("still holds 1 environments (prod)"), "{err}");
    assert_eq!(store_revision(&s.addr)?, before, "refusals change nothing");

    let watcher = Watcher::start(&s.addr, &["pay/prod/"], before + 1)?;
    let deleted = cli_json(
        &s.addr,
        &["env", "delete", "pay/prod", "--force", "-m", "retire prod"],
    )?;
    assert_eq!(
        deleted["revision"],
        json!(before + 1),
        "one revision for everything"
    );
    // The CLI prints one line per namespace of the event.
    let mut changes = watcher.changes_until(before + 1, Duration::from_secs(20))?;
    while changes.len() < 2 {
        match watcher.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(v) => changes.push(v),
            Err(_) => bail!("only {changes:?}"),
        }
    }
    let deletes: Vec<(&str, u64)> = changes
        .iter()
        .filter(|c| c["type"] == "delete")
        .map(|c| {
            (
                c["path"].as_str().unwrap_or(""),
                c["revision"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        deletes,
        [("pay/prod/a", before + 1), ("pay/prod/b", before + 1)],
        "{changes:?}"
    );
    let out = cli_with_stdin(&s.addr, &["put", "pay/prod/a"], Some(br#"{"x":2}"#))?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("environment \"prod\" does not exist"), "{err}");

    let deleted = cli_json(&s.addr, &["tenant", "delete", "pay"])?;
    assert_eq!(deleted["revision"], json!(before + 2));
    let tenants = cli_json(&s.addr, &["tenant", "list"])?;
    assert_eq!(tenants, json!([]), "{tenants}");
    Ok(())
}

/// `tenant set` changes a tenant's replicated settings: history keeps that
/// many versions, and a namespace past the limit is refused naming it.
#[test]
fn tenant_settings_bound_history_and_namespaces() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let set = cli_json(
        &s.addr,
        &[
            "tenant",
            "set",
            "pay",
            "--history-depth",
            "2",
            "--max-namespaces",
            "1",
        ],
    )?;
    assert!(set["revision"].as_u64().is_some(), "{set}");
    for i in 0..4 {
        put(&s.addr, "pay/prod/a", &format!(r#"{{"i":{i}}}"#))?;
    }
    let history = cli_json(&s.addr, &["history", "pay/prod/a"])?;
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    let out = cli_with_stdin(&s.addr, &["put", "pay/prod/b"], Some(br#"{"i":0}"#))?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namespaces per environment"), "{err}");
    let tenants = cli_json(&s.addr, &["tenant", "list"])?;
    assert_eq!(tenants[0]["history_depth"], json!(2));
    assert_eq!(tenants[0]["max_namespaces_per_env"], json!(1));
    let out = cli(&s.addr, &["tenant", "set", "pay", "--history-depth", "0"])?;
    assert!(!out.status.success());
    Ok(())
}
