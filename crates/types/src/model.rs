//! The records Tribune replicates: catalog nodes, services and checks, KV entries,
//! config entries and Connect CA roots, plus the request and result types that cross
//! the agent→server boundary ([`ops`]).
//!
//! These derive `serde` traits because they are the payload of the raft log and of
//! snapshots (MessagePack with named fields, so added fields stay readable); they are
//! not Consul's JSON shapes, which live in `http-api`.

pub mod coordinate;
pub mod operator;
pub mod ops;
pub mod query;

use crate::{CheckId, HealthStatus, NodeName, ServiceId, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Create and modify indexes of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RaftIndex {
    /// Index of the entry that created the row.
    pub create_index: u64,
    /// Index of the entry that last changed the row.
    pub modify_index: u64,
}

/// A catalog node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// The node's UUID (may be empty for externally registered nodes).
    pub id: String,
    /// The node's name.
    pub node: NodeName,
    /// Its address.
    pub address: String,
    /// Its datacenter.
    pub datacenter: String,
    /// `lan`, `wan`, ... addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub meta: BTreeMap<String, String>,
    /// Indexes.
    pub raft: RaftIndex,
}

impl Node {
    /// An agent's own node record, as both the agent (anti-entropy) and the leader
    /// (self-registration) write it; they must agree or they would overwrite each other.
    /// Tagged addresses and the `consul-*` meta keys are what Consul registers.
    pub fn of_agent(
        id: &str,
        name: &str,
        address: &str,
        datacenter: &str,
        node_meta: &BTreeMap<String, String>,
        version: &str,
    ) -> Node {
        let mut meta = node_meta.clone();
        meta.insert("consul-network-segment".into(), String::new());
        meta.insert("consul-version".into(), version.into());
        Node {
            id: id.into(),
            node: name.into(),
            address: address.into(),
            datacenter: datacenter.into(),
            tagged_addresses: ["lan", "lan_ipv4", "wan", "wan_ipv4"]
                .into_iter()
                .map(|k| (k.to_owned(), address.to_owned()))
                .collect(),
            meta,
            raft: RaftIndex::default(),
        }
    }
}

/// An address and port (service tagged addresses).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// DNS SRV weights of a service instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Weight when passing.
    pub passing: i32,
    /// Weight when warning.
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service instance registered on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// The node it runs on.
    pub node: NodeName,
    /// Instance ID (defaults to the name).
    pub id: ServiceId,
    /// Service name.
    pub service: String,
    /// Kind (`""`, `connect-proxy`, ...).
    pub kind: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Service address (empty = node address).
    pub address: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Unix socket path.
    pub socket_path: String,
    /// SRV weights.
    pub weights: Weights,
    /// Whether anti-entropy leaves catalog tag changes alone.
    pub enable_tag_override: bool,
    /// Proxy config, as opaque JSON text (only `http-api` interprets it).
    pub proxy_json: Option<String>,
    /// For `connect-proxy` services: the service this proxy fronts
    /// (`Proxy.DestinationServiceName`), extracted at the rim so the catalog can answer
    /// `/v1/catalog/connect/{service}` without parsing JSON.
    pub proxy_destination: String,
    /// `Connect.Native`: the service speaks Connect itself.
    pub connect_native: bool,
    /// Connect config, as opaque JSON text.
    pub connect_json: Option<String>,
    /// Locality, as opaque JSON text.
    pub locality_json: Option<String>,
    /// Indexes.
    pub raft: RaftIndex,
}

/// Whether two service tags are the same tag: Consul compares them without
/// regard to case (`strings.ToLower` on both, in its catalog's tag filter, DNS
/// lookups and prepared queries), Unicode case included. Allocates nothing.
pub fn tags_match(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl Service {
    /// Whether the instance carries `tag` ([`tags_match`]).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| tags_match(t, tag))
    }
}

/// A health check on a node, possibly bound to a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Check {
    /// Node.
    pub node: NodeName,
    /// Check ID.
    pub check_id: CheckId,
    /// Name.
    pub name: String,
    /// Status.
    pub status: HealthStatus,
    /// Notes.
    pub notes: String,
    /// Last output.
    pub output: String,
    /// Bound service instance (empty for node checks).
    pub service_id: String,
    /// Bound service name.
    pub service_name: String,
    /// Bound service tags.
    pub service_tags: Vec<String>,
    /// Check type (`ttl`, `http`, `serf`, ...).
    pub check_type: String,
    /// Interval as a Go duration string, if any.
    pub interval: String,
    /// Timeout as a Go duration string, if any.
    pub timeout: String,
    /// Definition, as opaque JSON text.
    pub definition_json: Option<String>,
    /// Indexes.
    pub raft: RaftIndex,
}

/// A KV entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (may be empty).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Opaque client flags (full u64: the Go lock client uses values above 2^63).
    pub flags: u64,
    /// How many times the key's lock was acquired.
    pub lock_index: u64,
    /// The session holding the lock.
    pub session: Option<SessionId>,
    /// Indexes.
    pub raft: RaftIndex,
}

/// A config entry (`service-defaults`, `proxy-defaults`, ...). The body is the entry's
/// JSON as the client sent it; the server only needs kind and name, plus, for a
/// gateway, the services it routes to (extracted from the body when it was written).
///
/// (See also [`intention_target`], how intention APIs and the CLI read a name.)
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigEntry {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// JSON body.
    pub body_json: String,
    /// Indexes.
    pub raft: RaftIndex,
    /// An ingress or terminating gateway's services (empty for other kinds).
    pub gateway: Vec<GatewayLink>,
}

/// One service a gateway config entry routes to: an ingress listener's service, or
/// a terminating gateway's linked service. `service` may be `*` (every service).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayLink {
    /// Service name, or `*`.
    pub service: String,
    /// Ingress listener port (0 for terminating gateways).
    pub port: u64,
    /// Ingress listener protocol ("" for terminating gateways).
    pub protocol: String,
    /// Ingress hosts.
    pub hosts: Vec<String>,
    /// Terminating gateway TLS: CA file.
    pub ca_file: String,
    /// Terminating gateway TLS: certificate file.
    pub cert_file: String,
    /// Terminating gateway TLS: key file.
    pub key_file: String,
    /// Terminating gateway TLS: SNI.
    pub sni: String,
}

/// A Connect CA root certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CaRoot {
    /// Root ID (the certificate's key ID, colon-hex).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Serial number.
    pub serial_number: u64,
    /// Signing key ID (colon-hex).
    pub signing_key_id: String,
    /// RFC 3339 validity start.
    pub not_before: String,
    /// RFC 3339 validity end.
    pub not_after: String,
    /// PEM certificate.
    pub root_cert: String,
    /// PEM private key (never returned by the HTTP API).
    pub private_key: String,
    /// Whether this root signs new leaves.
    pub active: bool,
    /// The trust domain (`<cluster id>.consul`).
    pub trust_domain: String,
    /// Indexes.
    pub raft: RaftIndex,
}

/// The Connect CA's configuration (`/v1/connect/ca/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CaConfig {
    /// The provider (`consul`).
    pub provider: String,
    /// The provider's configuration as the client sent it, a JSON object (Consul
    /// keeps and returns it raw: durations stay strings or nanosecond numbers).
    pub config_json: String,
    /// Provider state shown read-only on `GET`.
    pub state: std::collections::BTreeMap<String, String>,
    /// `ForceWithoutCrossSigning` as last written.
    pub force_without_cross_signing: bool,
    /// `LeafCertTTL` parsed from the configuration, in seconds (0: the default,
    /// 72 h), so servers signing leaves need not parse the raw JSON.
    pub leaf_cert_ttl_secs: u64,
    /// Indexes.
    pub raft: RaftIndex,
}

/// How an agent runs a check: the definition registered through
/// `/v1/agent/check/register`, a service's `Check`/`Checks`, or a config file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckDefinition {
    /// Check ID (defaults to the name; `service:<id>` for unnamed service checks).
    pub id: CheckId,
    /// Name.
    pub name: String,
    /// Bound service instance.
    pub service_id: String,
    /// Notes.
    pub notes: String,
    /// Initial status (Consul: critical unless given).
    pub status: Option<HealthStatus>,
    /// TTL for TTL checks.
    pub ttl: Option<std::time::Duration>,
    /// Run interval for active checks.
    pub interval: Option<std::time::Duration>,
    /// Per-run timeout.
    pub timeout: Option<std::time::Duration>,
    /// Deregister the bound service after this long critical.
    pub deregister_critical_service_after: Option<std::time::Duration>,
    /// HTTP URL.
    pub http: String,
    /// HTTP method.
    pub method: String,
    /// HTTP headers.
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP body.
    pub body: String,
    /// Don't follow redirects.
    pub disable_redirects: bool,
    /// TCP address.
    pub tcp: String,
    /// UDP address.
    pub udp: String,
    /// gRPC address (`host:port[/service]`).
    pub grpc: String,
    /// gRPC over TLS.
    pub grpc_use_tls: bool,
    /// H2PING address.
    pub h2ping: String,
    /// H2PING over TLS. Consul defaults it to true for H2PING checks; that default
    /// is applied where definitions are decoded, so records written before the field
    /// existed keep the cleartext they were run with.
    pub h2ping_use_tls: bool,
    /// Script arguments.
    pub args: Vec<String>,
    /// Alias of a node.
    pub alias_node: String,
    /// Alias of a service.
    pub alias_service: String,
    /// Docker container.
    pub docker_container_id: String,
    /// Shell for Docker scripts.
    pub shell: String,
    /// OS service name.
    pub os_service: String,
    /// TLS server name for HTTPS, gRPC and H2PING over TLS (empty: the target's host).
    pub tls_server_name: String,
    /// Skip TLS certificate verification for HTTPS, gRPC and H2PING over TLS.
    pub tls_skip_verify: bool,
    /// Consecutive successes before passing.
    pub success_before_passing: u32,
    /// Consecutive failures before warning.
    pub failures_before_warning: u32,
    /// Consecutive failures before critical.
    pub failures_before_critical: u32,
    /// Largest output kept (default 4096).
    pub output_max_size: u32,
}

impl CheckDefinition {
    /// Consul's `Type` string for the definition.
    pub fn check_type(&self) -> &'static str {
        if self.ttl.is_some() {
            "ttl"
        } else if !self.http.is_empty() {
            "http"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else if !self.udp.is_empty() {
            "udp"
        } else if !self.grpc.is_empty() {
            "grpc"
        } else if !self.h2ping.is_empty() {
            "h2ping"
        } else if !self.docker_container_id.is_empty() {
            "docker"
        } else if !self.args.is_empty() {
            "script"
        } else if !self.alias_node.is_empty() || !self.alias_service.is_empty() {
            "alias"
        } else if !self.os_service.is_empty() {
            "os_service"
        } else {
            ""
        }
    }
}

/// A gossip member as `/v1/agent/members` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags (`role`, `dc`, `port`, `build`, ...).
    pub tags: BTreeMap<String, String>,
    /// Serf status: 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
}

/// What happens to the keys a session holds when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SessionBehavior {
    /// Release the locks (the keys stay, `Session` is cleared).
    #[default]
    Release,
    /// Delete the held keys (ephemeral keys).
    Delete,
}

impl SessionBehavior {
    /// Consul's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A service check a session is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceCheckRef {
    /// Check ID.
    pub id: String,
    /// Namespace (Enterprise; carried through).
    pub namespace: String,
}

/// Consul's maximum lock delay: longer requests are capped.
pub const MAX_LOCK_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// A session: the owner of KV locks, invalidated with its node, its checks or its TTL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    /// ID.
    pub id: SessionId,
    /// Name (free text).
    pub name: String,
    /// Node it belongs to (must exist).
    pub node: NodeName,
    /// How long keys it held stay unlockable after it is invalidated.
    pub lock_delay: std::time::Duration,
    /// What invalidation does to held keys.
    pub behavior: SessionBehavior,
    /// TTL as the client gave it (`""` = none). Kept as text because Consul echoes it.
    pub ttl: String,
    /// Node-level checks it is bound to (`serfHealth` unless given).
    pub node_checks: Vec<String>,
    /// Service checks it is bound to.
    pub service_checks: Vec<ServiceCheckRef>,
    /// Indexes.
    pub raft: RaftIndex,
}

impl Session {
    /// Every check ID the session depends on, on its node.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.node_checks
            .iter()
            .map(String::as_str)
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }

    /// The parsed TTL (`None` when there is none or it is zero).
    pub fn ttl_duration(&self) -> Option<std::time::Duration> {
        if self.ttl.is_empty() {
            return None;
        }
        crate::parse_go_duration(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// The service name in an intention's source or destination: `name`, `ns/name` or
/// `partition/ns/name` (Consul's `ParseIntentionTarget`). Namespace and partition
/// are dropped: Tribune has only `default`.
pub fn intention_target(input: &str) -> Result<&str, &'static str> {
    match input.split('/').collect::<Vec<_>>().as_slice() {
        [name] | [_, name] | [_, _, name] => Ok(name),
        _ => Err("input can contain at most two '/'"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_match_without_regard_to_case_unicode_included() {
        use super::tags_match;
        assert!(tags_match("Primary", "pRIMARY"));
        assert!(tags_match("Ärger", "äRGER"));
        assert!(!tags_match("v1", "v10"));
        assert!(!tags_match("ä", "a"));
    }
}
