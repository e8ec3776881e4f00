//! [`StateView`]: read access to a node's applied state and its watches.
//!
//! Reads here are local ("serializable"); the server makes them linearizable
//! by calling [`crate::RaftNode::read_barrier`] first.

use std::time::Duration;

use raftconf_schema::{NsPath, Target};

use crate::model::{DocEntry, EnvInfo, TenantInfo, VersionRecord};
use crate::watch_hub::Subscription;
use crate::Result;

/// Cheap to clone; shares the node's state machine and watch hub.
#[derive(Clone)]
pub struct StateView {}

impl StateView {
    /// The last applied store revision.
    pub fn revision(&self) -> u64 {
        todo!()
    }

    /// The last applied Raft log index.
    pub fn applied_index(&self) -> u64 {
        todo!()
    }

    /// The cluster id recorded at initialisation ("" before).
    pub fn cluster_id(&self) -> String {
        todo!()
    }

    /// Waits until `revision` is applied here; false if `timeout` passed first.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let _ = (revision, timeout);
        todo!()
    }

    /// Waits until log index `index` is applied here; false if `timeout` passed first.
    pub async fn wait_for_applied_index(&self, index: u64, timeout: Duration) -> bool {
        let _ = (index, timeout);
        todo!()
    }

    /// The live document at `path`, if any. Unknown tenant/env: `Error::NotFound`.
    pub fn get(&self, path: &NsPath) -> Result<Option<DocEntry>> {
        let _ = path;
        todo!()
    }

    /// The document at `path` as of `revision`, from history: `None` if it did not
    /// exist then; `Error::Compacted` if history no longer reaches back that far.
    pub fn get_at(&self, path: &NsPath, revision: u64) -> Result<Option<DocEntry>> {
        let _ = (path, revision);
        todo!()
    }

    /// Live namespaces of `tenant/env`, sorted by name. Unknown tenant/env: `Error::NotFound`.
    pub fn list(&self, tenant: &str, env: &str) -> Result<Vec<DocEntry>> {
        let _ = (tenant, env);
        todo!()
    }

    /// Versions of `path`, newest first, strictly below `before_version`
    /// (0 = from the newest), at most `limit`.
    pub fn history(&self, path: &NsPath, before_version: u64, limit: usize) -> Result<Vec<VersionRecord>> {
        let _ = (path, before_version, limit);
        todo!()
    }

    /// Every tenant with its environments, sorted.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>> {
        todo!()
    }

    /// The environments of `tenant`. Unknown tenant: `Error::NotFound`.
    pub fn environments(&self, tenant: &str) -> Result<Vec<EnvInfo>> {
        let _ = tenant;
        todo!()
    }

    /// Hex digest of every document (path, version, value) at the applied
    /// revision: equal on nodes that applied the same log.
    pub fn state_digest(&self) -> Result<(u64, String)> {
        todo!()
    }

    /// Subscribes to changes of `targets` from `start_revision` (inclusive; 0 =
    /// snapshot of the current state first). See DESIGN.md's watch guarantees.
    /// `Error::OutOfRange` if `start_revision` > current revision + 1.
    pub async fn watch(&self, targets: Vec<Target>, start_revision: u64) -> Result<Subscription> {
        let _ = (targets, start_revision);
        todo!()
    }
}
