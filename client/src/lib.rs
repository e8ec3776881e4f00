//! The raftconf Rust client: typed calls against a raftconf cluster, resumable
//! watch streams, and [`Watched<T>`], a hot-reloaded typed configuration.
//!
//! # Components
//!
//! | module | what it holds |
//! |---|---|
//! | `client` | [`Client`]: connect, reads (`get`, `get_with`, `list`, `history`), writes (`put`, `put_text` with dry runs, `delete`) |
//! | `delivery` | [`Client::clients`]: which subscribers of a namespace run which revision, across the cluster |
//! | `admin` | tenants, environments, cluster `status` |
//! | `schema` | schemas of `tenant/namespace`: [`Client::set_schema`] (refused when live documents would break, unless forced), `get_schema`, `schema_history`, `delete_schema` |
//! | `failover` | the loop every call goes through: endpoint order, backoff, same-id re-sends of uncertain writes |
//! | `endpoints` | one lazily connected channel per server, the leader hint, and the rule that decides whether a failed write may have been applied |
//! | `file_source` | a `Watched` fed from a local JSON/YAML/TOML file watched with `notify` |
//! | `options` | [`ClientOptions`]: timeouts, retry bounds, author, watch labels |
//! | `error` | [`Error`], the one mapping from a gRPC status (schema refusals with every [`FieldViolation`]), and the metadata keys the server sends |
//! | `types` | [`Document`], [`WriteResult`], [`Listing`], [`HistoryPage`] … converted from the wire types |
//! | `watch` | [`WatchStream`] and [`WatchEvent`]: what a watch yields |
//! | `watch_task` | the task behind a stream: subscribe, merge snapshot chunks, drop duplicates, reconnect and resume from `last_seen + 1` |
//! | `view` | what a `Watched` follows (one namespace, or a set of one environment) and how each event changes its documents |
//! | `cache` | the local cache file of a `Watched`: last good documents and revision, written atomically, read back only if whole |
//! | `watched` | [`Watched<T>`] and its builder: deserialize, validate, swap with `arc-swap`, refuse and report, counters ([`WatchedStats`]) |
//!
//! # Guarantees
//!
//! - A write is sent with a write id `(client_id, request_id)`. If its outcome
//!   is unknown it is re-sent with the same id, never a new one; if that does
//!   not settle it the call fails with [`Error::Indeterminate`], never with
//!   [`Error::Unavailable`] (which always means "not applied").
//! - A [`WatchStream`] yields strictly increasing revisions, none twice, and
//!   resumes after the last one it yielded when a connection breaks.
//! - [`Watched::load`] is lock-free and always returns a whole, validated value.
//!
//! This crate knows the wire API (`raftconf-api`) and the data-model rules
//! (`raftconf-schema`) and nothing of the server's internals; it must not
//! depend on `raftconf-server` or `raftconf-raft`.
//!
//! ```no_run
//! # async fn example() -> Result<(), raftconf_client::Error> {
//! let client = raftconf_client::Client::connect(["127.0.0.1:7070"]).await?;
//! let doc = client.get("payments/prod/checkout").await?;
//! println!("{} = {} (version {})", doc.path, doc.value, doc.version);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod admin;
mod cache;
mod client;
mod delivery;
mod edits;
mod endpoints;
mod error;
mod failover;
mod file_source;
mod options;
mod plan;
mod schema;
mod transaction;
mod types;
mod view;
mod watch;
mod watch_link;
mod watch_task;
mod watched;

pub use client::Client;
pub use delivery::{ClientsReport, Subscriber, SubscriberRefusal, SubscriberState};
pub use error::{
    Error, FieldViolation, Result, AUTHOR_METADATA, CURRENT_VERSION_METADATA, LEADER_METADATA,
};
pub use options::ClientOptions;
pub use plan::Plan;
pub use raftconf_schema::{diff, parse_edit, DiffEntry, DiffKind, Edit, EditError, Format};
pub use schema::{SchemaOptions, SchemaRecord, SchemaWrite};
pub use transaction::NamespaceWrite;
pub use types::{
    ChangeKind, ClusterStatus, Consistency, DeleteOptions, Document, EnvInfo, GetOptions,
    HistoryPage, HistoryRecord, Listing, Member, NamespaceEntry, PutOptions, TenantInfo,
    TenantSettings, WriteOptions, WriteResult,
};
pub use watch::{Change, WatchEvent, WatchStream};
pub use watched::{validation_reasons, ReadGuard, Watched, WatchedBuilder, WatchedStats};
