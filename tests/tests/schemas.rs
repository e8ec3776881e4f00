//! End-to-end tests of schemas through the real binary and the real CLI: a
//! schema of `tenant/namespace` gates every put in every environment (a
//! refused put lists every violation and changes nothing), a schema the live
//! documents would break is refused unless forced, versions are kept and
//! readable, a delete lets anything in again, watchers see schema changes,
//! and a three-node cluster converges through a mix of accepted and refused
//! writes sent to different nodes. Each test starts its own servers on
//! OS-chosen ports in temp dirs (kept, with logs, when a test fails).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_tests::{binary, cli, cli_json, cli_with_stdin, create_env, put, Cluster, Server};
use serde_json::{json, Value};

/// Generous bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Version 1: `host` required, `port` and `replicas` integers, `replicas` ≥ 1.
fn schema_v1() -> Value {
    json!({
        "type": "object",
        "properties": {
            "host": {"type": "string"},
            "port": {"type": "integer"},
            "replicas": {"type": "integer", "minimum": 1}
        },
        "required": ["host"]
    })
}

/// Version 2: as version 1, and ports are unprivileged.
fn schema_v2() -> Value {
    let mut s = schema_v1();
    s["properties"]["port"]["minimum"] = json!(1024);
    s
}

/// Breaks version 1 three ways: two wrong fields and a missing required one.
const BAD: &str = r#"{"port": "x", "replicas": 0}"#;
const GOOD: &str = r#"{"host": "db", "port": 80, "replicas": 2}"#;

/// Writes `value` as JSON into `dir/name` and returns the path.
fn write_file(dir: &Path, name: &str, value: &Value) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    Ok(path)
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str().context("utf-8 temp path")
}

fn store_revision(addr: &str) -> Result<u64> {
    cli_json(addr, &["status"])?["revision"]
        .as_u64()
        .context("status has a revision")
}

/// Runs a command that must fail; returns its stderr lines.
fn refused(out: Output, what: &str) -> Result<Vec<String>> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.code() != Some(1) {
        bail!(
            "{what}: expected exit 1, got {:?}; stdout {:?}; stderr {stderr:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(stderr.lines().map(str::to_string).collect())
}

/// Asserts a put refused by schema version 1 printed the one-line error and
/// then exactly the three violations, each with its pointer.
fn assert_three_violations(lines: &[String], path: &str) {
    assert_eq!(
        lines.len(),
        4,
        "the error, then one line per violation: {lines:#?}"
    );
    assert!(
        lines[0].starts_with(&format!(
            "error: {path} violates schema version 1 of pay/a: "
        )),
        "{lines:#?}"
    );
    let violations = &lines[1..];
    assert!(violations.iter().all(|l| l.starts_with("  ")), "{lines:#?}");
    for needle in [
        "  /port: \"x\" is not of type \"integer\"",
        "  /replicas: 0 is less than the minimum of 1",
        "  (root): \"host\" is a required property",
    ] {
        assert!(
            violations.iter().any(|l| l == needle),
            "{needle:?} in {lines:#?}"
        );
    }
}

/// A `raftconf -o json watch …` process whose stdout lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Watcher {
    fn start(addr: &str, target: &str, from_revision: u64) -> Result<Watcher> {
        let mut child = Command::new(binary())
            .args(["--endpoints", addr, "-o", "json", "watch", target])
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

    /// Every change line up to and including `revision`.
    fn changes_until(&self, revision: u64) -> Result<Vec<Value>> {
        let deadline = Instant::now() + DEADLINE;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(v) = self.lines.recv_timeout(left) else {
                bail!("watch stalled before revision {revision}; got {out:#?}");
            };
            let rev = v["revision"].as_u64().unwrap_or(0);
            if v["type"] != "progress" && rev <= revision {
                out.push(v);
            }
            // A change at `revision`, or progress past it: nothing more to come.
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

/// The whole life of a schema on one node: it gates puts (every violation
/// listed, nothing changed), refuses to break live documents unless forced,
/// keeps its versions, and once deleted lets anything in; a watcher of the
/// environment sees each schema change at its revision.
#[test]
fn a_schema_gates_puts_and_its_changes_reach_watchers() -> Result<()> {
    let s = Server::start()?;
    let dir = s.data_dir.parent().context("temp dir")?.to_path_buf();
    let v1 = write_file(&dir, "schema.json", &schema_v1())?;
    let v2 = write_file(&dir, "schema-v2.json", &schema_v2())?;
    create_env(&s.addr, "pay", "prod")?;
    cli_json(&s.addr, &["env", "create", "pay/dev"])?;

    // An environment or tenant that does not exist is refused, naming what exists.
    let lines = refused(
        cli_with_stdin(&s.addr, &["put", "pay/staging/a"], Some(GOOD.as_bytes()))?,
        "put to an unknown environment",
    )?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("staging") && lines[0].contains("prod"),
        "{lines:?}"
    );
    let lines = refused(
        cli(&s.addr, &["schema", "set", "nope/a", utf8(&v1)?])?,
        "schema of an unknown tenant",
    )?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("nope"), "{lines:?}");
    let lines = refused(cli(&s.addr, &["schema", "get", "pay/a"])?, "no schema yet")?;
    assert!(lines[0].contains("never had a schema"), "{lines:?}");

    let start = store_revision(&s.addr)? + 1;
    let watcher = Watcher::start(&s.addr, "pay/prod/", start)?;

    // Version 1.
    let set1 = cli_json(
        &s.addr,
        &["schema", "set", "pay/a", utf8(&v1)?, "-m", "first schema"],
    )?;
    assert_eq!(set1["version"], 1, "{set1}");
    let rev_set1 = set1["revision"].as_u64().context("revision")?;
    assert_eq!(rev_set1, start, "a schema change is one revision");

    // A put that breaks it three ways: every violation, one per line, exit 1,
    // nothing changed. The same in JSON mode (errors print the same there).
    for args in [
        vec!["put", "pay/prod/a"],
        vec!["-o", "json", "put", "pay/prod/a"],
    ] {
        let lines = refused(
            cli_with_stdin(&s.addr, &args, Some(BAD.as_bytes()))?,
            "a put breaking the schema",
        )?;
        assert_three_violations(&lines, "pay/prod/a");
    }
    // In every environment, and for a dry run too.
    let lines = refused(
        cli_with_stdin(
            &s.addr,
            &["put", "pay/dev/a", "--dry-run"],
            Some(BAD.as_bytes()),
        )?,
        "a dry run breaking the schema",
    )?;
    assert_three_violations(&lines, "pay/dev/a");
    assert_eq!(
        store_revision(&s.addr)?,
        rev_set1,
        "refused puts change nothing"
    );
    assert!(!cli(&s.addr, &["get", "pay/prod/a"])?.status.success());

    // A valid document is accepted; other namespaces are not bound.
    let (rev_good, _) = put(&s.addr, "pay/prod/a", GOOD)?;
    assert_eq!(rev_good, rev_set1 + 1);
    let (rev_other, _) = put(&s.addr, "pay/prod/b", BAD)?;

    // Version 2 would break the live document in prod: refused, naming the
    // environment and the pointer, nothing changed.
    let lines = refused(
        cli(&s.addr, &["schema", "set", "pay/a", utf8(&v2)?])?,
        "an incompatible schema",
    )?;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "error: schema version 2 of pay/a would break live documents: prod: /port: "
        ),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1], "  prod: /port: 80 is less than the minimum of 1024",
        "{lines:#?}"
    );
    assert_eq!(store_revision(&s.addr)?, rev_other);

    // Forced, it is accepted, and history says so.
    let set2 = cli_json(
        &s.addr,
        &[
            "schema",
            "set",
            "pay/a",
            utf8(&v2)?,
            "--force",
            "-m",
            "ports above 1024",
        ],
    )?;
    assert_eq!(set2["version"], 2, "{set2}");
    let rev_set2 = set2["revision"].as_u64().context("revision")?;
    assert_eq!(rev_set2, rev_other + 1);
    let history = cli_json(&s.addr, &["schema", "history", "pay/a"])?;
    let records = history.as_array().context("history is an array")?;
    assert_eq!(records.len(), 2, "{history}");
    assert_eq!(
        (
            &records[0]["version"],
            &records[0]["forced"],
            &records[0]["message"]
        ),
        (&json!(2), &json!(true), &json!("ports above 1024")),
        "newest first, forced: {history}"
    );
    assert_eq!(records[0]["revision"], json!(rev_set2));
    assert_eq!(
        (&records[1]["version"], &records[1]["forced"]),
        (&json!(1), &json!(false))
    );
    let text = cli(&s.addr, &["schema", "history", "pay/a"])?;
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().nth(1).unwrap_or("").contains("set (forced)"),
        "{text}"
    );

    // Any version can be read back; text output is the schema itself.
    let got = cli_json(&s.addr, &["schema", "get", "pay/a", "--version", "1"])?;
    assert_eq!(got["schema"], schema_v1(), "{got}");
    assert_eq!(
        (&got["version"], &got["deleted"]),
        (&json!(1), &json!(false))
    );
    let current = cli(&s.addr, &["schema", "get", "pay/a"])?;
    assert!(current.status.success());
    let printed: Value = serde_json::from_slice(&current.stdout)?;
    assert_eq!(printed, schema_v2());

    // The live document stays as it was; new puts follow version 2.
    assert_eq!(
        cli_json(&s.addr, &["get", "pay/prod/a"])?["value"],
        serde_json::from_str::<Value>(GOOD)?
    );
    let lines = refused(
        cli_with_stdin(&s.addr, &["put", "pay/prod/a"], Some(GOOD.as_bytes()))?,
        "a put breaking version 2",
    )?;
    assert_eq!(
        lines[1], "  /port: 80 is less than the minimum of 1024",
        "{lines:#?}"
    );

    // Deleted: a version without a schema; anything goes again.
    let deleted = cli_json(
        &s.addr,
        &["schema", "delete", "pay/a", "-m", "free for all"],
    )?;
    assert_eq!(deleted["version"], 3, "{deleted}");
    let rev_delete = deleted["revision"].as_u64().context("revision")?;
    let got = cli_json(&s.addr, &["schema", "get", "pay/a"])?;
    assert_eq!(
        (&got["deleted"], &got["schema"]),
        (&json!(true), &Value::Null),
        "{got}"
    );
    let (rev_bad, version) = put(&s.addr, "pay/prod/a", BAD)?;
    assert_eq!((rev_bad, version), (rev_delete + 1, 2));
    let lines = refused(
        cli(&s.addr, &["schema", "delete", "pay/a"])?,
        "deleting a deleted schema",
    )?;
    assert!(lines[0].contains("has no schema"), "{lines:?}");

    // The watcher of pay/prod/ saw each schema change at its revision, as a
    // change of pay/prod/a carrying the schema version (and not pay/dev/a).
    let changes = watcher.changes_until(rev_bad)?;
    let seen: Vec<(String, String, u64, u64)> = changes
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["path"].as_str().unwrap_or("").to_string(),
                c["revision"].as_u64().unwrap_or(0),
                c["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64, u64)> = [
        ("schema-set", "pay/prod/a", rev_set1, 1),
        ("put", "pay/prod/a", rev_good, 1),
        ("put", "pay/prod/b", rev_other, 1),
        ("schema-set", "pay/prod/a", rev_set2, 2),
        ("schema-delete", "pay/prod/a", rev_delete, 3),
        ("put", "pay/prod/a", rev_bad, 2),
    ]
    .iter()
    .map(|(t, p, r, v)| (t.to_string(), p.to_string(), *r, *v))
    .collect();
    assert_eq!(seen, expected, "{changes:#?}");
    assert_eq!(
        changes[0]["value"],
        schema_v1(),
        "a schema-set carries the schema"
    );
    assert_eq!(changes[4]["value"], Value::Null);
    Ok(())
}

/// Three nodes: schema changes and puts, accepted and refused, sent to
/// different nodes (followers forward to the leader, refusals come back
/// with every violation); afterwards every node holds the same state, and
/// answers the same schema history.
#[test]
fn a_cluster_converges_through_accepted_and_refused_schema_traffic() -> Result<()> {
    let mut c = Cluster::start(3)?;
    let leader = c.wait_agreed_leader(DEADLINE)?;
    let dir = c.nodes[0]
        .data_dir
        .parent()
        .context("temp dir")?
        .to_path_buf();
    let v1 = write_file(&dir, "schema.json", &schema_v1())?;
    let v2 = write_file(&dir, "schema-v2.json", &schema_v2())?;
    let endpoints = c.endpoints();
    let addr = |i: usize| endpoints[i % 3].clone();
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    create_env(&addr(follower), "pay", "prod")?;
    cli_json(&addr(other), &["env", "create", "pay/dev"])?;
    cli_json(&addr(follower), &["schema", "set", "pay/a", utf8(&v1)?])?;

    let mut accepted = 0;
    for i in 0..9 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        let path = format!("pay/{env}/a");
        if i % 3 == 0 {
            // Refused whichever node it is sent to, with every violation.
            let node = addr(i / 3);
            let lines = refused(
                cli_with_stdin(&node, &["put", &path], Some(BAD.as_bytes()))?,
                &format!("bad put {i} via node {}", i / 3 + 1),
            )?;
            assert_three_violations(&lines, &path);
        } else {
            let doc = json!({"host": "db", "port": 2000 + i, "replicas": 1});
            put(&addr(i), &path, &doc.to_string())?;
            accepted += 1;
        }
    }
    assert_eq!(accepted, 6);

    // Every live document has port ≥ 2000: version 2 is compatible.
    cli_json(&addr(other), &["schema", "set", "pay/a", utf8(&v2)?])?;
    let low = json!({"host": "db", "port": 80}).to_string();
    let lines = refused(
        cli_with_stdin(&addr(follower), &["put", "pay/dev/a"], Some(low.as_bytes()))?,
        "a put breaking version 2 via a follower",
    )?;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[1], "  /port: 80 is less than the minimum of 1024");

    // Delete it, write a low port, then version 2 again is incompatible.
    cli_json(&addr(leader), &["schema", "delete", "pay/a"])?;
    put(&addr(follower), "pay/dev/a", &low)?;
    let lines = refused(
        cli(&addr(other), &["schema", "set", "pay/a", utf8(&v2)?])?,
        "an incompatible schema via a follower",
    )?;
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("  dev: /port: 80 is less than the minimum of 1024"),
        "{lines:#?}"
    );
    let forced = cli_json(
        &addr(follower),
        &["schema", "set", "pay/a", utf8(&v2)?, "--force"],
    )?;
    assert_eq!(forced["version"], 4, "{forced}");
    let last = forced["revision"].as_u64().context("revision")?;

    let (revision, digest) = c.wait_converged(last, DEADLINE)?;
    eprintln!("converged at revision {revision}, digest {digest}");
    let reference = cli_json(&addr(leader), &["schema", "history", "pay/a"])?;
    assert_eq!(
        reference.as_array().map(Vec::len),
        Some(4),
        "set, set, delete, forced set: {reference}"
    );
    for i in 0..3 {
        assert_eq!(
            cli_json(&addr(i), &["schema", "history", "pay/a"])?,
            reference,
            "node {}",
            i + 1
        );
        assert_eq!(
            cli_json(&addr(i), &["get", "pay/dev/a"])?["value"],
            json!({"host": "db", "port": 80})
        );
    }
    Ok(())
}
