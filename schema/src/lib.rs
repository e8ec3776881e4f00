//! raftconf's data-model rules: names and paths, document formats (JSON, YAML
//! and TOML in, canonical JSON stored), the documented limits, and what is
//! done with documents: JSON Schema validation, diffs and edits.
//!
//! - [`path`](NsPath): `tenant/env/namespace` addresses and the naming rule.
//! - [`parse_document`], [`canonical_json`]: text in, canonical JSON out.
//! - [`SchemaDocument`] → [`CompiledSchema`] → [`Violation`]s: JSON Schema
//!   draft 2020-12, compiled without any I/O; [`SchemaCache`] keeps compiled
//!   schemas; [`check_compatible`] tells which documents a new schema breaks.
//! - [`diff`] and [`apply_edits`]/[`parse_edit`]: changes by JSON pointer,
//!   using the one pointer implementation ([`split_pointer`], [`escape_token`] …).
//!
//! Pure: no I/O, no async, no tokio/tonic/sled. Every other crate relies on
//! these rules meaning the same thing everywhere (the proposer and apply on
//! every node must agree), so the JSON Schema library is pinned and built the
//! same way on every node.

mod diff;
mod document;
mod edit;
mod error;
mod limits;
mod path;
mod pointer;
mod schema_cache;
mod schema_doc;
mod validation;

pub use diff::{diff, DiffEntry, DiffKind};
pub use document::{
    canonical_json, describe as describe_json_value, parse_document, parse_format, Format,
};
pub use edit::{apply_edits, parse_edit, Edit, EditError};
pub use error::{Error, Result};
pub use limits::*;
pub use path::{validate_name, EnvPath, NsPath, Target};
pub use pointer::{
    describe_pointer, escape_token, join_pointer, push_token, split_pointer, unescape_token,
};
pub use schema_cache::SchemaCache;
pub use schema_doc::{SchemaDocument, DRAFT_2020_12};
pub use validation::{check_compatible, CompiledSchema, Violation};
