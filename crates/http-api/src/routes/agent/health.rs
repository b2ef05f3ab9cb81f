//! Local service health for load balancers: `GET /v1/agent/health/service/id/{id}` and
//! `/name/{name}` (Consul's `AgentHealthServiceByID`/`ByName`).
//!
//! The status code carries the answer: 200 passing, 429 warning, 503 critical or in
//! maintenance, 404 unknown. The body is `{AggregatedStatus, Service, Checks}` (a list of
//! them by name), or just the status word with `?format=text` or `Accept: text/plain`.
//! A service's checks include the node's own checks (node maintenance makes every
//! service unavailable).

use super::checks::{render_check, AgentCheckOut};
use super::services::render_service;
use super::{path_id, AppState};
use crate::backend::LocalCheck;
use crate::dto::output::AgentServiceOut;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Check IDs Consul treats as maintenance when aggregating (`api.NodeMaint`,
/// `api.ServiceMaintPrefix`).
const NODE_MAINT: &str = "_node_maintenance";
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

/// `api.AgentServiceChecksInfo`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceChecksInfo {
    aggregated_status: String,
    service: Option<AgentServiceOut>,
    checks: Option<Vec<AgentCheckOut>>,
}

/// `api.HealthChecks.AggregatedStatus`: maintenance beats critical beats warning beats
/// passing; no checks at all is passing.
fn aggregated_status(checks: &[AgentCheckOut]) -> &'static str {
    let (mut maintenance, mut critical, mut warning) = (false, false, false);
    for c in checks {
        if c.check_id() == NODE_MAINT || c.check_id().starts_with(SERVICE_MAINT_PREFIX) {
            maintenance = true;
            continue;
        }
        match c.status() {
            "passing" => {}
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return "",
        }
    }
    if maintenance {
        "maintenance"
    } else if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        "passing"
    }
}

fn status_code(aggregated: &str) -> StatusCode {
    match aggregated {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Consul's `returnTextPlain`: an `Accept: text/plain…` header wins, then `?format=`.
fn wants_text(headers: &HeaderMap, p: &Params) -> bool {
    if headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
    {
        return true;
    }
    matches!(p.get("format"), Some("text"))
}

fn text(code: StatusCode, body: String) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// The checks that decide a service's health: its own and the node's, by check ID.
fn service_checks(checks: &[LocalCheck], service_id: &str) -> Vec<AgentCheckOut> {
    let mut out: Vec<&LocalCheck> = checks
        .iter()
        .filter(|c| c.check.service_id.is_empty() || c.check.service_id == service_id)
        .collect();
    out.sort_by(|a, b| a.check.check_id.cmp(&b.check.check_id));
    out.into_iter().map(render_check).collect()
}

/// `GET /v1/agent/health/service/id/{id}`.
pub(super) async fn by_id(
    State(st): State<AppState>,
    id: Option<Path<String>>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let id = path_id(id);
    if id.is_empty() {
        return Err(ApiError::bad("Missing serviceID"));
    }
    let as_text = wants_text(&headers, &p);
    let Some(svc) = st
        .backend
        .local_services()
        .into_iter()
        .find(|s| s.id.as_str() == id)
    else {
        let reason = format!("ServiceId {id} not found");
        if as_text {
            return Ok(with_reason(
                text(StatusCode::NOT_FOUND, reason.clone()),
                &reason,
            ));
        }
        let body = ServiceChecksInfo {
            aggregated_status: "critical".into(),
            service: None,
            checks: None,
        };
        let resp = reply::json_status(StatusCode::NOT_FOUND, &body, p.pretty());
        return Ok(with_reason(resp, &reason));
    };
    let checks = service_checks(&st.backend.local_checks(), &id);
    let status = aggregated_status(&checks);
    let code = status_code(status);
    if as_text {
        return Ok(with_reason(text(code, status.to_owned()), status));
    }
    let body = ServiceChecksInfo {
        aggregated_status: status.into(),
        service: Some(render_service(&svc, &st.backend.agent_info().datacenter)),
        checks: Some(checks),
    };
    Ok(with_reason(
        reply::json_status(code, &body, p.pretty()),
        status,
    ))
}

/// `GET /v1/agent/health/service/name/{name}`: every local instance of the service; the
/// code and text are the worst instance's, 404 when there is none.
pub(super) async fn by_name(
    State(st): State<AppState>,
    name: Option<Path<String>>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let name = path_id(name);
    if name.is_empty() {
        return Err(ApiError::bad("Missing service Name"));
    }
    let dc = st.backend.agent_info().datacenter;
    let all_checks = st.backend.local_checks();
    let mut services: Vec<_> = st
        .backend
        .local_services()
        .into_iter()
        .filter(|s| s.service == name)
        .collect();
    services.sort_by(|a, b| a.id.cmp(&b.id));

    let mut code = StatusCode::NOT_FOUND;
    let mut status = format!("ServiceName {name} Not Found");
    let mut infos = Vec::with_capacity(services.len());
    for svc in &services {
        let checks = service_checks(&all_checks, svc.id.as_str());
        let s_status = aggregated_status(&checks);
        let s_code = status_code(s_status);
        // The first instance replaces "not found"; after that the worst code wins
        // (200 < 429 < 503).
        if code == StatusCode::NOT_FOUND || code < s_code {
            code = s_code;
            s_status.clone_into(&mut status);
        }
        infos.push(ServiceChecksInfo {
            aggregated_status: s_status.into(),
            service: Some(render_service(svc, &dc)),
            checks: Some(checks),
        });
    }
    if wants_text(&headers, &p) {
        return Ok(with_reason(text(code, status.clone()), &status));
    }
    Ok(with_reason(
        reply::json_status(code, &infos, p.pretty()),
        &status,
    ))
}

/// Consul sends the aggregated status (or why nothing was found) as
/// `X-Consul-Reason` next to the code that encodes it.
fn with_reason(mut resp: Response, reason: &str) -> Response {
    // Bytes, not `from_str`: a service name may hold UTF-8, which Go sends as it is.
    if let Ok(value) = axum::http::HeaderValue::from_bytes(reason.as_bytes()) {
        resp.headers_mut().insert("x-consul-reason", value);
    }
    resp
}
