//! Locally registered checks: `GET /v1/agent/checks`, `PUT /v1/agent/check/register`,
//! `/deregister/{id}`, and the TTL updates `/pass|warn|fail/{id}?note=` and
//! `/update/{id}` (body `{Status, Output}`).
//!
//! Error order and texts follow Consul: an unknown check is a 404 ("Unknown check ID …",
//! from `vetCheckUpdateWithAuthorizer`) before a non-TTL check is a 500 ("CheckID … does
//! not have associated TTL", from `updateTTLCheck`). TTL output is truncated to the
//! check's `OutputMaxSize` the way `CheckTTL.SetStatus` does it.

use super::{filter_for, filtered_map, go_quote, ok_empty, path_id, unknown_check, AppState};
use crate::backend::LocalCheck;
use crate::dto::input::CheckIn;
use crate::error::ApiError;
use crate::json_in::decode;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tribune_types::model::CheckDefinition;
use tribune_types::{format_go_duration, HealthStatus};

/// Fields of `structs.HealthCheck` that `?filter=` may name (the ones without `bexpr:"-"`).
const CHECK_FIELDS: &[&str] = &[
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "ExposedPort",
    "PeerName",
];

/// Consul's default `OutputMaxSize`.
const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

/// `structs.HealthCheck` as the agent endpoints render it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AgentCheckOut {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: &'static str,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    r#type: String,
    interval: String,
    timeout: String,
    exposed_port: u16,
    definition: Value,
    create_index: u64,
    modify_index: u64,
}

impl AgentCheckOut {
    /// The check's status string; maintenance is stored and shown as `critical`.
    pub(super) fn status(&self) -> &'static str {
        self.status
    }

    /// The check's ID.
    pub(super) fn check_id(&self) -> &str {
        &self.check_id
    }
}

/// `HealthCheckDefinition` as Consul marshals it: only the fields that are set, with
/// durations as Go duration strings.
fn definition_json(d: &CheckDefinition) -> Value {
    let mut m = Map::new();
    let mut s = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    s("HTTP", &d.http);
    s("TLSServerName", &d.tls_server_name);
    s("Method", &d.method);
    s("Body", &d.body);
    s("TCP", &d.tcp);
    s("UDP", &d.udp);
    s("H2PING", &d.h2ping);
    s("OSService", &d.os_service);
    s("DockerContainerID", &d.docker_container_id);
    s("Shell", &d.shell);
    s("GRPC", &d.grpc);
    s("AliasNode", &d.alias_node);
    s("AliasService", &d.alias_service);
    for (k, v) in [
        ("TLSSkipVerify", d.tls_skip_verify),
        ("DisableRedirects", d.disable_redirects),
        ("GRPCUseTLS", d.grpc_use_tls),
        ("H2PingUseTLS", d.h2ping_use_tls),
    ] {
        if v {
            m.insert(k.to_owned(), Value::Bool(true));
        }
    }
    if !d.header.is_empty() {
        m.insert("Header".into(), serde_json::json!(d.header));
    }
    if !d.args.is_empty() {
        m.insert("ScriptArgs".into(), serde_json::json!(d.args));
    }
    for (k, v) in [
        ("Interval", d.interval),
        ("Timeout", d.timeout),
        (
            "DeregisterCriticalServiceAfter",
            d.deregister_critical_service_after,
        ),
        ("TTL", d.ttl),
    ] {
        if let Some(v) = v.filter(|v| !v.is_zero()) {
            m.insert(k.to_owned(), Value::String(format_go_duration(v)));
        }
    }
    if d.output_max_size > 0 {
        m.insert("OutputMaxSize".into(), Value::from(d.output_max_size));
    }
    Value::Object(m)
}

/// Renders a local check; the definition fills in what the synced record lacks.
pub(super) fn render_check(lc: &LocalCheck) -> AgentCheckOut {
    let c = &lc.check;
    let d = &lc.definition;
    let or_def = |own: &str, def: Option<std::time::Duration>| {
        if own.is_empty() {
            def.map(format_go_duration).unwrap_or_default()
        } else {
            own.to_owned()
        }
    };
    AgentCheckOut {
        node: c.node.to_string(),
        check_id: c.check_id.to_string(),
        name: c.name.clone(),
        status: match c.status {
            HealthStatus::Maintenance => HealthStatus::Critical.as_str(),
            s => s.as_str(),
        },
        notes: c.notes.clone(),
        output: c.output.clone(),
        service_id: c.service_id.clone(),
        service_name: c.service_name.clone(),
        service_tags: c.service_tags.clone(),
        r#type: if c.check_type.is_empty() {
            d.check_type().to_owned()
        } else {
            c.check_type.clone()
        },
        interval: or_def(&c.interval, d.interval),
        timeout: or_def(&c.timeout, d.timeout),
        exposed_port: 0,
        definition: definition_json(d),
        create_index: c.raft.create_index,
        modify_index: c.raft.modify_index,
    }
}

/// `GET /v1/agent/checks[?filter=]`: check ID → HealthCheck.
pub(super) async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filter = filter_for(&p, CHECK_FIELDS)?;
    let checks = st.backend.local_checks();
    let rows = checks
        .iter()
        .map(|lc| (lc.check.check_id.to_string(), render_check(lc)));
    Ok(reply::json(
        &filtered_map(rows, filter.as_ref())?,
        p.pretty(),
    ))
}

/// `PUT /v1/agent/check/register`.
pub(super) async fn register(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: CheckIn = decode(&body)?;
    // Checked on the body, before `to_definition` defaults the name to the ID.
    if input.name.is_empty() {
        return Err(ApiError::bad("Missing check name"));
    }
    if !matches!(
        input.status.as_str(),
        "" | "passing" | "warning" | "critical"
    ) {
        return Err(ApiError::bad("Bad check status"));
    }
    let def = input.to_definition("")?;
    CheckIn::validate_agent(&def)?;
    if !def.service_id.is_empty()
        && !st
            .backend
            .local_services()
            .iter()
            .any(|s| s.id.as_str() == def.service_id)
    {
        return Err(ApiError::NotFound(format!(
            "ServiceID {} does not exist",
            go_quote(&def.service_id)
        )));
    }
    st.backend.register_check(def).await?;
    Ok(ok_empty())
}

/// `PUT /v1/agent/check/deregister/{id}`; 404 for an unknown ID (current Consul).
pub(super) async fn deregister(
    State(st): State<AppState>,
    id: Option<Path<String>>,
) -> Result<Response, ApiError> {
    let id = path_id(id);
    if !st
        .backend
        .local_checks()
        .iter()
        .any(|c| c.check.check_id.as_str() == id)
    {
        return Err(unknown_check(&id));
    }
    st.backend.deregister_check(&id).await?;
    Ok(ok_empty())
}

/// Cuts `output` to `max` bytes as `CheckTTL.SetStatus` does, marking the cut. Go slices
/// bytes; we back off to a character boundary so the text stays valid UTF-8.
fn truncate_output(output: String, max_size: u32) -> String {
    let max = match usize::try_from(max_size) {
        Ok(0) | Err(_) => DEFAULT_OUTPUT_MAX_SIZE,
        Ok(n) => n,
    };
    let total = output.len();
    if total <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ... (captured {max} of {total} bytes)", &output[..cut])
}

/// Sets a TTL check's status: 404 for an unknown check, 500 for a check that is not a
/// TTL check, otherwise the backend records it (and restarts the TTL).
async fn ttl_update(
    st: &AppState,
    id: &str,
    status: HealthStatus,
    output: String,
) -> Result<Response, ApiError> {
    let checks = st.backend.local_checks();
    let Some(lc) = checks.iter().find(|c| c.check.check_id.as_str() == id) else {
        return Err(unknown_check(id));
    };
    if lc.definition.ttl.is_none() {
        return Err(ApiError::Internal(format!(
            "CheckID {} does not have associated TTL",
            go_quote(id)
        )));
    }
    let output = truncate_output(output, lc.definition.output_max_size);
    st.backend.update_ttl_check(id, status, output).await?;
    Ok(ok_empty())
}

/// The `?note=` of pass/warn/fail (empty when absent, like Go's `Query().Get`).
fn note(p: &Params) -> String {
    p.get("note").unwrap_or("").to_owned()
}

/// `PUT /v1/agent/check/pass/{id}[?note=]`.
pub(super) async fn pass(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    ttl_update(&st, &path_id(id), HealthStatus::Passing, note(&p)).await
}

/// `PUT /v1/agent/check/warn/{id}[?note=]`.
pub(super) async fn warn(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    ttl_update(&st, &path_id(id), HealthStatus::Warning, note(&p)).await
}

/// `PUT /v1/agent/check/fail/{id}[?note=]`.
pub(super) async fn fail(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    ttl_update(&st, &path_id(id), HealthStatus::Critical, note(&p)).await
}

/// The body of `/v1/agent/check/update/{id}` (keys canonicalised by `decode`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckUpdateIn {
    #[serde(rename = "status", deserialize_with = "crate::dto::de_null_default")]
    status: String,
    #[serde(rename = "output", deserialize_with = "crate::dto::de_null_default")]
    output: String,
}

/// `PUT /v1/agent/check/update/{id}` with `{Status, Output}`.
pub(super) async fn update(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: CheckUpdateIn = decode(&body)?;
    let status = match input.status.as_str() {
        "passing" => HealthStatus::Passing,
        "warning" => HealthStatus::Warning,
        "critical" => HealthStatus::Critical,
        other => return Err(ApiError::bad(format!("Invalid check status: '{other}'"))),
    };
    ttl_update(&st, &path_id(id), status, input.output).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_like_check_ttl() {
        assert_eq!(truncate_output("abc".into(), 3), "abc");
        assert_eq!(
            truncate_output("abcdef".into(), 3),
            "abc ... (captured 3 of 6 bytes)"
        );
        // A multi-byte character straddling the limit is dropped whole.
        assert_eq!(
            truncate_output("aé".into(), 2),
            "a ... (captured 2 of 3 bytes)"
        );
        assert_eq!(
            truncate_output("x".repeat(5000), 0).len(),
            4096 + " ... (captured 4096 of 5000 bytes)".len()
        );
    }
}
