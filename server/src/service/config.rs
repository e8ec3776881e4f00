//! The `Config` service: Get, List, Put, Delete and History of namespaces.
//!
//! Writes are checked here first (path, document, limits) so that a bad
//! request is refused with a precise reason before anything is proposed;
//! apply checks again, deterministically, on every node. A node that does
//! not lead forwards writes to the leader ([`crate::forward`]).

use std::sync::Arc;

use raftconf_api::v1 as pb;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_api::v1::config_server::Config;
use raftconf_raft::{Command, Precondition, WriteError};
use raftconf_schema::{parse_document, EnvPath, NsPath, MAX_DOCUMENT_TEXT_BYTES};
use tonic::{Request, Response, Status};
use tracing::{debug, info, instrument};

use super::{check, check_message, check_text_size, ServiceContext};
use crate::convert;
use crate::forward::serve_write;
use crate::status::ApiError;

/// Default `HistoryRequest.page_size`.
pub const HISTORY_PAGE_DEFAULT: usize = 50;
/// Largest `HistoryRequest.page_size`.
pub const HISTORY_PAGE_MAX: usize = 1000;
/// Largest put forwarded to the leader: what this node accepts from clients.
const MAX_FORWARDED_BYTES: usize = MAX_DOCUMENT_TEXT_BYTES + 64 * 1024;

/// The `raftconf.v1.Config` service.
pub struct ConfigService {
    ctx: Arc<ServiceContext>,
}

impl ConfigService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        ConfigService { ctx }
    }

    async fn get_inner(&self, req: pb::GetRequest) -> Result<pb::GetResponse, ApiError> {
        check(&req)?;
        let path: NsPath = req.path.parse()?;
        let served_at = self
            .ctx
            .read_revision(req.consistency, req.min_revision)
            .await?;
        let state = self.ctx.node.state();
        let (doc, read_at) = if req.revision > 0 {
            if req.revision > served_at {
                return Err(ApiError::OutOfRange(format!(
                    "revision {} is in the future: the store is at revision {served_at}",
                    req.revision
                )));
            }
            let doc = state.get_at(&path, req.revision)?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "namespace {path} did not exist at revision {}",
                    req.revision
                ))
            })?;
            (doc, served_at)
        } else {
            // The document and the revision it is the state of, read together:
            // applies after the read index can make it later than `served_at`,
            // and the header must say which state was read.
            let (doc, read_at) = state.get_with_revision(&path)?;
            let doc =
                doc.ok_or_else(|| ApiError::NotFound(format!("namespace {path} does not exist")))?;
            (doc, read_at.max(served_at))
        };
        Ok(convert::get_response(doc, self.ctx.header(read_at)))
    }

    async fn list_inner(&self, req: pb::ListRequest) -> Result<pb::ListResponse, ApiError> {
        let env = EnvPath::parse(&req.prefix)?;
        let served_at = self
            .ctx
            .read_revision(req.consistency, req.min_revision)
            .await?;
        let (docs, read_at) = self
            .ctx
            .node
            .state()
            .list_with_revision(&env.tenant, &env.env)?;
        Ok(pb::ListResponse {
            header: Some(self.ctx.header(read_at.max(served_at))),
            entries: docs
                .iter()
                .map(|d| convert::namespace_entry(d, req.include_values))
                .collect(),
        })
    }

    async fn put_inner(
        &self,
        author: String,
        req: &pb::PutRequest,
    ) -> Result<pb::PutResponse, ApiError> {
        check(req)?;
        let path: NsPath = req.path.parse()?;
        check_message(&req.message)?;
        let format = convert::document_format(req.format).ok_or_else(|| {
            ApiError::InvalidArgument(format!("unknown document format {}", req.format))
        })?;
        check_text_size("document text size", &req.value)?;
        let value = parse_document(&req.value, format)?;
        if let Some(rejection) = self.precheck(&path, &value, req.write_id.as_ref()).await {
            return Err(ApiError::Write(WriteError::Rejected(rejection)));
        }
        if req.dry_run {
            return self.dry_run(&path);
        }
        let precondition = Precondition {
            if_version: req.if_version,
            if_revision: req.if_revision,
        };
        let command = Command::Put {
            path: path.clone(),
            value,
            precondition,
        };
        let applied = self
            .propose(
                &path,
                author,
                req.write_id.clone(),
                req.message.clone(),
                command,
            )
            .await?;
        // Per-write lines are debug: history is the audit trail, and an info
        // line per write costs a log write on the hot path.
        debug!(
            path = %path,
            revision = applied.revision,
            version = applied.version,
            deduplicated = applied.deduplicated,
            "put applied"
        );
        Ok(pb::PutResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    /// The leader's pre-check against the current schema: a clear answer
    /// without a trip through the log (apply checks again, and decides). A
    /// refusal is confirmed on state that is up to date (a read barrier: this
    /// node may not have applied a newer schema yet), and never given to a
    /// retry of a write apply has already answered (that answer stands).
    /// Anything else (no leader here, unknown tenant) leaves it to apply.
    async fn precheck(
        &self,
        path: &NsPath,
        value: &str,
        write_id: Option<&pb::WriteId>,
    ) -> Option<raftconf_raft::Rejection> {
        let state = self.ctx.node.state();
        if !matches!(state.check_document(path, value), Ok(Err(_))) {
            return None;
        }
        self.ctx.node.read_barrier().await.ok()?;
        let rejection = state.check_document(path, value).ok()?.err()?;
        let answered = match write_id {
            Some(id) => state.write_recorded(&id.client_id, id.request_id).ok()?,
            None => false,
        };
        (!answered).then_some(rejection)
    }

    /// A dry run answers with the namespace as it is now; nothing is proposed.
    fn dry_run(&self, path: &NsPath) -> Result<pb::PutResponse, ApiError> {
        let state = self.ctx.node.state();
        let revision = state.revision();
        let current = state.get(path)?;
        debug!(path = %path, "dry run: document is valid");
        Ok(pb::PutResponse {
            header: Some(self.ctx.header(revision)),
            revision: current.as_ref().map_or(0, |d| d.record.mod_revision),
            version: current.as_ref().map_or(0, |d| d.record.version),
        })
    }

    async fn delete_inner(
        &self,
        author: String,
        req: &pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, ApiError> {
        check(req)?;
        let path: NsPath = req.path.parse()?;
        check_message(&req.message)?;
        let command = Command::Delete {
            path: path.clone(),
            precondition: Precondition {
                if_version: req.if_version,
                if_revision: req.if_revision,
            },
        };
        let applied = self
            .propose(
                &path,
                author,
                req.write_id.clone(),
                req.message.clone(),
                command,
            )
            .await?;
        debug!(path = %path, revision = applied.revision, version = applied.version, "delete applied");
        Ok(pb::DeleteResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    async fn patch_inner(
        &self,
        author: String,
        req: &pb::PatchRequest,
    ) -> Result<pb::PutResponse, ApiError> {
        check(req)?;
        let path: NsPath = req.path.parse()?;
        check_message(&req.message)?;
        if req.edits.is_empty() {
            return Err(ApiError::InvalidArgument(
                "a patch needs at least one edit".into(),
            ));
        }
        let mut edits = Vec::with_capacity(req.edits.len());
        for e in &req.edits {
            raftconf_schema::split_pointer(&e.pointer)?;
            let value = match &e.op {
                Some(pb::field_edit::Op::SetJson(text)) => {
                    let v: serde_json::Value = serde_json::from_str(text).map_err(|err| {
                        ApiError::InvalidArgument(format!(
                            "the value for {} is not JSON: {err}",
                            e.pointer
                        ))
                    })?;
                    Some(v.to_string())
                }
                Some(pb::field_edit::Op::Remove(true)) => None,
                _ => {
                    return Err(ApiError::InvalidArgument(format!(
                        "the edit of {} neither sets nor removes",
                        e.pointer
                    )))
                }
            };
            edits.push((e.pointer.clone(), value));
        }
        let command = Command::Patch {
            path: path.clone(),
            edits,
            precondition: Precondition {
                if_version: req.if_version,
                if_revision: req.if_revision,
            },
        };
        let applied = self
            .propose(
                &path,
                author,
                req.write_id.clone(),
                req.message.clone(),
                command,
            )
            .await?;
        Ok(pb::PutResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    async fn plan_inner(&self, req: pb::PlanRequest) -> Result<pb::PlanResponse, ApiError> {
        check(&req)?;
        let path: NsPath = req.path.parse()?;
        let format = convert::document_format(req.format).ok_or_else(|| {
            ApiError::InvalidArgument(format!("unknown document format {}", req.format))
        })?;
        check_text_size("document text size", &req.value)?;
        let value = parse_document(&req.value, format)?;
        let served_at = self.ctx.read_revision(0, 0).await?;
        let state = self.ctx.node.state();
        let (current, read_at) = state.get_with_revision(&path)?;
        let parse = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| ApiError::Internal(format!("stored document {path} is not JSON: {e}")))
        };
        let old = current
            .as_ref()
            .and_then(|d| d.record.value.as_deref())
            .map(parse)
            .transpose()?;
        let new = parse(&value)?;
        let schema_version = state
            .schema(&path.tenant, &path.namespace)?
            .filter(|s| s.schema.is_some())
            .map_or(0, |s| s.version);
        let violations = match state.check_document(&path, &value)? {
            Ok(()) => Vec::new(),
            Err(raftconf_raft::Rejection::SchemaViolation { violations, .. }) => violations
                .into_iter()
                .map(|v| pb::FieldViolation {
                    pointer: v.pointer,
                    message: v.message,
                })
                .collect(),
            Err(other) => return Err(ApiError::Write(WriteError::Rejected(other))),
        };
        Ok(pb::PlanResponse {
            header: Some(self.ctx.header(read_at.max(served_at))),
            current_version: current.map_or(0, |d| d.record.version),
            diff: raftconf_schema::diff(old.as_ref(), Some(&new))
                .into_iter()
                .map(convert::diff_entry)
                .collect(),
            schema_version,
            violations,
        })
    }

    async fn apply_inner(
        &self,
        author: String,
        req: &pb::ApplyRequest,
    ) -> Result<pb::ApplyResponse, ApiError> {
        check(req)?;
        let env = raftconf_schema::EnvPath::new(&req.tenant, &req.env)?;
        check_message(&req.message)?;
        if req.writes.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "apply to {}/{}: no namespaces to write",
                env.tenant, env.env
            )));
        }
        let mut writes = Vec::with_capacity(req.writes.len());
        for w in &req.writes {
            let value = if w.delete {
                None
            } else {
                let format = convert::document_format(w.format).ok_or_else(|| {
                    ApiError::InvalidArgument(format!(
                        "{}: unknown document format {}",
                        w.namespace, w.format
                    ))
                })?;
                check_text_size("document text size", &w.value)?;
                Some(
                    parse_document(&w.value, format)
                        .map_err(|e| ApiError::InvalidArgument(format!("{}: {e}", w.namespace)))?,
                )
            };
            writes.push(raftconf_raft::TxWrite {
                namespace: w.namespace.clone(),
                value,
                precondition: Precondition {
                    if_version: w.if_version,
                    if_revision: w.if_revision,
                },
            });
        }
        let command = Command::Transaction {
            tenant: env.tenant.clone(),
            env: env.env.clone(),
            writes,
        };
        let applied = self
            .ctx
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(env = %format!("{}/{}", env.tenant, env.env), namespaces = req.writes.len(), revision = applied.revision, "transaction applied");
        Ok(pb::ApplyResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
        })
    }

    async fn rollback_inner(
        &self,
        author: String,
        req: &pb::RollbackRequest,
    ) -> Result<pb::PutResponse, ApiError> {
        check(req)?;
        let path: NsPath = req.path.parse()?;
        check_message(&req.message)?;
        if req.to_version == 0 {
            return Err(ApiError::InvalidArgument(
                "to_version must name a version (1 or more)".into(),
            ));
        }
        let command = Command::Rollback {
            path: path.clone(),
            to_version: req.to_version,
            precondition: Precondition {
                if_version: req.if_version,
                if_revision: req.if_revision,
            },
        };
        let applied = self
            .propose(
                &path,
                author,
                req.write_id.clone(),
                req.message.clone(),
                command,
            )
            .await?;
        info!(path = %path, to_version = req.to_version, revision = applied.revision, "rolled back");
        Ok(pb::PutResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    /// Stamps and proposes a namespace write; a CAS miss is completed with
    /// what this node knows of the namespace now.
    async fn propose(
        &self,
        path: &NsPath,
        author: String,
        id: Option<pb::WriteId>,
        message: String,
        command: Command,
    ) -> Result<raftconf_raft::Applied, ApiError> {
        match self.ctx.propose(author, id, message, command).await {
            Err(err @ ApiError::CasMiss { .. }) => match self.ctx.node.state().get(path) {
                Ok(Some(doc)) => Err(err.complete_cas(doc.record.version, doc.record.mod_revision)),
                _ => Err(err),
            },
            other => other,
        }
    }

    async fn history_inner(
        &self,
        req: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse, ApiError> {
        check(&req)?;
        let path: NsPath = req.path.parse()?;
        let page = history_page_size(req.page_size);
        let served_at = self.ctx.read_revision(0, 0).await?;
        // One extra record tells whether another page follows.
        let mut records = self
            .ctx
            .node
            .state()
            .history(&path, req.before_version, page + 1)?;
        if records.is_empty() && req.before_version == 0 {
            return Err(ApiError::NotFound(format!(
                "namespace {path} does not exist and has no history"
            )));
        }
        let more = records.len() > page;
        records.truncate(page);
        let next_before_version = if more {
            records.last().map_or(0, |r| r.version)
        } else {
            0
        };
        Ok(pb::HistoryResponse {
            header: Some(self.ctx.header(served_at)),
            records: records.into_iter().map(convert::version_record).collect(),
            next_before_version,
        })
    }
}

/// The page size a `HistoryRequest` asks for: 0 means the default; capped.
pub fn history_page_size(requested: u32) -> usize {
    match requested as usize {
        0 => HISTORY_PAGE_DEFAULT,
        n => n.min(HISTORY_PAGE_MAX),
    }
}

#[tonic::async_trait]
impl Config for ConfigService {
    #[instrument(skip_all, fields(path = %request.get_ref().path, revision = request.get_ref().revision))]
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.ctx.respond(self.get_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(prefix = %request.get_ref().prefix))]
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        self.ctx
            .respond(self.list_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path, dry_run = request.get_ref().dry_run))]
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.put_inner(author, &req)),
            |channel, req| {
                Box::pin(async move {
                    ConfigClient::new(channel)
                        .max_encoding_message_size(MAX_FORWARDED_BYTES)
                        .put(req)
                        .await
                })
            },
        )
        .await
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.delete_inner(author, &req)),
            |channel, req| Box::pin(async move { ConfigClient::new(channel).delete(req).await }),
        )
        .await
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn patch(
        &self,
        request: Request<pb::PatchRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.patch_inner(author, &req)),
            |channel, req| Box::pin(async move { ConfigClient::new(channel).patch(req).await }),
        )
        .await
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn plan(
        &self,
        request: Request<pb::PlanRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        self.ctx
            .respond(self.plan_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, env = %request.get_ref().env))]
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.apply_inner(author, &req)),
            |channel, req| Box::pin(async move { ConfigClient::new(channel).apply(req).await }),
        )
        .await
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path, to_version = request.get_ref().to_version))]
    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.rollback_inner(author, &req)),
            |channel, req| Box::pin(async move { ConfigClient::new(channel).rollback(req).await }),
        )
        .await
    }

    #[instrument(skip_all, fields(path = %request.get_ref().path))]
    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.ctx
            .respond(self.history_inner(request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_page_size_defaults_and_caps() {
        assert_eq!(history_page_size(0), 50);
        assert_eq!(history_page_size(7), 7);
        assert_eq!(history_page_size(5000), 1000);
    }
}
