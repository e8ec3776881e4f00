//! Structural differences between two documents (or two versions of one), by
//! JSON pointer: what `raftconf diff` and history show, and what a rollback
//! preview lists.
//!
//! Objects are compared member by member, arrays element by element by index;
//! where the two sides differ in kind (a number became a string, an object an
//! array) the whole value at that pointer is one change.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::canonical_json;
use crate::edit::Edit;
use crate::pointer::{describe_pointer, push_token};

/// What happened at a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// Present only in the new value.
    Added,
    /// Present only in the old value.
    Removed,
    /// Present in both, different (including a change of kind).
    Changed,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// JSON pointer (RFC 6901) to the value; `""` is the whole document.
    pub pointer: String,
    /// Added, removed or changed.
    pub kind: DiffKind,
    /// The old value (`None` when added).
    pub old: Option<Value>,
    /// The new value (`None` when removed).
    pub new: Option<Value>,
}

impl DiffEntry {
    /// The edit that makes this change: a set for added and changed values, a
    /// remove for removed ones. Applying the edits of a whole [`diff`] in its
    /// order to the old document gives the new one.
    pub fn to_edit(&self) -> Edit {
        match self.kind {
            DiffKind::Removed => Edit::Remove {
                pointer: self.pointer.clone(),
            },
            DiffKind::Added | DiffKind::Changed => Edit::Set {
                pointer: self.pointer.clone(),
                value: self.new.clone().unwrap_or(Value::Null),
            },
        }
    }
}

impl fmt::Display for DiffEntry {
    /// `+ /a: 1`, `- /b: 2`, `~ /c: 1 -> "one"`, values as canonical JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = |v: &Option<Value>| v.as_ref().map_or_else(String::new, canonical_json);
        let at = describe_pointer(&self.pointer);
        match self.kind {
            DiffKind::Added => write!(f, "+ {at}: {}", json(&self.new)),
            DiffKind::Removed => write!(f, "- {at}: {}", json(&self.old)),
            DiffKind::Changed => write!(f, "~ {at}: {} -> {}", json(&self.old), json(&self.new)),
        }
    }
}

/// Every difference from `old` to `new`; `None` is "does not exist" (before a
/// creation, after a deletion), so `diff(None, Some(doc))` is one addition at `""`.
///
/// The order is deterministic: document order, object members by key (sorted
/// by UTF-8 bytes, whatever the maps' own order), array elements by index;
/// except that elements dropped from the end of an array come last first, so
/// that the entries' [`DiffEntry::to_edit`]s, applied in order to `old`,
/// give `new`.
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<DiffEntry> {
    let mut out = Vec::new();
    let mut pointer = String::new();
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => out.push(added(&pointer, new)),
        (Some(old), None) => out.push(removed(&pointer, old)),
        (Some(old), Some(new)) => diff_values(&mut pointer, old, new, &mut out),
    }
    out
}

fn added(pointer: &str, new: &Value) -> DiffEntry {
    DiffEntry {
        pointer: pointer.to_string(),
        kind: DiffKind::Added,
        old: None,
        new: Some(new.clone()),
    }
}

fn removed(pointer: &str, old: &Value) -> DiffEntry {
    DiffEntry {
        pointer: pointer.to_string(),
        kind: DiffKind::Removed,
        old: Some(old.clone()),
        new: None,
    }
}

/// Diffs `old` against `new` at `pointer`, restoring `pointer` before returning.
fn diff_values(pointer: &mut String, old: &Value, new: &Value, out: &mut Vec<DiffEntry>) {
    let base = pointer.len();
    match (old, new) {
        (Value::Object(old_map), Value::Object(new_map)) => {
            let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                push_token(pointer, key);
                match (old_map.get(key), new_map.get(key)) {
                    (Some(o), Some(n)) => diff_values(pointer, o, n, out),
                    (Some(o), None) => out.push(removed(pointer, o)),
                    (None, Some(n)) => out.push(added(pointer, n)),
                    (None, None) => {}
                }
                pointer.truncate(base);
            }
        }
        (Value::Array(old_items), Value::Array(new_items)) => {
            for (i, (o, n)) in old_items.iter().zip(new_items).enumerate() {
                push_token(pointer, &i.to_string());
                diff_values(pointer, o, n, out);
                pointer.truncate(base);
            }
            for (i, n) in new_items.iter().enumerate().skip(old_items.len()) {
                push_token(pointer, &i.to_string());
                out.push(added(pointer, n));
                pointer.truncate(base);
            }
            for (i, o) in old_items.iter().enumerate().skip(new_items.len()).rev() {
                push_token(pointer, &i.to_string());
                out.push(removed(pointer, o));
                pointer.truncate(base);
            }
        }
        _ if old == new => {}
        _ => out.push(DiffEntry {
            pointer: pointer.clone(),
            kind: DiffKind::Changed,
            old: Some(old.clone()),
            new: Some(new.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::edit::apply_edits;

    fn entry(pointer: &str, kind: DiffKind, old: Option<Value>, new: Option<Value>) -> DiffEntry {
        DiffEntry {
            pointer: pointer.into(),
            kind,
            old,
            new,
        }
    }

    /// Checks that the diff's edits turn `old` into `new`.
    fn round_trips(old: &Value, new: &Value) {
        let edits: Vec<Edit> = diff(Some(old), Some(new))
            .iter()
            .map(DiffEntry::to_edit)
            .collect();
        assert_eq!(&apply_edits(old, &edits).expect("edits apply"), new);
    }

    #[test]
    fn equal_values_have_no_diff() {
        let v = json!({"a": [1, {"b": null}], "c": "x"});
        assert!(diff(Some(&v), Some(&v)).is_empty());
        assert!(diff(None, None).is_empty());
    }

    #[test]
    fn creation_and_deletion_are_one_entry_at_the_root() {
        let v = json!({"a": 1});
        assert_eq!(
            diff(None, Some(&v)),
            vec![entry("", DiffKind::Added, None, Some(v.clone()))]
        );
        assert_eq!(
            diff(Some(&v), None),
            vec![entry("", DiffKind::Removed, Some(v.clone()), None)]
        );
    }

    #[test]
    fn nested_members_are_added_removed_and_changed_in_key_order() {
        let old = json!({"db": {"host": "a", "port": 1, "old": true}, "z": 1});
        let new = json!({"db": {"host": "b", "port": 1, "pool": {"max": 4}}, "a": 0, "z": 1});
        assert_eq!(
            diff(Some(&old), Some(&new)),
            vec![
                entry("/a", DiffKind::Added, None, Some(json!(0))),
                entry(
                    "/db/host",
                    DiffKind::Changed,
                    Some(json!("a")),
                    Some(json!("b"))
                ),
                entry("/db/old", DiffKind::Removed, Some(json!(true)), None),
                entry("/db/pool", DiffKind::Added, None, Some(json!({"max": 4}))),
            ]
        );
        round_trips(&old, &new);
    }

    #[test]
    fn arrays_are_compared_by_index() {
        let old = json!({"l": [1, 2, 3, 4]});
        let new = json!({"l": [1, 5]});
        assert_eq!(
            diff(Some(&old), Some(&new)),
            vec![
                entry("/l/1", DiffKind::Changed, Some(json!(2)), Some(json!(5))),
                entry("/l/3", DiffKind::Removed, Some(json!(4)), None),
                entry("/l/2", DiffKind::Removed, Some(json!(3)), None),
            ]
        );
        round_trips(&old, &new);
        assert_eq!(
            diff(Some(&new), Some(&old)),
            vec![
                entry("/l/1", DiffKind::Changed, Some(json!(5)), Some(json!(2))),
                entry("/l/2", DiffKind::Added, None, Some(json!(3))),
                entry("/l/3", DiffKind::Added, None, Some(json!(4))),
            ]
        );
        round_trips(&new, &old);
        round_trips(
            &json!({"l": [[1, {"a": 1}]]}),
            &json!({"l": [[1, {"a": 2}, 3]]}),
        );
    }

    #[test]
    fn a_change_of_kind_is_one_change() {
        let old = json!({"a": {"b": 1}, "n": 1, "s": [1]});
        let new = json!({"a": [1], "n": "1", "s": {"0": 1}});
        assert_eq!(
            diff(Some(&old), Some(&new)),
            vec![
                entry(
                    "/a",
                    DiffKind::Changed,
                    Some(json!({"b": 1})),
                    Some(json!([1]))
                ),
                entry("/n", DiffKind::Changed, Some(json!(1)), Some(json!("1"))),
                entry(
                    "/s",
                    DiffKind::Changed,
                    Some(json!([1])),
                    Some(json!({"0": 1}))
                ),
            ]
        );
        round_trips(&old, &new);
        // JSON treats 1 and 1.0 alike, their stored text does not: a change.
        assert_eq!(
            diff(Some(&json!({"x": 1})), Some(&json!({"x": 1.0}))).len(),
            1
        );
    }

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        let old = json!({"a/b": {"c~d": 1}, "~1": 0});
        let new = json!({"a/b": {"c~d": 2}, "": 3});
        let pointers: Vec<String> = diff(Some(&old), Some(&new))
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(pointers, vec!["/", "/a~1b/c~0d", "/~01"]);
        round_trips(&old, &new);
    }

    #[test]
    fn entries_print_for_people() {
        let old = json!({"a": 1, "b": [true]});
        let new = json!({"a": "one", "c": {"x": null}});
        let lines: Vec<String> = diff(Some(&old), Some(&new))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            vec!["~ /a: 1 -> \"one\"", "- /b: [true]", "+ /c: {\"x\":null}"]
        );
        assert_eq!(
            diff(None, Some(&json!({})))
                .first()
                .map(ToString::to_string),
            Some("+ the document root: {}".to_string())
        );
    }

    #[test]
    fn entries_serialize_with_lowercase_kinds() {
        let e = entry("/a", DiffKind::Added, None, Some(json!(1)));
        assert_eq!(
            serde_json::to_value(&e).expect("serializes"),
            json!({"pointer": "/a", "kind": "added", "old": null, "new": 1})
        );
    }
}
