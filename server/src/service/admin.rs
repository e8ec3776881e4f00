//! The `Admin` service: tenants and environments. Creating one is a write
//! (it takes a revision; a node that does not lead forwards it to the
//! leader); listing is a linearizable read.

use std::sync::Arc;

use raftconf_api::v1 as pb;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::admin_server::Admin;
use raftconf_raft::Command;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use super::{check, ServiceContext};
use crate::convert;
use crate::forward::serve_write;
use crate::status::ApiError;

/// The `raftconf.v1.Admin` service.
pub struct AdminService {
    ctx: Arc<ServiceContext>,
}

impl AdminService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ServiceContext>) -> Self {
        AdminService { ctx }
    }

    async fn propose(
        &self,
        author: String,
        id: Option<pb::WriteId>,
        message: String,
        command: Command,
    ) -> Result<u64, ApiError> {
        let applied = self.ctx.propose(author, id, message, command).await?;
        Ok(applied.revision)
    }

    async fn create_tenant_inner(
        &self,
        author: String,
        req: &pb::CreateTenantRequest,
    ) -> Result<pb::CreateTenantResponse, ApiError> {
        check(req)?;
        let command = Command::CreateTenant {
            tenant: req.name.clone(),
        };
        let revision = self
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.name, revision, "tenant created");
        Ok(pb::CreateTenantResponse {
            header: Some(self.ctx.header(revision)),
            revision,
        })
    }

    async fn create_environment_inner(
        &self,
        author: String,
        req: &pb::CreateEnvironmentRequest,
    ) -> Result<pb::CreateEnvironmentResponse, ApiError> {
        check(req)?;
        let command = Command::CreateEnvironment {
            tenant: req.tenant.clone(),
            env: req.name.clone(),
        };
        let revision = self
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.tenant, env = %req.name, revision, "environment created");
        Ok(pb::CreateEnvironmentResponse {
            header: Some(self.ctx.header(revision)),
            revision,
        })
    }

    async fn delete_environment_inner(
        &self,
        author: String,
        req: &pb::DeleteEnvironmentRequest,
    ) -> Result<pb::DeleteEnvironmentResponse, ApiError> {
        check(req)?;
        let command = Command::DeleteEnvironment {
            tenant: req.tenant.clone(),
            env: req.name.clone(),
            force: req.force,
        };
        let revision = self
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.tenant, env = %req.name, force = req.force, revision, "environment deleted");
        Ok(pb::DeleteEnvironmentResponse {
            header: Some(self.ctx.header(revision)),
            revision,
        })
    }

    async fn delete_tenant_inner(
        &self,
        author: String,
        req: &pb::DeleteTenantRequest,
    ) -> Result<pb::DeleteTenantResponse, ApiError> {
        check(req)?;
        let command = Command::DeleteTenant {
            tenant: req.name.clone(),
            force: req.force,
        };
        let revision = self
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.name, force = req.force, revision, "tenant deleted");
        Ok(pb::DeleteTenantResponse {
            header: Some(self.ctx.header(revision)),
            revision,
        })
    }

    async fn set_tenant_settings_inner(
        &self,
        author: String,
        req: &pb::SetTenantSettingsRequest,
    ) -> Result<pb::SetTenantSettingsResponse, ApiError> {
        check(req)?;
        if req.history_depth.is_none() && req.max_namespaces_per_env.is_none() {
            return Err(ApiError::InvalidArgument(format!(
                "tenant {}: no setting to change",
                req.name
            )));
        }
        let command = Command::SetTenantSettings {
            tenant: req.name.clone(),
            history_depth: req.history_depth,
            max_namespaces_per_env: req.max_namespaces_per_env,
        };
        let revision = self
            .propose(author, req.write_id.clone(), req.message.clone(), command)
            .await?;
        info!(tenant = %req.name, ?req.history_depth, ?req.max_namespaces_per_env, revision, "tenant settings changed");
        Ok(pb::SetTenantSettingsResponse {
            header: Some(self.ctx.header(revision)),
            revision,
        })
    }

    async fn list_tenants_inner(&self) -> Result<pb::ListTenantsResponse, ApiError> {
        let served_at = self.ctx.read_revision(0, 0).await?;
        let tenants = self.ctx.node.state().tenants()?;
        Ok(pb::ListTenantsResponse {
            header: Some(self.ctx.header(served_at)),
            tenants: tenants.into_iter().map(convert::tenant_info).collect(),
        })
    }

    async fn list_environments_inner(
        &self,
        req: pb::ListEnvironmentsRequest,
    ) -> Result<pb::ListEnvironmentsResponse, ApiError> {
        check(&req)?;
        let served_at = self.ctx.read_revision(0, 0).await?;
        let envs = self.ctx.node.state().environments(&req.tenant)?;
        Ok(pb::ListEnvironmentsResponse {
            header: Some(self.ctx.header(served_at)),
            environments: envs.into_iter().map(convert::env_info).collect(),
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[instrument(skip_all, fields(tenant = %request.get_ref().name))]
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.create_tenant_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { AdminClient::new(channel).create_tenant(req).await })
            },
        )
        .await
    }

    #[instrument(skip_all)]
    async fn list_tenants(
        &self,
        _request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.ctx.respond(self.list_tenants_inner().await)
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, env = %request.get_ref().name))]
    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> Result<Response<pb::CreateEnvironmentResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.create_environment_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { AdminClient::new(channel).create_environment(req).await })
            },
        )
        .await
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant))]
    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        self.ctx
            .respond(self.list_environments_inner(request.into_inner()).await)
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().tenant, env = %request.get_ref().name))]
    async fn delete_environment(
        &self,
        request: Request<pb::DeleteEnvironmentRequest>,
    ) -> Result<Response<pb::DeleteEnvironmentResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.delete_environment_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { AdminClient::new(channel).delete_environment(req).await })
            },
        )
        .await
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().name))]
    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.delete_tenant_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { AdminClient::new(channel).delete_tenant(req).await })
            },
        )
        .await
    }

    #[instrument(skip_all, fields(tenant = %request.get_ref().name))]
    async fn set_tenant_settings(
        &self,
        request: Request<pb::SetTenantSettingsRequest>,
    ) -> Result<Response<pb::SetTenantSettingsResponse>, Status> {
        let (md, _, req) = request.into_parts();
        serve_write(
            &self.ctx,
            &md,
            &req,
            |author| Box::pin(self.set_tenant_settings_inner(author, &req)),
            |channel, req| {
                Box::pin(async move { AdminClient::new(channel).set_tenant_settings(req).await })
            },
        )
        .await
    }
}
