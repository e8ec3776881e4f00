//! Safer publishing through the real CLI against a real server: `plan`
//! changes nothing, `set` edits fields with a compare-and-set on the version
//! read, `rollback` writes an old value as a new version, `diff` compares
//! versions, and `apply` publishes several namespaces as one revision and one
//! watch event, all or nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use raftconf_client::{Client, WatchEvent};
use raftconf_tests::{cli, cli_json, create_env, put, Server};
use serde_json::json;

fn store_revision(addr: &str) -> Result<u64> {
    cli_json(addr, &["status"])?["revision"]
        .as_u64()
        .context("status has a revision")
}

#[test]
fn plan_set_rollback_and_diff() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    put(&s.addr, "pay/prod/db", r#"{"host":"db","pool":{"size":4}}"#)?;
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"pool":{"type":"object","properties":{"size":{"type":"integer","maximum":64}}}}}"#,
    )?;
    let out = cli(
        &s.addr,
        &["schema", "set", "pay/db", schema.to_str().context("utf-8")?],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = store_revision(&s.addr)?;

    // plan: the diff and the schema's verdict; nothing changes either way.
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "host: db\npool:\n  size: 8\n")?;
    let plan = cli_json(
        &s.addr,
        &["plan", "pay/prod/db", "-f", good.to_str().context("utf-8")?],
    )?;
    assert_eq!(plan["valid"], json!(true));
    assert_eq!(
        plan["diff"],
        json!([{"pointer": "/pool/size", "kind": "changed", "old": 4, "new": 8}])
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"host":"db","pool":{"size":100}}"#)?;
    let out = cli(
        &s.addr,
        &[
            "put",
            "pay/prod/db",
            "-f",
            bad.to_str().context("utf-8")?,
            "--dry-run",
        ],
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/pool/size"), "{err}");
    assert_eq!(store_revision(&s.addr)?, before, "plans change nothing");

    // set: edits on the server, validated like a put.
    let set = cli_json(
        &s.addr,
        &["set", "pay/prod/db", "/pool/size=16", "/debug=true"],
    )?;
    assert_eq!(set["version"], json!(2));
    let out = cli(&s.addr, &["set", "pay/prod/db", "/pool/size=65"])?;
    assert!(
        !out.status.success(),
        "the schema's maximum holds for edits too"
    );
    let out = cli(&s.addr, &["set", "pay/prod/db", "--", "-/nope"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nope"));
    let set = cli_json(&s.addr, &["set", "pay/prod/db", "--", "-/debug"])?;
    assert_eq!(set["version"], json!(3));

    // diff between versions, from history.
    let d = cli_json(
        &s.addr,
        &["diff", "pay/prod/db", "--from", "1", "--to", "2"],
    )?;
    assert_eq!(
        d,
        json!([
            {"pointer": "/debug", "kind": "added", "old": null, "new": true},
            {"pointer": "/pool/size", "kind": "changed", "old": 4, "new": 16}
        ])
    );

    // rollback: version 1's value as version 4.
    let r = cli_json(
        &s.addr,
        &["rollback", "pay/prod/db", "--to-version", "1", "-m", "undo"],
    )?;
    assert_eq!(r["version"], json!(4));
    let doc = cli_json(&s.addr, &["get", "pay/prod/db"])?;
    assert_eq!(doc["value"], json!({"host": "db", "pool": {"size": 4}}));
    let out = cli(&s.addr, &["rollback", "pay/prod/db", "--to-version", "9"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version 9"));
    Ok(())
}

#[test]
fn apply_is_one_revision_one_event_and_all_or_nothing() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "pay", "prod")?;
    let dir = tempfile::tempdir()?;
    let ns = dir.path().join("ns");
    std::fs::create_dir(&ns)?;
    std::fs::write(ns.join("db.json"), r#"{"pool":16}"#)?;
    std::fs::write(ns.join("checkout.yaml"), "db_pool: 16\n")?;
    std::fs::write(ns.join("search.toml"), "replicas = 2\n")?;
    std::fs::write(ns.join("README.md"), "not a namespace")?;
    let before = store_revision(&s.addr)?;

    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(Client::connect([s.addr.as_str()]))?;
    let mut stream = rt.block_on(client.watch(["pay/prod/"], before + 1))?;

    let applied = cli_json(
        &s.addr,
        &[
            "apply",
            "pay/prod",
            "-f",
            ns.to_str().context("utf-8")?,
            "-m",
            "together",
        ],
    )?;
    assert_eq!(applied["revision"], json!(before + 1), "one revision");
    let event = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
                Ok(Some(Ok(WatchEvent::Change {
                    revision, changes, ..
                }))) => {
                    return Ok((revision, changes));
                }
                Ok(Some(Ok(_))) => continue,
                other => anyhow::bail!("no change event: {other:?}"),
            }
        }
    })?;
    assert_eq!(event.0, before + 1);
    let paths: Vec<&str> = event.1.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["pay/prod/checkout", "pay/prod/db", "pay/prod/search"],
        "one event with all three"
    );

    // One write refused (a schema on db): nothing applied, the refusal named.
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"pool":{"maximum":32}}}"#,
    )?;
    let out = cli(
        &s.addr,
        &["schema", "set", "pay/db", schema.to_str().context("utf-8")?],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mixed = dir.path().join("mixed.json");
    std::fs::write(&mixed, r#"{"db":{"pool":64},"checkout":{"db_pool":64}}"#)?;
    let at = store_revision(&s.addr)?;
    let out = cli(
        &s.addr,
        &["apply", "pay/prod", "-f", mixed.to_str().context("utf-8")?],
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing applied") && err.contains("db:"),
        "{err}"
    );
    assert_eq!(store_revision(&s.addr)?, at, "all or nothing");
    assert_eq!(
        cli_json(&s.addr, &["get", "pay/prod/checkout"])?["value"],
        json!({"db_pool": 16})
    );
    Ok(())
}
