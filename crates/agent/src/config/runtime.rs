//! The resolved, typed agent configuration ([`RuntimeConfig`]) and its parts.
//!
//! Everything here is final: defaults applied, deprecated keys mapped, ports of zero or
//! below turned into `None` ("disabled", Consul's `-1`), durations parsed. Field names follow
//! Consul's config keys so an operator's `ports.dns = -1` is `ports.dns == None` here.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::error::Warning;

/// The agent's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// `-dev`: in-memory server that bootstraps itself, with fast timings.
    pub dev: bool,
    /// `server`: run as a server (Raft voter) rather than a client.
    pub server: bool,
    /// `bootstrap` (always true with `-dev`; `bootstrap_expect = 1` also sets it).
    pub bootstrap: bool,
    /// `bootstrap_expect`: servers to wait for before the first election (0 = off).
    pub bootstrap_expect: u32,
    /// `read_replica` / `-non-voting-server` (Enterprise in Consul; accepted).
    pub read_replica: bool,

    /// `node_name` (default: the host name).
    pub node_name: String,
    /// `node_id`, lower-cased; `None` means generate one and persist it in `data_dir`.
    pub node_id: Option<String>,
    /// `node_meta` (and `-node-meta key:value`).
    pub node_meta: BTreeMap<String, String>,
    /// `datacenter`, lower-cased (default `dc1`).
    pub datacenter: String,
    /// `primary_datacenter` (also `acl_datacenter`), lower-cased; defaults to `datacenter`.
    pub primary_datacenter: String,
    /// `segment` (Enterprise in Consul; accepted).
    pub segment: Option<String>,
    /// `partition` (Enterprise in Consul; accepted).
    pub partition: Option<String>,
    /// `locality { region, zone }`.
    pub locality: Option<Locality>,

    /// `data_dir`; `None` only in dev mode (in-memory state).
    pub data_dir: Option<PathBuf>,
    /// `pid_file`.
    pub pid_file: Option<PathBuf>,

    /// `bind_addr` (default `0.0.0.0`; `127.0.0.1` with `-dev`): cluster traffic.
    pub bind_addr: IpAddr,
    /// `serf_lan` / `-serf-lan-bind` (default: `bind_addr`).
    pub serf_lan_bind: Option<IpAddr>,
    /// `serf_wan` / `-serf-wan-bind` (default: `bind_addr`).
    pub serf_wan_bind: Option<IpAddr>,
    /// `advertise_addr`, or `bind_addr` when that is a specific address. `None` means
    /// `bind_addr` is unspecified (`0.0.0.0`/`::`) and the agent must pick the host's
    /// private address itself, as Consul does.
    pub advertise_addr: Option<IpAddr>,
    /// `advertise_addr_wan` (default: the LAN advertise address).
    pub advertise_addr_wan: Option<IpAddr>,
    /// `client_addr`, split on spaces (default `127.0.0.1`): HTTP, HTTPS, DNS and gRPC.
    pub client_addrs: Vec<IpAddr>,
    /// `addresses.*`: per-listener overrides of `client_addrs`.
    pub addresses: Addresses,
    /// `ports.*`.
    pub ports: Ports,
    /// `tagged_addresses` given in config (the agent adds `lan`/`wan` itself).
    pub tagged_addresses: BTreeMap<String, String>,
    /// `translate_wan_addrs`.
    pub translate_wan_addrs: bool,

    /// `retry_join` (+ `-retry-join`, and `start_join`/`-join`, which Consul 1.15+ folds in).
    pub retry_join: Vec<String>,
    /// The `start_join`/`-join` subset of `retry_join`, for reporting; already in `retry_join`,
    /// so do not join these a second time.
    pub start_join: Vec<String>,
    /// `retry_join_wan` (+ `start_join_wan`/`-join-wan`).
    pub retry_join_wan: Vec<String>,
    /// The `start_join_wan` subset of `retry_join_wan`.
    pub start_join_wan: Vec<String>,
    /// `retry_interval` (30s).
    pub retry_interval: Duration,
    /// `retry_interval_wan` (30s).
    pub retry_interval_wan: Duration,
    /// `retry_max` (0 = retry forever).
    pub retry_max: u32,
    /// `retry_max_wan` (0 = retry forever).
    pub retry_max_wan: u32,
    /// `rejoin_after_leave` / `-rejoin`.
    pub rejoin_after_leave: bool,
    /// `primary_gateways` / `-primary-gateway`.
    pub primary_gateways: Vec<String>,
    /// `leave_on_terminate` (default: true on clients, false on servers).
    pub leave_on_terminate: bool,
    /// `skip_leave_on_interrupt` (default: true on servers, false on clients).
    pub skip_leave_on_interrupt: bool,
    /// `reconnect_timeout` (72h): how long failed LAN members are kept.
    pub reconnect_timeout: Duration,
    /// `reconnect_timeout_wan` (72h).
    pub reconnect_timeout_wan: Duration,

    /// `encrypt`: base64 gossip key (validated: 16, 24 or 32 bytes).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` (true).
    pub encrypt_verify_incoming: bool,
    /// `encrypt_verify_outgoing` (true).
    pub encrypt_verify_outgoing: bool,
    /// `disable_keyring_file` (true with `-dev`).
    pub disable_keyring_file: bool,
    /// `gossip_lan { .. }` (memberlist LAN defaults; 100ms timings with `-dev`).
    pub gossip_lan: Gossip,
    /// `gossip_wan { .. }` (memberlist WAN defaults; 100ms timings with `-dev`).
    pub gossip_wan: Gossip,
    /// `serf_lan_allowed_cidrs`.
    pub serf_lan_allowed_cidrs: Vec<String>,
    /// `serf_wan_allowed_cidrs`.
    pub serf_wan_allowed_cidrs: Vec<String>,

    /// `raft_protocol` (only 3 is accepted).
    pub raft_protocol: u32,
    /// `protocol`: RPC protocol version (2).
    pub protocol: u32,
    /// `performance.raft_multiplier` (5; 1 with `-dev` and in the Go test helper).
    pub raft_multiplier: u32,
    /// Raft timeouts, already scaled by `raft_multiplier`.
    pub raft: RaftTiming,
    /// `raft_snapshot_threshold` (16384).
    pub raft_snapshot_threshold: u64,
    /// `raft_snapshot_interval` (30s).
    pub raft_snapshot_interval: Duration,
    /// `raft_trailing_logs` (10240).
    pub raft_trailing_logs: u64,
    /// `performance.rpc_hold_timeout` (7s).
    pub rpc_hold_timeout: Duration,
    /// `performance.leave_drain_time` (5s).
    pub leave_drain_time: Duration,
    /// `autopilot { .. }`.
    pub autopilot: Autopilot,
    /// How often servers apply batched coordinate updates (5s; 100ms with `-dev`).
    pub coordinate_update_period: Duration,
    /// How often autopilot probes server health (2s; 10ms with `-dev`).
    pub server_health_interval: Duration,
    /// `session_ttl_min` (10s).
    pub session_ttl_min: Duration,
    /// `default_query_time` (300s): blocking-query wait without `?wait=`.
    pub default_query_time: Duration,
    /// `max_query_time` (600s): the longest blocking-query wait.
    pub max_query_time: Duration,
    /// `limits { .. }`.
    pub limits: Limits,

    /// `http_config { .. }`.
    pub http_config: HttpConfig,
    /// `dns_config { .. }`.
    pub dns_config: DnsConfig,
    /// `domain` (`consul.`), always ending in a dot.
    pub domain: String,
    /// `alt_domain`, ending in a dot when set.
    pub alt_domain: Option<String>,
    /// `recursors` / `-recursor`, de-duplicated, in order.
    pub recursors: Vec<String>,
    /// `ui_config.enabled` / `ui` / `-ui` (true with `-dev`).
    pub ui: bool,
    /// `ui_config.dir` / `-ui-dir`.
    pub ui_dir: Option<PathBuf>,
    /// `ui_config.content_path` / `-ui-content-path` (`/ui/`), with leading and trailing `/`.
    pub ui_content_path: String,

    /// `connect { .. }`.
    pub connect: Connect,
    /// `peering.enabled` (true).
    pub peering_enabled: bool,
    /// `acl { .. }` (and the legacy `acl_*` keys).
    pub acl: Acl,
    /// `tls { .. }` (and the legacy flat `ca_file`, `verify_*` keys), inheritance resolved.
    pub tls: Tls,

    /// `enable_script_checks`.
    pub enable_script_checks: bool,
    /// `enable_local_script_checks` (defaults to `enable_script_checks`).
    pub enable_local_script_checks: bool,
    /// `enable_agent_tls_for_checks`: HTTPS, gRPC and H2PING checks over TLS trust
    /// the agent's CAs and present its certificate ([`RuntimeConfig::check_tls_files`]).
    pub enable_agent_tls_for_checks: bool,
    /// `enable_debug` (true with `-dev`).
    pub enable_debug: bool,
    /// `enable_central_service_config` (true).
    pub enable_central_service_config: bool,
    /// `disable_update_check`.
    pub disable_update_check: bool,
    /// `disable_remote_exec` (true).
    pub disable_remote_exec: bool,
    /// `disable_http_unprintable_char_filter`: accept HTTP paths with
    /// non-printable characters.
    pub disable_http_unprintable_char_filter: bool,
    /// `disable_coordinates`.
    pub disable_coordinates: bool,
    /// `sync_coordinate_interval_min` (15 s; a Consul setting outside the
    /// documented user config, honoured for tests).
    pub sync_coordinate_interval_min: Duration,
    /// `sync_coordinate_rate_target` (64 reports a second cluster-wide).
    pub sync_coordinate_rate_target: f64,
    /// `disable_host_node_id` (true).
    pub disable_host_node_id: bool,
    /// `disable_anonymous_signature` (true with `-dev`).
    pub disable_anonymous_signature: bool,
    /// `auto_reload_config`.
    pub auto_reload_config: bool,
    /// `use_streaming_backend` (true).
    pub use_streaming_backend: bool,
    /// `check_update_interval` (5m).
    pub check_update_interval: Duration,
    /// `check_output_max_size` (4096).
    pub check_output_max_size: u64,
    /// `discard_check_output`.
    pub discard_check_output: bool,

    /// `log_level` (INFO; DEBUG with `-dev`).
    pub log_level: LogLevel,
    /// `log_json`.
    pub log_json: bool,
    /// `log_file`.
    pub log_file: Option<PathBuf>,
    /// `log_rotate_bytes` (0 = no size limit).
    pub log_rotate_bytes: u64,
    /// `log_rotate_duration` (0 = Consul's default of 24h).
    pub log_rotate_duration: Duration,
    /// `log_rotate_max_files` (0 = keep all).
    pub log_rotate_max_files: i64,
    /// `enable_syslog` / `-syslog`.
    pub enable_syslog: bool,
    /// `syslog_facility` (`LOCAL0`).
    pub syslog_facility: String,

    /// Every `service {}` / `services []` definition from every source, in load order, as
    /// the JSON object Consul's JSON config form would hold (HCL is converted to that shape).
    pub services: Vec<Value>,
    /// Every `check {}` / `checks []` definition, in load order, as JSON.
    pub checks: Vec<Value>,
    /// `watches [ .. ]`, verbatim.
    pub watches: Vec<Value>,

    /// The config files that were read, in order (for reloads and file watching).
    pub config_files: Vec<PathBuf>,
    /// Dotted paths of keys that Consul does not define; they were ignored.
    pub unknown_keys: Vec<String>,
    /// Dotted paths of keys Consul defines but Tribune does not act on (telemetry, audit, ...).
    pub ignored_keys: Vec<String>,
    /// Everything worth logging that did not stop the load (also logged by `load`).
    pub warnings: Vec<Warning>,
}

/// `locality { region, zone }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locality {
    /// `region`.
    pub region: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
}

/// One configured listen address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// An IP address; the port comes from `ports.*`.
    Ip(IpAddr),
    /// A unix socket (`unix:///path/to/sock`).
    Unix(PathBuf),
}

/// A resolved listener: address plus port, or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listener {
    /// A TCP (or, for DNS, TCP and UDP) socket.
    Tcp(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

/// `addresses.*`: when a list is empty the listener uses `client_addrs`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Addresses {
    /// `addresses.dns` (IP addresses only).
    pub dns: Vec<ListenAddr>,
    /// `addresses.http` (may be `unix://path`).
    pub http: Vec<ListenAddr>,
    /// `addresses.https`.
    pub https: Vec<ListenAddr>,
    /// `addresses.grpc`.
    pub grpc: Vec<ListenAddr>,
    /// `addresses.grpc_tls`.
    pub grpc_tls: Vec<ListenAddr>,
}

/// `ports.*`; `None` means disabled (`-1` or `0` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// `ports.dns` (8600).
    pub dns: Option<u16>,
    /// `ports.http` (8500).
    pub http: Option<u16>,
    /// `ports.https` (disabled).
    pub https: Option<u16>,
    /// `ports.grpc` (disabled; 8502 with `-dev`).
    pub grpc: Option<u16>,
    /// `ports.grpc_tls` (8503 on servers when not set, as Consul; only served with TLS set up).
    pub grpc_tls: Option<u16>,
    /// `ports.serf_lan` (8301; cannot be disabled).
    pub serf_lan: Option<u16>,
    /// `ports.serf_wan` (8302; disabled turns off WAN gossip).
    pub serf_wan: Option<u16>,
    /// `ports.server` (8300; cannot be disabled).
    pub server: Option<u16>,
    /// `ports.proxy_min_port` (20000).
    pub proxy_min_port: Option<u16>,
    /// `ports.proxy_max_port` (20255).
    pub proxy_max_port: Option<u16>,
    /// `ports.sidecar_min_port` (21000).
    pub sidecar_min_port: Option<u16>,
    /// `ports.sidecar_max_port` (21255).
    pub sidecar_max_port: Option<u16>,
    /// `ports.expose_min_port` (21500).
    pub expose_min_port: Option<u16>,
    /// `ports.expose_max_port` (21755).
    pub expose_max_port: Option<u16>,
}

/// `gossip_lan` / `gossip_wan` (memberlist tuning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gossip {
    /// `gossip_nodes` (3).
    pub gossip_nodes: u32,
    /// `gossip_interval` (LAN 200ms, WAN 500ms).
    pub gossip_interval: Duration,
    /// `probe_interval` (LAN 1s, WAN 5s).
    pub probe_interval: Duration,
    /// `probe_timeout` (LAN 500ms, WAN 3s).
    pub probe_timeout: Duration,
    /// `suspicion_mult` (LAN 4, WAN 6).
    pub suspicion_mult: u32,
    /// `retransmit_mult` (4).
    pub retransmit_mult: u32,
}

/// Raft timeouts after scaling by `raft_multiplier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Election timeout (1s × multiplier; 52ms × 1 with `-dev`).
    pub election_timeout: Duration,
    /// Heartbeat timeout (1s × multiplier; 35ms with `-dev`).
    pub heartbeat_timeout: Duration,
    /// Leader lease timeout (500ms × multiplier; 20ms with `-dev`).
    pub leader_lease_timeout: Duration,
}

/// `autopilot { .. }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autopilot {
    /// `cleanup_dead_servers` (true).
    pub cleanup_dead_servers: bool,
    /// `last_contact_threshold` (200ms).
    pub last_contact_threshold: Duration,
    /// `max_trailing_logs` (250).
    pub max_trailing_logs: u64,
    /// `min_quorum` (0).
    pub min_quorum: u32,
    /// `server_stabilization_time` (10s).
    pub server_stabilization_time: Duration,
}

/// `limits { .. }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `http_max_conns_per_client` (200).
    pub http_max_conns_per_client: u32,
    /// `https_handshake_timeout` (5s).
    pub https_handshake_timeout: Duration,
    /// `rpc_handshake_timeout` (5s).
    pub rpc_handshake_timeout: Duration,
    /// `rpc_client_timeout` (60s).
    pub rpc_client_timeout: Duration,
    /// `rpc_rate` requests/s; `None` = unlimited (Consul's `-1`).
    pub rpc_rate: Option<f64>,
    /// `rpc_max_burst` (1000).
    pub rpc_max_burst: u32,
    /// `rpc_max_conns_per_client` (100).
    pub rpc_max_conns_per_client: u32,
    /// `kv_max_value_size` bytes (524288).
    pub kv_max_value_size: u64,
    /// `txn_max_req_len` bytes (524288).
    pub txn_max_req_len: u64,
    /// `request_limits { .. }`.
    pub request_limits: RequestLimits,
}

/// `limits.request_limits { .. }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimits {
    /// `mode` (disabled).
    pub mode: RequestLimitsMode,
    /// `read_rate`; `None` = unlimited.
    pub read_rate: Option<f64>,
    /// `write_rate`; `None` = unlimited.
    pub write_rate: Option<f64>,
}

/// `limits.request_limits.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLimitsMode {
    /// No limiting.
    Disabled,
    /// Count but do not reject.
    Permissive,
    /// Reject over the limit.
    Enforcing,
}

/// `http_config { .. }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `block_endpoints`: path prefixes answered with 403.
    pub block_endpoints: Vec<String>,
    /// `allow_write_http_from` / `-allow-write-http-from`: the networks
    /// allowed to write (empty: every client).
    pub allow_write_http_from: Vec<tribune_types::net::Cidr>,
    /// `response_headers` added to every response.
    pub response_headers: Vec<(tribune_http_api::HeaderName, tribune_http_api::HeaderValue)>,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// `max_header_bytes` (0 = Go's default).
    pub max_header_bytes: u64,
}

/// `dns_config { .. }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `allow_stale` (true).
    pub allow_stale: bool,
    /// `max_stale` (87600h).
    pub max_stale: Duration,
    /// `node_ttl` (0).
    pub node_ttl: Duration,
    /// `service_ttl`: name or prefix-with-`*` → TTL.
    pub service_ttl: BTreeMap<String, Duration>,
    /// `only_passing`.
    pub only_passing: bool,
    /// `udp_answer_limit` (3).
    pub udp_answer_limit: u32,
    /// `a_record_limit` (0 = unlimited).
    pub a_record_limit: u32,
    /// `enable_truncate`.
    pub enable_truncate: bool,
    /// `disable_compression`.
    pub disable_compression: bool,
    /// `recursor_timeout` (2s).
    pub recursor_timeout: Duration,
    /// `recursor_strategy` (sequential).
    pub recursor_strategy: RecursorStrategy,
    /// `enable_additional_node_meta_txt` (true).
    pub enable_additional_node_meta_txt: bool,
    /// `soa { .. }`.
    pub soa: Soa,
    /// `use_cache`.
    pub use_cache: bool,
    /// `cache_max_age`.
    pub cache_max_age: Duration,
}

/// `dns_config.recursor_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecursorStrategy {
    /// Try recursors in order.
    Sequential,
    /// Try recursors in random order.
    Random,
}

/// `dns_config.soa { .. }` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soa {
    /// `refresh` (3600).
    pub refresh: u32,
    /// `retry` (600).
    pub retry: u32,
    /// `expire` (86400).
    pub expire: u32,
    /// `min_ttl` (0).
    pub min_ttl: u32,
}

/// `connect { .. }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// `enabled` (true, as in current Consul).
    pub enabled: bool,
    /// `ca_provider` (`consul` when unset).
    pub ca_provider: Option<String>,
    /// `ca_config.cluster_id` (the Go test helper sets a fixed one).
    pub cluster_id: Option<String>,
    /// `ca_config`, verbatim.
    pub ca_config: serde_json::Map<String, Value>,
    /// `enable_mesh_gateway_wan_federation`.
    pub enable_mesh_gateway_wan_federation: bool,
}

/// `acl { .. }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// `enabled` (also switched on by the legacy `acl_datacenter`).
    pub enabled: bool,
    /// `default_policy` (allow).
    pub default_policy: AclPolicy,
    /// `down_policy` (extend-cache).
    pub down_policy: AclDownPolicy,
    /// `policy_ttl` (30s).
    pub policy_ttl: Duration,
    /// `role_ttl` (30s).
    pub role_ttl: Duration,
    /// `token_ttl` (30s).
    pub token_ttl: Duration,
    /// `enable_key_list_policy`.
    pub enable_key_list_policy: bool,
    /// `enable_token_replication`.
    pub enable_token_replication: bool,
    /// `enable_token_persistence`.
    pub enable_token_persistence: bool,
    /// `tokens { .. }`.
    pub tokens: AclTokens,
}

/// `acl.tokens { .. }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclTokens {
    /// `initial_management` (legacy `master`, `acl_master_token`).
    pub initial_management: Option<String>,
    /// `agent_recovery` (legacy `agent_master`, `acl_agent_master_token`).
    pub agent_recovery: Option<String>,
    /// `agent` (legacy `acl_agent_token`).
    pub agent: Option<String>,
    /// `default` (legacy `acl_token`).
    pub default: Option<String>,
    /// `replication` (legacy `acl_replication_token`).
    pub replication: Option<String>,
    /// `config_file_service_registration`.
    pub config_file_service_registration: Option<String>,
    /// `dns` (1.17+).
    pub dns: Option<String>,
}

/// `acl.default_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclPolicy {
    /// Allow what no rule denies.
    Allow,
    /// Deny what no rule allows.
    Deny,
}

/// `acl.down_policy`: what to do when the ACL source cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclDownPolicy {
    /// Allow everything.
    Allow,
    /// Deny everything.
    Deny,
    /// Keep using cached decisions, fetching synchronously.
    ExtendCache,
    /// Keep using cached decisions, refreshing in the background.
    AsyncCache,
}

/// `tls { .. }` with each section's unset values inherited from `defaults`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// `tls.defaults`.
    pub defaults: TlsProtocol,
    /// `tls.internal_rpc` (server RPC).
    pub internal_rpc: TlsProtocol,
    /// `tls.https`.
    pub https: TlsProtocol,
    /// `tls.grpc`.
    pub grpc: TlsProtocol,
}

/// One `tls.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsProtocol {
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `ca_path`.
    pub ca_path: Option<PathBuf>,
    /// `cert_file`.
    pub cert_file: Option<PathBuf>,
    /// `key_file`.
    pub key_file: Option<PathBuf>,
    /// `tls_min_version` (`TLSv1_2`).
    pub tls_min_version: Option<String>,
    /// `tls_cipher_suites` (comma-separated).
    pub tls_cipher_suites: Option<String>,
    /// `verify_incoming`.
    pub verify_incoming: bool,
    /// `verify_outgoing`.
    pub verify_outgoing: bool,
    /// `verify_server_hostname` (internal RPC).
    pub verify_server_hostname: bool,
    /// `use_auto_cert`.
    pub use_auto_cert: bool,
}

/// `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// TRACE.
    Trace,
    /// DEBUG.
    Debug,
    /// INFO.
    Info,
    /// WARN.
    Warn,
    /// ERR / ERROR.
    Error,
    /// OFF.
    Off,
}

impl LogLevel {
    /// Parses Consul's level names, case-insensitively (`err` and `error`, `warn` and `warning`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "err" | "error" => LogLevel::Error,
            "off" => LogLevel::Off,
            _ => return None,
        })
    }

    /// The upper-case name Consul prints (`INFO`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Off => "OFF",
        }
    }
}

fn listeners(explicit: &[ListenAddr], client: &[IpAddr], port: Option<u16>) -> Vec<Listener> {
    let Some(port) = port else {
        return Vec::new();
    };
    if explicit.is_empty() {
        return client
            .iter()
            .map(|ip| Listener::Tcp(SocketAddr::new(*ip, port)))
            .collect();
    }
    explicit
        .iter()
        .map(|a| match a {
            ListenAddr::Ip(ip) => Listener::Tcp(SocketAddr::new(*ip, port)),
            ListenAddr::Unix(path) => Listener::Unix(path.clone()),
        })
        .collect()
}

impl RuntimeConfig {
    /// Where the HTTP API listens (empty when `ports.http` is disabled).
    pub fn http_listeners(&self) -> Vec<Listener> {
        listeners(&self.addresses.http, &self.client_addrs, self.ports.http)
    }

    /// Where the HTTPS API listens (empty unless `ports.https` is set).
    pub fn https_listeners(&self) -> Vec<Listener> {
        listeners(&self.addresses.https, &self.client_addrs, self.ports.https)
    }

    /// Where DNS listens, on both UDP and TCP (empty when `ports.dns` is disabled).
    pub fn dns_listeners(&self) -> Vec<SocketAddr> {
        listeners(&self.addresses.dns, &self.client_addrs, self.ports.dns)
            .into_iter()
            .filter_map(|l| match l {
                Listener::Tcp(addr) => Some(addr),
                // Validation rejects unix sockets for DNS.
                Listener::Unix(_) => None,
            })
            .collect()
    }

    /// Where plain gRPC listens (empty when `ports.grpc` is disabled).
    pub fn grpc_listeners(&self) -> Vec<Listener> {
        listeners(&self.addresses.grpc, &self.client_addrs, self.ports.grpc)
    }

    /// Where gRPC over TLS listens (empty when `ports.grpc_tls` is disabled).
    pub fn grpc_tls_listeners(&self) -> Vec<Listener> {
        listeners(
            &self.addresses.grpc_tls,
            &self.client_addrs,
            self.ports.grpc_tls,
        )
    }

    /// The server RPC listen address (`bind_addr:ports.server`).
    pub fn rpc_bind_addr(&self) -> Option<SocketAddr> {
        self.ports
            .server
            .map(|p| SocketAddr::new(self.bind_addr, p))
    }

    /// The Serf LAN listen address (`serf_lan` or `bind_addr`, `ports.serf_lan`).
    pub fn serf_lan_bind_addr(&self) -> Option<SocketAddr> {
        let ip = self.serf_lan_bind.unwrap_or(self.bind_addr);
        self.ports.serf_lan.map(|p| SocketAddr::new(ip, p))
    }

    /// The agent's TLS files lent to TLS checks, or `None` without
    /// `enable_agent_tls_for_checks`. As Consul's `OutgoingTLSConfigForCheck`,
    /// they are the internal-RPC ones (`tls.internal_rpc`, which inherits
    /// `tls.defaults` and the legacy top-level `ca_file`, `cert_file`, ...).
    pub fn check_tls_files(&self) -> Option<tribune_health::AgentTlsFiles> {
        if !self.enable_agent_tls_for_checks {
            return None;
        }
        let rpc = &self.tls.internal_rpc;
        Some(tribune_health::AgentTlsFiles {
            ca_file: rpc.ca_file.clone(),
            ca_path: rpc.ca_path.clone(),
            cert_file: rpc.cert_file.clone(),
            key_file: rpc.key_file.clone(),
        })
    }

    /// Settings this configuration sets that Tribune reads but does not act
    /// on yet, one sentence each, for the agent to warn about at start: an
    /// operator who asked for them must not believe they are in force.
    pub fn unapplied(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = self
            .connect
            .ca_provider
            .as_deref()
            .filter(|p| *p != "consul")
        {
            out.push(format!(
                "connect.ca_provider {p:?} is not supported: the built-in CA is used"
            ));
        }
        let t = &self.tls;
        // The sections that serve or dial TLS; `defaults` only feeds them.
        for (section, p) in [("internal_rpc", &t.internal_rpc), ("https", &t.https)] {
            let Some(value) = p.tls_cipher_suites.as_deref() else {
                continue;
            };
            let cbc = crate::tls_suites::unavailable(value);
            if cbc.is_empty() {
                continue;
            }
            let rest = if crate::tls_suites::tls12(Some(value)).is_some_and(|s| s.is_empty()) {
                "no TLS 1.2 suite is left, so only TLS 1.3 is offered"
            } else {
                "the others are offered"
            };
            out.push(format!(
                "tls.{section}.tls_cipher_suites: {} cannot be offered (CBC suites are not \
                 implemented); {rest}",
                cbc.join(", ")
            ));
        }
        out
    }

    /// The Serf WAN listen address; `None` when `ports.serf_wan` is disabled.
    pub fn serf_wan_bind_addr(&self) -> Option<SocketAddr> {
        let ip = self.serf_wan_bind.unwrap_or(self.bind_addr);
        self.ports.serf_wan.map(|p| SocketAddr::new(ip, p))
    }
}
