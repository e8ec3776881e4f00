//! Deterministic apply of [`Request`]s onto the state tree.
//!
//! An [`ApplyCtx`] collects the writes of every entry of one `apply` call in an
//! overlay that reads fall through to, so each entry sees the state after the
//! previous one, whatever the batch boundaries: a follower that applies entries
//! 5..7 and then 8..10 ends in the same state as a leader that applied 5..10 at
//! once. The overlay is handed to the [`Store`] whole: data, history,
//! revision, de-duplication, replay window and applied index change together.
//!
//! Apply reads no clock and nothing local: time comes from the entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use raftconf_schema::{
    check_compatible, validate_name, NsPath, SchemaCache, MAX_DOCUMENT_BYTES, MAX_HISTORY_DEPTH,
    MAX_NAMESPACES_PER_ENV, MAX_SCHEMA_BYTES,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, Fnv64};
use super::dedup::{block_of, DedupBlock, DedupRecord, BLOCK_IDS};
use super::keys;
use super::schemas::{self, SchemaKey};
use super::store::Store;
use crate::command::{
    Applied, Command, Precondition, Rejection, Request, Response, TxWrite, ENTRY_FORMAT_VERSION,
};
use crate::model::{
    Change, ChangeEvent, ChangeKind, DocRecord, SchemaRecord, TenantSettings, VersionRecord,
};
use crate::Result;

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TenantRecord {
    pub create_revision: u64,
}

/// An environment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EnvRecord {
    pub create_revision: u64,
    /// Live namespaces (enforces `MAX_NAMESPACES_PER_ENV` without a scan).
    pub namespaces: u64,
}

/// The leading fields of a stored [`ChangeEvent`] (bincode decodes a prefix).
#[derive(Deserialize)]
struct EventHead {
    #[allow(dead_code)]
    revision: u64,
    #[allow(dead_code)]
    author: String,
    time_ms: i64,
}

/// Replicated-behaviour settings apply depends on. Every node must use the same
/// values (they become per-tenant replicated settings in a later issue).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApplySettings {
    pub history_depth: u64,
    pub replay_window: u64,
    /// Replay events older than this (by entry time) are dropped too; 0 = no age limit.
    pub replay_max_age_ms: i64,
    pub dedup_ttl_ms: i64,
}

/// What apply has learnt about the state that lets it skip sled reads. The
/// state machine keeps it from one apply to the next; it starts empty and is
/// emptied whenever it may no longer hold (a snapshot installed, an apply that
/// failed; the pruning hints also on a command that removes versioned records
/// or restarts their versions). A hint only
/// ever skips a read whose answer it knows: apply leaves the same state with
/// or without it, so nodes that restarted (empty hints) stay in step.
///
/// Why: at 64 concurrent writers the sled lookups these skip were 15 % of
/// the server's CPU (two per put in [`ApplyCtx::prune_versions`], a range
/// scan per request in [`ApplyCtx::expire_dedup`], and the look for a
/// de-duplication record of every new write id).
#[derive(Debug, Default)]
pub(crate) struct ApplyHints {
    /// Per version-keyed prefix (a path's history, a namespace's schema
    /// versions): every record at or below this version is gone.
    pruned: HashMap<Vec<u8>, u64>,
    /// Every de-duplication expiry key is stamped at or after this time.
    dedup_from: Option<i64>,
    /// Per client id: the write ids of that client apply has recorded
    /// lately. Clients number their writes upwards, so a new write's id is
    /// above every recorded one, or, from a client with several writes in
    /// flight, just below the newest: in either case it needs no lookup.
    dedup_ids: HashMap<String, RecentIds>,
    /// Per client id: the de-duplication blocks apply last wrote (block
    /// number, and the block as it is in the state; up to
    /// [`CLIENT_BLOCK_HINTS`], the latest last), so that the next write to
    /// one neither reads it from sled nor decodes it. A client with many
    /// writes in flight writes to two or three blocks at once.
    dedup_blocks: HashMap<String, Vec<KeptBlock>>,
}

/// A de-duplication block kept in [`ApplyHints::dedup_blocks`].
#[derive(Debug)]
struct KeptBlock {
    number: u64,
    block: DedupBlock,
    /// Changed by the apply under way and not yet in its overlay: a block
    /// is encoded once per apply call ([`ApplyCtx::into_changes`]), not once
    /// per write, and the state is what is kept here until then.
    unwritten: bool,
}

/// How many ids below a client's highest one [`RecentIds`] keeps track of.
const RECENT_IDS: u64 = 1024;

/// The de-duplication records of one client that apply has seen written:
/// its highest request id, and which of the [`RECENT_IDS`] ids up to it
/// have a record. An id above `highest` has none. An id within the window
/// but at or below `seen_from` may have been recorded before these hints
/// existed (they start from the state's greatest key, after a restart or a
/// snapshot), and so may an id below the window: only a lookup tells.
///
/// Why: a client with several writes in flight (64 tasks on one client in
/// the bench) has its ids applied out of order. An id below the highest
/// took a sled lookup, and a lookup waits while the state writer applies its
/// batch (sled 0.34 takes a global write lock for a batch; a `get` takes it
/// for reading). Measured over 32,000 puts from 64 tasks: 20,000 such
/// lookups, 257 of which waited 0.5 ms or more (4.5 ms on average), and
/// apply with them.
#[derive(Debug, Clone)]
struct RecentIds {
    highest: u64,
    /// Every recorded id above this was seen by these hints.
    seen_from: u64,
    /// Bit `id % RECENT_IDS` is set when `id` (within the window) has a record.
    recorded: [u64; (RECENT_IDS / 64) as usize],
}

impl RecentIds {
    /// Hints for a client whose greatest recorded id is `highest`.
    fn new(highest: u64) -> Self {
        RecentIds {
            highest,
            seen_from: highest,
            recorded: [0; (RECENT_IDS / 64) as usize],
        }
    }

    /// Whether `id` certainly has no record (`false`: it may have one).
    fn is_new(&self, id: u64) -> bool {
        if id > self.highest {
            return true;
        }
        let in_window = id + RECENT_IDS > self.highest;
        in_window && id > self.seen_from && !self.bit(id)
    }

    /// Whether none of `ids` certainly has a record.
    fn none_in(&self, mut ids: std::ops::RangeInclusive<u64>) -> bool {
        ids.all(|id| self.is_new(id))
    }

    /// Notes that `id` now has a record.
    fn record(&mut self, id: u64) {
        if id > self.highest {
            // The slots of the ids up to `id` stood for ids that leave the window.
            if id - self.highest >= RECENT_IDS {
                self.recorded = [0; (RECENT_IDS / 64) as usize];
            } else {
                for gone in self.highest + 1..=id {
                    self.set(gone, false);
                }
            }
            self.highest = id;
        } else if id + RECENT_IDS <= self.highest {
            return;
        }
        self.set(id, true);
    }

    fn bit(&self, id: u64) -> bool {
        let slot = id % RECENT_IDS;
        self.recorded[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, id: u64, on: bool) {
        let slot = id % RECENT_IDS;
        let word = &mut self.recorded[(slot / 64) as usize];
        if on {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }
}

/// Most prefixes [`ApplyHints::pruned`] (and client ids
/// [`ApplyHints::dedup_ids`]) remembers; past it, it starts over.
const PRUNED_HINTS: usize = 65_536;

/// Most clients whose blocks [`ApplyHints::dedup_blocks`] keeps (a block
/// is up to a few KiB); past it, it starts over.
const BLOCK_HINTS: usize = 4_096;

/// Most blocks [`ApplyHints::dedup_blocks`] keeps of one client.
const CLIENT_BLOCK_HINTS: usize = 4;

impl ApplyHints {
    /// Forgets everything (after anything that may have made a hint untrue).
    pub fn clear(&mut self) {
        *self = ApplyHints::default();
    }

    /// Block `number` of `client_id`, if kept.
    fn block(&self, client_id: &str, number: u64) -> Option<&DedupBlock> {
        let blocks = self.dedup_blocks.get(client_id)?;
        blocks.iter().find(|k| k.number == number).map(|k| &k.block)
    }

    fn kept_mut(&mut self, client_id: &str, number: u64) -> Option<&mut KeptBlock> {
        let blocks = self.dedup_blocks.get_mut(client_id)?;
        blocks.iter_mut().find(|k| k.number == number)
    }

    /// The greatest request id the blocks kept of `client_id` hold.
    fn kept_highest_id(&self, client_id: &str) -> Option<u64> {
        let blocks = self.dedup_blocks.get(client_id)?;
        blocks.iter().filter_map(|k| k.block.highest_id()).max()
    }

    /// Keeps `block` as block `number` of `client_id`, as the state holds it
    /// (with `overlay`). A block that has to make room and is unwritten is
    /// written to `overlay` first.
    fn keep_block(
        &mut self,
        client_id: &str,
        number: u64,
        block: DedupBlock,
        overlay: &mut Changes,
    ) {
        if let Some(kept) = self.kept_mut(client_id, number) {
            kept.block = block;
            return;
        }
        if self.dedup_blocks.len() >= BLOCK_HINTS && !self.dedup_blocks.contains_key(client_id) {
            for (client, blocks) in self.dedup_blocks.drain() {
                for kept in blocks {
                    kept.write_to(&client, overlay);
                }
            }
        }
        let blocks = self.dedup_blocks.entry(client_id.to_string()).or_default();
        if blocks.len() >= CLIENT_BLOCK_HINTS {
            blocks.remove(0).write_to(client_id, overlay);
        }
        blocks.push(KeptBlock {
            number,
            block,
            unwritten: false,
        });
    }

    /// Forgets block `number` of `client_id` (removed from the state).
    fn forget_block(&mut self, client_id: &str, number: u64) {
        if let Some(blocks) = self.dedup_blocks.get_mut(client_id) {
            blocks.retain(|k| k.number != number);
        }
    }
}

impl KeptBlock {
    /// Writes the block to `overlay` if it is unwritten.
    fn write_to(&self, client_id: &str, overlay: &mut Changes) {
        if self.unwritten {
            overlay.insert(
                keys::dedup_block(client_id, self.number),
                Some(encode(&self.block)),
            );
        }
    }
}

/// One apply's writes: key → new value, `None` for a removal.
pub(crate) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

pub(crate) struct ApplyCtx<'a> {
    store: &'a Store,
    schemas: &'a SchemaCache<SchemaKey>,
    settings: ApplySettings,
    hints: &'a mut ApplyHints,
    overlay: Changes,
    pub revision: u64,
    pub events: Vec<Arc<ChangeEvent>>,
    /// Set when this batch recorded the cluster id.
    pub new_cluster_id: Option<String>,
    /// De-duplication blocks this apply changed, kept in the hints and
    /// written to the overlay at the end ([`KeptBlock::unwritten`]).
    unwritten: Vec<(String, u64)>,
}

impl<'a> ApplyCtx<'a> {
    pub fn new(
        store: &'a Store,
        schemas: &'a SchemaCache<SchemaKey>,
        settings: ApplySettings,
        hints: &'a mut ApplyHints,
        revision: u64,
    ) -> Self {
        ApplyCtx {
            store,
            schemas,
            settings,
            hints,
            overlay: BTreeMap::new(),
            revision,
            events: Vec::new(),
            new_cluster_id: None,
            unwritten: Vec::new(),
        }
    }

    // ---------------------------------------------------------- overlay access

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(self.store.get(key)?.map(|v| v.to_vec()))
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.raw(key)?.map(|v| decode(&v)).transpose()
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.overlay.insert(key, Some(encode(value)));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    /// Visits the live keys under `prefix` in order (the store merged with
    /// the overlay) until `f` returns false.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut over = self
            .overlay
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let mut stopped = false;
        self.store.visit_prefix(prefix, |key, value| {
            // Overlay keys before this one first; one equal to it replaces it.
            while let Some((ok, ov)) = over.next_if(|(ok, _)| ok.as_slice() <= key) {
                if let Some(ov) = ov {
                    if !f(ok, ov)? {
                        stopped = true;
                        return Ok(false);
                    }
                }
                if ok.as_slice() == key {
                    return Ok(true);
                }
            }
            if !f(key, value)? {
                stopped = true;
                return Ok(false);
            }
            Ok(true)
        })?;
        if stopped {
            return Ok(());
        }
        for (ok, ov) in over {
            if let Some(ov) = ov {
                if !f(ok, ov)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Names under a prefix whose keys end in the name (tenants, environments).
    fn names_under(&self, prefix: &[u8]) -> Result<Vec<String>> {
        let mut names = Vec::new();
        self.scan_prefix(prefix, |k, _| {
            names.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            Ok(true)
        })?;
        Ok(names)
    }

    /// Everything the batch wrote (`None`: removed), for [`Store::apply`].
    pub fn into_changes(mut self) -> (Changes, u64, Vec<Arc<ChangeEvent>>, Option<String>) {
        for (client_id, number) in std::mem::take(&mut self.unwritten) {
            if let Some(kept) = self.hints.kept_mut(&client_id, number) {
                kept.write_to(&client_id, &mut self.overlay);
                kept.unwritten = false;
            }
        }
        (
            self.overlay,
            self.revision,
            self.events,
            self.new_cluster_id,
        )
    }

    // ---------------------------------------------------------- commands

    /// Applies one request and returns apply's answer. `Err` only for storage failures.
    pub fn apply_request(&mut self, req: &Request) -> Result<Response> {
        if req.format != ENTRY_FORMAT_VERSION {
            return Ok(Response {
                outcome: Err(Rejection::Invalid {
                    reason: format!(
                        "entry format {} is not understood by this node (it knows {ENTRY_FORMAT_VERSION})",
                        req.format
                    ),
                }),
            });
        }
        self.expire_dedup(req.time_ms)?;
        self.expire_replay(req.time_ms)?;

        let dedup = if req.request_id != 0 && !matches!(req.command, Command::InitCluster { .. }) {
            let fingerprint = fingerprint(req);
            let recorded = if self.is_new_write_id(&req.client_id, req.request_id)? {
                None
            } else {
                self.dedup_record(&req.client_id, req.request_id)?
            };
            if let Some(rec) = recorded {
                let outcome = if rec.fingerprint == fingerprint {
                    rec.outcome.map(|a| Applied {
                        deduplicated: true,
                        ..a
                    })
                } else {
                    Err(Rejection::RequestIdReused {
                        client_id: req.client_id.clone(),
                        request_id: req.request_id,
                    })
                };
                return Ok(Response { outcome });
            }
            Some(fingerprint)
        } else {
            None
        };

        let outcome = self.apply_command(req)?;

        if let Some(fingerprint) = dedup {
            let record = DedupRecord {
                fingerprint,
                time_ms: req.time_ms,
                outcome: outcome.clone(),
            };
            self.record_write(&req.client_id, req.request_id, record)?;
        }
        Ok(Response { outcome })
    }

    fn apply_command(&mut self, req: &Request) -> Result<Result<Applied, Rejection>> {
        // Only these write versioned records, and only at versions past every
        // record kept, and remove them only through `prune_versions`. The rest
        // (a deleted tenant takes its schema versions with it) are rare.
        if !matches!(
            req.command,
            Command::Put { .. }
                | Command::Patch { .. }
                | Command::Rollback { .. }
                | Command::Delete { .. }
                | Command::Transaction { .. }
                | Command::SetSchema { .. }
        ) {
            self.hints.pruned.clear();
        }
        match &req.command {
            Command::InitCluster { cluster_id } => {
                if self
                    .get::<String>(keys::META_CLUSTER_ID)?
                    .is_none_or(|c| c.is_empty())
                {
                    self.put(keys::META_CLUSTER_ID.to_vec(), cluster_id);
                    self.new_cluster_id = Some(cluster_id.clone());
                }
                Ok(Ok(Applied {
                    revision: 0,
                    version: 0,
                    deduplicated: false,
                }))
            }
            Command::CreateTenant { tenant } => self.create_tenant(req, tenant),
            Command::CreateEnvironment { tenant, env } => self.create_env(req, tenant, env),
            Command::Put {
                path,
                value,
                precondition,
            } => self.put_doc(req, path, value, precondition),
            Command::Delete { path, precondition } => self.delete_doc(req, path, precondition),
            Command::Patch {
                path,
                edits,
                precondition,
            } => self.patch_doc(req, path, edits, precondition),
            Command::Rollback {
                path,
                to_version,
                precondition,
            } => self.rollback_doc(req, path, *to_version, precondition),
            Command::Transaction {
                tenant,
                env,
                writes,
            } => self.apply_transaction(req, tenant, env, writes),
            Command::SetTenantSettings {
                tenant,
                history_depth,
                max_namespaces_per_env,
            } => self.set_tenant_settings(req, tenant, *history_depth, *max_namespaces_per_env),
            Command::DeleteEnvironment { tenant, env, force } => {
                self.delete_env(req, tenant, env, *force)
            }
            Command::DeleteTenant { tenant, force } => self.delete_tenant(req, tenant, *force),
            Command::SetSchema {
                tenant,
                namespace,
                schema,
                force,
            } => self.set_schema(req, tenant, namespace, schema, *force),
            Command::DeleteSchema { tenant, namespace } => {
                self.delete_schema(req, tenant, namespace)
            }
        }
    }

    fn set_schema(
        &mut self,
        req: &Request,
        tenant: &str,
        namespace: &str,
        schema: &str,
        force: bool,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(e) = validate_name("namespace", namespace) {
            return Ok(Err(Rejection::Invalid {
                reason: e.to_string(),
            }));
        }
        if let Err(r) = self.check_tenant(tenant)? {
            return Ok(Err(r));
        }
        if schema.len() > MAX_SCHEMA_BYTES {
            return Ok(Err(Rejection::LimitExceeded {
                limit: "schema size (canonical JSON bytes)".into(),
                max: MAX_SCHEMA_BYTES as u64,
                actual: schema.len() as u64,
            }));
        }
        let compiled = match schemas::compile(tenant, namespace, schema) {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
        let current = self.get::<SchemaRecord>(&keys::schema_current(tenant, namespace))?;
        let version = current.as_ref().map_or(0, |c| c.version) + 1;
        // Every live document of the namespace, in every environment.
        let envs = self.names_under(&keys::env_prefix(tenant))?;
        let mut docs = Vec::new();
        for env in &envs {
            let path = NsPath {
                tenant: tenant.to_string(),
                env: env.clone(),
                namespace: namespace.to_string(),
            };
            if let Some(doc) = self.get::<DocRecord>(&keys::doc(&path))? {
                if let Some(value) = doc.value {
                    let value: serde_json::Value = serde_json::from_str(&value).map_err(|e| {
                        crate::Error::Storage(format!("stored document {path} is not JSON: {e}"))
                    })?;
                    docs.push((env.clone(), value));
                }
            }
        }
        let broken = check_compatible(&compiled, docs.iter().map(|(e, v)| (e.clone(), v)));
        if !broken.is_empty() && !force {
            return Ok(Err(Rejection::SchemaIncompatible {
                tenant: tenant.to_string(),
                namespace: namespace.to_string(),
                schema_version: version,
                broken,
            }));
        }
        let revision = self.next_revision();
        let record = SchemaRecord {
            version,
            revision,
            schema: Some(schema.to_string()),
            forced: !broken.is_empty(),
            author: req.author.clone(),
            time_ms: req.time_ms,
            message: req.message.clone(),
        };
        self.schemas.insert(
            (format!("{tenant}/{namespace}"), revision),
            Arc::new(compiled),
        );
        self.record_schema(req, tenant, namespace, &envs, record, ChangeKind::SchemaSet)?;
        Ok(Ok(Applied {
            revision,
            version,
            deduplicated: false,
        }))
    }

    fn delete_schema(
        &mut self,
        req: &Request,
        tenant: &str,
        namespace: &str,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(r) = self.check_tenant(tenant)? {
            return Ok(Err(r));
        }
        let current = self.get::<SchemaRecord>(&keys::schema_current(tenant, namespace))?;
        let Some(current) = current.filter(|c| c.schema.is_some()) else {
            return Ok(Err(Rejection::SchemaNotFound {
                tenant: tenant.to_string(),
                namespace: namespace.to_string(),
            }));
        };
        let revision = self.next_revision();
        let version = current.version + 1;
        let envs = self.names_under(&keys::env_prefix(tenant))?;
        let record = SchemaRecord {
            version,
            revision,
            schema: None,
            forced: false,
            author: req.author.clone(),
            time_ms: req.time_ms,
            message: req.message.clone(),
        };
        self.record_schema(
            req,
            tenant,
            namespace,
            &envs,
            record,
            ChangeKind::SchemaDelete,
        )?;
        Ok(Ok(Applied {
            revision,
            version,
            deduplicated: false,
        }))
    }

    /// Stores a schema record (current and in its history, bounded like
    /// namespace history) and records one change per environment, so watchers
    /// of the namespace in each environment see it.
    fn record_schema(
        &mut self,
        req: &Request,
        tenant: &str,
        namespace: &str,
        envs: &[String],
        record: SchemaRecord,
        kind: ChangeKind,
    ) -> Result<()> {
        let version = record.version;
        self.put(keys::schema_version(tenant, namespace, version), &record);
        let depth = self
            .tenant_settings(tenant)?
            .history_depth(self.settings.history_depth);
        if version > depth {
            self.prune_versions(
                &keys::schema_versions_prefix(tenant, namespace),
                version - depth,
            )?;
        }
        let changes = envs
            .iter()
            .map(|env| {
                change(
                    kind,
                    format!("{tenant}/{env}/{namespace}"),
                    version,
                    record.schema.clone(),
                )
            })
            .collect();
        self.put(keys::schema_current(tenant, namespace), &record);
        self.record_event(req, changes);
        Ok(())
    }

    fn delete_env(
        &mut self,
        req: &Request,
        tenant: &str,
        env: &str,
        force: bool,
    ) -> Result<Result<Applied, Rejection>> {
        let path = NsPath {
            tenant: tenant.to_string(),
            env: env.to_string(),
            namespace: String::new(),
        };
        let record = match self.check_env(&path)? {
            Ok(r) => r,
            Err(r) => return Ok(Err(r)),
        };
        if record.namespaces > 0 && !force {
            let live = self.live_namespaces(tenant, env)?;
            return Ok(Err(Rejection::NotEmpty {
                what: format!("environment {tenant}/{env}"),
                holds: format!("{} namespaces ({})", live.len(), list_names(&live)),
            }));
        }
        let revision = self.next_revision();
        let mut changes = self.tombstone_env(req, tenant, env, revision)?;
        changes.push(change(
            ChangeKind::EnvDelete,
            format!("{tenant}/{env}/"),
            0,
            None,
        ));
        self.record_event(req, changes);
        Ok(Ok(Applied {
            revision,
            version: 0,
            deduplicated: false,
        }))
    }

    fn delete_tenant(
        &mut self,
        req: &Request,
        tenant: &str,
        force: bool,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(r) = self.check_tenant(tenant)? {
            return Ok(Err(r));
        }
        let envs = self.names_under(&keys::env_prefix(tenant))?;
        if !envs.is_empty() && !force {
            return Ok(Err(Rejection::NotEmpty {
                what: format!("tenant {tenant}"),
                holds: format!("{} environments ({})", envs.len(), list_names(&envs)),
            }));
        }
        let revision = self.next_revision();
        let mut changes = Vec::new();
        for env in &envs {
            changes.extend(self.tombstone_env(req, tenant, env, revision)?);
            changes.push(change(
                ChangeKind::EnvDelete,
                format!("{tenant}/{env}/"),
                0,
                None,
            ));
        }
        // Its schemas go too: a tenant created again under this name starts bare.
        for prefix in keys::schema_tenant_prefixes(tenant) {
            let mut doomed = Vec::new();
            self.scan_prefix(&prefix, |k, _| {
                doomed.push(k.to_vec());
                Ok(true)
            })?;
            for k in doomed {
                self.remove(k);
            }
        }
        self.remove(keys::tenant_settings(tenant));
        self.remove(keys::tenant(tenant));
        changes.push(change(
            ChangeKind::TenantDelete,
            format!("{tenant}/"),
            0,
            None,
        ));
        self.record_event(req, changes);
        Ok(Ok(Applied {
            revision,
            version: 0,
            deduplicated: false,
        }))
    }

    /// The live namespaces of `tenant/env`, sorted.
    fn live_namespaces(&self, tenant: &str, env: &str) -> Result<Vec<String>> {
        let mut live = Vec::new();
        self.scan_prefix(&keys::doc_prefix(tenant, env), |k, v| {
            let rec: DocRecord = decode(v)?;
            if let (Some(path), true) = (keys::doc_path(k), rec.value.is_some()) {
                live.push(path.namespace);
            }
            Ok(true)
        })?;
        Ok(live)
    }

    /// Deletes every live namespace of `tenant/env` at `revision` (tombstones
    /// and history, as a delete would) and the environment itself; returns
    /// the namespaces' delete changes.
    fn tombstone_env(
        &mut self,
        req: &Request,
        tenant: &str,
        env: &str,
        revision: u64,
    ) -> Result<Vec<Change>> {
        let mut live = Vec::new();
        self.scan_prefix(&keys::doc_prefix(tenant, env), |k, v| {
            let rec: DocRecord = decode(v)?;
            if let (Some(path), true) = (keys::doc_path(k), rec.value.is_some()) {
                live.push((path, rec));
            }
            Ok(true)
        })?;
        let mut changes = Vec::with_capacity(live.len());
        for (path, old) in live {
            let version = old.version + 1;
            self.put(
                keys::doc(&path),
                &DocRecord {
                    value: None,
                    version,
                    create_revision: 0,
                    mod_revision: revision,
                    author: req.author.clone(),
                    time_ms: req.time_ms,
                    message: req.message.clone(),
                },
            );
            self.record_version(req, &path, revision, version, ChangeKind::Delete, None)?;
            changes.push(change(ChangeKind::Delete, path.to_string(), version, None));
        }
        self.remove(keys::env(tenant, env));
        Ok(changes)
    }

    fn create_tenant(&mut self, req: &Request, tenant: &str) -> Result<Result<Applied, Rejection>> {
        if let Err(e) = validate_name("tenant", tenant) {
            return Ok(Err(Rejection::Invalid {
                reason: e.to_string(),
            }));
        }
        let key = keys::tenant(tenant);
        if self.raw(&key)?.is_some() {
            return Ok(Err(Rejection::TenantExists {
                tenant: tenant.to_string(),
            }));
        }
        let revision = self.next_revision();
        self.put(
            key,
            &TenantRecord {
                create_revision: revision,
            },
        );
        self.record_event(
            req,
            vec![change(
                ChangeKind::TenantCreate,
                format!("{tenant}/"),
                0,
                None,
            )],
        );
        Ok(Ok(Applied {
            revision,
            version: 0,
            deduplicated: false,
        }))
    }

    fn create_env(
        &mut self,
        req: &Request,
        tenant: &str,
        env: &str,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(e) = validate_name("environment", env) {
            return Ok(Err(Rejection::Invalid {
                reason: e.to_string(),
            }));
        }
        if let Err(r) = self.check_tenant(tenant)? {
            return Ok(Err(r));
        }
        let key = keys::env(tenant, env);
        if self.raw(&key)?.is_some() {
            return Ok(Err(Rejection::EnvironmentExists {
                tenant: tenant.to_string(),
                env: env.to_string(),
            }));
        }
        let revision = self.next_revision();
        self.put(
            key,
            &EnvRecord {
                create_revision: revision,
                namespaces: 0,
            },
        );
        self.record_event(
            req,
            vec![change(
                ChangeKind::EnvCreate,
                format!("{tenant}/{env}/"),
                0,
                None,
            )],
        );
        Ok(Ok(Applied {
            revision,
            version: 0,
            deduplicated: false,
        }))
    }

    fn patch_doc(
        &mut self,
        req: &Request,
        path: &NsPath,
        edits: &[(String, Option<String>)],
        pre: &Precondition,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(r) = self.check_env(path)? {
            return Ok(Err(r));
        }
        let old = self.get::<DocRecord>(&keys::doc(path))?;
        if let Err(r) = check_precondition(path, old.as_ref(), pre) {
            return Ok(Err(r));
        }
        let Some(current) = old.and_then(|d| d.value) else {
            return Ok(Err(Rejection::NamespaceNotFound {
                path: path.to_string(),
            }));
        };
        let invalid = |reason: String| Rejection::Invalid { reason };
        let mut parsed = Vec::with_capacity(edits.len());
        for (pointer, value) in edits {
            parsed.push(match value {
                Some(v) => match serde_json::from_str(v) {
                    Ok(value) => raftconf_schema::Edit::Set {
                        pointer: pointer.clone(),
                        value,
                    },
                    Err(e) => {
                        return Ok(Err(invalid(format!(
                            "value for {pointer} is not JSON: {e}"
                        ))))
                    }
                },
                None => raftconf_schema::Edit::Remove {
                    pointer: pointer.clone(),
                },
            });
        }
        let doc: serde_json::Value = serde_json::from_str(&current).map_err(|e| {
            crate::Error::Storage(format!("stored document {path} is not JSON: {e}"))
        })?;
        let edited = match raftconf_schema::apply_edits(&doc, &parsed) {
            Ok(v) => v,
            Err(e) => return Ok(Err(invalid(format!("{path}: {e}")))),
        };
        // serde_json's map is sorted: this is the canonical form.
        let value = edited.to_string();
        self.put_doc(req, path, &value, pre)
    }

    fn rollback_doc(
        &mut self,
        req: &Request,
        path: &NsPath,
        to_version: u64,
        pre: &Precondition,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(r) = self.check_env(path)? {
            return Ok(Err(r));
        }
        let record = self.get::<VersionRecord>(&keys::history(path, to_version))?;
        let value = match record {
            Some(VersionRecord {
                value: Some(value), ..
            }) => value,
            Some(_) => {
                return Ok(Err(Rejection::Invalid {
                    reason: format!(
                        "version {to_version} of {path} is a deletion; roll back to a version with a value"
                    ),
                }))
            }
            None => {
                return Ok(Err(Rejection::Invalid {
                    reason: format!(
                        "{path} has no version {to_version} in its history (never written, or older than the history kept)"
                    ),
                }))
            }
        };
        self.put_doc(req, path, &value, pre)
    }

    fn put_doc(
        &mut self,
        req: &Request,
        path: &NsPath,
        value: &str,
        pre: &Precondition,
    ) -> Result<Result<Applied, Rejection>> {
        let (mut env, old) = match self.check_put(path, value, pre)? {
            Ok(checked) => checked,
            Err(r) => return Ok(Err(r)),
        };
        let live = old.as_ref().is_some_and(|d| d.value.is_some());
        let limit = self.tenant_settings(&path.tenant)?.max_namespaces_per_env();
        if let Err(r) = check_namespace_limit(&env, u64::from(!live), limit) {
            return Ok(Err(r));
        }
        let revision = self.next_revision();
        let change = self.write_put(req, path, value, old, &mut env, revision)?;
        let version = change.version;
        self.record_event(req, vec![change]);
        Ok(Ok(Applied {
            revision,
            version,
            deduplicated: false,
        }))
    }

    fn delete_doc(
        &mut self,
        req: &Request,
        path: &NsPath,
        pre: &Precondition,
    ) -> Result<Result<Applied, Rejection>> {
        let (mut env, old) = match self.check_delete(path, pre)? {
            Ok(checked) => checked,
            Err(r) => return Ok(Err(r)),
        };
        let revision = self.next_revision();
        let change = self.write_delete(req, path, &old, &mut env, revision)?;
        let version = change.version;
        self.record_event(req, vec![change]);
        Ok(Ok(Applied {
            revision,
            version,
            deduplicated: false,
        }))
    }

    /// Several namespaces of one environment, all or nothing: every write is
    /// checked first (preconditions, documents, schemas, limits) against the
    /// state before the transaction; if any fails, nothing is applied and
    /// every failure is listed. Otherwise all of them take one revision and
    /// make one watch event.
    fn apply_transaction(
        &mut self,
        req: &Request,
        tenant: &str,
        env: &str,
        writes: &[TxWrite],
    ) -> Result<Result<Applied, Rejection>> {
        let env_path = format!("{tenant}/{env}");
        if writes.is_empty() {
            return Ok(Err(Rejection::Invalid {
                reason: format!("a transaction on {env_path} needs at least one write"),
            }));
        }
        let mut paths = Vec::with_capacity(writes.len());
        for w in writes {
            let path = NsPath {
                tenant: tenant.to_string(),
                env: env.to_string(),
                namespace: w.namespace.clone(),
            };
            if let Err(e) = validate_name("namespace", &w.namespace) {
                return Ok(Err(Rejection::Invalid {
                    reason: e.to_string(),
                }));
            }
            if paths.contains(&path) {
                return Ok(Err(Rejection::Invalid {
                    reason: format!("{path} is written twice in one transaction"),
                }));
            }
            paths.push(path);
        }
        let mut checked = Vec::with_capacity(writes.len());
        let mut failures = Vec::new();
        for (w, path) in writes.iter().zip(&paths) {
            let result = match &w.value {
                Some(value) => self.check_put(path, value, &w.precondition)?,
                None => self
                    .check_delete(path, &w.precondition)?
                    .map(|(env, old)| (env, Some(old))),
            };
            match result {
                Ok((_, old)) => checked.push(old),
                Err(r) => failures.push((w.namespace.clone(), r)),
            }
        }
        if failures.is_empty() {
            let mut env_record = match self.check_env(&paths[0])? {
                Ok(e) => e,
                Err(r) => return Ok(Err(r)),
            };
            let created = writes
                .iter()
                .zip(&checked)
                .filter(|(w, old)| {
                    w.value.is_some() && old.as_ref().is_none_or(|d| d.value.is_none())
                })
                .count() as u64;
            let deleted = writes.iter().filter(|w| w.value.is_none()).count() as u64;
            let mut after = env_record.clone();
            after.namespaces = after.namespaces.saturating_sub(deleted);
            let limit = self.tenant_settings(tenant)?.max_namespaces_per_env();
            if let Err(r) = check_namespace_limit(&after, created, limit) {
                return Ok(Err(r));
            }
            let revision = self.next_revision();
            let mut changes = Vec::with_capacity(writes.len());
            for ((w, path), old) in writes.iter().zip(&paths).zip(checked) {
                changes.push(match (&w.value, old) {
                    (Some(value), old) => {
                        self.write_put(req, path, value, old, &mut env_record, revision)?
                    }
                    (None, Some(old)) => {
                        self.write_delete(req, path, &old, &mut env_record, revision)?
                    }
                    (None, None) => unreachable!("invariant: a checked delete has a live document"),
                });
            }
            self.record_event(req, changes);
            return Ok(Ok(Applied {
                revision,
                version: 0,
                deduplicated: false,
            }));
        }
        Ok(Err(Rejection::TransactionRefused {
            env: env_path,
            failures,
        }))
    }

    /// Checks a put of `value` at `path` (environment, document, precondition,
    /// schema); nothing is written. The environment and the old document on success.
    fn check_put(
        &self,
        path: &NsPath,
        value: &str,
        pre: &Precondition,
    ) -> Result<Result<(EnvRecord, Option<DocRecord>), Rejection>> {
        let env = match self.check_env(path)? {
            Ok(e) => e,
            Err(r) => return Ok(Err(r)),
        };
        if let Err(r) = check_document(value) {
            return Ok(Err(r));
        }
        let old = self.get::<DocRecord>(&keys::doc(path))?;
        if let Err(r) = check_precondition(path, old.as_ref(), pre) {
            return Ok(Err(r));
        }
        let schema =
            self.get::<SchemaRecord>(&keys::schema_current(&path.tenant, &path.namespace))?;
        if let Err(r) = schemas::check_document(self.schemas, path, schema.as_ref(), value) {
            return Ok(Err(r));
        }
        Ok(Ok((env, old)))
    }

    /// Checks a delete of `path`; the environment and the live document on success.
    fn check_delete(
        &self,
        path: &NsPath,
        pre: &Precondition,
    ) -> Result<Result<(EnvRecord, DocRecord), Rejection>> {
        let env = match self.check_env(path)? {
            Ok(e) => e,
            Err(r) => return Ok(Err(r)),
        };
        let old = self.get::<DocRecord>(&keys::doc(path))?;
        if let Err(r) = check_precondition(path, old.as_ref(), pre) {
            return Ok(Err(r));
        }
        match old.filter(|d| d.value.is_some()) {
            Some(old) => Ok(Ok((env, old))),
            None => Ok(Err(Rejection::NamespaceNotFound {
                path: path.to_string(),
            })),
        }
    }

    /// Writes a checked put at `revision` (document, environment count,
    /// history); returns its change for the revision's event.
    fn write_put(
        &mut self,
        req: &Request,
        path: &NsPath,
        value: &str,
        old: Option<DocRecord>,
        env: &mut EnvRecord,
        revision: u64,
    ) -> Result<Change> {
        let live = old.as_ref().is_some_and(|d| d.value.is_some());
        let version = old.as_ref().map_or(0, |d| d.version) + 1;
        let create_revision = match &old {
            Some(d) if live => d.create_revision,
            _ => revision,
        };
        if !live {
            env.namespaces += 1;
            self.put(keys::env(&path.tenant, &path.env), &*env);
        }
        self.put(
            keys::doc(path),
            &DocRecord {
                value: Some(value.to_string()),
                version,
                create_revision,
                mod_revision: revision,
                author: req.author.clone(),
                time_ms: req.time_ms,
                message: req.message.clone(),
            },
        );
        self.record_version(req, path, revision, version, ChangeKind::Put, Some(value))?;
        Ok(change(
            ChangeKind::Put,
            path.to_string(),
            version,
            Some(value.to_string()),
        ))
    }

    /// Writes a checked delete of the live `old` at `revision` (a tombstone).
    fn write_delete(
        &mut self,
        req: &Request,
        path: &NsPath,
        old: &DocRecord,
        env: &mut EnvRecord,
        revision: u64,
    ) -> Result<Change> {
        let version = old.version + 1;
        env.namespaces = env.namespaces.saturating_sub(1);
        self.put(keys::env(&path.tenant, &path.env), &*env);
        self.put(
            keys::doc(path),
            &DocRecord {
                value: None,
                version,
                create_revision: 0,
                mod_revision: revision,
                author: req.author.clone(),
                time_ms: req.time_ms,
                message: req.message.clone(),
            },
        );
        self.record_version(req, path, revision, version, ChangeKind::Delete, None)?;
        Ok(change(ChangeKind::Delete, path.to_string(), version, None))
    }

    // ---------------------------------------------------------- helpers

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn check_tenant(&self, tenant: &str) -> Result<Result<(), Rejection>> {
        if self.raw(&keys::tenant(tenant))?.is_some() {
            return Ok(Ok(()));
        }
        Ok(Err(Rejection::UnknownTenant {
            tenant: tenant.to_string(),
            known: self.names_under(keys::TENANT_PREFIX)?,
        }))
    }

    fn check_env(&self, path: &NsPath) -> Result<Result<EnvRecord, Rejection>> {
        if let Err(r) = self.check_tenant(&path.tenant)? {
            return Ok(Err(r));
        }
        if let Some(env) = self.get::<EnvRecord>(&keys::env(&path.tenant, &path.env))? {
            return Ok(Ok(env));
        }
        Ok(Err(Rejection::UnknownEnvironment {
            tenant: path.tenant.clone(),
            env: path.env.clone(),
            known: self.names_under(&keys::env_prefix(&path.tenant))?,
        }))
    }

    fn record_version(
        &mut self,
        req: &Request,
        path: &NsPath,
        revision: u64,
        version: u64,
        kind: ChangeKind,
        value: Option<&str>,
    ) -> Result<()> {
        self.put(
            keys::history(path, version),
            &VersionRecord {
                revision,
                version,
                kind,
                value: value.map(str::to_string),
                author: req.author.clone(),
                time_ms: req.time_ms,
                message: req.message.clone(),
            },
        );
        // Everything older than the tenant's depth leaves: usually the one
        // record that fell out, more right after the depth was lowered.
        let depth = self
            .tenant_settings(&path.tenant)?
            .history_depth(self.settings.history_depth);
        if version > depth {
            self.prune_versions(&keys::history_prefix(path), version - depth)?;
        }
        Ok(())
    }

    /// Removes the records under `prefix` (keys ending in a big-endian
    /// version, so sorted by version) up to version `cutoff`.
    ///
    /// Each new version normally leaves exactly one record to drop, the one
    /// at `cutoff`: that one is removed by key. Only when an older one is
    /// still there (the history depth was lowered) is the prefix scanned,
    /// oldest first, up to the first record that stays (a sled scan copies
    /// whole tree nodes: it was a tenth of the server's CPU under load).
    ///
    /// [`ApplyHints::pruned`] usually knows that nothing below `cutoff` is
    /// left (this prefix was pruned up to `cutoff - 1` before): then the one
    /// record is removed without a look (removing a missing key changes
    /// nothing).
    fn prune_versions(&mut self, prefix: &[u8], cutoff: u64) -> Result<()> {
        let key = |version: u64| {
            let mut k = prefix.to_vec();
            k.extend_from_slice(&version.to_be_bytes());
            k
        };
        // One map lookup on the usual path: the hint moves on in place.
        if let Some(done) = self.hints.pruned.get_mut(prefix) {
            if *done >= cutoff {
                return Ok(());
            }
            if *done + 1 == cutoff {
                *done = cutoff;
                self.remove(key(cutoff));
                return Ok(());
            }
        }
        self.note_pruned(prefix, cutoff);
        let older_left = cutoff > 1 && self.raw(&key(cutoff - 1))?.is_some();
        if !older_left {
            if self.raw(&key(cutoff))?.is_some() {
                self.remove(key(cutoff));
            }
            return Ok(());
        }
        let mut old = Vec::new();
        self.scan_prefix(prefix, |k, _| {
            if keys::trailing_version(k).is_some_and(|v| v <= cutoff) {
                old.push(k.to_vec());
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        for k in old {
            self.remove(k);
        }
        Ok(())
    }

    /// Whether `request_id` of `client_id` certainly has no de-duplication
    /// record (`false`: only a lookup tells), from [`ApplyHints::dedup_ids`]
    /// or, the first time, from the client's greatest block in the state.
    fn is_new_write_id(&mut self, client_id: &str, request_id: u64) -> Result<bool> {
        if let Some(ids) = self.hints.dedup_ids.get(client_id) {
            return Ok(ids.is_new(request_id));
        }
        let prefix = keys::dedup_block_prefix(client_id);
        let len = prefix.len() + 8;
        // Either may name a removed key: then its last id stands in, which
        // only makes more ids need a lookup.
        let in_overlay = self
            .overlay
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() == len)
            .map(|(k, _)| k)
            .last()
            .cloned();
        let last = in_overlay.max(self.store.last_key_of_len(&prefix, len)?);
        let highest = match last.as_deref().and_then(keys::dedup_block_parts) {
            Some((_, block)) => match self.dedup_block(client_id, block)? {
                Some(recorded) => recorded.highest_id().unwrap_or(0),
                None => block * BLOCK_IDS + (BLOCK_IDS - 1),
            },
            None => 0,
        };
        // A block this apply made is in the hints only, until its end.
        let highest = highest.max(self.hints.kept_highest_id(client_id).unwrap_or(0));
        let ids = &mut self.hints.dedup_ids;
        if ids.len() >= PRUNED_HINTS {
            ids.clear();
        }
        let known = RecentIds::new(highest);
        let new = known.is_new(request_id);
        ids.insert(client_id.to_string(), known);
        Ok(new)
    }

    /// Block `block` of `client_id` as the state holds it, from
    /// [`ApplyHints::dedup_blocks`] when it is kept there.
    fn dedup_block(&self, client_id: &str, block: u64) -> Result<Option<DedupBlock>> {
        match self.hints.block(client_id, block) {
            Some(known) => Ok(Some(known.clone())),
            None => self.get(&keys::dedup_block(client_id, block)),
        }
    }

    /// The record of `(client_id, request_id)` (one older than the TTL was
    /// removed by [`ApplyCtx::expire_dedup`] before).
    fn dedup_record(&self, client_id: &str, request_id: u64) -> Result<Option<DedupRecord>> {
        Ok(self
            .dedup_block(client_id, block_of(request_id))?
            .and_then(|b| b.get(request_id).cloned()))
    }

    /// Records apply's answer to `(client_id, request_id)` in its block. A
    /// new block gets its expiry entry at this record's time, and so does a
    /// block whose entry is later (the entry's time went back).
    fn record_write(
        &mut self,
        client_id: &str,
        request_id: u64,
        record: DedupRecord,
    ) -> Result<()> {
        let number = block_of(request_id);
        let key = keys::dedup_block(client_id, number);
        let time_ms = record.time_ms;
        if self.hints.block(client_id, number).is_none() {
            // A block none of whose ids has a record does not exist: no
            // lookup (one waits for sled while the state writer applies its
            // batch). Ids from a client with many writes in flight can reach
            // a block after ids of the next one.
            let first = number * BLOCK_IDS;
            let unrecorded = self
                .hints
                .dedup_ids
                .get(client_id)
                .is_some_and(|ids| ids.none_in(first..=first + (BLOCK_IDS - 1)));
            let stored = if unrecorded {
                None
            } else {
                self.get::<DedupBlock>(&key)?
            };
            let block = match stored {
                Some(block) => block,
                None => {
                    self.overlay
                        .insert(keys::dedup_expiry(time_ms, &key), Some(encode(&())));
                    DedupBlock::new(time_ms)
                }
            };
            self.hints
                .keep_block(client_id, number, block, &mut self.overlay);
        }
        let kept = self
            .hints
            .kept_mut(client_id, number)
            .expect("invariant: the block was just kept");
        let block = &mut kept.block;
        if time_ms < block.expiry_ms {
            self.overlay
                .insert(keys::dedup_expiry(block.expiry_ms, &key), None);
            self.overlay
                .insert(keys::dedup_expiry(time_ms, &key), Some(encode(&())));
            block.expiry_ms = time_ms;
        }
        block.insert(request_id, record);
        if !kept.unwritten {
            kept.unwritten = true;
            self.unwritten.push((client_id.to_string(), number));
        }
        if let Some(from) = &mut self.hints.dedup_from {
            *from = (*from).min(time_ms);
        }
        if let Some(ids) = self.hints.dedup_ids.get_mut(client_id) {
            ids.record(request_id);
        }
        Ok(())
    }

    /// Remembers that `prefix` holds nothing at or below version `cutoff`.
    fn note_pruned(&mut self, prefix: &[u8], cutoff: u64) {
        let pruned = &mut self.hints.pruned;
        if let Some(done) = pruned.get_mut(prefix) {
            *done = cutoff;
            return;
        }
        if pruned.len() >= PRUNED_HINTS {
            pruned.clear();
        }
        pruned.insert(prefix.to_vec(), cutoff);
    }

    /// The settings of `tenant` (defaults when none were set).
    fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings> {
        Ok(self
            .get::<TenantSettings>(&keys::tenant_settings(tenant))?
            .unwrap_or_default())
    }

    fn set_tenant_settings(
        &mut self,
        req: &Request,
        tenant: &str,
        history_depth: Option<u64>,
        max_namespaces_per_env: Option<u64>,
    ) -> Result<Result<Applied, Rejection>> {
        if let Err(r) = self.check_tenant(tenant)? {
            return Ok(Err(r));
        }
        let invalid = |reason: String| Ok(Err(Rejection::Invalid { reason }));
        if let Some(d) = history_depth {
            if !(1..=MAX_HISTORY_DEPTH).contains(&d) {
                return invalid(format!(
                    "history depth {d} of tenant {tenant}: it must be 1 to {MAX_HISTORY_DEPTH}"
                ));
            }
        }
        if let Some(n) = max_namespaces_per_env {
            if !(1..=MAX_NAMESPACES_PER_ENV).contains(&n) {
                return invalid(format!(
                    "namespaces per environment {n} of tenant {tenant}: it must be 1 to {MAX_NAMESPACES_PER_ENV}"
                ));
            }
        }
        let mut settings = self.tenant_settings(tenant)?;
        if history_depth.is_some() {
            settings.history_depth = history_depth;
        }
        if max_namespaces_per_env.is_some() {
            settings.max_namespaces_per_env = max_namespaces_per_env;
        }
        let revision = self.next_revision();
        self.put(keys::tenant_settings(tenant), &settings);
        self.record_event(
            req,
            vec![change(
                ChangeKind::TenantSettings,
                format!("{tenant}/"),
                0,
                None,
            )],
        );
        Ok(Ok(Applied {
            revision,
            version: 0,
            deduplicated: false,
        }))
    }

    fn record_event(&mut self, req: &Request, changes: Vec<Change>) {
        let event = ChangeEvent {
            revision: self.revision,
            author: req.author.clone(),
            time_ms: req.time_ms,
            message: req.message.clone(),
            changes,
        };
        self.put(keys::replay(self.revision), &event);
        if self.revision > self.settings.replay_window {
            self.remove(keys::replay(self.revision - self.settings.replay_window));
        }
        self.events.push(Arc::new(event));
    }

    /// Drops the replay events stamped before `now_ms - replay_max_age` (the
    /// entry's time, so every node drops the same ones), oldest first. Runs
    /// before the request records its own event.
    fn expire_replay(&mut self, now_ms: i64) -> Result<()> {
        if self.settings.replay_max_age_ms <= 0 {
            return Ok(());
        }
        let cutoff = now_ms.saturating_sub(self.settings.replay_max_age_ms);
        let mut expired = Vec::new();
        self.scan_prefix(keys::REPLAY_PREFIX, |k, v| {
            // Only the head of the event is decoded: its changes may be large.
            let head: EventHead = decode(v)?;
            if head.time_ms < cutoff {
                expired.push(k.to_vec());
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        for k in expired {
            self.remove(k);
        }
        Ok(())
    }

    /// Forgets de-duplication records older than the TTL, as of `now_ms`
    /// (the entry's time). A block's expiry entry is at or before its oldest
    /// record, so every block with such a record is due: its old records go,
    /// and the block with them once it has none left; otherwise its entry
    /// moves to its oldest record left.
    ///
    /// Expiry keys sort by time, so the scan stops at the first one that
    /// stays, and [`ApplyHints::dedup_from`] keeps the earliest time left:
    /// until the cutoff passes it, there is nothing to scan for.
    fn expire_dedup(&mut self, now_ms: i64) -> Result<()> {
        let cutoff = now_ms.saturating_sub(self.settings.dedup_ttl_ms);
        if self.hints.dedup_from.is_some_and(|from| cutoff <= from) {
            return Ok(());
        }
        let mut due = Vec::new();
        // The time of the first key that stays; none left: no bound below.
        let mut first_kept = Some(i64::MAX);
        self.scan_prefix(
            keys::DEDUP_EXPIRY_PREFIX,
            |k, _| match keys::dedup_expiry_parts(k) {
                Some((t, dk)) if t < cutoff => {
                    due.push((k.to_vec(), dk.to_vec()));
                    Ok(true)
                }
                kept => {
                    first_kept = kept.map(|(t, _)| t);
                    Ok(false)
                }
            },
        )?;
        for (ek, dk) in due {
            self.remove(ek);
            let Some((client_id, number)) = keys::dedup_block_parts(&dk) else {
                continue;
            };
            let client_id = client_id.to_string();
            let Some(mut block) = self.dedup_block(&client_id, number)? else {
                continue;
            };
            block.expire(cutoff);
            let kept = self.hints.block(&client_id, number).is_some();
            match block.oldest_ms() {
                Some(oldest) => {
                    block.expiry_ms = oldest;
                    self.put(keys::dedup_expiry(oldest, &dk), &());
                    first_kept = first_kept.map(|first| first.min(oldest));
                    self.put(dk, &block);
                    if kept {
                        self.hints
                            .keep_block(&client_id, number, block, &mut self.overlay);
                    }
                }
                None => {
                    self.hints.forget_block(&client_id, number);
                    self.remove(dk);
                }
            }
        }
        self.hints.dedup_from = first_kept;
        Ok(())
    }

    /// Reads the revision counter (for a fresh context).
    pub fn stored_revision(store: &Store) -> Result<u64> {
        Ok(store
            .get(keys::META_REVISION)?
            .map(|v| decode::<u64>(&v))
            .transpose()?
            .unwrap_or(0))
    }
}

fn change(kind: ChangeKind, path: String, version: u64, value: Option<String>) -> Change {
    Change {
        kind,
        path,
        version,
        value,
    }
}

/// Apply's own check of a document: a JSON object within the size limit.
/// (The proposer checked it too; apply must not trust that.)
/// Whether `created` more namespaces fit in `env`, under the tenant's `limit`.
fn check_namespace_limit(env: &EnvRecord, created: u64, limit: u64) -> Result<(), Rejection> {
    if created > 0 && env.namespaces + created > limit {
        return Err(Rejection::LimitExceeded {
            limit: "namespaces per environment".into(),
            max: limit,
            actual: env.namespaces + created,
        });
    }
    Ok(())
}

fn check_document(value: &str) -> Result<(), Rejection> {
    if value.len() > MAX_DOCUMENT_BYTES {
        return Err(Rejection::LimitExceeded {
            limit: "document size".into(),
            max: MAX_DOCUMENT_BYTES as u64,
            actual: value.len() as u64,
        });
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(Rejection::Invalid {
            reason: "document is not a JSON object".into(),
        }),
        Err(e) => Err(Rejection::Invalid {
            reason: format!("document is not valid JSON: {e}"),
        }),
    }
}

fn check_precondition(
    path: &NsPath,
    doc: Option<&DocRecord>,
    pre: &Precondition,
) -> Result<(), Rejection> {
    let live = doc.is_some_and(|d| d.value.is_some());
    let current = doc.map_or(0, |d| d.version);
    if let Some(expected) = pre.if_version {
        let ok = if expected == 0 {
            !live
        } else {
            live && current == expected
        };
        if !ok {
            return Err(Rejection::VersionMismatch {
                path: path.to_string(),
                expected,
                current,
                exists: live,
            });
        }
    }
    if let Some(expected) = pre.if_revision {
        let current = doc.map_or(0, |d| d.mod_revision);
        if current != expected {
            return Err(Rejection::RevisionMismatch {
                path: path.to_string(),
                expected,
                current,
            });
        }
    }
    Ok(())
}

/// FNV-1a over the payload that identifies a write (command and message; not
/// the time or author, which the leader re-stamps on a retry).
fn fingerprint(req: &Request) -> u64 {
    let mut h = Fnv64::new();
    h.feed(&encode(&req.command));
    h.feed(req.message.as_bytes());
    h.finish()
}

/// Names for a message: the first ten, then how many more.
fn list_names(names: &[String]) -> String {
    if names.len() <= 10 {
        names.join(", ")
    } else {
        format!("{}, … {} more", names[..10].join(", "), names.len() - 10)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{Rng, SeedableRng};

    use super::{RecentIds, RECENT_IDS};

    /// `RecentIds` against a model (every id ever recorded), over random
    /// records that run ahead, fall back, jump past the window and repeat.
    /// Sound: an id it calls new was never recorded. Useful: an id within the
    /// window, above where the hints started, that was never recorded is
    /// called new (no lookup).
    #[test]
    fn recent_ids_call_new_exactly_the_unrecorded_ids_in_their_window() {
        for seed in 0..8u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let start = rng.gen_range(0..50u64);
            // Recorded before the hints existed: at most `start`.
            let mut model: BTreeSet<u64> = (0..=start).filter(|_| rng.gen_bool(0.5)).collect();
            model.insert(start);
            let mut ids = RecentIds::new(start);
            let mut highest = start;
            for step in 0..500 {
                let id = match rng.gen_range(0..10) {
                    0 => highest + rng.gen_range(1..3 * RECENT_IDS),
                    1..=5 => highest + rng.gen_range(1..8),
                    _ => highest.saturating_sub(rng.gen_range(0..80)),
                };
                for probe in highest.saturating_sub(RECENT_IDS + 8)..=highest + 2 {
                    let recorded = model.contains(&probe);
                    let in_window = probe + RECENT_IDS > highest && probe > start;
                    assert!(
                        !(ids.is_new(probe) && recorded),
                        "seed {seed} step {step}: {probe} was recorded but is called new"
                    );
                    if in_window && !recorded {
                        assert!(
                            ids.is_new(probe),
                            "seed {seed} step {step}: {probe} is unrecorded and in the window"
                        );
                    }
                }
                model.insert(id);
                ids.record(id);
                highest = highest.max(id);
            }
        }
    }
}
