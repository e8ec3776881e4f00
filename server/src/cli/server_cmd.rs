//! `raftconf server`: the flags of a node, and running it until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::bootstrap;
use crate::server::{self, ServerConfig};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `raftconf server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Client gRPC address (Config, Admin, Watch, Cluster, health, reflection).
    #[arg(long, env = "RAFTCONF_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,

    /// Peer (Raft) gRPC address.
    #[arg(long, env = "RAFTCONF_PEER_LISTEN", default_value = "127.0.0.1:7071")]
    pub peer_listen: String,

    /// Where this node keeps its log, state and snapshots.
    #[arg(long, env = "RAFTCONF_DATA_DIR", default_value = "./raftconf-data")]
    pub data_dir: PathBuf,

    /// This node's id in the cluster (1 or more).
    #[arg(
        long,
        env = "RAFTCONF_NODE_ID",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub node_id: u64,

    /// Log format (the filter comes from RUST_LOG, default info).
    #[arg(long, env = "RAFTCONF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Allow non-loopback listen addresses. raftconf has no authentication
    /// yet: anyone who reaches the port can change configuration.
    #[arg(long, env = "RAFTCONF_INSECURE")]
    pub insecure: bool,

    /// End a watch stream whose subscriber cannot take the next message for
    /// this long (e.g. 30s, 500ms, 2m); the subscriber resumes later.
    #[arg(long, env = "RAFTCONF_WATCH_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub watch_send_timeout: Duration,

    /// Client address to announce to other nodes and clients (default: the
    /// bound --listen address).
    #[arg(long, env = "RAFTCONF_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Peer address to announce to other nodes (default: this node's entry
    /// in --peers, else the bound --peer-listen address).
    #[arg(long, env = "RAFTCONF_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,

    /// The initial cluster, this node included: `1=HOST:PEERPORT,2=…,3=…`.
    /// Used on the first start only (the cluster forms once, whatever the
    /// order the nodes start in; the lowest id forms it); later starts use
    /// the membership kept in the data directory. Without it a fresh node
    /// founds a single-node cluster.
    #[arg(long, env = "RAFTCONF_PEERS", value_parser = parse_peers)]
    pub peers: Option<Peers>,

    /// Join an existing cluster: never form one, wait to be added
    /// (`raftconf cluster add-node`). With --peers, a node whose data
    /// directory is empty also checks that the cluster does not already know
    /// its id.
    #[arg(long, env = "RAFTCONF_JOIN")]
    pub join: bool,

    /// Build a snapshot and compact the log behind it every this many log
    /// entries (default 10000). Nodes that fall further behind catch up by
    /// snapshot.
    #[arg(long, env = "RAFTCONF_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,

    /// Revisions kept for resuming watches (default 10000). A watcher resuming
    /// from an older revision gets a snapshot of its range, then live events.
    /// Give every node the same value.
    #[arg(long, env = "RAFTCONF_REPLAY_WINDOW")]
    pub replay_window: Option<u64>,

    /// Also drop replay events older than this (e.g. 1h, 30m; default: no
    /// age limit). Same rule as --replay-window for resumes that fall out.
    /// Give every node the same value.
    #[arg(long, env = "RAFTCONF_REPLAY_MAX_AGE", value_parser = parse_duration)]
    pub replay_max_age: Option<Duration>,

    /// Give every linearizable read a heartbeat round to a quorum, as etcd
    /// does. By default the leader serves them without one for 375 ms after
    /// a round, which relies on the nodes' monotonic clocks ticking at about
    /// the same rate (see the raft crate's `read_lease`).
    #[arg(long, env = "RAFTCONF_NO_READ_LEASE")]
    pub no_read_lease: bool,

    /// Local IP address of this node's outgoing connections to other nodes
    /// (Raft traffic and forwarded writes); default: the OS picks. With
    /// several nodes on one host (127.0.0.11, 127.0.0.12, …) it lets a
    /// firewall tell them apart.
    #[arg(long, env = "RAFTCONF_SOURCE_ADDR")]
    pub source_addr: Option<std::net::IpAddr>,
}

/// The parsed `--peers` list: node id → peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<u64, String>);

fn parse_peers(text: &str) -> Result<Peers, String> {
    bootstrap::parse_peers(text).map(Peers)
}

impl ServerArgs {
    /// The server configuration these flags describe.
    pub fn to_config(&self) -> ServerConfig {
        let mut config = ServerConfig::new();
        config.node_id = self.node_id;
        config.listen = self.listen.clone();
        config.peer_listen = self.peer_listen.clone();
        config.data_dir = self.data_dir.clone();
        config.insecure = self.insecure;
        config.advertise = self.advertise_addr.clone();
        config.advertise_peer = self.advertise_peer_addr.clone();
        config.peers = self.peers.clone().map(|p| p.0).unwrap_or_default();
        config.join = self.join;
        config.snapshot_every = self.snapshot_every;
        config.replay_window = self.replay_window;
        config.replay_max_age = self.replay_max_age;
        config.read_lease = !self.no_read_lease;
        config.network.source = self.source_addr;
        config.services.watch_send_timeout = self.watch_send_timeout;
        config
    }
}

/// Runs a node until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    server::run(args.to_config(), server::shutdown_signal()).await?;
    Ok(())
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn defaults_match_the_documentation() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            s: ServerArgs,
        }
        let t = T::try_parse_from(["t"]).expect("defaults parse");
        let c = t.s.to_config();
        assert_eq!(c.listen, "127.0.0.1:7070");
        assert_eq!(c.peer_listen, "127.0.0.1:7071");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./raftconf-data"));
        assert_eq!(c.services.watch_send_timeout, Duration::from_secs(30));
        assert!(!c.insecure);
        assert!(
            c.peers.is_empty() && !c.join,
            "a single-node cluster by default"
        );
    }

    #[test]
    fn peers_and_join_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            s: ServerArgs,
        }
        let t = T::try_parse_from([
            "t",
            "--node-id",
            "2",
            "--peers",
            "1=127.0.0.1:7071,2=127.0.0.1:7171,3=127.0.0.1:7271",
        ])
        .expect("parses");
        let c = t.s.to_config();
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.peers[&3], "127.0.0.1:7271");
        assert!(T::try_parse_from(["t", "--peers", "1=a:1,1=b:2"]).is_err());
        let t = T::try_parse_from(["t", "--join"]).expect("parses");
        assert!(t.s.to_config().join);
    }
}
