//! The agent describing itself: `GET /v1/agent/self`, `/members`, `/version`, `/host`.
//!
//! Shapes follow Consul's `AgentSelf` (a fixed `Config` subset, the free-form
//! `DebugConfig`, `Coord`, `Member`, `Stats`, `Meta`, and `xDS` when the gRPC port is on),
//! serf's `Member` JSON and `debug.CollectHostInfo`.

use super::{filter_for, AppState};
use crate::backend::{AgentInfo, ClusterStatus};
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tribune_types::format_go_duration;
use tribune_types::model::Member;

/// Consul's default `BuildDate` when the build does not set one.
const DEFAULT_BUILD_DATE: &str = "1970-01-01T00:00:01Z";

/// Envoy versions advertised under `xDS.SupportedProxies` (Consul 1.17's list).
const ENVOY_VERSIONS: &[&str] = &["1.27.2", "1.26.6", "1.25.11", "1.24.12"];

/// serf's `Member` as JSON. The protocol and delegate versions are the ones current
/// Consul agents advertise; nothing reads them but they must be present.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MemberOut<'a> {
    name: &'a str,
    addr: &'a str,
    port: u16,
    tags: &'a BTreeMap<String, String>,
    status: u8,
    protocol_min: u8,
    protocol_max: u8,
    protocol_cur: u8,
    delegate_min: u8,
    delegate_max: u8,
    delegate_cur: u8,
}

impl<'a> From<&'a Member> for MemberOut<'a> {
    fn from(m: &'a Member) -> Self {
        MemberOut {
            name: &m.name,
            addr: &m.addr,
            port: m.port,
            tags: &m.tags,
            status: m.status,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }
}

/// Fields of serf's `Member` that `?filter=` may name.
const MEMBER_FIELDS: &[&str] = &[
    "Name",
    "Addr",
    "Port",
    "Tags",
    "Status",
    "ProtocolMin",
    "ProtocolMax",
    "ProtocolCur",
    "DelegateMin",
    "DelegateMax",
    "DelegateCur",
];

/// `GET /v1/agent/members[?wan=1][&segment=][&filter=]`.
pub(super) async fn members(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    // Consul tests `wan` by value, not presence (`?wan=` means LAN).
    let wan = p.get("wan").is_some_and(|v| !v.is_empty());
    if wan && !matches!(p.get("segment"), None | Some("" | "_all")) {
        return Err(ApiError::bad("Cannot provide a segment with wan=true"));
    }
    let filter = filter_for(&p, MEMBER_FIELDS)?;
    let members = st.backend.members(wan);
    let mut out = Vec::with_capacity(members.len());
    for m in &members {
        let v = serde_json::to_value(MemberOut::from(m))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let keep = match &filter {
            None => true,
            Some(f) => f
                .matches(&v)
                .map_err(|e| ApiError::bad(format!("Failed to evaluate filter: {e}")))?,
        };
        if keep {
            out.push(v);
        }
    }
    Ok(reply::json(&out, p.pretty()))
}

fn build_date(info: &AgentInfo) -> String {
    info.debug_config
        .get("BuildDate")
        .cloned()
        .unwrap_or_else(|| DEFAULT_BUILD_DATE.to_owned())
}

/// A listener port, or Consul's `-1` for a disabled one.
fn port(info: &AgentInfo, name: &str) -> i64 {
    info.ports.get(name).map_or(-1, |p| i64::from(*p))
}

/// Go's `runtime.GOARCH` spelling of the build architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `GET /v1/agent/self`.
pub(super) async fn agent_self(
    State(st): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let info = st.backend.agent_info();
    // Only servers report the leader in `Stats` (on a client `status()` is a forwarded
    // RPC we need not wait for), and Stats are informational: a failed lookup must not
    // fail the whole answer.
    let status = if info.server {
        st.backend.status().await.unwrap_or_default()
    } else {
        ClusterStatus::default()
    };
    let primary = if info.primary_datacenter.is_empty() {
        info.datacenter.clone()
    } else {
        info.primary_datacenter.clone()
    };

    let mut config = Map::new();
    config.insert("Datacenter".into(), json!(info.datacenter));
    config.insert("PrimaryDatacenter".into(), json!(primary));
    config.insert("NodeName".into(), json!(info.node_name));
    config.insert("NodeID".into(), json!(info.node_id));
    config.insert("Revision".into(), json!(info.revision));
    config.insert("Server".into(), json!(info.server));
    config.insert("Version".into(), json!(info.version));
    config.insert("BuildDate".into(), json!(build_date(&info)));
    // Not in current Consul's `Config`, but older agents put the whole runtime config
    // there and Patroni still reads `Config.SessionTTLMin` (integer nanoseconds) after an
    // "Invalid Session TTL" error; an extra key is harmless to everyone else.
    config.insert(
        "SessionTTLMin".into(),
        json!(u64::try_from(info.session_ttl_min.as_nanos()).unwrap_or(u64::MAX)),
    );

    let mut body = Map::new();
    body.insert("Config".into(), Value::Object(config));
    body.insert(
        "DebugConfig".into(),
        Value::Object(debug_config(&info, &primary)),
    );
    body.insert(
        "Coord".into(),
        json!({"Vec": [0, 0, 0, 0, 0, 0, 0, 0], "Error": 1.5, "Adjustment": 0, "Height": 1e-5}),
    );
    body.insert(
        "Member".into(),
        serde_json::to_value(MemberOut::from(&info.member))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    body.insert(
        "Stats".into(),
        stats(&st, &info, &status.leader, status.peers.len()),
    );
    body.insert("Meta".into(), json!(info.node_meta));
    // Consul adds `xDS` only when its gRPC (xDS) server runs; py-consul's test of
    // /agent/self checks the exact set of top-level keys against the version.
    let grpc = port(&info, "grpc");
    let grpc_tls = port(&info, "grpc_tls");
    if grpc > 0 || grpc_tls > 0 {
        body.insert(
            "xDS".into(),
            json!({
                "SupportedProxies": {"envoy": ENVOY_VERSIONS},
                "Port": if grpc_tls > 0 { grpc_tls } else { grpc },
                "Ports": {"Plaintext": grpc, "TLS": grpc_tls},
            }),
        );
    }
    Ok(reply::json(&Value::Object(body), p.pretty()))
}

/// The free-form `DebugConfig`: what we can derive from [`AgentInfo`] under Consul's
/// runtime-config names, overlaid with the backend's own `debug_config` entries (the
/// backend knows best). `SessionTTLMin` is a Go duration string here, as in Consul.
fn debug_config(info: &AgentInfo, primary: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Datacenter".into(), json!(info.datacenter));
    m.insert("PrimaryDatacenter".into(), json!(primary));
    m.insert("NodeName".into(), json!(info.node_name));
    m.insert("NodeID".into(), json!(info.node_id));
    m.insert("NodeMeta".into(), json!(info.node_meta));
    m.insert("ServerMode".into(), json!(info.server));
    m.insert("Revision".into(), json!(info.revision));
    m.insert("Version".into(), json!(info.version));
    m.insert("AdvertiseAddrLAN".into(), json!(info.advertise_addr));
    m.insert(
        "SerfAdvertiseAddrLAN".into(),
        json!(format!("tcp://{}:{}", info.member.addr, info.member.port)),
    );
    m.insert(
        "SessionTTLMin".into(),
        json!(format_go_duration(info.session_ttl_min)),
    );
    for (key, name) in [
        ("HTTPPort", "http"),
        ("HTTPSPort", "https"),
        ("DNSPort", "dns"),
        ("GRPCPort", "grpc"),
        ("GRPCTLSPort", "grpc_tls"),
        ("ServerPort", "server"),
        ("SerfPortLAN", "serf_lan"),
        ("SerfPortWAN", "serf_wan"),
    ] {
        m.insert(key.into(), json!(port(info, name)));
    }
    for (k, v) in &info.debug_config {
        m.insert(k.clone(), json!(v));
    }
    m
}

/// `Stats`: Consul's `map[string]map[string]string`. `consul.leader_addr` is exactly
/// what `/v1/status/leader` returns (clients cross-check the two).
fn stats(st: &AppState, info: &AgentInfo, leader: &str, peers: usize) -> Value {
    let services = st.backend.local_services();
    let checks = st.backend.local_checks();
    let ttl_checks = checks.iter().filter(|c| c.definition.ttl.is_some()).count();
    let lan = st.backend.members(false);
    let alive = lan.iter().filter(|m| m.status == 1).count();
    let failed = lan.iter().filter(|m| m.status == 4).count();
    let left = lan.iter().filter(|m| m.status == 3).count();
    let server_count = lan
        .iter()
        .filter(|m| m.status == 1 && m.tags.get("role").map(String::as_str) == Some("consul"))
        .count();
    // Our own RPC address as peers and the leader name it: advertise address and server
    // port, falling back to the gossip address and the member's `port` tag.
    let own_rpc = match (info.advertise_addr.as_str(), info.ports.get("server")) {
        ("", _) | (_, None) => format!(
            "{}:{}",
            info.member.addr,
            info.member
                .tags
                .get("port")
                .map(String::as_str)
                .unwrap_or("8300")
        ),
        (addr, Some(port)) => format!("{addr}:{port}"),
    };
    let is_leader = info.server && !leader.is_empty() && leader == own_rpc;
    let s = |v: &dyn ToString| Value::String(v.to_string());

    let mut out = Map::new();
    out.insert(
        "agent".into(),
        json!({
            "check_monitors": "0",
            "check_ttls": s(&ttl_checks),
            "checks": s(&checks.len()),
            "services": s(&services.len()),
        }),
    );
    out.insert(
        "build".into(),
        json!({
            "prerelease": "",
            "revision": info.revision,
            "version": info.version,
            "version_metadata": "",
        }),
    );
    let consul = if info.server {
        json!({
            "acl": "disabled",
            "bootstrap": info.debug_config.get("Bootstrap").map(String::as_str).unwrap_or("false"),
            "known_datacenters": "1",
            "leader": s(&is_leader),
            "leader_addr": leader,
            "server": "true",
        })
    } else {
        json!({
            "acl": "disabled",
            "known_servers": s(&server_count),
            "server": "false",
        })
    };
    out.insert("consul".into(), consul);
    if info.server {
        out.insert(
            "raft".into(),
            json!({
                "num_peers": s(&peers.saturating_sub(1)),
                "state": if is_leader { "Leader" } else if leader.is_empty() { "Candidate" } else { "Follower" },
                "protocol_version": "3",
                "protocol_version_max": "3",
                "protocol_version_min": "0",
                "latest_configuration": "",
            }),
        );
    }
    let serf = |members: usize, alive: usize, failed: usize, left: usize| {
        json!({
            "members": s(&members),
            "alive": s(&alive),
            "failed": s(&failed),
            "left": s(&left),
            "encrypted": "false",
        })
    };
    out.insert("serf_lan".into(), serf(lan.len(), alive, failed, left));
    if info.server {
        let wan = st.backend.members(true);
        let alive = wan.iter().filter(|m| m.status == 1).count();
        let failed = wan.iter().filter(|m| m.status == 4).count();
        let left = wan.iter().filter(|m| m.status == 3).count();
        out.insert("serf_wan".into(), serf(wan.len(), alive, failed, left));
    }
    out.insert(
        "runtime".into(),
        json!({
            "arch": go_arch(),
            "cpu_count": s(&cpu_count()),
            "goroutines": "0",
            "max_procs": s(&cpu_count()),
            "os": std::env::consts::OS,
            "version": "rust",
        }),
    );
    Value::Object(out)
}

/// `GET /v1/agent/version`: Consul's `version.BuildInfo`.
pub(super) async fn version(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let info = st.backend.agent_info();
    let body = json!({
        "SHA": info.revision,
        "BuildDate": build_date(&info),
        "HumanVersion": info.version,
        "FIPS": "",
    });
    Ok(reply::json(&body, p.pretty()))
}

/// `GET /v1/agent/host`: a subset of gopsutil's host, memory and CPU facts read from
/// `/proc` (what is missing on this platform is reported under `Errors`).
pub(super) async fn host(p: Params) -> Result<Response, ApiError> {
    let body = tokio::task::spawn_blocking(host_info)
        .await
        .map_err(|e| ApiError::Internal(format!("collecting host info: {e}")))?;
    Ok(reply::json(&body, p.pretty()))
}

fn host_info() -> Value {
    let mut errors: Vec<String> = Vec::new();
    let mut read = |path: &str| match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(format!("{path}: {e}"));
            None
        }
    };
    let memory = read("/proc/meminfo").map(|s| memory_info(&s));
    let cpu = read("/proc/cpuinfo").map(|s| cpu_info(&s));
    let hostname = read("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned());
    let kernel = read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned());
    let uptime = read("/proc/uptime")
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|u| u.parse::<f64>().ok())
        })
        .map(|u| u as u64);
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let procs = std::fs::read_dir("/proc").map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count()
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = json!({
        "hostname": hostname.unwrap_or_default(),
        "uptime": uptime.unwrap_or(0),
        "bootTime": uptime.map_or(0, |u| now.as_secs().saturating_sub(u)),
        "procs": procs,
        "os": std::env::consts::OS,
        "platform": os_field("ID"),
        "platformFamily": os_field("ID_LIKE"),
        "platformVersion": os_field("VERSION_ID"),
        "kernelVersion": kernel.unwrap_or_default(),
        "kernelArch": std::env::consts::ARCH,
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostId": machine_id,
    });
    json!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host,
        "Disk": null,
        "CollectionTime": u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
        "Errors": if errors.is_empty() { Value::Null } else { json!(errors) },
    })
}

/// gopsutil's `VirtualMemoryStat` from `/proc/meminfo` (values in bytes).
fn memory_info(meminfo: &str) -> Value {
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal");
    let free = kb("MemFree");
    let buffers = kb("Buffers");
    let cached = kb("Cached") + kb("SReclaimable");
    let available = kb("MemAvailable");
    let used = total.saturating_sub(free + buffers + cached);
    let used_percent = if total == 0 {
        0.0
    } else {
        used as f64 / total as f64 * 100.0
    };
    json!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": used_percent,
        "free": free,
        "buffers": buffers,
        "cached": cached,
        "shared": kb("Shmem"),
        "swapTotal": kb("SwapTotal"),
        "swapFree": kb("SwapFree"),
    })
}

/// gopsutil's `[]InfoStat` from `/proc/cpuinfo` (one entry per logical CPU).
fn cpu_info(cpuinfo: &str) -> Value {
    let cpus: Vec<Value> = cpuinfo
        .split("\n\n")
        .filter(|block| block.contains("processor"))
        .map(|block| {
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == key).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let num = |key: &str| field(key).parse::<f64>().unwrap_or(0.0);
            let flags = {
                let f = field("flags");
                if f.is_empty() {
                    field("Features")
                } else {
                    f
                }
            };
            json!({
                "cpu": num("processor") as u64,
                "vendorId": field("vendor_id"),
                "family": field("cpu family"),
                "model": field("model"),
                "stepping": num("stepping") as u64,
                "physicalId": field("physical id"),
                "coreId": field("core id"),
                "cores": (num("cpu cores") as u64).max(1),
                "modelName": field("model name"),
                "mhz": num("cpu MHz"),
                "cacheSize": field("cache size")
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0),
                "flags": flags.split_whitespace().collect::<Vec<_>>(),
                "microcode": field("microcode"),
            })
        })
        .collect();
    Value::Array(cpus)
}
