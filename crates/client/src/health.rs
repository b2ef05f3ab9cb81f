//! Health: `/v1/health/service/{service}`, `/v1/health/checks/{service}` and
//! `/v1/health/state/{state}`, all blocking queries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serde_util::null_default;
use crate::{escape_segment, AgentService, CatalogNode, Client, Error, QueryMeta, QueryOptions};

/// A health check as the catalog holds it (Go's `api.HealthCheck`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthCheck {
    /// The node the check belongs to.
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Check name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Human-readable notes.
    pub notes: String,
    /// The last run's output.
    pub output: String,
    /// The service's instance ID, empty for a node check.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The service's name, empty for a node check.
    pub service_name: String,
    /// The service's tags.
    #[serde(deserialize_with = "null_default")]
    pub service_tags: Vec<String>,
    /// Check type (`http`, `ttl`, ...).
    #[serde(rename = "Type")]
    pub check_type: String,
    /// Port exposed through a Connect proxy, if any.
    pub exposed_port: u16,
    /// The definition's run settings as the server reports them.
    pub definition: Value,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// One instance of a service with its node and checks (Go's `api.ServiceEntry`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceEntry {
    /// The node.
    pub node: CatalogNode,
    /// The instance.
    pub service: AgentService,
    /// The node's and the instance's checks.
    #[serde(deserialize_with = "null_default")]
    pub checks: Vec<HealthCheck>,
}

/// The `/v1/health` endpoints. Obtained from [`Client::health`].
#[derive(Clone, Copy, Debug)]
pub struct Health<'a> {
    client: &'a Client,
}

impl<'a> Health<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Health { client }
    }

    /// Instances of `service` with every tag in `tags`; with `passing_only`, only
    /// those whose checks all pass.
    pub async fn service(
        &self,
        service: &str,
        tags: &[String],
        passing_only: bool,
        opts: &QueryOptions,
    ) -> Result<(Vec<ServiceEntry>, QueryMeta), Error> {
        let mut params: Vec<(&str, String)> = tags.iter().map(|t| ("tag", t.clone())).collect();
        if passing_only {
            params.push(("passing", "1".to_owned()));
        }
        let path = format!("/v1/health/service/{}", escape_segment(service));
        let (rows, meta) = self
            .client
            .get_json::<Option<Vec<ServiceEntry>>>(&path, opts, &params)
            .await?;
        Ok((rows.unwrap_or_default(), meta))
    }

    /// The checks of every instance of `service`.
    pub async fn checks(
        &self,
        service: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let path = format!("/v1/health/checks/{}", escape_segment(service));
        self.list(&path, opts).await
    }

    /// Every check in `state` (`any`, `passing`, `warning` or `critical`).
    pub async fn state(
        &self,
        state: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let path = format!("/v1/health/state/{}", escape_segment(state));
        self.list(&path, opts).await
    }

    async fn list(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let (rows, meta) = self
            .client
            .get_json::<Option<Vec<HealthCheck>>>(path, opts, &[])
            .await?;
        Ok((rows.unwrap_or_default(), meta))
    }
}
