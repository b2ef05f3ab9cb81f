//! `/v1/query`: prepared queries. Create, list, read, update, delete, execute and
//! explain, with Consul's status codes: a body that does not decode is 400, a
//! query not found 404, and every rule a definition breaks 500 with Consul's text
//! (its endpoint passes RPC errors through as 500).
//!
//! Definitions are checked here as Consul's `parseQuery` does; what needs the
//! state (unique names, the session, templates) is checked when the write is
//! applied, and running a query happens on the server
//! ([`ReadRequest::QueryExecute`]).

use super::{mismatch, AppState};
use crate::conventions::ClientAddr;
use crate::dto::query::{BodyMetaOut, ExecuteOut, ExplainOut, PreparedQueryIn, PreparedQueryOut};
use crate::error::ApiError;
use crate::json_in::decode;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use serde::Serialize;
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteRequest};
use tribune_types::model::query::{is_uuid, InvalidQuery, QueryOutcome, QuerySource};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/query", get(list).post(create))
        .route(
            "/v1/query/{*rest}",
            get(read_or_run).put(update).delete(delete),
        )
}

/// What follows `/v1/query/`: an ID, or an ID or name followed by `/execute` or
/// `/explain`. Anything else, slashes included, is an ID (as in Consul).
enum Target<'a> {
    Query(&'a str),
    Execute(&'a str),
    Explain(&'a str),
}

fn target(rest: &str) -> Target<'_> {
    if let Some(id) = rest.strip_suffix("/execute") {
        Target::Execute(id)
    } else if let Some(id) = rest.strip_suffix("/explain") {
        Target::Explain(id)
    } else {
        Target::Query(rest)
    }
}

/// Consul's `MethodNotAllowedError` for execute and explain, which only take GET.
fn get_only(method: &Method) -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    resp
}

/// Consul's `parseQuery` failure, answered as its RPC error (500).
fn invalid(e: InvalidQuery) -> ApiError {
    ApiError::Internal(format!("Invalid prepared query: {e}"))
}

/// The `{"ID": …}` answer of a create.
#[derive(Serialize)]
struct CreateOut {
    #[serde(rename = "ID")]
    id: String,
}

async fn create(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    // Go's decoder reports an empty body as EOF; an empty object is a body.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("Request decode failed: EOF"));
    }
    let input: PreparedQueryIn = decode(&body)?;
    if !input.id.is_empty() {
        return Err(ApiError::Internal(
            "ID must be empty when creating a new prepared query".into(),
        ));
    }
    // Chosen before proposing, so that applying the entry is deterministic.
    let id = uuid::Uuid::new_v4().to_string();
    let query = input.into_query(id.clone());
    query.check().map_err(invalid)?;
    st.backend
        .write(WriteRequest::QuerySet {
            query,
            create: true,
        })
        .await?;
    Ok(reply::json(&CreateOut { id }, p.pretty()))
}

async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let (res, meta) = st.read(&p, ReadRequest::QueryList).await?;
    let ReadResult::Queries(queries) = res else {
        return Err(mismatch("query list"));
    };
    let out: Vec<PreparedQueryOut> = queries.iter().map(PreparedQueryOut::new).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

/// An ID for the by-ID endpoints: Consul's UUID index refuses anything else.
fn query_id(id: &str) -> Result<String, ApiError> {
    if id.len() != 36 {
        return Err(ApiError::Internal(
            "failed prepared query lookup: UUID must be 36 characters".into(),
        ));
    }
    if !is_uuid(id) {
        return Err(ApiError::Internal(
            "failed prepared query lookup: Invalid UUID: encoding/hex: invalid byte".into(),
        ));
    }
    Ok(id.to_ascii_lowercase())
}

async fn read_or_run(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    p: Params,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
) -> Result<Response, ApiError> {
    match target(&rest) {
        Target::Query(id) => get_one(st, p, id).await,
        Target::Execute(id) => execute(st, p, id, &headers, client.map(|c| c.0 .0)).await,
        Target::Explain(id) => explain(st, p, id).await,
    }
}

async fn get_one(st: AppState, p: Params, id: &str) -> Result<Response, ApiError> {
    let id = query_id(id)?;
    let (res, meta) = st.read(&p, ReadRequest::QueryGet { id }).await?;
    let ReadResult::Queries(queries) = res else {
        return Err(mismatch("query get"));
    };
    if queries.is_empty() {
        return Err(ApiError::NotFound("Query not found".into()));
    }
    let out: Vec<PreparedQueryOut> = queries.iter().map(PreparedQueryOut::new).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

/// Where the request runs from: the agent, `?near` (with `_agent` as this agent),
/// and the client's address for `_ip`: the first `X-Forwarded-For` entry if it
/// is an address, else the connection's client, as Consul's
/// `sourceAddrFromRequest`.
fn source(
    st: &AppState,
    p: &Params,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> QuerySource {
    let info = st.backend.agent_info();
    let near = match p.get("near").unwrap_or_default() {
        "_agent" => info.node_name.clone(),
        other => other.to_owned(),
    };
    // Written as Go writes a parsed address, so it compares with node addresses.
    let ip = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        .or(client)
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default();
    QuerySource {
        agent_node: info.node_name,
        agent_segment: String::new(),
        near,
        ip,
        use_coordinates: !info.disable_coordinates,
    }
}

/// `?limit=` as Consul's `strconv.Atoi` reads it; 0 or less is no limit.
fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") => Ok(0),
        Some(raw) => raw
            .parse::<i64>()
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|_| {
                ApiError::Internal(format!(
                    "Bad limit: strconv.Atoi: parsing {raw:?}: invalid syntax"
                ))
            }),
    }
}

async fn execute(
    st: AppState,
    p: Params,
    id_or_name: &str,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Response, ApiError> {
    let limit = limit(&p)?;
    // Consul parses `connect` only when it has a value.
    let connect = match p.get("connect") {
        None | Some("") => false,
        Some(raw) => tribune_types::goflag::parse_go_bool(raw).ok_or_else(|| {
            ApiError::Internal(format!(
                "Error parsing 'connect' value: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            ))
        })?,
    };
    let req = ReadRequest::QueryExecute {
        id_or_name: id_or_name.to_owned(),
        source: source(&st, &p, headers, client),
        limit,
        connect,
    };
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::QueryExecuted(outcome) = res else {
        return Err(mismatch("query execute"));
    };
    let run = found(outcome)?;
    let dc = st.backend.agent_info().datacenter;
    Ok(reply::json_meta(
        &ExecuteOut::new(&run, &dc, &meta),
        &meta,
        p.pretty(),
    ))
}

async fn explain(st: AppState, p: Params, id_or_name: &str) -> Result<Response, ApiError> {
    // Parsed (and refused when malformed) as for execute, then unused.
    limit(&p)?;
    let req = ReadRequest::QueryExplain {
        id_or_name: id_or_name.to_owned(),
        source: source(&st, &p, &HeaderMap::new(), None),
    };
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::QueryExplained(outcome) = res else {
        return Err(mismatch("query explain"));
    };
    let query = found(*outcome)?;
    let out = ExplainOut {
        query: PreparedQueryOut::new(&query),
        meta: BodyMetaOut::new(&meta),
    };
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

fn found<T>(outcome: QueryOutcome<T>) -> Result<T, ApiError> {
    match outcome {
        QueryOutcome::Found(v) => Ok(v),
        QueryOutcome::NotFound => Err(ApiError::NotFound("Query not found".into())),
        QueryOutcome::Refused(e) => Err(ApiError::Internal(e)),
    }
}

async fn update(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Target::Query(id) = target(&rest) else {
        return Ok(get_only(&Method::PUT));
    };
    st.check_dc(&p)?;
    let id = prepared_id(id)?;
    // The ID in the path wins over one in the body, as in Consul.
    let query = decode::<PreparedQueryIn>(&body)?.into_query(id);
    if let Err(e) = query.check() {
        // Consul looks the query up before it reads the definition: an
        // unknown ID is reported first.
        let (res, _) = st
            .read(
                &p,
                ReadRequest::QueryGet {
                    id: query.id.clone(),
                },
            )
            .await?;
        if matches!(res, ReadResult::Queries(ref q) if q.is_empty()) {
            return Err(ApiError::Internal(format!(
                "Cannot modify non-existent prepared query: '{}'",
                query.id
            )));
        }
        return Err(invalid(e));
    }
    st.backend
        .write(WriteRequest::QuerySet {
            query,
            create: false,
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn delete(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let Target::Query(id) = target(&rest) else {
        return Ok(get_only(&Method::DELETE));
    };
    st.check_dc(&p)?;
    let id = prepared_id(id)?;
    st.backend.write(WriteRequest::QueryDelete { id }).await?;
    Ok(StatusCode::OK.into_response())
}

/// The ID of a write: Consul looks the query up first, so a malformed ID fails
/// that lookup.
fn prepared_id(id: &str) -> Result<String, ApiError> {
    query_id(id).map_err(|e| match e {
        ApiError::Internal(m) => ApiError::Internal(format!("Prepared Query lookup failed: {m}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_consuls() {
        assert!(matches!(target("abc/execute"), Target::Execute("abc")));
        assert!(matches!(target("a.b/explain"), Target::Explain("a.b")));
        assert!(matches!(target("abc/foo"), Target::Query("abc/foo")));
        assert!(query_id("abc").is_err());
        assert_eq!(
            query_id("ADF4238A-882B-9DDC-4A9D-5B6758E4159E")
                .ok()
                .as_deref(),
            Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e")
        );
    }
}
