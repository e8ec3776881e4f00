//! The `hot_reload` example runs against a real server and reloads when the
//! configuration changes; a document its validation refuses leaves the old
//! value in effect.

use anyhow::Result;
use raftconf_tests::{create_env, put, Example, Server};

#[test]
fn example_reloads_on_change_and_refuses_invalid_config() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "demo", "dev")?;
    let (r1, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"hello","workers":4}"#,
    )?;

    let ex = Example::start(
        "hot_reload",
        &["--endpoints", &s.addr, "--path", "demo/dev/app"],
    )?;

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
