//! Tenants, environments and cluster status: the `Admin` and `Cluster` services.

use raftconf_api::v1 as pb;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::cluster_client::ClusterClient;
use raftconf_schema::EnvPath;

use crate::failover::CallKind;
use crate::types::{ClusterStatus, EnvInfo, Member, TenantInfo, TenantSettings};
use crate::{Client, Error, Result};

impl Client {
    /// Creates a tenant; returns the revision that created it.
    pub async fn create_tenant(&self, name: &str) -> Result<u64> {
        self.create_tenant_with(name, "").await
    }

    /// Creates a tenant, with a message kept in history (why it exists);
    /// returns the revision that created it.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = raftconf_client::Client::connect(["127.0.0.1:7070"]).await?;
    /// client.create_tenant_with("payments", "checkout team, ticket OPS-12").await?;
    /// client.create_env_with("payments", "prod", "go-live").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_tenant_with(&self, name: &str, message: &str) -> Result<u64> {
        raftconf_schema::validate_name("tenant", name)?;
        let request = pb::CreateTenantRequest {
            name: name.to_string(),
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("create tenant {name}"),
                request,
                |ch, r| async move { AdminClient::new(ch).create_tenant(r).await },
            )
            .await?;
        Ok(response.revision)
    }

    /// Every tenant with its environments.
    pub async fn list_tenants(&self) -> Result<Vec<TenantInfo>> {
        let response = self
            .call(
                CallKind::Read,
                || "list tenants".to_string(),
                pb::ListTenantsRequest {},
                |ch, r| async move { AdminClient::new(ch).list_tenants(r).await },
            )
            .await?;
        Ok(response.tenants.into_iter().map(Into::into).collect())
    }

    /// Creates an environment of a tenant; returns the revision that created it.
    pub async fn create_env(&self, tenant: &str, env: &str) -> Result<u64> {
        self.create_env_with(tenant, env, "").await
    }

    /// Creates an environment of a tenant, with a message kept in history;
    /// returns the revision that created it.
    pub async fn create_env_with(&self, tenant: &str, env: &str, message: &str) -> Result<u64> {
        EnvPath::new(tenant, env)?;
        let request = pb::CreateEnvironmentRequest {
            tenant: tenant.to_string(),
            name: env.to_string(),
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("create environment {tenant}/{env}"),
                request,
                |ch, r| async move { AdminClient::new(ch).create_environment(r).await },
            )
            .await?;
        Ok(response.revision)
    }

    /// Deletes an environment; returns the revision of the deletion. One that
    /// still holds namespaces is refused with
    /// [`crate::Error::FailedPrecondition`] naming them, unless `force`,
    /// which deletes them too, in the same revision.
    pub async fn delete_env(
        &self,
        tenant: &str,
        env: &str,
        force: bool,
        message: &str,
    ) -> Result<u64> {
        EnvPath::new(tenant, env)?;
        let request = pb::DeleteEnvironmentRequest {
            tenant: tenant.to_string(),
            name: env.to_string(),
            force,
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("delete environment {tenant}/{env}"),
                request,
                |ch, r| async move { AdminClient::new(ch).delete_environment(r).await },
            )
            .await?;
        Ok(response.revision)
    }

    /// Deletes a tenant; returns the revision of the deletion. One that still
    /// has environments is refused unless `force`, which deletes them and
    /// their namespaces too, in the same revision.
    pub async fn delete_tenant(&self, name: &str, force: bool, message: &str) -> Result<u64> {
        raftconf_schema::validate_name("tenant", name)?;
        let request = pb::DeleteTenantRequest {
            name: name.to_string(),
            force,
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("delete tenant {name}"),
                request,
                |ch, r| async move { AdminClient::new(ch).delete_tenant(r).await },
            )
            .await?;
        Ok(response.revision)
    }

    /// Changes a tenant's replicated settings; returns the revision.
    pub async fn set_tenant_settings(
        &self,
        name: &str,
        settings: &TenantSettings,
        message: &str,
    ) -> Result<u64> {
        raftconf_schema::validate_name("tenant", name)?;
        let request = pb::SetTenantSettingsRequest {
            name: name.to_string(),
            history_depth: settings.history_depth,
            max_namespaces_per_env: settings.max_namespaces_per_env,
            message: message.to_string(),
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("set the settings of tenant {name}"),
                request,
                |ch, r| async move { AdminClient::new(ch).set_tenant_settings(r).await },
            )
            .await?;
        Ok(response.revision)
    }

    /// The environments of a tenant.
    pub async fn list_envs(&self, tenant: &str) -> Result<Vec<EnvInfo>> {
        raftconf_schema::validate_name("tenant", tenant)?;
        let request = pb::ListEnvironmentsRequest {
            tenant: tenant.to_string(),
        };
        let response = self
            .call(
                CallKind::Read,
                || format!("list environments of {tenant}"),
                request,
                |ch, r| async move { AdminClient::new(ch).list_environments(r).await },
            )
            .await?;
        Ok(response.environments.into_iter().map(Into::into).collect())
    }

    /// The status of whichever node answers first, with every member's role,
    /// applied index, lag and reachability as that node finds them (it asks
    /// each member, with a short deadline).
    pub async fn status(&self) -> Result<ClusterStatus> {
        self.status_with(false).await
    }

    /// The status of whichever node answers first; with `local_only`, only
    /// what that node knows itself (no probe of the other members: fast even
    /// when some are down).
    pub async fn status_with(&self, local_only: bool) -> Result<ClusterStatus> {
        let response = self
            .call(
                CallKind::Read,
                || "status".to_string(),
                pb::StatusRequest { local_only },
                |ch, r| async move { ClusterClient::new(ch).status(r).await },
            )
            .await?;
        Ok(response.into())
    }

    /// The status of one given endpoint as it sees itself, without failing
    /// over and without probing the other members (for convergence checks).
    pub async fn status_of(&self, endpoint: &str) -> Result<ClusterStatus> {
        let channel = self.inner.endpoints.channel(endpoint)?;
        let request = self.request(pb::StatusRequest { local_only: true }, CallKind::Read);
        let timeout = self.options().request_timeout;
        match tokio::time::timeout(timeout, ClusterClient::new(channel).status(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().into()),
            Ok(Err(status)) => Err(status.into()),
            Err(_) => Err(Error::Unavailable(format!(
                "status of {endpoint}: no answer within {timeout:?}"
            ))),
        }
    }

    /// Adds node `id` (reached at `peer_addr` by peers and `client_addr` by
    /// clients) as a learner; it catches up (by snapshot if needed) and, unless
    /// `learner`, is then made a voter. Returns the membership afterwards.
    /// Idempotent: adding a member again with the same addresses changes nothing.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = raftconf_client::Client::connect(["127.0.0.1:7070"]).await?;
    /// client.add_node(4, "127.0.0.1:7471", "127.0.0.1:7470", false).await?;
    /// client.remove_node(1).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_node(
        &self,
        id: u64,
        peer_addr: &str,
        client_addr: &str,
        learner: bool,
    ) -> Result<Vec<Member>> {
        let request = pb::AddNodeRequest {
            id,
            peer_addr: peer_addr.to_string(),
            client_addr: client_addr.to_string(),
            learner,
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("add node {id}"),
                request,
                |ch, r| async move { ClusterClient::new(ch).add_node(r).await },
            )
            .await?;
        Ok(response.members.into_iter().map(Member::from).collect())
    }

    /// Makes learner `id` a voter. Idempotent.
    pub async fn promote_node(&self, id: u64) -> Result<Vec<Member>> {
        let response = self
            .call(
                CallKind::Write,
                || format!("promote node {id}"),
                pb::PromoteNodeRequest { id },
                |ch, r| async move { ClusterClient::new(ch).promote_node(r).await },
            )
            .await?;
        Ok(response.members.into_iter().map(Member::from).collect())
    }

    /// Removes node `id` (voter or learner, the leader included). Idempotent:
    /// removing a node that is not a member changes nothing.
    pub async fn remove_node(&self, id: u64) -> Result<Vec<Member>> {
        let response = self
            .call(
                CallKind::Write,
                || format!("remove node {id}"),
                pb::RemoveNodeRequest { id },
                |ch, r| async move { ClusterClient::new(ch).remove_node(r).await },
            )
            .await?;
        Ok(response.members.into_iter().map(Member::from).collect())
    }
}
