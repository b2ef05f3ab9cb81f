//! The local agent: `/v1/agent/...` (members, services, join/leave/reload, self).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::serde_util::null_default;
use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};

/// An address and port (tagged addresses of services).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// DNS SRV weights of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentWeights {
    /// Weight while passing.
    pub passing: i32,
    /// Weight while warning.
    pub warning: i32,
}

impl Default for AgentWeights {
    /// Consul's default weights, `{Passing: 1, Warning: 1}`.
    fn default() -> Self {
        AgentWeights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service as the agent reports it (`/v1/agent/services`, `/v1/agent/service/{id}`,
/// and the `Services` of `/v1/catalog/node/{node}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentService {
    /// Service kind (`""` for a typical service).
    pub kind: String,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Address (empty = the node's).
    pub address: String,
    /// Unix socket path, if any.
    pub socket_path: String,
    /// Tagged addresses.
    #[serde(deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// DNS SRV weights.
    pub weights: AgentWeights,
    /// Whether tags may be overridden by anti-entropy.
    pub enable_tag_override: bool,
    /// Connect proxy configuration, kept as raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    /// Connect configuration, kept as raw JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Value>,
    /// Peer the service was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    /// Enterprise namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Enterprise partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Datacenter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Hash of the definition, for hash-based blocking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Raft index of creation (catalog views only).
    pub create_index: u64,
    /// Raft index of the last change (catalog views only).
    pub modify_index: u64,
}

/// A gossip pool member (`/v1/agent/members`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentMember {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags: `role` (`consul` for servers, `node` for clients), `dc`, `build`, `vsn`, ...
    #[serde(deserialize_with = "null_default")]
    pub tags: BTreeMap<String, String>,
    /// Serf status: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: i32,
    /// Lowest gossip protocol spoken.
    pub protocol_min: u8,
    /// Highest gossip protocol spoken.
    pub protocol_max: u8,
    /// Gossip protocol in use.
    pub protocol_cur: u8,
    /// Lowest delegate protocol spoken.
    pub delegate_min: u8,
    /// Highest delegate protocol spoken.
    pub delegate_max: u8,
    /// Delegate protocol in use.
    pub delegate_cur: u8,
}

impl AgentMember {
    /// Serf's name for [`AgentMember::status`].
    pub fn status_name(&self) -> &'static str {
        match self.status {
            0 => "none",
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "unknown",
        }
    }
}

/// The stable part of `Config` in `/v1/agent/self`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentSelfConfig {
    /// The agent's datacenter.
    pub datacenter: String,
    /// The primary datacenter.
    pub primary_datacenter: String,
    /// The agent's node name.
    pub node_name: String,
    /// The agent's node ID.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Build revision.
    pub revision: String,
    /// Whether the agent is a server.
    pub server: bool,
    /// Version string.
    pub version: String,
}

/// A check registered with the agent (`GET /v1/agent/checks`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentCheck {
    /// Node.
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Notes (a maintenance check's reason).
    pub notes: String,
    /// Last output.
    pub output: String,
    /// Bound service instance.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Bound service name.
    pub service_name: String,
    /// Check type.
    #[serde(rename = "Type")]
    pub check_type: String,
}

/// `GET /v1/agent/self`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentSelf {
    /// Agent configuration summary.
    pub config: AgentSelfConfig,
    /// The agent's own gossip member entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<AgentMember>,
    /// Node metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Operator statistics by section (`agent`, `consul`, `raft`, `runtime`, `serf_lan`, ...);
    /// Consul reports every value as a string.
    #[serde(deserialize_with = "null_default")]
    pub stats: BTreeMap<String, BTreeMap<String, Value>>,
    /// The full runtime configuration (unstable; raw JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_config: Option<Value>,
    /// Network coordinate (raw JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coord: Option<Value>,
}

/// A service registration (`PUT /v1/agent/service/register`).
///
/// Fields the client does not model (for example `Token` in a definition file) are kept
/// in [`AgentServiceRegistration::extra`] and sent as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentServiceRegistration {
    /// Service kind (`connect-proxy`, `mesh-gateway`, ...; empty for a typical service).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Instance ID; the agent defaults it to the name.
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Service name (required by the agent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Tags.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// Port (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    /// Address (empty = the node's).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Unix socket path (conflicts with address and port).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// Tagged addresses.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Let anti-entropy keep tags changed in the catalog.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_tag_override: bool,
    /// Metadata.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
    /// DNS SRV weights (the agent defaults them to 1/1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<AgentWeights>,
    /// One health check definition (raw JSON: its many check types are the agent's business).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Value>,
    /// Several health check definitions (raw JSON).
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub checks: Vec<Value>,
    /// Connect proxy configuration (raw JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    /// Connect configuration (raw JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Value>,
    /// Enterprise namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Enterprise partition.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Everything else, sent unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Canonical spelling of the registration's top-level keys.
const REGISTRATION_KEYS: &[&str] = &[
    "Kind",
    "ID",
    "Name",
    "Tags",
    "Port",
    "Address",
    "SocketPath",
    "TaggedAddresses",
    "EnableTagOverride",
    "Meta",
    "Weights",
    "Check",
    "Checks",
    "Proxy",
    "Connect",
    "Namespace",
    "Partition",
    "Locality",
];

/// Folds a key for comparison: Consul accepts `enable_tag_override`,
/// `EnableTagOverride` and `enabletagoverride` alike.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Renames the keys of `object` found in `canonical` (case- and underscore-insensitively)
/// to their canonical spelling; other keys are left alone.
fn canonicalize(object: Map<String, Value>, canonical: &[&str]) -> Map<String, Value> {
    object
        .into_iter()
        .map(|(key, value)| {
            let folded = fold(&key);
            match canonical.iter().find(|c| fold(c) == folded) {
                Some(c) => ((*c).to_owned(), value),
                None => (key, value),
            }
        })
        .collect()
}

/// A port given as a string (`"8080"`, as HCL users sometimes write it) becomes a number.
fn coerce_port(value: &mut Value) {
    if let Value::String(text) = value {
        if let Ok(port) = text.trim().parse::<u16>() {
            *value = Value::from(port);
        }
    }
}

impl AgentServiceRegistration {
    /// Builds a registration from a JSON object spelled any way Consul accepts in
    /// service definitions: `PascalCase`, `snake_case` or lower case keys.
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(object) = value else {
            return serde_json::from_value(value);
        };
        let mut object = canonicalize(object, REGISTRATION_KEYS);
        if let Some(port) = object.get_mut("Port") {
            coerce_port(port);
        }
        if let Some(Value::Object(weights)) = object.remove("Weights") {
            object.insert(
                "Weights".into(),
                Value::Object(canonicalize(weights, &["Passing", "Warning"])),
            );
        }
        if let Some(Value::Object(tagged)) = object.remove("TaggedAddresses") {
            let tagged = tagged
                .into_iter()
                .map(|(tag, addr)| match addr {
                    Value::Object(addr) => {
                        let mut addr = canonicalize(addr, &["Address", "Port"]);
                        if let Some(port) = addr.get_mut("Port") {
                            coerce_port(port);
                        }
                        (tag, Value::Object(addr))
                    }
                    other => (tag, other),
                })
                .collect();
            object.insert("TaggedAddresses".into(), Value::Object(tagged));
        }
        // A single check may be written as `checks = { ... }` and vice versa; the agent
        // wants `Check` to be an object and `Checks` an array.
        if let Some(Value::Object(single)) = object.get("Checks").cloned() {
            object.insert("Checks".into(), Value::Array(vec![Value::Object(single)]));
        }
        serde_json::from_value(Value::Object(object))
    }
}

/// Options for [`Agent::members`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersOptions {
    /// List the WAN pool instead of the LAN pool (`?wan=1`).
    pub wan: bool,
    /// Enterprise network segment (`?segment=`).
    pub segment: Option<String>,
    /// Filter expression (`?filter=`).
    pub filter: Option<String>,
}

/// Options for [`Agent::service_register_opts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRegisterOptions {
    /// Replace the service's existing checks instead of merging (`?replace-existing-checks`).
    pub replace_existing_checks: bool,
}

/// The `/v1/agent` endpoints. Obtained from [`Client::agent`].
#[derive(Clone, Copy, Debug)]
pub struct Agent<'a> {
    client: &'a Client,
}

impl<'a> Agent<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Agent { client }
    }

    /// `GET /v1/agent/self`: configuration, member entry and statistics of the agent.
    /// (`self` is a keyword, hence the underscore.)
    pub async fn self_(&self) -> Result<AgentSelf, Error> {
        let (me, _) = self
            .client
            .get_json("/v1/agent/self", &QueryOptions::default(), &[])
            .await?;
        Ok(me)
    }

    /// `GET /v1/agent/members`: the gossip pool as this agent sees it.
    pub async fn members(&self, opts: &MembersOptions) -> Result<Vec<AgentMember>, Error> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if opts.wan {
            params.push(("wan", "1".to_owned()));
        }
        if let Some(segment) = &opts.segment {
            params.push(("segment", segment.clone()));
        }
        if let Some(filter) = &opts.filter {
            params.push(("filter", filter.clone()));
        }
        let (members, _) = self
            .client
            .get_json::<Option<Vec<AgentMember>>>(
                "/v1/agent/members",
                &QueryOptions::default(),
                &params,
            )
            .await?;
        Ok(members.unwrap_or_default())
    }

    /// `GET /v1/agent/services`: services registered with this agent, by instance ID
    /// ([`QueryOptions::filter`] applies).
    pub async fn services(
        &self,
        opts: &QueryOptions,
    ) -> Result<BTreeMap<String, AgentService>, Error> {
        let (services, _) = self
            .client
            .get_json::<Option<BTreeMap<String, AgentService>>>("/v1/agent/services", opts, &[])
            .await?;
        Ok(services.unwrap_or_default())
    }

    /// `GET /v1/agent/service/{id}`; `None` if the agent does not know the service (404).
    pub async fn service(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<AgentService>, QueryMeta), Error> {
        let path = format!("/v1/agent/service/{}", escape_segment(id));
        self.client.get_json_opt(&path, opts, &[]).await
    }

    /// `PUT /v1/agent/service/register`.
    pub async fn service_register(
        &self,
        registration: &AgentServiceRegistration,
    ) -> Result<(), Error> {
        self.service_register_opts(registration, &ServiceRegisterOptions::default())
            .await
    }

    /// `PUT /v1/agent/service/register` with options.
    pub async fn service_register_opts(
        &self,
        registration: &AgentServiceRegistration,
        opts: &ServiceRegisterOptions,
    ) -> Result<(), Error> {
        let mut req = self
            .client
            .request(Method::PUT, "/v1/agent/service/register", None, None)
            .json(registration);
        if opts.replace_existing_checks {
            req = req.query(&[("replace-existing-checks", "true")]);
        }
        self.client.write_unit(req).await
    }

    /// `PUT /v1/agent/service/deregister/{id}` (IDs containing `/` are escaped).
    pub async fn service_deregister(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/service/deregister/{}", escape_segment(id));
        let req = self.client.request(Method::PUT, &path, None, None);
        self.client.write_unit(req).await
    }

    /// `PUT /v1/agent/leave`: the agent leaves the cluster gracefully and shuts down.
    pub async fn leave(&self) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, "/v1/agent/leave", None, None);
        self.client.write_unit(req).await
    }

    /// `PUT /v1/agent/reload`: the agent re-reads its configuration files.
    pub async fn reload(&self) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, "/v1/agent/reload", None, None);
        self.client.write_unit(req).await
    }

    /// `PUT /v1/agent/force-leave/{node}`: mark a failed member left (`prune`: forget
    /// it at once).
    pub async fn force_leave(&self, node: &str, prune: bool, wan: bool) -> Result<(), Error> {
        let path = format!("/v1/agent/force-leave/{}", escape_segment(node));
        let mut req = self.client.request(Method::PUT, &path, None, None);
        if prune {
            req = req.query(&[("prune", "1")]);
        }
        if wan {
            req = req.query(&[("wan", "1")]);
        }
        self.client.write_unit(req).await
    }

    /// `GET /v1/agent/checks`: checks registered with this agent, by check ID.
    pub async fn checks(&self) -> Result<BTreeMap<String, AgentCheck>, Error> {
        let (checks, _) = self
            .client
            .get_json::<Option<BTreeMap<String, AgentCheck>>>(
                "/v1/agent/checks",
                &QueryOptions::default(),
                &[],
            )
            .await?;
        Ok(checks.unwrap_or_default())
    }

    /// `PUT /v1/agent/maintenance` (`service` = None) or
    /// `/v1/agent/service/maintenance/{id}`: enter (with an optional reason) or leave
    /// maintenance mode.
    pub async fn maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: &str,
    ) -> Result<(), Error> {
        let path = match service {
            None => "/v1/agent/maintenance".to_owned(),
            Some(id) => format!("/v1/agent/service/maintenance/{}", escape_segment(id)),
        };
        let mut req = self
            .client
            .request(Method::PUT, &path, None, None)
            .query(&[("enable", if enable { "true" } else { "false" })]);
        if enable && !reason.is_empty() {
            req = req.query(&[("reason", reason)]);
        }
        self.client.write_unit(req).await
    }

    /// `PUT /v1/agent/join/{address}`: join the LAN pool (or the WAN pool, servers only).
    pub async fn join(&self, address: &str, wan: bool) -> Result<(), Error> {
        let path = format!("/v1/agent/join/{}", escape_segment(address));
        let mut req = self.client.request(Method::PUT, &path, None, None);
        if wan {
            req = req.query(&[("wan", "1")]);
        }
        self.client.write_unit(req).await
    }
}
