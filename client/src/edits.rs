//! Field edits and rollbacks: writes the server computes from the document
//! as it is when the write is committed.

use raftconf_api::v1 as pb;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_schema::Edit;

use crate::client::ns_path;
use crate::client::Client;
use crate::failover::CallKind;
use crate::{Error, Result, WriteOptions, WriteResult};

impl Client {
    /// Edits fields of a namespace's current document (what `raftconf set`
    /// does): the edits are applied in order on the server, to the document as
    /// it is when the write is committed, and the result is validated like a
    /// put (schema included). Pass [`WriteOptions::if_version`] with the
    /// version you read to make it a compare-and-set.
    ///
    /// ```no_run
    /// use raftconf_client::{parse_edit, Client, WriteOptions};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// let edits = [parse_edit("/pool/size=16")?, parse_edit("-/debug")?];
    /// client.patch("payments/prod/checkout", &edits, WriteOptions::default()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn patch(
        &self,
        path: &str,
        edits: &[Edit],
        options: WriteOptions,
    ) -> Result<WriteResult> {
        let path = ns_path(path)?;
        if options.dry_run {
            return Err(Error::InvalidArgument(format!(
                "patch {path}: a patch has no dry run"
            )));
        }
        if edits.is_empty() {
            return Err(Error::InvalidArgument(format!("patch {path}: no edits")));
        }
        let edits = edits
            .iter()
            .map(|e| match e {
                Edit::Set { pointer, value } => pb::FieldEdit {
                    pointer: pointer.clone(),
                    op: Some(pb::field_edit::Op::SetJson(value.to_string())),
                },
                Edit::Remove { pointer } => pb::FieldEdit {
                    pointer: pointer.clone(),
                    op: Some(pb::field_edit::Op::Remove(true)),
                },
            })
            .collect();
        let request = pb::PatchRequest {
            path: path.clone(),
            edits,
            if_version: options.if_version,
            if_revision: options.if_revision,
            message: options.message,
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("patch {path}"),
                request,
                |ch, r| async move { ConfigClient::new(ch).patch(r).await },
            )
            .await?;
        Ok(WriteResult {
            revision: response.revision,
            version: response.version,
        })
    }

    /// Writes the value of version `to_version` of a namespace again, as a
    /// new version validated against today's schema. The version must still
    /// be in the namespace's history.
    pub async fn rollback(
        &self,
        path: &str,
        to_version: u64,
        options: WriteOptions,
    ) -> Result<WriteResult> {
        let path = ns_path(path)?;
        if options.dry_run {
            return Err(Error::InvalidArgument(format!(
                "rollback {path}: a rollback has no dry run"
            )));
        }
        let request = pb::RollbackRequest {
            path: path.clone(),
            to_version,
            if_version: options.if_version,
            if_revision: options.if_revision,
            message: options.message,
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("rollback {path} to version {to_version}"),
                request,
                |ch, r| async move { ConfigClient::new(ch).rollback(r).await },
            )
            .await?;
        Ok(WriteResult {
            revision: response.revision,
            version: response.version,
        })
    }
}
