//! The `raftconf` binary's command line, mostly without a running server:
//! help, arguments refused locally, an unreachable server, and the refusal to
//! listen on a non-loopback address without `--insecure`; then the operator
//! options the multi-process suite does not drive (dry run, read consistency,
//! reads at a revision, messages, the author) against one real server.
//!
//! (Building this test also builds `target/debug/raftconf`, which the
//! multi-process tests of the `tests/` crate run.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

use raftconf_tests::free_port;

fn raftconf(args: &[&str]) -> Output {
    raftconf_with_stdin(args, "")
}

fn raftconf_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftconf"))
        .args(args)
        .env_remove("RAFTCONF_ENDPOINTS")
        .env_remove("RUST_LOG")
        .env("USER", "cli-test")
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

/// A `raftconf server` child, killed on drop.
struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an operator command against `addr` and returns its stdout; panics with
/// its stderr if it fails.
fn ok(addr: &str, args: &[&str], stdin: &str) -> String {
    let mut full = vec!["--endpoints", addr];
    full.extend_from_slice(args);
    let out = raftconf_with_stdin(&full, stdin);
    assert!(
        out.status.success(),
        "raftconf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn json(addr: &str, args: &[&str], stdin: &str) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let text = ok(addr, &full, stdin);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

#[test]
fn operator_options_reach_a_real_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let peer = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let _server = ServerProcess(
        Command::new(env!("CARGO_BIN_EXE_raftconf"))
            .args([
                "server",
                "--listen",
                &addr,
                "--peer-listen",
                &peer,
                "--data-dir",
            ])
            .arg(&data)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("the server starts"),
    );
    // `status` itself rides out the start (the client retries within its call timeout).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = raftconf(&["-o", "json", "status", "--endpoints", &addr]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if status["leader_id"].as_u64().unwrap_or(0) != 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no leader: {status}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let created = ok(
        &addr,
        &["tenant", "create", "pay", "-m", "payments team"],
        "",
    );
    assert!(
        created.starts_with("created tenant pay at revision "),
        "{created}"
    );
    json(&addr, &["env", "create", "pay/prod", "-m", "go-live"], "");
    let envs = json(&addr, &["env", "list", "pay"], "");
    assert_eq!(envs[0]["name"], "prod");

    // A dry run is a plan: what would change, the schema's verdict, and
    // nothing written.
    let dry = ok(
        &addr,
        &["put", "pay/prod/checkout", "--dry-run"],
        r#"{"a":1}"#,
    );
    assert_eq!(
        dry,
        "pay/prod/checkout: does not exist yet; it would be created\n  \
         + the document root: {\"a\":1}\nschema: none; nothing was changed"
    );
    let missing = raftconf(&["get", "pay/prod/checkout", "--endpoints", &addr]);
    let line = one_error_line(&missing);
    assert!(line.contains("pay/prod/checkout"), "{line}");

    let first = json(
        &addr,
        &["put", "pay/prod/checkout", "-m", "first"],
        r#"{"a":1}"#,
    );
    let r1 = first["revision"].as_u64().expect("revision");
    let second = json(
        &addr,
        &[
            "put",
            "pay/prod/checkout",
            "--if-version",
            "1",
            "--format",
            "yaml",
        ],
        "a: 2\n",
    );
    assert_eq!(second["version"], 2);
    let dry = json(
        &addr,
        &["put", "pay/prod/checkout", "--dry-run"],
        r#"{"a":3}"#,
    );
    assert_eq!(
        dry,
        serde_json::json!({
            "path": "pay/prod/checkout",
            "current_version": 2,
            "diff": [{"pointer": "/a", "kind": "changed", "old": 2, "new": 3}],
            "schema_version": 0,
            "valid": true,
            "violations": [],
        }),
        "a dry run plans against the namespace as it is"
    );

    let local = json(
        &addr,
        &["get", "pay/prod/checkout", "--consistency", "serializable"],
        "",
    );
    assert_eq!(local["value"], serde_json::json!({"a": 2}));
    let old = json(
        &addr,
        &["get", "pay/prod/checkout", "--revision", &r1.to_string()],
        "",
    );
    assert_eq!(old["value"], serde_json::json!({"a": 1}));
    assert_eq!(old["version"], 1);

    let history = json(&addr, &["history", "pay/prod/checkout"], "");
    assert_eq!(history[1]["message"], "first");
    assert_eq!(history[0]["author"], "cli-test", "the author is $USER");

    let cas = raftconf_with_stdin(
        &[
            "put",
            "pay/prod/checkout",
            "--if-version",
            "1",
            "--endpoints",
            &addr,
        ],
        r#"{"a":4}"#,
    );
    let line = one_error_line(&cas);
    assert!(line.contains("version") && line.contains('2'), "{line}");
}
