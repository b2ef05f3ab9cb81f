//! Config entries: `PUT /v1/config`, `GET/DELETE /v1/config/{kind}/{name}`,
//! `GET /v1/config/{kind}`. The body is kept as sent; only Kind and Name are interpreted.

use super::{bool_reply, mismatch, AppState};
use crate::discovery_chain::{check_write, CHAIN_KINDS};
use crate::error::ApiError;
use crate::json_in::{canonical, normalize};
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{Map, Value};
use tribune_types::model::ops::{
    QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::{ConfigEntry, GatewayLink};

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
    crate::json_in::get_ci(obj, name).and_then(Value::as_str)
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
    if kind == "ingress-gateway" {
        normalize_ingress(&mut obj)?;
    }
    let cas = p.u64("cas", "cas")?;
    let gateway = gateway_links(&kind, &obj);
    let entry = ConfigEntry {
        kind,
        name,
        body_json: Value::Object(obj).to_string(),
        raft: Default::default(),
        gateway,
    };
    check_chains(&st, &entry).await?;
    let (outcome, _) = st
        .backend
        .write(WriteRequest::ConfigSet { entry, cas })
        .await?;
    Ok(bool_reply(outcome == WriteOutcome::Done, p.pretty()))
}

/// Refuses a discovery-chain entry that would break a chain, as Consul's
/// speculative compile does (its error, as a 500). Checked against the entries
/// stored when the write is proposed: a concurrent write to another entry can
/// still combine with this one into a chain that only fails when it is read.
async fn check_chains(st: &AppState, entry: &ConfigEntry) -> Result<(), ApiError> {
    if !CHAIN_KINDS.contains(&entry.kind.as_str()) {
        return Ok(());
    }
    let req = ReadRequest::ConfigKinds {
        kinds: CHAIN_KINDS.iter().map(|k| (*k).to_owned()).collect(),
    };
    let (res, _) = st.backend.read(req, QueryOptions::default()).await?;
    let ReadResult::Config(stored) = res else {
        return Err(mismatch("config entries"));
    };
    let dc = st.backend.agent_info().datacenter;
    check_write(entry, &stored, &dc).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The value under `name`, matching keys as [`canonical`] does (`MaxConnections`,
/// `max_connections`).
fn get_mut_ci<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    obj.iter_mut()
        .find(|(k, _)| canonical(k) == name)
        .map(|(_, v)| v)
}

/// What Consul's `IngressGatewayConfigEntry.Normalize` and its server-side types
/// do to a stored entry: a listener without a protocol is `tcp`, protocols are
/// lower case, and the `Defaults` limits are plain numbers (0 when not set).
/// A protocol that is not a string is refused as Consul's decoder refuses it.
fn normalize_ingress(obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    if let Some(Value::Array(listeners)) = get_mut_ci(obj, "listeners") {
        for l in listeners.iter_mut().filter_map(Value::as_object_mut) {
            match get_mut_ci(l, "protocol") {
                Some(Value::String(p)) if !p.is_empty() => *p = p.to_lowercase(),
                Some(v @ (Value::String(_) | Value::Null)) => *v = Value::String("tcp".into()),
                Some(other) => {
                    return Err(ApiError::bad(format!(
                        "Request decoding failed: Listeners.Protocol must be a string, not {other}"
                    )))
                }
                None => {
                    l.insert("Protocol".into(), Value::String("tcp".into()));
                }
            }
        }
    }
    if let Some(Value::Object(defaults)) = get_mut_ci(obj, "defaults") {
        for key in [
            "MaxConnections",
            "MaxPendingRequests",
            "MaxConcurrentRequests",
        ] {
            match get_mut_ci(defaults, &canonical(key)) {
                Some(v @ Value::Null) => *v = 0.into(),
                Some(_) => {}
                None => {
                    defaults.insert(key.into(), 0.into());
                }
            }
        }
    }
    Ok(())
}

/// The services an ingress or terminating gateway entry routes to, for the
/// catalog's gateway-services and health-ingress queries.
fn gateway_links(kind: &str, obj: &Map<String, Value>) -> Vec<GatewayLink> {
    let body = normalize(Value::Object(obj.clone()));
    let list = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let link = |svc: &Value, port: u64, protocol: String| GatewayLink {
        service: text(svc, "name"),
        port,
        protocol,
        hosts: list(svc, "hosts")
            .iter()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect(),
        ca_file: text(svc, "cafile"),
        cert_file: text(svc, "certfile"),
        key_file: text(svc, "keyfile"),
        sni: text(svc, "sni"),
    };
    match kind {
        "terminating-gateway" => list(&body, "services")
            .iter()
            .map(|s| link(s, 0, String::new()))
            .collect(),
        "ingress-gateway" => list(&body, "listeners")
            .iter()
            .flat_map(|l| {
                let port = l.get("port").and_then(Value::as_u64).unwrap_or(0);
                let protocol = text(l, "protocol");
                list(l, "services")
                    .into_iter()
                    .map(move |s| link(&s, port, protocol.clone()))
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => Vec::new(),
    }
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
            let mut resp = reply::text(
                StatusCode::NOT_FOUND,
                format!("Config entry not found for \"{kind}\" / \"{name}\""),
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
        return Ok(bool_reply(outcome == WriteOutcome::Done, p.pretty()));
    }
    Ok(reply::json(&serde_json::json!({}), p.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn ingress_entries_are_normalised_as_consul_stores_them() {
        let mut obj = object(json!({
            "Kind": "ingress-gateway", "Name": "ing",
            "Listeners": [
                {"Port": 8888, "Services": [{"Name": "api"}]},
                {"Port": 9999, "Protocol": "HTTP", "Services": [{"Name": "web", "Hosts": ["w.example"]}]},
                {"port": 7777, "protocol": "", "services": [{"name": "*"}]}
            ],
            "Defaults": {"max_connections": 5, "MaxPendingRequests": null}
        }));
        normalize_ingress(&mut obj).unwrap();
        let v = Value::Object(obj.clone());
        assert_eq!(v["Listeners"][0]["Protocol"], "tcp");
        assert_eq!(v["Listeners"][1]["Protocol"], "http");
        assert_eq!(
            v["Listeners"][2]["protocol"], "tcp",
            "the client's spelling is kept"
        );
        assert_eq!(
            v["Defaults"],
            json!({"max_connections": 5, "MaxPendingRequests": 0, "MaxConcurrentRequests": 0})
        );
        let links = gateway_links("ingress-gateway", &obj);
        let got: Vec<(&str, u64, &str)> = links
            .iter()
            .map(|l| (l.service.as_str(), l.port, l.protocol.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("api", 8888, "tcp"),
                ("web", 9999, "http"),
                ("*", 7777, "tcp")
            ]
        );
        assert_eq!(links[1].hosts, ["w.example"]);

        let mut bad = object(json!({"Listeners": [{"Port": 1, "Protocol": 7}]}));
        let err = normalize_ingress(&mut bad).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn terminating_links_carry_their_tls_files() {
        let obj = object(json!({
            "Kind": "terminating-gateway", "Name": "term",
            "Services": [{"Name": "api", "CAFile": "ca.crt", "CertFile": "c.crt",
                          "KeyFile": "c.key", "SNI": "api.example"}]
        }));
        let links = gateway_links("terminating-gateway", &obj);
        assert_eq!(links.len(), 1);
        let l = &links[0];
        assert_eq!(
            (
                l.ca_file.as_str(),
                l.cert_file.as_str(),
                l.key_file.as_str(),
                l.sni.as_str()
            ),
            ("ca.crt", "c.crt", "c.key", "api.example")
        );
        assert!(gateway_links("service-defaults", &obj).is_empty());
    }
}
