//! `tribune agent`: load the configuration, start the server and the agent, serve the
//! HTTP API and the internal gRPC, and run until SIGINT/SIGTERM or `/v1/agent/leave`.

use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tribune_agent::config::{self, Listener, RuntimeConfig};
use tribune_agent::{Agent, AgentConfig, AgentEvent};
use tribune_http_api::dto::input::{CheckIn, ServiceIn};
use tribune_http_api::{json_in, HttpConfig, ServiceRegistration};
use tribune_rpc::ServerApi;
use tribune_server::{Server, ServerConfig};
use tribune_types::goflag::FlagError;

/// The Consul version we report, shared with `tribune version` (sdk/testutil parses it).
use crate::cli::CONSUL_VERSION;

/// Logging to the console, with `log_file` to rotating files and with
/// `enable_syslog` to the local syslog daemon, both opened here: a path that
/// cannot be written, or no daemon, stops the agent, as in Consul.
fn init_logging(
    cfg: &RuntimeConfig,
) -> std::io::Result<tokio::sync::broadcast::Sender<Arc<tribune_http_api::LogLine>>> {
    let level = match cfg.log_level.as_str().to_ascii_lowercase().as_str() {
        "err" => "error".to_owned(),
        other => other.to_owned(),
    };
    let file = match &cfg.log_file {
        None => None,
        Some(path) => Some(Arc::new(crate::logfile::LogFile::open(
            path,
            crate::logfile::Rotation {
                max_bytes: cfg.log_rotate_bytes,
                duration: cfg.log_rotate_duration,
                max_files: cfg.log_rotate_max_files,
            },
        )?)),
    };
    let syslog = if cfg.enable_syslog {
        Some(crate::syslog::Syslog::connect(&cfg.syslog_facility)?)
    } else {
        None
    };
    Ok(crate::logging::init(&level, cfg.log_json, file, syslog))
}

/// The node ID: configured, or persisted in `data_dir/node-id` (as Consul does), or
/// else made once ([`make_node_id`]) and persisted.
fn node_id(cfg: &RuntimeConfig) -> anyhow::Result<String> {
    if let Some(id) = &cfg.node_id {
        return Ok(id.clone());
    }
    let Some(dir) = &cfg.data_dir else {
        return Ok(make_node_id(cfg.disable_host_node_id));
    };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if uuid::Uuid::parse_str(s.trim()).is_ok() => Ok(s.trim().to_owned()),
        _ => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let id = make_node_id(cfg.disable_host_node_id);
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// A new node ID, as Consul's `makeNodeID`: random, or with
/// `disable_host_node_id = false` derived from the host's own ID, so that an
/// agent that loses its data dir comes back as the same node.
fn make_node_id(disable_host_node_id: bool) -> String {
    if !disable_host_node_id {
        match host_id().as_deref().and_then(node_id_from_host_id) {
            Some(id) => return id,
            None => tracing::debug!("no usable host ID; using a random node ID"),
        }
    }
    uuid::Uuid::new_v4().to_string()
}

/// The host's ID where gopsutil (which Consul uses) finds it on Linux: the
/// firmware's product UUID (readable by root), else systemd's machine ID
/// written as a UUID, else this boot's ID.
fn host_id() -> Option<String> {
    let first_line = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .filter(|l| !l.is_empty())
    };
    if let Some(id) = first_line("/sys/class/dmi/id/product_uuid") {
        return Some(id.to_lowercase());
    }
    if let Some(m) = first_line("/etc/machine-id").filter(|m| m.len() == 32 && m.is_ascii()) {
        return Some(format!(
            "{}-{}-{}-{}-{}",
            &m[0..8],
            &m[8..12],
            &m[12..16],
            &m[16..20],
            &m[20..32]
        ));
    }
    first_line("/proc/sys/kernel/random/boot_id").map(|id| id.to_lowercase())
}

/// The node ID for host ID `host`: Consul hashes it (SHA-512, the first 16
/// bytes as a UUID), since machines from one batch or one cloud image can
/// report similar IDs. `None` when `host` is not a UUID.
fn node_id_from_host_id(host: &str) -> Option<String> {
    use sha2::Digest as _;
    let host = host.to_lowercase();
    // go-uuid takes only the hyphenated form.
    if host.len() != 36 || uuid::Uuid::parse_str(&host).is_err() {
        return None;
    }
    let sum = sha2::Sha512::digest(host.as_bytes());
    let hex: String = sum[..16].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn advertise_ip(cfg: &RuntimeConfig) -> IpAddr {
    match cfg.advertise_addr {
        Some(ip) => ip,
        // Consul picks a private address for 0.0.0.0; on loopback-only machines (and for
        // every test here) that is 127.0.0.1.
        None if cfg.bind_addr.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => cfg.bind_addr,
    }
}

/// A config file's service: its registration, and the `connect.sidecar_service`
/// block it declared (the sidecar's port depends on what the agent holds when
/// it is registered, so it is built then).
struct ConfigService {
    registration: ServiceRegistration,
    sidecar: Option<serde_json::Value>,
}

/// Service and check definitions from config files, as registrations.
fn config_registrations(
    cfg: &RuntimeConfig,
) -> anyhow::Result<(
    Vec<ConfigService>,
    Vec<tribune_types::model::CheckDefinition>,
)> {
    let mut services = Vec::new();
    for value in &cfg.services {
        let bytes = serde_json::to_vec(value)?;
        let mut input: ServiceIn = json_in::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("invalid service definition in config: {e}"))?;
        let sidecar = tribune_http_api::take_sidecar(&mut input);
        let service = input
            .to_service()
            .map_err(|e| anyhow::anyhow!("invalid service definition in config: {e}"))?;
        let checks = input
            .check_definitions(service.id.as_str())
            .map_err(|e| anyhow::anyhow!("invalid check in service {}: {e}", service.id))?;
        services.push(ConfigService {
            registration: ServiceRegistration {
                service,
                checks,
                replace_existing_checks: true,
            },
            sidecar,
        });
    }
    let mut checks = Vec::new();
    for value in &cfg.checks {
        let bytes = serde_json::to_vec(value)?;
        let input: CheckIn = json_in::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("invalid check definition in config: {e}"))?;
        let def = input
            .to_definition("")
            .map_err(|e| anyhow::anyhow!("invalid check definition in config: {e}"))?;
        CheckIn::validate_agent(&def)
            .map_err(|e| anyhow::anyhow!("invalid check {}: {e}", def.id))?;
        checks.push(def);
    }
    Ok((services, checks))
}

/// What config files registered, so a reload can remove what they no longer define.
#[derive(Default)]
struct FromConfig {
    services: BTreeSet<String>,
    checks: BTreeSet<String>,
}

/// Registers config-file services and checks and removes those a reload dropped.
/// At startup (`sync` false) this only fills local state: the agent's first full sync
/// pushes it, so startup never waits on raft before the HTTP API is up.
/// Sidecars without a port get one from `sidecar_ports`, the range the agent
/// started with (the API's, which a reload does not change).
async fn apply_config_definitions(
    agent: &Agent,
    cfg: &RuntimeConfig,
    sidecar_ports: Option<&std::ops::RangeInclusive<u16>>,
    previous: &mut FromConfig,
    sync: bool,
) -> anyhow::Result<()> {
    let mut now = FromConfig::default();
    let applied = register_definitions(agent, cfg, sidecar_ports, previous, &mut now, sync).await;
    if applied.is_err() {
        // Whatever was registered before the failure stays tracked, so a
        // later reload that drops it removes it.
        previous.services.extend(now.services);
        previous.checks.extend(now.checks);
    } else {
        *previous = now;
    }
    applied
}

/// [`apply_config_definitions`]'s work; `now` collects what it registered.
async fn register_definitions(
    agent: &Agent,
    cfg: &RuntimeConfig,
    sidecar_ports: Option<&std::ops::RangeInclusive<u16>>,
    previous: &FromConfig,
    now: &mut FromConfig,
    sync: bool,
) -> anyhow::Result<()> {
    let (services, checks) = config_registrations(cfg)?;
    let err = |e: tribune_http_api::BackendError| anyhow::anyhow!("{e}");
    for ConfigService {
        registration,
        sidecar,
    } in services
    {
        // Held until the sidecar is registered (see `port_assignment`).
        let _assigning = match &sidecar {
            Some(_) => Some(tribune_http_api::port_assignment().await),
            None => None,
        };
        // Built before the parent is registered, so a sidecar that cannot be
        // had stops the load with nothing of this service applied.
        let sidecar = match sidecar {
            Some(raw) => Some(
                tribune_http_api::sidecar_registration(
                    &registration.service,
                    raw,
                    &tribune_http_api::Backend::local_services(agent),
                    sidecar_ports,
                    true,
                )
                .map_err(|e| {
                    anyhow::anyhow!(
                        "invalid sidecar_service of service {}: {e}",
                        registration.service.id
                    )
                })?,
            ),
            None => None,
        };
        for reg in std::iter::once(registration).chain(sidecar) {
            now.services.insert(reg.service.id.as_str().to_owned());
            if sync {
                agent.add_service(reg).await.map_err(err)?;
            } else {
                agent.load_service(reg);
            }
        }
    }
    for def in checks {
        now.checks.insert(def.id.as_str().to_owned());
        if sync {
            agent.add_check(def).await.map_err(err)?;
        } else {
            agent.load_check(def).map_err(err)?;
        }
    }
    for id in previous.services.difference(&now.services) {
        agent.remove_service(id).await.map_err(err)?;
    }
    for id in previous.checks.difference(&now.checks) {
        agent.remove_check(id).await.map_err(err)?;
    }
    Ok(())
}

/// Where sidecars registered without a port get one. A port of 0 or below
/// reads as disabled, and either end disabled turns assignment off, as in
/// Consul.
fn sidecar_ports(cfg: &RuntimeConfig) -> Option<std::ops::RangeInclusive<u16>> {
    match (cfg.ports.sidecar_min_port, cfg.ports.sidecar_max_port) {
        (Some(min), Some(max)) => Some(min..=max),
        _ => None,
    }
}

fn ports_map(cfg: &RuntimeConfig, http: Option<u16>, rpc: Option<u16>) -> BTreeMap<String, u16> {
    let p = &cfg.ports;
    let mut m = BTreeMap::new();
    for (name, port) in [
        ("dns", p.dns),
        ("http", http),
        ("https", p.https),
        ("grpc", p.grpc),
        ("grpc_tls", p.grpc_tls),
        ("serf_lan", p.serf_lan),
        ("serf_wan", p.serf_wan),
        ("server", rpc),
    ] {
        if let Some(port) = port {
            m.insert(name.to_owned(), port);
        }
    }
    m
}

async fn serve_http(
    listener: &Listener,
    router: tribune_http_api::Api,
    conns: &Arc<tribune_http_api::ConnLimiter>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddrOrPath, tokio::task::JoinHandle<()>)> {
    let shutdown = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    match listener {
        Listener::Tcp(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP API to {addr}"))?;
            let local = l.local_addr()?;
            let conns = Arc::clone(conns);
            let task = tokio::spawn(async move {
                if let Err(e) = tribune_http_api::serve(l, router, conns, shutdown).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
            Ok((SocketAddrOrPath::Addr(local), task))
        }
        Listener::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("binding the HTTP API to unix://{}", path.display()))?;
            let conns = Arc::clone(conns);
            let task = tokio::spawn(async move {
                if let Err(e) = tribune_http_api::serve(l, router, conns, shutdown).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
            Ok((SocketAddrOrPath::Path(path.display().to_string()), task))
        }
    }
}

/// Binds one HTTPS listener and serves `router` on it until `stop`.
async fn serve_https(
    listener: &Listener,
    router: tribune_http_api::Api,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    handshake_timeout: std::time::Duration,
    conns: &Arc<tribune_http_api::ConnLimiter>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddrOrPath, tokio::task::JoinHandle<()>)> {
    let (l, bound) = match listener {
        Listener::Tcp(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS API to {addr}"))?;
            let local = l.local_addr()?;
            (
                tribune_http_api::TlsListener::Tcp(l),
                SocketAddrOrPath::Addr(local),
            )
        }
        Listener::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("binding the HTTPS API to unix://{}", path.display()))?;
            (
                tribune_http_api::TlsListener::Unix(l),
                SocketAddrOrPath::Path(path.display().to_string()),
            )
        }
    };
    let shutdown = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    let conns = Arc::clone(conns);
    let task = tokio::spawn(async move {
        if let Err(e) =
            tribune_http_api::serve_tls(l, router, tls, handshake_timeout, conns, shutdown).await
        {
            tracing::error!(error = %e, "HTTPS server failed");
        }
    });
    Ok((bound, task))
}

enum SocketAddrOrPath {
    Addr(SocketAddr),
    Path(String),
}

impl std::fmt::Display for SocketAddrOrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddrOrPath::Addr(a) => write!(f, "{a}"),
            SocketAddrOrPath::Path(p) => write!(f, "unix://{p}"),
        }
    }
}

fn write_pid_file(path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, std::process::id().to_string())
        .with_context(|| format!("writing pid file {}", path.display()))
}

/// Starts the server role: binds the server RPC port, opens raft and state, and
/// serves the internal gRPC until `stop`. Returns the server and its RPC port.
async fn start_server(
    cfg: &RuntimeConfig,
    node_id: &str,
    advertise: IpAddr,
    rpc_conns: Arc<tribune_http_api::ConnLimiter>,
    rpc_tls: Arc<tribune_rpc::RpcTls>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Server>, u16)> {
    let rpc_bind = cfg
        .rpc_bind_addr()
        .unwrap_or_else(|| SocketAddr::new(cfg.bind_addr, 8300));
    let rpc_listener = TcpListener::bind(rpc_bind)
        .await
        .with_context(|| format!("binding the server RPC port {rpc_bind}"))?;
    let rpc_port = rpc_listener.local_addr()?.port();
    let mut server_cfg = ServerConfig::new(&cfg.node_name, SocketAddr::new(advertise, rpc_port));
    server_cfg.node_id = node_id.to_owned();
    server_cfg.datacenter = cfg.datacenter.clone();
    server_cfg.advertise_addr = advertise.to_string();
    server_cfg.node_meta = cfg.node_meta.clone();
    server_cfg.data_dir = if cfg.dev { None } else { cfg.data_dir.clone() };
    server_cfg.bootstrap = cfg.dev || cfg.bootstrap || cfg.bootstrap_expect == 1;
    server_cfg.bootstrap_expect = cfg.bootstrap_expect;
    server_cfg.autopilot = tribune_types::model::operator::AutopilotSettings {
        cleanup_dead_servers: cfg.autopilot.cleanup_dead_servers,
        last_contact_threshold: cfg.autopilot.last_contact_threshold,
        max_trailing_logs: cfg.autopilot.max_trailing_logs,
        min_quorum: cfg.autopilot.min_quorum,
        server_stabilization_time: cfg.autopilot.server_stabilization_time,
        ..Default::default()
    };
    server_cfg.raft_multiplier = cfg.raft_multiplier;
    server_cfg.snapshot_threshold = cfg.raft_snapshot_threshold;
    server_cfg.snapshot_interval = cfg.raft_snapshot_interval;
    server_cfg.trailing_logs = cfg.raft_trailing_logs;
    server_cfg.rpc_hold_timeout = cfg.rpc_hold_timeout;
    server_cfg.kv_max_value_size = cfg.limits.kv_max_value_size as usize;
    server_cfg.session_ttl_min = cfg.session_ttl_min;
    server_cfg.max_query_time = cfg.max_query_time;
    server_cfg.connect_enabled = cfg.connect.enabled;
    server_cfg.ca_cluster_id = cfg.connect.cluster_id.clone();
    server_cfg.version = CONSUL_VERSION.into();
    server_cfg.request_limits = request_limits(cfg);
    server_cfg.rpc_tls = rpc_tls.clone();
    let server = Server::start(server_cfg)
        .await
        .context("starting the server")?;
    let api: Arc<dyn ServerApi> = server.clone();
    let limits = tribune_rpc::ListenLimits {
        conns: rpc_conns,
        handshake_timeout: cfg.limits.rpc_handshake_timeout,
    };
    let mut stop = stop;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = tribune_rpc::serve(rpc_listener, api, limits, rpc_tls, shutdown).await {
            tracing::error!(error = %e, "server RPC failed");
        }
    });
    Ok((server, rpc_port))
}

/// `limits.request_limits` for the server.
fn request_limits(cfg: &RuntimeConfig) -> tribune_server::rate::RequestLimits {
    use tribune_agent::config::RequestLimitsMode as From;
    use tribune_server::rate::Mode;
    let l = &cfg.limits.request_limits;
    tribune_server::rate::RequestLimits {
        mode: match l.mode {
            From::Disabled => Mode::Disabled,
            From::Permissive => Mode::Permissive,
            From::Enforcing => Mode::Enforcing,
        },
        read_rate: l.read_rate,
        write_rate: l.write_rate,
    }
}

/// The Serf tags Consul agents gossip: role, datacenter, node ID, protocol versions
/// and, for servers, the server RPC port clients connect to.
fn gossip_tags(
    cfg: &RuntimeConfig,
    node_id: &str,
    rpc_port: Option<u16>,
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = [
        ("role", if cfg.server { "consul" } else { "node" }),
        ("dc", cfg.datacenter.as_str()),
        ("id", node_id),
        ("segment", ""),
        ("vsn", "2"),
        ("vsn_min", "2"),
        ("vsn_max", "3"),
        ("build", CONSUL_VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(port) = rpc_port {
        tags.insert("port".into(), port.to_string());
        tags.insert("raft_vsn".into(), "3".into());
        if cfg.bootstrap || cfg.dev {
            tags.insert("bootstrap".into(), "1".into());
        }
        if cfg.bootstrap_expect > 0 {
            tags.insert("expect".into(), cfg.bootstrap_expect.to_string());
        }
    }
    tags
}

fn gossip_core(g: &config::Gossip, profile: tribune_gossip::Profile) -> tribune_gossip::CoreConfig {
    let mut core = profile.config();
    core.probe_interval = g.probe_interval;
    core.probe_timeout = g.probe_timeout;
    core.gossip_interval = g.gossip_interval;
    core.gossip_nodes = g.gossip_nodes as usize;
    core.suspicion_mult = g.suspicion_mult;
    core.retransmit_mult = g.retransmit_mult;
    core
}

/// Starts the LAN pool (every agent) and the WAN pool (servers), with `encrypt`, and
/// the keyrings and member snapshots Consul keeps in `data_dir/serf/` (a restarted
/// agent rejoins the members it knew unless it left, or `-rejoin` is set). A disabled port (`-1`) disables
/// that pool.
async fn start_gossip(
    cfg: &RuntimeConfig,
    node_id: &str,
    advertise: IpAddr,
    rpc_port: Option<u16>,
) -> anyhow::Result<(
    Option<Arc<tribune_gossip::Gossip>>,
    Option<Arc<tribune_gossip::Gossip>>,
)> {
    let keyring = match &cfg.encrypt {
        Some(key) => Some(
            tribune_gossip::Keyring::new(key)
                .map_err(|e| anyhow::anyhow!("invalid encrypt key: {e}"))?,
        ),
        None => None,
    };
    let keyring_dir = (!cfg.dev)
        .then(|| cfg.data_dir.clone())
        .flatten()
        .map(|d| d.join("serf"));
    // `disable_keyring_file`: the key stays in memory only, as in Consul.
    let keyring_file = |name: &str| {
        keyring_dir
            .as_ref()
            .filter(|_| !cfg.disable_keyring_file)
            .map(|d| d.join(name))
    };
    let tags = gossip_tags(cfg, node_id, rpc_port);
    let lan = match cfg.serf_lan_bind_addr() {
        None => None,
        Some(bind) => {
            let mut g = tribune_gossip::GossipConfig::new(
                cfg.node_name.clone(),
                bind,
                tribune_gossip::Profile::Lan,
            );
            g.advertise = Some(SocketAddr::new(advertise, 0));
            g.tags = tags.clone();
            g.core = gossip_core(&cfg.gossip_lan, tribune_gossip::Profile::Lan);
            g.core.coordinates = !cfg.disable_coordinates;
            g.core.reconnect_timeout = cfg.reconnect_timeout;
            g.keyring = keyring.clone();
            g.verify_incoming = cfg.encrypt_verify_incoming;
            g.verify_outgoing = cfg.encrypt_verify_outgoing;
            g.keyring_file = keyring_file("local.keyring");
            g.snapshot_file = keyring_dir.as_ref().map(|d| d.join("local.snapshot"));
            g.rejoin_after_leave = cfg.rejoin_after_leave;
            let gossip = tribune_gossip::Gossip::start(g)
                .await
                .with_context(|| format!("starting the LAN gossip pool on {bind}"))?;
            Some(Arc::new(gossip))
        }
    };
    let wan = match (cfg.server, cfg.serf_wan_bind_addr()) {
        (true, Some(bind)) => {
            let mut g = tribune_gossip::GossipConfig::new(
                format!("{}.{}", cfg.node_name, cfg.datacenter),
                bind,
                tribune_gossip::Profile::Wan,
            );
            g.advertise = Some(SocketAddr::new(
                cfg.advertise_addr_wan.unwrap_or(advertise),
                0,
            ));
            g.tags = tags;
            g.core = gossip_core(&cfg.gossip_wan, tribune_gossip::Profile::Wan);
            g.core.coordinates = !cfg.disable_coordinates;
            g.core.reconnect_timeout = cfg.reconnect_timeout_wan;
            g.keyring = keyring;
            g.verify_incoming = cfg.encrypt_verify_incoming;
            g.verify_outgoing = cfg.encrypt_verify_outgoing;
            g.keyring_file = keyring_file("remote.keyring");
            g.snapshot_file = keyring_dir.as_ref().map(|d| d.join("remote.snapshot"));
            g.rejoin_after_leave = cfg.rejoin_after_leave;
            let gossip = tribune_gossip::Gossip::start(g)
                .await
                .with_context(|| format!("starting the WAN gossip pool on {bind}"))?;
            Some(Arc::new(gossip))
        }
        _ => None,
    };
    Ok((lan, wan))
}

/// `-join` once, then `-retry-join` every `retry_interval` until one join works or
/// `retry_max` attempts (0 = forever) were made. Runs in the background.
fn join_pool(gossip: Arc<tribune_gossip::Gossip>, cfg: &RuntimeConfig, what: &'static str) {
    let (start, retry, interval, max) = if what == "LAN" {
        (
            cfg.start_join.clone(),
            cfg.retry_join.clone(),
            cfg.retry_interval,
            cfg.retry_max,
        )
    } else {
        (
            cfg.start_join_wan.clone(),
            cfg.retry_join_wan.clone(),
            cfg.retry_interval_wan,
            cfg.retry_max_wan,
        )
    };
    tokio::spawn(async move {
        if !start.is_empty() {
            match gossip.join(&start).await {
                Ok(n) => tracing::info!(pool = what, joined = n, "joined"),
                Err(e) => tracing::warn!(pool = what, error = %e, "join failed"),
            }
        }
        if retry.is_empty() {
            return;
        }
        let mut attempt = 0u32;
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        loop {
            tick.tick().await;
            attempt += 1;
            match gossip.join(&retry).await {
                Ok(n) if n > 0 => {
                    tracing::info!(pool = what, joined = n, "retry-join succeeded");
                    return;
                }
                Ok(_) => tracing::warn!(pool = what, attempt, "retry-join: no member contacted"),
                Err(e) => tracing::warn!(pool = what, attempt, error = %e, "retry-join failed"),
            }
            if max > 0 && attempt >= max {
                tracing::error!(pool = what, "retry-join gave up after {max} attempts");
                return;
            }
        }
    });
}

/// Keeps the catalog and the client's server list in line with gossip: on every
/// member event, and every `reconcile` interval (Consul: 60 s) in full.
fn follow_membership(
    lan: Arc<tribune_gossip::Gossip>,
    server: Option<Arc<Server>>,
    pool: Arc<tribune_rpc::ServerPool>,
    datacenter: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = lan.subscribe();
    tokio::spawn(async move {
        let mut full = tokio::time::interval(Duration::from_secs(60));
        loop {
            let whole = tokio::select! {
                _ = stop.wait_for(|v| *v) => return,
                _ = full.tick() => true,
                ev = events.recv() => match ev {
                    Ok(tribune_gossip::GossipEvent::Member { .. }) => false,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(_) => return,
                },
            };
            let members = lan.members();
            pool.set_servers(&tribune_server::alive_server_addrs(&members, &datacenter));
            if let Some(server) = &server {
                server.observe_members(&members);
                if let Err(e) = server.reconcile(&members, whole).await {
                    tracing::warn!(error = %e, "reconciling gossip members into the catalog failed");
                }
            } else if whole {
                // Spread client agents over the servers over time.
                pool.rebalance();
            }
        }
    });
}

/// Turns transparent huge pages off for this process, from now on. The allocator
/// commits its arenas eagerly so that the kernel backs a server's state store
/// with 2 MiB pages (ARCHITECTURE.md, "Memory allocator"); a client agent keeps
/// no such state, so for it they only inflate resident memory (each touched
/// 2 MiB region is resident in full). The flag is process-wide (rustix names it
/// per thread) and inherited by the script checks the agent starts. Best effort:
/// without it the agent just uses more memory.
#[cfg(target_os = "linux")]
fn client_memory_profile() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
}

/// Elsewhere there is nothing to turn off.
#[cfg(not(target_os = "linux"))]
fn client_memory_profile() {}

/// Why a configuration with `acl.enabled = true` (or the legacy
/// `acl_datacenter`) is refused. Tribune does not enforce ACLs yet; such a
/// configuration expects every request checked against a token, and an agent
/// that started anyway would serve everything to everyone without a word.
const ACL_REFUSED: &str = "acl.enabled = true, but Tribune does not enforce ACLs yet: \
refusing to run a configuration that expects them, which would leave every endpoint \
open. Remove the acl block or set acl.enabled = false to run without ACLs \
(or set TRIBUNE_ALLOW_UNENFORCED_ACLS=1 to run it unenforced, for tests).";

/// The environment variable that lets an ACL configuration run unenforced:
/// test setups that turn ACLs on only to exercise other features (py-consul's
/// Connect tests, the Go client's) run as before, and only someone who set it
/// on purpose gets an open agent.
const ALLOW_UNENFORCED_ACLS: &str = "TRIBUNE_ALLOW_UNENFORCED_ACLS";

/// Whether a configuration with ACLs on may run (see [`ACL_REFUSED`]).
fn acls_allowed(cfg: &RuntimeConfig) -> bool {
    !cfg.acl.enabled || std::env::var(ALLOW_UNENFORCED_ACLS).is_ok_and(|v| v == "1")
}

/// Warns, at start and on each reload, about every setting the configuration
/// asks for that this version does not act on.
fn warn_unapplied(cfg: &RuntimeConfig) {
    for what in cfg.unapplied() {
        tracing::warn!("{what}");
    }
}

/// Runs `tribune agent` with `args`; returns the exit code.
pub async fn run(args: &[String]) -> anyhow::Result<i32> {
    let flags = config::agent_flags();
    let parsed = match flags.parse(args) {
        Ok(p) => p,
        Err(FlagError::Help) => {
            print!("{}", flags.usage());
            return Ok(0);
        }
        Err(e) => {
            eprintln!("{e}\n\n{}", flags.usage());
            return Ok(1);
        }
    };
    let cfg = match config::load(&parsed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e}");
            return Ok(1);
        }
    };
    if !acls_allowed(&cfg) {
        eprintln!("==> {ACL_REFUSED}");
        return Ok(1);
    }
    let logs = match init_logging(&cfg) {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("==> Failed to setup logging: {e}");
            return Ok(1);
        }
    };
    warn_unapplied(&cfg);
    // `auto_reload_config`: what the files read look like now, so an edit
    // made while the agent starts is a change at the first poll.
    let mut watched = crate::config_watch::Watched::of(&cfg);
    if cfg.acl.enabled {
        tracing::warn!(
            "acl.enabled = true, but ACLs are NOT enforced: every endpoint is open \
             ({ALLOW_UNENFORCED_ACLS}=1 is set)"
        );
    }
    if !cfg.server {
        client_memory_profile();
    }
    for key in &cfg.unknown_keys {
        tracing::warn!(key = %key, "config key not supported by Tribune; ignored");
    }
    if cfg.ui {
        tracing::info!("-ui accepted; the web UI is not part of this build");
    }
    // Before anything starts: bad TLS files stop the agent, as they stop Consul.
    let check_tls = match tribune_agent::load_check_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("==> enable_agent_tls_for_checks: {e}");
            return Ok(1);
        }
    };
    // The HTTPS API's certificate too, before the agent joins anything.
    let https_tls = if cfg.https_listeners().is_empty() {
        None
    } else {
        match tribune_agent::https::server_config(&cfg.tls.https) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("==> HTTPS API: {e}");
                return Ok(1);
            }
        }
    };
    // And TLS on the internal RPC: the server port's and the connections to
    // the servers (shared, so a reload reaches every one of them).
    let rpc_server_name = tribune_agent::rpc_tls::server_name(&cfg);
    let rpc_tls = match tribune_agent::rpc_tls::config(&cfg, &rpc_server_name) {
        Ok(tls) => tribune_rpc::RpcTls::new(tls),
        Err(e) => {
            eprintln!("==> Failed to setup TLS for the server RPC: {e}");
            return Ok(1);
        }
    };
    if let Some(pid) = &cfg.pid_file {
        write_pid_file(pid)?;
    }
    let node_id = node_id(&cfg)?;
    let advertise = advertise_ip(&cfg);
    let (stop_tx, stop_rx) = watch::channel(false);
    // A server answers the internal RPC itself; a client agent reaches the servers it
    // learns from gossip through a pool.
    // `limits.rpc_max_conns_per_client`, kept here so a reload can change it.
    let rpc_conns = tribune_http_api::ConnLimiter::new(cfg.limits.rpc_max_conns_per_client);
    let (server, rpc_port) = if cfg.server {
        let (server, port) = start_server(
            &cfg,
            &node_id,
            advertise,
            rpc_conns.clone(),
            rpc_tls.clone(),
            stop_rx.clone(),
        )
        .await?;
        (Some(server), Some(port))
    } else {
        (None, None)
    };
    let pool = Arc::new(tribune_rpc::ServerPool::with_tls(rpc_tls.clone()));
    // `limits.rpc_rate` bounds a client agent's requests to the servers, and
    // `limits.rpc_client_timeout` how long one server may take to answer.
    if server.is_none() {
        pool.set_rate_limit(cfg.limits.rpc_rate, cfg.limits.rpc_max_burst);
        pool.set_client_timeout(cfg.limits.rpc_client_timeout);
    }
    let servers: Arc<dyn ServerApi> = match &server {
        Some(s) => s.clone(),
        None => pool.clone(),
    };
    let (lan, wan) = start_gossip(&cfg, &node_id, advertise, rpc_port).await?;

    let http_listeners = cfg.http_listeners();
    let mut debug_config = BTreeMap::new();
    debug_config.insert(
        "DataDir".into(),
        cfg.data_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    );
    debug_config.insert("DevMode".into(), cfg.dev.to_string());
    debug_config.insert("ServerMode".into(), cfg.server.to_string());
    let agent_cfg = AgentConfig {
        node_name: cfg.node_name.clone(),
        node_id,
        datacenter: cfg.datacenter.clone(),
        primary_datacenter: cfg.primary_datacenter.clone(),
        advertise_addr: advertise.to_string(),
        node_meta: cfg.node_meta.clone(),
        server: cfg.server,
        bootstrap: cfg.bootstrap || cfg.dev,
        session_ttl_min: cfg.session_ttl_min,
        ports: BTreeMap::new(),
        version: CONSUL_VERSION.into(),
        revision: option_env!("TRIBUNE_GIT_SHA").unwrap_or("").into(),
        sync_interval: Duration::from_secs(60),
        debug_config,
        // Dev agents keep nothing; a durable agent keeps API registrations with its
        // raft data.
        data_dir: if cfg.dev { None } else { cfg.data_dir.clone() },
        enable_script_checks: cfg.enable_script_checks,
        enable_local_script_checks: cfg.enable_local_script_checks,
        check_output_max_size: cfg.check_output_max_size as usize,
        discard_check_output: cfg.discard_check_output,
        check_update_interval: cfg.check_update_interval,
        check_tls,
        disable_remote_exec: cfg.disable_remote_exec,
        disable_coordinates: cfg.disable_coordinates,
        coordinate_interval_min: cfg.sync_coordinate_interval_min,
        coordinate_rate_target: cfg.sync_coordinate_rate_target,
    };
    // Ports are known once listeners are bound (port 0 picks one).
    let mut agent_cfg = agent_cfg;
    let http_port_hint = cfg.ports.http;
    agent_cfg.ports = ports_map(&cfg, http_port_hint, rpc_port);
    let (agent, mut events) = Agent::start(agent_cfg, servers.clone(), logs);
    if let Some(lan) = &lan {
        agent.attach_gossip(lan.clone(), wan.clone());
        join_pool(lan.clone(), &cfg, "LAN");
        follow_membership(
            lan.clone(),
            server.clone(),
            pool.clone(),
            cfg.datacenter.clone(),
            stop_rx.clone(),
        );
    }
    if let Some(wan) = &wan {
        join_pool(wan.clone(), &cfg, "WAN");
    }
    let mut from_config = FromConfig::default();
    let sidecar_range = sidecar_ports(&cfg);
    apply_config_definitions(
        &agent,
        &cfg,
        sidecar_range.as_ref(),
        &mut from_config,
        false,
    )
    .await?;
    agent.load_persisted();

    let http_cfg = HttpConfig {
        kv_max_value_size: cfg.limits.kv_max_value_size as usize,
        txn_max_req_len: cfg.limits.txn_max_req_len as usize,
        default_acl_policy: match cfg.acl.default_policy {
            config::AclPolicy::Allow => "allow",
            config::AclPolicy::Deny => "deny",
        },
        allow_unprintable_paths: cfg.disable_http_unprintable_char_filter,
        block_endpoints: cfg.http_config.block_endpoints.clone(),
        allow_write_from: cfg.http_config.allow_write_http_from.clone(),
        response_headers: cfg.http_config.response_headers.clone(),
        use_cache: cfg.http_config.use_cache,
        sidecar_ports: sidecar_range.clone(),
        max_header_bytes: usize::try_from(cfg.http_config.max_header_bytes).unwrap_or(usize::MAX),
        // Consul's `-dev` agents indent every JSON answer.
        pretty_always: cfg.dev,
        query_times: tribune_http_api::params::QueryTimes {
            default: cfg.default_query_time,
            max: cfg.max_query_time,
        },
    };
    let router = tribune_http_api::router(agent.clone(), http_cfg);
    // One count for HTTP and HTTPS, as Consul's single limiter.
    let http_conns = tribune_http_api::ConnLimiter::new(cfg.limits.http_max_conns_per_client);
    let mut bound = Vec::new();
    let mut http_tasks = Vec::new();
    for l in &http_listeners {
        let (addr, task) = serve_http(l, router.clone(), &http_conns, stop_rx.clone()).await?;
        bound.push(addr);
        http_tasks.push(task);
    }
    let mut https_bound = Vec::new();
    // Reloads replace the configuration here; new connections take the newest.
    let https_reload = https_tls.map(watch::Sender::new);
    if let Some(tls) = &https_reload {
        for l in &cfg.https_listeners() {
            let (addr, task) = serve_https(
                l,
                router.clone(),
                tls.subscribe(),
                cfg.limits.https_handshake_timeout,
                &http_conns,
                stop_rx.clone(),
            )
            .await?;
            https_bound.push(addr);
            http_tasks.push(task);
        }
    }
    let dns_cfg = tribune_agent::dns::dns_config(&cfg);
    let mut dns_addrs = Vec::new();
    if !dns_cfg.bind.is_empty() {
        let lookup = Arc::new(
            tribune_agent::dns::CatalogLookup::new(servers.clone(), &cfg.datacenter, &dns_cfg)
                .with_agent(&cfg.node_name, !cfg.disable_coordinates),
        );
        let dns = tribune_dns::DnsServer::bind(dns_cfg, lookup)
            .await
            .context("starting the DNS interface")?;
        dns_addrs = dns.udp_addrs().to_vec();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|v| *v).await;
            };
            if let Err(e) = dns.run(shutdown).await {
                tracing::error!(error = %e, "DNS server failed");
            }
        });
    }
    // Local state is loaded and the API is up: start TTLs and anti-entropy.
    agent.start_sync();
    println!("==> Tribune agent running (Consul {CONSUL_VERSION} compatible)");
    println!("    Node name: '{}'", cfg.node_name);
    println!("   Datacenter: '{}'", cfg.datacenter);
    println!(
        "       Server: {} (bootstrap: {})",
        cfg.server,
        cfg.bootstrap || cfg.dev
    );
    for b in &bound {
        println!("     HTTP API: {b}");
    }
    for b in &https_bound {
        println!("    HTTPS API: {b}");
    }
    for d in &dns_addrs {
        println!("          DNS: {d} (UDP and TCP)");
    }
    if let Some(port) = rpc_port {
        println!("   Server RPC: {}", SocketAddr::new(advertise, port));
    }
    if let Some(lan) = &lan {
        println!("     Gossip LAN: {}", lan.local_addr());
    }
    if let Some(wan) = &wan {
        println!("     Gossip WAN: {}", wan.local_addr());
    }

    let reloadable = Reloadable {
        agent: &agent,
        server: server.as_deref(),
        pool: &pool,
        https: https_reload.as_ref(),
        http_conns: &http_conns,
        rpc_conns: &rpc_conns,
        rpc_tls: &rpc_tls,
        rpc_server_name: &rpc_server_name,
        sidecar_range: sidecar_range.as_ref(),
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // `auto_reload_config`: the files a reload reads, polled.
    let mut watch_tick = tokio::time::interval(crate::config_watch::INTERVAL);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether to leave the gossip pools gracefully (others then see this node `left`,
    // not `failed`): Consul's skip_leave_on_interrupt / leave_on_terminate.
    // `/v1/agent/leave` has already left the pools by the time it gets here;
    // it is answered once the rest of the leave is done.
    let mut left_by_api: Option<tokio::sync::oneshot::Sender<()>> = None;
    let leave = loop {
        tokio::select! {
            _ = sigint.recv() => { tracing::info!("caught SIGINT, shutting down"); break !cfg.skip_leave_on_interrupt; }
            _ = sigterm.recv() => { tracing::info!("caught SIGTERM, shutting down"); break cfg.leave_on_terminate; }
            _ = sighup.recv() => {
                match reload(&parsed, &reloadable, &mut from_config).await {
                    Ok(new) => watched = crate::config_watch::Watched::after(watched.take(), &new),
                    Err(e) => tracing::error!(error = %e, "reload failed"),
                }
            }
            _ = watch_tick.tick(), if watched.is_some() => {
                if watched.as_mut().is_some_and(crate::config_watch::Watched::poll) {
                    tracing::info!("configuration files changed; reloading (auto_reload_config)");
                    match reload(&parsed, &reloadable, &mut from_config).await {
                        Ok(new) => watched = crate::config_watch::Watched::after(watched.take(), &new),
                        Err(e) => tracing::error!(error = %e, "automatic reload failed"),
                    }
                }
            }
            ev = events.recv() => match ev {
                // The agent left its pools before sending the event.
                None => break false,
                Some(AgentEvent::Leave(done)) => { tracing::info!("leave requested, shutting down"); left_by_api = Some(done); break false; }
                Some(AgentEvent::Reload(reply)) => {
                    let r = match reload(&parsed, &reloadable, &mut from_config).await {
                        Ok(new) => {
                            watched = crate::config_watch::Watched::after(watched.take(), &new);
                            Ok(())
                        }
                        Err(e) => Err(format!("{e:#}")),
                    };
                    let _ = reply.send(r);
                }
            },
        }
    };
    if leave {
        if let Some(server) = &server {
            server.prepare_leave().await;
        }
    }
    for pool in [&lan, &wan].into_iter().flatten() {
        if leave {
            if let Err(e) = pool.leave().await {
                tracing::warn!(error = %e, "leaving the gossip pool failed");
            }
        }
        pool.shutdown().await;
    }
    if leave || left_by_api.is_some() {
        if let Some(server) = &server {
            let finish = async {
                // Out of the pools, so clients move to other servers; meanwhile
                // this one keeps answering, so what they have in flight here
                // completes (Consul's `leave_drain_time`).
                tracing::info!(drain_time = ?cfg.leave_drain_time, "waiting to drain RPC traffic");
                tokio::time::sleep(cfg.leave_drain_time).await;
                // Stay a raft member until the leader has removed this server: a
                // removal needs the votes of the configuration it shrinks (Consul
                // waits the same way before a server's leave completes).
                server.wait_removed(Duration::from_secs(5)).await;
            };
            // Another SIGINT or SIGTERM cuts the leave short, as in Consul.
            tokio::select! {
                () = finish => {}
                _ = sigint.recv() => tracing::warn!("caught SIGINT during the leave, stopping now"),
                _ = sigterm.recv() => tracing::warn!("caught SIGTERM during the leave, stopping now"),
            }
        }
    }
    if let Some(done) = left_by_api.take() {
        let _ = done.send(());
    }
    let _ = stop_tx.send(true);
    // Let in-flight requests (e.g. the answer to `/v1/agent/leave`) finish; parked
    // blocking queries would hold graceful shutdown for minutes, so bound the wait.
    let drain = futures_join(http_tasks);
    let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
    if let Some(server) = &server {
        server.shutdown().await;
    }
    if let Some(pid) = &cfg.pid_file {
        let _ = std::fs::remove_file(pid);
    }
    println!("==> Tribune agent stopped");
    Ok(0)
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// What a reload changes besides the agent's services and checks.
struct Reloadable<'a> {
    agent: &'a Agent,
    server: Option<&'a Server>,
    pool: &'a tribune_rpc::ServerPool,
    /// The HTTPS listeners' certificates, when HTTPS is served.
    https: Option<&'a watch::Sender<Arc<rustls::ServerConfig>>>,
    /// `limits.http_max_conns_per_client`.
    http_conns: &'a tribune_http_api::ConnLimiter,
    /// `limits.rpc_max_conns_per_client`.
    rpc_conns: &'a tribune_http_api::ConnLimiter,
    /// `tls.internal_rpc`.
    rpc_tls: &'a tribune_rpc::RpcTls,
    /// `server.<datacenter>.<domain>` of the running agent.
    rpc_server_name: &'a str,
    /// The sidecar port range the agent started with.
    sidecar_range: Option<&'a std::ops::RangeInclusive<u16>>,
}

async fn reload(
    parsed: &tribune_types::goflag::Parsed,
    r: &Reloadable<'_>,
    from_config: &mut FromConfig,
) -> anyhow::Result<RuntimeConfig> {
    let Reloadable {
        agent,
        server,
        pool,
        https,
        http_conns,
        rpc_conns,
        rpc_tls,
        rpc_server_name,
        sidecar_range,
    } = *r;
    let cfg = config::load(parsed).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !acls_allowed(&cfg) {
        anyhow::bail!("{ACL_REFUSED}");
    }
    warn_unapplied(&cfg);
    if cfg.acl.enabled {
        tracing::warn!(
            "acl.enabled = true, but ACLs are NOT enforced: every endpoint is open \
             ({ALLOW_UNENFORCED_ACLS}=1 is set)"
        );
    }
    // New certificate files (short-lived ones from Vault, say) apply to new
    // HTTPS and RPC connections without a restart, as in Consul; both are
    // read before either applies, so a bad TLS file changes neither (a
    // failure further on leaves them applied, as Consul's reload does).
    let https_tls = match https {
        Some(_) => Some(
            tribune_agent::https::server_config(&cfg.tls.https)
                .map_err(|e| anyhow::anyhow!("Failed reloading tls configuration: {e}"))?,
        ),
        None => None,
    };
    let new_rpc_tls = tribune_agent::rpc_tls::config(&cfg, rpc_server_name)
        .map_err(|e| anyhow::anyhow!("Failed reloading tls configuration: {e}"))?;
    if let (Some(https), Some(tls)) = (https, https_tls) {
        https.send_replace(tls);
    }
    rpc_tls.set(new_rpc_tls);
    // Request rate limits are reloadable, as in Consul: a server's on the
    // requests it serves, a client agent's on those it sends.
    match server {
        Some(server) => server.set_request_limits(request_limits(&cfg)),
        None => pool.set_rate_limit(cfg.limits.rpc_rate, cfg.limits.rpc_max_burst),
    }
    // As in Consul, a lower limit turns away new connections; open ones stay.
    http_conns.set_max(cfg.limits.http_max_conns_per_client);
    rpc_conns.set_max(cfg.limits.rpc_max_conns_per_client);
    apply_config_definitions(agent, &cfg, sidecar_range, from_config, true).await?;
    tracing::info!("configuration reloaded");
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_node_ids_are_hashed_as_consul_hashes_them() {
        // SHA-512 of the host ID, computed apart from this code.
        let want = "6408aed0-b764-7c59-c453-5354d8ec409f";
        assert_eq!(
            super::node_id_from_host_id("9A3E4F2C-1B7D-4E8A-9C6F-2D5B8A1E7C40").as_deref(),
            Some(want)
        );
        for bad in ["", "not-a-uuid", "9a3e4f2c1b7d4e8a9c6f2d5b8a1e7c40"] {
            assert_eq!(super::node_id_from_host_id(bad), None, "{bad}");
        }
    }
}
