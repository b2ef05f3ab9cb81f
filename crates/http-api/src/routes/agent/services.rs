//! Locally registered services: `GET /v1/agent/services`, `GET /v1/agent/service/{id}`
//! (hash-based blocking), `PUT /v1/agent/service/register`, `/deregister/{id}` and
//! `/maintenance/{id}`.
//!
//! Registration validates everything (body, checks, the sidecar it may declare) before the
//! first backend call, so a rejected request changes nothing. Texts are Consul's
//! (`AgentRegisterService`, `NodeService.Validate`, `sidecarServiceFromNodeService`).

use super::{
    content_hash, enable_param, filter_for, filtered_map, ok_empty, path_id, unknown_service,
    AppState,
};
use crate::backend::{BackendError, ServiceRegistration};
use crate::dto::input::{CheckIn, ServiceIn};
use crate::dto::output::AgentServiceOut;
use crate::error::ApiError;
use crate::json_in::decode;
use crate::params::{Params, QueryTimes};
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::time::Instant;
use tribune_types::model::{CheckDefinition, Service};
use tribune_types::parse_go_duration;

/// Fields of `api.AgentService` that `?filter=` may name (the ones without `bexpr:"-"`).
const SERVICE_FIELDS: &[&str] = &[
    "Kind",
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "SocketPath",
    "TaggedAddresses",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
    "PeerName",
];

/// Kinds whose agent view carries a `Proxy` block (Consul: connect-proxy and gateways).
fn is_proxy_kind(kind: &str) -> bool {
    matches!(
        kind,
        "connect-proxy"
            | "mesh-gateway"
            | "terminating-gateway"
            | "ingress-gateway"
            | "api-gateway"
    )
}

/// Looks a key up the way request bodies are matched: case- and underscore-insensitively
/// (stored opaque JSON keeps whatever spelling the body used).
fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    crate::json_in::get_ci(obj.as_object()?, key)
}

/// The agent view of a service as Consul's `buildAgentService` renders it: `Proxy` only
/// for proxies and gateways, `Connect` only as `{Native: true}`, plus the datacenter.
pub(super) fn render_service(s: &Service, dc: &str) -> AgentServiceOut {
    let mut out = AgentServiceOut::agent(s);
    if is_proxy_kind(&s.kind) {
        out.proxy.get_or_insert_with(|| json!({}));
    } else {
        out.proxy = None;
    }
    let native = out
        .connect
        .as_ref()
        .and_then(|c| get_ci(c, "native"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    out.connect = native.then(|| json!({"Native": true}));
    out.datacenter = Some(dc.to_owned());
    out
}

/// `GET /v1/agent/services[?filter=]`: ID → AgentService.
pub(super) async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filter = filter_for(&p, SERVICE_FIELDS)?;
    let dc = st.backend.agent_info().datacenter;
    let services = st.backend.local_services();
    let rows = services
        .iter()
        .map(|s| (s.id.to_string(), render_service(s, &dc)));
    Ok(reply::json(
        &filtered_map(rows, filter.as_ref())?,
        p.pretty(),
    ))
}

/// The wait of a hash-blocking query, as Consul's `LocalBlockingQuery` computes it:
/// `?wait` (default 5 min, at most 10: its own constants, not the configured
/// query times), plus up to wait/16 of random jitter.
fn hash_wait(p: &Params) -> Result<Duration, ApiError> {
    let asked = match p.get("wait") {
        None | Some("") => Duration::ZERO,
        Some(w) => parse_go_duration(w).map_err(|_| ApiError::bad("Invalid wait time"))?,
    };
    Ok(QueryTimes::default().wait(asked))
}

/// The service's current reply and its hash, or Consul's 404.
fn current(st: &AppState, id: &str) -> Result<(String, AgentServiceOut), ApiError> {
    let Some(svc) = st
        .backend
        .local_services()
        .into_iter()
        .find(|s| s.id.as_str() == id)
    else {
        return Err(ApiError::NotFound(format!("unknown service ID: {id}")));
    };
    let mut out = render_service(&svc, &st.backend.agent_info().datacenter);
    let hash = content_hash::agent_service_hash(&out);
    out.content_hash = Some(hash.clone());
    Ok((hash, out))
}

/// `GET /v1/agent/service/{id}[?hash=H&wait=D]`: one service with its `ContentHash`
/// (also in `X-Consul-ContentHash`). With `hash`, waits while the hash still equals it.
pub(super) async fn get_one(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = path_id(id);
    // Consul parses `wait` even without `hash` and rejects a malformed one.
    let wait = hash_wait(&p)?;
    let want = p.get("hash").unwrap_or("").to_owned();
    let deadline = (!want.is_empty()).then(|| Instant::now() + wait);
    // Subscribed before the first read: `Backend::local_changes` ticks on every change
    // to local services or checks, and the hash is recomputed after each tick (ticks
    // for other services are harmless re-checks).
    let mut changes = Some(st.backend.local_changes());
    let (hash, out) = loop {
        // Mark the current version seen *before* reading state, so a change that lands
        // between the read and the wait still wakes us.
        if let Some(rx) = changes.as_mut() {
            rx.borrow_and_update();
        }
        let (hash, out) = current(&st, &id)?;
        let Some(deadline) = deadline else {
            break (hash, out);
        };
        if hash != want || Instant::now() >= deadline {
            break (hash, out);
        }
        match changes.as_mut() {
            Some(rx) => {
                tokio::select! {
                    changed = rx.changed() => {
                        // The notifier went away (agent shutting down): stop listening
                        // and wait out the deadline instead of spinning.
                        if changed.is_err() {
                            changes = None;
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => tokio::time::sleep_until(deadline).await,
        }
    };
    let mut resp = reply::json(&out, p.pretty());
    if let Ok(v) = HeaderValue::from_str(&hash) {
        resp.headers_mut().insert("x-consul-contenthash", v);
    }
    Ok(resp)
}

/// `?replace-existing-checks` as Consul reads it: present and empty, or exactly `true`.
fn replace_existing_checks(p: &Params) -> bool {
    p.has("replace-existing-checks")
        && matches!(p.get("replace-existing-checks"), Some("" | "true"))
}

/// Go's `ipaddr.IsAny`: `0.0.0.0`, `::` or `[::]`.
fn is_any(addr: &str) -> bool {
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// Consul's `structs.ValidateWeights` (before defaults are applied).
fn validate_weights(s: &ServiceIn) -> Result<(), ApiError> {
    let Some(w) = &s.weights else { return Ok(()) };
    let err = if w.passing < 1 {
        "Passing must be greater than 0"
    } else if w.warning < 0 {
        "Warning must be greater or equal than 0"
    } else if w.passing > 65535 || w.warning > 65535 {
        "DNS Weight must be between 0 and 65535"
    } else {
        return Ok(());
    };
    Err(ApiError::bad(format!("Invalid Weights: {err}")))
}

/// hashicorp/go-multierror's text, which Consul's validation errors are wrapped in.
fn multierror(errs: &[&str]) -> String {
    let head = if errs.len() == 1 {
        "1 error occurred:".to_owned()
    } else {
        format!("{} errors occurred:", errs.len())
    };
    let items: String = errs.iter().map(|e| format!("\n\t* {e}")).collect();
    format!("{head}{items}\n\n")
}

/// The part of Consul's `NodeService.Validate` that applies to agent registrations of
/// Connect proxies; the error is the multierror text the caller prefixes.
fn validate_node_service(s: &Service) -> Result<(), String> {
    if s.kind != "connect-proxy" {
        return Ok(());
    }
    let proxy: Value = s
        .proxy_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    let connect: Value = s
        .connect_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    let mut errs = Vec::new();
    let dest = get_ci(&proxy, "destinationservicename")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    if dest.is_empty() {
        errs.push("Proxy.DestinationServiceName must be non-empty for Connect proxy services");
    } else if dest == "*" {
        errs.push("Proxy.DestinationServiceName must not be a wildcard for Connect proxy services");
    }
    if s.port == 0 && s.socket_path.is_empty() {
        errs.push("Port or SocketPath must be set for a Connect proxy");
    }
    if get_ci(&connect, "native").and_then(Value::as_bool) == Some(true) {
        errs.push("A Proxy cannot also be Connect Native, only typical services");
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(multierror(&errs))
    }
}

/// Rejects a check status other than Consul's three, with the text of `message`.
fn check_statuses<'a>(
    checks: impl IntoIterator<Item = &'a CheckIn>,
    message: &str,
) -> Result<(), ApiError> {
    for c in checks {
        if !matches!(c.status.as_str(), "" | "passing" | "warning" | "critical") {
            return Err(ApiError::bad(message));
        }
    }
    Ok(())
}

const BAD_STATUS: &str = "Status for checks must 'passing', 'warning', 'critical'";

/// Takes `Connect.SidecarService` out of a service definition (an API body or
/// a config file's): it is registration sugar that Consul never stores on the
/// parent service. Build the sidecar from it with [`sidecar_registration`].
pub fn take_sidecar(s: &mut ServiceIn) -> Option<Value> {
    let Some(Value::Object(connect)) = s.connect.as_mut() else {
        return None;
    };
    // `Connect` is kept as sent (see `json_in`), so find the key in any spelling.
    let key = connect
        .keys()
        .find(|k| crate::json_in::canonical(k) == "sidecarservice")
        .cloned()?;
    let sidecar = connect.remove(&key).filter(|v| !v.is_null());
    if connect.is_empty() {
        s.connect = None;
    }
    sidecar
}

fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f < 1.0),
        _ => false,
    }
}

/// Consul's `ipaddr.FormatAddressPort`.
fn address_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// Held from choosing a sidecar's automatic port until the sidecar is
/// registered ([`port_assignment`]).
static PORT_ASSIGNMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serialises sidecar registrations from choosing the port to registering:
/// two at once (two API requests, or one and a reload's config files) would
/// otherwise pick the same free port. Consul does both under its state lock.
pub async fn port_assignment() -> tokio::sync::MutexGuard<'static, ()> {
    PORT_ASSIGNMENT.lock().await
}

/// The port for sidecar `id` registered without one (Consul's
/// `sidecarPortFromServiceIDLocked`): the port it already holds in the range,
/// or else the lowest one no other local service holds. Consul answers a
/// failure here with a 500 after it has registered the parent; here it comes
/// before anything is registered, so the request changes nothing.
fn sidecar_port(
    local: &[Service],
    ports: Option<&RangeInclusive<u16>>,
    id: &str,
) -> Result<u16, ApiError> {
    let Some(range) = ports else {
        return Err(ApiError::Internal(
            "no port provided for sidecar_service and auto-assignment disabled in config".into(),
        ));
    };
    let in_range = || local.iter().filter(|s| range.contains(&s.port));
    if let Some(own) = in_range().find(|s| s.id.as_str() == id) {
        return Ok(own.port);
    }
    let used: std::collections::HashSet<u16> = in_range().map(|s| s.port).collect();
    range.clone().find(|p| !used.contains(p)).ok_or_else(|| {
        ApiError::Internal(format!(
            "no port provided for sidecar_service and none left in the configured range [{}, {}]",
            range.start(),
            range.end()
        ))
    })
}

/// Builds the sidecar proxy a `Connect.SidecarService` block declares, with Consul's
/// defaults (`sidecarServiceFromNodeService`): ID `<parent>-sidecar-proxy`, kind
/// `connect-proxy`, the parent's tags, meta and address when it has none, the
/// lowest free port of the configured sidecar range (kept across
/// re-registration), proxy destination/local-service settings pointing at the
/// parent, and the two default checks when it declares none. `local` is the
/// agent's services and `ports` its `sidecar_min_port..=sidecar_max_port`
/// (`None` when assignment is off).
pub fn sidecar_registration(
    parent: &Service,
    raw: Value,
    local: &[Service],
    ports: Option<&RangeInclusive<u16>>,
    replace_existing_checks: bool,
) -> Result<ServiceRegistration, ApiError> {
    // `Connect` is kept verbatim by `decode`, so normalise the nested definition here.
    let mut sc: ServiceIn = serde_json::from_value(crate::json_in::normalize(raw))
        .map_err(|e| ApiError::bad(format!("Invalid SidecarService: {e}")))?;
    let id = format!("{}-sidecar-proxy", parent.id);
    sc.id.clone_from(&id);
    if sc.name.is_empty() && sc.service.is_empty() {
        sc.name = format!("{}-sidecar-proxy", parent.service);
    }
    if sc.kind.is_empty() {
        sc.kind = "connect-proxy".into();
    }
    if sc.meta.is_empty() {
        sc.meta.clone_from(&parent.meta);
    }
    if sc.tags.is_empty() {
        sc.tags.clone_from(&parent.tags);
    }
    if sc.address.is_empty() {
        sc.address.clone_from(&parent.address);
    }
    let mut proxy = match sc.proxy.take() {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let unset =
        |proxy: &Map<String, Value>, key: &str| is_unset(crate::json_in::get_ci(proxy, key));
    let mut defaults = vec![
        ("DestinationServiceName", json!(parent.service)),
        ("DestinationServiceID", json!(parent.id.as_str())),
    ];
    // Where the proxy reaches its service, filled only when no part of it is
    // given: the parent's socket if it listens on one, otherwise 127.0.0.1
    // and the parent's port, each where missing (Consul's rule).
    if unset(&proxy, "LocalServiceSocketPath")
        && (unset(&proxy, "LocalServiceAddress") || unset(&proxy, "LocalServicePort"))
    {
        if parent.socket_path.is_empty() {
            defaults.push(("LocalServiceAddress", json!("127.0.0.1")));
            defaults.push(("LocalServicePort", json!(parent.port)));
        } else {
            defaults.push(("LocalServiceSocketPath", json!(parent.socket_path)));
        }
    }
    for (key, default) in defaults {
        if unset(&proxy, key) {
            // An unset value under another spelling gives way to the default.
            let want = crate::json_in::canonical(key);
            proxy.retain(|k, _| crate::json_in::canonical(k) != want);
            proxy.insert(key.to_owned(), default);
        }
    }
    let local_address = crate::json_in::get_ci(&proxy, "LocalServiceAddress")
        .and_then(Value::as_str)
        .unwrap_or("127.0.0.1")
        .to_owned();
    sc.proxy = Some(Value::Object(proxy));
    if sc.port == 0 {
        sc.port = sidecar_port(local, ports, &id)?;
    }
    let service = sc
        .to_service()
        .map_err(|e| ApiError::bad(format!("Invalid SidecarService: {e}")))?;
    validate_node_service(&service)
        .map_err(|e| ApiError::bad(format!("Failed Validation: {e}")))?;
    check_statuses(sc.check.iter().chain(sc.checks.iter()), BAD_STATUS)?;
    let mut checks = sc
        .check_definitions(&id)
        .map_err(|e| ApiError::bad(format!("Invalid check in sidecar_service: {e}")))?;
    if checks.is_empty() {
        let check_address = if service.address.is_empty() {
            local_address
        } else {
            service.address.clone()
        };
        checks = vec![
            CheckDefinition {
                id: format!("service:{id}:1").into(),
                name: "Connect Sidecar Listening".into(),
                service_id: id.clone(),
                tcp: address_port(&check_address, service.port),
                interval: Some(Duration::from_secs(10)),
                output_max_size: 4096,
                ..Default::default()
            },
            CheckDefinition {
                id: format!("service:{id}:2").into(),
                name: format!("Connect Sidecar Aliasing {}", parent.service),
                service_id: id.clone(),
                alias_service: parent.id.to_string(),
                output_max_size: 4096,
                ..Default::default()
            },
        ];
    }
    Ok(ServiceRegistration {
        service,
        checks,
        replace_existing_checks,
    })
}

/// `PUT /v1/agent/service/register[?replace-existing-checks]`.
pub(super) async fn register(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut input: ServiceIn = decode(&body)?;
    if input.name.is_empty() {
        return Err(ApiError::bad("Missing service name"));
    }
    if is_any(&input.address) {
        return Err(ApiError::bad("Invalid service address"));
    }
    validate_weights(&input)?;
    let sidecar = take_sidecar(&mut input);
    let service = input.to_service()?;
    validate_node_service(&service)
        .map_err(|e| ApiError::bad(format!("Validation failed: {e}")))?;
    check_statuses(input.check.iter().chain(input.checks.iter()), BAD_STATUS)?;
    let checks = input.check_definitions(service.id.as_str())?;
    let replace = replace_existing_checks(&p);
    let _assigning = match &sidecar {
        Some(_) => Some(port_assignment().await),
        None => None,
    };
    let sidecar = match sidecar {
        Some(raw) => Some(sidecar_registration(
            &service,
            raw,
            &st.backend.local_services(),
            st.config.sidecar_ports.as_ref(),
            replace,
        )?),
        None => None,
    };
    st.backend
        .register_service(ServiceRegistration {
            service,
            checks,
            replace_existing_checks: replace,
        })
        .await?;
    if let Some(reg) = sidecar {
        st.backend.register_service(reg).await?;
    }
    Ok(ok_empty())
}

/// Whether `s` is the sidecar the agent registered for service `parent_id`.
fn is_sidecar_of(s: &Service, parent_id: &str) -> bool {
    s.id.as_str() == format!("{parent_id}-sidecar-proxy")
        && s.proxy_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
            .is_some_and(|proxy| {
                get_ci(&proxy, "destinationserviceid").and_then(Value::as_str) == Some(parent_id)
            })
}

/// `PUT /v1/agent/service/deregister/{id}`: removes the service, its checks and the
/// sidecar registered with it; 404 for an unknown ID (current Consul).
pub(super) async fn deregister(
    State(st): State<AppState>,
    id: Option<Path<String>>,
) -> Result<Response, ApiError> {
    let id = path_id(id);
    let services = st.backend.local_services();
    if !services.iter().any(|s| s.id.as_str() == id) {
        return Err(unknown_service(&id));
    }
    st.backend.deregister_service(&id).await?;
    if let Some(sidecar) = services.iter().find(|s| is_sidecar_of(s, &id)) {
        st.backend.deregister_service(sidecar.id.as_str()).await?;
    }
    Ok(ok_empty())
}

/// `PUT /v1/agent/service/maintenance/{id}?enable=<bool>[&reason=]`.
pub(super) async fn maintenance(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = path_id(id);
    if id.is_empty() {
        return Err(ApiError::bad("Missing service ID"));
    }
    let enable = enable_param(&p)?;
    if !st
        .backend
        .local_services()
        .iter()
        .any(|s| s.id.as_str() == id)
    {
        return Err(unknown_service(&id));
    }
    let reason = p.get("reason").unwrap_or("").to_owned();
    // Consul answers any failure to toggle service maintenance with a 404.
    st.backend
        .set_maintenance(Some(&id), enable, reason)
        .await
        .map_err(|e| match e {
            BackendError::NotFound(m) => ApiError::NotFound(m),
            other => ApiError::from(other),
        })?;
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_addresses() {
        for a in ["0.0.0.0", "::", "[::]"] {
            assert!(is_any(a), "{a}");
        }
        for a in ["", "127.0.0.1", "example.com", "::1"] {
            assert!(!is_any(a), "{a}");
        }
    }

    #[test]
    fn multierror_text() {
        assert_eq!(multierror(&["a"]), "1 error occurred:\n\t* a\n\n");
        assert_eq!(
            multierror(&["a", "b"]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }
}
