//! `/v1/snapshot`: `GET` saves the cluster's state as an archive (the leader's,
//! or with `?stale` the answering server's own), `PUT` restores one into the
//! running cluster. The archive format (`tribune_types::archive`) is versioned and
//! checksummed; a damaged or truncated file is refused before anything changes.

use super::AppState;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tribune_types::model::operator::{OperatorReply, OperatorRequest};
use tribune_types::model::ops::{Consistency, QueryMeta};

/// Largest archive accepted by `PUT` (the whole state travels as one body).
const MAX_ARCHIVE: usize = 256 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/snapshot",
        get(save)
            .put(restore)
            .layer(DefaultBodyLimit::max(MAX_ARCHIVE)),
    )
}

async fn save(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let stale = p.has("stale");
    let reply = st
        .backend
        .operator(OperatorRequest::SnapshotSave { stale })
        .await?;
    let OperatorReply::Snapshot {
        archive,
        index,
        known_leader,
        last_contact,
    } = reply
    else {
        return Err(ApiError::from(crate::BackendError::Unavailable(
            "unexpected answer from the servers".into(),
        )));
    };
    let mut resp = (StatusCode::OK, archive).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    reply::add_meta_headers(
        headers,
        &QueryMeta {
            index,
            known_leader,
            last_contact,
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

async fn restore(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    st.backend
        .operator(OperatorRequest::SnapshotRestore {
            // Takes the buffer over when nothing else holds it (no copy).
            archive: Vec::from(body),
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}
