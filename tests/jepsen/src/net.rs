//! The run's private network: the whole run (this process, the nodes, the
//! clients) lives in a network namespace of its own, entered at start-up by
//! re-executing under `unshare --net`. Nothing touches the host's network
//! configuration, and everything created here (the namespace, its loopback
//! addresses, its iptables rules) disappears with the last process of the run,
//! also when the run is killed.
//!
//! Every node listens on its own loopback address `127.0.0.(10 + slot)` and
//! makes its outgoing node-to-node connections from it (`--source-addr`), so
//! iptables rules on source and destination address cut exactly the links
//! between chosen nodes. Clients connect from 127.0.0.1 and are never cut.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Set in the environment of the re-executed process (inside the namespace).
const INSIDE: &str = "RAFTCONF_JEPSEN_NETNS";

/// Makes sure this process runs in a network namespace of its own: the first
/// call re-executes the program under `unshare --net` (which does not
/// return); inside, it brings the loopback interface up. Must be called
/// before any thread or runtime starts.
pub fn enter_private_namespace() -> Result<()> {
    if std::env::var_os(INSIDE).is_some() {
        run("ip", &["link", "set", "lo", "up"])?;
        check_iptables()?;
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding this program's path")?;
    let err = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .exec();
    bail!(
        "could not re-execute in a private network namespace with `unshare --net` \
         (the suite needs root, or CAP_SYS_ADMIN, for it): {err}"
    )
}

fn check_iptables() -> Result<()> {
    run("iptables", &["-w", "-L", "OUTPUT", "-n"]).context(
        "iptables does not work here (install it: apt-get install -y iptables); \
         the partition nemesis needs it",
    )
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The loopback address of node slot `slot` (1-based).
pub fn slot_ip(slot: usize) -> String {
    format!("127.0.0.{}", 10 + slot)
}

/// Cuts and heals links between node slots with iptables rules in the
/// run's namespace.
#[derive(Debug, Clone, Default)]
pub struct Net;

impl Net {
    /// Drops every packet from slot `from` to slot `to` (one direction; TCP
    /// then fails both ways for connections either side opens, but a
    /// connection's packets in the other direction still flow).
    pub fn cut_one_way(&self, from: usize, to: usize) -> Result<()> {
        run(
            "iptables",
            &[
                "-w",
                "-A",
                "OUTPUT",
                "-s",
                &slot_ip(from),
                "-d",
                &slot_ip(to),
                "-j",
                "DROP",
            ],
        )
    }

    /// Drops a random `percent` of the packets from `from` to `to`.
    pub fn lossy_one_way(&self, from: usize, to: usize, percent: u32) -> Result<()> {
        let p = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
        run(
            "iptables",
            &[
                "-w",
                "-A",
                "OUTPUT",
                "-s",
                &slot_ip(from),
                "-d",
                &slot_ip(to),
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Cuts every link between nodes of different groups.
    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<()> {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for a in g {
                    for b in h {
                        self.cut(*a, *b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) -> Result<()> {
        run("iptables", &["-w", "-F", "OUTPUT"])
    }
}
