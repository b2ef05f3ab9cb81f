//! `PUT /v1/txn`: KV, catalog and session operations applied all-or-nothing through
//! raft, or, when every operation only reads, answered from a server's state without a
//! raft round (honouring `?stale`/`?consistent`, never blocking).
//!
//! Parsing, limits and answer shapes follow Consul's `agent/txn_endpoint.go`: the body
//! is decoded and size-checked here (400/413), each operation's outcome is decided by
//! the state layer, and a rolled-back transaction is a 409 whose JSON lists the failed
//! operations. Verbs are typed here, so an unknown verb, which Consul only discovers in
//! its state store, is reported the same way (409, Consul's wording) without a round
//! trip.
//!
//! `{"Session": {"Verb": "delete", "Session": {"ID": …}}}` is accepted too: Consul's
//! server-side transactions have that operation, though its HTTP decoder drops it.

use super::session::parse_session_id;
use super::{mismatch, AppState};
use crate::backend::BackendError;
use crate::dto::de_null_default;
use crate::dto::input::{CheckIn, NodeIn, ServiceIn};
use crate::dto::output::TxnResponseOut;
use crate::error::ApiError;
use crate::json_in::normalize;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::put;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tribune_types::model::ops::{
    CatalogVerb, KvVerb, ReadRequest, ReadResult, TxnError, TxnOp, TxnResult, WriteOutcome,
    WriteRejected, WriteRequest,
};
use tribune_types::model::KvEntry;

/// Consul's `maxTxnOps` (128 since the limit was raised from 64; the txn docs agree).
const MAX_TXN_OPS: usize = 128;

/// Where Consul's 413 for an oversized body points.
const TXN_MAX_REQ_LEN_DOCS: &str =
    "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len";

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/txn", put(txn))
}

/// A KV operation as sent (`api.KVTxnOp`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KvOpIn {
    #[serde(rename = "verb", deserialize_with = "de_null_default")]
    verb: String,
    #[serde(rename = "key", deserialize_with = "de_null_default")]
    key: String,
    #[serde(rename = "value", deserialize_with = "de_base64")]
    value: Vec<u8>,
    #[serde(rename = "flags", deserialize_with = "de_null_default")]
    flags: u64,
    #[serde(rename = "index", deserialize_with = "de_null_default")]
    index: u64,
    #[serde(rename = "session", deserialize_with = "de_null_default")]
    session: String,
}

/// `api.NodeTxnOp`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeOpIn {
    #[serde(rename = "verb", deserialize_with = "de_null_default")]
    verb: String,
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    node: NodeIn,
}

/// `api.ServiceTxnOp`: the node by name, the service in catalog shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceOpIn {
    #[serde(rename = "verb", deserialize_with = "de_null_default")]
    verb: String,
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    node: String,
    #[serde(rename = "service", deserialize_with = "de_null_default")]
    service: ServiceIn,
}

/// `api.CheckTxnOp`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckOpIn {
    #[serde(rename = "verb", deserialize_with = "de_null_default")]
    verb: String,
    #[serde(rename = "check", deserialize_with = "de_null_default")]
    check: CheckIn,
}

/// `{"ID": …}` inside a session operation.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionRefIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    id: String,
}

/// A session operation (`structs.TxnSessionOp`; only `delete` exists).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionOpIn {
    #[serde(rename = "verb", deserialize_with = "de_null_default")]
    verb: String,
    #[serde(rename = "session", deserialize_with = "de_null_default")]
    session: SessionRefIn,
}

/// One decoded operation, before its verb is checked. The catalog bodies are boxed:
/// they dwarf a KV operation.
#[derive(Debug)]
enum OpIn {
    Kv(KvOpIn),
    Node(NodeOpIn),
    Service(Box<ServiceOpIn>),
    Check(Box<CheckOpIn>),
    Session(SessionOpIn),
}

/// `Value` is base64 (Go's `[]byte`); `null` means empty.
fn de_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine;
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(Vec::new());
    };
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| {
            use base64::DecodeError as E;
            // Go's `encoding/base64` wording.
            let at = match e {
                E::InvalidByte(at, _) | E::InvalidLastSymbol(at, _) => at,
                E::InvalidLength(len) => len,
                E::InvalidPadding => s.len(),
            };
            serde::de::Error::custom(format!("illegal base64 data at input byte {at}"))
        })
}

fn parse_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("Failed to parse body: {e}"))
}

fn decode_op<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(parse_error)
}

/// Decodes the body into operations. The outer length is Consul's operation count;
/// `None` marks an element naming no known operation, which Consul drops (so later
/// operations' indexes shift down, as in Consul).
fn decode_ops(body: &[u8]) -> Result<Vec<Option<OpIn>>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(parse_error)?;
    let items = match value {
        // Go decodes `null` into an empty list.
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(parse_error(format!(
                "expected an array of operations, got {}",
                json_kind(&other)
            )))
        }
    };
    items.into_iter().map(decode_one).collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode_one(item: Value) -> Result<Option<OpIn>, ApiError> {
    let mut map = match normalize(item) {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        other => {
            return Err(parse_error(format!(
                "expected an operation object, got {}",
                json_kind(&other)
            )))
        }
    };
    // Consul's precedence when an element names several kinds; `null` counts as absent.
    let mut take = |k: &str| map.remove(k).filter(|v| !v.is_null());
    Ok(Some(if let Some(v) = take("kv") {
        OpIn::Kv(decode_op(v)?)
    } else if let Some(v) = take("node") {
        OpIn::Node(decode_op(v)?)
    } else if let Some(v) = take("service") {
        OpIn::Service(Box::new(decode_op(v)?))
    } else if let Some(v) = take("check") {
        OpIn::Check(Box::new(decode_op(v)?))
    } else if let Some(v) = take("session") {
        OpIn::Session(decode_op(v)?)
    } else {
        return Ok(None);
    }))
}

/// The 413s of Consul's `convertOps`, checked before anything is converted.
fn check_limits(ops: &[Option<OpIn>], kv_max_value_size: usize) -> Result<(), ApiError> {
    if ops.len() > MAX_TXN_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            ops.len()
        )));
    }
    for op in ops.iter().flatten() {
        if let OpIn::Kv(kv) = op {
            if kv.value.len() > kv_max_value_size {
                return Err(ApiError::TooLarge(format!(
                    "Value for key {:?} is too large ({} > {kv_max_value_size} bytes)",
                    kv.key,
                    kv.value.len()
                )));
            }
        }
    }
    Ok(())
}

fn kv_verb(s: &str) -> Option<KvVerb> {
    Some(match s {
        "set" => KvVerb::Set,
        "cas" => KvVerb::Cas,
        "lock" => KvVerb::Lock,
        "unlock" => KvVerb::Unlock,
        "get" => KvVerb::Get,
        "get-or-empty" => KvVerb::GetOrEmpty,
        "get-tree" => KvVerb::GetTree,
        "check-index" => KvVerb::CheckIndex,
        "check-session" => KvVerb::CheckSession,
        "check-not-exists" => KvVerb::CheckNotExists,
        "delete" => KvVerb::Delete,
        "delete-tree" => KvVerb::DeleteTree,
        "delete-cas" => KvVerb::DeleteCas,
        _ => return None,
    })
}

/// A catalog verb; the error is Consul's state-store text (`unknown Node verb "x"`).
fn catalog_verb(s: &str, kind: &str) -> Result<CatalogVerb, String> {
    Ok(match s {
        "set" => CatalogVerb::Set,
        "cas" => CatalogVerb::Cas,
        "get" => CatalogVerb::Get,
        "delete" => CatalogVerb::Delete,
        "delete-cas" => CatalogVerb::DeleteCas,
        _ => return Err(format!("unknown {kind} verb {s:?}")),
    })
}

/// Converts one operation, or says why it fails (an operation error, not a 400).
fn convert(op: OpIn, dc: &str) -> Result<TxnOp, String> {
    match op {
        OpIn::Kv(kv) => {
            let verb = kv_verb(&kv.verb).ok_or_else(|| format!("unknown KV verb {:?}", kv.verb))?;
            let session = if kv.session.is_empty() {
                None
            } else {
                match parse_session_id(&kv.session) {
                    Ok(id) => Some(id),
                    // Only these verbs look the session up; the others ignore the
                    // field, as Consul's state store does.
                    Err(_)
                        if matches!(verb, KvVerb::Lock | KvVerb::Unlock | KvVerb::CheckSession) =>
                    {
                        return Err(format!("invalid session {:?}", kv.session));
                    }
                    Err(_) => None,
                }
            };
            let mut entry = KvEntry {
                key: kv.key,
                value: kv.value,
                flags: kv.flags,
                session,
                ..Default::default()
            };
            entry.raft.modify_index = kv.index;
            Ok(TxnOp::Kv { verb, entry })
        }
        OpIn::Node(n) => Ok(TxnOp::Node {
            verb: catalog_verb(&n.verb, "Node")?,
            node: n.node.to_node(dc),
        }),
        OpIn::Service(s) => {
            let s = *s;
            let verb = catalog_verb(&s.verb, "Service")?;
            let mut service = s.service.to_txn_service();
            service.node = s.node.as_str().into();
            Ok(TxnOp::Service {
                verb,
                node: s.node.into(),
                service,
            })
        }
        OpIn::Check(c) => {
            let verb = catalog_verb(&c.verb, "Check")?;
            let mut check = c.check.to_catalog_check().map_err(|e| e.to_string())?;
            // Consul's txn takes `CheckID` as given, without the registration's
            // fallback to the name.
            check.check_id = c.check.checkid.clone().into();
            check.service_name.clone_from(&c.check.servicename);
            check.service_tags.clone_from(&c.check.servicetags);
            check.raft.modify_index = c.check.modifyindex;
            Ok(TxnOp::Check { verb, check })
        }
        OpIn::Session(s) => {
            if s.verb != "delete" {
                return Err(format!(
                    "failed to delete session: unknown Session verb {:?}",
                    s.verb
                ));
            }
            let id = parse_session_id(&s.session.id)
                .map_err(|why| format!("failed to delete session: failed session lookup: {why}"))?;
            Ok(TxnOp::SessionDelete { id })
        }
    }
}

/// Converts every operation; the errors carry indexes among the kept operations.
fn convert_all(ops: Vec<Option<OpIn>>, dc: &str) -> Result<Vec<TxnOp>, Vec<TxnError>> {
    let mut out = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (op_index, op) in ops.into_iter().flatten().enumerate() {
        match convert(op, dc) {
            Ok(op) => out.push(op),
            Err(what) => errors.push(TxnError { op_index, what }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn committed(results: &[TxnResult], pretty: bool) -> Response {
    reply::json(&TxnResponseOut::committed(results), pretty)
}

/// Consul answers a rolled-back transaction with 409 and the same JSON shape.
fn rolled_back(errors: &[TxnError], pretty: bool) -> Response {
    reply::json_status(
        StatusCode::CONFLICT,
        &TxnResponseOut::rolled_back(errors),
        pretty,
    )
}

async fn txn(
    State(st): State<AppState>,
    p: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pretty = p.pretty();
    // Consul caps the whole body at `txn_max_req_len`, or at `kv_max_value_size` when
    // that is larger (for backward compatibility).
    let max_len = st.config.txn_max_req_len.max(st.config.kv_max_value_size);
    if body.len() > max_len {
        // Consul names the size when the client declared it up front.
        let msg = if headers.contains_key(header::CONTENT_LENGTH) {
            format!(
                "Request body({} bytes) too large, max size: {max_len} bytes. See {TXN_MAX_REQ_LEN_DOCS}.",
                body.len()
            )
        } else {
            format!(
                "Request body too large, max size: {max_len} bytes. See {TXN_MAX_REQ_LEN_DOCS}."
            )
        };
        return Err(ApiError::TooLarge(msg));
    }
    let ops = decode_ops(&body)?;
    check_limits(&ops, st.config.kv_max_value_size)?;
    // Consul reaches the datacenter before any operation is judged.
    st.check_dc(&p)?;
    let dc = st.backend.agent_info().datacenter;
    let ops = match convert_all(ops, &dc) {
        Ok(ops) => ops,
        Err(errors) => return Ok(rolled_back(&errors, pretty)),
    };

    if ops.iter().all(TxnOp::is_read) {
        // Consul's `Txn.Read` is not a blocking query: `?index` is ignored.
        let mut opts = p.query_options(st.config.query_times)?;
        opts.min_index = 0;
        let (res, meta) = st.backend.read(ReadRequest::Txn(ops), opts).await?;
        let ReadResult::Txn(outcome) = res else {
            return Err(mismatch("txn read"));
        };
        let mut resp = match outcome {
            Ok(results) => committed(&results, pretty),
            Err(errors) => rolled_back(&errors, pretty),
        };
        // Only these two: a read-only transaction is not a blocking query, so Consul
        // sends no index.
        let h = resp.headers_mut();
        h.insert(
            reply::X_CONSUL_LAST_CONTACT,
            HeaderValue::from(u64::try_from(meta.last_contact.as_millis()).unwrap_or(u64::MAX)),
        );
        h.insert(
            reply::X_CONSUL_KNOWN_LEADER,
            HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
        );
        return Ok(resp);
    }

    match st.backend.write(WriteRequest::Txn(ops)).await {
        Ok((WriteOutcome::Txn(results), _)) => Ok(committed(&results, pretty)),
        Ok(_) => Err(mismatch("txn apply")),
        Err(BackendError::Rejected(WriteRejected::TxnRolledBack(errors))) => {
            Ok(rolled_back(&errors, pretty))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::HealthStatus;

    fn ops(body: &str) -> Result<Vec<TxnOp>, Vec<TxnError>> {
        match decode_ops(body.as_bytes()) {
            Ok(ops) => convert_all(ops, "dc1"),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn errors(body: &str) -> Vec<(usize, String)> {
        match ops(body) {
            Ok(ops) => panic!("{body}: expected errors, got {ops:?}"),
            Err(errs) => errs.into_iter().map(|e| (e.op_index, e.what)).collect(),
        }
    }

    #[test]
    fn kv_ops() {
        let sid = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
        let body = format!(
            r#"[{{"KV":{{"Verb":"lock","Key":"k","Value":"aGVsbG8=","Flags":7,"Index":3,"Session":"{sid}"}}}},
               {{"kv":{{"verb":"get-tree","key":"p/","Value":null}}}}]"#
        );
        let got = ops(&body);
        let Ok(got) = got else { panic!("{got:?}") };
        let TxnOp::Kv { verb, entry } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(*verb, KvVerb::Lock);
        assert_eq!(entry.key, "k");
        assert_eq!(entry.value, b"hello");
        assert_eq!(entry.flags, 7);
        assert_eq!(entry.raft.modify_index, 3);
        assert_eq!(entry.session.map(|s| s.to_string()).as_deref(), Some(sid));
        assert!(
            matches!(&got[1], TxnOp::Kv { verb: KvVerb::GetTree, entry } if entry.value.is_empty())
        );
        assert!(got[1].is_read() && !got[0].is_read());
    }

    #[test]
    fn catalog_and_session_ops() {
        let body = r#"[
            {"Node":{"Verb":"cas","Node":{"ID":"67539c9d-b948-ba67-edd4-d07a676d6673","Node":"bar","Address":"192.168.0.1","Meta":{"instance_type":"m2.large"},"ModifyIndex":4}}},
            {"Service":{"Verb":"delete","Node":"foo","Service":{"ID":"db1"}}},
            {"Service":{"Verb":"set","Node":"foo","Service":{"ID":"web1","Service":"web","Port":80,"ModifyIndex":9}}},
            {"Check":{"Verb":"cas","Check":{"Node":"bar","CheckID":"service:web1","Name":"Web HTTP Check","Status":"passing","ServiceID":"web1","Definition":{"HTTP":"http://localhost:8080","Interval":"10s"},"ModifyIndex":22}}},
            {"Session":{"Verb":"delete","Session":{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"}}}
        ]"#;
        let got = ops(body);
        let Ok(got) = got else { panic!("{got:?}") };
        assert_eq!(got.len(), 5);
        let TxnOp::Node { verb, node } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(*verb, CatalogVerb::Cas);
        assert_eq!(node.node.as_str(), "bar");
        assert_eq!(node.datacenter, "dc1", "defaults to the agent's datacenter");
        assert_eq!(node.meta["instance_type"], "m2.large");
        assert_eq!(node.raft.modify_index, 4);
        let TxnOp::Service {
            verb,
            node,
            service,
        } = &got[1]
        else {
            panic!("{got:?}")
        };
        assert_eq!(*verb, CatalogVerb::Delete);
        assert_eq!(node.as_str(), "foo");
        assert_eq!(service.id.as_str(), "db1", "no name needed for a delete");
        let TxnOp::Service { service, .. } = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!((service.service.as_str(), service.port), ("web", 80));
        assert_eq!(service.raft.modify_index, 9);
        let TxnOp::Check { verb, check } = &got[3] else {
            panic!("{got:?}")
        };
        assert_eq!(*verb, CatalogVerb::Cas);
        assert_eq!(check.check_id.as_str(), "service:web1");
        assert_eq!(check.status, HealthStatus::Passing);
        assert_eq!(check.check_type, "http");
        assert_eq!(check.interval, "10s");
        assert_eq!(check.raft.modify_index, 22);
        assert!(matches!(&got[4], TxnOp::SessionDelete { .. }));
    }

    #[test]
    fn operation_errors_use_consul_wording() {
        assert_eq!(
            errors(
                r#"[{"KV":{"Verb":"get","Key":"a"}},{"KV":{"Verb":"nope","Key":"a"}},
                    {"Node":{"Verb":"zap","Node":{"Node":"n"}}},
                    {"Check":{"Verb":"get","Check":{"Node":"n","CheckID":"c","Status":"weird"}}},
                    {"KV":{"Verb":"lock","Key":"a","Session":"not-a-uuid"}},
                    {"Session":{"Verb":"delete","Session":{"ID":"x"}}}]"#
            ),
            vec![
                (1, r#"unknown KV verb "nope""#.to_owned()),
                (2, r#"unknown Node verb "zap""#.to_owned()),
                (3, r#"Invalid check status: "weird""#.to_owned()),
                (4, r#"invalid session "not-a-uuid""#.to_owned()),
                (
                    5,
                    "failed to delete session: failed session lookup: uuid string is wrong length"
                        .to_owned()
                ),
            ]
        );
        // A bad session on a verb that does not use it is ignored, as in Consul.
        assert!(ops(r#"[{"KV":{"Verb":"set","Key":"a","Session":"junk"}}]"#).is_ok());
    }

    #[test]
    fn empty_elements_are_dropped_and_shift_indexes() {
        assert_eq!(
            errors(r#"[{}, null, {"KV":null}, {"KV":{"Verb":"bad"}}]"#),
            vec![(0, r#"unknown KV verb "bad""#.to_owned())]
        );
        assert_eq!(ops("null"), Ok(vec![]));
        assert_eq!(ops("[]"), Ok(vec![]));
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            "{bad",
            r#"{"KV":{}}"#,
            "[1]",
            r#"[{"KV":{"Verb":"set","Key":"a","Value":"@@@"}}]"#,
            r#"[{"KV":{"Verb":"set","Key":"a","Flags":-1}}]"#,
        ] {
            match decode_ops(body.as_bytes()) {
                Err(ApiError::BadRequest(m)) => {
                    assert!(m.starts_with("Failed to parse body: "), "{body}: {m}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        match decode_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"@@@"}}]"#) {
            Err(e) => assert_eq!(
                e.to_string(),
                "Failed to parse body: illegal base64 data at input byte 0"
            ),
            Ok(ops) => panic!("{ops:?}"),
        }
    }

    #[test]
    fn limits() {
        let many = format!(
            "[{}]",
            vec![r#"{"KV":{"Verb":"get","Key":"a"}}"#; 129].join(",")
        );
        let decoded = decode_ops(many.as_bytes());
        let Ok(decoded) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(
            check_limits(&decoded, 1024),
            Err(ApiError::TooLarge(
                "Transaction contains too many operations (129 > 128)".into()
            ))
        );
        let big = r#"[{"KV":{"Verb":"set","Key":"k","Value":"aGVsbG8="}}]"#;
        let decoded = decode_ops(big.as_bytes());
        let Ok(decoded) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(
            check_limits(&decoded, 4),
            Err(ApiError::TooLarge(
                r#"Value for key "k" is too large (5 > 4 bytes)"#.into()
            ))
        );
        assert_eq!(check_limits(&decoded, 5), Ok(()));
    }
}
