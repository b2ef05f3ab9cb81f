//! Operator records: the raft configuration as `/v1/operator/raft/configuration`
//! shows it, autopilot's settings (replicated through raft like Consul's) and
//! its view of server health.

use super::RaftIndex;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Autopilot settings (`/v1/operator/autopilot/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotSettings {
    /// Remove failed servers from the raft configuration.
    pub cleanup_dead_servers: bool,
    /// A follower that has not heard from the leader for this long is unhealthy.
    pub last_contact_threshold: Duration,
    /// A follower further behind than this many entries is unhealthy.
    pub max_trailing_logs: u64,
    /// Never remove servers to fewer voters than this.
    pub min_quorum: u32,
    /// How long a new server must be healthy before it becomes a voter.
    pub server_stabilization_time: Duration,
    /// Enterprise: accepted and kept, not acted on.
    pub redundancy_zone_tag: String,
    /// Enterprise: accepted and kept, not acted on.
    pub disable_upgrade_migration: bool,
    /// Enterprise: accepted and kept, not acted on.
    pub upgrade_version_tag: String,
    /// Raft indexes of the stored settings (zero for the defaults).
    pub raft: RaftIndex,
}

impl Default for AutopilotSettings {
    /// Consul's defaults.
    fn default() -> Self {
        AutopilotSettings {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            raft: RaftIndex::default(),
        }
    }
}

/// One member of the raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftServer {
    /// The server's node ID (its raft identity).
    pub id: String,
    /// Node name.
    pub node: String,
    /// Server RPC address, `ip:port`.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes (otherwise a learner: Consul's non-voter).
    pub voter: bool,
    /// Last log index known for it.
    pub last_index: u64,
}

/// The raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfiguration {
    /// Members.
    pub servers: Vec<RaftServer>,
    /// The raft index the answer reflects.
    pub index: u64,
}

/// One server's health as autopilot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// Node ID.
    pub id: String,
    /// Node name.
    pub name: String,
    /// Server RPC address.
    pub address: String,
    /// Gossip status (`alive`, `failed`, `left`, ...).
    pub serf_status: String,
    /// Consul-compatible version it gossips.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// Time since it last heard from the leader.
    pub last_contact: Duration,
    /// Raft term.
    pub last_term: u64,
    /// Last log index known for it.
    pub last_index: u64,
    /// Caught up, in contact and alive.
    pub healthy: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Since when it has been healthy, ms since the Unix epoch (0: not healthy).
    pub stable_since_ms: u64,
}

/// Autopilot's view of the cluster (`/v1/operator/autopilot/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotHealth {
    /// Every voter healthy.
    pub healthy: bool,
    /// Voters that could fail without losing quorum.
    pub failure_tolerance: u32,
    /// Per server.
    pub servers: Vec<ServerHealth>,
    /// The leader's node ID.
    pub leader: String,
}

/// Catalog counts for `/v1/operator/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Catalog nodes.
    pub nodes: usize,
    /// Distinct service names.
    pub services: usize,
    /// Service instances.
    pub service_instances: usize,
    /// Connect instances by kind (`connect-proxy`, `connect-native`, the gateways).
    pub connect: std::collections::BTreeMap<String, usize>,
    /// Typical (and Connect-native) instances other than the `consul` service.
    pub billable: usize,
}

/// Operator requests that act on raft itself rather than on the state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorRequest {
    /// `GET /v1/operator/raft/configuration`.
    RaftConfiguration {
        /// Answer from the receiving server's own view.
        stale: bool,
    },
    /// `DELETE /v1/operator/raft/peer`: by node ID, or by address.
    RemovePeer {
        /// Node ID (empty: use the address).
        id: String,
        /// `ip:port` (empty: use the ID).
        address: String,
    },
    /// `POST /v1/operator/raft/transfer-leader` (empty ID: any caught-up voter).
    TransferLeader {
        /// Target node ID.
        id: String,
    },
    /// `GET /v1/operator/autopilot/health` and `/state`.
    AutopilotHealth,
    /// `GET /v1/agent/connect/ca/leaf/{service}`: a leaf certificate for
    /// `service` over the agent's own key pair (only the public key travels), signed
    /// by the active Connect CA root. Any server answers from its replicated CA.
    SignLeaf {
        /// The service the certificate identifies.
        service: String,
        /// The agent's P-256 public key as an uncompressed point (65 bytes).
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
    },
}

/// Answers to [`OperatorRequest`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorReply {
    /// The raft configuration.
    Raft(RaftConfiguration),
    /// Done.
    Done,
    /// Autopilot's view.
    Health(AutopilotHealth),
    /// A signed leaf certificate.
    Leaf(IssuedLeaf),
}

/// A leaf certificate as a server signs it (the private key stays with the agent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IssuedLeaf {
    /// Serial number, colon hex.
    pub serial_number: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The service it identifies.
    pub service: String,
    /// Its SPIFFE ID (`spiffe://<trust domain>/ns/default/dc/<dc>/svc/<service>`).
    pub service_uri: String,
    /// Start of validity, RFC 3339.
    pub valid_after: String,
    /// End of validity, RFC 3339.
    pub valid_before: String,
    /// The state index it was signed at (Consul's leaf `ModifyIndex`).
    pub index: u64,
    /// From signing to the end of validity (what the agent schedules renewal by).
    pub lifetime: Duration,
}
