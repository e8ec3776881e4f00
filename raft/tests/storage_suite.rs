//! openraft's storage conformance suite against raftconf's real storage: the
//! segment-file log store and the sled state machine, each run on a fresh
//! temporary data directory.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use raftconf_raft::log_store::LogStore;
use raftconf_raft::node::open_storage;
use raftconf_raft::state_machine::StateMachine;
use raftconf_raft::{NodeConfig, NodeId, TypeConfig};
use tempfile::TempDir;

/// Builds a log store and a state machine on a new temporary directory, which
/// lives (as the guard) as long as the test using them.
struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempDirBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let io_err = |e: std::io::Error| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
        };
        let dir = tempfile::tempdir().map_err(io_err)?;
        let config = NodeConfig::new(1, dir.path());
        let (log, sm) = open_storage(&config)
            .await
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_suite() -> anyhow::Result<()> {
    Suite::test_all(TempDirBuilder)?;
    Ok(())
}
