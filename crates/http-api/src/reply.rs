//! Building responses: JSON bodies (`?pretty` aware) and the `X-Consul-*` headers every
//! read carries. The Go client fails a query without `X-Consul-LastContact`, and
//! node-consul fails on an `X-Consul-Index` of 0, so these are set in one place.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tribune_types::model::ops::{CacheStatus, QueryMeta};

/// Serialises `value` as Consul does: compact, or indented by 4 spaces with `?pretty`.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Vec<u8> {
    if pretty {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if value.serialize(&mut ser).is_ok() {
            out.push(b'\n');
        }
        out
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    }
}

/// Adds the blocking-query headers of `meta`.
pub fn add_meta_headers(headers: &mut HeaderMap, meta: &QueryMeta) {
    let index = meta.index.max(1);
    headers.insert("x-consul-index", HeaderValue::from(index));
    headers.insert(
        "x-consul-knownleader",
        HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
    );
    headers.insert(
        "x-consul-lastcontact",
        HeaderValue::from(meta.last_contact.as_millis() as u64),
    );
    headers.insert(
        "x-consul-effective-consistency",
        HeaderValue::from_static(meta.consistency.header_value()),
    );
    if let Some(cache) = meta.cache {
        let (hit, age) = match cache {
            CacheStatus::Hit { age } => ("HIT", age.as_secs()),
            CacheStatus::Miss => ("MISS", 0),
        };
        headers.insert("x-cache", HeaderValue::from_static(hit));
        // Entries are refreshed by blocking queries as soon as they change, so the
        // age is 0 unless refreshing has been failing (Consul reports the same).
        headers.insert(header::AGE, HeaderValue::from(age));
    }
}

/// A JSON response with status 200.
pub fn json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Response {
    json_status(StatusCode::OK, value, pretty)
}

/// A JSON response with a given status.
pub fn json_status<T: Serialize + ?Sized>(status: StatusCode, value: &T, pretty: bool) -> Response {
    let mut resp = (status, to_json(value, pretty)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON read response with the query-meta headers.
pub fn json_meta<T: Serialize + ?Sized>(value: &T, meta: &QueryMeta, pretty: bool) -> Response {
    let mut resp = json(value, pretty);
    add_meta_headers(resp.headers_mut(), meta);
    resp
}
