//! Agent operations: `PUT /v1/agent/maintenance`, `/join/{addr}`, `/leave`,
//! `/force-leave/{node}` and `/reload` (`/token/{name}` is with the ACL routes).
//! All answer 200 with an empty body on success, like Consul's handlers that
//! return `nil`.

use super::{enable_param, ok_empty, path_id, AppState};
use crate::error::ApiError;
use crate::params::Params;
use axum::extract::{Path, State};
use axum::response::Response;

/// `PUT /v1/agent/maintenance?enable=<bool>[&reason=]`: node maintenance mode.
pub(super) async fn node_maintenance(
    State(st): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let enable = enable_param(&p)?;
    let reason = p.get("reason").unwrap_or("").to_owned();
    st.backend.set_maintenance(None, enable, reason).await?;
    Ok(ok_empty())
}

/// `PUT /v1/agent/join/{addr}[?wan=1]`.
pub(super) async fn join(
    State(st): State<AppState>,
    addr: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    // Consul tests `wan` by value, not presence.
    let wan = p.get("wan").is_some_and(|v| !v.is_empty());
    st.backend.join(&path_id(addr), wan).await?;
    Ok(ok_empty())
}

/// `PUT /v1/agent/leave`: leave gracefully; the backend then stops the agent.
pub(super) async fn leave(State(st): State<AppState>) -> Result<Response, ApiError> {
    st.backend.leave().await?;
    Ok(ok_empty())
}

/// `PUT /v1/agent/reload`.
pub(super) async fn reload(State(st): State<AppState>) -> Result<Response, ApiError> {
    st.backend.reload().await?;
    Ok(ok_empty())
}

/// `PUT /v1/agent/force-leave/{node}[?prune][&wan]` (`prune` and `wan` by presence).
pub(super) async fn force_leave(
    State(st): State<AppState>,
    node: Option<Path<String>>,
    p: Params,
) -> Result<Response, ApiError> {
    let node = path_id(node);
    st.backend
        .force_leave(&node, p.has("prune"), p.has("wan"))
        .await?;
    Ok(ok_empty())
}
