//! Schema checks shared by apply and the leader's pre-check: compiled schemas
//! come from a cache keyed by namespace and the revision that set the schema
//! (unique, so a schema never changes under its key, even after a tenant is
//! deleted and re-created).

use std::sync::Arc;

use raftconf_schema::{CompiledSchema, NsPath, SchemaCache, SchemaDocument};

use crate::command::Rejection;
use crate::model::SchemaRecord;

/// `("tenant/namespace", revision that set the schema)`.
pub(crate) type SchemaKey = (String, u64);

/// How many compiled schemas a node keeps.
pub(crate) const SCHEMA_CACHE_CAPACITY: usize = 1024;

/// The shared cache of compiled schemas.
pub(crate) fn new_cache() -> SchemaCache<SchemaKey> {
    SchemaCache::new(SCHEMA_CACHE_CAPACITY)
}

/// Compiles `schema_json` (canonical JSON) for `tenant/namespace`, refusing
/// what does not compile, naming where.
pub(crate) fn compile(
    tenant: &str,
    namespace: &str,
    schema_json: &str,
) -> Result<CompiledSchema, Rejection> {
    let invalid = |reason: String| Rejection::InvalidSchema {
        tenant: tenant.to_string(),
        namespace: namespace.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(schema_json).map_err(|e| invalid(format!("not JSON: {e}")))?;
    SchemaDocument::from_value(value)
        .and_then(|d| d.compile())
        .map_err(|e| invalid(e.to_string()))
}

/// The compiled form of a stored schema record (`None` for a removal).
pub(crate) fn compiled(
    cache: &SchemaCache<SchemaKey>,
    tenant: &str,
    namespace: &str,
    record: &SchemaRecord,
) -> Result<Option<Arc<CompiledSchema>>, Rejection> {
    let Some(schema) = &record.schema else {
        return Ok(None);
    };
    cache
        .get_or_try_insert_with((format!("{tenant}/{namespace}"), record.revision), || {
            compile(tenant, namespace, schema)
        })
        .map(Some)
}

/// Checks the canonical JSON `value` written to `path` against `current`
/// (the namespace's schema record, if any).
pub(crate) fn check_document(
    cache: &SchemaCache<SchemaKey>,
    path: &NsPath,
    current: Option<&SchemaRecord>,
    value: &str,
) -> Result<(), Rejection> {
    let Some(record) = current else {
        return Ok(());
    };
    let Some(schema) = compiled(cache, &path.tenant, &path.namespace, record)? else {
        return Ok(());
    };
    let doc: serde_json::Value = serde_json::from_str(value).map_err(|e| Rejection::Invalid {
        reason: format!("the document is not JSON: {e}"),
    })?;
    let violations = schema.validate(&doc);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Rejection::SchemaViolation {
            path: path.to_string(),
            schema: format!("{}/{}", path.tenant, path.namespace),
            schema_version: record.version,
            violations,
        })
    }
}
