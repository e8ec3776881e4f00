//! Transactions: several namespaces of one environment published as one
//! revision, all or nothing.

use raftconf_api::v1 as pb;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_schema::EnvPath;
use serde_json::Value;

use crate::client::Client;
use crate::failover::CallKind;
use crate::{Error, Result};

/// One namespace's write in [`Client::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceWrite {
    /// The namespace name (in the transaction's environment).
    pub namespace: String,
    /// The new document (a JSON object); `None` deletes the namespace.
    pub value: Option<Value>,
    /// Compare-and-set on this namespace's version (`Some(0)`: must not exist).
    pub if_version: Option<u64>,
}

impl NamespaceWrite {
    /// Writes `value` to `namespace`.
    pub fn put(namespace: impl Into<String>, value: Value) -> Self {
        NamespaceWrite {
            namespace: namespace.into(),
            value: Some(value),
            if_version: None,
        }
    }

    /// Deletes `namespace`.
    pub fn delete(namespace: impl Into<String>) -> Self {
        NamespaceWrite {
            namespace: namespace.into(),
            value: None,
            if_version: None,
        }
    }

    /// Only if the namespace is at `version` (`0`: only if it does not exist).
    pub fn if_version(mut self, version: u64) -> Self {
        self.if_version = Some(version);
        self
    }
}

impl Client {
    /// Publishes several namespaces of the environment `tenant/env` as one
    /// transaction: one revision, one watch event carrying every change, and
    /// all or nothing (a refusal lists every refused write). Returns the
    /// revision.
    ///
    /// ```no_run
    /// use raftconf_client::{Client, NamespaceWrite};
    /// use serde_json::json;
    ///
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// let revision = client
    ///     .apply(
    ///         "payments/prod",
    ///         &[
    ///             NamespaceWrite::put("db", json!({"pool": 16})),
    ///             NamespaceWrite::put("checkout", json!({"db_pool": 16})),
    ///         ],
    ///         "grow the pool everywhere at once",
    ///     )
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply(&self, env: &str, writes: &[NamespaceWrite], message: &str) -> Result<u64> {
        let env = EnvPath::parse(env)?;
        if writes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "apply to {}/{}: no namespaces to write",
                env.tenant, env.env
            )));
        }
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            raftconf_schema::validate_name("namespace", &w.namespace)?;
            let (value, delete) = match &w.value {
                Some(v) if v.is_object() => (raftconf_schema::canonical_json(v), false),
                Some(v) => {
                    return Err(Error::InvalidArgument(format!(
                        "{}: a document must be a JSON object, got {}",
                        w.namespace,
                        raftconf_schema::describe_json_value(v)
                    )))
                }
                None => (String::new(), true),
            };
            out.push(pb::NamespaceWrite {
                namespace: w.namespace.clone(),
                value,
                format: pb::DocumentFormat::Json as i32,
                delete,
                if_version: w.if_version,
                if_revision: None,
            });
        }
        let request = pb::ApplyRequest {
            tenant: env.tenant.clone(),
            env: env.env.clone(),
            writes: out,
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let what = format!("apply to {}/{}", env.tenant, env.env);
        let response = self
            .call(
                CallKind::Write,
                || what.clone(),
                request,
                |ch, r| async move { ConfigClient::new(ch).apply(r).await },
            )
            .await?;
        Ok(response.revision)
    }
}
