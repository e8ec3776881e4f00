//! raftconf consensus and storage.
//!
//! - [`types`]: the openraft type configuration ([`TypeConfig`]) and [`NodeInfo`].
//! - [`command`]: the replicated command set ([`Proposal`]s of [`Request`]s
//!   carrying [`Command`]s) and apply's answers ([`Response`], [`Rejection`]).
//! - [`log_store`]: the Raft log in segment files of its own, fsynced per batch
//!   (group commit), with CRC per record and torn-tail recovery.
//! - [`state_machine`]: documents, revisions, versions, history, de-duplication
//!   and the watch replay window in sled, changed together in one batch per apply;
//!   snapshots to fsynced files.
//! - [`watch_hub`]: fan-out of applied changes to subscribers, with catch-up from
//!   the replay window for those that fall behind.
//! - [`node`]: [`RaftNode`], which opens all of the above on a data directory
//!   and gives the server its write, read and watch calls.
//! - [`read_lease`]: linearizable reads on the leader without a heartbeat round
//!   each, while a lease a quorum confirmed holds.
//!
//! Transport-agnostic: generic over openraft's `RaftNetworkFactory`; knows no
//! gRPC service, no tonic, no prost.

pub mod command;
mod error;
pub mod log_store;
pub mod model;
pub mod node;
pub mod read_lease;
pub mod state_machine;
pub mod state_view;
pub mod types;
pub mod watch_hub;

pub use command::{
    Applied, Command, Precondition, Proposal, ProposalResponse, Rejection, Request, Response,
    TxWrite,
};
pub use error::{Error, Result};
pub use node::{record_node_id, recorded_node_id, NodeConfig, RaftNode, ReadError, WriteError};
pub use state_view::StateView;
pub use types::{NodeId, NodeInfo, Raft, TypeConfig};
pub use watch_hub::Subscription;
