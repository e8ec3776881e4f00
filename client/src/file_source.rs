//! A hot-reload source fed from a local JSON, YAML or TOML file, watched with
//! `notify`: the same [`crate::Watched`] as with a cluster, for development,
//! tests and sidecars.
//!
//! The parent directory is watched, not the file, so that every way editors
//! save is seen: in place, truncate and write, and write a temp file then
//! rename it over the original (vim, JetBrains, `mv`). Bursts of events are
//! coalesced; a version whose bytes did not change yields nothing. Each
//! version that parses becomes a snapshot event of one document at a local
//! revision (1 for the first read, then 2, 3 …); one that does not parse is an
//! [`Error::File`] naming the line and column, and the old value stays.
//!
//! A directory deleted takes its watch with it. When the directory is gone or
//! is another one (deleted and made again: a volume remounted, a deploy that
//! replaces the whole directory), the source waits for it to exist, watches
//! it again and reads the file there.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use raftconf_schema::{parse_document, Format};
use tokio::sync::mpsc;

use crate::types::NamespaceEntry;
use crate::watch::WatchEvent;
use crate::watched::EventSource;
use crate::{Error, Result};

/// How long to wait after a change for the rest of a burst (an editor's
/// truncate, write and rename arrive as several events).
const SETTLE: Duration = Duration::from_millis(20);

/// How often to look for the directory again while it is gone.
const REWATCH_POLL: Duration = Duration::from_millis(100);

/// A file, read again whenever it changes.
pub(crate) struct FileSource {
    file: PathBuf,
    label: String,
    format: Format,
    /// The local revision of the last version yielded.
    revision: u64,
    /// The bytes last read (parsed or not), to skip rewrites of the same text.
    last: Vec<u8>,
    /// Times the file was read after the first.
    rereads: u64,
    /// The first version, until it is asked for.
    first: Option<WatchEvent>,
    changed: mpsc::UnboundedReceiver<()>,
    /// The directory watched, and which one it was when the watch began.
    dir: PathBuf,
    dir_id: Option<DirId>,
    /// Removals of the directory the watcher has seen (its inode may be
    /// reused at once by a new one of the same name), and how many of them
    /// had been seen when the current watch began.
    dir_removals: Arc<AtomicU64>,
    dir_removals_seen: u64,
    watcher: RecommendedWatcher,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("file", &self.file)
            .field("revision", &self.revision)
            .finish()
    }
}

impl FileSource {
    /// Starts watching `file` and reads it. Fails if its extension is not
    /// `.json`, `.yaml`, `.yml` or `.toml`, or it cannot be read or parsed now.
    pub(crate) fn open(file: &Path) -> Result<FileSource> {
        let label = file.display().to_string();
        let format = file
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{label}: the file name must end in .json, .yaml, .yml or .toml"
                ))
            })?;
        let name = file
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{label} names no file")))?
            .to_os_string();
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A symlink (a Kubernetes ConfigMap mount swaps a `..data` link in
        // the directory): any change in the directory may be a new version.
        let any_change = std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
        let (tx, changed) = mpsc::unbounded_channel();
        let watched_dir = dir.clone();
        let dir_removals = Arc::new(AtomicU64::new(0));
        let removals = Arc::clone(&dir_removals);
        let file_error = |message: String| Error::File {
            path: label.clone(),
            message,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    // Opening and reading (ours included) change nothing;
                    // reacting would make every read cause another.
                    Ok(event) if event.kind.is_access() => {}
                    Ok(event) => {
                        // The directory itself: it may be gone, and its watch with it.
                        let on_dir = event.paths.contains(&watched_dir);
                        if on_dir && event.kind.is_remove() {
                            removals.fetch_add(1, Ordering::SeqCst);
                        }
                        let on_file = event.paths.iter().any(|p| p.file_name() == Some(&name));
                        if any_change || on_file || on_dir {
                            let _ = tx.send(());
                        }
                    }
                    // An overflowed queue may hide a change: read again.
                    Err(_) => {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|e| file_error(format!("cannot watch: {e}")))?;
        // Which directory, before the watch: if it is replaced in between,
        // the next event finds it changed and watches again.
        let dir_id = dir_id(&dir);
        // Watch first, then read: a change in between is not missed.
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| file_error(format!("cannot watch {}: {e}", dir.display())))?;
        let bytes = std::fs::read(file).map_err(|e| file_error(format!("cannot read: {e}")))?;
        let mut source = FileSource {
            file: file.to_path_buf(),
            label,
            format,
            revision: 0,
            last: Vec::new(),
            rereads: 0,
            first: None,
            changed,
            dir,
            dir_id,
            dir_removals,
            dir_removals_seen: 0,
            watcher,
        };
        source.first = Some(source.version(bytes)?);
        Ok(source)
    }

    /// The name documents and errors carry: the path as given.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Parses `bytes` as the next version.
    fn version(&mut self, bytes: Vec<u8>) -> Result<WatchEvent> {
        self.last = bytes;
        let parsed = std::str::from_utf8(&self.last)
            .map_err(|e| format!("not UTF-8 text: {e}"))
            .and_then(|text| parse_document(text, self.format).map_err(|e| e.to_string()))
            .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()));
        let value = parsed.map_err(|message| Error::File {
            path: self.label.clone(),
            message,
        })?;
        self.revision += 1;
        Ok(WatchEvent::Snapshot {
            revision: self.revision,
            entries: vec![NamespaceEntry {
                path: self.label.clone(),
                version: self.revision,
                mod_revision: self.revision,
                value: Some(value),
            }],
            reason: "file".into(),
        })
    }

    /// Waits for the next change that yields something.
    async fn next_version(&mut self) -> Option<Result<WatchEvent>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        loop {
            // A replaced directory sends nothing more: do not wait for it
            // (a caller that gave up waiting may have taken its last event).
            if !self.dir_replaced() {
                self.changed.recv().await?;
                tokio::time::sleep(SETTLE).await;
                while self.changed.try_recv().is_ok() {}
            }
            if self.dir_replaced() {
                self.watch_again().await;
            }
            self.rereads += 1;
            let bytes = match tokio::fs::read(&self.file).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(file = %self.label, "file gone; waiting for it to come back");
                    continue;
                }
                Err(e) => {
                    return Some(Err(Error::File {
                        path: self.label.clone(),
                        message: format!("cannot read: {e}"),
                    }))
                }
            };
            // Empty: truncated, the new text not written yet.
            if bytes.is_empty() || bytes == self.last {
                continue;
            }
            return Some(self.version(bytes));
        }
    }

    /// Whether the directory watched is gone or is another one now.
    fn dir_replaced(&self) -> bool {
        let now = dir_id(&self.dir);
        self.dir_removals.load(Ordering::SeqCst) != self.dir_removals_seen
            || now.is_none()
            || now != self.dir_id
    }

    /// Watches the directory again, once it exists: the old watch went with
    /// the directory it was on.
    async fn watch_again(&mut self) {
        tracing::info!(dir = %self.dir.display(), "the watched directory is gone or replaced; watching it again when it exists");
        // Nothing changes until the new watch is in place: a caller that
        // stops waiting meanwhile leaves the source still due to watch again.
        loop {
            // Which directory, and how many removals, before the watch: a
            // removal reported after it (even a late one of the old
            // directory) only makes the source watch once more.
            let removals = self.dir_removals.load(Ordering::SeqCst);
            if let Some(id) = dir_id(&self.dir) {
                let _ = self.watcher.unwatch(&self.dir);
                match self.watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.dir_id = Some(id);
                        self.dir_removals_seen = removals;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch yet")
                    }
                }
            }
            tokio::time::sleep(REWATCH_POLL).await;
        }
    }
}

/// Which directory is at a path: its device and inode where there are any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId(u64, u64);

/// The directory at `dir` (`None`: there is none).
fn dir_id(dir: &Path) -> Option<DirId> {
    let meta = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(DirId(meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some(DirId(0, 0))
    }
}

impl EventSource for FileSource {
    fn next_event(&mut self) -> impl Future<Output = Option<Result<WatchEvent>>> + Send {
        self.next_version()
    }

    fn ack(&mut self, _revision: u64) {}

    fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>) {
        tracing::debug!(path, revision, ?reasons, "file version refused");
    }
}

#[cfg(test)]
#[path = "file_source_tests.rs"]
mod tests;
