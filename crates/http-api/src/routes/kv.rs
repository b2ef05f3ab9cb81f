//! `/v1/kv/{key}`: GET (single, `recurse`, `keys`+`separator`, `raw`), PUT (`cas`,
//! `flags`, `acquire`, `release`), DELETE (`recurse`, `cas`). Semantics from Consul's
//! `agent/kvs_endpoint.go`.

use super::{bool_reply, mismatch, AppState, DirectFuture};
use crate::dto::output::{kv_pairs_json, KvPair};
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::body::{Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tribune_types::model::ops::{
    KvDeleteMode, KvSetMode, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::KvEntry;
use tribune_types::SessionId;

pub(super) fn routes() -> Router<AppState> {
    let root = get(get_root).put(put_root).delete(delete_root);
    Router::new()
        .route("/v1/kv", root.clone())
        .route("/v1/kv/", root)
        .route("/v1/kv/{*key}", get(get_kv).put(put_kv).delete(delete_kv))
}

async fn get_root(st: State<AppState>, p: Params) -> Result<Response, ApiError> {
    get_kv(st, Path(String::new()), p).await
}

async fn put_root(st: State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    put_kv(st, Path(String::new()), p, body).await
}

async fn delete_root(st: State<AppState>, p: Params) -> Result<Response, ApiError> {
    delete_kv(st, Path(String::new()), p).await
}

/// A 404 that still carries the index headers (clients block on a missing key).
fn missing(meta: &tribune_types::model::ops::QueryMeta) -> Response {
    let mut resp = StatusCode::NOT_FOUND.into_response();
    reply::add_meta_headers(resp.headers_mut(), meta);
    resp
}

/// `GET /v1/kv/<key>` (`key` percent-decoded) answered without the router:
/// see [`crate::conventions::Api`], which calls this for the API's hottest
/// read. The same handler as the route's, so the answer is the same.
pub(crate) fn get_direct(st: AppState, key: String, p: Params) -> DirectFuture {
    Box::pin(async move { get_kv(State(st), Path(key), p).await.into_response() })
}

/// `PUT /v1/kv/<key>` (`key` percent-decoded) answered without the router,
/// as [`get_direct`] is: the body is read under the router's bound
/// ([`super::body_cap`]), an overrun answered as axum's body extractor
/// answers it, and then it is the route's handler.
pub(crate) fn put_direct<B>(st: AppState, key: String, p: Params, body: B) -> DirectFuture
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    Box::pin(async move {
        let limited = http_body_util::Limited::new(body, super::body_cap(&st.config));
        match limited.collect().await {
            Ok(body) => put_kv(State(st), Path(key), p, body.to_bytes())
                .await
                .into_response(),
            Err(e) => buffer_failed(e),
        }
    })
}

/// What axum's `Bytes` extractor answers when the body cannot be read: 413
/// for a body over the bound, 400 for anything else, with its text.
fn buffer_failed(e: axum::BoxError) -> Response {
    let status = if e.is::<http_body_util::LengthLimitError>() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, format!("Failed to buffer the request body: {e}")).into_response()
}

async fn get_kv(
    State(st): State<AppState>,
    Path(key): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let pretty = p.pretty();
    if p.has("keys") {
        // Consul accepts its historical misspelling too.
        let separator = p
            .get("separator")
            .or_else(|| p.get("seperator"))
            .unwrap_or("")
            .to_owned();
        let (res, meta) = st
            .read(
                &p,
                ReadRequest::KvKeys {
                    prefix: key.clone(),
                    separator,
                },
            )
            .await?;
        let ReadResult::Keys(keys) = res else {
            return Err(mismatch("kv keys"));
        };
        // An empty listing of the root is `[]`; of any other prefix, a 404.
        if keys.is_empty() && !key.is_empty() {
            return Ok(missing(&meta));
        }
        return Ok(reply::json_meta(&keys, &meta, pretty));
    }
    let recurse = p.has("recurse");
    if key.is_empty() && !recurse {
        return Err(ApiError::bad("Missing key name"));
    }
    let req = if recurse {
        ReadRequest::KvList { prefix: key }
    } else {
        ReadRequest::KvGet { key }
    };
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::Kv(entries) = res else {
        return Err(mismatch("kv get"));
    };
    if entries.is_empty() {
        return Ok(missing(&meta));
    }
    if p.has("raw") && !recurse {
        let mut resp = entries[0].value.clone().into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
        reply::add_meta_headers(h, &meta);
        return Ok(resp);
    }
    if pretty {
        let out: Vec<KvPair<'_>> = entries.iter().map(KvPair).collect();
        return Ok(reply::json_meta(&out, &meta, true));
    }
    let mut resp = reply::json_bytes(StatusCode::OK, kv_pairs_json(&entries));
    reply::add_meta_headers(resp.headers_mut(), &meta);
    Ok(resp)
}

fn session(p: &Params, name: &str) -> Result<Option<SessionId>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(s) => uuid::Uuid::parse_str(s)
            .map(|u| Some(SessionId(u)))
            .map_err(|_| ApiError::Internal(format!("invalid session \"{s}\""))),
    }
}

/// Consul rejects combining `cas`, `acquire` and `release` (and `recurse` with `cas` on
/// DELETE) with the raw query in the message.
fn conflicting(p: &Params, names: &[&str], raw_query: &str) -> Result<(), ApiError> {
    if names.iter().filter(|n| p.has(n)).count() > 1 {
        return Err(ApiError::bad(format!("Conflicting flags: {raw_query}")));
    }
    Ok(())
}

fn raw_query(p: &Params) -> String {
    p.raw()
}

async fn put_kv(
    State(st): State<AppState>,
    Path(key): Path<String>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    conflicting(&p, &["cas", "acquire", "release"], &raw_query(&p))?;
    let flags = p.u64("flags", "flags")?.unwrap_or(0);
    let max = st.config.kv_max_value_size;
    if body.len() > max {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
            body.len()
        )));
    }
    let mode = if let Some(cas) = p.u64("cas", "cas")? {
        KvSetMode::Cas(cas)
    } else if let Some(s) = session(&p, "acquire")? {
        KvSetMode::Acquire(s)
    } else if p.has("release") {
        match p.get("release").map(uuid::Uuid::parse_str) {
            Some(Ok(u)) => KvSetMode::Release(SessionId(u)),
            // Release does not look the session up, it compares it with the holder's:
            // a malformed ID never matches, so Consul answers `false`, not an error.
            _ => return Ok(bool_reply(false, p.pretty())),
        }
    } else {
        KvSetMode::Set
    };
    let entry = KvEntry {
        key,
        value: body.to_vec(),
        flags,
        ..Default::default()
    };
    let (outcome, _) = st
        .backend
        .write(WriteRequest::KvSet { entry, mode })
        .await?;
    Ok(bool_reply(outcome == WriteOutcome::Done, p.pretty()))
}

async fn delete_kv(
    State(st): State<AppState>,
    Path(key): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    conflicting(&p, &["recurse", "cas"], &raw_query(&p))?;
    let mode = if p.has("recurse") {
        KvDeleteMode::Tree
    } else if let Some(cas) = p.u64("cas", "cas")? {
        KvDeleteMode::Cas(cas)
    } else {
        KvDeleteMode::Key
    };
    if key.is_empty() && mode != KvDeleteMode::Tree {
        return Err(ApiError::bad("Missing key name"));
    }
    let (outcome, _) = st
        .backend
        .write(WriteRequest::KvDelete { key, mode })
        .await?;
    Ok(bool_reply(outcome == WriteOutcome::Done, p.pretty()))
}
