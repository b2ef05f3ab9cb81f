//! The shape of Consul's agent configuration: every key Consul defines, with its type.
//!
//! One table drives three things: type checking each source (so errors can name the file
//! and key), recognising unknown keys (reported, never fatal, because the Go test helper
//! and old deployments write keys we do not know), and merging (objects merge key by key,
//! lists append). Keys come from Consul's `agent/config/config.go` and `deprecated.go`.

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `true`/`false` (strings `"true"`/`"false"` are accepted too, as flags give them).
    Bool,
    /// A signed integer.
    Int,
    /// A non-negative integer.
    UInt,
    /// A number; `-1` style sentinels are kept.
    Float,
    /// A string.
    Str,
    /// A Go duration string (`"10s"`).
    Duration,
    /// A port: an integer up to 65535; zero or negative means disabled.
    Port,
    /// One IP address (`""` means unset).
    Ip,
    /// Space-separated IP addresses (`client_addr`).
    IpList,
    /// Space-separated IP addresses or `unix://path` sockets (`addresses.*`).
    Addrs,
    /// A list of strings; appended across sources. A lone string counts as a one-element list.
    StrList,
    /// A string → string map; merged key by key. Scalar values are stringified.
    StrMap,
    /// A string → duration map (`dns_config.service_ttl`).
    DurationMap,
    /// A nested object with its own keys.
    Object(&'static [Field]),
    /// An object kept verbatim (`connect.ca_config`); merged key by key.
    RawObject,
    /// A list of objects kept verbatim (`watches`); appended across sources.
    RawList,
    /// Service definitions (`service`/`services`), kept as JSON; appended.
    Services,
    /// Check definitions (`check`/`checks`), kept as JSON; appended.
    Checks,
    /// A key Consul defines but Tribune has no use for: accepted and reported as ignored.
    Ignored,
}

/// One key of an object.
#[derive(Debug)]
pub(crate) struct Field {
    /// The canonical snake_case name.
    pub(crate) name: &'static str,
    /// What it holds.
    pub(crate) kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// Finds `key` in `fields`: exactly, else ignoring ASCII case (Consul decodes with
/// mapstructure, which matches field names case-insensitively).
pub(crate) fn lookup<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    fields
        .iter()
        .find(|fd| fd.name == key)
        .or_else(|| fields.iter().find(|fd| fd.name.eq_ignore_ascii_case(key)))
}

use Kind::*;

static TOKENS: &[Field] = &[
    f("initial_management", Str),
    f("replication", Str),
    f("agent_recovery", Str),
    f("default", Str),
    f("agent", Str),
    f("dns", Str),
    f("config_file_service_registration", Str),
    f("managed_service_provider", Ignored),
    // Deprecated spellings, mapped onto the ones above per source.
    f("master", Str),
    f("agent_master", Str),
];

static ACL: &[Field] = &[
    f("enabled", Bool),
    f("enable_token_replication", Bool),
    f("policy_ttl", Duration),
    f("role_ttl", Duration),
    f("token_ttl", Duration),
    f("down_policy", Str),
    f("default_policy", Str),
    f("enable_key_list_policy", Bool),
    f("tokens", Object(TOKENS)),
    f("enable_token_persistence", Bool),
    f("msp_disable_bootstrap", Ignored),
    f("disabled_ttl", Ignored),
];

static ADDRESSES: &[Field] = &[
    f("dns", Addrs),
    f("http", Addrs),
    f("https", Addrs),
    f("grpc", Addrs),
    f("grpc_tls", Addrs),
];

static AUTOPILOT: &[Field] = &[
    f("cleanup_dead_servers", Bool),
    f("last_contact_threshold", Duration),
    f("max_trailing_logs", UInt),
    f("min_quorum", UInt),
    f("server_stabilization_time", Duration),
    f("disable_upgrade_migration", Ignored),
    f("redundancy_zone_tag", Ignored),
    f("upgrade_version_tag", Ignored),
];

static CONNECT: &[Field] = &[
    f("enabled", Bool),
    f("ca_provider", Str),
    f("ca_config", RawObject),
    f("enable_mesh_gateway_wan_federation", Bool),
    f("test_ca_leaf_root_change_spread", Ignored),
];

static SOA: &[Field] = &[
    f("refresh", UInt),
    f("retry", UInt),
    f("expire", UInt),
    f("min_ttl", UInt),
];

static DNS: &[Field] = &[
    f("allow_stale", Bool),
    f("a_record_limit", Int),
    f("disable_compression", Bool),
    f("enable_truncate", Bool),
    f("max_stale", Duration),
    f("node_ttl", Duration),
    f("only_passing", Bool),
    f("recursor_strategy", Str),
    f("recursor_timeout", Duration),
    f("service_ttl", DurationMap),
    f("udp_answer_limit", Int),
    f("enable_additional_node_meta_txt", Bool),
    f("soa", Object(SOA)),
    f("use_cache", Bool),
    f("cache_max_age", Duration),
    f("prefer_namespace", Ignored),
];

static GOSSIP: &[Field] = &[
    f("gossip_nodes", UInt),
    f("gossip_interval", Duration),
    f("probe_interval", Duration),
    f("probe_timeout", Duration),
    f("suspicion_mult", UInt),
    f("retransmit_mult", UInt),
];

static HTTP_CONFIG: &[Field] = &[
    f("block_endpoints", StrList),
    f("allow_write_http_from", StrList),
    f("response_headers", StrMap),
    f("use_cache", Bool),
    f("max_header_bytes", UInt),
];

static REQUEST_LIMITS: &[Field] = &[
    f("mode", Str),
    f("read_rate", Float),
    f("write_rate", Float),
];

static LIMITS: &[Field] = &[
    f("http_max_conns_per_client", UInt),
    f("https_handshake_timeout", Duration),
    f("request_limits", Object(REQUEST_LIMITS)),
    f("rpc_client_timeout", Duration),
    f("rpc_handshake_timeout", Duration),
    f("rpc_max_burst", UInt),
    f("rpc_max_conns_per_client", UInt),
    f("rpc_rate", Float),
    f("kv_max_value_size", UInt),
    f("txn_max_req_len", UInt),
];

static LOCALITY: &[Field] = &[f("region", Str), f("zone", Str)];

static PEERING: &[Field] = &[
    f("enabled", Bool),
    f("test_allow_peer_registrations", Ignored),
];

static PERFORMANCE: &[Field] = &[
    f("leave_drain_time", Duration),
    f("raft_multiplier", Int),
    f("rpc_hold_timeout", Duration),
];

static PORTS: &[Field] = &[
    f("dns", Port),
    f("http", Port),
    f("https", Port),
    f("serf_lan", Port),
    f("serf_wan", Port),
    f("server", Port),
    f("grpc", Port),
    f("grpc_tls", Port),
    f("proxy_min_port", Port),
    f("proxy_max_port", Port),
    f("sidecar_min_port", Port),
    f("sidecar_max_port", Port),
    f("expose_min_port", Port),
    f("expose_max_port", Port),
];

static TLS_PROTOCOL: &[Field] = &[
    f("ca_file", Str),
    f("ca_path", Str),
    f("cert_file", Str),
    f("key_file", Str),
    f("tls_min_version", Str),
    f("tls_cipher_suites", Str),
    f("verify_incoming", Bool),
    f("verify_outgoing", Bool),
    f("verify_server_hostname", Bool),
    f("use_auto_cert", Bool),
];

static TLS: &[Field] = &[
    f("defaults", Object(TLS_PROTOCOL)),
    f("internal_rpc", Object(TLS_PROTOCOL)),
    f("https", Object(TLS_PROTOCOL)),
    f("grpc", Object(TLS_PROTOCOL)),
];

static UI_CONFIG: &[Field] = &[
    f("enabled", Bool),
    f("dir", Str),
    f("content_path", Str),
    f("metrics_provider", Ignored),
    f("metrics_provider_files", Ignored),
    f("metrics_provider_options_json", Ignored),
    f("metrics_proxy", Ignored),
    f("dashboard_url_templates", Ignored),
];

/// Every top-level key.
pub(crate) static ROOT: &[Field] = &[
    f("acl", Object(ACL)),
    f("addresses", Object(ADDRESSES)),
    f("advertise_addr", Ip),
    f("advertise_addr_ipv4", Ip),
    f("advertise_addr_ipv6", Ip),
    f("advertise_addr_wan", Ip),
    f("advertise_addr_wan_ipv4", Ip),
    f("advertise_addr_wan_ipv6", Ip),
    f("advertise_reconnect_timeout", Ignored),
    f("alt_domain", Str),
    f("auto_config", Ignored),
    f("auto_encrypt", Ignored),
    f("auto_reload_config", Bool),
    f("autopilot", Object(AUTOPILOT)),
    f("bind_addr", Ip),
    f("bootstrap", Bool),
    f("bootstrap_expect", Int),
    f("cache", Ignored),
    f("check", Checks),
    f("check_output_max_size", UInt),
    f("check_update_interval", Duration),
    f("checks", Checks),
    f("client_addr", IpList),
    f("cloud", Ignored),
    f("config_entries", Ignored),
    f("connect", Object(CONNECT)),
    f("data_dir", Str),
    f("datacenter", Str),
    f("default_query_time", Duration),
    f("disable_anonymous_signature", Bool),
    f("disable_coordinates", Bool),
    f("disable_host_node_id", Bool),
    f("disable_http_unprintable_char_filter", Bool),
    f("disable_keyring_file", Bool),
    f("disable_remote_exec", Bool),
    f("disable_update_check", Bool),
    f("discard_check_output", Bool),
    f("discovery_max_stale", Duration),
    f("dns_config", Object(DNS)),
    f("domain", Str),
    f("enable_agent_tls_for_checks", Bool),
    f("enable_central_service_config", Bool),
    f("enable_debug", Bool),
    f("enable_local_script_checks", Bool),
    f("enable_script_checks", Bool),
    f("enable_syslog", Bool),
    f("encrypt", Str),
    f("encrypt_verify_incoming", Bool),
    f("encrypt_verify_outgoing", Bool),
    f("gossip_lan", Object(GOSSIP)),
    f("gossip_wan", Object(GOSSIP)),
    f("http_config", Object(HTTP_CONFIG)),
    f("leave_on_terminate", Bool),
    f("license_path", Ignored),
    f("limits", Object(LIMITS)),
    f("locality", Object(LOCALITY)),
    f("log_file", Str),
    f("log_json", Bool),
    f("log_level", Str),
    f("log_rotate_bytes", UInt),
    f("log_rotate_duration", Duration),
    f("log_rotate_max_files", Int),
    f("log_sublevels", Ignored),
    f("max_query_time", Duration),
    f("node_id", Str),
    f("node_meta", StrMap),
    f("node_name", Str),
    f("partition", Str),
    f("peering", Object(PEERING)),
    f("performance", Object(PERFORMANCE)),
    f("pid_file", Str),
    f("ports", Object(PORTS)),
    f("primary_datacenter", Str),
    f("primary_gateways", StrList),
    f("primary_gateways_interval", Duration),
    f("protocol", Int),
    f("raft_logstore", Ignored),
    f("raft_protocol", Int),
    f("raft_snapshot_interval", Duration),
    f("raft_snapshot_threshold", UInt),
    f("raft_trailing_logs", UInt),
    f("read_replica", Bool),
    f("reconnect_timeout", Duration),
    f("reconnect_timeout_wan", Duration),
    f("recursors", StrList),
    f("rejoin_after_leave", Bool),
    f("reporting", Ignored),
    f("retry_interval", Duration),
    f("retry_interval_wan", Duration),
    f("retry_join", StrList),
    f("retry_join_wan", StrList),
    f("retry_max", UInt),
    f("retry_max_wan", UInt),
    f("rpc", Ignored),
    f("segment", Str),
    f("segments", Ignored),
    f("serf_lan", Ip),
    f("serf_lan_allowed_cidrs", StrList),
    f("serf_wan", Ip),
    f("serf_wan_allowed_cidrs", StrList),
    f("server", Bool),
    f("server_name", Str),
    f("server_rejoin_age_max", Duration),
    f("service", Services),
    f("services", Services),
    f("session_ttl_min", Duration),
    f("skip_leave_on_interrupt", Bool),
    f("snapshot_agent", Ignored),
    f("syslog_facility", Str),
    f("tagged_addresses", StrMap),
    f("telemetry", Ignored),
    f("tls", Object(TLS)),
    f("translate_wan_addrs", Bool),
    f("ui_config", Object(UI_CONFIG)),
    f("unix_sockets", Ignored),
    f("use_streaming_backend", Bool),
    f("watches", RawList),
    f("xds", Ignored),
    // Values Consul sets itself (non-user sources); the Go test helper writes `version`.
    f("ae_interval", Ignored),
    f("build_date", Ignored),
    f("check_deregister_interval_min", Ignored),
    f("check_reap_interval", Ignored),
    f("consul", Ignored),
    f("revision", Ignored),
    f("segment_limit", Ignored),
    f("segment_name_limit", Ignored),
    f("sync_coordinate_interval_min", Duration),
    f("sync_coordinate_rate_target", Float),
    f("version", Ignored),
    f("version_metadata", Ignored),
    f("version_prerelease", Ignored),
    // Enterprise-only.
    f("audit", Ignored),
    f("license_poll_base_time", Ignored),
    f("license_poll_max_time", Ignored),
    f("license_update_base_time", Ignored),
    f("license_update_max_time", Ignored),
    // Deprecated keys; mapped onto their replacements per source (see `normalize`).
    f("acl_agent_master_token", Str),
    f("acl_agent_token", Str),
    f("acl_datacenter", Str),
    f("acl_default_policy", Str),
    f("acl_down_policy", Str),
    f("acl_enable_key_list_policy", Bool),
    f("acl_enforce_version_8", Ignored),
    f("acl_master_token", Str),
    f("acl_replication_token", Str),
    f("acl_token", Str),
    f("acl_ttl", Duration),
    f("ca_file", Str),
    f("ca_path", Str),
    f("cert_file", Str),
    f("enable_acl_replication", Bool),
    f("key_file", Str),
    f("non_voting_server", Bool),
    f("raft_boltdb", Ignored),
    f("start_join", StrList),
    f("start_join_wan", StrList),
    f("tls_cipher_suites", Str),
    f("tls_min_version", Str),
    f("tls_prefer_server_cipher_suites", Ignored),
    f("ui", Bool),
    f("ui_content_path", Str),
    f("ui_dir", Str),
    f("verify_incoming", Bool),
    f("verify_incoming_https", Bool),
    f("verify_incoming_rpc", Bool),
    f("verify_outgoing", Bool),
    f("verify_server_hostname", Bool),
];
