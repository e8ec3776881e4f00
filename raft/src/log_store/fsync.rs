//! fsync helpers. A failed fsync stops the process: after one, the kernel may
//! have dropped the dirty pages and cleared the error, so nothing can tell what
//! reached the disk, and carrying on could acknowledge writes that are lost.

use std::fs::File;
use std::io;
use std::path::Path;

/// `fdatasync` of `file`, or abort the process.
pub(super) fn sync_data_or_abort(file: &File, path: &Path) {
    if let Err(error) = file.sync_data() {
        tracing::error!(file = %path.display(), %error, "fsync failed: stopping the process, durability of the log is unknown");
        std::process::abort();
    }
}

/// fsyncs a directory (so that created, renamed and removed entries in it are
/// durable), or aborts the process if the fsync itself fails.
pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    if let Err(error) = handle.sync_all() {
        tracing::error!(dir = %dir.display(), %error, "directory fsync failed: stopping the process");
        std::process::abort();
    }
    Ok(())
}
