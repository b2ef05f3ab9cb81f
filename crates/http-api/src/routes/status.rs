//! `/v1/status/leader` and `/v1/status/peers`.

use super::AppState;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn leader(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let s = st.backend.status().await?;
    Ok(reply::json(&s.leader, p.pretty()))
}

async fn peers(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let s = st.backend.status().await?;
    Ok(reply::json(&s.peers, p.pretty()))
}
