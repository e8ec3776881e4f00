//! The fault suite's short tier, run by `cargo test --workspace` (so by CI on
//! every change): a few seeded runs across the nemesis kinds against the
//! built `raftconf` binary. Each run must pass every checker. A failing run's
//! directory (history, nemesis log, node logs, checker results) is kept and
//! its path printed with the command that replays it. The longer tier is run
//! by hand (see the README).

use std::path::Path;
use std::process::Command;

/// (seed, seconds, nemesis kinds)
const RUNS: &[(u64, u64, &str)] = &[
    (1, 20, "kill,pause"),
    (2, 20, "partition"),
    (3, 25, "membership"),
    (4, 30, "kill,pause,partition,membership"),
];

fn run(dir: &Path, seed: u64, secs: u64, nemesis: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raftconf-jepsen"))
        .args(["--seed", &seed.to_string()])
        .args(["--time", &format!("{secs}s")])
        .args(["--nemesis", nemesis])
        .arg("--runs-dir")
        .arg(dir)
        .output()
        .expect("raftconf-jepsen runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every seed of the short tier passes every checker (one at a time: the
/// machine has two cores, and each run is a whole cluster).
#[test]
fn short_tier_passes_every_checker() {
    let dir = tempfile::Builder::new()
        .prefix("raftconf-jepsen-ci-")
        .tempdir()
        .expect("temp dir");
    let mut failures = Vec::new();
    for (seed, secs, nemesis) in RUNS {
        let (ok, text) = run(dir.path(), *seed, *secs, nemesis);
        let summary = text
            .lines()
            .filter(|l| {
                l.starts_with("ops attempted") || l.starts_with("PASS") || l.starts_with("FAIL")
            })
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("seed {seed} ({nemesis}, {secs}s): {summary}");
        if !ok {
            failures.push(format!("seed {seed} ({nemesis}):\n{text}"));
        }
    }
    if !failures.is_empty() {
        let kept = dir.keep();
        panic!(
            "fault suite failed; runs kept in {}\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}
