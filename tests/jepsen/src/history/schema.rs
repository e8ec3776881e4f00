//! Schema history as the nodes serve it at the end of a run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One version of a namespace's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// 1 for the first, +1 per set or delete.
    pub version: u64,
    /// The revision that created it.
    pub revision: u64,
    /// The schema; `None` when this version removed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Set with force over live documents that did not validate.
    #[serde(default)]
    pub forced: bool,
}

/// The schema path (`tenant/namespace`) that binds the namespace `ns`
/// (`tenant/env/namespace`); `None` if `ns` is not such a path.
pub fn schema_path(ns: &str) -> Option<String> {
    let mut parts = ns.split('/');
    let (Some(tenant), Some(_env), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!tenant.is_empty() && !name.is_empty()).then(|| format!("{tenant}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::schema_path;

    #[test]
    fn a_schema_binds_the_namespace_in_every_environment() {
        assert_eq!(schema_path("t/e/a").as_deref(), Some("t/a"));
        assert_eq!(schema_path("t/other/a").as_deref(), Some("t/a"));
        assert_eq!(schema_path("t/e/"), None);
        assert_eq!(schema_path("t/a"), None);
        assert_eq!(schema_path("t/e/a/b"), None);
    }
}
