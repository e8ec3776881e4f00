//! Key layout of the state machine's single sled tree.
//!
//! Everything lives in one tree so that one apply is one atomic `sled::Batch`:
//! the applied index, the revision counter, documents, history, the
//! de-duplication table and the watch replay window change together.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m/` | meta name | applied log id, membership, revision, cluster id, format |
//! | `t/` | tenant | [`TenantRecord`](super::apply::TenantRecord) |
//! | `e/` | tenant `/` env | [`EnvRecord`](super::apply::EnvRecord) |
//! | `d/` | tenant `/` env `/` namespace | [`DocRecord`](crate::model::DocRecord) (live or tombstone) |
//! | `h/` | path `\0` version (u64 BE) | [`VersionRecord`](crate::model::VersionRecord) |
//! | `w/` | revision (u64 BE) | [`ChangeEvent`](crate::model::ChangeEvent) (replay window) |
//! | `r/` | client id `\0` block (u64 BE: request id / [`BLOCK_IDS`](super::dedup::BLOCK_IDS)) | [`DedupBlock`](super::dedup::DedupBlock): the de-duplication records of those ids |
//! | `x/` | time (u64 BE, offset) `r/` key | () — expiry index of `r/`, one entry per block |
//! | `p/` | tenant | [`TenantSettings`](crate::model::TenantSettings) |
//! | `c/` | tenant `/` namespace | current [`SchemaRecord`](crate::model::SchemaRecord) |
//! | `s/` | tenant `/` namespace `/` version (u64 BE) | every [`SchemaRecord`](crate::model::SchemaRecord) kept |
//!
//! Names cannot contain `/` or `\0` (see the naming rule), so prefixes never collide.
//!
//! State format 1 kept one `q/` key per write id (client id `\0` request id)
//! and one `x/` entry per record; [`super::dedup::upgrade_v1`] turns them into
//! blocks.

use raftconf_schema::NsPath;

pub(crate) const META_APPLIED: &[u8] = b"m/applied";
pub(crate) const META_MEMBERSHIP: &[u8] = b"m/membership";
pub(crate) const META_REVISION: &[u8] = b"m/revision";
pub(crate) const META_CLUSTER_ID: &[u8] = b"m/cluster_id";
pub(crate) const META_FORMAT: &[u8] = b"m/format";

pub(crate) const TENANT_PREFIX: &[u8] = b"t/";
pub(crate) const ENV_PREFIX: &[u8] = b"e/";
pub(crate) const DOC_PREFIX: &[u8] = b"d/";
pub(crate) const REPLAY_PREFIX: &[u8] = b"w/";
pub(crate) const DEDUP_EXPIRY_PREFIX: &[u8] = b"x/";
pub(crate) const DEDUP_BLOCK_PREFIX: &[u8] = b"r/";
/// State format 1's de-duplication records, one per write id.
pub(crate) const LEGACY_DEDUP_PREFIX: &[u8] = b"q/";
pub(crate) const SCHEMA_CURRENT_PREFIX: &[u8] = b"c/";
pub(crate) const SCHEMA_PREFIX: &[u8] = b"s/";
pub(crate) const TENANT_SETTINGS_PREFIX: &[u8] = b"p/";

fn join(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

pub(crate) fn tenant(name: &str) -> Vec<u8> {
    join(TENANT_PREFIX, &[name])
}

pub(crate) fn env(tenant: &str, env: &str) -> Vec<u8> {
    join(ENV_PREFIX, &[tenant, env])
}

/// Prefix of every environment key of `tenant`.
pub(crate) fn env_prefix(tenant: &str) -> Vec<u8> {
    let mut k = join(ENV_PREFIX, &[tenant]);
    k.push(b'/');
    k
}

pub(crate) fn doc(path: &NsPath) -> Vec<u8> {
    join(DOC_PREFIX, &[&path.tenant, &path.env, &path.namespace])
}

/// Prefix of every document key of `tenant/env`.
pub(crate) fn doc_prefix(tenant: &str, env: &str) -> Vec<u8> {
    let mut k = join(DOC_PREFIX, &[tenant, env]);
    k.push(b'/');
    k
}

/// Parses a document key back into its path.
pub(crate) fn doc_path(key: &[u8]) -> Option<NsPath> {
    let rest = key.strip_prefix(DOC_PREFIX)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Prefix of every history key of `path`.
/// The settings of a tenant (a [`crate::model::TenantSettings`]).
pub(crate) fn tenant_settings(tenant: &str) -> Vec<u8> {
    let mut k = TENANT_SETTINGS_PREFIX.to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k
}

/// The current schema version of `tenant/namespace` (a [`crate::model::SchemaRecord`]).
pub(crate) fn schema_current(tenant: &str, namespace: &str) -> Vec<u8> {
    let mut k = SCHEMA_CURRENT_PREFIX.to_vec();
    k.extend_from_slice(format!("{tenant}/{namespace}").as_bytes());
    k
}

/// Every schema key of a tenant (current or versioned) starts with one of these.
pub(crate) fn schema_tenant_prefixes(tenant: &str) -> [Vec<u8>; 2] {
    let mut c = SCHEMA_CURRENT_PREFIX.to_vec();
    c.extend_from_slice(format!("{tenant}/").as_bytes());
    let mut s = SCHEMA_PREFIX.to_vec();
    s.extend_from_slice(format!("{tenant}/").as_bytes());
    [c, s]
}

/// The versions of the schema of `tenant/namespace`.
pub(crate) fn schema_versions_prefix(tenant: &str, namespace: &str) -> Vec<u8> {
    let mut k = SCHEMA_PREFIX.to_vec();
    k.extend_from_slice(format!("{tenant}/{namespace}/").as_bytes());
    k
}

/// Version `version` of the schema of `tenant/namespace`.
pub(crate) fn schema_version(tenant: &str, namespace: &str, version: u64) -> Vec<u8> {
    let mut k = schema_versions_prefix(tenant, namespace);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn history_prefix(path: &NsPath) -> Vec<u8> {
    let mut k = join(b"h/", &[&path.tenant, &path.env, &path.namespace]);
    k.push(0);
    k
}

pub(crate) fn history(path: &NsPath, version: u64) -> Vec<u8> {
    let mut k = history_prefix(path);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The number at the end of a history, schema-version or de-duplication key
/// (its last 8 bytes, big-endian: a version or a request id), without
/// decoding the record.
pub(crate) fn trailing_version(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub(crate) fn replay(revision: u64) -> Vec<u8> {
    let mut k = REPLAY_PREFIX.to_vec();
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

pub(crate) fn replay_revision(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(REPLAY_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The block of de-duplication records of `client_id` numbered `block`.
pub(crate) fn dedup_block(client_id: &str, block: u64) -> Vec<u8> {
    let mut k = dedup_block_prefix(client_id);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// Prefix of the de-duplication blocks of `client_id`. Client ids are not
/// validated, so another client's keys may start with it too: a key of this
/// client is exactly 8 bytes longer.
pub(crate) fn dedup_block_prefix(client_id: &str) -> Vec<u8> {
    let mut k = DEDUP_BLOCK_PREFIX.to_vec();
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}

/// Splits a block key into its client id and block number.
pub(crate) fn dedup_block_parts(key: &[u8]) -> Option<(&str, u64)> {
    split_client_key(key.strip_prefix(DEDUP_BLOCK_PREFIX)?)
}

/// Splits a state format 1 de-duplication key into its client id and request id.
pub(crate) fn legacy_dedup_parts(key: &[u8]) -> Option<(&str, u64)> {
    split_client_key(key.strip_prefix(LEGACY_DEDUP_PREFIX)?)
}

/// `client id \0 number (u64 BE)`, read from the end: a client id may hold a `\0`.
fn split_client_key(rest: &[u8]) -> Option<(&str, u64)> {
    let (head, number) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
    let client = head.strip_suffix(&[0])?;
    Some((
        std::str::from_utf8(client).ok()?,
        u64::from_be_bytes(number.try_into().ok()?),
    ))
}

/// Expiry index key: ordered by time, then the dedup key it points to.
pub(crate) fn dedup_expiry(time_ms: i64, dedup_key: &[u8]) -> Vec<u8> {
    let mut k = DEDUP_EXPIRY_PREFIX.to_vec();
    k.extend_from_slice(&time_order(time_ms).to_be_bytes());
    k.extend_from_slice(dedup_key);
    k
}

/// Splits an expiry key into its time and the dedup key.
pub(crate) fn dedup_expiry_parts(key: &[u8]) -> Option<(i64, &[u8])> {
    let rest = key.strip_prefix(DEDUP_EXPIRY_PREFIX)?;
    let (t, dk) = rest.split_at_checked(8)?;
    let t = u64::from_be_bytes(t.try_into().ok()?);
    Some(((t ^ (1 << 63)) as i64, dk))
}

/// Maps i64 to u64 preserving order (flip the sign bit).
fn time_order(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order() {
        let p: NsPath = "a/b/c".parse().expect("valid");
        assert_eq!(doc_path(&doc(&p)), Some(p.clone()));
        assert!(doc(&p).starts_with(&doc_prefix("a", "b")));
        assert!(history(&p, 2) < history(&p, 10));
        assert_eq!(replay_revision(&replay(7)), Some(7));
        let path = "a/b/c".parse().expect("valid");
        assert_eq!(trailing_version(&history(&path, 42)), Some(42));
        assert_eq!(trailing_version(&schema_version("a", "c", 7)), Some(7));
        assert_eq!(trailing_version(b"short"), None);
        let dk = dedup_block("c1", 5);
        assert_eq!(dedup_block_parts(&dk), Some(("c1", 5)));
        assert_eq!(
            dedup_block_parts(&dedup_block("a\0b", 7)),
            Some(("a\0b", 7))
        );
        assert_eq!(
            legacy_dedup_parts(b"q/c1\0\0\0\0\0\0\0\0\x09"),
            Some(("c1", 9))
        );
        assert_eq!(legacy_dedup_parts(b"q/c1\0\x09"), None, "too short");
        for t in [-5i64, 0, 7, i64::MAX] {
            assert_eq!(
                dedup_expiry_parts(&dedup_expiry(t, &dk)),
                Some((t, dk.as_slice()))
            );
        }
        assert!(dedup_expiry(-1, &dk) < dedup_expiry(1, &dk));
        // "a/b" must not be a prefix-match of "a/bc".
        assert!(!doc(&"a/bc/x".parse().expect("valid")).starts_with(&doc_prefix("a", "b")));
    }
}
