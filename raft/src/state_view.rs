//! [`StateView`]: read access to a node's applied state and its watches.
//!
//! Reads here are local ("serializable"); the server makes them linearizable
//! by calling [`crate::RaftNode::read_barrier`] first.

use std::sync::Arc;
use std::time::Duration;

use raftconf_schema::{NsPath, Target};

use crate::command::Rejection;
use crate::model::{
    ChangeKind, DocEntry, DocRecord, EnvInfo, SchemaRecord, TenantInfo, TenantSettings,
    VersionRecord,
};
use crate::state_machine::apply::{ApplyCtx, EnvRecord, TenantRecord};
use crate::state_machine::codec::{decode, Fnv64};
use crate::state_machine::dedup::{block_of, DedupBlock};
use crate::state_machine::store::Store;
use crate::state_machine::{keys, Shared};
use crate::watch_hub::Subscription;
use crate::{Error, Result};

/// Cheap to clone; shares the node's state machine and watch hub.
#[derive(Clone)]
pub struct StateView {
    shared: Arc<Shared>,
}

impl StateView {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        StateView { shared }
    }

    /// The last applied store revision.
    pub fn revision(&self) -> u64 {
        self.shared.hub.applied().revision
    }

    /// The last applied Raft log index.
    pub fn applied_index(&self) -> u64 {
        self.shared.hub.applied().index
    }

    /// The cluster id recorded at initialisation ("" before).
    pub fn cluster_id(&self) -> String {
        self.shared
            .cluster_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `revision` is applied here; false if `timeout` passed first.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.hub.applied_rx();
        tokio::time::timeout(timeout, rx.wait_for(|p| p.revision >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until log index `index` is applied here; false if `timeout` passed first.
    pub async fn wait_for_applied_index(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.hub.applied_rx();
        tokio::time::timeout(timeout, rx.wait_for(|p| p.index >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn tree(&self) -> &Store {
        &self.shared.store
    }

    fn names_under(&self, prefix: &[u8]) -> Result<Vec<String>> {
        Ok(self
            .tree()
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    fn check_tenant(&self, tenant: &str) -> Result<TenantRecord> {
        match self.tree().get(keys::tenant(tenant))? {
            Some(v) => decode(&v),
            None => Err(Error::NotFound(Rejection::UnknownTenant {
                tenant: tenant.to_string(),
                known: self.names_under(keys::TENANT_PREFIX)?,
            })),
        }
    }

    fn check_env(&self, tenant: &str, env: &str) -> Result<EnvRecord> {
        self.check_tenant(tenant)?;
        match self.tree().get(keys::env(tenant, env))? {
            Some(v) => decode(&v),
            None => Err(Error::NotFound(Rejection::UnknownEnvironment {
                tenant: tenant.to_string(),
                env: env.to_string(),
                known: self.names_under(&keys::env_prefix(tenant))?,
            })),
        }
    }

    /// The current schema record of `tenant/namespace` (a removal is a record
    /// without a schema); `None` if it never had one. Unknown tenant: `Error::NotFound`.
    pub fn schema(&self, tenant: &str, namespace: &str) -> Result<Option<SchemaRecord>> {
        self.check_tenant(tenant)?;
        self.tree()
            .get(keys::schema_current(tenant, namespace))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Version `version` of the schema of `tenant/namespace`, if still kept.
    pub fn schema_version(
        &self,
        tenant: &str,
        namespace: &str,
        version: u64,
    ) -> Result<Option<SchemaRecord>> {
        self.check_tenant(tenant)?;
        self.tree()
            .get(keys::schema_version(tenant, namespace, version))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every kept version of the schema of `tenant/namespace`, newest first.
    pub fn schema_history(&self, tenant: &str, namespace: &str) -> Result<Vec<SchemaRecord>> {
        self.check_tenant(tenant)?;
        let mut out = Vec::new();
        for (_, v) in self
            .tree()
            .scan_prefix(keys::schema_versions_prefix(tenant, namespace))?
            .into_iter()
            .rev()
        {
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// The leader's pre-check of a put: whether the canonical JSON `value`
    /// validates against the current schema of `path`'s namespace, with the
    /// same rejection apply would give (apply checks again: the schema may
    /// change in between).
    pub fn check_document(&self, path: &NsPath, value: &str) -> Result<Result<(), Rejection>> {
        let schema = self.schema(&path.tenant, &path.namespace)?;
        Ok(crate::state_machine::schemas::check_document(
            &self.shared.schemas,
            path,
            schema.as_ref(),
            value,
        ))
    }

    /// Whether apply has recorded an answer for the write `(client_id,
    /// request_id)` (a retry of it gets that answer, whatever the state now).
    pub fn write_recorded(&self, client_id: &str, request_id: u64) -> Result<bool> {
        if request_id == 0 {
            return Ok(false);
        }
        let block = keys::dedup_block(client_id, block_of(request_id));
        Ok(match self.tree().get(block)? {
            Some(v) => decode::<DedupBlock>(&v)?.get(request_id).is_some(),
            None => false,
        })
    }

    /// The live document at `path`, if any. Unknown tenant/env: `Error::NotFound`.
    pub fn get(&self, path: &NsPath) -> Result<Option<DocEntry>> {
        match self.tree().get(keys::doc(path))? {
            Some(v) => {
                let record: DocRecord = decode(&v)?;
                Ok(record.value.is_some().then(|| DocEntry {
                    path: path.clone(),
                    record,
                }))
            }
            None => {
                self.check_env(&path.tenant, &path.env)?;
                Ok(None)
            }
        }
    }

    /// The document at `path` as of `revision`, from history: `None` if it did not
    /// exist then; `Error::Compacted` if history no longer reaches back that far;
    /// `Error::OutOfRange` for a revision not yet applied here.
    pub fn get_at(&self, path: &NsPath, revision: u64) -> Result<Option<DocEntry>> {
        let current = ApplyCtx::stored_revision(self.tree())?;
        if revision > current {
            return Err(Error::OutOfRange {
                requested: revision,
                current,
            });
        }
        self.check_env(&path.tenant, &path.env)?;
        let mut found: Option<VersionRecord> = None;
        let mut create_revision = 0;
        let mut oldest: Option<VersionRecord> = None;
        for (_, v) in self
            .tree()
            .scan_prefix(keys::history_prefix(path))?
            .into_iter()
            .rev()
        {
            let rec: VersionRecord = decode(&v)?;
            match &found {
                None if rec.revision <= revision => {
                    if rec.kind == ChangeKind::Delete {
                        return Ok(None);
                    }
                    create_revision = rec.revision;
                    found = Some(rec);
                }
                None => oldest = Some(rec),
                Some(_) => {
                    if rec.kind == ChangeKind::Delete {
                        break;
                    }
                    create_revision = rec.revision;
                }
            }
        }
        match found {
            Some(rec) => Ok(Some(DocEntry {
                path: path.clone(),
                record: DocRecord {
                    value: rec.value,
                    version: rec.version,
                    create_revision,
                    mod_revision: rec.revision,
                    author: rec.author,
                    time_ms: rec.time_ms,
                    message: rec.message,
                },
            })),
            None => match oldest {
                Some(o) if o.version > 1 => Err(Error::Compacted {
                    path: path.to_string(),
                    requested: revision,
                    oldest: o.revision,
                }),
                _ => Ok(None),
            },
        }
    }

    /// [`StateView::get`], with the store revision it is the state of: no
    /// apply lands in between (a bare `get` may see a later revision than one
    /// read just before it).
    pub fn get_with_revision(&self, path: &NsPath) -> Result<(Option<DocEntry>, u64)> {
        let _guard = self
            .shared
            .commit_lock
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let revision = ApplyCtx::stored_revision(self.tree())?;
        Ok((self.get(path)?, revision))
    }

    /// [`StateView::list`], with the store revision it is the state of (one
    /// consistent revision across every namespace listed).
    pub fn list_with_revision(&self, tenant: &str, env: &str) -> Result<(Vec<DocEntry>, u64)> {
        let _guard = self
            .shared
            .commit_lock
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let revision = ApplyCtx::stored_revision(self.tree())?;
        Ok((self.list(tenant, env)?, revision))
    }

    /// Live namespaces of `tenant/env`, sorted by name. Unknown tenant/env: `Error::NotFound`.
    pub fn list(&self, tenant: &str, env: &str) -> Result<Vec<DocEntry>> {
        self.check_env(tenant, env)?;
        let mut out = Vec::new();
        for (k, v) in self.tree().scan_prefix(keys::doc_prefix(tenant, env))? {
            let record: DocRecord = decode(&v)?;
            if let (Some(path), true) = (keys::doc_path(&k), record.value.is_some()) {
                out.push(DocEntry { path, record });
            }
        }
        Ok(out)
    }

    /// Versions of `path`, newest first, strictly below `before_version`
    /// (0 = from the newest), at most `limit`.
    pub fn history(
        &self,
        path: &NsPath,
        before_version: u64,
        limit: usize,
    ) -> Result<Vec<VersionRecord>> {
        self.check_env(&path.tenant, &path.env)?;
        let start = keys::history(path, 0);
        let end = if before_version == 0 {
            keys::history(path, u64::MAX)
        } else {
            keys::history(path, before_version)
        };
        let mut out = Vec::new();
        for (_, v) in self.tree().range(start..end)?.into_iter().rev().take(limit) {
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Every tenant with its environments, sorted.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>> {
        let mut out = Vec::new();
        for (k, v) in self.tree().scan_prefix(keys::TENANT_PREFIX)? {
            let name = String::from_utf8_lossy(&k[keys::TENANT_PREFIX.len()..]).into_owned();
            let rec: TenantRecord = decode(&v)?;
            let settings: TenantSettings = self
                .tree()
                .get(keys::tenant_settings(&name))?
                .map(|v| decode(&v))
                .transpose()?
                .unwrap_or_default();
            out.push(TenantInfo {
                environments: self.names_under(&keys::env_prefix(&name))?,
                name,
                create_revision: rec.create_revision,
                history_depth: settings.history_depth(self.shared.default_history_depth),
                max_namespaces_per_env: settings.max_namespaces_per_env(),
            });
        }
        Ok(out)
    }

    /// The environments of `tenant`. Unknown tenant: `Error::NotFound`.
    pub fn environments(&self, tenant: &str) -> Result<Vec<EnvInfo>> {
        self.check_tenant(tenant)?;
        let prefix = keys::env_prefix(tenant);
        let mut out = Vec::new();
        for (k, v) in self.tree().scan_prefix(&prefix)? {
            let rec: EnvRecord = decode(&v)?;
            out.push(EnvInfo {
                tenant: tenant.to_string(),
                name: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                create_revision: rec.create_revision,
                namespaces: rec.namespaces,
            });
        }
        Ok(out)
    }

    /// Hex digest (FNV-1a 64) of every document (path, version, value) and every
    /// schema in force (namespace, version, schema) at the
    /// applied revision, with that revision: equal on nodes that applied the same log.
    pub fn state_digest(&self) -> Result<(u64, String)> {
        let _guard = self
            .shared
            .commit_lock
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let revision = ApplyCtx::stored_revision(self.tree())?;
        let mut h = Fnv64::new();
        for (k, v) in self.tree().scan_prefix(keys::DOC_PREFIX)? {
            let rec: DocRecord = decode(&v)?;
            h.feed(&k);
            h.feed(&rec.version.to_be_bytes());
            h.feed(rec.value.as_deref().unwrap_or("").as_bytes());
            h.feed(&[0]);
        }
        // The schemas in force, which decide what the next write may be.
        for (k, v) in self.tree().scan_prefix(keys::SCHEMA_CURRENT_PREFIX)? {
            let rec: SchemaRecord = decode(&v)?;
            h.feed(&k);
            h.feed(&rec.version.to_be_bytes());
            h.feed(rec.schema.as_deref().unwrap_or("").as_bytes());
            h.feed(&[0]);
        }
        Ok((revision, format!("{:016x}", h.finish())))
    }

    /// Subscribes to changes of `targets` from `start_revision` (inclusive; 0 =
    /// snapshot of the current state first). See DESIGN.md's watch guarantees.
    ///
    /// A node serves `start_revision` only once it has applied the revision
    /// before it: a node that is behind (a follower, or one catching up after
    /// a restart) waits up to `catch_up` for that. `Error::OutOfRange` if
    /// `start_revision` is still beyond this node's revision + 1 then.
    pub async fn watch(
        &self,
        targets: Vec<Target>,
        start_revision: u64,
        catch_up: Duration,
    ) -> Result<Subscription> {
        let needed = start_revision.saturating_sub(1);
        if needed > self.revision() && !catch_up.is_zero() {
            self.wait_for_revision(needed, catch_up).await;
        }
        Subscription::start(self.shared.clone(), targets, start_revision)
    }

    /// Ends every watch (node shutdown).
    pub(crate) fn shutdown_watches(&self) {
        self.shared.hub.shutdown();
    }
}
