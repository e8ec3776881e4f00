//! The command line of the one binary `raftconf`: `raftconf server` runs a
//! node; every other subcommand is an operator command that talks to the
//! cluster through the client library, `raftconf-client` (failover, leader
//! hints, same-id write retries and watch resume all live there, not here).
//!
//! - [`server_cmd`]: the `server` flags and how they become a [`crate::server::ServerConfig`].
//! - [`conn`]: the [`raftconf_client::Client`] operator commands use (its
//!   options: timeouts, author, client id) and their one-line errors.
//! - [`ops`]: the operator subcommands.
//! - [`publish`]: `set`, `rollback`, `diff`, `plan` and `apply` (transactions).
//! - [`schema`]: `raftconf schema …`, the JSON Schema of a `TENANT/NAMESPACE`.
//! - [`watch`]: `raftconf watch`, printing a stream the client resumes by itself.
//! - [`output`]: text and JSON rendering (the JSON shapes are a contract for scripts).
//! - [`text`]: aligned tables and timestamps for the text output.
//!
//! Every flag also reads a `RAFTCONF_*` environment variable.

pub mod conn;
pub mod ops;
pub mod output;
pub mod publish;
pub mod schema;
pub mod server_cmd;
pub mod text;
pub mod watch;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use server_cmd::ServerArgs;

/// raftconf: a Raft-replicated configuration center.
#[derive(Debug, Parser)]
#[command(name = "raftconf", version, about, propagate_version = true)]
pub struct Cli {
    /// Servers to talk to, comma-separated `host:port` (operator commands).
    #[arg(
        long,
        global = true,
        env = "RAFTCONF_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,

    /// Output format of operator commands.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        env = "RAFTCONF_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Text
    )]
    pub output: OutputFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Text for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-friendly.
    Text,
    /// One JSON document (or one per line for `watch`).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a raftconf server node.
    Server(ServerArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Create or replace a namespace's document.
    Put(PutArgs),
    /// Show a namespace's document.
    Get(GetArgs),
    /// List the namespaces of an environment (`TENANT/ENV/`).
    List(ListArgs),
    /// Delete a namespace.
    Delete(DeleteArgs),
    /// Show a namespace's versions, newest first.
    History(HistoryArgs),
    /// Edit fields of a namespace's document: `set PATH /a/b=VALUE -/c`
    /// (applied on the server to the version read; validated like a put).
    Set(publish::SetArgs),
    /// Write an earlier version's value again, as a new version validated
    /// against today's schema.
    Rollback(publish::RollbackArgs),
    /// Show what changed between two versions of a namespace.
    Diff(publish::DiffArgs),
    /// Show what publishing a document would change and whether its schema
    /// accepts it; changes nothing (`put --dry-run` does the same).
    Plan(publish::PlanArgs),
    /// Publish several namespaces of one environment as one transaction:
    /// one revision, one watch event, all or nothing.
    Apply(publish::ApplyArgs),
    /// Follow changes of namespaces or prefixes until Ctrl-C.
    Watch(WatchArgs),
    /// Which subscribers of a namespace run which revision (every node's
    /// watch streams: current, lagging, refusing), for delivery tracking.
    Clients(ClientsArgs),
    /// Manage the JSON Schema of a namespace (`TENANT/NAMESPACE`: it binds
    /// that namespace in every environment of the tenant).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Show the answering node's own view of the cluster (`cluster status`
    /// also asks every member).
    Status,
    /// Cluster membership: add, promote and remove nodes; status.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `raftconf cluster …` (membership changes are sent to the leader).
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add a node: it joins as a learner, catches up, then becomes a voter
    /// (unless `--learner`). Start it first with `raftconf server --join`.
    AddNode {
        /// The new node's id (never reuse the id of a node whose data was lost).
        #[arg(long)]
        id: u64,
        /// Its peer address, `HOST:PEERPORT`.
        #[arg(long)]
        addr: String,
        /// Its client address, `HOST:PORT` (default: the one the node advertises).
        #[arg(long, default_value = "")]
        client_addr: String,
        /// Leave it a learner (serves reads and watches, does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter.
    Promote {
        /// Node id.
        #[arg(long)]
        id: u64,
    },
    /// Remove a node, voter or learner (the leader included).
    RemoveNode {
        /// Node id.
        #[arg(long)]
        id: u64,
    },
    /// Each member: id, addresses, role, voter/learner, applied index, lag, reachable.
    Status,
}

/// `raftconf tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant name.
        name: String,
        /// Why (kept in history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// List tenants and their environments.
    List,
    /// Change a tenant's settings (replicated; unset ones stay as they are).
    Set {
        /// Tenant name.
        name: String,
        /// Versions of each namespace and schema kept in history (1 to 10000;
        /// default 100). Lowering it prunes each namespace at its next write.
        #[arg(long)]
        history_depth: Option<u64>,
        /// Most live namespaces in one environment (1 to 10000).
        #[arg(long)]
        max_namespaces: Option<u64>,
        /// Why (kept in history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// Delete a tenant. One that still has environments needs --force, which
    /// deletes them and their namespaces too, as one revision.
    Delete {
        /// Tenant name.
        name: String,
        /// Delete its environments and namespaces too.
        #[arg(long)]
        force: bool,
        /// Why (kept in history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
}

/// `raftconf env …`
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment: `TENANT/ENV`.
    Create {
        /// `TENANT/ENV`.
        path: String,
        /// Why (kept in history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// List the environments of a tenant.
    List {
        /// Tenant name.
        tenant: String,
    },
    /// Delete an environment: `TENANT/ENV`. One that still holds namespaces
    /// needs --force, which deletes them too, as one revision.
    Delete {
        /// `TENANT/ENV`.
        path: String,
        /// Delete its namespaces too.
        #[arg(long)]
        force: bool,
        /// Why (kept in history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
}

/// `raftconf schema …`
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Set a new schema version from a JSON or YAML file (`-` = stdin).
    /// Refused, listing every environment and pointer, when live documents
    /// would not validate against it, unless --force.
    Set {
        /// `TENANT/NAMESPACE`.
        path: String,
        /// The schema (JSON Schema draft 2020-12); `-` reads stdin.
        file: std::path::PathBuf,
        /// Accept it even if live documents would break (recorded in history).
        #[arg(long)]
        force: bool,
        /// Why (kept in the schema's history).
        #[arg(short, long, default_value = "")]
        message: String,
        /// Schema format (default: from the file extension, else json).
        #[arg(long, value_enum)]
        format: Option<SchemaFormat>,
    },
    /// Show the current schema, or a version of it (`-o json`: the record).
    // `--version` here is the schema version, not raftconf's.
    #[command(disable_version_flag = true)]
    Get {
        /// `TENANT/NAMESPACE`.
        path: String,
        /// This version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
    },
    /// The schema's versions, newest first: revision, time, author, message,
    /// and whether a version was forced or deleted the schema.
    History {
        /// `TENANT/NAMESPACE`.
        path: String,
    },
    /// Remove the schema (a new version without one): the namespace accepts
    /// any object again.
    Delete {
        /// `TENANT/NAMESPACE`.
        path: String,
        /// Why (kept in the schema's history).
        #[arg(short, long, default_value = "")]
        message: String,
    },
}

/// The formats a schema may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The document formats accepted by `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// TOML.
    Toml,
}

/// `raftconf put`
#[derive(Debug, Args)]
pub struct PutArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// Read the document from this file (default: stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<std::path::PathBuf>,
    /// Document format (default: from the file extension, else json).
    #[arg(long, value_enum)]
    pub format: Option<DocFormat>,
    /// Only write if the current version is N (0 = must not exist).
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Only write if the namespace was last modified at revision R.
    #[arg(long)]
    pub if_revision: Option<u64>,
    /// Why (kept in history).
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// Validate on the server and report, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Read consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Never stale (read index from the leader).
    Linearizable,
    /// The answering node's applied state; may lag.
    Serializable,
}

/// `raftconf get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// The value as of this revision (from history).
    #[arg(long)]
    pub revision: Option<u64>,
    /// Read consistency.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
}

/// `raftconf list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `TENANT/ENV/`.
    pub prefix: String,
}

/// `raftconf delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// Only delete if the current version is N.
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Only delete if the namespace was last modified at revision R.
    #[arg(long)]
    pub if_revision: Option<u64>,
    /// Why (kept in history).
    #[arg(short, long, default_value = "")]
    pub message: String,
}

/// `raftconf history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// At most this many versions (default 50, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `raftconf clients`
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
}

/// `raftconf watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// `TENANT/ENV/NAMESPACE` paths and `TENANT/ENV/` prefixes.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// First revision to deliver (inclusive); 0 = current state, then changes.
    #[arg(long, default_value_t = 0)]
    pub from_revision: u64,
}

/// Runs the parsed command line.
///
/// A refusal that lists violations (a put that breaks its schema, a schema
/// that live documents would break) does not return: it is printed here as
/// the one-line error followed by one line per violation, and the process
/// exits with 1 (the caller prints an error as one line only).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server_cmd::run(args).await,
        command => {
            let result = ops::run(&cli.endpoints, cli.output, command).await;
            if let Some(refusal) = result
                .as_ref()
                .err()
                .and_then(|e| e.downcast_ref::<conn::Refusal>())
            {
                refusal.print();
                std::process::exit(1);
            }
            result
        }
    }
}

/// Sets up logging: for `server` as its flags say (`RUST_LOG` filter,
/// default `info,openraft=warn`); for operator commands only when `RUST_LOG` is
/// set, so that errors stay one line. Logs go to stderr, colored only on a terminal.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let (format, default) = match &cli.command {
        // openraft narrates every election at info; keep ours, quiet theirs.
        Command::Server(args) => (args.log_format, "info,openraft=warn"),
        _ if std::env::var_os("RUST_LOG").is_some() => (server_cmd::LogFormat::Text, "warn"),
        _ => return,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        server_cmd::LogFormat::Text => builder.try_init(),
        server_cmd::LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_parse_anywhere() {
        let cli = Cli::try_parse_from([
            "raftconf",
            "get",
            "a/b/c",
            "-o",
            "json",
            "--endpoints",
            "h1:1,h2:2",
        ])
        .expect("parses");
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.endpoints, ["h1:1", "h2:2"]);
    }

    #[test]
    fn schema_flags_parse() {
        let cli = Cli::try_parse_from([
            "raftconf",
            "schema",
            "set",
            "pay/checkout",
            "-",
            "--force",
            "-m",
            "why",
            "--format",
            "yaml",
        ])
        .expect("parses");
        let Command::Schema(SchemaCommand::Set {
            path,
            file,
            force,
            message,
            format,
        }) = cli.command
        else {
            panic!("not schema set")
        };
        assert_eq!(path, "pay/checkout");
        assert_eq!(file, std::path::Path::new("-"));
        assert!(force);
        assert_eq!(message, "why");
        assert_eq!(format, Some(SchemaFormat::Yaml));
        let cli = Cli::try_parse_from(["raftconf", "schema", "get", "pay/a", "--version", "1"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Schema(SchemaCommand::Get {
                version: Some(1),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["raftconf", "schema", "set", "pay/a"]).is_err());
    }

    #[test]
    fn put_flags_parse() {
        let cli = Cli::try_parse_from([
            "raftconf",
            "put",
            "a/b/c",
            "-f",
            "x.yaml",
            "--if-version",
            "0",
            "-m",
            "why",
            "--dry-run",
        ])
        .expect("parses");
        let Command::Put(p) = cli.command else {
            panic!("not put")
        };
        assert_eq!(p.if_version, Some(0));
        assert!(p.dry_run);
        assert_eq!(p.message, "why");
    }
}
