//! Snapshot files: a consistent copy of the whole state tree, written durably.
//!
//! File layout: magic `RCSNAP01`, then a bincode [`SnapshotFile`], then the
//! CRC32 of everything before it (u32 LE). Written to a temp file, fsynced,
//! renamed into place, then the directory is fsynced: a crash leaves either the
//! old snapshot or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::types::SnapshotMeta;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"RCSNAP01";
/// On-disk format version of snapshot files: 2 holds a state of format 2
/// (de-duplication records in blocks). A build that reads only 1 refuses it,
/// rather than installing blocks it would not read; this build reads 1 too.
pub(crate) const SNAPSHOT_FORMAT: u16 = 2;

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
    match file.format {
        SNAPSHOT_FORMAT => Ok(file),
        // State format 1 inside: upgraded as a tree of that format would be.
        1 => Ok(SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: file.meta,
            pairs: super::dedup::upgrade_pairs(file.pairs, super::STATE_FORMAT)?,
        }),
        format => Err(bad(&format!(
            "format {format} is not supported (this build reads 1 and {SNAPSHOT_FORMAT})"
        ))),
    }
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (term, index) = meta
        .last_log_id
        .map_or((0, 0), |l| (l.leader_id.term, l.index));
    format!("snapshot-{index:020}-{term:020}.snap")
}

/// Held by [`persist`] for its whole run. A snapshot being built (on a
/// blocking thread, while openraft goes on) and a snapshot received from the
/// leader can be persisted at the same moment; each removed the other's files,
/// so the received one's rename failed (the node's Raft stopped) or the older
/// one deleted the newer, which start-up needs once the log behind it is
/// purged.
static PERSISTING: Mutex<()> = Mutex::new(());

/// Writes `bytes` as the snapshot for `meta` durably, then removes older
/// snapshot files. Newest wins: when a newer snapshot is already in `dir`,
/// this one is not written and the newer one stays. Returns the path of the
/// snapshot `dir` now holds.
pub(crate) fn persist(dir: &Path, meta: &SnapshotMeta, bytes: &[u8]) -> Result<PathBuf> {
    let _persisting = PERSISTING.lock().unwrap_or_else(|e| e.into_inner());
    fs::create_dir_all(dir)?;
    let name = file_name(meta);
    let path = dir.join(&name);
    // File names order as (index, term): the greatest is the newest.
    let newest = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .max();
    if let Some(newer) = newest.filter(|p| *p > path) {
        tracing::info!(
            kept = %newer.display(),
            skipped = %path.display(),
            "a newer snapshot is already persisted; not writing an older one"
        );
        return Ok(newer);
    }
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    // Older snapshots, and temp files a crash left behind (no other persist
    // is running).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LogId, StoredMembership};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("3-{index}"),
        }
    }

    fn file(index: u64) -> Vec<u8> {
        to_bytes(&SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: meta(index),
            pairs: vec![(b"k".to_vec(), index.to_be_bytes().to_vec())],
        })
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        persist(dir.path(), &meta(200), &file(200)).expect("newer");
        let kept = persist(dir.path(), &meta(100), &file(100)).expect("older");
        assert_eq!(kept, dir.path().join(file_name(&meta(200))));
        assert_eq!(files_in(dir.path()), vec![file_name(&meta(200))]);
        let (_, latest) = latest(dir.path()).expect("read").expect("a snapshot");
        assert_eq!(latest.meta.last_log_id, meta(200).last_log_id);
        persist(dir.path(), &meta(300), &file(300)).expect("newest");
        assert_eq!(files_in(dir.path()), vec![file_name(&meta(300))]);
    }

    /// A snapshot built while one from the leader is installed: the two
    /// persists run at once. Before they were serialised, one removed the
    /// other's temp file (its rename failed: the node's Raft stopped) or its
    /// finished newer snapshot.
    #[test]
    fn concurrent_persists_all_succeed_and_leave_the_newest() {
        for attempt in 0..20u64 {
            let dir = tempfile::tempdir().expect("temp dir");
            let barrier = std::sync::Barrier::new(6);
            std::thread::scope(|s| {
                for t in 0..6u64 {
                    let (dir, barrier) = (dir.path(), &barrier);
                    s.spawn(move || {
                        let index = 1000 * attempt + (t * 7) % 6 + 1;
                        barrier.wait();
                        persist(dir, &meta(index), &file(index))
                            .unwrap_or_else(|e| panic!("persist {index}: {e}"));
                    });
                }
            });
            let newest = 1000 * attempt + 6;
            assert_eq!(files_in(dir.path()), vec![file_name(&meta(newest))]);
        }
    }
}
