//! The catalog: `/v1/catalog/...`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentService, AgentWeights, ServiceAddress};
use crate::serde_util::null_default;
use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};

/// A node as `GET /v1/catalog/nodes` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CatalogNode {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    #[serde(deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// One service instance as `GET /v1/catalog/service/{name}` returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CatalogService {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node tagged addresses.
    #[serde(deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(deserialize_with = "null_default")]
    pub node_meta: BTreeMap<String, String>,
    /// Service kind (`""` for a typical service).
    pub service_kind: String,
    /// Service instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Service tags.
    #[serde(deserialize_with = "null_default")]
    pub service_tags: Vec<String>,
    /// Service address (empty = use the node address).
    pub service_address: String,
    /// Service tagged addresses.
    #[serde(deserialize_with = "null_default")]
    pub service_tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// DNS SRV weights.
    pub service_weights: AgentWeights,
    /// Service metadata.
    #[serde(deserialize_with = "null_default")]
    pub service_meta: BTreeMap<String, String>,
    /// Service port.
    pub service_port: u16,
    /// Unix socket path, if the service listens on one.
    pub service_socket_path: String,
    /// Whether tags may be overridden by anti-entropy.
    pub service_enable_tag_override: bool,
    /// Connect proxy configuration, kept as raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_proxy: Option<serde_json::Value>,
    /// Connect configuration, kept as raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<serde_json::Value>,
    /// Enterprise namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Enterprise partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Peer the service was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A node and its services as `GET /v1/catalog/node/{name}` returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CatalogNodeServices {
    /// The node.
    pub node: CatalogNode,
    /// Its services by instance ID.
    #[serde(deserialize_with = "null_default")]
    pub services: BTreeMap<String, AgentService>,
}

/// The `/v1/catalog` endpoints. Obtained from [`Client::catalog`].
#[derive(Clone, Copy, Debug)]
pub struct Catalog<'a> {
    client: &'a Client,
}

impl<'a> Catalog<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Catalog { client }
    }

    /// Every known datacenter, nearest first.
    pub async fn datacenters(&self) -> Result<Vec<String>, Error> {
        let path = "/v1/catalog/datacenters";
        let req = self.client.request(reqwest::Method::GET, path, None, None);
        let resp = self.client.send(req, false).await?;
        let dcs: Option<Vec<String>> = Client::decode(resp, path).await?;
        Ok(dcs.unwrap_or_default())
    }

    /// Every node (`?filter`, `?near` and `?node-meta` apply).
    pub async fn nodes(&self, opts: &QueryOptions) -> Result<(Vec<CatalogNode>, QueryMeta), Error> {
        let (nodes, meta) = self
            .client
            .get_json::<Option<Vec<CatalogNode>>>("/v1/catalog/nodes", opts, &[])
            .await?;
        Ok((nodes.unwrap_or_default(), meta))
    }

    /// Every service name with the union of its tags.
    pub async fn services(
        &self,
        opts: &QueryOptions,
    ) -> Result<(BTreeMap<String, Vec<String>>, QueryMeta), Error> {
        let (services, meta) = self
            .client
            .get_json::<Option<BTreeMap<String, Option<Vec<String>>>>>(
                "/v1/catalog/services",
                opts,
                &[],
            )
            .await?;
        let services = services
            .unwrap_or_default()
            .into_iter()
            .map(|(name, tags)| (name, tags.unwrap_or_default()))
            .collect();
        Ok((services, meta))
    }

    /// The instances of service `name`, optionally only those carrying every tag in `tags`.
    pub async fn service(
        &self,
        name: &str,
        tags: &[&str],
        opts: &QueryOptions,
    ) -> Result<(Vec<CatalogService>, QueryMeta), Error> {
        let path = format!("/v1/catalog/service/{}", escape_segment(name));
        let params: Vec<(&str, String)> = tags.iter().map(|t| ("tag", (*t).to_owned())).collect();
        let (services, meta) = self
            .client
            .get_json::<Option<Vec<CatalogService>>>(&path, opts, &params)
            .await?;
        Ok((services.unwrap_or_default(), meta))
    }

    /// Node `name` with its services; `None` if the node is unknown (Consul answers `null`).
    pub async fn node(
        &self,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<CatalogNodeServices>, QueryMeta), Error> {
        let path = format!("/v1/catalog/node/{}", escape_segment(name));
        let (node, meta) = self
            .client
            .get_json_opt::<Option<CatalogNodeServices>>(&path, opts, &[])
            .await?;
        Ok((node.flatten(), meta))
    }
}
