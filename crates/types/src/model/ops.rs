//! Requests and results exchanged between an agent and the servers.
//!
//! Writes ([`WriteRequest`]) become raft commands on the leader; reads ([`ReadRequest`])
//! run against a server's state, possibly blocking ([`QueryOptions`]).

use super::{CaRoot, Check, ConfigEntry, KvEntry, Node, Service, Session};
use crate::{CheckId, HealthStatus, NodeName, ServiceId, SessionId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a KV PUT is conditioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvSetMode {
    /// Unconditional write.
    Set,
    /// Write only if the key's ModifyIndex equals this (0 = only if absent).
    Cas(u64),
    /// Acquire the key's lock for the session.
    Acquire(SessionId),
    /// Release the key's lock held by the session.
    Release(SessionId),
}

/// How a KV DELETE is conditioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvDeleteMode {
    /// Delete one key.
    Key,
    /// Delete one key only if its ModifyIndex equals this.
    Cas(u64),
    /// Delete every key under the prefix.
    Tree,
}

/// A catalog registration (`PUT /v1/catalog/register`, and agent anti-entropy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Registration {
    /// The node (created or updated unless `skip_node_update`).
    pub node: Node,
    /// A service on it.
    pub service: Option<Service>,
    /// Checks on it.
    pub checks: Vec<Check>,
    /// Leave an existing node record alone.
    pub skip_node_update: bool,
}

/// A catalog deregistration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Deregistration {
    /// The node.
    pub node: NodeName,
    /// Only this service (and its checks).
    pub service_id: Option<ServiceId>,
    /// Only this check.
    pub check_id: Option<CheckId>,
}

/// A write, proposed through raft on the leader.
// Boxing the large variants would only move an allocation: requests are built once
// and moved into a raft entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteRequest {
    /// `PUT /v1/kv/{key}`.
    KvSet {
        /// Key, value and flags.
        entry: KvEntry,
        /// Condition.
        mode: KvSetMode,
    },
    /// `DELETE /v1/kv/{key}`.
    KvDelete {
        /// Key or prefix.
        key: String,
        /// Condition.
        mode: KvDeleteMode,
    },
    /// Catalog register.
    Register(Registration),
    /// Catalog deregister.
    Deregister(Deregistration),
    /// `PUT /v1/config`, optionally CAS on ModifyIndex.
    ConfigSet {
        /// The entry.
        entry: ConfigEntry,
        /// CAS index.
        cas: Option<u64>,
    },
    /// `DELETE /v1/config/{kind}/{name}`, optionally CAS.
    ConfigDelete {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// CAS index.
        cas: Option<u64>,
    },
    /// `PUT /v1/operator/autopilot/configuration`; with `cas`, only if the stored
    /// settings' modify index is that (0: none stored yet).
    AutopilotSet {
        /// The new settings.
        config: crate::model::operator::AutopilotSettings,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// Install a CA root (done once by the leader).
    CaSetRoots {
        /// Roots; the previous set is replaced.
        roots: Vec<CaRoot>,
    },
    /// `PUT /v1/session/create`: the ID is chosen before proposing (apply must be
    /// deterministic), defaults are already filled in.
    SessionCreate(Session),
    /// `PUT /v1/session/destroy/{id}`, and the leader's TTL expiry: invalidates the
    /// session (its locks released or keys deleted, lock-delay started).
    SessionDestroy {
        /// The session.
        id: SessionId,
    },
    /// `PUT /v1/txn` with at least one write: all operations apply, or none.
    Txn(Vec<TxnOp>),
    /// Agents' LAN coordinates (`Coordinate.Update`). Rows for nodes the catalog
    /// does not hold, or with non-finite values, are skipped, as Consul does.
    CoordinateBatchUpdate {
        /// The coordinates, at most one per node and segment.
        updates: Vec<crate::model::coordinate::CoordinateEntry>,
    },
    /// `PUT /v1/connect/ca/configuration`, CAS on the stored config's ModifyIndex
    /// (0: only while none is stored).
    CaSetConfig {
        /// The configuration.
        config: crate::model::CaConfig,
        /// CAS index.
        cas: Option<u64>,
    },
    /// `POST /v1/query` (`create`: the ID was chosen before proposing and must be
    /// new) or `PUT /v1/query/{id}` (the query must exist; it is replaced whole).
    /// The definition was checked as Consul's `parseQuery` does; the rules that need
    /// the state (unique names, session, template) are checked at apply.
    QuerySet {
        /// The definition.
        query: crate::model::query::PreparedQuery,
        /// Create rather than update.
        create: bool,
    },
    /// `DELETE /v1/query/{id}`: the query must exist.
    QueryDelete {
        /// Its ID.
        id: String,
    },
}

impl WriteRequest {
    /// A plain KV set of `value` under `key` (no flags, session or CAS): what
    /// `PUT /v1/kv/<key>` without parameters proposes.
    pub fn kv_set(key: impl Into<String>, value: Vec<u8>) -> Self {
        WriteRequest::KvSet {
            entry: KvEntry {
                key: key.into(),
                value,
                ..Default::default()
            },
            mode: KvSetMode::Set,
        }
    }
}

/// A KV verb of a transaction (Consul's `api.KVOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    /// `set`.
    Set,
    /// `cas` (with `index`).
    Cas,
    /// `lock` (with `session`).
    Lock,
    /// `unlock` (with `session`).
    Unlock,
    /// `get`: fails if the key is missing.
    Get,
    /// `get-or-empty`.
    GetOrEmpty,
    /// `get-tree`.
    GetTree,
    /// `check-index`.
    CheckIndex,
    /// `check-session`.
    CheckSession,
    /// `check-not-exists`.
    CheckNotExists,
    /// `delete`.
    Delete,
    /// `delete-tree`.
    DeleteTree,
    /// `delete-cas` (with `index`).
    DeleteCas,
}

impl KvVerb {
    /// Whether the verb only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetOrEmpty
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// A catalog verb of a transaction (`api.NodeOp`, `ServiceOp`, `CheckOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// `set`.
    Set,
    /// `cas` (on the row's ModifyIndex).
    Cas,
    /// `get`: fails if missing.
    Get,
    /// `delete`.
    Delete,
    /// `delete-cas`.
    DeleteCas,
}

/// One operation of a transaction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation; `entry.raft.modify_index` carries the `Index` field and
    /// `entry.session` the `Session` field.
    Kv {
        /// Verb.
        verb: KvVerb,
        /// Key, value, flags, index, session.
        entry: KvEntry,
    },
    /// A node operation; `node.raft.modify_index` is the CAS index.
    Node {
        /// Verb.
        verb: CatalogVerb,
        /// The node.
        node: Node,
    },
    /// A service operation on `node`; `service.raft.modify_index` is the CAS index.
    Service {
        /// Verb.
        verb: CatalogVerb,
        /// Node name.
        node: NodeName,
        /// The service.
        service: Service,
    },
    /// A check operation; `check.raft.modify_index` is the CAS index.
    Check {
        /// Verb.
        verb: CatalogVerb,
        /// The check (its node is `check.node`).
        check: Check,
    },
    /// `Session` with verb `delete`.
    SessionDelete {
        /// The session.
        id: SessionId,
    },
}

impl TxnOp {
    /// Whether the operation only reads (read-only transactions skip raft).
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv { verb, .. } => verb.is_read(),
            TxnOp::Node { verb, .. } | TxnOp::Service { verb, .. } | TxnOp::Check { verb, .. } => {
                *verb == CatalogVerb::Get
            }
            TxnOp::SessionDelete { .. } => false,
        }
    }
}

/// One result of a transaction (`{"KV": …}`, `{"Node": …}`, ...).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry (value blanked except for reads).
    Kv(KvEntry),
    /// A node.
    Node(Node),
    /// A service.
    Service(Service),
    /// A check.
    Check(Check),
}

/// Why one operation of a rolled-back transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the operation.
    pub op_index: usize,
    /// Consul's error text.
    pub what: String,
}

/// What a write did, as Consul reports it (`true`/`false` for KV and config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Applied.
    Done,
    /// A condition (CAS, lock) did not hold; nothing changed.
    NotApplied,
    /// A transaction committed, with its results.
    Txn(Vec<TxnResult>),
}

/// A write failed for a reason the client must hear about (no state changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteRejected {
    /// Invalid input, answered 400 with this text.
    #[error("{0}")]
    BadRequest(String),
    /// Missing object, answered 404 with this text.
    #[error("{0}")]
    NotFound(String),
    /// Something else, answered 500 with this text (Consul's wording).
    #[error("{0}")]
    Failed(String),
    /// A transaction rolled back (answered 409 with the errors).
    #[error("transaction rolled back")]
    TxnRolledBack(Vec<TxnError>),
}

/// Consistency mode of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader answers.
    #[default]
    Default,
    /// The leader confirms its leadership first.
    Consistent,
    /// Any server answers from its local state.
    Stale,
}

impl Consistency {
    /// The value of `X-Consul-Effective-Consistency`.
    pub fn header_value(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }
    }
}

/// Blocking and consistency options of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryOptions {
    /// Block until the result's index exceeds this (0 = don't block).
    pub min_index: u64,
    /// Maximum wait (already clamped and jittered by the caller).
    pub max_wait: Duration,
    /// Consistency mode.
    pub consistency: Consistency,
}

/// Facts about a read's answer, sent as `X-Consul-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryMeta {
    /// The result's index (≥ 1).
    pub index: u64,
    /// Whether the answering server knows a leader.
    pub known_leader: bool,
    /// Time since the answering server last heard from the leader (0 on the leader).
    pub last_contact: Duration,
    /// The consistency mode actually used.
    pub consistency: Consistency,
    /// For a `?cached` read the agent answered from its cache or filled it with:
    /// which (`X-Cache`). Local to the agent, never sent between servers.
    #[serde(skip)]
    pub cache: Option<CacheStatus>,
}

/// Whether a `?cached` read was answered from the agent's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the cache (`X-Cache: HIT`); `age` is how long ago the servers last
    /// confirmed it (`Age`): zero while its refresher keeps it current.
    Hit {
        /// Time since the last successful fetch or refresh, when refreshing fails.
        age: Duration,
    },
    /// Fetched from the servers, and cached (`X-Cache: MISS`).
    Miss,
}

/// A read against the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadRequest {
    /// One key.
    KvGet {
        /// Key.
        key: String,
    },
    /// Every entry under a prefix.
    KvList {
        /// Prefix.
        prefix: String,
    },
    /// Key names under a prefix, collapsed at `separator`.
    KvKeys {
        /// Prefix.
        prefix: String,
        /// Separator (empty = none).
        separator: String,
    },
    /// All nodes.
    CatalogNodes,
    /// Service names with their tags.
    CatalogServices,
    /// Instances of a service, with their nodes.
    CatalogService {
        /// Service name.
        service: String,
    },
    /// Connect-capable instances of a service: proxies whose destination is it, and
    /// its own instances when they are Connect-native.
    CatalogConnect {
        /// Service name.
        service: String,
    },
    /// Connect-capable instances with node and checks.
    HealthConnect {
        /// Service name.
        service: String,
    },
    /// A node and its services.
    CatalogNode {
        /// Node.
        node: NodeName,
    },
    /// Checks of a node.
    HealthNode {
        /// Node.
        node: NodeName,
    },
    /// Checks of a service.
    HealthChecks {
        /// Service name.
        service: String,
    },
    /// Instances of a service with node and checks.
    HealthService {
        /// Service name.
        service: String,
    },
    /// Checks in a state (`None` = any).
    HealthState {
        /// State filter.
        state: Option<HealthStatus>,
    },
    /// One config entry.
    ConfigGet {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// Config entries of a kind.
    ConfigList {
        /// Kind.
        kind: String,
    },
    /// Connect CA roots.
    CaRoots,
    /// Autopilot settings (the defaults until some are stored).
    AutopilotConfig,
    /// Catalog counts (`/v1/operator/usage`).
    Usage,
    /// One session (`[]` when gone).
    SessionGet {
        /// The session.
        id: SessionId,
    },
    /// Every session.
    SessionList,
    /// Sessions of a node.
    SessionNode {
        /// Node.
        node: NodeName,
    },
    /// Renews a TTL session: answered by the leader, which restarts the session's
    /// timer (Consul's `Session.Renew` is a read RPC with that side effect).
    SessionRenew {
        /// The session.
        id: SessionId,
    },
    /// A transaction whose operations all read (no raft round).
    Txn(Vec<TxnOp>),
    /// Every node's coordinates (`/v1/coordinate/nodes`).
    Coordinates,
    /// One node's coordinates, one per segment (`/v1/coordinate/node/{node}`).
    CoordinateNode {
        /// The node.
        node: NodeName,
    },
    /// The services a gateway routes to, wildcards expanded
    /// (`/v1/catalog/gateway-services/{gateway}`).
    GatewayServices {
        /// The gateway's service name.
        gateway: String,
    },
    /// Instances of the ingress gateways that route to a service, with their
    /// nodes and checks (`/v1/health/ingress/{service}`).
    HealthIngress {
        /// The service routed to.
        service: String,
    },
    /// The Connect CA configuration, if one was written.
    CaConfig,
    /// The config entries of these kinds, from one snapshot, with the config
    /// table's index (what a discovery chain is compiled from).
    ConfigKinds {
        /// The kinds.
        kinds: Vec<String>,
    },
    /// Every prepared query (`GET /v1/query`).
    QueryList,
    /// One prepared query by ID, unrendered (`GET /v1/query/{id}`).
    QueryGet {
        /// Its ID.
        id: String,
    },
    /// Find a prepared query by ID, name or template prefix and run it
    /// (`/v1/query/{id-or-name}/execute`, DNS `.query.`).
    QueryExecute {
        /// ID or name.
        id_or_name: String,
        /// Who asks, and from where to sort.
        source: crate::model::query::QuerySource,
        /// At most this many instances (0: all).
        limit: usize,
        /// `?connect=true`: Connect-capable instances whatever the query says.
        connect: bool,
    },
    /// Find a prepared query as [`ReadRequest::QueryExecute`] does and render it,
    /// without running it (`/v1/query/{id-or-name}/explain`).
    QueryExplain {
        /// ID or name.
        id_or_name: String,
        /// Who asks (`${agent.segment}`).
        source: crate::model::query::QuerySource,
    },
}

/// A service instance together with its node (catalog service endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: Service,
}

/// A service instance with its node and every check that applies (node + service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEntry {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: Service,
    /// Node-level and service-level checks.
    pub checks: Vec<Check>,
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    /// Zero or more KV entries.
    Kv(Vec<KvEntry>),
    /// Key names.
    Keys(Vec<String>),
    /// Nodes.
    Nodes(Vec<Node>),
    /// Service name → union of tags, sorted by name.
    Services(Vec<(String, Vec<String>)>),
    /// Service instances.
    ServiceInstances(Vec<ServiceInstance>),
    /// A node and its services, if the node exists.
    NodeServices(Option<(Node, Vec<Service>)>),
    /// Checks.
    Checks(Vec<Check>),
    /// Health entries.
    Health(Vec<HealthEntry>),
    /// Config entries.
    Config(Vec<ConfigEntry>),
    /// CA roots and the trust domain.
    CaRoots(Vec<CaRoot>),
    /// Autopilot settings.
    Autopilot(crate::model::operator::AutopilotSettings),
    /// Catalog counts.
    Usage(crate::model::operator::Usage),
    /// Sessions.
    Sessions(Vec<Session>),
    /// A read-only transaction's results, or why it failed.
    Txn(Result<Vec<TxnResult>, Vec<TxnError>>),
    /// Network coordinates.
    Coordinates(Vec<crate::model::coordinate::CoordinateEntry>),
    /// A gateway's services.
    GatewayServices(Vec<GatewayService>),
    /// The Connect CA configuration, if one was written.
    CaConfig(Option<crate::model::CaConfig>),
    /// Prepared queries.
    Queries(Vec<crate::model::query::PreparedQuery>),
    /// A prepared query run.
    QueryExecuted(crate::model::query::QueryOutcome<crate::model::query::QueryExecution>),
    /// A prepared query rendered.
    QueryExplained(Box<crate::model::query::QueryOutcome<crate::model::query::PreparedQuery>>),
}

/// A service behind a gateway, as `/v1/catalog/gateway-services` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GatewayService {
    /// The gateway's service name.
    pub gateway: String,
    /// `ingress-gateway` or `terminating-gateway`.
    pub gateway_kind: String,
    /// The link, with `service` resolved (never `*`).
    pub link: crate::model::GatewayLink,
    /// Whether the service was matched by a `*` entry.
    pub from_wildcard: bool,
    /// The config entry's indexes.
    pub raft: crate::model::RaftIndex,
}
