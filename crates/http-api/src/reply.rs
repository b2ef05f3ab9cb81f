//! Building responses: JSON bodies (indented with `?pretty` or on a `-dev` agent) and the `X-Consul-*` headers every
//! read carries. The Go client fails a query without `X-Consul-LastContact`, and
//! node-consul fails on an `X-Consul-Index` of 0, so these are set in one place.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tribune_types::model::ops::{CacheStatus, QueryMeta};

// Header names as constants: inserting by `&str` parses and validates the name on
// every call, and every read response carries four of them.
/// `X-Consul-Index`.
pub const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
/// `X-Consul-KnownLeader`.
pub const X_CONSUL_KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
/// `X-Consul-LastContact`.
pub const X_CONSUL_LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
/// `X-Consul-Effective-Consistency`.
pub const X_CONSUL_EFFECTIVE_CONSISTENCY: HeaderName =
    HeaderName::from_static("x-consul-effective-consistency");
/// `X-Cache`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Room reserved for a compact JSON body before serialising: most responses (a KV
/// entry, a health check) fit, so the body is written without regrowing its buffer.
const JSON_START: usize = 1024;

/// Serialises `value` as Consul does: compact, or indented by 4 spaces (and a
/// final newline) with `?pretty` or on a `-dev` agent.
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
        let mut out = Vec::with_capacity(JSON_START);
        if serde_json::to_writer(&mut out, value).is_err() {
            out.clear();
        }
        out
    }
}

/// Adds the blocking-query headers of `meta`.
pub fn add_meta_headers(headers: &mut HeaderMap, meta: &QueryMeta) {
    let index = meta.index.max(1);
    headers.insert(X_CONSUL_INDEX, HeaderValue::from(index));
    headers.insert(
        X_CONSUL_KNOWN_LEADER,
        HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
    );
    headers.insert(
        X_CONSUL_LAST_CONTACT,
        HeaderValue::from(meta.last_contact.as_millis() as u64),
    );
    headers.insert(
        X_CONSUL_EFFECTIVE_CONSISTENCY,
        HeaderValue::from_static(meta.consistency.header_value()),
    );
    match meta.cache {
        Some(CacheStatus::Hit { age }) => {
            headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
            // Entries are refreshed by blocking queries as soon as they change,
            // so the age is 0 unless refreshing has been failing (Consul reports
            // the same). Consul sends `Age` on hits only.
            headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        }
        Some(CacheStatus::Miss) => {
            headers.insert(X_CACHE, HeaderValue::from_static("MISS"));
        }
        None => {}
    }
}

/// A JSON response with status 200.
pub fn json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Response {
    json_status(StatusCode::OK, value, pretty)
}

/// A JSON response with a given status.
pub fn json_status<T: Serialize + ?Sized>(status: StatusCode, value: &T, pretty: bool) -> Response {
    json_bytes(status, to_json(value, pretty))
}

/// A response of JSON already written (see `dto::output::kv_pairs_json`).
pub fn json_bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    // Built directly rather than through `(status, bytes).into_response()`, which
    // would first set an octet-stream content type for this to replace.
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    // Room for every header a read answer gets on its way out (content type,
    // the four query-meta headers, cache status and age, the content length
    // axum adds, the default ACL policy): `HeaderMap`'s first allocation holds
    // six, and growing it past that rehashed the map on every answer (1.8% of
    // a server serving `?stale` KV reads, in `perf`).
    *resp.headers_mut() = HeaderMap::with_capacity(12);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A plain-text answer, as Consul writes its errors and refusals.
pub fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A JSON read response with the query-meta headers.
pub fn json_meta<T: Serialize + ?Sized>(value: &T, meta: &QueryMeta, pretty: bool) -> Response {
    let mut resp = json(value, pretty);
    add_meta_headers(resp.headers_mut(), meta);
    resp
}
