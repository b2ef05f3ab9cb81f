//! `/v1/snapshot`: `GET` saves the cluster's state as an archive (the leader's,
//! or with `?stale` the answering server's own), `PUT` restores one into the
//! running cluster. The archive is Consul's gzipped tar (`meta.json`,
//! `state.bin`, `SHA256SUMS`; see `tribune_types::archive`), checksummed, so a
//! damaged or truncated file is refused before anything changes.
//!
//! Both bodies stream: an archive is as large as the state, and neither this
//! agent nor the servers hold one whole (no body-size limit applies here).

use super::AppState;
use crate::backend::BackendError;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tribune_types::model::ops::{Consistency, QueryMeta};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/snapshot", get(save).put(restore))
}

async fn save(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let stale = p.has("stale");
    let download = st.backend.snapshot_save(stale).await?;
    let mut resp = Response::new(Body::from_stream(download.archive));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    reply::add_meta_headers(
        headers,
        &QueryMeta {
            index: download.index,
            known_leader: download.known_leader,
            last_contact: download.last_contact,
            consistency: if stale {
                Consistency::Stale
            } else {
                Consistency::Default
            },
            cache: None,
        },
    );
    Ok(resp)
}

async fn restore(State(st): State<AppState>, p: Params, body: Body) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let archive = body
        .into_data_stream()
        .map(|piece| {
            piece.map_err(|e| BackendError::BadRequest(format!("reading the snapshot: {e}")))
        })
        .boxed();
    st.backend.snapshot_restore(archive).await?;
    Ok(StatusCode::OK.into_response())
}
