//! `/v1/health/*`: node/{node}, checks/{service}, service/{service}, connect/{service},
//! ingress/{service}, state/{state}.

use super::catalog::{from_peer, has_tags, node_meta_matches};
use super::coordinate::sort_near;
use super::{apply_filter, mismatch, AppState};
use crate::dto::output::{HealthCheckOut, ServiceEntryOut};
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tribune_types::model::ops::{ReadRequest, ReadResult};
use tribune_types::HealthStatus;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health/node/{*node}", get(node))
        .route("/v1/health/checks/{*service}", get(checks))
        .route("/v1/health/service/{*service}", get(service))
        .route("/v1/health/connect/{*service}", get(connect))
        .route("/v1/health/ingress/{*service}", get(ingress))
        .route("/v1/health/state/{state}", get(state))
}

fn checks_reply(
    res: ReadResult,
    meta: &tribune_types::model::ops::QueryMeta,
    p: &Params,
) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let ReadResult::Checks(checks) = res else {
        return Err(mismatch("health checks"));
    };
    let rows: Vec<HealthCheckOut> = checks.iter().map(HealthCheckOut::from).collect();
    Ok(reply::json_meta(
        &apply_filter(rows, filter.as_ref())?,
        meta,
        p.pretty(),
    ))
}

async fn node(
    State(st): State<AppState>,
    Path(node): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let (res, meta) = st
        .read(&p, ReadRequest::HealthNode { node: node.into() })
        .await?;
    checks_reply(res, &meta, &p)
}

async fn checks(
    State(st): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let (res, meta) = st.read(&p, ReadRequest::HealthChecks { service }).await?;
    checks_reply(res, &meta, &p)
}

async fn state(
    State(st): State<AppState>,
    Path(state): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let state = match state.as_str() {
        "any" => None,
        "passing" | "warning" | "critical" => HealthStatus::parse(&state).ok(),
        other => return Err(ApiError::bad(format!("Invalid check state: {other}"))),
    };
    let (res, meta) = st.read(&p, ReadRequest::HealthState { state }).await?;
    checks_reply(res, &meta, &p)
}

async fn service(
    State(st): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    entries(st, p, ReadRequest::HealthService { service }).await
}

async fn connect(
    State(st): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    entries(st, p, ReadRequest::HealthConnect { service }).await
}

/// The ingress gateways routing to `service` (their instances, nodes and checks).
async fn ingress(
    State(st): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    entries(st, p, ReadRequest::HealthIngress { service }).await
}

async fn entries(st: AppState, p: Params, req: ReadRequest) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::Health(mut entries) = res else {
        return Err(mismatch("health service"));
    };
    if from_peer(&p) {
        entries.clear();
    }
    let passing = p.go_bool("passing")?;
    entries.retain(|e| {
        has_tags(&p, &e.service)
            && node_meta_matches(&p, &e.node)
            && (!passing || e.checks.iter().all(|c| c.status == HealthStatus::Passing))
    });
    sort_near(&st, &p, &mut entries, |e| e.node.node.as_str()).await?;
    let rows: Vec<ServiceEntryOut> = entries.iter().map(ServiceEntryOut::from).collect();
    Ok(reply::json_meta(
        &apply_filter(rows, filter.as_ref())?,
        &meta,
        p.pretty(),
    ))
}
