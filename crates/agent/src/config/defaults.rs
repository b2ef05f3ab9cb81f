//! Consul's built-in defaults (`agent/config/default.go`), as the first config source.
//!
//! They are ordinary sources, merged like a file, so the same code path checks and merges
//! them. Values Consul hard-codes elsewhere (memberlist and Raft library defaults, the
//! non-user "consul" source) are spelled out here with their origin.

use serde_json::{json, Value};

use super::normalize::Object;

fn object(value: Value) -> Object {
    match value {
        Value::Object(map) => map,
        // The literals below are objects; this arm only satisfies the type.
        _ => Object::new(),
    }
}

/// `DefaultSource()`: applied to every agent.
pub(crate) fn defaults() -> Object {
    // Split into several literals: one big `json!` exceeds the macro recursion limit.
    let mut out = object(json!({
        "acl": {
            "token_ttl": "30s",
            "policy_ttl": "30s",
            // Not in default.go but consul.DefaultConfig's ACLRoleTTL.
            "role_ttl": "30s",
            "default_policy": "allow",
            "down_policy": "extend-cache"
        },
        "bind_addr": "0.0.0.0",
        "bootstrap": false,
        "bootstrap_expect": 0,
        "check_output_max_size": 4096,
        "check_update_interval": "5m",
        "client_addr": "127.0.0.1",
        "datacenter": "dc1",
        "default_query_time": "300s",
        "disable_coordinates": false,
        "disable_host_node_id": true,
        "disable_remote_exec": true,
        "domain": "consul.",
        "enable_central_service_config": true,
        "encrypt_verify_incoming": true,
        "encrypt_verify_outgoing": true,
        "log_level": "INFO",
        "max_query_time": "600s",
        "primary_gateways_interval": "30s",
        "protocol": 2,
        "retry_interval": "30s",
        "retry_interval_wan": "30s",
        "server": false,
        "server_rejoin_age_max": "168h",
        "syslog_facility": "LOCAL0"
    }));
    out.extend(object(json!({
        // Serf's reconnect timeout and Consul's session TTL floor (consul.DefaultConfig).
        "reconnect_timeout": "72h",
        "reconnect_timeout_wan": "72h",
        "session_ttl_min": "10s",
        "tls": { "defaults": { "tls_min_version": "TLSv1_2" } },
        "autopilot": {
            "cleanup_dead_servers": true,
            "last_contact_threshold": "200ms",
            "max_trailing_logs": 250,
            "server_stabilization_time": "10s"
        },
        // memberlist.DefaultLANConfig / DefaultWANConfig (WAN takes LAN's node and
        // retransmit counts, as default.go does).
        "gossip_lan": {
            "gossip_interval": "200ms",
            "gossip_nodes": 3,
            "retransmit_mult": 4,
            "probe_interval": "1s",
            "probe_timeout": "500ms",
            "suspicion_mult": 4
        },
        "gossip_wan": {
            "gossip_interval": "500ms",
            "gossip_nodes": 3,
            "retransmit_mult": 4,
            "probe_interval": "5s",
            "probe_timeout": "3s",
            "suspicion_mult": 6
        },
        "dns_config": {
            "allow_stale": true,
            "a_record_limit": 0,
            "udp_answer_limit": 3,
            "max_stale": "87600h",
            "recursor_timeout": "2s"
        }
    })));
    out.extend(object(json!({
        "limits": {
            "http_max_conns_per_client": 200,
            "https_handshake_timeout": "5s",
            "request_limits": { "mode": "disabled", "read_rate": -1, "write_rate": -1 },
            "rpc_handshake_timeout": "5s",
            "rpc_client_timeout": "60s",
            "rpc_rate": -1,
            "rpc_max_burst": 1000,
            "rpc_max_conns_per_client": 100,
            "kv_max_value_size": 524288,
            "txn_max_req_len": 524288
        },
        "performance": {
            "leave_drain_time": "5s",
            "raft_multiplier": 5,
            "rpc_hold_timeout": "7s"
        },
        "ports": {
            "dns": 8600,
            "http": 8500,
            "https": -1,
            "grpc": -1,
            "serf_lan": 8301,
            "serf_wan": 8302,
            "server": 8300,
            "proxy_min_port": 20000,
            "proxy_max_port": 20255,
            "sidecar_min_port": 21000,
            "sidecar_max_port": 21255,
            "expose_min_port": 21500,
            "expose_max_port": 21755
        },
        "raft_protocol": 3,
        "raft_snapshot_threshold": 16384,
        "raft_snapshot_interval": "30s",
        "raft_trailing_logs": 10240,
        "connect": { "enabled": true },
        "peering": { "enabled": true }
    })));
    out
}

/// `DevSource()`: applied after the defaults with `-dev`.
pub(crate) fn dev() -> Object {
    object(json!({
        "bind_addr": "127.0.0.1",
        "disable_anonymous_signature": true,
        "disable_keyring_file": true,
        "enable_debug": true,
        "ui_config": { "enabled": true },
        "log_level": "DEBUG",
        "server": true,
        "gossip_lan": {
            "gossip_interval": "100ms",
            "probe_interval": "100ms",
            "probe_timeout": "100ms",
            "suspicion_mult": 3
        },
        "gossip_wan": {
            "gossip_interval": "100ms",
            "probe_interval": "100ms",
            "probe_timeout": "100ms",
            "suspicion_mult": 3
        },
        "connect": { "enabled": true },
        "peering": { "enabled": true },
        "performance": { "raft_multiplier": 1 },
        "ports": { "grpc": 8502 }
    }))
}
