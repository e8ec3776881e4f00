//! Edits of a document by JSON pointer: what `raftconf set PATH /a/b=VALUE -/c`
//! does to the current document before it is written back.
//!
//! Edits are applied in order to a copy; the first one that cannot be applied
//! fails the whole set and the original is untouched.

use std::fmt;

use serde_json::{Map, Value};

use crate::document::{canonical_json, describe};
use crate::pointer::{describe_pointer, join_pointer, parse_index, split_pointer};
use crate::Error;

/// One change to a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Put `value` at `pointer`. Missing intermediate objects are created. In
    /// an array, an existing index is replaced and `-` (or the index one past
    /// the end, as in JSON Patch's `add`) appends. The root pointer `""`
    /// replaces the whole document and only takes an object.
    Set {
        /// Where, as a JSON pointer.
        pointer: String,
        /// What.
        value: Value,
    },
    /// Delete the member or array element at `pointer` (later elements move
    /// down by one). It must exist.
    Remove {
        /// What, as a JSON pointer.
        pointer: String,
    },
}

impl Edit {
    /// The pointer the edit applies to.
    pub fn pointer(&self) -> &str {
        match self {
            Edit::Set { pointer, .. } | Edit::Remove { pointer } => pointer,
        }
    }
}

impl fmt::Display for Edit {
    /// The form [`parse_edit`] reads: `/a/b=VALUE` (VALUE as canonical JSON) or `-/a/b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Set { pointer, value } => write!(f, "{pointer}={}", canonical_json(value)),
            Edit::Remove { pointer } => write!(f, "-{pointer}"),
        }
    }
}

/// Why an edit cannot be read or applied. Each names the edit's pointer and,
/// where it differs, the part of it (`at`) where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not `/POINTER=VALUE` or `-/POINTER`.
    #[error("invalid edit {text:?}: {reason}")]
    Syntax {
        /// The text given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The pointer is not a valid JSON pointer (RFC 6901).
    #[error("invalid JSON pointer {pointer:?}: {reason}")]
    InvalidPointer {
        /// The pointer given.
        pointer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A removal names something that does not exist.
    #[error("cannot remove {pointer}: {} does not exist", describe_pointer(.at))]
    NotFound {
        /// The edit's pointer.
        pointer: String,
        /// The longest part of it that is missing from the document's point of view.
        at: String,
    },
    /// The path runs through a value that has no members.
    #[error("cannot {op} {pointer}: {} is {found}, not an object or an array", describe_pointer(.at))]
    NotAContainer {
        /// "set" or "remove".
        op: &'static str,
        /// The edit's pointer.
        pointer: String,
        /// The part of it that names the scalar.
        at: String,
        /// What is there: "a number", "null" …
        found: &'static str,
    },
    /// A token that addresses an array is not an index (or `-` where appending is allowed).
    #[error("cannot {op} {pointer}: {} is an array and {token:?} is not {expected}", describe_pointer(.at))]
    BadIndex {
        /// "set" or "remove".
        op: &'static str,
        /// The edit's pointer.
        pointer: String,
        /// The part of it that names the array.
        at: String,
        /// The offending token.
        token: String,
        /// What would be accepted there.
        expected: &'static str,
    },
    /// An array index past the end.
    #[error("cannot {op} {pointer}: index {index} is out of range, {} has {len} elements", describe_pointer(.at))]
    IndexOutOfRange {
        /// "set" or "remove".
        op: &'static str,
        /// The edit's pointer.
        pointer: String,
        /// The part of it that names the array.
        at: String,
        /// The index given.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// `""` set to something other than an object.
    #[error("cannot set the document root to {found}: a document is always a JSON object")]
    RootNotAnObject {
        /// What was given: "an array", "a string" …
        found: &'static str,
    },
    /// `""` removed.
    #[error("cannot remove the document root: a document is always a JSON object (delete the namespace instead)")]
    RemoveRoot,
}

/// Parses one command-line edit.
///
/// - `/POINTER=VALUE` sets: the text is split at the first `=`, so a key that
///   contains `=` cannot be named this way (set its parent instead). VALUE is
///   JSON when it parses as JSON (`8080`, `true`, `null`, `"8080"`,
///   `{"a":[1]}`), and otherwise the plain string (`localhost`, the empty
///   string for nothing).
/// - `-/POINTER` removes: everything after the `-` is the pointer, `=`
///   included.
///
/// POINTER is a JSON pointer (RFC 6901: `~1` for `/` and `~0` for `~` in a
/// key) and must start with `/`: the whole document cannot be set or removed
/// this way.
pub fn parse_edit(text: &str) -> Result<Edit, EditError> {
    let syntax = |reason: &str| EditError::Syntax {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    if let Some(pointer) = text.strip_prefix('-') {
        if !pointer.starts_with('/') {
            return Err(syntax(
                "a removal is '-' followed by a JSON pointer starting with '/', e.g. -/a/b",
            ));
        }
        check_pointer(pointer)?;
        return Ok(Edit::Remove {
            pointer: pointer.to_string(),
        });
    }
    if !text.starts_with('/') {
        return Err(syntax(
            "an edit is /POINTER=VALUE to set or -/POINTER to remove; the pointer starts with '/'",
        ));
    }
    let Some((pointer, value)) = text.split_once('=') else {
        return Err(syntax(
            "missing '=VALUE' after the pointer (to remove it, write '-' before the pointer)",
        ));
    };
    check_pointer(pointer)?;
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.into()));
    Ok(Edit::Set {
        pointer: pointer.to_string(),
        value,
    })
}

/// Applies `edits` in order to a copy of `doc` and returns it; the first edit
/// that cannot be applied is the error.
pub fn apply_edits(doc: &Value, edits: &[Edit]) -> Result<Value, EditError> {
    let mut out = doc.clone();
    for edit in edits {
        match edit {
            Edit::Set { pointer, value } => set(&mut out, pointer, value.clone())?,
            Edit::Remove { pointer } => remove(&mut out, pointer)?,
        }
    }
    Ok(out)
}

fn check_pointer(pointer: &str) -> Result<Vec<String>, EditError> {
    split_pointer(pointer).map_err(|e| match e {
        Error::InvalidPointer { pointer, reason } => EditError::InvalidPointer { pointer, reason },
        other => EditError::InvalidPointer {
            pointer: pointer.to_string(),
            reason: other.to_string(),
        },
    })
}

/// Where an edit goes: its pointer and tokens, and what it is for the messages.
struct Target<'p> {
    op: &'static str,
    pointer: &'p str,
    tokens: Vec<String>,
}

impl Target<'_> {
    /// The pointer to the first `n` tokens.
    fn prefix(&self, n: usize) -> String {
        join_pointer(&self.tokens[..n.min(self.tokens.len())])
    }

    fn not_a_container(&self, n: usize, found: &Value) -> EditError {
        EditError::NotAContainer {
            op: self.op,
            pointer: self.pointer.to_string(),
            at: self.prefix(n),
            found: describe(found),
        }
    }

    fn bad_index(&self, n: usize, expected: &'static str) -> EditError {
        EditError::BadIndex {
            op: self.op,
            pointer: self.pointer.to_string(),
            at: self.prefix(n),
            token: self.tokens.get(n).cloned().unwrap_or_default(),
            expected,
        }
    }

    fn out_of_range(&self, n: usize, index: usize, len: usize) -> EditError {
        EditError::IndexOutOfRange {
            op: self.op,
            pointer: self.pointer.to_string(),
            at: self.prefix(n),
            index,
            len,
        }
    }

    /// Walks to the parent of the last token. `create` makes missing object
    /// members (as empty objects) instead of failing.
    fn parent<'v>(&self, doc: &'v mut Value, create: bool) -> Result<&'v mut Value, EditError> {
        let mut current = doc;
        let last = self.tokens.len().saturating_sub(1);
        for (n, token) in self.tokens[..last].iter().enumerate() {
            current = match current {
                Value::Object(map) => {
                    if !create && !map.contains_key(token) {
                        return Err(EditError::NotFound {
                            pointer: self.pointer.to_string(),
                            at: self.prefix(n + 1),
                        });
                    }
                    map.entry(token.clone())
                        .or_insert_with(|| Value::Object(Map::new()))
                }
                Value::Array(items) => {
                    let Some(index) = parse_index(token) else {
                        return Err(self.bad_index(
                            n,
                            "an index (0, 1, …; '-' appends only as the last token)",
                        ));
                    };
                    let len = items.len();
                    match items.get_mut(index) {
                        Some(item) => item,
                        None => return Err(self.out_of_range(n, index, len)),
                    }
                }
                scalar => return Err(self.not_a_container(n, scalar)),
            };
        }
        Ok(current)
    }
}

fn set(doc: &mut Value, pointer: &str, value: Value) -> Result<(), EditError> {
    let target = Target {
        op: "set",
        pointer,
        tokens: check_pointer(pointer)?,
    };
    let Some(last) = target.tokens.last() else {
        if !value.is_object() {
            return Err(EditError::RootNotAnObject {
                found: describe(&value),
            });
        }
        *doc = value;
        return Ok(());
    };
    let n = target.tokens.len() - 1;
    match target.parent(doc, true)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let len = items.len();
            if last == "-" {
                items.push(value);
            } else {
                let Some(index) = parse_index(last) else {
                    return Err(target.bad_index(n, "an index (0, 1, …) or '-' to append"));
                };
                match items.get_mut(index) {
                    Some(item) => *item = value,
                    None if index == len => items.push(value),
                    None => return Err(target.out_of_range(n, index, len)),
                }
            }
        }
        scalar => return Err(target.not_a_container(n, scalar)),
    }
    Ok(())
}

fn remove(doc: &mut Value, pointer: &str) -> Result<(), EditError> {
    let target = Target {
        op: "remove",
        pointer,
        tokens: check_pointer(pointer)?,
    };
    let Some(last) = target.tokens.last() else {
        return Err(EditError::RemoveRoot);
    };
    let n = target.tokens.len() - 1;
    match target.parent(doc, false)? {
        Value::Object(map) => {
            if map.remove(last).is_none() {
                return Err(EditError::NotFound {
                    pointer: pointer.to_string(),
                    at: pointer.to_string(),
                });
            }
        }
        Value::Array(items) => {
            let Some(index) = parse_index(last) else {
                return Err(target.bad_index(n, "an index (0, 1, …)"));
            };
            if index >= items.len() {
                return Err(target.out_of_range(n, index, items.len()));
            }
            items.remove(index);
        }
        scalar => return Err(target.not_a_container(n, scalar)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set_edit(pointer: &str, value: Value) -> Edit {
        Edit::Set {
            pointer: pointer.into(),
            value,
        }
    }

    fn remove_edit(pointer: &str) -> Edit {
        Edit::Remove {
            pointer: pointer.into(),
        }
    }

    #[test]
    fn set_creates_missing_intermediate_objects() {
        let doc = json!({"a": {"keep": 1}});
        let out = apply_edits(
            &doc,
            &[set_edit("/a/b/c", json!(5)), set_edit("/x", json!("y"))],
        )
        .expect("applies");
        assert_eq!(out, json!({"a": {"keep": 1, "b": {"c": 5}}, "x": "y"}));
        assert_eq!(doc, json!({"a": {"keep": 1}}), "the input is untouched");
    }

    #[test]
    fn set_replaces_appends_and_refuses_out_of_range_in_arrays() {
        let doc = json!({"l": [1, 2, 3]});
        let out = apply_edits(
            &doc,
            &[
                set_edit("/l/1", json!("two")),
                set_edit("/l/-", json!(4)),
                set_edit("/l/4", json!(5)),
            ],
        )
        .expect("applies");
        assert_eq!(out, json!({"l": [1, "two", 3, 4, 5]}));

        let err = apply_edits(&doc, &[set_edit("/l/7", json!(0))]).expect_err("past the end");
        assert_eq!(
            err,
            EditError::IndexOutOfRange {
                op: "set",
                pointer: "/l/7".into(),
                at: "/l".into(),
                index: 7,
                len: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "cannot set /l/7: index 7 is out of range, /l has 3 elements"
        );
        let err = apply_edits(&doc, &[set_edit("/l/01", json!(0))]).expect_err("leading zero");
        assert!(
            matches!(err, EditError::BadIndex { ref token, .. } if token == "01"),
            "{err}"
        );
        let err = apply_edits(&doc, &[set_edit("/l/-/x", json!(0))]).expect_err("'-' inside");
        assert!(err.to_string().contains("as the last token"), "{err}");
        let err = apply_edits(&doc, &[set_edit("/l/9/x", json!(0))]).expect_err("no element");
        assert!(
            matches!(err, EditError::IndexOutOfRange { index: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn set_through_a_scalar_names_it() {
        let doc = json!({"a": {"b": 3}});
        let err = apply_edits(&doc, &[set_edit("/a/b/c/d", json!(1))]).expect_err("scalar");
        assert_eq!(
            err.to_string(),
            "cannot set /a/b/c/d: /a/b is a number, not an object or an array"
        );
    }

    #[test]
    fn the_root_is_always_an_object() {
        let doc = json!({"a": 1});
        let out = apply_edits(&doc, &[set_edit("", json!({"b": 2}))]).expect("object root");
        assert_eq!(out, json!({"b": 2}));
        let err = apply_edits(&doc, &[set_edit("", json!([1]))]).expect_err("array root");
        assert_eq!(err, EditError::RootNotAnObject { found: "an array" });
        assert_eq!(
            apply_edits(&doc, &[remove_edit("")]).expect_err("remove root"),
            EditError::RemoveRoot
        );
    }

    #[test]
    fn remove_deletes_and_refuses_what_is_absent() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [0, 1, 2]});
        let out = apply_edits(&doc, &[remove_edit("/a/b"), remove_edit("/l/0")]).expect("applies");
        assert_eq!(out, json!({"a": {"c": 2}, "l": [1, 2]}));

        let err = apply_edits(&doc, &[remove_edit("/a/zz")]).expect_err("absent key");
        assert_eq!(err.to_string(), "cannot remove /a/zz: /a/zz does not exist");
        let err = apply_edits(&doc, &[remove_edit("/x/y/z")]).expect_err("absent parent");
        assert_eq!(err.to_string(), "cannot remove /x/y/z: /x does not exist");
        let err = apply_edits(&doc, &[remove_edit("/l/3")]).expect_err("past the end");
        assert!(
            matches!(
                err,
                EditError::IndexOutOfRange {
                    index: 3,
                    len: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = apply_edits(&doc, &[remove_edit("/l/-")]).expect_err("'-' names nothing");
        assert!(matches!(err, EditError::BadIndex { .. }), "{err}");
        // A failing edit leaves nothing half-applied: the caller still has `doc`.
        let err =
            apply_edits(&doc, &[remove_edit("/a/b"), remove_edit("/a/b")]).expect_err("twice");
        assert!(matches!(err, EditError::NotFound { .. }), "{err}");
    }

    #[test]
    fn escaped_keys_are_addressed() {
        let doc = json!({});
        let out = apply_edits(&doc, &[set_edit("/a~1b/c~0d", json!(1))]).expect("applies");
        assert_eq!(out, json!({"a/b": {"c~d": 1}}));
        let err = apply_edits(&doc, &[set_edit("/a~2", json!(1))]).expect_err("bad escape");
        assert!(matches!(err, EditError::InvalidPointer { .. }), "{err}");
    }

    #[test]
    fn parse_edit_reads_json_or_a_plain_string() {
        let cases = [
            ("/port=8080", set_edit("/port", json!(8080))),
            ("/ratio=-1.5e3", set_edit("/ratio", json!(-1500.0))),
            ("/on=true", set_edit("/on", json!(true))),
            ("/gone=null", set_edit("/gone", Value::Null)),
            ("/host=localhost", set_edit("/host", json!("localhost"))),
            ("/port=\"8080\"", set_edit("/port", json!("8080"))),
            ("/zip=01234", set_edit("/zip", json!("01234"))),
            ("/empty=", set_edit("/empty", json!(""))),
            ("/eq=a=b", set_edit("/eq", json!("a=b"))),
            ("/o={\"a\":[1,{}]}", set_edit("/o", json!({"a": [1, {}]}))),
            ("/half={\"a\":", set_edit("/half", json!("{\"a\":"))),
            ("/a~1b=1", set_edit("/a~1b", json!(1))),
            ("-/a/b", remove_edit("/a/b")),
            ("-/a=b", remove_edit("/a=b")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_edit(text).expect(text), expected, "{text}");
        }
    }

    #[test]
    fn parse_edit_refuses_bad_text() {
        for (text, needle) in [
            ("a=1", "starts with '/'"),
            ("=1", "starts with '/'"),
            ("", "starts with '/'"),
            ("/a", "missing '=VALUE'"),
            ("-a", "'-' followed by a JSON pointer"),
            ("-", "'-' followed by a JSON pointer"),
            ("/a~3=1", "'~' must be followed"),
            ("-/a~", "'~' must be followed"),
        ] {
            let err = parse_edit(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(
                err.contains(&format!("{text:?}")) || err.contains("pointer"),
                "{err}"
            );
        }
    }

    #[test]
    fn edits_print_as_they_parse() {
        for text in ["/a/b=1", "/s=\"x y\"", "/o={\"a\":[1,null]}", "-/a~1b"] {
            let edit = parse_edit(text).expect(text);
            assert_eq!(edit.to_string(), text);
            assert_eq!(parse_edit(&edit.to_string()).expect("reparse"), edit);
        }
    }
}
