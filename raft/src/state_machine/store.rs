//! [`Store`]: the state tree in sled, with applied changes not yet written to
//! it held in memory in front of it ("write-behind").
//!
//! Why: sled 0.34 rolls its IO buffer twice for every atomic batch and hands
//! each buffer to its IO thread pool, whose queue wakes all seven of its
//! threads. Measured on the 2-core bench machine: about 160 µs of CPU per
//! batch, and 0.16 ms of every sequential put (p50 0.56 → 0.40 ms with the
//! batch out of the write path). So apply no longer writes sled itself: it
//! merges its changes into [`Store`]'s pending map, and a writer thread moves
//! everything pending into sled as one atomic batch at most every
//! [`FLUSH_INTERVAL`].
//!
//! Why it is safe:
//! - Readers see pending and sled merged, pending winning: the same state
//!   apply would have left in sled. A reader holds the pending map's read lock
//!   while it reads sled, so an entry cannot leave the map (after its flush)
//!   in the middle of a read.
//! - Pending always holds whole applies (each merged under one write lock,
//!   with its applied index and revision), and every change since the last
//!   flush; a flush writes all of it in one `sled::Batch`. So sled always
//!   holds the state after some applied log entry, as before — only an older
//!   one, by at most an interval. sled was never fsynced on apply: after a
//!   crash openraft re-applies the committed entries past sled's applied
//!   index from the Raft log, which the log store fsyncs.
//! - The log is purged only behind a snapshot file, which is built from the
//!   merged state and fsynced, and is loaded on start when sled is behind it.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sled::IVec;

use super::keys;
use crate::Result;

/// Longest time an applied change waits in memory before it is written to sled.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Pending entries past which apply writes them itself instead of waiting
/// for the writer thread (bounds the memory a burst can take).
const MAX_PENDING: usize = 100_000;

/// One key's pending change: the apply generation that made it, and the new
/// value (`None`: removed).
type PendingEntry = (u64, Option<IVec>);

#[derive(Default)]
struct Pending {
    entries: BTreeMap<Vec<u8>, PendingEntry>,
    generation: u64,
    /// What sled holds for a few small keys every write reads (see
    /// [`cached`]): a sled lookup was about 1.5 µs, and a put read four of
    /// them in apply and more in the proposer's check. Filled by readers (the
    /// map's read lock held, hence the mutex), emptied of a key when an apply
    /// changes it and again when its flushed entry leaves `entries`: a reader
    /// holds the read lock from its sled lookup to its insert, so it cannot
    /// insert a value older than what a flush then wrote.
    sled_cache: Mutex<HashMap<Vec<u8>, Option<IVec>>>,
}

impl Pending {
    /// The cache, for a holder of the write lock.
    fn cache_mut(&mut self) -> &mut HashMap<Vec<u8>, Option<IVec>> {
        self.sled_cache.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn uncache(&mut self, key: &[u8]) {
        if cached(key) {
            self.cache_mut().remove(key);
        }
    }
}

/// A flush's copy of everything pending: the batch for sled, and the
/// newest apply it holds.
struct Taken {
    batch: sled::Batch,
    generation: u64,
}

/// Most keys in [`Pending::sled_cache`]; past it the cache starts over.
const SLED_CACHE_KEYS: usize = 4096;

/// Whether `key` is one of the few, small, read-on-every-write keys kept in
/// [`Pending::sled_cache`]: tenants, environments, tenant settings, and the
/// current schema version of each namespace.
fn cached(key: &[u8]) -> bool {
    [
        keys::TENANT_PREFIX,
        keys::ENV_PREFIX,
        keys::TENANT_SETTINGS_PREFIX,
        keys::SCHEMA_CURRENT_PREFIX,
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// The state tree: sled, and the applied changes not yet written to it.
pub(crate) struct Store {
    tree: sled::Tree,
    pending: RwLock<Pending>,
    /// Held for a whole flush, and by [`Store::replace`], so no flush of an
    /// older state can land after a replacement.
    flushing: Mutex<()>,
}

impl Store {
    pub fn new(tree: sled::Tree) -> Store {
        Store {
            tree,
            pending: RwLock::new(Pending::default()),
            flushing: Mutex::new(()),
        }
    }

    fn pending(&self) -> std::sync::RwLockReadGuard<'_, Pending> {
        self.pending.read().unwrap_or_else(|e| e.into_inner())
    }

    fn pending_mut(&self) -> std::sync::RwLockWriteGuard<'_, Pending> {
        self.pending.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>> {
        let key = key.as_ref();
        let pending = self.pending();
        if let Some((_, value)) = pending.entries.get(key) {
            return Ok(value.clone());
        }
        if !cached(key) {
            return Ok(self.tree.get(key)?);
        }
        let mut cache = pending.sled_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = cache.get(key) {
            return Ok(value.clone());
        }
        let value = self.tree.get(key)?;
        if cache.len() >= SLED_CACHE_KEYS {
            cache.clear();
        }
        cache.insert(key.to_vec(), value.clone());
        Ok(value)
    }

    /// Every live pair whose key starts with `prefix`, sorted by key.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<(IVec, IVec)>> {
        let prefix = prefix.as_ref();
        let pending = self.pending();
        let stored = self
            .tree
            .scan_prefix(prefix)
            .collect::<sled::Result<Vec<_>>>()?;
        let over = pending
            .entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        Ok(merge(stored, over))
    }

    /// Visits the live pairs whose key starts with `prefix` in key order,
    /// until `f` returns false: lazily, for scans that stop early in a big
    /// range (apply's expiry of old records). `f` must not call the store.
    pub fn visit_prefix(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let pending = self.pending();
        let mut over = pending
            .entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        for item in self.tree.scan_prefix(prefix) {
            let (key, value) = item?;
            // Pending keys before this one first; one equal to it replaces it.
            while let Some((pk, (_, pv))) = over.next_if(|(pk, _)| pk.as_slice() <= key.as_ref()) {
                let replaces = pk.as_slice() == key.as_ref();
                if let Some(pv) = pv {
                    if !f(pk, pv)? {
                        return Ok(());
                    }
                }
                if replaces {
                    break;
                }
            }
            let replaced = pending.entries.contains_key(key.as_ref());
            if !replaced && !f(&key, &value)? {
                return Ok(());
            }
        }
        for (pk, (_, pv)) in over {
            if let Some(pv) = pv {
                if !f(pk, pv)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The greatest key that starts with `prefix` and is `len` bytes long,
    /// in sled or pending, removed or not: every such live key is at or below
    /// it.
    pub fn last_key_of_len(&self, prefix: &[u8], len: usize) -> Result<Option<Vec<u8>>> {
        let pending = self.pending();
        let in_pending = pending
            .entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| k.len() == len)
            .map(|(k, _)| k)
            .last()
            .cloned();
        let mut in_sled = None;
        for key in self.tree.scan_prefix(prefix).keys().rev() {
            let key = key?;
            if key.len() == len {
                in_sled = Some(key.to_vec());
                break;
            }
        }
        Ok(in_pending.max(in_sled))
    }

    /// Every live pair with a key in `range`, sorted by key.
    pub fn range<R>(&self, range: R) -> Result<Vec<(IVec, IVec)>>
    where
        R: RangeBounds<Vec<u8>> + Clone,
    {
        let pending = self.pending();
        let stored = self
            .tree
            .range(range.clone())
            .collect::<sled::Result<Vec<_>>>()?;
        Ok(merge(stored, pending.entries.range(range)))
    }

    /// Every live pair, sorted by key.
    pub fn all(&self) -> Result<Vec<(IVec, IVec)>> {
        let pending = self.pending();
        let stored = self.tree.iter().collect::<sled::Result<Vec<_>>>()?;
        Ok(merge(stored, pending.entries.iter()))
    }

    /// Makes one apply's changes visible (`None`: remove the key). Returns
    /// how many entries are now pending.
    pub fn apply(&self, changes: super::apply::Changes) -> usize {
        let mut pending = self.pending_mut();
        pending.generation += 1;
        let generation = pending.generation;
        for (key, value) in changes {
            pending.uncache(&key);
            pending
                .entries
                .insert(key, (generation, value.map(IVec::from)));
        }
        pending.entries.len()
    }

    /// Writes everything pending to sled in one atomic batch, then forgets
    /// the entries no apply has changed again meanwhile.
    pub fn flush(&self) -> Result<()> {
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(taken) = self.take() else {
            return Ok(());
        };
        self.write(taken.batch)?;
        self.forget(taken.generation);
        Ok(())
    }

    /// Everything pending, as a sled batch (`None`: nothing is), built
    /// under the read lock straight from the map. Copying the entries out
    /// first, and looking each up again to forget it, made the flush's work
    /// outside sled 5.8 % of the server's CPU at 64 concurrent writers
    /// (3.7 % this way).
    fn take(&self) -> Option<Taken> {
        let pending = self.pending();
        if pending.entries.is_empty() {
            return None;
        }
        let mut batch = sled::Batch::default();
        for (key, (_, value)) in &pending.entries {
            match value {
                Some(v) => batch.insert(key.as_slice(), v.clone()),
                None => batch.remove(key.as_slice()),
            }
        }
        Some(Taken {
            batch,
            generation: pending.generation,
        })
    }

    fn write(&self, batch: sled::Batch) -> Result<()> {
        Ok(self.tree.apply_batch(batch)?)
    }

    /// Drops the entries written by a flush that took everything up to
    /// apply `generation`: those no apply has changed since (a change gives
    /// an entry a newer generation).
    fn forget(&self, generation: u64) {
        let mut pending = self.pending_mut();
        let Pending {
            entries,
            sled_cache,
            ..
        } = &mut *pending;
        let cache = sled_cache.get_mut().unwrap_or_else(|e| e.into_inner());
        entries.retain(|key, (g, _)| {
            let written = *g <= generation;
            if written && cached(key) {
                cache.remove(key);
            }
            !written
        });
    }

    /// Replaces the whole state with `pairs` (a snapshot), durably.
    pub fn replace(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = self.pending_mut();
        let mut batch = sled::Batch::default();
        for key in self.tree.iter().keys() {
            batch.remove(key?);
        }
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        pending.entries.clear();
        pending.cache_mut().clear();
        Ok(())
    }

    /// Entries applied but not yet in sled.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending().entries.len()
    }

    /// Whether pending has grown past what the writer thread should be left
    /// to catch up with.
    pub fn over_limit(pending: usize) -> bool {
        pending > MAX_PENDING
    }
}

/// `stored` (sorted, from sled) with `pending` (sorted) laid over it.
fn merge<'a>(
    stored: Vec<(IVec, IVec)>,
    pending: impl Iterator<Item = (&'a Vec<u8>, &'a PendingEntry)>,
) -> Vec<(IVec, IVec)> {
    let mut pending = pending.peekable();
    if pending.peek().is_none() {
        return stored;
    }
    let mut out = Vec::with_capacity(stored.len());
    let mut stored = stored.into_iter().peekable();
    loop {
        let take_pending = match (stored.peek(), pending.peek()) {
            (None, None) => return out,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((sk, _)), Some((pk, _))) => {
                if sk.as_ref() == pk.as_slice() {
                    stored.next();
                    true
                } else {
                    pk.as_slice() < sk.as_ref()
                }
            }
        };
        if take_pending {
            let (k, (_, v)) = pending.next().expect("invariant: peeked");
            if let Some(v) = v {
                out.push((IVec::from(k.as_slice()), v.clone()));
            }
        } else {
            out.push(stored.next().expect("invariant: peeked"));
        }
    }
}

/// The thread that writes pending changes to sled: woken by apply, it waits
/// [`FLUSH_INTERVAL`] so one batch carries every apply of that time, then
/// flushes. When the state machine drops its sender, it flushes what is
/// left and ends.
pub(crate) fn spawn_writer(
    store: Arc<super::Shared>,
) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("state-writer".into())
        .spawn(move || writer_loop(&store, &rx))?;
    Ok((Writer(tx), handle))
}

/// Wakes the writer thread.
pub(crate) struct Writer(SyncSender<()>);

impl Writer {
    /// Tells the writer there is something to flush.
    pub fn dirty(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::error!("the state writer thread is gone; changes stay in memory");
            }
        }
    }
}

fn writer_loop(shared: &super::Shared, rx: &Receiver<()>) {
    let flush = || {
        if let Err(e) = shared.store.flush() {
            // The state stays right in memory; sled lags, and a restart
            // re-applies from the Raft log. Try again at the next wake-up.
            tracing::error!(error = %e, "writing applied state to sled failed");
        }
    };
    while let Ok(()) = rx.recv() {
        // Let the interval's applies join this batch. Sleep rather than wait
        // on the channel: waiting returned at the next apply's wake-up, so a
        // batch carried two applies and sled was written (and its seven IO
        // threads woken) for every other apply. While this thread sleeps, the
        // first apply fills the channel's one slot and the rest find it full:
        // none of them wakes anything.
        std::thread::sleep(FLUSH_INTERVAL);
        // Applies that filled the slot while it slept are in this flush.
        let _ = rx.try_recv();
        flush();
    }
    flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .expect("sled opens");
        let tree = db.open_tree("t").expect("tree");
        (dir, Store::new(tree))
    }

    fn change(pairs: &[(&str, Option<&str>)]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn keys(pairs: &[(IVec, IVec)]) -> Vec<String> {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn reads_see_pending_over_sled_before_and_after_a_flush() {
        let (_dir, store) = open();
        store.apply(change(&[
            ("a/1", Some("x")),
            ("a/2", Some("y")),
            ("b/1", Some("z")),
        ]));
        store.flush().expect("flush");
        assert_eq!(store.pending_len(), 0);
        // Pending: a/1 changed, a/2 removed, a/3 added.
        store.apply(change(&[
            ("a/1", Some("x2")),
            ("a/2", None),
            ("a/3", Some("w")),
        ]));
        let before = (
            keys(&store.scan_prefix(b"a/").expect("scan")),
            keys(&store.all().expect("all")),
            store.get(b"a/2").expect("get"),
        );
        assert_eq!(before.0, ["a/1=x2", "a/3=w"]);
        assert_eq!(before.1, ["a/1=x2", "a/3=w", "b/1=z"]);
        assert_eq!(before.2, None);
        let range = store
            .range(b"a/2".to_vec()..=b"b/1".to_vec())
            .expect("range");
        assert_eq!(keys(&range), ["a/3=w", "b/1=z"]);
        store.flush().expect("flush");
        assert_eq!(store.pending_len(), 0);
        let after = (
            keys(&store.scan_prefix(b"a/").expect("scan")),
            keys(&store.all().expect("all")),
            store.get(b"a/2").expect("get"),
        );
        assert_eq!(before, after, "a flush changes nothing readers see");
    }

    /// The bound apply's de-duplication hint starts from: keys of the asked
    /// length only (a longer key under the prefix is another client's), the
    /// greater of sled's and pending's, removed keys counted.
    #[test]
    fn last_key_of_len_bounds_sled_and_pending() {
        let (_dir, store) = open();
        let last = |store: &Store| {
            let k = store.last_key_of_len(b"q/", 4).expect("last key");
            k.map(|k| String::from_utf8(k).expect("utf-8"))
        };
        assert_eq!(last(&store), None);
        store.apply(change(&[("q/a1", Some("x")), ("q/a3", Some("x"))]));
        store.flush().expect("flush");
        store.apply(change(&[("q/a2", Some("x")), ("q/a3z", Some("x"))]));
        assert_eq!(
            last(&store).as_deref(),
            Some("q/a3"),
            "sled's, not the longer key"
        );
        store.apply(change(&[("q/a4", None), ("q/b", Some("x"))]));
        assert_eq!(
            last(&store).as_deref(),
            Some("q/a4"),
            "a pending removal counts"
        );
        store.flush().expect("flush");
        assert_eq!(last(&store).as_deref(), Some("q/a3"), "gone from both");
    }

    #[test]
    fn a_change_applied_during_a_flush_stays_pending() {
        let (_dir, store) = open();
        store.apply(change(&[("k", Some("1")), ("j", Some("1"))]));
        // A flush takes its copy, an apply lands, then the flush writes and forgets.
        let taken = store.take().expect("pending");
        store.apply(change(&[("k", Some("2"))]));
        store.write(taken.batch).expect("write");
        store.forget(taken.generation);
        assert_eq!(store.pending_len(), 1, "k's newer value is not forgotten");
        assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get(b"j").expect("get").as_deref(), Some(&b"1"[..]));
        store.flush().expect("flush");
        assert_eq!(store.pending_len(), 0);
        assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn visits_merge_lazily_and_stop_when_told() {
        let (_dir, store) = open();
        store.apply(change(&[
            ("p/1", Some("a")),
            ("p/3", Some("c")),
            ("p/5", Some("e")),
            ("q", Some("x")),
        ]));
        store.flush().expect("flush");
        // Pending: before the first, replacing, removing, between, after the last.
        store.apply(change(&[
            ("p/0", Some("z")),
            ("p/1", Some("A")),
            ("p/3", None),
            ("p/4", Some("d")),
            ("p/9", Some("i")),
        ]));
        let mut seen = Vec::new();
        store
            .visit_prefix(b"p/", |k, v| {
                seen.push(format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ));
                Ok(true)
            })
            .expect("visit");
        assert_eq!(seen, ["p/0=z", "p/1=A", "p/4=d", "p/5=e", "p/9=i"]);
        assert_eq!(seen, keys(&store.scan_prefix(b"p/").expect("scan")));
        let mut first_two = Vec::new();
        store
            .visit_prefix(b"p/", |k, _| {
                first_two.push(k.to_vec());
                Ok(first_two.len() < 2)
            })
            .expect("visit");
        assert_eq!(first_two, [b"p/0".to_vec(), b"p/1".to_vec()]);
    }

    #[test]
    fn replace_drops_pending_changes() {
        let (_dir, store) = open();
        store.apply(change(&[("old", Some("1"))]));
        store
            .replace(vec![(b"new".to_vec(), b"2".to_vec())])
            .expect("replace");
        assert_eq!(keys(&store.all().expect("all")), ["new=2"]);
        store.flush().expect("flush");
        assert_eq!(keys(&store.all().expect("all")), ["new=2"]);
    }

    #[test]
    fn cached_keys_follow_every_change() {
        let (_dir, store) = open();
        let get = |k: &str| {
            store
                .get(k.as_bytes())
                .expect("get")
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        // A cached miss, then the key is created, flushed, changed, flushed.
        assert_eq!(get("t/acme"), None);
        store.apply(change(&[("t/acme", Some("1"))]));
        assert_eq!(get("t/acme").as_deref(), Some("1"));
        store.flush().expect("flush");
        assert_eq!(
            get("t/acme").as_deref(),
            Some("1"),
            "read from sled, cached"
        );
        store.apply(change(&[("t/acme", Some("2"))]));
        store.flush().expect("flush");
        assert_eq!(get("t/acme").as_deref(), Some("2"), "not the cached 1");
        // A change applied during a flush: the flush's own value is not cached over it.
        store.apply(change(&[("t/acme", Some("2b"))]));
        let taken = store.take().expect("pending");
        store.apply(change(&[("t/acme", Some("3"))]));
        store.write(taken.batch).expect("write");
        store.forget(taken.generation);
        assert_eq!(get("t/acme").as_deref(), Some("3"));
        store.flush().expect("flush");
        assert_eq!(get("t/acme").as_deref(), Some("3"));
        // Removed, and replaced by a snapshot.
        store.apply(change(&[("t/acme", None)]));
        store.flush().expect("flush");
        assert_eq!(get("t/acme"), None);
        store
            .replace(vec![(b"t/acme".to_vec(), b"4".to_vec())])
            .expect("replace");
        assert_eq!(get("t/acme").as_deref(), Some("4"));
    }
}
