//! The replicated state machine, in sled, and its snapshots.
//!
//! One sled tree holds everything (see [`keys`]), behind a [`store::Store`]
//! that keeps applied changes in memory until its writer thread moves them to
//! sled, one atomic `sled::Batch` for every apply of an interval (why, and why
//! it is safe: `store`). So a restart finds the applied index, the revision
//! counter, documents, history, the de-duplication table and the replay window
//! consistent with each other, as of some applied entry. sled is not fsynced
//! on apply: the Raft log is the durable record, and openraft re-applies
//! committed entries past the state machine's applied index on start. The log is purged only behind a
//! snapshot file that was fsynced (file and directory) before openraft learns
//! of it; on start, a snapshot ahead of the state machine is loaded first.

pub(crate) mod apply;
pub(crate) mod codec;
pub(crate) mod dedup;
pub(crate) mod keys;
pub(crate) mod schemas;
mod snapshot;
pub(crate) mod store;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};

use self::apply::{ApplyCtx, ApplyHints, ApplySettings};
use self::codec::{decode, encode};
use self::snapshot::{SnapshotFile, SNAPSHOT_FORMAT};
use crate::command::ProposalResponse;
use crate::node::NodeConfig;
use crate::state_view::StateView;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::watch_hub::WatchHub;
use crate::{Error, Result};

/// Format version of the state tree's records. 2: the de-duplication table
/// in blocks ([`dedup`]); a tree of format 1 is upgraded when opened, a
/// snapshot of format 1 when read.
pub(crate) const STATE_FORMAT: u16 = 2;

/// Upgrades a state tree of format 1 in place: its de-duplication records
/// into blocks, in one sled batch with the new format number, so a crash
/// leaves the tree in one format or the other.
fn upgrade_tree(tree: &sled::Tree) -> Result<()> {
    let mut legacy = Vec::new();
    let mut batch = sled::Batch::default();
    for pair in tree.scan_prefix(keys::LEGACY_DEDUP_PREFIX) {
        let (k, v) = pair?;
        batch.remove(k.clone());
        legacy.push((k.to_vec(), v.to_vec()));
    }
    for key in tree.scan_prefix(keys::DEDUP_EXPIRY_PREFIX).keys() {
        batch.remove(key?);
    }
    let records = legacy.len();
    let upgraded = dedup::upgrade_v1(legacy)?;
    let blocks = upgraded.len() / 2;
    for (k, v) in upgraded {
        batch.insert(k, v);
    }
    batch.insert(keys::META_FORMAT, encode(&STATE_FORMAT));
    tree.apply_batch(batch)?;
    tree.flush()?;
    tracing::info!(
        records,
        blocks,
        "state upgraded from format 1 to {STATE_FORMAT}: de-duplication records in blocks"
    );
    Ok(())
}

/// State shared by the state machine (writer) and every [`StateView`] (readers).
pub(crate) struct Shared {
    pub store: store::Store,
    pub hub: WatchHub,
    /// Taken for writing while an apply's changes are made visible; readers that need one
    /// consistent revision across several keys (watch snapshots, digests)
    /// take it for reading.
    pub commit_lock: RwLock<()>,
    pub cluster_id: RwLock<String>,
    /// Compiled schemas, shared by apply and the leader's pre-check.
    pub schemas: raftconf_schema::SchemaCache<schemas::SchemaKey>,
    /// The cluster's history depth, for tenants that set none.
    pub default_history_depth: u64,
}

/// raftconf's openraft state machine.
pub struct StateMachine {
    shared: Arc<Shared>,
    /// Wakes the thread that writes applied changes to sled.
    writer: Option<store::Writer>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Kept so the database outlives every tree handle.
    _db: sled::Db,
    snapshot_dir: PathBuf,
    settings: ApplySettings,
    /// What apply knows about the state that saves it sled reads.
    hints: ApplyHints,
}

impl StateMachine {
    /// Opens the state machine in `config.data_dir/state`, loading the newest
    /// snapshot first if it is ahead of the stored state.
    pub(crate) fn open(config: &NodeConfig) -> Result<Self> {
        let db = sled::Config::new()
            .path(config.data_dir.join("state"))
            .open()?;
        let tree = db.open_tree("state")?;
        match tree.get(keys::META_FORMAT)? {
            None => {
                tree.insert(keys::META_FORMAT, encode(&STATE_FORMAT))?;
            }
            Some(v) => match decode::<u16>(&v)? {
                STATE_FORMAT => {}
                1 => upgrade_tree(&tree)?,
                format => {
                    return Err(Error::Storage(format!(
                        "state format {format} in {} is not supported (this build reads 1 and {STATE_FORMAT})",
                        config.data_dir.display()
                    )))
                }
            },
        }
        let store = store::Store::new(tree);
        let snapshot_dir = config.data_dir.join("snapshots");
        let applied = read_applied(&store)?;
        if let Some((_, file)) = snapshot::latest(&snapshot_dir)? {
            if file.meta.last_log_id > applied {
                tracing::info!(
                    snapshot = ?file.meta.last_log_id,
                    applied = ?applied,
                    "state machine is behind the latest snapshot; loading the snapshot"
                );
                store.replace(file.pairs)?;
            }
        }
        let revision = ApplyCtx::stored_revision(&store)?;
        let applied_index = read_applied(&store)?.map_or(0, |l| l.index);
        let cluster_id = store
            .get(keys::META_CLUSTER_ID)?
            .map(|v| decode::<String>(&v))
            .transpose()?
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            store,
            hub: WatchHub::new(
                config.watch_queue,
                config.progress_interval,
                revision,
                applied_index,
            ),
            commit_lock: RwLock::new(()),
            cluster_id: RwLock::new(cluster_id),
            schemas: schemas::new_cache(),
            default_history_depth: config.history_depth.max(1),
        });
        let (writer, writer_thread) = store::spawn_writer(shared.clone())?;
        Ok(StateMachine {
            shared,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            _db: db,
            snapshot_dir,
            settings: ApplySettings {
                history_depth: config.history_depth.max(1),
                replay_window: config.replay_window.max(1),
                replay_max_age_ms: config
                    .replay_max_age
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                dedup_ttl_ms: i64::try_from(config.dedup_ttl.as_millis()).unwrap_or(i64::MAX),
            },
            hints: ApplyHints::default(),
        })
    }

    /// A read handle on this state machine.
    pub fn view(&self) -> StateView {
        StateView::new(self.shared.clone())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<Vec<ProposalResponse>> {
        let applied = self.apply_entries_hinted(entries);
        if applied.is_err() {
            // Hints learnt in the failed apply may describe changes that
            // were never made visible.
            self.hints.clear();
        }
        applied
    }

    fn apply_entries_hinted(&mut self, entries: Vec<Entry>) -> Result<Vec<ProposalResponse>> {
        let store = &self.shared.store;
        let mut ctx = ApplyCtx::new(
            store,
            &self.shared.schemas,
            self.settings,
            &mut self.hints,
            ApplyCtx::stored_revision(store)?,
        );
        let mut responses = Vec::with_capacity(entries.len());
        let mut last = None;
        for entry in &entries {
            last = Some(entry.log_id);
            match &entry.payload {
                EntryPayload::Blank => responses.push(ProposalResponse::default()),
                EntryPayload::Normal(proposal) => responses.push(ProposalResponse {
                    responses: proposal
                        .requests
                        .iter()
                        .map(|req| ctx.apply_request(req))
                        .collect::<Result<_>>()?,
                }),
                EntryPayload::Membership(m) => {
                    ctx.put(
                        keys::META_MEMBERSHIP.to_vec(),
                        &StoredMembership::new(Some(entry.log_id), m.clone()),
                    );
                    responses.push(ProposalResponse::default());
                }
            }
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        let revision = ctx.revision;
        ctx.put(keys::META_REVISION.to_vec(), &revision);
        ctx.put(keys::META_APPLIED.to_vec(), &Some(last));
        let (changes, revision, events, new_cluster_id) = ctx.into_changes();
        let pending = {
            let _guard = self
                .shared
                .commit_lock
                .write()
                .unwrap_or_else(|e| e.into_inner());
            store.apply(changes)
        };
        if store::Store::over_limit(pending) {
            store.flush()?;
        } else if let Some(writer) = &self.writer {
            writer.dirty();
        }
        if let Some(id) = new_cluster_id {
            *self
                .shared
                .cluster_id
                .write()
                .unwrap_or_else(|e| e.into_inner()) = id;
        }
        self.shared.hub.publish(events, revision, last.index);
        Ok(responses)
    }
}

fn read_applied(store: &store::Store) -> Result<Option<LogId>> {
    Ok(store
        .get(keys::META_APPLIED)?
        .map(|v| decode::<Option<LogId>>(&v))
        .transpose()?
        .flatten())
}

fn storage_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

/// Builds a snapshot from a copy of the state taken while apply was paused.
pub struct SnapshotBuilder {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    applied: Option<LogId>,
    membership: StoredMembership,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.applied.map_or(0, |l| l.leader_id.term),
                self.applied.map_or(0, |l| l.index)
            ),
        };
        let file = SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            pairs: std::mem::take(&mut self.pairs),
        };
        let dir = self.dir.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let bytes = snapshot::to_bytes(&file);
            snapshot::persist(&dir, &file.meta, &bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(storage_err)?
        .map_err(storage_err)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "snapshot built and persisted");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership), StorageError> {
        let store = &self.shared.store;
        let applied = read_applied(store).map_err(storage_err)?;
        let membership = store
            .get(keys::META_MEMBERSHIP)
            .map_err(storage_err)?
            .map(|v| decode::<StoredMembership>(&v))
            .transpose()
            .map_err(storage_err)?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<ProposalResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.apply_entries(entries).map_err(storage_err)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // No apply runs while we hold `&mut self`: this copy is one consistent state.
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = match self.shared.store.all() {
            Ok(all) => all
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading state for a snapshot failed");
                Vec::new()
            }
        };
        let (applied, membership) = self.applied_state().await.unwrap_or_default();
        SnapshotBuilder {
            pairs,
            applied,
            membership,
            dir: self.snapshot_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let file = snapshot::from_bytes(&bytes).map_err(storage_err)?;
        if file.meta.last_log_id != meta.last_log_id {
            return Err(storage_err(format!(
                "snapshot content is at {:?} but its meta says {:?}",
                file.meta.last_log_id, meta.last_log_id
            )));
        }
        // Durable first: if we crash after this, start-up loads it.
        snapshot::persist(&self.snapshot_dir, meta, &bytes).map_err(storage_err)?;
        let store = &self.shared.store;
        {
            let _guard = self
                .shared
                .commit_lock
                .write()
                .unwrap_or_else(|e| e.into_inner());
            store.replace(file.pairs).map_err(storage_err)?;
        }
        self.hints.clear();
        let revision = ApplyCtx::stored_revision(store).map_err(storage_err)?;
        let cluster_id = store
            .get(keys::META_CLUSTER_ID)
            .map_err(storage_err)?
            .map(|v| decode::<String>(&v))
            .transpose()
            .map_err(storage_err)?
            .unwrap_or_default();
        *self
            .shared
            .cluster_id
            .write()
            .unwrap_or_else(|e| e.into_inner()) = cluster_id;
        tracing::info!(last_log_id = ?meta.last_log_id, revision, "installed snapshot");
        self.shared
            .hub
            .reset(revision, meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot>, StorageError> {
        let latest = snapshot::latest(&self.snapshot_dir).map_err(storage_err)?;
        Ok(latest.map(|(bytes, file)| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

impl Drop for StateMachine {
    /// Stops the writer thread after its last flush, so the database is
    /// written and closed when the state machine is gone (a restart in the
    /// same process can open it again).
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            if thread.join().is_err() {
                tracing::error!("the state writer thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests;
