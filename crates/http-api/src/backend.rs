//! The port between the HTTP API and the agent it runs in.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRejected, WriteRequest,
};
use tribune_types::model::{Check, CheckDefinition, Member, Service};
use tribune_types::HealthStatus;

/// Why the backend could not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// A write was refused; nothing changed.
    #[error(transparent)]
    Rejected(#[from] WriteRejected),
    /// Consul: 500 "No cluster leader".
    #[error("No cluster leader")]
    NoLeader,
    /// Consul: 500 "No path to datacenter".
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    /// 404 with this text (unknown local service or check).
    #[error("{0}")]
    NotFound(String),
    /// 400 with this text.
    #[error("{0}")]
    BadRequest(String),
    /// 500 with this text (transport failures, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 429 with this text: a server's rate limit refused the request, and
    /// another server may serve it (Consul's `ErrRetryElsewhere`).
    #[error("{0}")]
    TooManyRequests(String),
    /// 503 with this text: a server's rate limit refused a request only that
    /// server can serve (Consul's `ErrRetryLater`).
    #[error("{0}")]
    ServiceUnavailable(String),
}

/// One datacenter's servers and their coordinates, for `/v1/coordinate/datacenters`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatacenterCoordinates {
    /// The datacenter.
    pub datacenter: String,
    /// The network area (`WAN` for the WAN pool).
    pub area_id: String,
    /// Each server's node name (without the `.dc` suffix) and coordinate.
    pub coordinates: Vec<tribune_types::model::coordinate::CoordinateEntry>,
}

/// A Connect leaf certificate with the key it was issued for, as the agent holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafCert {
    /// What the servers signed.
    pub issued: tribune_types::model::operator::IssuedLeaf,
    /// The agent-generated private key, PEM (never sent to the servers).
    pub private_key_pem: String,
}

/// Leader and peers, for `/v1/status/*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterStatus {
    /// Leader's `ip:port` or empty.
    pub leader: String,
    /// Voters' `ip:port`.
    pub peers: Vec<String>,
}

/// The agent's identity and configuration, for `/v1/agent/self`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentInfo {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Primary datacenter.
    pub primary_datacenter: String,
    /// Whether this agent is a server.
    pub server: bool,
    /// Consul-compatible version we report.
    pub version: String,
    /// Build revision.
    pub revision: String,
    /// Advertised address.
    pub advertise_addr: String,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Minimum session TTL (`session_ttl_min`).
    pub session_ttl_min: Duration,
    /// Listener ports by name (`http`, `dns`, `server`, ...); absent = disabled.
    pub ports: BTreeMap<String, u16>,
    /// The agent's own gossip member entry.
    pub member: Member,
    /// Arbitrary runtime configuration for `DebugConfig`.
    pub debug_config: BTreeMap<String, String>,
    /// `disable_coordinates`: the coordinate endpoints answer 401 and `?near=`
    /// does not sort by them.
    pub disable_coordinates: bool,
}

/// A service registration at the agent (`/v1/agent/service/register`, config files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRegistration {
    /// The service (node is filled in by the agent).
    pub service: Service,
    /// Its checks.
    pub checks: Vec<CheckDefinition>,
    /// Remove existing checks of the service that are not in `checks`.
    pub replace_existing_checks: bool,
}

/// One log record for `/v1/agent/monitor`, already rendered both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity: 0 trace, 1 debug, 2 info, 3 warn, 4 error.
    pub level: u8,
    /// Consul's text form: `2024-01-01T00:00:00.000Z [INFO]  agent: message: k=v`.
    pub text: String,
    /// Consul's JSON form (`{"@level":"info","@message":...,"@module":...,"@timestamp":...}`).
    pub json: String,
}

/// A gauge for `/v1/agent/metrics`: a full Consul metric name and its current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// Name, e.g. `consul.<hostname>.runtime.alloc_bytes`.
    pub name: String,
    /// Value.
    pub value: f64,
}

/// A local check with its definition, for `/v1/agent/checks`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalCheck {
    /// The check as synced to the catalog.
    pub check: Check,
    /// How it runs.
    pub definition: CheckDefinition,
}

/// A Consul user event (`/v1/event/fire`, `/v1/event/list`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEvent {
    /// Event ID (a UUID; set by the agent when fired).
    pub id: String,
    /// Name.
    pub name: String,
    /// Opaque payload (`None`: no body).
    pub payload: Option<Vec<u8>>,
    /// Regex on node names.
    pub node_filter: String,
    /// Regex on service names.
    pub service_filter: String,
    /// Regex on service tags (needs a service filter).
    pub tag_filter: String,
    /// Record version.
    pub version: u32,
    /// Lamport time of the gossip event.
    pub ltime: u64,
}

/// A gossip keyring operation (`/v1/operator/keyring`, Consul's `KeyringOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringOp {
    /// `GET`: which keys the members hold.
    List,
    /// `POST`: add a key (base64) everywhere.
    Install(String),
    /// `PUT`: make an installed key the primary everywhere.
    Use(String),
    /// `DELETE`: remove a non-primary key everywhere.
    Remove(String),
}

/// A keyring operation with its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRequest {
    /// What to do.
    pub op: KeyringOp,
    /// `?relay-factor` (0–5, already validated).
    pub relay_factor: u8,
    /// `?local-only`: leave the WAN pool out (list only).
    pub local_only: bool,
}

/// The outcome of a keyring operation in one gossip pool (Consul's
/// `KeyringResponse`). A failure in a pool is reported here, not as an `Err`: the
/// other pools still answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyringPool {
    /// The WAN pool (servers) rather than the datacenter's LAN pool.
    pub wan: bool,
    /// The datacenter.
    pub datacenter: String,
    /// The network segment (always empty: no segments in this build).
    pub segment: String,
    /// Base64 key → how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Base64 key → how many members encrypt with it.
    pub primary_keys: BTreeMap<String, usize>,
    /// Alive members of the pool.
    pub num_nodes: usize,
    /// Member name → what went wrong there.
    pub messages: BTreeMap<String, String>,
    /// Why the operation failed in this pool (Consul's `Error`), empty on success.
    pub error: String,
}

/// An operator snapshot archive's bytes, as they come (see [`Backend::snapshot_save`]).
pub type ArchiveBody = futures::stream::BoxStream<'static, Result<bytes::Bytes, BackendError>>;

/// `GET /v1/snapshot`'s answer: who answered, and the archive, streamed.
pub struct SnapshotDownload {
    /// Raft index of the state in the archive (`X-Consul-Index`).
    pub index: u64,
    /// Whether the answering server knew a leader.
    pub known_leader: bool,
    /// Time since it heard from the leader.
    pub last_contact: Duration,
    /// The archive; an error ends the response early.
    pub archive: ArchiveBody,
}

/// What the HTTP API needs from its agent.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A read of the replicated state, forwarded to the servers.
    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), BackendError>;
    /// A `?cached` read: answered from the agent's cache where it keeps one for
    /// `req` (then `QueryMeta::cache` says whether it was a hit), else as
    /// [`Backend::read`]. The default keeps no cache.
    async fn read_cached(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), BackendError> {
        self.read(req, opts).await
    }
    /// A write, forwarded to the leader; returns the outcome and raft index.
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), BackendError>;
    /// Leader and peers.
    async fn status(&self) -> Result<ClusterStatus, BackendError>;
    /// An operator request on raft itself, answered by the servers.
    async fn operator(
        &self,
        _req: tribune_types::model::operator::OperatorRequest,
    ) -> Result<tribune_types::model::operator::OperatorReply, BackendError> {
        Err(BackendError::Unavailable(
            "operator requests need a server".into(),
        ))
    }

    /// An archive of the state (the leader's, or with `stale` the answering
    /// server's), streamed rather than buffered: it is as large as the state.
    async fn snapshot_save(&self, _stale: bool) -> Result<SnapshotDownload, BackendError> {
        Err(BackendError::Unavailable("snapshots need a server".into()))
    }
    /// Replaces the cluster's state with the archive `body`; a bad archive
    /// changes nothing.
    async fn snapshot_restore(&self, _body: ArchiveBody) -> Result<(), BackendError> {
        Err(BackendError::Unavailable("snapshots need a server".into()))
    }

    /// The leaf certificate of `service` (Consul's agent leaf cache): reused until
    /// half its lifetime has passed, then replaced. With `min_index`, waits up to
    /// `max_wait` for a leaf issued at a later index.
    async fn connect_leaf(
        &self,
        service: &str,
        min_index: u64,
        max_wait: Duration,
    ) -> Result<LeafCert, BackendError>;
    /// The agent's identity and configuration.
    fn agent_info(&self) -> AgentInfo;
    /// Gossip members (LAN, or WAN with `wan`).
    fn members(&self, wan: bool) -> Vec<Member>;
    /// Servers' coordinates by datacenter: a server's from its WAN pool; a client
    /// agent has none and answers from its LAN pool's view of the servers.
    fn coordinate_datacenters(&self) -> Vec<DatacenterCoordinates>;
    /// Locally registered services.
    fn local_services(&self) -> Vec<Service>;
    /// Locally registered checks.
    fn local_checks(&self) -> Vec<LocalCheck>;
    /// Registers (or replaces) a local service and its checks.
    async fn register_service(&self, reg: ServiceRegistration) -> Result<(), BackendError>;
    /// Removes a local service and its checks (no-op if absent).
    async fn deregister_service(&self, id: &str) -> Result<(), BackendError>;
    /// Registers (or replaces) a local check.
    async fn register_check(&self, def: CheckDefinition) -> Result<(), BackendError>;
    /// Removes a local check (no-op if absent).
    async fn deregister_check(&self, id: &str) -> Result<(), BackendError>;
    /// Sets a TTL check's status and output (and restarts its TTL).
    async fn update_ttl_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> Result<(), BackendError>;
    /// Node (`service` = None) or service maintenance mode.
    async fn set_maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: String,
    ) -> Result<(), BackendError>;
    /// Gracefully leaves and stops the agent.
    async fn leave(&self) -> Result<(), BackendError>;
    /// Reloads configuration files.
    async fn reload(&self) -> Result<(), BackendError>;
    /// Joins a gossip pool through `addr`.
    async fn join(&self, addr: &str, wan: bool) -> Result<(), BackendError>;
    /// Forces a failed member into the `left` state (`prune`: forget it entirely).
    async fn force_leave(&self, node: &str, prune: bool, wan: bool) -> Result<(), BackendError>;
    /// Current gauges (runtime and agent state), read at request time.
    fn gauges(&self) -> Vec<Gauge>;
    /// Subscribes to the agent's log records (every level; the caller filters).
    fn monitor(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<LogLine>>;
    /// A receiver whose value changes whenever local services or checks change, for
    /// hash-based blocking on agent endpoints. The value itself is meaningless.
    fn local_changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Fires a user event to the cluster; returns it as sent (with its ID).
    async fn fire_event(&self, event: UserEvent) -> Result<UserEvent, BackendError>;
    /// The user events this agent received and kept (oldest first, at most 256).
    fn events(&self) -> Vec<UserEvent>;
    /// A receiver whose value changes whenever an event arrives.
    fn event_changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Lists or changes the gossip keyrings of the cluster: one entry per pool, the
    /// WAN pool first on servers. `Err` only when there is no pool to act on.
    async fn keyring(&self, req: KeyringRequest) -> Result<Vec<KeyringPool>, BackendError>;
}
