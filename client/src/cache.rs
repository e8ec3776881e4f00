//! The local cache file of a hot-reload handle: the last good documents of a
//! subscription and the revision they were taken at, so a service restarted
//! while every server is down starts from its last good configuration.
//!
//! One file per subscription in the cache directory. Written atomically and
//! durably (temp file, fsync, rename, fsync of the directory): a crash at any
//! point leaves the old file or the new one. Read back only if whole: the
//! header names the format version, the body's length and its CRC-32, and the
//! body names the subscription; anything else is an error the caller logs and
//! ignores.
//!
//! ```text
//! raftconf-cache v1 <body length> <crc32 hex>\n
//! {"subscription":"t/e/a","revision":42,"documents":{"t/e/a":{"mod_revision":40,"value":{…}}}}
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::view::{Doc, View};

const MAGIC: &str = "raftconf-cache";
const VERSION: &str = "v1";

/// What the cache keeps for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedConfig {
    /// The subscription's label (the path, or the targets joined by commas).
    pub(crate) subscription: String,
    /// The revision the documents were taken at (a resume starts after it).
    pub(crate) revision: u64,
    /// The documents of the value in effect.
    pub(crate) documents: View,
}

/// Why a cache file was not loaded.
#[derive(Debug, thiserror::Error)]
#[error("cache file {}: {reason}", path.display())]
pub(crate) struct CacheError {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

/// The body as stored.
#[derive(Serialize, Deserialize)]
struct Body {
    subscription: String,
    revision: u64,
    documents: BTreeMap<String, StoredDoc>,
}

#[derive(Serialize, Deserialize)]
struct StoredDoc {
    mod_revision: u64,
    value: Option<Value>,
}

/// The file for `subscription` in `dir`: a readable part (characters outside
/// `[a-z0-9._-]` become `_`) and a hash of the whole label, so two
/// subscriptions never share a file.
pub(crate) fn cache_path(dir: &Path, subscription: &str) -> PathBuf {
    let readable: String = subscription
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = crc32fast::hash(subscription.as_bytes());
    let len = subscription.len();
    dir.join(format!("{readable}-{hash:08x}{len:04x}.cache"))
}

/// The file's bytes for `config`.
fn encode(config: &CachedConfig) -> Vec<u8> {
    let body = Body {
        subscription: config.subscription.clone(),
        revision: config.revision,
        documents: config
            .documents
            .iter()
            .map(|(path, doc)| {
                let stored = StoredDoc {
                    mod_revision: doc.mod_revision,
                    value: doc.value.clone(),
                };
                (path.clone(), stored)
            })
            .collect(),
    };
    let body = serde_json::to_vec(&body).expect("JSON values always serialize");
    let mut out = format!(
        "{MAGIC} {VERSION} {} {:08x}\n",
        body.len(),
        crc32fast::hash(&body)
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A cache file written and renamed into place, not yet made durable: a
/// process that dies from now on restarts from it (the page cache outlives
/// the process); [`Unsynced::sync`] makes it survive a machine crash too.
#[derive(Debug)]
pub(crate) struct Unsynced {
    file: File,
    dir: PathBuf,
}

impl Unsynced {
    /// fsyncs the file and the directory (so the rename is durable).
    pub(crate) fn sync(self) -> io::Result<()> {
        self.file.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

/// Writes `config` into `dir` (created if missing), atomically and durably.
pub(crate) fn write(dir: &Path, config: &CachedConfig) -> io::Result<()> {
    write_visible(dir, config)?.sync()
}

/// Writes `config` into `dir` atomically (a reader sees the old file or the
/// new one, whole), without waiting for the disk. After a machine crash the
/// file may be the old one, or damaged, which [`read`] detects and refuses.
pub(crate) fn write_visible(dir: &Path, config: &CachedConfig) -> io::Result<Unsynced> {
    fs::create_dir_all(dir)?;
    let target = cache_path(dir, &config.subscription);
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cache");
    // Unique per writer, so two processes sharing a directory never write
    // into the same temp file.
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(&encode(config))?;
        fs::rename(&tmp, &target)?;
        Ok(Unsynced {
            file,
            dir: dir.to_path_buf(),
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads the cache of `subscription` from `dir`: `Ok(None)` if there is none,
/// an error if the file is damaged, of another version or of another
/// subscription.
pub(crate) fn read(dir: &Path, subscription: &str) -> Result<Option<CachedConfig>, CacheError> {
    let path = cache_path(dir, subscription);
    let fail = |reason: String| CacheError {
        path: path.clone(),
        reason,
    };
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(format!("cannot be read: {e}"))),
    };
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| fail("no header line (truncated or not a cache file)".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| fail("the header is not text".into()))?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, len, crc] = fields.as_slice() else {
        return Err(fail(format!("malformed header {header:?}")));
    };
    if *magic != MAGIC {
        return Err(fail("not a raftconf cache file".into()));
    }
    if *version != VERSION {
        return Err(fail(format!(
            "format {version}, this client reads {VERSION}"
        )));
    }
    let len: usize = len
        .parse()
        .map_err(|_| fail(format!("malformed length {len:?}")))?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| fail(format!("malformed CRC {crc:?}")))?;
    let body = &bytes[newline + 1..];
    if body.len() != len {
        return Err(fail(format!(
            "the body is {} bytes, the header says {len} (truncated or appended to)",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(fail("the body does not match its CRC-32 (corrupt)".into()));
    }
    let body: Body =
        serde_json::from_slice(body).map_err(|e| fail(format!("unreadable body: {e}")))?;
    if body.subscription != subscription {
        return Err(fail(format!(
            "it belongs to {:?}, not {subscription:?}",
            body.subscription
        )));
    }
    Ok(Some(CachedConfig {
        subscription: body.subscription,
        revision: body.revision,
        documents: body
            .documents
            .into_iter()
            .map(|(path, d)| {
                let doc = Doc {
                    mod_revision: d.mod_revision,
                    value: d.value,
                };
                (path, doc)
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(subscription: &str, revision: u64) -> CachedConfig {
        let doc = |n: u64| Doc {
            mod_revision: n,
            value: Some(json!({"greeting": "hello", "n": n})),
        };
        CachedConfig {
            subscription: subscription.into(),
            revision,
            documents: View::from([("t/e/a".to_string(), doc(3)), ("t/e/b".to_string(), doc(5))]),
        }
    }

    #[test]
    fn roundtrip_and_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(read(dir.path(), "t/e/a,t/e/b").expect("no error").is_none());
        let c = config("t/e/a,t/e/b", 7);
        write(dir.path(), &c).expect("write");
        assert_eq!(read(dir.path(), "t/e/a,t/e/b").expect("read"), Some(c));
        // A later write replaces it.
        let later = config("t/e/a,t/e/b", 9);
        write(dir.path(), &later).expect("write");
        assert_eq!(read(dir.path(), "t/e/a,t/e/b").expect("read"), Some(later));
    }

    #[test]
    fn distinct_subscriptions_get_distinct_safe_names() {
        let dir = Path::new("/cache");
        let a = cache_path(dir, "t/e/a");
        let b = cache_path(dir, "t/e_a");
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(dir), "no path separators leak: {a:?}");
        assert!(a.to_string_lossy().ends_with(".cache"));
        assert!(a.to_string_lossy().contains("t_e_a-"));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = config("t/e/a", 7);
        write(dir.path(), &c).expect("write");
        let path = cache_path(dir.path(), "t/e/a");
        let whole = fs::read(&path).expect("read");
        for cut in 0..whole.len() {
            fs::write(&path, &whole[..cut]).expect("truncate");
            let err = read(dir.path(), "t/e/a").expect_err("truncated");
            assert!(err.to_string().contains("cache file"), "{err}");
        }
        for i in 0..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).expect("corrupt");
            // The one flipped bit that could still pass would have to keep
            // header, length and CRC consistent: none does.
            assert!(
                read(dir.path(), "t/e/a").is_err(),
                "byte {i} flipped was accepted"
            );
        }
        fs::write(&path, b"garbage\n{}").expect("garbage");
        assert!(read(dir.path(), "t/e/a").is_err());
        fs::write(&path, &whole).expect("restore");
        assert_eq!(read(dir.path(), "t/e/a").expect("read"), Some(c));
    }

    #[test]
    fn another_subscriptions_file_or_version_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &config("t/e/a", 7)).expect("write");
        // The file of t/e/a copied to where t/e/b's would be.
        let from = cache_path(dir.path(), "t/e/a");
        fs::copy(&from, cache_path(dir.path(), "t/e/b")).expect("copy");
        let err = read(dir.path(), "t/e/b").expect_err("wrong subscription");
        assert!(err.to_string().contains("belongs to \"t/e/a\""), "{err}");
        let text = fs::read_to_string(&from).expect("read");
        fs::write(&from, text.replacen(" v1 ", " v9 ", 1)).expect("write");
        let err = read(dir.path(), "t/e/a").expect_err("other version");
        assert!(err.to_string().contains("format v9"), "{err}");
    }

    #[test]
    fn leftover_temp_files_and_concurrent_writers_leave_a_whole_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = cache_path(dir.path(), "t/e/a");
        let name = name.file_name().expect("name").to_string_lossy();
        fs::write(dir.path().join(format!(".{name}.1.2.tmp")), b"half a wri").expect("tmp");
        assert!(read(dir.path(), "t/e/a").expect("no error").is_none());
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        write(&dir, &config("t/e/a", w * 1000 + i)).expect("write");
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            if let Err(e) = read(dir.path(), "t/e/a") {
                panic!("a reader saw a damaged file: {e}");
            }
        }
        for w in writers {
            w.join().expect("writer");
        }
        let last = read(dir.path(), "t/e/a").expect("read").expect("present");
        assert!([99, 1099].contains(&last.revision), "{}", last.revision);
    }
}
