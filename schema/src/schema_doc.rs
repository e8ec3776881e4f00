//! JSON Schema documents: parsed from JSON, YAML or TOML, checked, and
//! compiled as draft 2020-12 with the `jsonschema` crate.
//!
//! Compiling never does I/O: raftconf never fetches a schema over the network
//! or from a file. Every `$ref` must be resolvable inside the schema itself
//! (`#/$defs/…`, an `$anchor`, or a resource the schema embeds with `$id`);
//! one that is not is refused here, naming where it is, rather than when a
//! write first reaches it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::document::{canonical_json, depth_of, describe, parse_value};
use crate::pointer::{parse_index, push_token, split_pointer};
use crate::validation::CompiledSchema;
use crate::{Error, Format, Result, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH};

/// The `$schema` URI of the one dialect raftconf accepts. `http://` and a
/// trailing `#` are accepted too; no `$schema` means this one.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A JSON Schema that has passed the checks that need no compiling: it is an
/// object or a boolean, within [`MAX_SCHEMA_BYTES`] and [`MAX_SCHEMA_DEPTH`],
/// names no dialect but 2020-12, and refers to nothing outside itself.
///
/// # Examples
///
/// ```
/// use raftconf_schema::{Format, SchemaDocument};
/// use serde_json::json;
///
/// let schema = SchemaDocument::parse("properties: {port: {minimum: 1}}\nrequired: [host]", Format::Yaml)?
///     .compile()?;
/// let violations = schema.validate(&json!({"port": 0}));
/// let found: Vec<String> = violations.iter().map(ToString::to_string).collect();
/// assert_eq!(found, [
///     "the document root: \"host\" is a required property",
///     "/port: 0 is less than the minimum of 1",
/// ]);
/// # Ok::<(), raftconf_schema::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDocument {
    value: Value,
    canonical: String,
}

impl SchemaDocument {
    /// Parses schema text in `format` (usually JSON or YAML) and checks it
    /// (see [`SchemaDocument::from_value`]). Syntax errors are
    /// [`Error::Malformed`] with a line and column, as for documents.
    pub fn parse(text: &str, format: Format) -> Result<SchemaDocument> {
        SchemaDocument::from_value(parse_value(text, format)?)
    }

    /// Checks a schema value: an object or a boolean; nesting at most
    /// [`MAX_SCHEMA_DEPTH`]; canonical JSON at most [`MAX_SCHEMA_BYTES`];
    /// every `$schema` (at the root or in an embedded resource) names draft
    /// 2020-12; every `$ref` and `$dynamicRef` stays inside the schema, and
    /// when the schema embeds no resources of its own (`$id` below the root),
    /// every `#/…` pointer and `#name` anchor they use exists.
    pub fn from_value(value: Value) -> Result<SchemaDocument> {
        if !(value.is_object() || value.is_boolean()) {
            return Err(invalid(
                "",
                format!(
                    "a schema is a JSON object (or the boolean true or false), got {}",
                    describe(&value)
                ),
            ));
        }
        let depth = depth_of(&value);
        if depth > MAX_SCHEMA_DEPTH {
            return Err(Error::LimitExceeded {
                limit: "schema depth",
                max: MAX_SCHEMA_DEPTH as u64,
                actual: depth as u64,
            });
        }
        let canonical = canonical_json(&value);
        if canonical.len() > MAX_SCHEMA_BYTES {
            return Err(Error::LimitExceeded {
                limit: "schema size",
                max: MAX_SCHEMA_BYTES as u64,
                actual: canonical.len() as u64,
            });
        }
        let mut subschemas = Vec::new();
        collect_subschemas(&value, &mut String::new(), &mut subschemas);
        check_dialects(&subschemas)?;
        check_references(&value, &subschemas)?;
        Ok(SchemaDocument { value, canonical })
    }

    /// The schema as a JSON value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The schema's canonical JSON (sorted keys, no whitespace): the stored form.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }

    /// Compiles the schema for validation. Refuses what breaks the 2020-12
    /// meta-schema (a keyword with a value of the wrong kind, a `pattern`
    /// that is not a regular expression) and a reference that cannot be
    /// resolved, as [`Error::InvalidSchema`] with the pointer into the schema.
    ///
    /// The build is pinned so every node gives the same verdict: draft
    /// 2020-12 whatever `$schema` says (only 2020-12 gets this far), no
    /// retrieval of any kind, `format` as an annotation only (the 2020-12
    /// default), and the `regex` engine for `pattern` (linear time, so no
    /// schema can make a write take exponential time; it has no look-around
    /// or backreferences, and a pattern that uses them is refused here).
    pub fn compile(&self) -> Result<CompiledSchema> {
        let validator = jsonschema::draft202012::options()
            .offline()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&self.value)
            .map_err(|e| self.compile_error(&e))?;
        Ok(CompiledSchema::new(self.clone(), validator))
    }

    fn compile_error(&self, error: &jsonschema::ValidationError<'_>) -> Error {
        use jsonschema::error::ValidationErrorKind;
        use jsonschema::ReferencingError as R;

        let ValidationErrorKind::Referencing(reference) = error.kind() else {
            // The schema is the instance the meta-schema validated: the
            // instance path is the pointer into the schema.
            return invalid(error.instance_path().as_str(), error.to_string());
        };
        let mut subschemas = Vec::new();
        collect_subschemas(&self.value, &mut String::new(), &mut subschemas);
        let sites = reference_sites(&subschemas);
        let found = |matches: &dyn Fn(&Reference<'_>) -> bool| sites.iter().find(|s| matches(s));
        let site = match reference {
            R::Unretrievable { uri, .. } => found(&|s: &Reference<'_>| {
                !s.resource.is_empty() && uri.trim_end_matches('#').ends_with(s.resource)
            }),
            R::PointerToNowhere { pointer } | R::InvalidPercentEncoding { pointer, .. } => {
                found(&|s: &Reference<'_>| s.fragment == Some(pointer.as_str()))
            }
            R::InvalidArrayIndex { pointer, .. } => {
                found(&|s: &Reference<'_>| s.fragment == Some(pointer.as_str()))
            }
            R::NoSuchAnchor { anchor } | R::InvalidAnchor { anchor } => {
                found(&|s: &Reference<'_>| s.fragment == Some(anchor.as_str()))
            }
            _ => None,
        };
        let detail = match reference {
            R::Unretrievable { uri, .. } => format!(
                "{uri:?} is not part of this schema, and raftconf never fetches schemas \
                 (no network, no files): {OUTSIDE_HINT}"
            ),
            other => other.to_string(),
        };
        match site {
            Some(site) => invalid(
                &site.pointer,
                format!("{} {:?}: {detail}", site.keyword, site.value),
            ),
            None => invalid("", detail),
        }
    }
}

const OUTSIDE_HINT: &str =
    "copy the definition under \"$defs\" and refer to it as \"#/$defs/NAME\"";

fn invalid(schema_pointer: &str, message: impl Into<String>) -> Error {
    Error::InvalidSchema {
        schema_pointer: schema_pointer.to_string(),
        message: message.into(),
    }
}

/// Keywords whose value is one schema (2020-12, plus the older array form of `items`).
const SCHEMA_KEYWORDS: &[&str] = &[
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value maps names to schemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "$defs",
    "definitions",
    "dependentSchemas",
    "patternProperties",
    "properties",
];
/// Keywords whose value is an array of schemas.
const SCHEMA_ARRAY_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

/// Every object subschema with its pointer, the root first, in document
/// order. Values of other keywords (`const`, `enum`, `default`, `examples`)
/// are data, not schemas, and are not entered.
fn collect_subschemas<'v>(
    schema: &'v Value,
    pointer: &mut String,
    out: &mut Vec<(String, &'v Map<String, Value>)>,
) {
    let Value::Object(map) = schema else {
        return;
    };
    out.push((pointer.clone(), map));
    let base = pointer.len();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let Some(value) = map.get(key) else {
            continue;
        };
        let mut enter = |pointer: &mut String, tokens: &[&str], child: &'v Value| {
            for token in tokens {
                push_token(pointer, token);
            }
            collect_subschemas(child, pointer, out);
            pointer.truncate(base);
        };
        let keyword = key.as_str();
        match value {
            Value::Object(children) if SCHEMA_MAP_KEYWORDS.contains(&keyword) => {
                let mut names: Vec<&String> = children.keys().collect();
                names.sort();
                for name in names {
                    if let Some(child) = children.get(name) {
                        enter(pointer, &[keyword, name], child);
                    }
                }
            }
            Value::Array(items)
                if SCHEMA_ARRAY_KEYWORDS.contains(&keyword) || keyword == "items" =>
            {
                for (i, child) in items.iter().enumerate() {
                    enter(pointer, &[keyword, &i.to_string()], child);
                }
            }
            child if SCHEMA_KEYWORDS.contains(&keyword) => enter(pointer, &[keyword], child),
            _ => {}
        }
    }
}

/// Refuses any `$schema` that does not name draft 2020-12.
fn check_dialects(subschemas: &[(String, &Map<String, Value>)]) -> Result<()> {
    for (pointer, schema) in subschemas {
        let Some(dialect) = schema.get("$schema") else {
            continue;
        };
        let mut at = pointer.clone();
        push_token(&mut at, "$schema");
        let Some(uri) = dialect.as_str() else {
            return Err(invalid(
                &at,
                format!(
                    "\"$schema\" must be a URI string, got {}",
                    describe(dialect)
                ),
            ));
        };
        let trimmed = uri.trim_end_matches('#');
        if trimmed == DRAFT_2020_12 || trimmed == "http://json-schema.org/draft/2020-12/schema" {
            continue;
        }
        let named = match jsonschema::Draft::from_schema_uri(uri) {
            jsonschema::Draft::Draft4 => "draft-04",
            jsonschema::Draft::Draft6 => "draft-06",
            jsonschema::Draft::Draft7 => "draft-07",
            jsonschema::Draft::Draft201909 => "draft 2019-09",
            // The version-less URI means "the latest draft", which changes
            // under a schema when the library does: refuse it too.
            jsonschema::Draft::Draft202012 => "whichever draft is the latest",
            _ => "a meta-schema raftconf does not know",
        };
        return Err(invalid(
            &at,
            format!(
                "\"$schema\" {uri:?} names {named}; raftconf schemas are JSON Schema draft \
                 2020-12: remove \"$schema\" or set it to {DRAFT_2020_12:?} (and update \
                 keywords that changed, e.g. \"definitions\" → \"$defs\", array \"items\" → \
                 \"prefixItems\")"
            ),
        ));
    }
    Ok(())
}

/// A `$ref` or `$dynamicRef` in the schema.
struct Reference<'v> {
    /// Pointer to the keyword itself, e.g. `/properties/a/$ref`.
    pointer: String,
    keyword: &'static str,
    value: &'v str,
    /// The part before `#` (empty for a fragment-only reference).
    resource: &'v str,
    /// The part after `#`, when there is a `#`.
    fragment: Option<&'v str>,
}

fn reference_sites<'v>(subschemas: &[(String, &'v Map<String, Value>)]) -> Vec<Reference<'v>> {
    let mut sites = Vec::new();
    for (pointer, schema) in subschemas {
        for keyword in ["$ref", "$dynamicRef"] {
            let Some(value) = schema.get(keyword).and_then(Value::as_str) else {
                continue;
            };
            let (resource, fragment) = match value.split_once('#') {
                Some((resource, fragment)) => (resource, Some(fragment)),
                None => (value, None),
            };
            let mut at = pointer.clone();
            push_token(&mut at, keyword);
            sites.push(Reference {
                pointer: at,
                keyword,
                value,
                resource,
                fragment,
            });
        }
    }
    sites
}

/// Refuses references that leave the schema, and (when they cannot depend on
/// an embedded resource's base URI) references to pointers or anchors that
/// do not exist.
fn check_references(root: &Value, subschemas: &[(String, &Map<String, Value>)]) -> Result<()> {
    let ids: BTreeSet<&str> = subschemas
        .iter()
        .filter_map(|(_, s)| s.get("$id").and_then(Value::as_str))
        .map(|id| id.trim_end_matches('#'))
        .collect();
    let embeds_resources = subschemas
        .iter()
        .any(|(pointer, s)| !pointer.is_empty() && s.contains_key("$id"));
    let anchors: BTreeSet<&str> = subschemas
        .iter()
        .flat_map(|(_, s)| ["$anchor", "$dynamicAnchor"].map(|k| s.get(k)))
        .flatten()
        .filter_map(Value::as_str)
        .collect();

    for site in reference_sites(subschemas) {
        let here = |detail: String| {
            invalid(
                &site.pointer,
                format!("{} {:?} {detail}", site.keyword, site.value),
            )
        };
        if !site.resource.is_empty() {
            // A URI with a scheme is either an `$id` given in this schema or
            // the 2020-12 meta-schema, which the library holds; a relative one
            // can only resolve against an `$id` here.
            let allowed = if has_scheme(site.resource) {
                ids.contains(site.resource)
                    || site
                        .resource
                        .starts_with("https://json-schema.org/draft/2020-12/")
            } else {
                !ids.is_empty()
            };
            if !allowed {
                return Err(here(format!(
                    "refers to a schema outside this one, and raftconf never fetches schemas \
                     (no network, no files): {OUTSIDE_HINT}"
                )));
            }
            continue;
        }
        if embeds_resources {
            // `#…` is relative to the nearest `$id`; the compiler checks it.
            continue;
        }
        let fragment = site.fragment.unwrap_or("");
        if fragment.is_empty() || fragment.starts_with('/') {
            let Some(decoded) = percent_decode(fragment) else {
                return Err(here(
                    "has an invalid percent-encoding (%XX) in its fragment".into(),
                ));
            };
            if !pointer_exists(root, &decoded) {
                return Err(here(format!(
                    "points to {decoded}, which does not exist in this schema"
                )));
            }
        } else if !anchors.contains(fragment) {
            return Err(here(format!(
                "names the anchor {fragment:?}, but no \"$anchor\" or \"$dynamicAnchor\" in \
                 this schema has that name"
            )));
        }
    }
    Ok(())
}

/// Whether a URI reference starts with a scheme (`http:`, `urn:` …; RFC 3986).
fn has_scheme(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let digits = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `pointer` names a value inside `root`.
fn pointer_exists(root: &Value, pointer: &str) -> bool {
    let Ok(tokens) = split_pointer(pointer) else {
        return false;
    };
    let mut current = root;
    for token in &tokens {
        let next = match current {
            Value::Object(map) => map.get(token),
            Value::Array(items) => parse_index(token).and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => current = value,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(schema: Value) -> (String, String) {
        let result = SchemaDocument::from_value(schema).and_then(|d| d.compile());
        match result {
            Err(Error::InvalidSchema {
                schema_pointer,
                message,
            }) => (schema_pointer, message),
            Err(other) => panic!("expected InvalidSchema, got {other:?}"),
            Ok(_) => panic!("expected InvalidSchema, got a compiled schema"),
        }
    }

    #[test]
    fn objects_and_booleans_are_schemas() {
        for schema in [
            json!({}),
            json!(true),
            json!(false),
            json!({"type": "object"}),
        ] {
            SchemaDocument::from_value(schema.clone())
                .and_then(|d| d.compile())
                .unwrap_or_else(|e| panic!("{schema}: {e}"));
        }
        let (pointer, message) = refused(json!([{"type": "object"}]));
        assert_eq!(pointer, "");
        assert!(message.contains("got an array"), "{message}");
    }

    #[test]
    fn only_draft_2020_12_is_accepted() {
        for uri in [
            "https://json-schema.org/draft/2020-12/schema",
            "https://json-schema.org/draft/2020-12/schema#",
            "http://json-schema.org/draft/2020-12/schema",
        ] {
            assert!(
                SchemaDocument::from_value(json!({"$schema": uri})).is_ok(),
                "{uri}"
            );
        }
        let (pointer, message) = refused(json!({
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object"
        }));
        assert_eq!(pointer, "/$schema");
        assert!(message.contains("names draft-07"), "{message}");
        assert!(message.contains(DRAFT_2020_12), "{message}");
        let (_, message) =
            refused(json!({"$schema": "https://json-schema.org/draft/2019-09/schema"}));
        assert!(message.contains("2019-09"), "{message}");
        let (_, message) = refused(json!({"$schema": "https://example.com/my-meta"}));
        assert!(message.contains("does not know"), "{message}");
        let (pointer, message) = refused(json!({"$schema": 7}));
        assert_eq!(pointer, "/$schema");
        assert!(message.contains("a number"), "{message}");
        // An embedded resource cannot switch dialects either.
        let (pointer, _) = refused(json!({"$defs": {"old": {
            "$id": "https://example.com/old",
            "$schema": "http://json-schema.org/draft-04/schema#"
        }}}));
        assert_eq!(pointer, "/$defs/old/$schema");
        // A property called "$schema" and a constant holding one are data.
        assert!(SchemaDocument::from_value(json!({
            "properties": {"$schema": {"type": "string"}},
            "const": {"$schema": "http://json-schema.org/draft-07/schema#"}
        }))
        .is_ok());
    }

    #[test]
    fn references_outside_the_schema_are_refused_without_io() {
        for (schema, pointer) in [
            (json!({"$ref": "http://example.com/x.json"}), "/$ref"),
            (
                json!({"properties": {"a": {"$ref": "https://example.com/s#/a"}}}),
                "/properties/a/$ref",
            ),
            (
                json!({"$defs": {"unused": {"$ref": "file:///etc/passwd"}}}),
                "/$defs/unused/$ref",
            ),
            (
                json!({"items": {"$dynamicRef": "other.json#meta"}}),
                "/items/$dynamicRef",
            ),
            (
                json!({"$id": "https://example.com/root", "$ref": "https://example.com/other"}),
                "/$ref",
            ),
        ] {
            let (at, message) = refused(schema.clone());
            assert_eq!(at, pointer, "{schema}");
            assert!(message.contains("never fetches"), "{message}");
            assert!(message.contains("#/$defs/NAME"), "{message}");
        }
    }

    #[test]
    fn references_inside_the_schema_resolve() {
        let schema = json!({
            "$id": "https://example.com/root",
            "$defs": {
                "port": {"type": "integer", "$anchor": "port"},
                "a b": {"type": "string"},
                "tuple": {"prefixItems": [{"const": 1}]}
            },
            "properties": {
                "p": {"$ref": "#/$defs/port"},
                "q": {"$ref": "#port"},
                "r": {"$ref": "#/$defs/a%20b"},
                "s": {"$ref": "https://example.com/root#/$defs/port"},
                "t": {"$ref": "#"},
                "u": {"$ref": "#/$defs/tuple/prefixItems/0"}
            }
        });
        SchemaDocument::from_value(schema)
            .and_then(|d| d.compile())
            .unwrap_or_else(|e| panic!("{e}"));
        // The 2020-12 meta-schema ships with the library: no fetch.
        SchemaDocument::from_value(json!({"$ref": DRAFT_2020_12}))
            .and_then(|d| d.compile())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn dangling_local_references_are_refused_even_when_unused() {
        let (pointer, message) = refused(json!({"$defs": {"x": {"$ref": "#/$defs/nope"}}}));
        assert_eq!(pointer, "/$defs/x/$ref");
        assert!(
            message.contains("/$defs/nope, which does not exist"),
            "{message}"
        );
        let (pointer, message) = refused(json!({"properties": {"a": {"$ref": "#missing"}}}));
        assert_eq!(pointer, "/properties/a/$ref");
        assert!(message.contains("anchor \"missing\""), "{message}");
        let (_, message) = refused(json!({"$ref": "#/$defs/%zz"}));
        assert!(message.contains("percent-encoding"), "{message}");
    }

    #[test]
    fn dangling_references_in_embedded_resources_are_located_after_compiling() {
        let (pointer, message) = refused(json!({
            "properties": {"a": {"$ref": "https://example.com/inner"}},
            "$defs": {"inner": {"$id": "https://example.com/inner", "$ref": "#/$defs/nope"}}
        }));
        assert_eq!(pointer, "/$defs/inner/$ref", "{message}");
        assert!(message.contains("/$defs/nope"), "{message}");
    }

    #[test]
    fn bad_keyword_values_name_their_place() {
        let (pointer, message) = refused(json!({"properties": {"a": {"minimum": "x"}}}));
        assert_eq!(pointer, "/properties/a/minimum");
        assert!(
            message.contains("\"x\" is not of type \"number\""),
            "{message}"
        );
        let (pointer, _) = refused(json!({"properties": {"a": {"type": "strin"}}}));
        assert_eq!(pointer, "/properties/a/type");
        let (pointer, message) = refused(json!({"properties": {"a": {"pattern": "("}}}));
        assert_eq!(pointer, "/properties/a/pattern");
        assert!(message.contains("regex"), "{message}");
        let (pointer, _) = refused(json!({"properties": {"a": {"pattern": "(?=look)ahead"}}}));
        assert_eq!(pointer, "/properties/a/pattern");
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        match SchemaDocument::from_value(big) {
            Err(Error::LimitExceeded { limit, max, actual }) => {
                assert_eq!(limit, "schema size");
                assert_eq!(max, MAX_SCHEMA_BYTES as u64);
                assert!(actual > max);
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        let mut deep = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({"not": deep});
        }
        match SchemaDocument::from_value(deep) {
            Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "schema depth"),
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
    }

    #[test]
    fn the_deepest_schema_compiles_on_a_small_stack() {
        // Server threads may have 2 MiB stacks (tokio's default).
        let mut deep = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH - 1 {
            deep = json!({"not": deep});
        }
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let compiled = SchemaDocument::from_value(deep)
                    .and_then(|d| d.compile())
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(compiled.validate(&json!({"a": 1})).len())
            })
            .expect("spawns");
        let violations = handle.join().expect("no stack overflow").expect("compiles");
        // An odd number of `not`s around "a string": an object passes.
        assert_eq!(violations, 0);
    }

    #[test]
    fn text_parses_as_json_yaml_or_toml_with_positions() {
        let yaml = "type: object\nproperties:\n  port: {type: integer}\n";
        let json = r#"{"type":"object","properties":{"port":{"type":"integer"}}}"#;
        let from_yaml = SchemaDocument::parse(yaml, Format::Yaml).expect("yaml");
        let from_json = SchemaDocument::parse(json, Format::Json).expect("json");
        assert_eq!(from_yaml, from_json);
        assert_eq!(
            from_json.canonical_json(),
            r#"{"properties":{"port":{"type":"integer"}},"type":"object"}"#
        );
        assert_eq!(
            SchemaDocument::parse("true", Format::Yaml)
                .expect("bool")
                .value(),
            &json!(true)
        );
        match SchemaDocument::parse("{\"type\": }", Format::Json) {
            Err(Error::Malformed { line, column, .. }) => assert_eq!((line, column), (1, 10)),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}
