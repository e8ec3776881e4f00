//! The `cache_fallback`, `file_source` and `atomic_set` examples do what
//! their docs say, as separate processes against a real server (or a file).

use anyhow::{ensure, Result};
use raftconf_tests::{cli_with_stdin, create_env, put, Example, Server};

/// Run once with the server up (caches), once with it down (starts from the
/// cache, same revision), then the server returns and a publish reaches the
/// second run.
#[test]
fn cache_fallback_starts_with_the_server_down_and_catches_up() -> Result<()> {
    let mut s = Server::start()?;
    create_env(&s.addr, "demo", "dev")?;
    let (r1, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"hello","workers":4}"#,
    )?;
    let cache = tempfile::tempdir()?;
    let dir = cache.path().to_str().expect("utf-8 temp dir").to_string();
    let addr = s.addr.clone();
    let args = [
        "--endpoints",
        &addr,
        "--path",
        "demo/dev/app",
        "--cache-dir",
        &dir,
        "--start-timeout-ms",
        "500",
    ];
    {
        let first = Example::start("cache_fallback", &args)?;
        let loaded = first.expect_line("loaded")?;
        ensure!(
            loaded.contains(&format!("revision={r1} source=server")),
            "{loaded}"
        );
    }
    s.kill()?;
    let second = Example::start("cache_fallback", &args)?;
    let loaded = second.expect_line("loaded")?;
    ensure!(
        loaded.contains(&format!("revision={r1} source=cache")),
        "{loaded}"
    );
    ensure!(loaded.contains("hello"), "{loaded}");

    s.restart()?;
    let (r2, _) = put(
        &s.addr,
        "demo/dev/app",
        r#"{"greeting":"back","workers":2}"#,
    )?;
    let reloaded = second.expect_line("reloaded")?;
    ensure!(
        reloaded.contains(&format!("revision={r2}")) && reloaded.contains("back"),
        "{reloaded}"
    );
    Ok(())
}

/// Edits of the file reload; a version that fails validation is refused.
#[test]
fn file_source_reloads_edits_and_refuses_bad_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.toml");
    std::fs::write(&file, "greeting = \"hello\"\nworkers = 4\n")?;
    let ex = Example::start("file_source", &["--file", file.to_str().expect("utf-8")])?;
    ensure!(ex.expect_line("loaded")?.contains("hello"));
    std::fs::write(&file, "greeting = \"hi\"\nworkers = 0\n")?;
    ensure!(ex.expect_line("refused")?.contains("workers"));
    // Save by rename.
    let tmp = dir.path().join("app.toml.tmp");
    std::fs::write(&tmp, "greeting = \"bonjour\"\nworkers = 8\n")?;
    std::fs::rename(&tmp, &file)?;
    ensure!(ex.expect_line("reloaded")?.contains("bonjour"));
    Ok(())
}

/// `apply` of both namespaces is one reload; a release breaking the rule
/// across them is refused whole.
#[test]
fn atomic_set_takes_a_release_whole_and_refuses_an_inconsistent_one() -> Result<()> {
    let s = Server::start()?;
    create_env(&s.addr, "demo", "dev")?;
    let release = |frontend: &str, backend: &str| -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("frontend.json"), frontend)?;
        std::fs::write(dir.path().join("backend.json"), backend)?;
        let out = cli_with_stdin(
            &s.addr,
            &[
                "apply",
                "demo/dev",
                "-f",
                dir.path().to_str().expect("utf-8"),
            ],
            None,
        )?;
        ensure!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    release(
        r#"{"api_version":1,"timeout_s":5}"#,
        r#"{"api_versions":[1]}"#,
    )?;
    let ex = Example::start("atomic_set", &["--endpoints", &s.addr, "--env", "demo/dev"])?;
    ensure!(ex.expect_line("loaded")?.contains("api_version: 1"));
    release(
        r#"{"api_version":2,"timeout_s":5}"#,
        r#"{"api_versions":[1,2]}"#,
    )?;
    let reloaded = ex.expect_line("reloaded")?;
    ensure!(
        reloaded.contains("api_version: 2") && reloaded.contains("api_versions: [1, 2]"),
        "both namespaces in one reload: {reloaded}"
    );
    release(
        r#"{"api_version":3,"timeout_s":5}"#,
        r#"{"api_versions":[1,2]}"#,
    )?;
    ensure!(ex.expect_line("refused")?.contains("frontend calls API v3"));
    Ok(())
}
