//! `/v1/discovery-chain/{service}`: the compiled discovery chain
//! ([`crate::discovery_chain`]), read (GET) or with overrides (POST), as a
//! blocking query on the config entries.

use super::{mismatch, AppState};
use crate::discovery_chain::{compile, Entries, Overrides, Request, CHAIN_KINDS};
use crate::error::ApiError;
use crate::json_in::normalize;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use std::time::Duration;
use tribune_types::model::ops::{QueryOptions, ReadRequest, ReadResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/discovery-chain/", get(missing).post(missing))
        .route("/v1/discovery-chain/{*name}", get(read).post(read))
}

async fn missing() -> ApiError {
    ApiError::bad("Missing chain name")
}

fn decoding(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("Request decoding failed: {e}"))
}

/// The POST body: Consul's keys in any case or snake_case; the timeout a Go
/// duration string or nanoseconds.
fn overrides(body: &[u8]) -> Result<Overrides, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(decoding("EOF"));
    }
    let value: Value = serde_json::from_slice(body).map_err(decoding)?;
    let obj = match normalize(value) {
        Value::Null => return Ok(Overrides::default()),
        Value::Object(o) => o,
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            return Err(decoding(format!(
                "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            )));
        }
    };
    // mapstructure's words for a field it cannot decode.
    let field_error = |field: &str, e: String| {
        decoding(format!(
            "1 error(s) decoding:\n\n* error decoding '{field}': {e}"
        ))
    };
    // A negative or zero timeout is accepted and overrides nothing, as in Consul.
    let connect_timeout = match obj.get("overrideconnecttimeout") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(s)) if s.is_empty() => Duration::ZERO,
        Some(Value::String(s)) => match s.strip_prefix('-') {
            Some(rest) => tribune_types::parse_go_duration(rest)
                .map(|_| Duration::ZERO)
                .map_err(|_| {
                    field_error(
                        "OverrideConnectTimeout",
                        format!("time: invalid duration {s:?}"),
                    )
                })?,
            None => tribune_types::parse_go_duration(s)
                .map_err(|e| field_error("OverrideConnectTimeout", e.to_string()))?,
        },
        Some(Value::Number(n)) => {
            let nanos = n.as_f64().unwrap_or(0.0);
            if nanos > 0.0 {
                Duration::from_nanos(nanos as u64)
            } else {
                Duration::ZERO
            }
        }
        Some(other) => {
            return Err(field_error(
                "OverrideConnectTimeout",
                format!(
                    "expected type 'time.Duration', got unconvertible type '{}'",
                    go_type(other)
                ),
            ))
        }
    };
    let protocol = match obj.get("overrideprotocol") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // mapstructure's weak typing turns numbers into their text and
        // booleans into "1" and "0".
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
        Some(other) => {
            return Err(field_error(
                "OverrideProtocol",
                format!(
                    "expected type 'string', got unconvertible type '{}'",
                    go_type(other)
                ),
            ))
        }
    };
    let mode = match obj.get("overridemeshgateway") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(m)) => match m.get("mode") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(field_error(
                    "OverrideMeshGateway.Mode",
                    format!(
                        "expected type 'structs.MeshGatewayMode', got unconvertible type '{}'",
                        go_type(other)
                    ),
                ))
            }
        },
        Some(other) => {
            return Err(field_error(
                "OverrideMeshGateway",
                format!("expected a map, got '{}'", go_type(other)),
            ))
        }
    };
    if !matches!(mode.as_str(), "" | "none" | "local" | "remote") {
        return Err(ApiError::bad("Invalid OverrideMeshGateway.Mode parameter"));
    }
    Ok(Overrides {
        connect_timeout,
        protocol,
        mesh_gateway_mode: mode,
    })
}

/// The Go type name mapstructure reports for a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

async fn read(
    State(st): State<AppState>,
    method: Method,
    Path(name): Path<String>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    for (param, what) in [("ns", "Namespaces"), ("partition", "Partitions")] {
        if p.get(param).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad(format!(
                "Invalid query parameter: {param:?} - {what} are a Consul Enterprise feature"
            )));
        }
    }
    let overrides = if method == Method::POST {
        overrides(&body)?
    } else {
        Overrides::default()
    };
    st.check_dc(&p)?;
    // The trust domain names the targets. Asking for the roots first also
    // gives Consul's refusal when Connect is off on the servers.
    // At the request's consistency (`?stale` works without a leader), never
    // blocking: the config entries are what the request waits on.
    let opts = QueryOptions {
        min_index: 0,
        ..p.query_options(st.config.query_times)?
    };
    let (roots, _) = st.backend.read(ReadRequest::CaRoots, opts).await?;
    let ReadResult::CaRoots(roots) = roots else {
        return Err(mismatch("CA roots"));
    };
    let trust_domain = roots
        .iter()
        .find(|r| r.active)
        .map(|r| r.trust_domain.to_ascii_lowercase())
        .ok_or_else(|| ApiError::Internal("no cluster ca config setup".into()))?;
    let req = ReadRequest::ConfigKinds {
        kinds: CHAIN_KINDS.iter().map(|k| (*k).to_owned()).collect(),
    };
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::Config(entries) = res else {
        return Err(mismatch("discovery chain entries"));
    };
    let info = st.backend.agent_info();
    let datacenter = p
        .get("compile-dc")
        .filter(|dc| !dc.is_empty())
        .map_or(info.datacenter, str::to_owned);
    let request = Request {
        service: &name,
        datacenter: &datacenter,
        trust_domain: &trust_domain,
        overrides,
    };
    let chain = Entries::new(&entries)
        .and_then(|entries| compile(&request, &entries))
        .map_err(|e| ApiError::Internal(format!("failed to compile discovery chain: {e}")))?;
    Ok(reply::json_meta(
        &serde_json::json!({ "Chain": chain }),
        &meta,
        p.pretty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_decode_as_consuls_do() {
        let o = overrides(
            br#"{"OverrideMeshGateway":{"Mode":"local"},"OverrideProtocol":"grpc","OverrideConnectTimeout":22000000000}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            o,
            Overrides {
                connect_timeout: Duration::from_secs(22),
                protocol: "grpc".into(),
                mesh_gateway_mode: "local".into(),
            }
        );
        let snake = overrides(
            br#"{"override_mesh_gateway":{"mode":"local"},"override_protocol":"grpc","override_connect_timeout":"22s"}"#,
        )
        .unwrap_or_default();
        assert_eq!(snake, o);
        assert!(matches!(overrides(b"null"), Ok(o) if o == Overrides::default()));
        let lax = overrides(br#"{"OverrideConnectTimeout":"-5s","OverrideProtocol":true}"#);
        assert!(
            matches!(&lax, Ok(o) if o.connect_timeout.is_zero() && o.protocol == "1"),
            "{lax:?}"
        );
        let err = |body: &[u8]| match overrides(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(b""), "Request decoding failed: EOF");
        assert!(err(b"[]")
            .ends_with("cannot unmarshal array into Go value of type map[string]interface {}"));
        assert_eq!(
            err(br#"{"OverrideMeshGateway":{"Mode":"far"}}"#),
            "Invalid OverrideMeshGateway.Mode parameter"
        );
        assert_eq!(
            err(br#"{"OverrideConnectTimeout":"soon"}"#),
            "Request decoding failed: 1 error(s) decoding:\n\n* error decoding 'OverrideConnectTimeout': time: invalid duration \"soon\""
        );
        assert!(err(br#"{"OverrideMeshGateway":"local"}"#).contains("'OverrideMeshGateway'"));
    }
}
