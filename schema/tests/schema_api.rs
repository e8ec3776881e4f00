//! The crate's public API as the server and the CLI use it: schema text in,
//! documents checked, schema changes checked against every environment,
//! `raftconf set` edits, diffs.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;

use raftconf_schema::{
    apply_edits, check_compatible, diff, parse_document, parse_edit, DiffKind, Edit, Error, Format,
    SchemaCache, SchemaDocument, Violation, MAX_SCHEMA_BYTES,
};
use serde_json::{json, Value};

const SCHEMA_YAML: &str = r##"
$schema: https://json-schema.org/draft/2020-12/schema
type: object
required: [host, port]
additionalProperties: false
properties:
  host: {type: string, minLength: 1}
  port: {type: integer, minimum: 1, maximum: 65535}
  pool: {$ref: "#/$defs/pool"}
$defs:
  pool:
    type: object
    properties:
      max: {type: integer, minimum: 1}
"##;

/// A document as the server holds it: parsed from text into canonical JSON.
fn doc(text: &str, format: Format) -> Value {
    let canonical = parse_document(text, format).expect("document parses");
    serde_json::from_str(&canonical).expect("canonical JSON parses")
}

fn schema_error(result: raftconf_schema::Result<impl Sized>) -> (String, String) {
    match result {
        Err(Error::InvalidSchema {
            schema_pointer,
            message,
        }) => (schema_pointer, message),
        Err(other) => panic!("expected InvalidSchema, got {other}"),
        Ok(_) => panic!("expected InvalidSchema, got success"),
    }
}

#[test]
fn a_yaml_schema_lists_every_violation_of_a_toml_document() {
    let schema = SchemaDocument::parse(SCHEMA_YAML, Format::Yaml)
        .and_then(|s| s.compile())
        .expect("schema compiles");
    let document = doc("port = 0\n[pool]\nmax = \"8\"\n", Format::Toml);
    let violations = schema.validate(&document);
    let found: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.pointer.as_str(), v.schema_pointer.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("", "/required"),
            ("/pool/max", "/$defs/pool/properties/max/type"),
            ("/port", "/properties/port/minimum"),
        ],
        "{violations:?}"
    );
    assert!(schema
        .validate(&doc("host = \"h\"\nport = 80\n", Format::Toml))
        .is_empty());
}

#[test]
fn a_remote_ref_is_refused_without_touching_the_network() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("address").port();
    let text =
        format!(r#"{{"properties": {{"a": {{"$ref": "http://127.0.0.1:{port}/s.json"}}}}}}"#);
    let (pointer, message) =
        schema_error(SchemaDocument::parse(&text, Format::Json).and_then(|s| s.compile()));
    assert_eq!(pointer, "/properties/a/$ref");
    assert!(message.contains("never fetches"), "{message}");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("something connected to the $ref's address: {other:?}"),
    }
}

#[test]
fn a_draft_07_schema_is_refused_with_a_message() {
    let text = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {}}"#;
    let err = SchemaDocument::parse(text, Format::Json).expect_err("draft-07");
    assert_eq!(
        err.to_string(),
        "invalid schema at /$schema: \"$schema\" \"http://json-schema.org/draft-07/schema#\" \
         names draft-07; raftconf schemas are JSON Schema draft 2020-12: remove \"$schema\" or \
         set it to \"https://json-schema.org/draft/2020-12/schema\" (and update keywords that \
         changed, e.g. \"definitions\" → \"$defs\", array \"items\" → \"prefixItems\")"
    );
    let err = SchemaDocument::parse("[]", Format::Json).expect_err("not a schema");
    assert_eq!(
        err.to_string(),
        "invalid schema at the schema root: a schema is a JSON object (or the boolean true or \
         false), got an array"
    );
}

#[test]
fn the_schema_size_limit_counts_canonical_bytes() {
    // Indentation does not count; the canonical form is what is limited.
    let filler = "x".repeat(MAX_SCHEMA_BYTES - 64);
    let fits = format!("description:     {filler}\ntype:     object\n");
    SchemaDocument::parse(&fits, Format::Yaml).expect("fits");
    let too_big = format!("description: {filler}{}\n", "y".repeat(64));
    match SchemaDocument::parse(&too_big, Format::Yaml) {
        Err(Error::LimitExceeded { limit, max, .. }) => {
            assert_eq!(limit, "schema size");
            assert_eq!(max, MAX_SCHEMA_BYTES as u64);
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

#[test]
fn a_stricter_schema_reports_the_environments_it_would_break() {
    let stricter = SchemaDocument::parse(SCHEMA_YAML, Format::Yaml)
        .and_then(|s| s.compile())
        .expect("compiles");
    let prod = json!({"host": "db", "port": 5432});
    let staging = json!({"host": "db", "port": 5432, "debug": true});
    let dev = json!({"host": "", "port": 0});
    let broken = check_compatible(
        &stricter,
        [
            ("prod".to_string(), &prod),
            ("staging".to_string(), &staging),
            ("dev".to_string(), &dev),
        ],
    );
    let summary: Vec<(String, Vec<String>)> = broken
        .iter()
        .map(|(env, vs)| (env.clone(), vs.iter().map(Violation::to_string).collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "dev".to_string(),
                vec![
                    "/host: \"\" is shorter than 1 character".to_string(),
                    "/port: 0 is less than the minimum of 1".to_string(),
                ]
            ),
            (
                "staging".to_string(),
                vec![
                    "the document root: Additional properties are not allowed ('debug' was unexpected)"
                        .to_string()
                ]
            ),
        ]
    );
}

#[test]
fn set_and_remove_like_the_cli_then_diff_and_validate() {
    let schema = SchemaDocument::parse(SCHEMA_YAML, Format::Yaml)
        .and_then(|s| s.compile())
        .expect("compiles");
    let before = json!({"host": "db", "port": 5432, "pool": {"max": 4}});
    let edits: Vec<Edit> = ["/port=6432", "/host=db-2", "/pool/max=\"8\"", "-/pool"]
        .into_iter()
        .map(parse_edit)
        .collect::<Result<_, _>>()
        .expect("edits parse");
    let after = apply_edits(&before, &edits).expect("edits apply");
    assert_eq!(after, json!({"host": "db-2", "port": 6432}));
    assert!(schema.validate(&after).is_empty());

    let changes = diff(Some(&before), Some(&after));
    let kinds: Vec<(&str, DiffKind)> = changes
        .iter()
        .map(|c| (c.pointer.as_str(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("/host", DiffKind::Changed),
            ("/pool", DiffKind::Removed),
            ("/port", DiffKind::Changed),
        ]
    );

    let invalid =
        apply_edits(&before, &[parse_edit("/pool/max=0").expect("parses")]).expect("applies");
    assert_eq!(schema.validate(&invalid)[0].pointer, "/pool/max");

    let err =
        apply_edits(&before, &[parse_edit("-/pool/min").expect("parses")]).expect_err("absent");
    assert_eq!(
        err.to_string(),
        "cannot remove /pool/min: /pool/min does not exist"
    );
    // EditError converts into the crate's error for callers that use `Result`.
    let err: Error = err.into();
    assert!(matches!(err, Error::Edit(_)));
}

#[test]
fn a_cache_shares_one_compiled_schema_between_threads() {
    let cache: Arc<SchemaCache<(String, u64)>> = Arc::new(SchemaCache::new(16));
    let key = ("payments/checkout".to_string(), 3);
    let compiled = cache
        .get_or_try_insert_with(key.clone(), || {
            SchemaDocument::parse(SCHEMA_YAML, Format::Yaml).and_then(|s| s.compile())
        })
        .expect("compiles");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let key = key.clone();
            std::thread::spawn(move || {
                let schema = cache.get(&key).expect("cached");
                schema.validate(&json!({"host": "h"})).len()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread ran"), 1);
    }
    assert!(Arc::ptr_eq(&compiled, &cache.get(&key).expect("cached")));
}
