//! Seeded random tests of schemas, validation, diffs and edits.
//!
//! Each case draws random JSON documents and a random schema from a small
//! keyword grammar (often nonsensical, always well-formed JSON), then checks:
//! compiling and validating never panic; validation is deterministic (twice
//! with one compiled schema, and once more with a second compilation, as
//! another node would); every violation points at a value that exists; and
//! the edits of `diff(a, b)` turn `a` into `b`.
//!
//! Run with `RAFTCONF_SEED=<n>` to replay one case; a failing case prints its
//! seed. A seed that ever fails becomes a named test below.

use std::panic::{catch_unwind, AssertUnwindSafe};

use raftconf_schema::{
    apply_edits, diff, parse_edit, split_pointer, DiffEntry, Edit, SchemaDocument,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const CASES: u64 = 2_000;
const FIRST_SEED: u64 = 0x5eed_0000;

const KEYS: &[&str] = &[
    "a", "b", "c", "port", "a/b", "~", "~1", "", "x y", "k=v", "é",
];
const STRINGS: &[&str] = &["", "a", "abc", "hello world", "~/", "42", "é"];
const TYPES: &[&str] = &[
    "null", "boolean", "integer", "number", "string", "array", "object", "strin",
];
const PATTERNS: &[&str] = &["^a", "b+", "^[0-9]*$", "(", "(?=x)", "\\d", ".*", "^$"];

fn key(rng: &mut StdRng) -> String {
    KEYS.choose(rng).copied().unwrap_or("a").to_string()
}

fn scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..6) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => json!(rng.gen_range(-5i64..=5)),
        // Quarters are exact in binary, so canonical text round-trips exactly.
        3 => json!(f64::from(rng.gen_range(-20i32..=20)) / 4.0),
        4 => json!(rng.gen_range(0u64..=3) * 1_000_000_007),
        _ => json!(STRINGS.choose(rng).copied().unwrap_or("")),
    }
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    if depth == 0 || rng.gen_bool(0.45) {
        return scalar(rng);
    }
    if rng.gen_bool(0.5) {
        let n = rng.gen_range(0..4);
        Value::Array((0..n).map(|_| value(rng, depth - 1)).collect())
    } else {
        object(rng, depth)
    }
}

fn object(rng: &mut StdRng, depth: u32) -> Value {
    let n = rng.gen_range(0..5);
    let mut map = Map::new();
    for _ in 0..n {
        map.insert(key(rng), value(rng, depth.saturating_sub(1)));
    }
    Value::Object(map)
}

/// A document derived from `doc` by a few random changes, so diffs are
/// mostly small and nested rather than "everything changed".
fn mutate(rng: &mut StdRng, doc: &Value, depth: u32) -> Value {
    match doc {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                match rng.gen_range(0..10) {
                    0 => {}
                    1 => {
                        out.insert(k.clone(), value(rng, depth));
                    }
                    _ => {
                        out.insert(k.clone(), mutate(rng, v, depth));
                    }
                }
            }
            if rng.gen_bool(0.3) {
                out.insert(key(rng), value(rng, depth));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().map(|v| mutate(rng, v, depth)).collect();
            match rng.gen_range(0..4) {
                0 => out.truncate(rng.gen_range(0..=out.len())),
                1 => out.extend((0..rng.gen_range(1..3)).map(|_| value(rng, depth))),
                _ => {}
            }
            Value::Array(out)
        }
        _ if rng.gen_bool(0.2) => value(rng, depth),
        same => same.clone(),
    }
}

fn subschemas(rng: &mut StdRng, depth: u32, max: usize) -> Value {
    let n = rng.gen_range(1..=max);
    Value::Array((0..n).map(|_| schema(rng, depth - 1)).collect())
}

/// A random schema: a boolean, or an object with a few keywords.
fn schema(rng: &mut StdRng, depth: u32) -> Value {
    if rng.gen_bool(0.08) {
        return Value::Bool(rng.gen_bool(0.7));
    }
    let mut s = Map::new();
    for _ in 0..rng.gen_range(0..4) {
        let nested = depth > 0;
        let (keyword, v) = match rng.gen_range(0..16) {
            0 => (
                "type",
                if rng.gen_bool(0.8) {
                    json!(TYPES.choose(rng).copied().unwrap_or("string"))
                } else {
                    json!([TYPES.choose(rng), TYPES.choose(rng)])
                },
            ),
            1 if nested => {
                let mut props = Map::new();
                for _ in 0..rng.gen_range(1..4) {
                    props.insert(key(rng), schema(rng, depth - 1));
                }
                ("properties", Value::Object(props))
            }
            2 => {
                let mut required: Vec<Value> =
                    (0..rng.gen_range(0..3)).map(|_| json!(key(rng))).collect();
                if rng.gen_bool(0.05) {
                    required.push(json!(3));
                }
                ("required", Value::Array(required))
            }
            3 if nested => ("items", schema(rng, depth - 1)),
            4 => (
                "minimum",
                if rng.gen_bool(0.95) {
                    scalar_number(rng)
                } else {
                    json!("x")
                },
            ),
            5 => ("maximum", scalar_number(rng)),
            6 => (
                "enum",
                Value::Array((0..rng.gen_range(1..4)).map(|_| value(rng, 1)).collect()),
            ),
            7 => (
                "pattern",
                json!(PATTERNS.choose(rng).copied().unwrap_or(".*")),
            ),
            8 => ("minLength", json!(rng.gen_range(-1i64..4))),
            9 if nested => (
                "additionalProperties",
                if rng.gen_bool(0.5) {
                    json!(rng.gen_bool(0.5))
                } else {
                    schema(rng, depth - 1)
                },
            ),
            10 if nested => ("anyOf", subschemas(rng, depth, 3)),
            11 if nested => ("oneOf", subschemas(rng, depth, 3)),
            12 if nested => ("not", schema(rng, depth - 1)),
            13 => (
                "$ref",
                json!(if rng.gen_bool(0.9) {
                    "#/$defs/x"
                } else {
                    "#/$defs/y"
                }),
            ),
            14 => ("const", value(rng, 1)),
            _ => ("maxLength", json!(rng.gen_range(0..4))),
        };
        s.insert(keyword.to_string(), v);
    }
    Value::Object(s)
}

fn scalar_number(rng: &mut StdRng) -> Value {
    if rng.gen_bool(0.5) {
        json!(rng.gen_range(-5i64..=5))
    } else {
        json!(f64::from(rng.gen_range(-20i32..=20)) / 4.0)
    }
}

/// A root schema, usually with `$defs/x` (which may refer to itself).
fn root_schema(rng: &mut StdRng) -> Value {
    let mut root = schema(rng, 3);
    if let Value::Object(map) = &mut root {
        if rng.gen_bool(0.7) {
            map.insert("$defs".into(), json!({"x": schema(rng, 2)}));
        }
    }
    root
}

fn exists(doc: &Value, pointer: &str) -> bool {
    let Ok(tokens) = split_pointer(pointer) else {
        return false;
    };
    let mut current = doc;
    for token in &tokens {
        let next = match current {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return false,
        }
    }
    true
}

/// What the cases exercised, so a generator that drifts into producing only
/// refused schemas or only valid documents is noticed.
#[derive(Debug, Default)]
struct Coverage {
    compiled: u64,
    refused: u64,
    valid_docs: u64,
    invalid_docs: u64,
    diff_entries: u64,
}

/// One case; `Err` says what property broke.
fn run_case(seed: u64, coverage: &mut Coverage) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema_value = root_schema(&mut rng);
    let docs: Vec<Value> = (0..3).map(|_| object(&mut rng, 4)).collect();

    // Schemas: compile, validate, deterministically.
    let compiled = SchemaDocument::from_value(schema_value.clone()).and_then(|d| d.compile());
    match compiled {
        Err(e) => {
            coverage.refused += 1;
            if e.to_string().is_empty() {
                return Err(format!("empty error for schema {schema_value}"));
            }
        }
        Ok(compiled) => {
            coverage.compiled += 1;
            let again = SchemaDocument::from_value(schema_value.clone())
                .and_then(|d| d.compile())
                .map_err(|e| format!("second compilation failed: {e}"))?;
            for doc in &docs {
                let first = compiled.validate(doc);
                if first.is_empty() {
                    coverage.valid_docs += 1;
                } else {
                    coverage.invalid_docs += 1;
                }
                if compiled.validate(doc) != first || again.validate(doc) != first {
                    return Err(format!(
                        "validation not deterministic: {schema_value} / {doc}"
                    ));
                }
                if !first.windows(2).all(|w| w[0] < w[1]) {
                    return Err(format!("violations not sorted and unique: {first:?}"));
                }
                if compiled.is_valid(doc) != first.is_empty() {
                    return Err(format!(
                        "is_valid disagrees with {first:?}: {schema_value} / {doc}"
                    ));
                }
                if let Some(v) = first.iter().find(|v| !exists(doc, &v.pointer)) {
                    return Err(format!("violation points at nothing: {v:?} in {doc}"));
                }
            }
        }
    }

    // Diffs: the edits of diff(a, b) turn a into b; a value has no diff with itself.
    let a = &docs[0];
    let b = if rng.gen_bool(0.7) {
        mutate(&mut rng, a, 2)
    } else {
        docs[1].clone()
    };
    if !diff(Some(a), Some(a)).is_empty() {
        return Err(format!("diff of a value with itself: {a}"));
    }
    let entries = diff(Some(a), Some(&b));
    coverage.diff_entries += entries.len() as u64;
    let edits: Vec<Edit> = entries.iter().map(DiffEntry::to_edit).collect();
    let applied = apply_edits(a, &edits).map_err(|e| format!("edits of {a} -> {b} fail: {e}"))?;
    if applied != b {
        return Err(format!("diff round trip: {a} -> {b} gave {applied}"));
    }
    // The edits print as `raftconf set` reads them (a key with '=' cannot be named there).
    for edit in edits
        .iter()
        .filter(|e| !e.pointer().contains('=') && !e.pointer().is_empty())
    {
        let reparsed = parse_edit(&edit.to_string()).map_err(|e| format!("{edit}: {e}"))?;
        if &reparsed != edit {
            return Err(format!("{edit} reparsed as {reparsed:?}"));
        }
    }

    // Random edits, sensible or not, fail cleanly or keep the root an object.
    let random_edits: Vec<Edit> = (0..3)
        .map(|_| {
            let mut pointer = String::new();
            for _ in 0..rng.gen_range(0..4) {
                pointer.push('/');
                pointer.push_str(
                    ["a", "0", "1", "-", "~1", "~2", "b", "01"]
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or("a"),
                );
            }
            if rng.gen_bool(0.3) {
                Edit::Remove { pointer }
            } else {
                Edit::Set {
                    pointer,
                    value: value(&mut rng, 2),
                }
            }
        })
        .collect();
    if let Ok(out) = apply_edits(a, &random_edits) {
        if !out.is_object() {
            return Err(format!("edits {random_edits:?} made a non-object {out}"));
        }
    }
    Ok(())
}

fn check(seed: u64, coverage: &mut Coverage) {
    let outcome = catch_unwind(AssertUnwindSafe(|| run_case(seed, coverage)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("case failed; replay with RAFTCONF_SEED={seed}: {message}"),
        Err(_) => panic!("case panicked; replay with RAFTCONF_SEED={seed}"),
    }
}

#[test]
fn random_schemas_documents_and_diffs() {
    if let Some(seed) = std::env::var("RAFTCONF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        check(seed, &mut Coverage::default());
        return;
    }
    let started = std::time::Instant::now();
    let mut coverage = Coverage::default();
    for seed in FIRST_SEED..FIRST_SEED + CASES {
        check(seed, &mut coverage);
    }
    eprintln!(
        "{CASES} cases from seed {FIRST_SEED} in {:?}: {coverage:?}",
        started.elapsed()
    );
    assert!(coverage.compiled > CASES / 4, "{coverage:?}");
    assert!(coverage.refused > CASES / 20, "{coverage:?}");
    assert!(coverage.valid_docs > CASES / 4, "{coverage:?}");
    assert!(coverage.invalid_docs > CASES / 4, "{coverage:?}");
    assert!(coverage.diff_entries > CASES, "{coverage:?}");
}
