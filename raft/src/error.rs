//! The crate's error type.

use crate::command::Rejection;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of reads, watches and node start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local store failed (I/O, corruption). Not retryable on this node.
    #[error("storage error: {0}")]
    Storage(String),
    /// The addressed tenant or environment does not exist (same wording as apply's).
    #[error(transparent)]
    NotFound(Rejection),
    /// A read at a revision older than the history kept.
    #[error("revision {requested} of {path} is compacted: the oldest kept version is at revision {oldest}")]
    Compacted {
        /// The namespace.
        path: String,
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still answerable.
        oldest: u64,
    },
    /// A watch start revision beyond what exists (current revision + 1).
    #[error("start revision {requested} is beyond the current revision {current} + 1")]
    OutOfRange {
        /// The revision asked for.
        requested: u64,
        /// This node's current revision.
        current: u64,
    },
    /// The node is shutting down, or a bounded wait ran out.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}
