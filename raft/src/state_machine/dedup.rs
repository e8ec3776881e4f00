//! The de-duplication table as stored: the answer apply gave each write id,
//! kept for the TTL, in blocks of [`BLOCK_IDS`] consecutive request ids of one
//! client.
//!
//! Why blocks: state format 1 kept a key per write id and an expiry entry
//! per key, two sled operations per write and two more when they expired,
//! each several microseconds of sled's CPU (sled 0.34 copies a tree node per
//! insert). Sequential ids of one client share a block, and the state writer
//! writes a key once per batch however often apply changed it, so a client's
//! block reaches sled once per batch, and a block has one expiry entry.
//!
//! A block holds exactly the records format 1 held: its expiry entry is at
//! the time of its oldest record, and when the cutoff passes that, apply
//! drops every record of the block older than the cutoff and files the entry
//! again at the oldest one left. So a record is gone from the first entry
//! whose cutoff passes it, as in format 1, even when entry times go back (a
//! new leader's clock), and the answers are the same in either format.

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::keys;
use crate::command::{Applied, Rejection};
use crate::{Error, Result};

/// Request ids per block: ids `n * BLOCK_IDS ..= n * BLOCK_IDS + BLOCK_IDS - 1`
/// of a client share block `n`. Apply encodes a changed block once per apply
/// call (a few hundred bytes to a few KiB). Blocks of 8 measured worse: a
/// client with 64 writes in flight then writes to more blocks at once.
pub(crate) const BLOCK_IDS: u64 = 32;

/// The block of request id `id`.
pub(crate) fn block_of(id: u64) -> u64 {
    id / BLOCK_IDS
}

/// The remembered answer to one `(client_id, request_id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DedupRecord {
    /// Fingerprint of the payload, to refuse a reused id with another payload.
    pub fingerprint: u64,
    /// The time of the entry that wrote it (the leader's clock).
    pub time_ms: i64,
    pub outcome: std::result::Result<Applied, Rejection>,
}

/// The records of one client's block, sorted by request id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DedupBlock {
    /// The time of its expiry entry (`x/`): at or before its oldest record's.
    pub expiry_ms: i64,
    records: Vec<(u64, DedupRecord)>,
}

impl DedupBlock {
    /// A block without records whose expiry entry is at `expiry_ms`.
    pub fn new(expiry_ms: i64) -> Self {
        DedupBlock {
            expiry_ms,
            records: Vec::new(),
        }
    }

    /// The record of `id`, expired or not.
    pub fn get(&self, id: u64) -> Option<&DedupRecord> {
        self.records
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|at| &self.records[at].1)
    }

    /// Records `id` (replacing an expired record of the same id).
    pub fn insert(&mut self, id: u64, record: DedupRecord) {
        match self.records.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(at) => self.records[at].1 = record,
            Err(at) => self.records.insert(at, (id, record)),
        }
    }

    /// The time of its oldest record (`None`: it has none).
    pub fn oldest_ms(&self) -> Option<i64> {
        self.records.iter().map(|(_, r)| r.time_ms).min()
    }

    /// Drops every record older than `cutoff`.
    pub fn expire(&mut self, cutoff: i64) {
        self.records.retain(|(_, r)| r.time_ms >= cutoff);
    }

    /// Its records, by request id.
    #[cfg(test)]
    pub fn records(&self) -> &[(u64, DedupRecord)] {
        &self.records
    }

    /// Its greatest request id.
    pub fn highest_id(&self) -> Option<u64> {
        self.records.last().map(|(id, _)| *id)
    }
}

/// State format 1's de-duplication pairs (`q/` records; its `x/` entries are
/// dropped) as blocks, with one expiry entry each at its oldest record's time.
pub(crate) fn upgrade_v1(
    legacy: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut blocks: std::collections::BTreeMap<Vec<u8>, DedupBlock> = Default::default();
    // Each gets its expiry time below, once all its records are in.
    for (key, value) in legacy {
        let (client, id) = keys::legacy_dedup_parts(&key).ok_or_else(|| {
            Error::Storage(format!(
                "state format 1: malformed de-duplication key {}",
                String::from_utf8_lossy(&key)
            ))
        })?;
        let record: DedupRecord = decode(&value)?;
        blocks
            .entry(keys::dedup_block(client, block_of(id)))
            .or_insert_with(|| DedupBlock::new(i64::MAX))
            .insert(id, record);
    }
    let mut pairs = Vec::with_capacity(2 * blocks.len());
    for (key, mut block) in blocks {
        block.expiry_ms = block
            .oldest_ms()
            .expect("invariant: a block is made with a record");
        pairs.push((keys::dedup_expiry(block.expiry_ms, &key), encode(&())));
        pairs.push((key, encode(&block)));
    }
    Ok(pairs)
}

/// A whole state of format 1 (a snapshot's pairs) in format 2: the
/// de-duplication table in blocks, `m/format` set to 2. Sorted by key.
pub(crate) fn upgrade_pairs(
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    format: u16,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut legacy = Vec::new();
    let mut out = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if key.starts_with(keys::LEGACY_DEDUP_PREFIX) {
            legacy.push((key, value));
        } else if !key.starts_with(keys::DEDUP_EXPIRY_PREFIX) && key != keys::META_FORMAT {
            out.push((key, value));
        }
    }
    out.extend(upgrade_v1(legacy)?);
    out.push((keys::META_FORMAT.to_vec(), encode(&format)));
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time_ms: i64, revision: u64) -> DedupRecord {
        DedupRecord {
            fingerprint: revision,
            time_ms,
            outcome: Ok(Applied {
                revision,
                version: 1,
                deduplicated: false,
            }),
        }
    }

    fn legacy_key(client: &str, id: u64) -> Vec<u8> {
        let mut k = keys::LEGACY_DEDUP_PREFIX.to_vec();
        k.extend_from_slice(client.as_bytes());
        k.push(0);
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    #[test]
    fn a_block_keeps_its_records_sorted_and_replaces_an_id() {
        let mut block = DedupBlock::new(10);
        for (id, t) in [(5, 50), (3, 70), (9, 10)] {
            block.insert(id, record(t, id));
        }
        assert_eq!(block.highest_id(), Some(9));
        assert_eq!(block.oldest_ms(), Some(10));
        assert_eq!(block.get(3), Some(&record(70, 3)));
        assert_eq!(block.get(4), None);
        block.insert(3, record(80, 33));
        assert_eq!(block.get(3), Some(&record(80, 33)));
        assert_eq!(block.records.len(), 3);
        let ids: Vec<u64> = block.records.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![3, 5, 9]);
        block.expire(50);
        assert_eq!((block.get(9), block.oldest_ms()), (None, Some(50)));
        block.expire(81);
        assert_eq!((block.highest_id(), block.oldest_ms()), (None, None));
    }

    /// Every format 1 record is found in its block afterwards, with nothing
    /// else of the state changed; each block has one expiry entry, at its
    /// oldest record's time (so expiry reaches it no later than format 1 did
    /// its first record).
    #[test]
    fn upgrading_keeps_every_record_and_the_rest_of_the_state() {
        let records = [
            ("c1", 1, 100),
            ("c1", 31, 90),
            ("c1", 32, 120),
            ("c\0x", 7, 5),
        ];
        let mut pairs = vec![
            (keys::META_FORMAT.to_vec(), encode(&1u16)),
            (b"d/a/b/c".to_vec(), b"doc".to_vec()),
        ];
        for (client, id, t) in records {
            let key = legacy_key(client, id);
            pairs.push((keys::dedup_expiry(t, &key), encode(&())));
            pairs.push((key, encode(&record(t, id))));
        }
        let upgraded = upgrade_pairs(pairs, 2).expect("upgrade");
        let get = |k: &[u8]| upgraded.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        assert_eq!(get(keys::META_FORMAT), Some(&encode(&2u16)));
        assert_eq!(get(b"d/a/b/c"), Some(&b"doc".to_vec()));
        assert!(upgraded
            .iter()
            .all(|(k, _)| !k.starts_with(keys::LEGACY_DEDUP_PREFIX)));
        for (client, id, t) in records {
            let key = keys::dedup_block(client, block_of(id));
            let block: DedupBlock = decode(get(&key).expect("block")).expect("decodes");
            assert_eq!(block.get(id), Some(&record(t, id)), "{client} {id}");
            assert_eq!(Some(block.expiry_ms), block.oldest_ms());
        }
        let mut expiry: Vec<(i64, Vec<u8>)> = upgraded
            .iter()
            .filter_map(|(k, _)| keys::dedup_expiry_parts(k))
            .map(|(t, dk)| (t, dk.to_vec()))
            .collect();
        expiry.sort();
        assert_eq!(
            expiry,
            vec![
                (5, keys::dedup_block("c\0x", 0)),
                (90, keys::dedup_block("c1", 0)),
                (120, keys::dedup_block("c1", 1)),
            ]
        );
        let mut sorted = upgraded.clone();
        sorted.sort();
        assert_eq!(upgraded, sorted);
    }

    #[test]
    fn a_malformed_legacy_key_is_an_error_that_names_it() {
        let err = upgrade_v1([(b"q/short".to_vec(), Vec::new())]).expect_err("malformed");
        assert!(err.to_string().contains("q/short"), "{err}");
    }
}
