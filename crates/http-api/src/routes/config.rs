//! Config entries: `PUT /v1/config`, `GET/DELETE /v1/config/{kind}/{name}`,
//! `GET /v1/config/{kind}`. The body is kept as sent; only Kind and Name are interpreted.

use super::{bool_reply, mismatch, AppState};
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{Map, Value};
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteOutcome, WriteRequest};
use tribune_types::model::ConfigEntry;

/// The kinds Consul knows; anything else is rejected like Consul's `MakeConfigEntry`.
const KINDS: &[&str] = &[
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "service-intentions",
    "ingress-gateway",
    "terminating-gateway",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "http-route",
    "tcp-route",
    "inline-certificate",
    "file-system-certificate",
    "jwt-provider",
    "control-plane-request-limit",
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/config", put(apply))
        .route("/v1/config/{kind}", get(list))
        .route("/v1/config/{kind}/{*name}", get(get_one).delete(delete))
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(ApiError::bad(format!("invalid config entry kind: {kind}")))
    }
}

/// Finds a top-level key case-insensitively (`Kind`, `kind`).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

async fn apply(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Request decoding failed: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad(
            "Request decoding failed: expected a JSON object",
        ));
    };
    let kind = field(&obj, "Kind").unwrap_or("").to_owned();
    let mut name = field(&obj, "Name").unwrap_or("").to_owned();
    // The mesh entry has a fixed name and the Go client does not send one.
    if kind == "mesh" && name.is_empty() {
        name = "mesh".to_owned();
    }
    if kind.is_empty() {
        return Err(ApiError::bad(
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level",
        ));
    }
    check_kind(&kind)?;
    if name.is_empty() {
        return Err(ApiError::bad("Request decoding failed: Name is required"));
    }
    match (kind.as_str(), name.as_str()) {
        ("proxy-defaults", n) if n != "global" => {
            return Err(ApiError::bad(
                "invalid name (\"{n}\"), only \"global\" is supported".replace("{n}", n),
            ))
        }
        ("mesh", n) if n != "mesh" => {
            return Err(ApiError::bad(format!(
                "invalid name (\"{n}\"), only \"mesh\" is supported"
            )))
        }
        _ => {}
    }
    // Stored without server-owned fields, which are filled in on read.
    let mut obj = obj;
    obj.retain(|k, _| {
        !k.eq_ignore_ascii_case("CreateIndex") && !k.eq_ignore_ascii_case("ModifyIndex")
    });
    let cas = p.u64("cas", "cas")?;
    let entry = ConfigEntry {
        kind,
        name,
        body_json: Value::Object(obj).to_string(),
        raft: Default::default(),
    };
    let (outcome, _) = st
        .backend
        .write(WriteRequest::ConfigSet { entry, cas })
        .await?;
    Ok(bool_reply(outcome == WriteOutcome::Done))
}

fn render(e: &ConfigEntry) -> Value {
    let mut obj = match serde_json::from_str::<Value>(&e.body_json) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    obj.retain(|k, _| !k.eq_ignore_ascii_case("kind") && !k.eq_ignore_ascii_case("name"));
    let mut out = Map::new();
    out.insert("Kind".into(), Value::String(e.kind.clone()));
    out.insert("Name".into(), Value::String(e.name.clone()));
    out.extend(obj);
    out.insert("CreateIndex".into(), e.raft.create_index.into());
    out.insert("ModifyIndex".into(), e.raft.modify_index.into());
    Value::Object(out)
}

async fn get_one(
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    let (res, meta) = st
        .read(
            &p,
            ReadRequest::ConfigGet {
                kind: kind.clone(),
                name: name.clone(),
            },
        )
        .await?;
    let ReadResult::Config(entries) = res else {
        return Err(mismatch("config get"));
    };
    match entries.first() {
        Some(e) => Ok(reply::json_meta(&render(e), &meta, p.pretty())),
        None => {
            let mut resp = reply::json_status(StatusCode::NOT_FOUND, &Value::Null, false);
            *resp.body_mut() = axum::body::Body::from(format!(
                "Config entry not found for \"{kind}\" / \"{name}\""
            ));
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            reply::add_meta_headers(resp.headers_mut(), &meta);
            Ok(resp)
        }
    }
}

async fn list(
    State(st): State<AppState>,
    Path(kind): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    let (res, meta) = st.read(&p, ReadRequest::ConfigList { kind }).await?;
    let ReadResult::Config(entries) = res else {
        return Err(mismatch("config list"));
    };
    let rows: Vec<Value> = entries.iter().map(render).collect();
    Ok(reply::json_meta(&rows, &meta, p.pretty()))
}

async fn delete(
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    check_kind(&kind)?;
    let cas = p.u64("cas", "cas")?;
    // Deleting an entry that does not exist succeeds (sdk/testutil relies on it).
    let (outcome, _) = st
        .backend
        .write(WriteRequest::ConfigDelete { kind, name, cas })
        .await?;
    if cas.is_some() {
        return Ok(bool_reply(outcome == WriteOutcome::Done));
    }
    Ok(reply::json(&serde_json::json!({}), false))
}
