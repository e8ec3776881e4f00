//! Small files replaced atomically and durably: the vote and the purge marker.
//!
//! A write goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and the
//! directory is fsynced: after a crash the file holds either the old or the new
//! contents, never a mix. The contents carry a format version and a crc so a
//! damaged file is reported instead of misread.
//!
//! ```text
//! format version u32 LE | payload len u32 LE | crc32(payload) u32 LE | payload
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::fsync::{fsync_dir, sync_data_or_abort};

/// Format version of the small state files.
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 12;

/// Suffix of the temporary file of an atomic write; leftovers are removed on open.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `payload`, durably.
pub(crate) fn write(dir: &Path, name: &str, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "state file too large"))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);

    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = File::create(&tmp)?;
    file.write_all(&buf)?;
    sync_data_or_abort(&file, &tmp);
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Reads `dir/name`; `None` when it does not exist.
pub(crate) fn read(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let buf = match fs::read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("state file {}: {what}", path.display()),
        )
    };
    if buf.len() < HEADER_LEN {
        return Err(bad("shorter than its header"));
    }
    let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (version, len, crc) = (word(0), word(4) as usize, word(8));
    if version != FORMAT_VERSION {
        return Err(bad(&format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    let payload = &buf[HEADER_LEN..];
    if payload.len() != len {
        return Err(bad(&format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(bad("crc mismatch"));
    }
    Ok(Some(payload.to_vec()))
}
