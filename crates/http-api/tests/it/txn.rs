//! `PUT /v1/txn` over real HTTP against the in-memory backend: each operation kind
//! reaches the backend typed, read-only transactions skip raft, results and rollbacks
//! have Consul's JSON shapes, and the limits answer Consul's 413 texts.

use crate::support::{request, serve_with, start, FakeBackend};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use tribune_http_api::HttpConfig;
use tribune_types::model::ops::{
    CatalogVerb, KvVerb, ReadRequest, TxnError, TxnOp, TxnResult, WriteRequest,
};
use tribune_types::model::{Check, KvEntry, Node, RaftIndex, Service};
use tribune_types::HealthStatus;

const SID: &str = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";

async fn txn(base: &str, query: &str, body: &str) -> (u16, reqwest::header::HeaderMap, String) {
    request(Method::PUT, &format!("{base}/v1/txn{query}"), Some(body)).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn last_txn_write(backend: &Arc<FakeBackend>) -> Vec<TxnOp> {
    match backend.state().writes.last() {
        Some(WriteRequest::Txn(ops)) => ops.clone(),
        other => panic!("expected a Txn write, got {other:?}"),
    }
}

#[tokio::test]
async fn write_txn_parses_every_kind() {
    let (backend, base) = start().await;
    let body = format!(
        r#"[
        {{"KV":{{"Verb":"lock","Key":"k","Value":"aGVsbG8=","Flags":3,"Session":"{SID}"}}}},
        {{"KV":{{"Verb":"cas","Key":"k2","Value":null,"Index":7}}}},
        {{"Node":{{"Verb":"set","Node":{{"ID":"67539c9d-b948-ba67-edd4-d07a676d6673","Node":"bar","Address":"192.168.0.1","Meta":{{"instance_type":"m2.large"}}}}}}}},
        {{"Service":{{"Verb":"set","Node":"bar","Service":{{"ID":"web1","Service":"web","Port":8080,"Tags":["a"]}}}}}},
        {{"Check":{{"Verb":"cas","Check":{{"Node":"bar","CheckID":"service:web1","Name":"Web HTTP Check","Status":"critical","ServiceID":"web1","Definition":{{"HTTP":"http://localhost:8080","Interval":"10s"}},"ModifyIndex":22}}}}}},
        {{"Session":{{"Verb":"delete","Session":{{"ID":"{SID}"}}}}}}
    ]"#
    );
    let (s, h, b) = txn(&base, "", &body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(parse(&b), json!({"Results": [], "Errors": null}));

    let ops = last_txn_write(&backend);
    assert_eq!(ops.len(), 6);
    let TxnOp::Kv { verb, entry } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(*verb, KvVerb::Lock);
    assert_eq!(
        (entry.key.as_str(), entry.value.as_slice(), entry.flags),
        ("k", &b"hello"[..], 3)
    );
    assert_eq!(entry.session.map(|s| s.to_string()).as_deref(), Some(SID));
    let TxnOp::Kv { verb, entry } = &ops[1] else {
        panic!("{ops:?}")
    };
    assert_eq!((*verb, entry.raft.modify_index), (KvVerb::Cas, 7));
    let TxnOp::Node { verb, node } = &ops[2] else {
        panic!("{ops:?}")
    };
    assert_eq!(*verb, CatalogVerb::Set);
    assert_eq!(
        (
            node.node.as_str(),
            node.address.as_str(),
            node.datacenter.as_str()
        ),
        ("bar", "192.168.0.1", "dc1")
    );
    assert_eq!(
        node.meta["instance_type"], "m2.large",
        "meta keys keep their case"
    );
    let TxnOp::Service {
        verb,
        node,
        service,
    } = &ops[3]
    else {
        panic!("{ops:?}")
    };
    assert_eq!((*verb, node.as_str()), (CatalogVerb::Set, "bar"));
    assert_eq!(
        (service.id.as_str(), service.service.as_str(), service.port),
        ("web1", "web", 8080)
    );
    let TxnOp::Check { verb, check } = &ops[4] else {
        panic!("{ops:?}")
    };
    assert_eq!(*verb, CatalogVerb::Cas);
    assert_eq!(
        (check.node.as_str(), check.check_id.as_str(), check.status),
        ("bar", "service:web1", HealthStatus::Critical)
    );
    assert_eq!(check.raft.modify_index, 22);
    assert!(matches!(&ops[5], TxnOp::SessionDelete { id } if id.to_string() == SID));
    assert!(
        !backend
            .state()
            .reads
            .iter()
            .any(|(r, _)| matches!(r, ReadRequest::Txn(_))),
        "a transaction with writes goes through raft only"
    );
}

#[tokio::test]
async fn results_have_consul_shapes() {
    let (backend, base) = start().await;
    let raft = RaftIndex {
        create_index: 5,
        modify_index: 6,
    };
    backend.state().txn_outcome = Some(Ok(vec![
        TxnResult::Kv(KvEntry {
            key: "k".into(),
            value: b"hello".to_vec(),
            flags: 3,
            lock_index: 1,
            session: None,
            raft,
        }),
        TxnResult::Kv(KvEntry {
            key: "k2".into(),
            raft,
            ..Default::default()
        }),
        TxnResult::Node(Node {
            id: "67539c9d-b948-ba67-edd4-d07a676d6673".into(),
            node: "bar".into(),
            address: "192.168.0.1".into(),
            datacenter: "dc1".into(),
            raft,
            ..Default::default()
        }),
        TxnResult::Service(Service {
            node: "bar".into(),
            id: "web1".into(),
            service: "web".into(),
            port: 8080,
            raft,
            ..Default::default()
        }),
        TxnResult::Check(Check {
            node: "bar".into(),
            check_id: "c".into(),
            status: HealthStatus::Passing,
            raft,
            ..Default::default()
        }),
    ]));
    let (s, _, b) = txn(
        &base,
        "",
        r#"[{"KV":{"Verb":"set","Key":"k","Value":"aGVsbG8="}}]"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let out = parse(&b);
    assert_eq!(out["Errors"], Value::Null);
    let results = &out["Results"];
    assert_eq!(
        results[0],
        json!({"KV": {"LockIndex": 1, "Key": "k", "Flags": 3, "Value": "aGVsbG8=", "CreateIndex": 5, "ModifyIndex": 6}})
    );
    assert_eq!(
        results[1]["KV"]["Value"],
        Value::Null,
        "empty values are null"
    );
    assert_eq!(results[2]["Node"]["Node"], "bar");
    assert_eq!(
        results[2]["Node"]["ID"],
        "67539c9d-b948-ba67-edd4-d07a676d6673"
    );
    assert_eq!(results[2]["Node"]["ModifyIndex"], 6);
    assert_eq!(results[3]["Service"]["ID"], "web1");
    assert_eq!(results[3]["Service"]["Service"], "web");
    assert_eq!(results[3]["Service"]["Port"], 8080);
    assert_eq!(results[3]["Service"]["CreateIndex"], 5);
    assert_eq!(results[4]["Check"]["CheckID"], "c");
    assert_eq!(results[4]["Check"]["Status"], "passing");
    for r in results.as_array().into_iter().flatten() {
        assert_eq!(
            r.as_object().map(|o| o.len()),
            Some(1),
            "one kind per result: {r}"
        );
    }
}

#[tokio::test]
async fn read_only_txn_goes_through_read() {
    let (backend, base) = start().await;
    backend.state().txn_outcome = Some(Ok(vec![TxnResult::Kv(KvEntry {
        key: "k".into(),
        value: b"v".to_vec(),
        ..Default::default()
    })]));
    let body =
        r#"[{"KV":{"Verb":"get","Key":"k"}},{"Node":{"Verb":"get","Node":{"Node":"node1"}}}]"#;
    let (s, h, b) = txn(&base, "?stale&index=5", body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(parse(&b)["Results"][0]["KV"]["Value"], "dg==");
    assert_eq!(h["x-consul-knownleader"], "true");
    assert_eq!(h["x-consul-lastcontact"], "0");
    assert!(!h.contains_key("x-consul-index"), "not a blocking query");
    assert!(backend.state().writes.is_empty(), "no raft round");
    let st = backend.state();
    let Some((ReadRequest::Txn(ops), opts)) = st.reads.last() else {
        panic!("{:?}", st.reads)
    };
    assert_eq!(ops.len(), 2);
    assert_eq!(opts.min_index, 0, "?index is ignored");
    assert_eq!(
        opts.consistency,
        tribune_types::model::ops::Consistency::Stale
    );
}

#[tokio::test]
async fn rollbacks_are_409_json() {
    let (backend, base) = start().await;
    let errors = vec![TxnError {
        op_index: 0,
        what: r#"failed to lock key "k", lock is already held"#.into(),
    }];
    let want = json!({
        "Results": null,
        "Errors": [{"OpIndex": 0, "What": r#"failed to lock key "k", lock is already held"#}],
    });
    backend.state().txn_outcome = Some(Err(errors));

    // From raft.
    let body = format!(r#"[{{"KV":{{"Verb":"lock","Key":"k","Session":"{SID}"}}}}]"#);
    let (s, h, b) = txn(&base, "", &body).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(parse(&b), want);

    // From a read-only transaction.
    let (s, h, b) = txn(&base, "", r#"[{"KV":{"Verb":"get","Key":"k"}}]"#).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(parse(&b), want);

    // Unknown verbs fail their operations, as Consul's state store does, before any
    // backend call; elements naming no operation are dropped.
    let writes = backend.state().writes.len();
    let reads = backend.state().reads.len();
    let (s, _, b) = txn(
        &base,
        "",
        r#"[{}, {"KV":{"Verb":"get","Key":"a"}}, {"KV":{"Verb":"frob","Key":"a"}}, {"Check":{"Verb":"zap","Check":{}}}]"#,
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(
        parse(&b),
        json!({"Results": null, "Errors": [
            {"OpIndex": 1, "What": "unknown KV verb \"frob\""},
            {"OpIndex": 2, "What": "unknown Check verb \"zap\""},
        ]})
    );
    assert_eq!(backend.state().writes.len(), writes);
    assert_eq!(backend.state().reads.len(), reads);
}

#[tokio::test]
async fn limits_and_bad_bodies() {
    let (backend, base) = start().await;
    let op = r#"{"KV":{"Verb":"set","Key":"k","Value":"dg=="}}"#;
    let many = format!("[{}]", vec![op; 129].join(","));
    let (s, _, b) = txn(&base, "", &many).await;
    assert_eq!(
        (s, b.as_str()),
        (413, "Transaction contains too many operations (129 > 128)")
    );
    let enough = format!("[{}]", vec![op; 128].join(","));
    let (s, _, b) = txn(&base, "", &enough).await;
    assert_eq!(s, 200, "{b}");

    let (s, _, b) = txn(&base, "", "[{").await;
    assert_eq!(s, 400);
    assert!(b.starts_with("Failed to parse body: "), "{b}");
    let (s, _, b) = txn(
        &base,
        "",
        r#"[{"KV":{"Verb":"set","Key":"k","Value":"!!"}}]"#,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Failed to parse body: illegal base64 data at input byte 0"
        )
    );

    let (s, _, b) = txn(&base, "?dc=dc2", &format!("[{op}]")).await;
    assert_eq!((s, b.as_str()), (500, "No path to datacenter"));

    let huge = format!(
        r#"[{{"KV":{{"Verb":"set","Key":"k","Value":"{}"}}}}]"#,
        "A".repeat(600 * 1024)
    );
    let (s, _, b) = txn(&base, "", &huge).await;
    assert_eq!(s, 413);
    assert_eq!(
        b,
        format!(
            "Request body({} bytes) too large, max size: 524288 bytes. See https://www.consul.io/docs/agent/config/config-files#txn_max_req_len.",
            huge.len()
        )
    );

    // Only the 128-operation transaction reached the backend: the failures wrote nothing.
    assert_eq!(backend.state().writes.len(), 1);
}

#[tokio::test]
async fn value_size_limit() {
    let backend = FakeBackend::new();
    let base = serve_with(
        backend.clone(),
        HttpConfig {
            kv_max_value_size: 4,
            txn_max_req_len: 1024,
            ..HttpConfig::default()
        },
    )
    .await;
    let (s, _, b) = txn(
        &base,
        "",
        r#"[{"KV":{"Verb":"set","Key":"ok","Value":"dg=="}},{"KV":{"Verb":"set","Key":"k","Value":"aGVsbG8="}}]"#,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (413, r#"Value for key "k" is too large (5 > 4 bytes)"#)
    );
    assert!(backend.state().writes.is_empty());
}
