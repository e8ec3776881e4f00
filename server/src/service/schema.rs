//! The `Schema` service: the JSON Schema of each `tenant/namespace`. Setting
//! and deleting one are writes (forwarded to the leader like any other);
//! reading one is a linearizable read.

use std::sync::Arc;

use raftconf_api::v1 as pb;
use raftconf_api::v1::schema_client::SchemaClient;
use raftconf_api::v1::schema_server::Schema;
use raftconf_raft::model::SchemaRecord;
use raftconf_raft::Command;
use raftconf_schema::SchemaDocument;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use super::{check, check_text_size, ServiceContext};
use crate::convert;
use crate::forward::serve_write;
use crate::status::ApiError;

/// The `raftconf.v1.Schema` service.
pub struct SchemaService {
    ctx: Arc<ServiceContext>,
}

impl SchemaService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        SchemaService { ctx }
    }

    async fn set_inner(
        &self,
        author: String,
        req: &pb::SetSchemaRequest,
    ) -> Result<pb::SetSchemaResponse, ApiError> {
        check(req)?;
        let format = convert::document_format(req.format).ok_or_else(|| {
            ApiError::InvalidArgument(format!("unknown schema format {}", req.format))
        })?;
        check_text_size("schema text size", &req.schema)?;
        // Parse and compile here for a clear answer (and to store canonical
        // JSON); apply compiles again and checks the live documents.
        let schema = SchemaDocument::parse(&req.schema, format)?;
        schema.compile()?;
        let command = Command::SetSchema {
            tenant: req.tenant.clone(),
            namespace: req.namespace.clone(),
            schema: schema.canonical_json().to_string(),
            force: req.force,
        };
        let applied = self
            .ctx
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(
            tenant = %req.tenant,
            namespace = %req.namespace,
            version = applied.version,
            revision = applied.revision,
            force = req.force,
            "schema set"
        );
        Ok(pb::SetSchemaResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    async fn delete_inner(
        &self,
        author: String,
        req: &pb::DeleteSchemaRequest,
    ) -> Result<pb::DeleteSchemaResponse, ApiError> {
        check(req)?;
        let command = Command::DeleteSchema {
            tenant: req.tenant.clone(),
            namespace: req.namespace.clone(),
        };
        let applied = self
            .ctx
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.tenant, namespace = %req.namespace, revision = applied.revision, "schema deleted");
        Ok(pb::DeleteSchemaResponse {
            header: Some(self.ctx.header(applied.revision)),
            revision: applied.revision,
            version: applied.version,
        })
    }

    async fn get_inner(
        &self,
        req: pb::GetSchemaRequest,
    ) -> Result<pb::GetSchemaResponse, ApiError> {
        check(&req)?;
        let served_at = self.ctx.read_revision(0, 0).await?;
        let state = self.ctx.node.state();
        let record = if req.version == 0 {
            state.schema(&req.tenant, &req.namespace)?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{}/{} has never had a schema",
                    req.tenant, req.namespace
                ))
            })?
        } else {
            state
                .schema_version(&req.tenant, &req.namespace, req.version)?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "{}/{} has no schema version {} (never set, or no longer kept)",
                        req.tenant, req.namespace, req.version
                    ))
                })?
        };
        Ok(pb::GetSchemaResponse {
            header: Some(self.ctx.header(served_at)),
            record: Some(schema_record(record)),
        })
    }

    async fn history_inner(
        &self,
        req: pb::SchemaHistoryRequest,
    ) -> Result<pb::SchemaHistoryResponse, ApiError> {
        check(&req)?;
        let served_at = self.ctx.read_revision(0, 0).await?;
        let records = self
            .ctx
            .node
            .state()
            .schema_history(&req.tenant, &req.namespace)?;
        Ok(pb::SchemaHistoryResponse {
            header: Some(self.ctx.header(served_at)),
            records: records.into_iter().map(schema_record).collect(),
        })
    }
}

fn schema_record(r: SchemaRecord) -> pb::SchemaRecord {
    pb::SchemaRecord {
        version: r.version,
        revision: r.revision,
        deleted: r.schema.is_none(),
        schema: r.schema.unwrap_or_default(),
        forced: r.forced,
        author: r.author,
        time_ms: r.time_ms,
        message: r.message,
    }
}

#[tonic::async_trait]
impl Schema for SchemaService {
    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, namespace = %request.get_ref().namespace))]
    async fn set_schema(
        &self,
        request: Request<pb::SetSchemaRequest>,
    ) -> Result<Response<pb::SetSchemaResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.set_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { SchemaClient::new(channel).set_schema(req).await })
            },
        )
        .await
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, namespace = %request.get_ref().namespace))]
    async fn get_schema(
        &self,
        request: Request<pb::GetSchemaRequest>,
    ) -> Result<Response<pb::GetSchemaResponse>, Status> {
        self.ctx.respond(self.get_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, namespace = %request.get_ref().namespace))]
    async fn schema_history(
        &self,
        request: Request<pb::SchemaHistoryRequest>,
    ) -> Result<Response<pb::SchemaHistoryResponse>, Status> {
        self.ctx
            .respond(self.history_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, namespace = %request.get_ref().namespace))]
    async fn delete_schema(
        &self,
        request: Request<pb::DeleteSchemaRequest>,
    ) -> Result<Response<pb::DeleteSchemaResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.delete_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { SchemaClient::new(channel).delete_schema(req).await })
            },
        )
        .await
    }
}
