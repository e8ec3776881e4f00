//! The documented limits. Changing one is a release note.

/// Largest document, in bytes of its canonical JSON (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Largest document text accepted before parsing, in bytes (4 MiB: YAML and
/// pretty JSON are larger than their canonical form).
pub const MAX_DOCUMENT_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting of objects and arrays in a document.
pub const MAX_DOCUMENT_DEPTH: usize = 64;

/// Most live namespaces in one environment.
pub const MAX_NAMESPACES_PER_ENV: u64 = 10_000;

/// Longest history message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Largest schema, in bytes of its canonical JSON (256 KiB). A schema is
/// compiled on every node and kept compiled; it describes documents, it does
/// not hold data.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// Deepest nesting of objects and arrays in a schema. Twice
/// [`MAX_DOCUMENT_DEPTH`]: describing one level of a document takes two
/// (`{"properties": {"key": …}}`).
pub const MAX_SCHEMA_DEPTH: usize = 2 * MAX_DOCUMENT_DEPTH;

/// Longest violation message, in bytes. A message that would quote a larger
/// value names it "value" instead, and one still too long is cut.
pub const MAX_VIOLATION_MESSAGE_BYTES: usize = 512;

/// Most versions of a namespace a tenant may keep in history (its
/// `history_depth` setting; the cluster's default is 100).
pub const MAX_HISTORY_DEPTH: u64 = 10_000;
