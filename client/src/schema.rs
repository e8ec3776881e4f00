//! Schemas: the `Schema` service. A JSON Schema (draft 2020-12) belongs to
//! `tenant/namespace` and binds that namespace in every environment of the
//! tenant; every put is validated against it when it is committed.
//!
//! A put that breaks the schema fails with [`Error::SchemaViolation`]; a
//! schema that documents already live in some environment would break is
//! refused with [`Error::SchemaIncompatible`] unless it is set with
//! [`SchemaOptions::force`]. Both list every violation.

use raftconf_api::v1 as pb;
use raftconf_api::v1::schema_client::SchemaClient;
use raftconf_schema::{validate_name, Format};
use serde_json::Value;

use crate::failover::CallKind;
use crate::types::parse_optional_value;
use crate::{Client, Error, Result};

/// How a schema is set: `force` and a message kept in its history.
///
/// ```
/// use raftconf_client::SchemaOptions;
///
/// let opts = SchemaOptions::default().force(true).message("port is an integer now");
/// assert!(opts.force);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Accept the schema even if documents live in some environment do not
    /// validate against it (they stay as they are; history records it as
    /// forced). Without it such a schema is refused with
    /// [`Error::SchemaIncompatible`].
    pub force: bool,
    /// Why: kept in the schema's history.
    pub message: String,
}

impl SchemaOptions {
    /// Sets [`SchemaOptions::force`].
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets [`SchemaOptions::message`].
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// What a schema change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaWrite {
    /// The store revision the change created.
    pub revision: u64,
    /// The schema version it created (a deletion is a version too).
    pub version: u64,
}

/// One version of a namespace's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRecord {
    /// The schema version: 1 for the first, +1 per set or delete.
    pub version: u64,
    /// The store revision that created this version.
    pub revision: u64,
    /// The schema; `None` when this version deleted it.
    pub schema: Option<Value>,
    /// This version removed the schema: the namespace accepts any object.
    pub deleted: bool,
    /// Set with [`SchemaOptions::force`] over documents that did not validate.
    pub forced: bool,
    /// Who made the change.
    pub author: String,
    /// When, in milliseconds since the Unix epoch (stamped by the leader).
    pub time_ms: i64,
    /// Why.
    pub message: String,
}

impl SchemaRecord {
    fn from_proto(path: &str, r: pb::SchemaRecord) -> Result<Self> {
        Ok(SchemaRecord {
            schema: parse_optional_value(path, r.revision, &r.schema)?,
            version: r.version,
            revision: r.revision,
            deleted: r.deleted,
            forced: r.forced,
            author: r.author,
            time_ms: r.time_ms,
            message: r.message,
        })
    }
}

/// Splits and checks `tenant/namespace`.
fn schema_path(path: &str) -> Result<(String, String)> {
    let Some((tenant, namespace)) = path.split_once('/') else {
        return Err(Error::InvalidArgument(format!(
            "invalid schema path {path:?}: expected TENANT/NAMESPACE (a schema binds the namespace in every environment)"
        )));
    };
    if namespace.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "invalid schema path {path:?}: expected TENANT/NAMESPACE, without an environment (a schema binds the namespace in every environment)"
        )));
    }
    validate_name("tenant", tenant)?;
    validate_name("namespace", namespace)?;
    Ok((tenant.to_string(), namespace.to_string()))
}

impl Client {
    /// Sets the schema of `path` (`tenant/namespace`) to a new version.
    ///
    /// Refused with [`Error::SchemaIncompatible`], listing every environment
    /// and pointer, when a live document of the namespace would not validate
    /// against it, unless [`SchemaOptions::force`]; refused with
    /// [`Error::InvalidArgument`] when it is not a valid draft 2020-12 schema.
    ///
    /// ```no_run
    /// use raftconf_client::{Client, Error, SchemaOptions};
    /// use serde_json::json;
    ///
    /// # async fn example() -> Result<(), Error> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// let schema = json!({
    ///     "type": "object",
    ///     "properties": {"port": {"type": "integer"}},
    ///     "required": ["port"]
    /// });
    /// let opts = SchemaOptions::default().message("ports are integers");
    /// match client.set_schema("payments/checkout", &schema, opts).await {
    ///     Ok(w) => println!("schema version {} at revision {}", w.version, w.revision),
    ///     Err(Error::SchemaIncompatible { violations, .. }) => {
    ///         for v in violations {
    ///             println!("would break {}: {}", v.field, v.description);
    ///         }
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_schema(
        &self,
        path: &str,
        schema: &Value,
        options: SchemaOptions,
    ) -> Result<SchemaWrite> {
        let text = raftconf_schema::canonical_json(schema);
        self.set_schema_text(path, &text, Format::Json, options)
            .await
    }

    /// Sets the schema of `path` (`tenant/namespace`) from JSON or YAML text
    /// (TOML is refused); the server parses it and reports a malformed one
    /// with its line and column. Otherwise as [`Client::set_schema`].
    pub async fn set_schema_text(
        &self,
        path: &str,
        text: &str,
        format: Format,
        options: SchemaOptions,
    ) -> Result<SchemaWrite> {
        let (tenant, namespace) = schema_path(path)?;
        let format = match format {
            Format::Json => pb::DocumentFormat::Json,
            Format::Yaml => pb::DocumentFormat::Yaml,
            Format::Toml => {
                return Err(Error::InvalidArgument(format!(
                    "schema of {path}: a schema is JSON or YAML, not TOML"
                )))
            }
        };
        let request = pb::SetSchemaRequest {
            tenant,
            namespace,
            schema: text.to_string(),
            format: format as i32,
            force: options.force,
            message: options.message,
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("set schema of {path}"),
                request,
                |ch, r| async move { SchemaClient::new(ch).set_schema(r).await },
            )
            .await?;
        Ok(SchemaWrite {
            revision: response.revision,
            version: response.version,
        })
    }

    /// The schema of `path` (`tenant/namespace`): the current version, or
    /// `version` from its history. A version that deleted the schema has
    /// [`SchemaRecord::deleted`] set and no schema; a namespace that never had
    /// one is [`Error::NotFound`].
    pub async fn get_schema(&self, path: &str, version: Option<u64>) -> Result<SchemaRecord> {
        let (tenant, namespace) = schema_path(path)?;
        let request = pb::GetSchemaRequest {
            tenant,
            namespace,
            version: version.unwrap_or(0),
        };
        let max = self.options().max_response_bytes;
        let response = self
            .call(
                CallKind::Read,
                || format!("get schema of {path}"),
                request,
                move |ch, r| async move {
                    SchemaClient::new(ch)
                        .max_decoding_message_size(max)
                        .get_schema(r)
                        .await
                },
            )
            .await?;
        let record = response.record.ok_or_else(|| {
            Error::NotFound(format!("get schema of {path}: the server sent no record"))
        })?;
        SchemaRecord::from_proto(path, record)
    }

    /// Every version of the schema of `path` (`tenant/namespace`) that is
    /// kept, newest first; empty when it never had one.
    pub async fn schema_history(&self, path: &str) -> Result<Vec<SchemaRecord>> {
        let (tenant, namespace) = schema_path(path)?;
        let request = pb::SchemaHistoryRequest { tenant, namespace };
        let max = self.options().max_response_bytes;
        let response = self
            .call(
                CallKind::Read,
                || format!("schema history of {path}"),
                request,
                move |ch, r| async move {
                    SchemaClient::new(ch)
                        .max_decoding_message_size(max)
                        .schema_history(r)
                        .await
                },
            )
            .await?;
        response
            .records
            .into_iter()
            .map(|r| SchemaRecord::from_proto(path, r))
            .collect()
    }

    /// Removes the schema of `path` (`tenant/namespace`): a new version
    /// without one, after which the namespace accepts any object.
    pub async fn delete_schema(&self, path: &str, message: &str) -> Result<SchemaWrite> {
        let (tenant, namespace) = schema_path(path)?;
        let request = pb::DeleteSchemaRequest {
            tenant,
            namespace,
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("delete schema of {path}"),
                request,
                |ch, r| async move { SchemaClient::new(ch).delete_schema(r).await },
            )
            .await?;
        Ok(SchemaWrite {
            revision: response.revision,
            version: response.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_paths_are_tenant_slash_namespace() {
        assert_eq!(
            schema_path("pay/checkout").expect("valid"),
            ("pay".to_string(), "checkout".to_string())
        );
        for (bad, needle) in [
            ("pay", "expected TENANT/NAMESPACE"),
            ("pay/prod/checkout", "without an environment"),
            ("Pay/checkout", "tenant"),
            ("pay/", "namespace"),
            ("/checkout", "tenant"),
        ] {
            let err = schema_path(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(needle), "{bad}: {text}");
            assert!(!text.contains('\n'), "{bad}: one line: {text}");
        }
    }

    #[tokio::test]
    async fn bad_paths_and_toml_are_refused_before_anything_is_sent() {
        // Nothing listens on port 1: a call that got that far would be Unavailable.
        let client = Client::connect(["127.0.0.1:1"]).await.expect("lazy");
        let opts = SchemaOptions::default;
        let err = client
            .set_schema("pay/prod/a", &serde_json::json!({}), opts())
            .await
            .expect_err("bad path");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let err = client
            .set_schema_text("pay/a", "type = 'object'", Format::Toml, opts())
            .await
            .expect_err("toml");
        assert!(err.to_string().contains("not TOML"), "{err}");
        for err in [
            client.get_schema("pay", None).await.expect_err("bad path"),
            client
                .delete_schema("pay/a/b", "")
                .await
                .expect_err("bad path"),
        ] {
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        }
        let err = client.schema_history("PAY/a").await.expect_err("bad path");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn records_convert_from_the_wire() {
        let set = SchemaRecord::from_proto(
            "pay/a",
            pb::SchemaRecord {
                version: 2,
                revision: 9,
                schema: r#"{"type":"object"}"#.into(),
                deleted: false,
                forced: true,
                author: "ops".into(),
                time_ms: 5,
                message: "why".into(),
            },
        )
        .expect("valid");
        assert_eq!(set.schema, Some(serde_json::json!({"type": "object"})));
        assert!(set.forced && !set.deleted);
        let deleted = SchemaRecord::from_proto(
            "pay/a",
            pb::SchemaRecord {
                version: 3,
                deleted: true,
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(deleted.schema, None);
        let bad = SchemaRecord::from_proto(
            "pay/a",
            pb::SchemaRecord {
                schema: "{".into(),
                ..Default::default()
            },
        );
        assert!(matches!(bad, Err(Error::Deserialize { .. })));
    }
}
