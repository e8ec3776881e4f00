//! What a [`crate::Watched`] follows (its [`Shape`]: one namespace, or several
//! of one environment) and the documents it holds ([`View`]): how each watch
//! event changes them, and which JSON value the typed `T` is read from.
//!
//! Pure bookkeeping, no I/O: the watch task feeds events in, the cache stores
//! and restores views.

use std::collections::BTreeMap;

use raftconf_schema::Target;
use serde_json::{Map, Value};

use crate::types::ChangeKind;
use crate::watch::WatchEvent;
use crate::{Error, Result};

/// One document of a view: the revision that wrote it and its JSON (`None`
/// if the server sent something unreadable).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doc {
    pub(crate) mod_revision: u64,
    pub(crate) value: Option<Value>,
}

/// The documents of the followed namespaces at one revision, by path.
pub(crate) type View = BTreeMap<String, Doc>;

/// The revision a view's value stands for: the newest revision that wrote one
/// of its documents (0 for an empty view). Nothing the view covers changed
/// between that revision and the one the view was taken at, so the committed
/// state at this revision is exactly the view.
pub(crate) fn view_revision(view: &View) -> u64 {
    view.values().map(|d| d.mod_revision).max().unwrap_or(0)
}

/// What a `Watched` follows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// One namespace (or, for a file source, one file): `T` is its document.
    One(String),
    /// Several namespaces of one environment, listed and/or as the whole
    /// `tenant/env/` prefix: `T` is read from an object whose keys are the
    /// namespace names and whose values are their documents. A namespace
    /// that does not exist is absent from the object.
    Set {
        /// `tenant/env/`, the environment every target lies in.
        env: String,
        /// The targets as given (normalised), for the subscription.
        targets: Vec<String>,
    },
}

impl Shape {
    /// The shape for `targets`: one namespace path gives [`Shape::One`];
    /// a prefix, or several paths, give [`Shape::Set`], which needs them all
    /// in one environment (a transaction, the unit a set changes
    /// atomically by, never spans two).
    pub(crate) fn for_targets(targets: &[String]) -> Result<Shape> {
        let parsed = targets
            .iter()
            .map(|t| t.parse::<Target>().map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;
        match parsed.as_slice() {
            [] => Err(Error::InvalidArgument(
                "a watched configuration needs at least one path or prefix".into(),
            )),
            [Target::Namespace(p)] => Ok(Shape::One(p.to_string())),
            [first, ..] => {
                let env = env_of(first);
                if let Some(other) = parsed.iter().find(|t| env_of(t) != env) {
                    return Err(Error::InvalidArgument(format!(
                        "the namespaces of one watched set must share an environment: \
                         {other} is not in {env}"
                    )));
                }
                let mut targets: Vec<String> = parsed.iter().map(|t| t.to_string()).collect();
                targets.sort();
                targets.dedup();
                Ok(Shape::Set { env, targets })
            }
        }
    }

    /// What to subscribe to.
    pub(crate) fn targets(&self) -> Vec<String> {
        match self {
            Shape::One(path) => vec![path.clone()],
            Shape::Set { targets, .. } => targets.clone(),
        }
    }

    /// A name for logs, errors and the cache file: the path, or the targets
    /// joined by commas.
    pub(crate) fn label(&self) -> String {
        self.targets().join(",")
    }

    /// Whether the document at `path` is part of this shape.
    pub(crate) fn covers(&self, path: &str) -> bool {
        match self {
            Shape::One(p) => p == path,
            Shape::Set { env, targets } => {
                (!path.ends_with('/') && targets.iter().any(|t| t == path))
                    || (targets.iter().any(|t| t == env)
                        && path
                            .strip_prefix(env.as_str())
                            .is_some_and(|name| !name.is_empty() && !name.contains('/')))
            }
        }
    }

    /// The view after `event`, starting from `view`; `None` when the event
    /// says nothing about the covered documents (progress, unrelated
    /// namespaces, schema changes).
    pub(crate) fn apply(&self, view: &View, event: &WatchEvent) -> Option<View> {
        match event {
            WatchEvent::Snapshot { entries, .. } => Some(
                entries
                    .iter()
                    .filter(|e| self.covers(&e.path))
                    .map(|e| {
                        let doc = Doc {
                            mod_revision: e.mod_revision,
                            value: e.value.clone(),
                        };
                        (e.path.clone(), doc)
                    })
                    .collect(),
            ),
            WatchEvent::Change {
                revision, changes, ..
            } => {
                let mut next: Option<View> = None;
                for change in changes.iter().filter(|c| self.covers(&c.path)) {
                    match change.kind {
                        ChangeKind::Put => {
                            let doc = Doc {
                                mod_revision: *revision,
                                value: change.value.clone(),
                            };
                            next.get_or_insert_with(|| view.clone())
                                .insert(change.path.clone(), doc);
                        }
                        ChangeKind::Delete => {
                            next.get_or_insert_with(|| view.clone())
                                .remove(&change.path);
                        }
                        // Schema changes (and kinds newer than this client)
                        // are not documents.
                        _ => {}
                    }
                }
                next
            }
            WatchEvent::Progress { .. } => None,
        }
    }

    /// The JSON `T` is read from, for `view` at `revision`. For one
    /// namespace, its document; a missing one is [`Error::Deleted`] (or
    /// [`Error::NotFound`] before the first value, when `starting`).
    pub(crate) fn value_of(&self, view: &View, revision: u64, starting: bool) -> Result<Value> {
        let unreadable = |path: &str, doc: &Doc| Error::Deserialize {
            path: path.to_string(),
            revision: doc.mod_revision,
            message: "the document is missing or unreadable".into(),
        };
        match self {
            Shape::One(path) => match view.get(path) {
                Some(doc) => doc.value.clone().ok_or_else(|| unreadable(path, doc)),
                None if starting => Err(Error::NotFound(format!(
                    "{path} does not exist at revision {revision}"
                ))),
                None => Err(Error::Deleted {
                    path: path.clone(),
                    revision,
                }),
            },
            Shape::Set { env, .. } => {
                let mut object = Map::new();
                for (path, doc) in view {
                    let name = path.strip_prefix(env.as_str()).unwrap_or(path);
                    let value = doc.value.clone().ok_or_else(|| unreadable(path, doc))?;
                    object.insert(name.to_string(), value);
                }
                Ok(Value::Object(object))
            }
        }
    }
}

/// `tenant/env/` of a target.
fn env_of(target: &Target) -> String {
    match target {
        Target::Namespace(p) => p.env_path().to_string(),
        Target::Prefix(e) => e.to_string(),
    }
}

/// The paths whose documents differ between `from` and `to` (changed, added
/// or removed), with the revision to report each at: the revision that wrote
/// the new document, or `revision` for one that is gone.
pub(crate) fn changed_paths(from: &View, to: &View, revision: u64) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = to
        .iter()
        .filter(|(path, doc)| from.get(*path) != Some(doc))
        .map(|(path, doc)| (path.clone(), doc.mod_revision))
        .collect();
    out.extend(
        from.keys()
            .filter(|path| !to.contains_key(*path))
            .map(|path| (path.clone(), revision)),
    );
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::NamespaceEntry;
    use crate::watch::Change;

    fn set(targets: &[&str]) -> Shape {
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        Shape::for_targets(&targets).expect("valid targets")
    }

    fn change(revision: u64, changes: &[(ChangeKind, &str, Option<Value>)]) -> WatchEvent {
        WatchEvent::Change {
            revision,
            changes: changes
                .iter()
                .map(|(kind, path, value)| Change {
                    kind: *kind,
                    path: path.to_string(),
                    version: 1,
                    value: value.clone(),
                })
                .collect(),
            author: String::new(),
            time_ms: 0,
            message: String::new(),
        }
    }

    #[test]
    fn one_path_is_one_namespace_and_anything_else_is_a_set_of_one_environment() {
        assert_eq!(set(&["a/b/c"]), Shape::One("a/b/c".into()));
        assert_eq!(
            set(&["a/b/d", "a/b/c", "a/b/c"]),
            Shape::Set {
                env: "a/b/".into(),
                targets: vec!["a/b/c".into(), "a/b/d".into()]
            }
        );
        let err = Shape::for_targets(&["a/b/c".into(), "a/x/c".into()]).expect_err("two envs");
        assert!(err.to_string().contains("a/x/c is not in a/b/"), "{err}");
        assert!(Shape::for_targets(&[]).is_err());
        assert!(Shape::for_targets(&["a/b".into()]).is_err(), "not a path");
    }

    #[test]
    fn a_prefix_covers_its_namespaces_only_and_a_list_its_members_only() {
        let prefix = set(&["a/b/"]);
        assert!(prefix.covers("a/b/c"));
        assert!(!prefix.covers("a/bb/c"));
        assert!(!prefix.covers("a/b/"));
        let list = set(&["a/b/c", "a/b/d"]);
        assert!(list.covers("a/b/d"));
        assert!(!list.covers("a/b/e"));
    }

    #[test]
    fn events_change_the_view_and_the_value_is_an_object_by_namespace_name() {
        let shape = set(&["t/e/a", "t/e/b"]);
        let snapshot = WatchEvent::Snapshot {
            revision: 5,
            entries: ["t/e/a", "t/e/z"]
                .iter()
                .map(|p| NamespaceEntry {
                    path: p.to_string(),
                    version: 1,
                    mod_revision: 3,
                    value: Some(json!({"p": p})),
                })
                .collect(),
            reason: "start".into(),
        };
        let view = shape.apply(&View::new(), &snapshot).expect("a snapshot");
        assert_eq!(view.keys().collect::<Vec<_>>(), ["t/e/a"]);
        assert_eq!(view_revision(&view), 3);
        // Two namespaces in one transaction: one new view.
        let tx = change(
            6,
            &[
                (ChangeKind::Put, "t/e/a", Some(json!(1))),
                (ChangeKind::Put, "t/e/b", Some(json!(2))),
                (ChangeKind::Put, "t/e/z", Some(json!(3))),
            ],
        );
        let after = shape.apply(&view, &tx).expect("covered");
        assert_eq!(
            shape.value_of(&after, 6, false).expect("readable"),
            json!({"a": 1, "b": 2})
        );
        assert_eq!(view_revision(&after), 6);
        assert_eq!(
            changed_paths(&view, &after, 6),
            [("t/e/a".to_string(), 6), ("t/e/b".to_string(), 6)]
        );
        // Unrelated namespaces, schema changes and progress change nothing.
        let schema = change(7, &[(ChangeKind::SchemaSet, "t/e/a", Some(json!({})))]);
        assert!(shape.apply(&after, &schema).is_none());
        let other = change(8, &[(ChangeKind::Put, "t/e/z", Some(json!(0)))]);
        assert!(shape.apply(&after, &other).is_none());
        assert!(shape
            .apply(&after, &WatchEvent::Progress { revision: 9 })
            .is_none());
        // A delete removes the member.
        let gone = shape
            .apply(&after, &change(10, &[(ChangeKind::Delete, "t/e/b", None)]))
            .expect("covered");
        assert_eq!(
            changed_paths(&after, &gone, 10),
            [("t/e/b".to_string(), 10)]
        );
    }

    #[test]
    fn one_namespace_missing_is_not_found_at_start_and_deleted_later() {
        let shape = set(&["t/e/a"]);
        assert!(matches!(
            shape.value_of(&View::new(), 4, true),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            shape.value_of(&View::new(), 4, false),
            Err(Error::Deleted { revision: 4, .. })
        ));
        let unreadable = View::from([(
            "t/e/a".to_string(),
            Doc {
                mod_revision: 2,
                value: None,
            },
        )]);
        assert!(matches!(
            shape.value_of(&unreadable, 4, false),
            Err(Error::Deserialize { revision: 2, .. })
        ));
    }
}
