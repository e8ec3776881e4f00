//! The schemas of a run: the ones the workload sets on its namespaces, and
//! reading every node's schema history at the end.
//!
//! The workload's values are `{"w": "p<process>-<n>"}` (a put or CAS) and
//! `{"w": "p<process>-<n>-<k>"}` (namespace `k` of a transaction), plus the
//! setup's `{"w": "setup"}`. The rules split them differently, so a value
//! accepted under one schema is refused under another:
//!
//! | rule | accepts |
//! |---|---|
//! | [`Rule::Any`] | every value |
//! | [`Rule::Even`] | values whose op counter `n` is even (puts, CAS and transactions alike) |
//! | [`Rule::Singles`] | values of puts and CAS, no transaction's |
//!
//! Each schema set gets a `description` naming its operation, so every
//! schema in a run is unique and names its write, like the values do.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use raftconf_client::Client;
use serde_json::{json, Value};

use crate::cluster::{admin_options, client_addr};
use crate::history::SchemaVersion;

/// A rule a schema can set on the workload's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any string.
    Any,
    /// The op counter is even.
    Even,
    /// Not a transaction's value.
    Singles,
}

impl Rule {
    /// Every rule, for the workload to pick from.
    pub const ALL: [Rule; 3] = [Rule::Any, Rule::Even, Rule::Singles];

    /// The schema enforcing this rule, named `name` (its `description`).
    pub fn schema(self, name: &str) -> Value {
        let w = match self {
            Rule::Any => json!({"type": "string"}),
            Rule::Even => json!({"type": "string", "pattern": "^p[0-9]+-[0-9]*[02468](-[0-9]+)?$"}),
            Rule::Singles => json!({"type": "string", "pattern": "^p[0-9]+-[0-9]+$"}),
        };
        json!({
            "description": name,
            "type": "object",
            "properties": {"w": w},
        })
    }
}

/// Every version of the schemas of `paths` (`tenant/namespace`) as the node
/// in `slot` serves them (a client of that node alone: the read is
/// linearizable, answered from that node's state), oldest first.
pub async fn read_schemas(
    slot: usize,
    paths: &[String],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, Vec<SchemaVersion>>> {
    let client = Client::connect_with([client_addr(slot)], admin_options()).await?;
    let mut out = BTreeMap::new();
    for path in paths {
        let records = tokio::time::timeout(timeout, client.schema_history(path))
            .await
            .map_err(|_| anyhow::anyhow!("reading the schema history of {path} timed out"))?
            .with_context(|| format!("the schema history of {path} on slot {slot}"))?;
        let mut versions: Vec<SchemaVersion> = records
            .into_iter()
            .map(|r| SchemaVersion {
                version: r.version,
                revision: r.revision,
                schema: r.schema,
                forced: r.forced,
            })
            .collect();
        versions.sort_by_key(|v| v.version);
        out.insert(path.clone(), versions);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use raftconf_schema::SchemaDocument;
    use serde_json::json;

    use super::Rule;

    /// Whether `w` is valid under `rule`, checked by the server's own code.
    fn accepts(rule: Rule, w: &str) -> bool {
        SchemaDocument::from_value(rule.schema("test"))
            .and_then(|d| d.compile())
            .expect("the schema compiles")
            .is_valid(&json!({ "w": w }))
    }

    #[test]
    fn the_rules_split_the_workloads_values() {
        let values = ["p1-2", "p1-3", "p12-40-2", "p12-41-0", "setup"];
        let table = |rule| values.map(|w| accepts(rule, w));
        assert_eq!(table(Rule::Any), [true, true, true, true, true]);
        assert_eq!(table(Rule::Even), [true, false, true, false, false]);
        assert_eq!(table(Rule::Singles), [true, true, false, false, false]);
    }
}
