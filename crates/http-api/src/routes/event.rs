//! `/v1/event/fire/{name}` and `/v1/event/list`, from Consul's
//! `agent/event_endpoint.go`.
//!
//! Events are agent-local and unordered (gossip, best effort), so the list's
//! `X-Consul-Index` is not a raft index: it is the last listed event's ID folded to 64
//! bits (Consul's `uuidToUint64`), or 1 when nothing matches, and a blocking list
//! waits while that value equals the requested `index` — "changed", not "greater".

use super::AppState;
use crate::backend::UserEvent;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::Serialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/event/fire/{*name}", put(fire))
        .route("/v1/event/fire/", put(fire_unnamed))
        .route("/v1/event/list", get(list))
}

/// Consul's `UserEvent` JSON.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventOut {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    /// Base64 (Go `[]byte`), `null` without a payload.
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl From<&UserEvent> for EventOut {
    fn from(e: &UserEvent) -> Self {
        use base64::Engine;
        EventOut {
            id: e.id.clone(),
            name: e.name.clone(),
            payload: e
                .payload
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            node_filter: e.node_filter.clone(),
            service_filter: e.service_filter.clone(),
            tag_filter: e.tag_filter.clone(),
            version: e.version,
            ltime: e.ltime,
        }
    }
}

/// Consul's `uuidToUint64`: the UUID's two 64-bit halves XORed.
pub(crate) fn uuid_to_u64(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let lo = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let hi = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lo ^ hi
}

async fn fire_unnamed() -> ApiError {
    ApiError::bad("Missing name")
}

async fn fire(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    if name.is_empty() {
        return Err(ApiError::bad("Missing name"));
    }
    let filter = |k: &str| p.get(k).unwrap_or_default().to_owned();
    let event = UserEvent {
        name,
        payload: (!body.is_empty()).then(|| body.to_vec()),
        node_filter: filter("node"),
        service_filter: filter("service"),
        tag_filter: filter("tag"),
        ..Default::default()
    };
    let sent = st.backend.fire_event(event).await?;
    Ok(reply::json(&EventOut::from(&sent), p.pretty()))
}

async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let opts = p.query_options(st.config.query_times)?;
    let name = p.get("name").unwrap_or_default().to_owned();
    let mut changes = st.backend.event_changes();
    let deadline = tokio::time::Instant::now() + opts.max_wait;
    loop {
        // Mark the current value seen before reading, so an event arriving between the
        // read and the wait still wakes us.
        changes.borrow_and_update();
        let events: Vec<UserEvent> = st
            .backend
            .events()
            .into_iter()
            .filter(|e| name.is_empty() || e.name == name)
            .collect();
        // Never 0: a watcher with no matching events must not spin.
        let index = events.last().map_or(1, |e| uuid_to_u64(&e.id));
        let waiting = opts.min_index > 0 && index == opts.min_index;
        if waiting && tokio::time::Instant::now() < deadline {
            let woke = tokio::time::timeout_at(deadline, changes.changed()).await;
            if matches!(woke, Ok(Ok(()))) {
                continue;
            }
        }
        let out: Vec<EventOut> = events.iter().map(EventOut::from).collect();
        let mut resp = (StatusCode::OK, reply::to_json(&out, p.pretty())).into_response();
        let h = resp.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(crate::reply::X_CONSUL_INDEX, HeaderValue::from(index));
        return Ok(resp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_folds_like_consul() {
        assert_eq!(uuid_to_u64("00000000-0000-0001-0000-000000000003"), 1 ^ 3);
        assert_eq!(uuid_to_u64("ffffffff-ffff-ffff-ffff-ffffffffffff"), 0);
        assert_eq!(uuid_to_u64("nope"), 0);
    }
}
