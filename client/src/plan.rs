//! Plans: what publishing a document would change, and whether its schema
//! accepts it, without changing anything.

use raftconf_api::v1 as pb;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_schema::{DiffEntry, DiffKind, Format};
use serde_json::Value;

use crate::client::{ns_path, Client};
use crate::failover::CallKind;
use crate::{Error, FieldViolation, Result};

/// The answer to [`Client::plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The namespace's version now (0: it does not exist).
    pub current_version: u64,
    /// What would change: JSON pointers with old and new values.
    pub diff: Vec<DiffEntry>,
    /// The schema version checked against (0: the namespace has none).
    pub schema_version: u64,
    /// Every violation of the schema; empty when it accepts the document.
    pub violations: Vec<FieldViolation>,
}

impl Plan {
    /// Whether the schema accepts the document.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

impl Client {
    /// What a put of `text` to `path` would change and whether the
    /// namespace's schema accepts it, as of a linearizable read; nothing is
    /// written. (A malformed document is an [`Error::InvalidArgument`] naming
    /// its line and column.)
    pub async fn plan(&self, path: &str, text: &str, format: Format) -> Result<Plan> {
        let path = ns_path(path)?;
        let format = match format {
            Format::Json => pb::DocumentFormat::Json,
            Format::Yaml => pb::DocumentFormat::Yaml,
            Format::Toml => pb::DocumentFormat::Toml,
        };
        let request = pb::PlanRequest {
            path: path.clone(),
            value: text.to_string(),
            format: format as i32,
        };
        let response = self
            .call(
                CallKind::Read,
                || format!("plan {path}"),
                request,
                |ch, r| async move { ConfigClient::new(ch).plan(r).await },
            )
            .await?;
        let value = |text: &str| -> Result<Option<Value>> {
            if text.is_empty() {
                return Ok(None);
            }
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| Error::InvalidArgument(format!("the server sent invalid JSON: {e}")))
        };
        let mut diff = Vec::with_capacity(response.diff.len());
        for d in response.diff {
            let kind = match pb::diff_entry::Kind::try_from(d.kind) {
                Ok(pb::diff_entry::Kind::Added) => DiffKind::Added,
                Ok(pb::diff_entry::Kind::Removed) => DiffKind::Removed,
                _ => DiffKind::Changed,
            };
            diff.push(DiffEntry {
                pointer: d.pointer,
                kind,
                old: value(&d.old_json)?,
                new: value(&d.new_json)?,
            });
        }
        Ok(Plan {
            current_version: response.current_version,
            diff,
            schema_version: response.schema_version,
            violations: response
                .violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: v.pointer,
                    description: v.message,
                })
                .collect(),
        })
    }
}
