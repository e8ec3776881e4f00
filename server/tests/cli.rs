//! The `raftconf` binary's command line, without a running server: help,
//! arguments refused locally, an unreachable server, and the refusal to
//! listen on a non-loopback address without `--insecure`.
//!
//! (Building this test also builds `target/debug/raftconf`, which the
//! multi-process tests of the `tests/` crate run.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn raftconf(args: &[&str]) -> Output {
    raftconf_with_stdin(args, "")
}

fn raftconf_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftconf"))
        .args(args)
        .env_remove("RAFTCONF_ENDPOINTS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the raftconf binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts the document");
    child.wait_with_output().expect("the raftconf binary exits")
}

/// Asserts exit code 1 and exactly one stderr line starting with `error: `;
/// returns that line.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn help_lists_the_subcommands() {
    let out = raftconf(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "server", "tenant", "env", "put", "get", "list", "delete", "history", "watch", "status",
    ] {
        assert!(text.contains(sub), "--help does not mention {sub}: {text}");
    }
    let out = raftconf(&["server", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--peer-listen",
        "--data-dir",
        "--node-id",
        "--log-format",
        "--insecure",
        "--watch-send-timeout",
        "RAFTCONF_LISTEN",
    ] {
        assert!(
            text.contains(flag),
            "server --help does not mention {flag}: {text}"
        );
    }
}

#[test]
fn a_bad_path_is_refused_without_a_server() {
    let out = raftconf(&["get", "Bad/Path", "--endpoints", "127.0.0.1:1"]);
    let line = one_error_line(&out);
    assert!(line.contains("Bad/Path"), "{line}");
    assert!(line.contains("tenant/env/namespace"), "{line}");

    let out = raftconf(&["get", "pay/Prod/checkout", "--endpoints", "127.0.0.1:1"]);
    let line = one_error_line(&out);
    assert!(line.contains("environment"), "{line}");
}

#[test]
fn a_bad_tenant_name_is_refused_without_a_server() {
    let out = raftconf(&["tenant", "create", "Pay", "--endpoints", "127.0.0.1:1"]);
    let line = one_error_line(&out);
    assert!(line.contains("tenant") && line.contains("Pay"), "{line}");
}

#[test]
fn a_malformed_document_is_refused_with_line_and_column() {
    let out = raftconf_with_stdin(
        &["put", "pay/prod/checkout", "--endpoints", "127.0.0.1:1"],
        "{\n  \"a\": 1,\n  \"b\": \n}\n",
    );
    let line = one_error_line(&out);
    assert!(line.contains("line 4"), "{line}");
    assert!(line.contains("column"), "{line}");
}

#[test]
fn an_unreachable_server_is_named() {
    let out = raftconf(&["get", "pay/prod/checkout", "--endpoints", "127.0.0.1:1"]);
    let line = one_error_line(&out);
    assert!(line.contains("cannot reach"), "{line}");
    assert!(line.contains("127.0.0.1:1"), "{line}");
}

#[test]
fn non_loopback_listen_needs_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 temp path");
    let out = raftconf(&["server", "--listen", "0.0.0.0:0", "--data-dir", data]);
    let line = one_error_line(&out);
    assert!(line.contains("0.0.0.0:0"), "{line}");
    assert!(line.contains("--insecure"), "{line}");

    let out = raftconf(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "0.0.0.0:0",
        "--data-dir",
        data,
    ]);
    let line = one_error_line(&out);
    assert!(line.contains("peers"), "{line}");
    assert!(
        !std::path::Path::new(data).exists(),
        "nothing is created before the check"
    );
}

#[test]
fn node_id_zero_is_a_usage_error() {
    let out = raftconf(&["server", "--node-id", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
