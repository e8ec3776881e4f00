//! Snapshot files: a consistent copy of the whole state tree, written durably.
//!
//! File layout: magic `RCSNAP01`, then a bincode [`SnapshotFile`], then the
//! CRC32 of everything before it (u32 LE). Written to a temp file, fsynced,
//! renamed into place, then the directory is fsynced: a crash leaves either the
//! old snapshot or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::SnapshotMeta;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"RCSNAP01";
/// On-disk format version of snapshot files.
pub(crate) const SNAPSHOT_FORMAT: u16 = 1;

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub format: u16,
    pub meta: SnapshotMeta,
    /// Every key/value pair of the state tree, sorted by key.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Serializes a snapshot to bytes (the `SnapshotData` openraft ships around).
pub(crate) fn to_bytes(file: &SnapshotFile) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(
        &bincode::serialize(file).expect("invariant: snapshot is plain serde data"),
    );
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses and verifies snapshot bytes.
pub(crate) fn from_bytes(bytes: &[u8]) -> Result<SnapshotFile> {
    let bad = |why: &str| Error::Storage(format!("invalid snapshot: {why}"));
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("missing magic header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| bad("truncated"))?);
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    let file: SnapshotFile = bincode::deserialize(&body[MAGIC.len()..])
        .map_err(|e| bad(&format!("undecodable: {e}")))?;
    if file.format != SNAPSHOT_FORMAT {
        return Err(bad(&format!(
            "format {} is not supported (this build reads {SNAPSHOT_FORMAT})",
            file.format
        )));
    }
    Ok(file)
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (term, index) = meta
        .last_log_id
        .map_or((0, 0), |l| (l.leader_id.term, l.index));
    format!("snapshot-{index:020}-{term:020}.snap")
}

/// Writes `bytes` as the snapshot for `meta` durably, then removes older snapshot files.
pub(crate) fn persist(dir: &Path, meta: &SnapshotMeta, bytes: &[u8]) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(file_name(meta));
    let tmp = dir.join(format!("{}.tmp", file_name(meta)));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        if p != path && p.extension().is_some_and(|e| e == "snap" || e == "tmp") {
            fs::remove_file(&p)?;
        }
    }
    sync_dir(dir)?;
    Ok(path)
}

/// The newest valid snapshot in `dir`, as bytes and parsed. Invalid files are skipped with a warning.
pub(crate) fn latest(dir: &Path) -> Result<Option<(Vec<u8>, SnapshotFile)>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    while let Some(p) = files.pop() {
        let bytes = fs::read(&p)?;
        match from_bytes(&bytes) {
            Ok(file) => return Ok(Some((bytes, file))),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "skipping unreadable snapshot")
            }
        }
    }
    Ok(None)
}

/// fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
