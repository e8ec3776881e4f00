//! Document formats: JSON, YAML and TOML in; canonical JSON out.
//!
//! Every format is first parsed by its own parser, then converted into a
//! `serde_json::Value` by hand (never through serde's generic bridge), so that
//! values JSON cannot hold are refused with a clear reason instead of being
//! silently changed: YAML's `.nan` would otherwise become `null`, a YAML key
//! `1` the string `"1"`. The stored form is [`canonical_json`].

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::pointer::escape_token;
use crate::{Error, Result, MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_TEXT_BYTES};

/// The formats an operator may submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML 1.2 (one document).
    Yaml,
    /// TOML.
    Toml,
}

impl Format {
    /// The format's name as used in error messages: "JSON", "YAML" or "TOML".
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        }
    }

    /// The format a file extension stands for (`json`, `yaml`, `yml`, `toml`;
    /// a leading dot and upper case are accepted). `None` for anything else.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.strip_prefix('.').unwrap_or(ext);
        match ext.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a format name as given on a command line: `json`, `yaml`, `yml` or
/// `toml` (case-insensitive).
pub fn parse_format(name: &str) -> Result<Format> {
    Format::from_extension(name.trim_start_matches('.')).ok_or_else(|| Error::UnknownFormat {
        name: name.to_string(),
    })
}

/// Parses `text` in `format` into a JSON object and returns its canonical JSON.
///
/// Refuses text over [`MAX_DOCUMENT_TEXT_BYTES`], text that does not parse
/// ([`Error::Malformed`] with a 1-based line and column), a document that is
/// not an object, YAML mapping keys that are not strings, non-finite numbers,
/// nesting deeper than [`MAX_DOCUMENT_DEPTH`] and a canonical form over
/// [`MAX_DOCUMENT_BYTES`]. TOML dates and times become strings (RFC 3339).
pub fn parse_document(text: &str, format: Format) -> Result<String> {
    let value = parse_value(text, format)?;
    if !value.is_object() {
        return Err(Error::NotAnObject(format!(
            "the top level must be an object (a mapping of keys to values), got {}",
            describe(&value)
        )));
    }
    let depth = depth_of(&value);
    if depth > MAX_DOCUMENT_DEPTH {
        return Err(Error::LimitExceeded {
            limit: "document depth",
            max: MAX_DOCUMENT_DEPTH as u64,
            actual: depth as u64,
        });
    }
    let canonical = canonical_json(&value);
    if canonical.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::LimitExceeded {
            limit: "document size",
            max: MAX_DOCUMENT_BYTES as u64,
            actual: canonical.len() as u64,
        });
    }
    Ok(canonical)
}

/// Parses `text` in `format` into a JSON value of any kind, refusing text over
/// [`MAX_DOCUMENT_TEXT_BYTES`] and what does not parse or has no JSON form
/// (the checks of [`parse_document`] that do not depend on what the value is for).
pub(crate) fn parse_value(text: &str, format: Format) -> Result<Value> {
    if text.len() > MAX_DOCUMENT_TEXT_BYTES {
        return Err(Error::LimitExceeded {
            limit: "document text size",
            max: MAX_DOCUMENT_TEXT_BYTES as u64,
            actual: text.len() as u64,
        });
    }
    match format {
        Format::Json => parse_json(text),
        Format::Yaml => parse_yaml(text),
        Format::Toml => parse_toml(text),
    }
}

/// Canonical JSON of a value: sorted keys, no insignificant whitespace.
///
/// Keys are sorted here explicitly (by their UTF-8 bytes), so the result does
/// not depend on whether some crate in the build enables serde_json's
/// `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("invariant: serde_json writes UTF-8")
}

/// Keys and scalars go through `serde_json::to_writer` straight into `out`:
/// building a `String` for each was half of this function's time.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, key);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars print the same with or without preserve_order.
        scalar => write_json(out, scalar),
    }
}

/// `value` as JSON at the end of `out`.
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    serde_json::to_writer(out, value)
        .expect("invariant: a string or a JSON scalar serializes into a Vec");
}

/// "an object", "an array", "a string" …: what a JSON value is, for error messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Nesting depth: a scalar is 0, `{}` is 1, `{"a":[1]}` is 2.
pub(crate) fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str::<Value>(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = strip_position(&e.to_string(), &format!(" at line {line} column {column}"));
        Error::Malformed {
            format: Format::Json.name(),
            line,
            column,
            message,
        }
    })
}

fn parse_yaml(text: &str) -> Result<Value> {
    let malformed = |e: serde_yaml::Error| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = strip_position(&e.to_string(), &format!(" at line {line} column {column}"));
        Error::Malformed {
            format: Format::Yaml.name(),
            line,
            column,
            message,
        }
    };
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(malformed)?;
    // `<<: *anchor` merge keys, as YAML users expect them to work.
    yaml.apply_merge().map_err(malformed)?;
    yaml_to_json(yaml, "")
}

/// Converts a YAML value; `at` is the JSON-pointer-like location for errors.
fn yaml_to_json(yaml: serde_yaml::Value, at: &str) -> Result<Value> {
    use serde_yaml::Value as Y;
    let here = || {
        if at.is_empty() {
            "/".to_string()
        } else {
            at.to_string()
        }
    };
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(finite(f, &here())?)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{at}/{i}")))
                .collect::<Result<Vec<_>>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    other => {
                        return Err(Error::NotAnObject(format!(
                            "mapping key {} at {} is not a string (quote it to make it one)",
                            yaml_key_text(&other),
                            here()
                        )))
                    }
                };
                let child = format!("{at}/{}", escape_token(&key));
                let item = yaml_to_json(item, &child)?;
                map.insert(key, item);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            return Err(Error::NotAnObject(format!(
                "YAML tag {} at {} is not supported (JSON has no tags)",
                tagged.tag,
                here()
            )))
        }
    })
}

/// How a non-string YAML key reads in an error message.
fn yaml_key_text(key: &serde_yaml::Value) -> String {
    match serde_yaml::to_string(key) {
        Ok(s) => {
            let s = s.trim_end().to_string();
            let kind = match key {
                serde_yaml::Value::Null => "null",
                serde_yaml::Value::Bool(_) => "boolean",
                serde_yaml::Value::Number(_) => "number",
                serde_yaml::Value::Sequence(_) => "sequence",
                serde_yaml::Value::Mapping(_) => "mapping",
                _ => "value",
            };
            format!("{s:?} (a {kind})")
        }
        Err(_) => "(unprintable)".to_string(),
    }
}

fn parse_toml(text: &str) -> Result<Value> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((0, 0));
        Error::Malformed {
            format: Format::Toml.name(),
            line,
            column,
            // toml's messages may span lines ("invalid string\nexpected ..."): keep one.
            message: e
                .message()
                .trim_end()
                .lines()
                .collect::<Vec<_>>()
                .join("; "),
        }
    })?;
    toml_table_to_json(table, "")
}

fn toml_table_to_json(table: toml::Table, at: &str) -> Result<Value> {
    let mut map = Map::new();
    for (key, item) in table {
        let child = format!("{at}/{}", escape_token(&key));
        let item = toml_to_json(item, &child)?;
        map.insert(key, item);
    }
    Ok(Value::Object(map))
}

fn toml_to_json(value: toml::Value, at: &str) -> Result<Value> {
    use toml::Value as T;
    Ok(match value {
        T::String(s) => Value::String(s),
        T::Integer(i) => Value::Number(i.into()),
        T::Float(f) => Value::Number(finite(f, at)?),
        T::Boolean(b) => Value::Bool(b),
        T::Datetime(d) => Value::String(d.to_string()),
        T::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{at}/{i}")))
                .collect::<Result<Vec<_>>>()?,
        ),
        T::Table(table) => toml_table_to_json(table, at)?,
    })
}

fn finite(f: f64, at: &str) -> Result<Number> {
    Number::from_f64(f).ok_or_else(|| {
        Error::NotAnObject(format!(
            "the number {f} at {at} is not finite (JSON has no NaN or infinity)"
        ))
    })
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Removes the parser's own " at line L column C" from its message: the
/// position is reported in the error's fields.
fn strip_position(message: &str, position: &str) -> String {
    message.replacen(position, "", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(text: &str, format: Format) -> (usize, usize, String) {
        match parse_document(text, format) {
            Err(Error::Malformed {
                format: f,
                line,
                column,
                message,
            }) => {
                assert_eq!(f, format.name());
                (line, column, message)
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn not_an_object(text: &str, format: Format) -> String {
        match parse_document(text, format) {
            Err(Error::NotAnObject(reason)) => reason,
            other => panic!("expected NotAnObject, got {other:?}"),
        }
    }

    #[test]
    fn the_three_formats_give_the_same_canonical_json() {
        let json = parse_document(
            r#"{ "b": 1, "a": {"y": [1, 2.5], "x": "s"} }"#,
            Format::Json,
        )
        .expect("valid JSON");
        let yaml =
            parse_document("b: 1\na:\n  y: [1, 2.5]\n  x: s\n", Format::Yaml).expect("valid YAML");
        let toml = parse_document("b = 1\n[a]\ny = [1, 2.5]\nx = \"s\"\n", Format::Toml)
            .expect("valid TOML");
        assert_eq!(json, r#"{"a":{"x":"s","y":[1,2.5]},"b":1}"#);
        assert_eq!(yaml, json);
        assert_eq!(toml, json);
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes() {
        let v = serde_json::json!({"z": null, "a\"/": [true, {"k": "é\n"}], "m": -3});
        assert_eq!(
            canonical_json(&v),
            r#"{"a\"/":[true,{"k":"é\n"}],"m":-3,"z":null}"#
        );
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let (line, column, message) = malformed("{\n  \"a\": 1,\n  \"b\" 2\n}", Format::Json);
        assert_eq!((line, column), (3, 7));
        assert!(message.contains("expected `:`"), "{message}");
        assert!(
            !message.contains("line 3"),
            "position is stripped: {message}"
        );
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let (line, column, message) = malformed("a: 1\nb: [1, 2\nc: 3\n", Format::Yaml);
        assert_eq!(line, 3, "{message}");
        assert!(column >= 1, "{message}");
        let (line, column, _) = malformed("a: 1\n  b: 2\n", Format::Yaml);
        assert_eq!((line, column), (2, 4));
    }

    #[test]
    fn malformed_toml_reports_line_and_column() {
        let (line, column, message) = malformed("a = 1\nb = = 2\n", Format::Toml);
        assert_eq!((line, column), (2, 5), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        let (line, _, message) = malformed("a = 1\na = 2\n", Format::Toml);
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 0), (1, 1));
        assert_eq!(line_column("ab\ncé d", 3), (2, 1));
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn the_top_level_must_be_an_object() {
        assert!(not_an_object("[1,2]", Format::Json).contains("an array"));
        assert!(not_an_object("\"s\"", Format::Json).contains("a string"));
        assert!(not_an_object("3", Format::Json).contains("a number"));
        assert!(not_an_object("null", Format::Json).contains("null"));
        assert!(not_an_object("- a\n- b\n", Format::Yaml).contains("an array"));
        assert!(not_an_object("hello\n", Format::Yaml).contains("a string"));
        assert!(not_an_object("", Format::Yaml).contains("null"));
        assert_eq!(
            parse_document("", Format::Toml).expect("empty TOML table"),
            "{}"
        );
    }

    #[test]
    fn yaml_keys_must_be_strings() {
        let reason = not_an_object("a:\n  1: x\n", Format::Yaml);
        assert!(reason.contains("\"1\" (a number)"), "{reason}");
        assert!(reason.contains("/a"), "{reason}");
        let reason = not_an_object("true: x\n", Format::Yaml);
        assert!(reason.contains("boolean"), "{reason}");
        assert_eq!(
            parse_document("'1': x\n", Format::Yaml).expect("quoted key"),
            r#"{"1":"x"}"#
        );
    }

    #[test]
    fn yaml_merge_keys_and_anchors_work() {
        let doc = "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n";
        assert_eq!(
            parse_document(doc, Format::Yaml).expect("valid"),
            r#"{"base":{"x":1,"y":2},"derived":{"x":1,"y":3}}"#
        );
    }

    #[test]
    fn yaml_multiple_documents_and_tags_are_refused() {
        malformed("a: 1\n---\nb: 2\n", Format::Yaml);
        assert!(not_an_object("a: !custom 1\n", Format::Yaml).contains("tag"));
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        assert!(not_an_object("a: .nan\n", Format::Yaml).contains("not finite"));
        assert!(not_an_object("a: [-.inf]\n", Format::Yaml).contains("/a/0"));
        assert!(not_an_object("a = inf\n", Format::Toml).contains("not finite"));
        assert!(not_an_object("[t]\nb = nan\n", Format::Toml).contains("/t/b"));
        // JSON cannot even spell them.
        malformed(r#"{"a": NaN}"#, Format::Json);
    }

    #[test]
    fn toml_datetimes_become_strings() {
        let doc = "when = 1979-05-27T07:32:00Z\nday = 1979-05-27\n";
        assert_eq!(
            parse_document(doc, Format::Toml).expect("valid"),
            r#"{"day":"1979-05-27","when":"1979-05-27T07:32:00Z"}"#
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut s = String::new();
            for _ in 0..depth - 1 {
                s.push_str("{\"a\":");
            }
            s.push_str("{}");
            for _ in 0..depth - 1 {
                s.push('}');
            }
            s
        };
        assert!(parse_document(&nested(MAX_DOCUMENT_DEPTH), Format::Json).is_ok());
        match parse_document(&nested(MAX_DOCUMENT_DEPTH + 1), Format::Json) {
            Err(Error::LimitExceeded { limit, actual, .. }) => {
                assert_eq!(limit, "document depth");
                assert_eq!(actual, MAX_DOCUMENT_DEPTH as u64 + 1);
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // Far deeper than the parser's own limit is still a clean error.
        assert!(parse_document(&nested(10_000), Format::Json).is_err());
        let yaml = format!("a: {}1{}\n", "[".repeat(70), "]".repeat(70));
        assert!(parse_document(&yaml, Format::Yaml).is_err());
    }

    #[test]
    fn text_size_is_bounded() {
        let text = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_DOCUMENT_TEXT_BYTES));
        match parse_document(&text, Format::Json) {
            Err(Error::LimitExceeded { limit, max, actual }) => {
                assert_eq!(limit, "document text size");
                assert_eq!(max, MAX_DOCUMENT_TEXT_BYTES as u64);
                assert_eq!(actual, text.len() as u64);
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
    }

    #[test]
    fn canonical_size_is_bounded() {
        // Pretty text under the text limit whose canonical form is still too big.
        let text = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_DOCUMENT_BYTES));
        match parse_document(&text, Format::Json) {
            Err(Error::LimitExceeded { limit, max, .. }) => {
                assert_eq!(limit, "document size");
                assert_eq!(max, MAX_DOCUMENT_BYTES as u64);
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // Whitespace does not count.
        let text = format!("{{\"a\":\n{}\"x\"}}", " ".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(
            parse_document(&text, Format::Json).expect("fits"),
            r#"{"a":"x"}"#
        );
    }

    #[test]
    fn formats_parse_by_name_and_extension() {
        assert_eq!(parse_format("json").expect("json"), Format::Json);
        assert_eq!(parse_format("YAML").expect("yaml"), Format::Yaml);
        assert_eq!(parse_format("yml").expect("yml"), Format::Yaml);
        assert_eq!(parse_format("toml").expect("toml"), Format::Toml);
        let err = parse_format("xml").expect_err("unknown").to_string();
        assert!(err.contains("xml") && err.contains("toml"), "{err}");
        assert_eq!(Format::from_extension(".yml"), Some(Format::Yaml));
        assert_eq!(Format::from_extension("TOML"), Some(Format::Toml));
        assert_eq!(Format::from_extension("txt"), None);
    }
}
