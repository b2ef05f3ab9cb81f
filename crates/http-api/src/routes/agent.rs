//! Routes under `/v1/agent`: the local agent's identity, gossip members, locally
//! registered services and checks (with TTL updates and maintenance mode), per-service
//! health for load balancers, and agent operations (join, leave, reload).
//!
//! Behaviour, status codes and error texts follow Consul's `agent/agent_endpoint.go`;
//! the submodules say where a detail comes from. Every route that takes an ID uses a
//! catch-all segment, because IDs may contain `/` (`batman%2Fpg1` is `batman/pg1` after
//! axum's percent-decoding), and is also registered with a bare trailing slash so that an
//! empty ID reaches the handler the way Consul's prefix routes let it.
//!
//! - [`info`]: `/self`, `/members`, `/version`, `/host`.
//! - [`services`]: `/services`, `/service/{id}` (hash blocking), register, deregister,
//!   service maintenance.
//! - [`checks`]: `/checks`, check register, deregister, pass/warn/fail/update.
//! - [`health`]: `/health/service/id/{id}` and `/health/service/name/{name}`.
//! - [`ops`]: node maintenance, join, leave, force-leave, reload (`/token/{name}` is
//!   with the ACL routes).
//! - [`content_hash`]: Consul's `ContentHash` for hash-based blocking.

mod checks;
mod content_hash;
mod health;
mod info;
mod metrics;
mod monitor;
mod ops;
pub(crate) mod services;

use super::AppState;
use crate::error::ApiError;
use crate::filter::Filter;
use crate::params::Params;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put, MethodRouter};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tribune_types::goflag::parse_go_bool;

pub(super) fn routes() -> Router<AppState> {
    let r = Router::new()
        .route("/v1/agent/self", get(info::agent_self))
        .route("/v1/agent/members", get(info::members))
        .route("/v1/agent/version", get(info::version))
        .route("/v1/agent/host", get(info::host))
        .route("/v1/agent/services", get(services::list))
        .route("/v1/agent/service/register", put(services::register))
        .route("/v1/agent/checks", get(checks::list))
        .route("/v1/agent/check/register", put(checks::register))
        .route("/v1/agent/maintenance", put(ops::node_maintenance))
        .route("/v1/agent/leave", put(ops::leave))
        .route("/v1/agent/reload", put(ops::reload))
        .route("/v1/agent/monitor", get(monitor::stream))
        .route("/v1/agent/metrics", get(metrics::render));
    [
        ("/v1/agent/service", get(services::get_one)),
        ("/v1/agent/service/deregister", put(services::deregister)),
        ("/v1/agent/service/maintenance", put(services::maintenance)),
        ("/v1/agent/check/deregister", put(checks::deregister)),
        ("/v1/agent/check/pass", put(checks::pass)),
        ("/v1/agent/check/warn", put(checks::warn)),
        ("/v1/agent/check/fail", put(checks::fail)),
        ("/v1/agent/check/update", put(checks::update)),
        ("/v1/agent/health/service/id", get(health::by_id)),
        ("/v1/agent/health/service/name", get(health::by_name)),
        ("/v1/agent/join", put(ops::join)),
        ("/v1/agent/force-leave", put(ops::force_leave)),
    ]
    .into_iter()
    .fold(r, |r, (prefix, handler)| with_id(r, prefix, handler))
}

/// Registers `prefix/{*id}` and `prefix/` (empty ID) for one handler taking
/// `Option<Path<String>>`, so both reach the same code, as under Consul's prefix routes.
fn with_id(r: Router<AppState>, prefix: &str, handler: MethodRouter<AppState>) -> Router<AppState> {
    r.route(&format!("{prefix}/"), handler.clone())
        .route(&format!("{prefix}/{{*id}}"), handler)
}

/// The ID captured by a [`with_id`] route (empty on the bare-prefix route).
fn path_id(id: Option<axum::extract::Path<String>>) -> String {
    id.map(|axum::extract::Path(s)| s).unwrap_or_default()
}

/// Consul's writes answer `nil`: status 200 with an empty body.
fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

/// Go's `%q` (`strconv.Quote`), which Consul uses to quote IDs in error texts.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The required `?enable=` of the maintenance endpoints, with Consul's two 400s.
fn enable_param(p: &Params) -> Result<bool, ApiError> {
    let Some(raw) = p.get("enable") else {
        return Err(ApiError::bad("Missing value for enable"));
    };
    parse_go_bool(raw)
        .ok_or_else(|| ApiError::bad(format!("Invalid value for enable: {}", go_quote(raw))))
}

/// Consul's 404 for a write naming a service the agent does not have.
fn unknown_service(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown service ID {}. Ensure that the service ID is passed, not the service name.",
        go_quote(id)
    ))
}

/// Consul's 404 for a write naming a check the agent does not have.
fn unknown_check(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown check ID {}. Ensure that the check ID is passed, not the check name.",
        go_quote(id)
    ))
}

/// Parses `?filter=` and rejects selectors outside `fields` (the result type's
/// filterable fields) with go-bexpr's 400, as Consul does when it creates the filter.
fn filter_for(p: &Params, fields: &[&str]) -> Result<Option<Filter>, ApiError> {
    let filter = p.filter()?;
    if let Some(f) = &filter {
        f.validate_fields(fields).map_err(|e| {
            ApiError::bad(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?;
    }
    Ok(filter)
}

/// Renders `rows` as a JSON object keyed by ID (Go sorts map keys), keeping the rows the
/// filter accepts. The filter runs on each value, as Consul's bexpr does over its maps.
fn filtered_map<T: Serialize>(
    rows: impl IntoIterator<Item = (String, T)>,
    filter: Option<&Filter>,
) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut out = BTreeMap::new();
    for (id, row) in rows {
        let v = serde_json::to_value(&row).map_err(|e| ApiError::Internal(e.to_string()))?;
        let keep = match filter {
            None => true,
            Some(f) => f
                .matches(&v)
                .map_err(|e| ApiError::bad(format!("Failed to evaluate filter: {e}")))?,
        };
        if keep {
            out.insert(id, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("web"), "\"web\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("x\ny\u{1}"), "\"x\\ny\\x01\"");
        assert_eq!(go_quote("é/ü"), "\"é/ü\"");
    }

    #[test]
    fn parse_bool_like_go() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool(""), None);
        assert_eq!(parse_go_bool("yes"), None);
    }
}
