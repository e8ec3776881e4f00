//! The schema history of a run, compiled with the server's own code
//! (`raftconf_schema`) and indexed by revision: which schema was in effect
//! at a revision, and which were during a range of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use raftconf_schema::{CompiledSchema, SchemaDocument};
use serde_json::Value;

use super::window::Window;
use crate::history::SchemaVersion;

/// Compiles `schema` as the server does.
pub(crate) fn compile(schema: &Value) -> Result<CompiledSchema, String> {
    SchemaDocument::from_value(schema.clone())
        .and_then(|d| d.compile())
        .map_err(|e| e.to_string())
}

/// One version of a namespace's schema.
pub(crate) struct Version<'h> {
    pub(crate) path: &'h str,
    pub(crate) record: &'h SchemaVersion,
    /// `None` for a removal, or a schema that does not compile here (an
    /// anomaly of its own): either accepts every value.
    compiled: Option<CompiledSchema>,
}

impl Version<'_> {
    /// Whether a document with `value` may be written under this version
    /// (by the server's own call: no violations).
    pub(crate) fn accepts(&self, value: &Value) -> bool {
        self.compiled
            .as_ref()
            .is_none_or(|c| c.validate(value).is_empty())
    }

    /// Whether this version removed the schema.
    pub(crate) fn is_removal(&self) -> bool {
        self.record.schema.is_none()
    }
}

impl fmt::Display for Version<'_> {
    /// `schema v2 of t/a (revision 9, p3-17)`, `schema v3 of t/a (revision 12, removed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.record;
        let what = match &r.schema {
            None => "removed",
            Some(s) => s
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("unnamed"),
        };
        write!(
            f,
            "schema v{} of {} (revision {}, {what})",
            r.version, self.path, r.revision
        )
    }
}

/// Every schema version of every path, oldest first.
pub(crate) struct SchemaHistory<'h> {
    paths: HashMap<&'h str, Vec<Version<'h>>>,
}

impl<'h> SchemaHistory<'h> {
    /// The history of one node's [`crate::history::Event::Schemas`]; and the
    /// problems found building it (a schema that does not compile, versions
    /// missing or out of order), one line each.
    pub(crate) fn new(
        node: u64,
        schemas: &'h BTreeMap<String, Vec<SchemaVersion>>,
    ) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let mut paths = HashMap::new();
        for (path, records) in schemas {
            let mut versions: Vec<Version<'h>> = Vec::with_capacity(records.len());
            for (i, record) in records.iter().enumerate() {
                if record.version != i as u64 + 1 {
                    problems.push(format!(
                        "incomplete: node {node}'s schema history of {path} has version {} where version {} belongs (pruned, or out of order): the check needs every version",
                        record.version,
                        i + 1
                    ));
                }
                if let Some(previous) = versions.last() {
                    if record.revision <= previous.record.revision {
                        problems.push(format!(
                            "out of order: node {node}'s schema history of {path}: version {} at revision {} after revision {}",
                            record.version, record.revision, previous.record.revision
                        ));
                    }
                }
                let compiled = match &record.schema {
                    None => None,
                    Some(schema) => match compile(schema) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            problems.push(format!(
                                "does not compile: schema v{} of {path} on node {node}: {e}",
                                record.version
                            ));
                            None
                        }
                    },
                };
                versions.push(Version {
                    path,
                    record,
                    compiled,
                });
            }
            paths.insert(path.as_str(), versions);
        }
        (SchemaHistory { paths }, problems)
    }

    /// Every version of `path`, oldest first.
    pub(crate) fn versions(&self, path: &str) -> &[Version<'h>] {
        self.paths.get(path).map_or(&[], Vec::as_slice)
    }

    /// Every path with a history, sorted.
    pub(crate) fn paths(&self) -> Vec<&'h str> {
        let mut paths: Vec<&'h str> = self.paths.keys().copied().collect();
        paths.sort_unstable();
        paths
    }

    /// The version of `path` in effect once every revision ≤ `revision` is
    /// applied; `None` when it never had a schema by then.
    pub(crate) fn in_effect(&self, path: &str, revision: u64) -> Option<&Version<'h>> {
        let versions = self.versions(path);
        let set = versions.partition_point(|v| v.record.revision <= revision);
        set.checked_sub(1).and_then(|i| versions.get(i))
    }

    /// The version of `path` set at exactly `revision`.
    pub(crate) fn at(&self, path: &str, revision: u64) -> Option<&Version<'h>> {
        self.in_effect(path, revision)
            .filter(|v| v.record.revision == revision)
    }

    /// The versions of `path` in effect at some revision of `window`: the
    /// one at its start (`None` there: no schema yet), then every one set
    /// within it.
    pub(crate) fn during(
        &self,
        path: &str,
        window: Window,
    ) -> (Option<&Version<'h>>, &[Version<'h>]) {
        let versions = self.versions(path);
        let first = versions.partition_point(|v| v.record.revision <= window.lo);
        let last = versions.partition_point(|v| v.record.revision <= window.hi);
        let start = first.checked_sub(1).and_then(|i| versions.get(i));
        (start, versions.get(first..last.max(first)).unwrap_or(&[]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::window::Window;
    use super::SchemaHistory;
    use crate::history::SchemaVersion;

    fn version(version: u64, revision: u64, pattern: Option<&str>) -> SchemaVersion {
        SchemaVersion {
            version,
            revision,
            schema: pattern.map(|p| {
                json!({"description": format!("s{version}"), "properties": {"w": {"pattern": p}}})
            }),
            forced: false,
        }
    }

    #[test]
    fn the_schema_in_effect_follows_sets_and_removals() {
        let schemas = BTreeMap::from([(
            "t/a".to_string(),
            vec![
                version(1, 5, Some("^x")),
                version(2, 9, None),
                version(3, 12, Some("^y")),
            ],
        )]);
        let (history, problems) = SchemaHistory::new(1, &schemas);
        assert!(problems.is_empty(), "{problems:?}");
        let at = |r| history.in_effect("t/a", r).map(|v| v.record.version);
        assert_eq!(
            [at(4), at(5), at(8), at(9), at(12), at(99)],
            [None, Some(1), Some(1), Some(2), Some(3), Some(3)]
        );
        let v1 = history.in_effect("t/a", 5).expect("v1");
        assert!(v1.accepts(&json!({"w": "xa"})) && !v1.accepts(&json!({"w": "ya"})));
        assert!(history
            .in_effect("t/a", 9)
            .expect("v2")
            .accepts(&json!({"w": "ya"})));
        assert_eq!(v1.to_string(), "schema v1 of t/a (revision 5, s1)");
        let (start, within) = history.during("t/a", Window { lo: 6, hi: 12 });
        assert_eq!(start.map(|v| v.record.version), Some(1));
        assert_eq!(
            within.iter().map(|v| v.record.version).collect::<Vec<_>>(),
            [2, 3]
        );
        let (start, within) = history.during("t/a", Window { lo: 1, hi: 4 });
        assert!(start.is_none() && within.is_empty());
    }

    #[test]
    fn a_history_missing_its_first_versions_is_a_problem() {
        let schemas = BTreeMap::from([("t/a".to_string(), vec![version(2, 9, None)])]);
        let (_, problems) = SchemaHistory::new(3, &schemas);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with(
                "incomplete: node 3's schema history of t/a has version 2 where version 1 belongs"
            ),
            "{problems:?}"
        );
    }
}
