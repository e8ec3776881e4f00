//! The crate's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a name, a path or a document, said so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A tenant, environment or namespace name breaks the naming rule.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "tenant", "environment" or "namespace".
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Which part of the rule it breaks.
        reason: String,
    },
    /// A path is not `tenant/env/namespace` (or `tenant/env/` where a prefix is allowed).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The document text does not parse.
    #[error("malformed {format} document at line {line}, column {column}: {message}")]
    Malformed {
        /// "JSON", "YAML" or "TOML".
        format: &'static str,
        /// 1-based line (0 when the parser could not tell).
        line: usize,
        /// 1-based column (0 when the parser could not tell).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The document parses but is not a JSON object (or cannot be one).
    #[error("document is not a valid configuration: {0}")]
    NotAnObject(String),
    /// A document format name is not one of `json`, `yaml` (`yml`), `toml`.
    #[error("unknown document format {name:?}: expected json, yaml (or yml) or toml")]
    UnknownFormat {
        /// The name given.
        name: String,
    },
    /// A documented limit is exceeded.
    #[error("{limit} exceeded: the limit is {max}, got {actual}")]
    LimitExceeded {
        /// The limit's documented name.
        limit: &'static str,
        /// The limit.
        max: u64,
        /// The value found.
        actual: u64,
    },
    /// A JSON pointer is malformed (RFC 6901).
    #[error("invalid JSON pointer {pointer:?}: {reason}")]
    InvalidPointer {
        /// The offending pointer.
        pointer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON Schema is refused: it does not parse as a schema, names a draft
    /// other than 2020-12, breaks the 2020-12 meta-schema, or has a `$ref`
    /// that cannot be resolved inside the schema itself.
    #[error("invalid schema at {}: {message}", schema_place(.schema_pointer))]
    InvalidSchema {
        /// JSON pointer into the schema to the offending keyword ("" for the root).
        schema_pointer: String,
        /// What is wrong and, where it helps, how to fix it.
        message: String,
    },
    /// An edit of a document (`raftconf set`) cannot be applied.
    #[error(transparent)]
    Edit(#[from] crate::EditError),
}

/// How a pointer into a schema reads in a message.
fn schema_place(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the schema root"
    } else {
        pointer
    }
}
