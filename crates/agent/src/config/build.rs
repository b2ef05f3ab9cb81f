//! From the merged, checked JSON to a [`RuntimeConfig`], then Consul's semantic validation
//! (`builder.build` and `builder.validate`).
//!
//! Every value was type-checked when its source was normalized, and the defaults source
//! supplies every key read here with a default, so the readers below fall back to the
//! defaults only to stay total (no panics), never to paper over bad input.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tribune_types::parse_go_duration;

use super::error::{ConfigError, EncryptKeyProblem, Invalid, NodeMetaProblem, Notes, Warning};
use super::normalize::{get_path, parse_ip, Object};
use super::runtime::*;

/// Typed reads from the merged tree.
struct Tree<'a>(&'a Object);

impl Tree<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        get_path(self.0, path)
    }

    fn bool(&self, path: &str, default: bool) -> bool {
        self.get(path).and_then(Value::as_bool).unwrap_or(default)
    }

    fn opt_bool(&self, path: &str) -> Option<bool> {
        self.get(path).and_then(Value::as_bool)
    }

    fn int(&self, path: &str, default: i64) -> i64 {
        self.get(path).and_then(Value::as_i64).unwrap_or(default)
    }

    fn u64(&self, path: &str, default: u64) -> u64 {
        self.get(path).and_then(Value::as_u64).unwrap_or(default)
    }

    fn u32(&self, path: &str, default: u32) -> u32 {
        self.get(path)
            .and_then(Value::as_u64)
            .map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn float(&self, path: &str, default: f64) -> f64 {
        self.get(path).and_then(Value::as_f64).unwrap_or(default)
    }

    fn string(&self, path: &str) -> Option<String> {
        self.get(path).and_then(Value::as_str).map(str::to_owned)
    }

    /// A string, with empty treated as unset (Go's `stringVal` of "" is "not configured").
    fn nonempty(&self, path: &str) -> Option<String> {
        self.string(path).filter(|s| !s.trim().is_empty())
    }

    fn path(&self, path: &str) -> Option<PathBuf> {
        self.nonempty(path).map(PathBuf::from)
    }

    fn duration(&self, path: &str, default: Duration) -> Duration {
        self.get(path)
            .and_then(Value::as_str)
            .and_then(|s| parse_go_duration(s).ok())
            .unwrap_or(default)
    }

    fn port(&self, path: &str) -> Option<u16> {
        // Consul: zero or negative means disabled.
        self.get(path)
            .and_then(Value::as_i64)
            .filter(|p| *p > 0)
            .and_then(|p| u16::try_from(p).ok())
    }

    fn ip(&self, path: &str) -> Option<IpAddr> {
        self.get(path).and_then(Value::as_str).and_then(parse_ip)
    }

    fn list(&self, path: &str) -> Vec<String> {
        match self.get(path) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn raw_list(&self, path: &str) -> Vec<Value> {
        match self.get(path) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        }
    }

    fn map(&self, path: &str) -> BTreeMap<String, String> {
        match self.get(path) {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn addrs(&self, path: &str) -> Vec<ListenAddr> {
        let Some(s) = self.get(path).and_then(Value::as_str) else {
            return Vec::new();
        };
        s.split_whitespace()
            .filter_map(|part| match part.strip_prefix("unix://") {
                Some(p) => Some(ListenAddr::Unix(PathBuf::from(p))),
                None => parse_ip(part).map(ListenAddr::Ip),
            })
            .collect()
    }

    fn gossip(&self, prefix: &str, default: Gossip) -> Gossip {
        let p = |k: &str| format!("{prefix}.{k}");
        Gossip {
            gossip_nodes: self.u32(&p("gossip_nodes"), default.gossip_nodes),
            gossip_interval: self.duration(&p("gossip_interval"), default.gossip_interval),
            probe_interval: self.duration(&p("probe_interval"), default.probe_interval),
            probe_timeout: self.duration(&p("probe_timeout"), default.probe_timeout),
            suspicion_mult: self.u32(&p("suspicion_mult"), default.suspicion_mult),
            retransmit_mult: self.u32(&p("retransmit_mult"), default.retransmit_mult),
        }
    }

    fn tls_section(&self, name: &str, inherit: Option<&TlsProtocol>) -> TlsProtocol {
        let p = |k: &str| format!("tls.{name}.{k}");
        let base = inherit.cloned().unwrap_or_default();
        let min_version = self
            .nonempty(&p("tls_min_version"))
            .or(base.tls_min_version);
        TlsProtocol {
            ca_file: self.path(&p("ca_file")).or(base.ca_file),
            ca_path: self.path(&p("ca_path")).or(base.ca_path),
            cert_file: self.path(&p("cert_file")).or(base.cert_file),
            key_file: self.path(&p("key_file")).or(base.key_file),
            tls_min_version: min_version.clone(),
            // Inherited only where TLS 1.2 is allowed (Consul's builder).
            tls_cipher_suites: self.nonempty(&p("tls_cipher_suites")).or_else(|| {
                base.tls_cipher_suites
                    .filter(|_| min_version.as_deref() != Some("TLSv1_3"))
            }),
            verify_incoming: self
                .opt_bool(&p("verify_incoming"))
                .unwrap_or(base.verify_incoming),
            verify_outgoing: self
                .opt_bool(&p("verify_outgoing"))
                .unwrap_or(base.verify_outgoing),
            verify_server_hostname: self
                .opt_bool(&p("verify_server_hostname"))
                .unwrap_or(base.verify_server_hostname),
            use_auto_cert: self
                .opt_bool(&p("use_auto_cert"))
                .unwrap_or(base.use_auto_cert),
        }
    }
}

/// A rate where negative means unlimited (Go's `rate.Inf`).
fn rate(x: f64) -> Option<f64> {
    (x >= 0.0).then_some(x)
}

/// The host name, as `os.Hostname` would give it.
fn hostname() -> Result<String, ConfigError> {
    let mut last_err = None;
    for file in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        match std::fs::read_to_string(file) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
            Ok(_) => {}
            Err(e) => last_err = Some(e),
        }
    }
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.trim().is_empty() {
            return Ok(h.trim().to_owned());
        }
    }
    Err(ConfigError::Hostname {
        source: last_err.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)),
    })
}

/// Ensures a DNS domain ends with a dot, as Consul's DNS server expects.
fn fqdn(domain: &str) -> String {
    let d = domain.trim();
    if d.ends_with('.') {
        d.to_owned()
    } else {
        format!("{d}.")
    }
}

/// Consul's `UIPathBuilder`: leading and trailing slash.
fn ui_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

fn basic_name(field: &'static str, value: &str, allow_empty: bool) -> Result<(), Invalid> {
    if value.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(Invalid::Empty { field })
        };
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::BasicName {
            field,
            value: value.to_owned(),
        })
    }
}

/// Consul's `structs.ValidateNodeMetadata(meta, false)`.
fn validate_node_meta(meta: &BTreeMap<String, String>) -> Result<(), NodeMetaProblem> {
    if meta.len() > 64 {
        return Err(NodeMetaProblem::TooManyPairs);
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err(NodeMetaProblem::BlankKey);
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NodeMetaProblem::KeyCharacters { key: key.clone() });
        }
        if key.chars().count() > 128 {
            return Err(NodeMetaProblem::KeyTooLong { key: key.clone() });
        }
        if key.starts_with("consul-") {
            return Err(NodeMetaProblem::ReservedPrefix { key: key.clone() });
        }
        if value.chars().count() > 512 {
            return Err(NodeMetaProblem::ValueTooLong { key: key.clone() });
        }
    }
    Ok(())
}

fn validate_encrypt(key: &str) -> Result<(), EncryptKeyProblem> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| EncryptKeyProblem::Base64)?;
    match bytes.len() {
        16 | 24 | 32 => Ok(()),
        len => Err(EncryptKeyProblem::Length { len }),
    }
}

fn is_unspecified(ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| ip.is_unspecified())
}

/// Builds and validates the runtime configuration from the merged sources.
pub(crate) fn build(
    merged: &Object,
    dev: bool,
    config_files: Vec<PathBuf>,
    mut notes: Notes,
) -> Result<RuntimeConfig, ConfigError> {
    let t = Tree(merged);

    // ---- mode
    let server = t.bool("server", false);
    let bootstrap_expect_raw = t.int("bootstrap_expect", 0);
    // Consul's dev server bootstraps itself whatever `bootstrap` says.
    let mut bootstrap = t.bool("bootstrap", false) || dev;
    if t.int("raft_protocol", 3) != 3 {
        return Err(Invalid::RaftProtocol {
            value: t.int("raft_protocol", 3),
        }
        .into());
    }

    // ---- identity
    let datacenter = t.string("datacenter").unwrap_or_default().to_lowercase();
    basic_name("datacenter", &datacenter, false)?;
    let primary_datacenter = match t.nonempty("primary_datacenter") {
        Some(p) => p.to_lowercase(),
        None => datacenter.clone(),
    };
    basic_name("primary_datacenter", &primary_datacenter, true)?;
    let node_name = match t.nonempty("node_name") {
        Some(n) => n.trim().to_owned(),
        None => hostname()?,
    };
    if node_name.is_empty() {
        return Err(Invalid::Empty { field: "node_name" }.into());
    }
    if !node_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        notes.warnings.push(Warning::NodeNameNotDns {
            name: node_name.clone(),
        });
    }
    let node_id = match t.nonempty("node_id") {
        Some(id) => {
            let id = id.trim().to_lowercase();
            // hashicorp/go-uuid's format: 36 characters with dashes.
            if id.len() != 36 || uuid::Uuid::parse_str(&id).is_err() {
                return Err(Invalid::NodeId { value: id }.into());
            }
            Some(id)
        }
        None => None,
    };
    let node_meta = t.map("node_meta");
    validate_node_meta(&node_meta).map_err(|problem| Invalid::NodeMeta { problem })?;
    let locality = match (t.nonempty("locality.region"), t.nonempty("locality.zone")) {
        (None, None) => None,
        (region, zone) => Some(Locality { region, zone }),
    };

    // ---- storage
    let data_dir = t.path("data_dir");
    match &data_dir {
        None if !dev => return Err(Invalid::DataDirEmpty.into()),
        Some(dir) if !dev => match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(Invalid::DataDirNotDirectory { path: dir.clone() }.into())
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Invalid::DataDirStat {
                    path: dir.clone(),
                    source: e,
                }
                .into())
            }
            _ => {}
        },
        _ => {}
    }

    // ---- ports
    let ports = Ports {
        dns: t.port("ports.dns"),
        http: t.port("ports.http"),
        https: t.port("ports.https"),
        grpc: t.port("ports.grpc"),
        // Consul ≥1.14 gives servers a gRPC TLS port unless one was configured.
        grpc_tls: if t.get("ports.grpc_tls").is_none() && server {
            Some(8503)
        } else {
            t.port("ports.grpc_tls")
        },
        serf_lan: t.port("ports.serf_lan"),
        serf_wan: t.port("ports.serf_wan"),
        server: t.port("ports.server"),
        proxy_min_port: t.port("ports.proxy_min_port"),
        proxy_max_port: t.port("ports.proxy_max_port"),
        sidecar_min_port: t.port("ports.sidecar_min_port"),
        sidecar_max_port: t.port("ports.sidecar_max_port"),
        expose_min_port: t.port("ports.expose_min_port"),
        expose_max_port: t.port("ports.expose_max_port"),
    };
    if ports.server.is_none() {
        return Err(Invalid::PortRequired {
            what: "server-port",
        }
        .into());
    }
    if ports.serf_lan.is_none() {
        return Err(Invalid::PortRequired {
            what: "serf-lan-port",
        }
        .into());
    }
    for (prefix, min, max) in [
        ("proxy", ports.proxy_min_port, ports.proxy_max_port),
        ("sidecar", ports.sidecar_min_port, ports.sidecar_max_port),
        ("expose", ports.expose_min_port, ports.expose_max_port),
    ] {
        // Disabled counts as -1, as in Consul's comparison.
        let as_int = |p: Option<u16>| p.map_or(-1, i32::from);
        if as_int(max) < as_int(min) {
            return Err(Invalid::PortRange { prefix }.into());
        }
    }

    // ---- addresses
    let bind_addr = t
        .ip("bind_addr")
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let explicit_advertise = t.ip("advertise_addr");
    let explicit_advertise_wan = t.ip("advertise_addr_wan");
    if is_unspecified(explicit_advertise) {
        return Err(Invalid::AdvertiseAny { which: "" }.into());
    }
    if is_unspecified(explicit_advertise_wan) {
        return Err(Invalid::AdvertiseAny { which: "WAN " }.into());
    }
    let advertise_addr =
        explicit_advertise.or_else(|| (!bind_addr.is_unspecified()).then_some(bind_addr));
    let advertise_addr_wan = explicit_advertise_wan.or(advertise_addr);
    let client_addrs: Vec<IpAddr> = t
        .string("client_addr")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(parse_ip)
        .collect();
    if client_addrs.is_empty() {
        notes.warnings.push(Warning::ClientAddrEmpty);
    }
    let addresses = Addresses {
        dns: t.addrs("addresses.dns"),
        http: t.addrs("addresses.http"),
        https: t.addrs("addresses.https"),
        grpc: t.addrs("addresses.grpc"),
        grpc_tls: t.addrs("addresses.grpc_tls"),
    };
    if addresses
        .dns
        .iter()
        .any(|a| matches!(a, ListenAddr::Unix(_)))
    {
        return Err(Invalid::DnsUnixSocket.into());
    }

    // ---- DNS
    let mut recursors: Vec<String> = Vec::new();
    for r in t
        .list("recursors")
        .into_iter()
        .flat_map(|r| r.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    {
        if r.starts_with("unix://") {
            return Err(Invalid::RecursorUnixSocket { value: r }.into());
        }
        // A recursor is `ip` or `ip:port`.
        let ip = parse_ip(&r).or_else(|| r.parse::<SocketAddr>().ok().map(|a| a.ip()));
        if is_unspecified(ip) {
            return Err(Invalid::RecursorAny.into());
        }
        if !recursors.contains(&r) {
            recursors.push(r);
        }
    }
    let udp_answer_limit = t.int("dns_config.udp_answer_limit", 3);
    if udp_answer_limit < 0 {
        return Err(Invalid::Negative {
            field: "dns_config.udp_answer_limit",
            value: udp_answer_limit,
        }
        .into());
    }
    let a_record_limit = t.int("dns_config.a_record_limit", 0);
    if a_record_limit < 0 {
        return Err(Invalid::Negative {
            field: "dns_config.a_record_limit",
            value: a_record_limit,
        }
        .into());
    }
    let recursor_strategy = match t.nonempty("dns_config.recursor_strategy").as_deref() {
        None | Some("sequential") => RecursorStrategy::Sequential,
        Some("random") => RecursorStrategy::Random,
        Some(other) => {
            return Err(Invalid::RecursorStrategy {
                value: other.to_owned(),
            }
            .into())
        }
    };
    let service_ttl = match t.get("dns_config.service_ttl") {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| {
                v.as_str()
                    .and_then(|s| parse_go_duration(s).ok())
                    .map(|d| (k.clone(), d))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let dns_config = DnsConfig {
        allow_stale: t.bool("dns_config.allow_stale", true),
        max_stale: t.duration("dns_config.max_stale", Duration::from_secs(87600 * 3600)),
        node_ttl: t.duration("dns_config.node_ttl", Duration::ZERO),
        service_ttl,
        only_passing: t.bool("dns_config.only_passing", false),
        udp_answer_limit: u32::try_from(udp_answer_limit).unwrap_or(u32::MAX),
        a_record_limit: u32::try_from(a_record_limit).unwrap_or(u32::MAX),
        enable_truncate: t.bool("dns_config.enable_truncate", false),
        disable_compression: t.bool("dns_config.disable_compression", false),
        recursor_timeout: t.duration("dns_config.recursor_timeout", Duration::from_secs(2)),
        recursor_strategy,
        enable_additional_node_meta_txt: t.bool("dns_config.enable_additional_node_meta_txt", true),
        soa: Soa {
            refresh: t.u32("dns_config.soa.refresh", 3600),
            retry: t.u32("dns_config.soa.retry", 600),
            expire: t.u32("dns_config.soa.expire", 86400),
            min_ttl: t.u32("dns_config.soa.min_ttl", 0),
        },
        use_cache: t.bool("dns_config.use_cache", false),
        cache_max_age: t.duration("dns_config.cache_max_age", Duration::ZERO),
    };

    // ---- bootstrap checks, in Consul's order
    if bootstrap && !server {
        return Err(Invalid::BootstrapRequiresServer.into());
    }
    if bootstrap_expect_raw < 0 {
        return Err(Invalid::BootstrapExpectNegative {
            value: bootstrap_expect_raw,
        }
        .into());
    }
    if bootstrap_expect_raw > 0 && !server {
        return Err(Invalid::BootstrapExpectRequiresServer.into());
    }
    if bootstrap_expect_raw > 0 && dev {
        return Err(Invalid::BootstrapExpectInDevMode.into());
    }
    if bootstrap_expect_raw > 0 && bootstrap {
        return Err(Invalid::BootstrapModesExclusive.into());
    }
    let mut bootstrap_expect = u32::try_from(bootstrap_expect_raw).unwrap_or(u32::MAX);
    if bootstrap_expect == 1 {
        bootstrap = true;
        bootstrap_expect = 0;
        notes.warnings.push(Warning::BootstrapExpectOne);
    }
    if server && !dev && bootstrap_expect == 2 {
        notes.warnings.push(Warning::BootstrapExpectTwo);
    } else if server && bootstrap_expect > 2 && bootstrap_expect % 2 == 0 {
        notes.warnings.push(Warning::BootstrapExpectEven);
    }
    if server && bootstrap && !dev && t.int("bootstrap_expect", 0) == 0 {
        notes.warnings.push(Warning::BootstrapMode);
    }

    // ---- raft
    let raft_multiplier = t.int("performance.raft_multiplier", 5);
    if !(1..=10).contains(&raft_multiplier) {
        return Err(Invalid::RaftMultiplier {
            value: raft_multiplier,
        }
        .into());
    }
    let multiplier = u32::try_from(raft_multiplier).unwrap_or(1);
    // hashicorp/raft defaults, or DevConsulSource's timings.
    let (election, heartbeat, lease) = if dev {
        (
            Duration::from_millis(52),
            Duration::from_millis(35),
            Duration::from_millis(20),
        )
    } else {
        (
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
    };
    let raft = RaftTiming {
        election_timeout: election * multiplier,
        heartbeat_timeout: heartbeat * multiplier,
        leader_lease_timeout: lease * multiplier,
    };

    // ---- ACL
    let default_policy = match t.string("acl.default_policy").unwrap_or_default().as_str() {
        "allow" => AclPolicy::Allow,
        "deny" => AclPolicy::Deny,
        other => {
            return Err(Invalid::AclDefaultPolicy {
                value: other.to_owned(),
            }
            .into())
        }
    };
    let down_policy = match t.string("acl.down_policy").unwrap_or_default().as_str() {
        "allow" => AclDownPolicy::Allow,
        "deny" => AclDownPolicy::Deny,
        "extend-cache" => AclDownPolicy::ExtendCache,
        "async-cache" => AclDownPolicy::AsyncCache,
        other => {
            return Err(Invalid::AclDownPolicy {
                value: other.to_owned(),
            }
            .into())
        }
    };
    let acl = Acl {
        enabled: t.bool("acl.enabled", false),
        default_policy,
        down_policy,
        policy_ttl: t.duration("acl.policy_ttl", Duration::from_secs(30)),
        role_ttl: t.duration("acl.role_ttl", Duration::from_secs(30)),
        token_ttl: t.duration("acl.token_ttl", Duration::from_secs(30)),
        enable_key_list_policy: t.bool("acl.enable_key_list_policy", false),
        enable_token_replication: t.bool("acl.enable_token_replication", false),
        enable_token_persistence: t.bool("acl.enable_token_persistence", false),
        tokens: AclTokens {
            initial_management: t.nonempty("acl.tokens.initial_management"),
            agent_recovery: t.nonempty("acl.tokens.agent_recovery"),
            agent: t.nonempty("acl.tokens.agent"),
            default: t.nonempty("acl.tokens.default"),
            replication: t.nonempty("acl.tokens.replication"),
            config_file_service_registration: t
                .nonempty("acl.tokens.config_file_service_registration"),
            dns: t.nonempty("acl.tokens.dns"),
        },
    };

    // ---- TLS: each section inherits unset values from `defaults`.
    let tls_defaults = t.tls_section("defaults", None);
    let mut internal_rpc = t.tls_section("internal_rpc", Some(&tls_defaults));
    // As Consul's builder: `verify_server_hostname` alone is documented to
    // force TLS on outgoing RPC (CVE-2018-19653), so it implies
    // `verify_outgoing`.
    internal_rpc.verify_outgoing |= internal_rpc.verify_server_hostname;
    let tls = Tls {
        internal_rpc,
        https: t.tls_section("https", Some(&tls_defaults)),
        grpc: t.tls_section("grpc", Some(&tls_defaults)),
        defaults: tls_defaults,
    };
    for (section, p) in [
        ("defaults", &tls.defaults),
        ("internal_rpc", &tls.internal_rpc),
        ("https", &tls.https),
        ("grpc", &tls.grpc),
    ] {
        if let Some(suites) = &p.tls_cipher_suites {
            let tls13 = p.tls_min_version.as_deref() == Some("TLSv1_3");
            crate::tls_suites::validate(suites, tls13)
                .map_err(|reason| Invalid::TlsCipherSuites { section, reason })?;
        }
    }

    // ---- UI
    let ui = t.bool("ui_config.enabled", false);
    let ui_dir = t.path("ui_config.dir");
    if !dev && ui && ui_dir.is_some() {
        return Err(Invalid::UiAndUiDir.into());
    }
    let ui_content_path = ui_path(
        &t.string("ui_config.content_path")
            .unwrap_or_else(|| "/ui/".to_owned()),
    );
    if !ui_content_path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_' || b == b'-')
    {
        return Err(Invalid::UiContentPath {
            value: ui_content_path,
        }
        .into());
    }
    {
        let inner = ui_content_path.trim_matches('/');
        if inner.len() > 1
            && inner.starts_with('v')
            && inner[1..].bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Invalid::UiContentPathVersion {
                value: ui_content_path,
            }
            .into());
        }
    }

    // ---- misc validation
    let encrypt = t.nonempty("encrypt");
    if let Some(key) = &encrypt {
        validate_encrypt(key).map_err(|problem| Invalid::EncryptKey { problem })?;
    }
    let log_level_text = t.string("log_level").unwrap_or_else(|| "INFO".to_owned());
    let log_level = LogLevel::parse(&log_level_text).ok_or(Invalid::LogLevel {
        value: log_level_text,
    })?;
    let request_limits_mode = match t
        .string("limits.request_limits.mode")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "disabled" => RequestLimitsMode::Disabled,
        "permissive" => RequestLimitsMode::Permissive,
        "enforcing" => RequestLimitsMode::Enforcing,
        other => {
            return Err(Invalid::RequestLimitsMode {
                value: other.to_owned(),
            }
            .into())
        }
    };
    let primary_gateways = t.list("primary_gateways");
    if !primary_gateways.is_empty() && !server {
        return Err(Invalid::PrimaryGatewaysRequireServer.into());
    }
    let enable_script_checks = t.bool("enable_script_checks", false);
    let check_output_max_size = t.u64("check_output_max_size", 4096);
    if check_output_max_size < 1 {
        return Err(Invalid::CheckOutputMaxSize.into());
    }

    let ca_config = match t.get("connect.ca_config") {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let cluster_id = ca_config
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("cluster_id") || k.eq_ignore_ascii_case("clusterid"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);

    let dev_or = |dev_value: Duration, normal: Duration| if dev { dev_value } else { normal };

    let config = RuntimeConfig {
        dev,
        server,
        bootstrap,
        bootstrap_expect,
        read_replica: t.bool("read_replica", false),

        node_name,
        node_id,
        node_meta,
        datacenter,
        primary_datacenter,
        segment: t.nonempty("segment"),
        partition: t.nonempty("partition"),
        locality,

        data_dir,
        pid_file: t.path("pid_file"),

        bind_addr,
        serf_lan_bind: t.ip("serf_lan"),
        serf_wan_bind: t.ip("serf_wan"),
        advertise_addr,
        advertise_addr_wan,
        client_addrs,
        addresses,
        ports,
        tagged_addresses: t.map("tagged_addresses"),
        translate_wan_addrs: t.bool("translate_wan_addrs", false),

        retry_join: t.list("retry_join"),
        start_join: t.list("start_join"),
        retry_join_wan: t.list("retry_join_wan"),
        start_join_wan: t.list("start_join_wan"),
        retry_interval: t.duration("retry_interval", Duration::from_secs(30)),
        retry_interval_wan: t.duration("retry_interval_wan", Duration::from_secs(30)),
        retry_max: t.u32("retry_max", 0),
        retry_max_wan: t.u32("retry_max_wan", 0),
        rejoin_after_leave: t.bool("rejoin_after_leave", false),
        primary_gateways,
        leave_on_terminate: t.opt_bool("leave_on_terminate").unwrap_or(!server),
        skip_leave_on_interrupt: t.opt_bool("skip_leave_on_interrupt").unwrap_or(server),
        reconnect_timeout: t.duration("reconnect_timeout", Duration::from_secs(72 * 3600)),
        reconnect_timeout_wan: t.duration("reconnect_timeout_wan", Duration::from_secs(72 * 3600)),

        encrypt,
        encrypt_verify_incoming: t.bool("encrypt_verify_incoming", true),
        encrypt_verify_outgoing: t.bool("encrypt_verify_outgoing", true),
        disable_keyring_file: t.bool("disable_keyring_file", false),
        gossip_lan: t.gossip(
            "gossip_lan",
            Gossip {
                gossip_nodes: 3,
                gossip_interval: Duration::from_millis(200),
                probe_interval: Duration::from_secs(1),
                probe_timeout: Duration::from_millis(500),
                suspicion_mult: 4,
                retransmit_mult: 4,
            },
        ),
        gossip_wan: t.gossip(
            "gossip_wan",
            Gossip {
                gossip_nodes: 3,
                gossip_interval: Duration::from_millis(500),
                probe_interval: Duration::from_secs(5),
                probe_timeout: Duration::from_secs(3),
                suspicion_mult: 6,
                retransmit_mult: 4,
            },
        ),
        serf_lan_allowed_cidrs: t.list("serf_lan_allowed_cidrs"),
        serf_wan_allowed_cidrs: t.list("serf_wan_allowed_cidrs"),

        raft_protocol: 3,
        protocol: t.u32("protocol", 2),
        raft_multiplier: multiplier,
        raft,
        raft_snapshot_threshold: t.u64("raft_snapshot_threshold", 16384),
        raft_snapshot_interval: t.duration("raft_snapshot_interval", Duration::from_secs(30)),
        raft_trailing_logs: t.u64("raft_trailing_logs", 10240),
        rpc_hold_timeout: t.duration("performance.rpc_hold_timeout", Duration::from_secs(7)),
        leave_drain_time: t.duration("performance.leave_drain_time", Duration::from_secs(5)),
        autopilot: Autopilot {
            cleanup_dead_servers: t.bool("autopilot.cleanup_dead_servers", true),
            last_contact_threshold: t.duration(
                "autopilot.last_contact_threshold",
                Duration::from_millis(200),
            ),
            max_trailing_logs: t.u64("autopilot.max_trailing_logs", 250),
            min_quorum: t.u32("autopilot.min_quorum", 0),
            server_stabilization_time: t.duration(
                "autopilot.server_stabilization_time",
                Duration::from_secs(10),
            ),
        },
        coordinate_update_period: dev_or(Duration::from_millis(100), Duration::from_secs(5)),
        server_health_interval: dev_or(Duration::from_millis(10), Duration::from_secs(2)),
        session_ttl_min: t.duration("session_ttl_min", Duration::from_secs(10)),
        default_query_time: t.duration("default_query_time", Duration::from_secs(300)),
        max_query_time: t.duration("max_query_time", Duration::from_secs(600)),
        limits: Limits {
            http_max_conns_per_client: t.u32("limits.http_max_conns_per_client", 200),
            https_handshake_timeout: t
                .duration("limits.https_handshake_timeout", Duration::from_secs(5)),
            rpc_handshake_timeout: t
                .duration("limits.rpc_handshake_timeout", Duration::from_secs(5)),
            rpc_client_timeout: t.duration("limits.rpc_client_timeout", Duration::from_secs(60)),
            rpc_rate: rate(t.float("limits.rpc_rate", -1.0)),
            rpc_max_burst: t.u32("limits.rpc_max_burst", 1000),
            rpc_max_conns_per_client: t.u32("limits.rpc_max_conns_per_client", 100),
            kv_max_value_size: t.u64("limits.kv_max_value_size", 524_288),
            txn_max_req_len: t.u64("limits.txn_max_req_len", 524_288),
            request_limits: RequestLimits {
                mode: request_limits_mode,
                read_rate: rate(t.float("limits.request_limits.read_rate", -1.0)),
                write_rate: rate(t.float("limits.request_limits.write_rate", -1.0)),
            },
        },

        http_config: HttpConfig {
            block_endpoints: t.list("http_config.block_endpoints"),
            allow_write_http_from: t
                .list("http_config.allow_write_http_from")
                .iter()
                .map(|s| {
                    s.parse().map_err(|_| Invalid::Cidr {
                        name: "allow_write_http_from",
                        value: s.clone(),
                    })
                })
                .collect::<Result<_, _>>()?,
            response_headers: t
                .map("http_config.response_headers")
                .into_iter()
                .map(|(name, value)| {
                    let header = tribune_http_api::HeaderName::from_bytes(name.as_bytes())
                        .ok()
                        .zip(tribune_http_api::HeaderValue::from_str(&value).ok());
                    header.ok_or(Invalid::ResponseHeader { name, value })
                })
                .collect::<Result<_, _>>()?,
            use_cache: t.bool("http_config.use_cache", true),
            max_header_bytes: t.u64("http_config.max_header_bytes", 0),
        },
        dns_config,
        domain: fqdn(&t.string("domain").unwrap_or_else(|| "consul.".to_owned())),
        alt_domain: t.nonempty("alt_domain").map(|d| fqdn(&d)),
        recursors,
        ui,
        ui_dir,
        ui_content_path,

        connect: Connect {
            enabled: t.bool("connect.enabled", true),
            ca_provider: t.nonempty("connect.ca_provider"),
            cluster_id,
            ca_config,
            enable_mesh_gateway_wan_federation: t
                .bool("connect.enable_mesh_gateway_wan_federation", false),
        },
        peering_enabled: t.bool("peering.enabled", true),
        acl,
        tls,

        enable_script_checks,
        enable_local_script_checks: t
            .opt_bool("enable_local_script_checks")
            .unwrap_or(enable_script_checks),
        enable_agent_tls_for_checks: t.bool("enable_agent_tls_for_checks", false),
        enable_debug: t.bool("enable_debug", false),
        enable_central_service_config: t.bool("enable_central_service_config", true),
        disable_update_check: t.bool("disable_update_check", false),
        disable_remote_exec: t.bool("disable_remote_exec", true),
        disable_http_unprintable_char_filter: t.bool("disable_http_unprintable_char_filter", false),
        disable_coordinates: t.bool("disable_coordinates", false),
        sync_coordinate_interval_min: t
            .duration("sync_coordinate_interval_min", Duration::from_secs(15)),
        sync_coordinate_rate_target: t.float("sync_coordinate_rate_target", 64.0),
        disable_host_node_id: t.bool("disable_host_node_id", true),
        disable_anonymous_signature: t.bool("disable_anonymous_signature", false),
        auto_reload_config: t.bool("auto_reload_config", false),
        use_streaming_backend: t.bool("use_streaming_backend", true),
        check_update_interval: t.duration("check_update_interval", Duration::from_secs(300)),
        check_output_max_size,
        discard_check_output: t.bool("discard_check_output", false),

        log_level,
        log_json: t.bool("log_json", false),
        log_file: t.path("log_file"),
        log_rotate_bytes: t.u64("log_rotate_bytes", 0),
        log_rotate_duration: t.duration("log_rotate_duration", Duration::ZERO),
        log_rotate_max_files: t.int("log_rotate_max_files", 0),
        enable_syslog: t.bool("enable_syslog", false),
        syslog_facility: t
            .string("syslog_facility")
            .unwrap_or_else(|| "LOCAL0".to_owned()),

        services: t.raw_list("services"),
        checks: t.raw_list("checks"),
        watches: t.raw_list("watches"),

        config_files,
        unknown_keys: notes.unknown_keys,
        ignored_keys: notes.ignored_keys,
        warnings: notes.warnings,
    };
    Ok(config)
}
