//! What a server needs to know about itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Server settings, resolved from the agent configuration by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Address advertised to the cluster and registered in the catalog.
    pub advertise_addr: String,
    /// Server RPC address (`ip:port`) as reported by `/v1/status/leader`.
    pub rpc_addr: SocketAddr,
    /// Node metadata registered with the node.
    pub node_meta: BTreeMap<String, String>,
    /// Data directory; `None` = a temporary directory (dev mode).
    pub data_dir: Option<PathBuf>,
    /// Create a single-voter cluster if there is no raft state yet.
    pub bootstrap: bool,
    /// `bootstrap_expect`: form a cluster once this many servers are seen (0 or 1:
    /// no formation; 1 means `bootstrap`).
    pub bootstrap_expect: u32,
    /// Autopilot settings from the agent config (`autopilot { .. }`), in force until
    /// an operator stores others.
    pub autopilot: tribune_types::model::operator::AutopilotSettings,
    /// `performance.raft_multiplier` (1 = fastest, Consul's default 5).
    pub raft_multiplier: u32,
    /// Entries between snapshots (`raft_snapshot_threshold`).
    pub snapshot_threshold: u64,
    /// The least time between automatic snapshots (`raft_snapshot_interval`).
    pub snapshot_interval: std::time::Duration,
    /// Entries kept behind a snapshot (`raft_trailing_logs`).
    pub trailing_logs: u64,
    /// How long requests wait for a leader before failing (`rpc_hold_timeout`).
    pub rpc_hold_timeout: Duration,
    /// `limits.kv_max_value_size`.
    pub kv_max_value_size: usize,
    /// Whether Connect (and so the built-in CA) is enabled.
    pub connect_enabled: bool,
    /// `connect.ca_config.cluster_id`; random if unset.
    pub ca_cluster_id: Option<String>,
    /// Consul-compatible version string registered in service meta.
    pub version: String,
    /// How long a KV tombstone lives before the leader reaps it (Consul: 15 min).
    pub tombstone_ttl: Duration,
    /// Shortest session TTL accepted (`session_ttl_min`).
    pub session_ttl_min: Duration,
    /// `limits.request_limits`: the rate limits on requests to this server.
    pub request_limits: crate::rate::RequestLimits,
    /// `max_query_time`: the longest a blocking query waits (plus its
    /// jitter); a longer wait, as agents send it, is cut to this.
    pub max_query_time: Duration,
    /// How this server opens connections to the others (`tls.internal_rpc`,
    /// shared with its listener so a reload reaches both).
    pub rpc_tls: std::sync::Arc<tribune_rpc::RpcTls>,
}

impl ServerConfig {
    /// Defaults for a node called `node_name` serving RPC on `rpc_addr`.
    pub fn new(node_name: &str, rpc_addr: SocketAddr) -> Self {
        ServerConfig {
            node_name: node_name.to_owned(),
            node_id: uuid::Uuid::new_v4().to_string(),
            datacenter: "dc1".into(),
            advertise_addr: rpc_addr.ip().to_string(),
            rpc_addr,
            node_meta: BTreeMap::new(),
            data_dir: None,
            bootstrap: true,
            bootstrap_expect: 0,
            autopilot: Default::default(),
            raft_multiplier: 5,
            snapshot_threshold: 16384,
            snapshot_interval: std::time::Duration::from_secs(30),
            trailing_logs: 10240,
            rpc_hold_timeout: Duration::from_secs(7),
            kv_max_value_size: tribune_kv::DEFAULT_MAX_VALUE_SIZE,
            connect_enabled: true,
            ca_cluster_id: None,
            version: "1.20.0".into(),
            tombstone_ttl: Duration::from_secs(15 * 60),
            session_ttl_min: Duration::from_secs(10),
            request_limits: Default::default(),
            max_query_time: Duration::from_secs(600),
            rpc_tls: Default::default(),
        }
    }
}
