//! Validating documents against a compiled schema: every violation, in an
//! order every node agrees on; and checking a new schema against the
//! documents it would govern.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pointer::describe_pointer;
use crate::schema_doc::SchemaDocument;
use crate::MAX_VIOLATION_MESSAGE_BYTES;

/// One way a document breaks its schema.
///
/// The field order is the sort order: by `pointer`, then `schema_pointer`,
/// then `message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer into the document to the offending value; `""` for the
    /// document itself (e.g. a missing required member).
    pub pointer: String,
    /// JSON pointer into the schema to the keyword that failed, e.g.
    /// `/properties/port/minimum` (where it is written, not the path through
    /// `$ref`s that led there).
    pub schema_pointer: String,
    /// What is wrong, e.g. `0 is less than the minimum of 1`; at most
    /// [`MAX_VIOLATION_MESSAGE_BYTES`].
    pub message: String,
}

impl fmt::Display for Violation {
    /// `/port: 0 is less than the minimum of 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", describe_pointer(&self.pointer), self.message)
    }
}

/// A schema ready to validate documents. `Send + Sync`: compile once, share
/// it in an `Arc` (see [`crate::SchemaCache`]).
pub struct CompiledSchema {
    document: SchemaDocument,
    validator: jsonschema::Validator,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("schema", &self.document.canonical_json())
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    pub(crate) fn new(document: SchemaDocument, validator: jsonschema::Validator) -> Self {
        CompiledSchema {
            document,
            validator,
        }
    }

    /// The schema this was compiled from.
    pub fn document(&self) -> &SchemaDocument {
        &self.document
    }

    /// Whether `doc` satisfies the schema (faster than [`Self::validate`]
    /// when the violations are not wanted).
    pub fn is_valid(&self, doc: &Value) -> bool {
        self.validator.is_valid(doc)
    }

    /// Every violation of the schema by `doc`, sorted (see [`Violation`]) and
    /// without duplicates; empty when `doc` is valid. The same schema and
    /// document give the same list on every node.
    ///
    /// A failed `anyOf`/`oneOf`/`not` is one violation at the value, not one
    /// per alternative. A message that would quote a long value quotes none
    /// ("value is not of type …").
    pub fn validate(&self, doc: &Value) -> Vec<Violation> {
        let mut violations: Vec<Violation> = self
            .validator
            .iter_errors(doc)
            .map(|error| Violation {
                pointer: error.instance_path().as_str().to_string(),
                schema_pointer: error.schema_path().as_str().to_string(),
                message: bounded_message(&error),
            })
            .collect();
        violations.sort();
        violations.dedup();
        violations
    }
}

/// The error's message, or its masked form (no instance value) when that is
/// too long, cut at [`MAX_VIOLATION_MESSAGE_BYTES`] if even that is.
fn bounded_message(error: &jsonschema::ValidationError<'_>) -> String {
    bound_message(error.to_string(), || error.masked().to_string())
}

fn bound_message(full: String, masked: impl FnOnce() -> String) -> String {
    if full.len() <= MAX_VIOLATION_MESSAGE_BYTES {
        return full;
    }
    let mut masked = masked();
    if masked.len() > MAX_VIOLATION_MESSAGE_BYTES {
        let mut end = MAX_VIOLATION_MESSAGE_BYTES - '…'.len_utf8();
        while !masked.is_char_boundary(end) {
            end -= 1;
        }
        masked.truncate(end);
        masked.push('…');
    }
    masked
}

/// The documents that `schema` would reject, each with its label (e.g. the
/// environment it lives in) and its violations; empty when the schema can
/// replace the current one without breaking any of them. Sorted by label
/// (stably: documents with equal labels keep their order).
pub fn check_compatible<'d, I>(schema: &CompiledSchema, docs: I) -> Vec<(String, Vec<Violation>)>
where
    I: IntoIterator<Item = (String, &'d Value)>,
{
    let mut broken: Vec<(String, Vec<Violation>)> = docs
        .into_iter()
        .filter_map(|(label, doc)| {
            let violations = schema.validate(doc);
            (!violations.is_empty()).then_some((label, violations))
        })
        .collect();
    broken.sort_by(|a, b| a.0.cmp(&b.0));
    broken
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(schema: Value) -> CompiledSchema {
        SchemaDocument::from_value(schema)
            .and_then(|d| d.compile())
            .unwrap_or_else(|e| panic!("schema compiles: {e}"))
    }

    fn violation(pointer: &str, schema_pointer: &str, message: &str) -> Violation {
        Violation {
            pointer: pointer.into(),
            schema_pointer: schema_pointer.into(),
            message: message.into(),
        }
    }

    fn server_schema() -> CompiledSchema {
        compile(json!({
            "type": "object",
            "required": ["host", "port"],
            "properties": {
                "host": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}
            },
            "$defs": {"tag": {"type": "string", "maxLength": 3}}
        }))
    }

    #[test]
    fn every_violation_is_listed_with_both_pointers() {
        let schema = server_schema();
        let doc = json!({"port": 0, "tags": ["ok", 5, "long"]});
        assert_eq!(
            schema.validate(&doc),
            vec![
                violation("", "/required", "\"host\" is a required property"),
                violation(
                    "/port",
                    "/properties/port/minimum",
                    "0 is less than the minimum of 1"
                ),
                violation("/tags/1", "/$defs/tag/type", "5 is not of type \"string\""),
                violation(
                    "/tags/2",
                    "/$defs/tag/maxLength",
                    "\"long\" is longer than 3 characters"
                ),
            ]
        );
        assert!(!schema.is_valid(&doc));
        let good = json!({"host": "h", "port": 80, "tags": ["a"]});
        assert!(schema.validate(&good).is_empty());
        assert!(schema.is_valid(&good));
    }

    #[test]
    fn two_wrong_fields_and_a_missing_one_are_three_violations() {
        let schema = server_schema();
        let violations = schema.validate(&json!({"port": "80", "tags": [1]}));
        assert_eq!(
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "the document root: \"host\" is a required property",
                "/port: \"80\" is not of type \"integer\"",
                "/tags/0: 1 is not of type \"string\"",
            ]
        );
        // Validation is deterministic: the same list every time.
        assert_eq!(
            schema.validate(&json!({"port": "80", "tags": [1]})),
            violations
        );
    }

    #[test]
    fn pointers_escape_slash_and_tilde() {
        let schema =
            compile(json!({"properties": {"a/b": {"properties": {"c~d": {"type": "string"}}}}}));
        assert_eq!(
            schema.validate(&json!({"a/b": {"c~d": 1}})),
            vec![violation(
                "/a~1b/c~0d",
                "/properties/a~1b/properties/c~0d/type",
                "1 is not of type \"string\""
            )]
        );
    }

    #[test]
    fn long_values_are_not_quoted_in_messages() {
        let schema = compile(json!({"properties": {"a": {"type": "string"}}}));
        let long = json!({"a": {"k": "x".repeat(10 * MAX_VIOLATION_MESSAGE_BYTES)}});
        let violations = schema.validate(&long);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].message, "value is not of type \"string\"");
        let schema = compile(json!({"const": "c".repeat(2 * MAX_VIOLATION_MESSAGE_BYTES)}));
        let violations = schema.validate(&json!({}));
        assert_eq!(violations.len(), 1);
        let message = &violations[0].message;
        assert!(message.len() <= MAX_VIOLATION_MESSAGE_BYTES, "{message}");
        assert!(message.ends_with('…'), "{message}");
        // Cut at a character boundary.
        let cut = bound_message("é".repeat(MAX_VIOLATION_MESSAGE_BYTES), || "é".repeat(600));
        assert!(
            cut.len() <= MAX_VIOLATION_MESSAGE_BYTES && cut.ends_with("é…"),
            "{cut}"
        );
    }

    #[test]
    fn compatibility_lists_the_documents_that_would_break() {
        let schema = server_schema();
        let prod = json!({"host": "p", "port": 443});
        let dev = json!({"host": "d", "port": 0});
        let staging = json!({"port": 80});
        let broken = check_compatible(
            &schema,
            [
                ("prod".to_string(), &prod),
                ("staging".to_string(), &staging),
                ("dev".to_string(), &dev),
            ],
        );
        let labels: Vec<&str> = broken.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, vec!["dev", "staging"]);
        assert_eq!(broken[0].1, schema.validate(&dev));
        assert_eq!(broken[1].1.len(), 1);
        assert!(check_compatible(&schema, [("prod".to_string(), &prod)]).is_empty());
    }

    #[test]
    fn compiled_schemas_are_send_and_sync() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<CompiledSchema>();
        shareable::<std::sync::Arc<CompiledSchema>>();
    }
}
