//! `/v1/session/*` over real HTTP against the in-memory backend: the defaults a create
//! fills in (and the body quirks that change them), the exact `SessionEntry` shape the
//! Go client's tests expect, renew's 404, and Consul's error texts.

use crate::support::{request, start, FakeBackend};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tribune_types::model::ops::WriteRequest;
use tribune_types::model::{Session, SessionBehavior};

async fn put(base: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (s, _, b) = request(Method::PUT, &format!("{base}{path}"), body).await;
    (s, b)
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let (s, _, b) = request(Method::GET, &format!("{base}{path}"), None).await;
    (s, b)
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Creates a session and returns its ID and the session the handler wrote.
async fn create(backend: &Arc<FakeBackend>, base: &str, body: Option<&str>) -> (String, Session) {
    let (status, text) = put(base, "/v1/session/create", body).await;
    assert_eq!(status, 200, "{body:?}: {text}");
    let out = parse(&text);
    let id = out["ID"].as_str().unwrap_or_default().to_owned();
    assert_eq!(out, json!({ "ID": id }), "the answer is exactly {{\"ID\"}}");
    let written = match backend.state().writes.last() {
        Some(WriteRequest::SessionCreate(s)) => s.clone(),
        other => panic!("expected a SessionCreate, got {other:?}"),
    };
    assert_eq!(written.id.to_string(), id);
    (id, written)
}

#[tokio::test]
async fn create_defaults_and_info_shape() {
    let (backend, base) = start().await;
    for body in [None, Some(""), Some("null")] {
        let (_, s) = create(&backend, &base, body).await;
        assert_eq!(s.node.as_str(), "node1", "the agent's node");
        assert_eq!(s.node_checks, vec!["serfHealth"]);
        assert!(s.service_checks.is_empty());
        assert_eq!(s.lock_delay, Duration::from_secs(15));
        assert_eq!(s.behavior, SessionBehavior::Release);
        assert_eq!(s.ttl, "");
        assert_eq!(s.name, "");
    }

    let (id, _) = create(&backend, &base, Some("{}")).await;
    let (status, headers, text) =
        request(Method::GET, &format!("{base}/v1/session/info/{id}"), None).await;
    assert_eq!(status, 200, "{text}");
    assert!(headers.contains_key("x-consul-index"));
    assert_eq!(headers["x-consul-knownleader"], "true");
    let info = parse(&text);
    let index = info[0]["CreateIndex"].as_u64().unwrap_or(0);
    assert!(index > 0);
    // LockDelay is integer nanoseconds, ServiceChecks null when empty, and neither the
    // deprecated `Checks` nor `Namespace` is written.
    assert_eq!(
        info,
        json!([{
            "ID": id,
            "Name": "",
            "Node": "node1",
            "LockDelay": 15_000_000_000u64,
            "Behavior": "release",
            "TTL": "",
            "NodeChecks": ["serfHealth"],
            "ServiceChecks": null,
            "CreateIndex": index,
            "ModifyIndex": index,
        }])
    );
}

#[tokio::test]
async fn create_body_fields_and_quirks() {
    let (backend, base) = start().await;

    // The Go client's `CreateNoChecks` body: an explicit empty list drops serfHealth.
    let (id, s) = create(
        &backend,
        &base,
        Some(
            r#"{"NodeChecks":[],"Name":"n","LockDelay":"15000ms","Behavior":"delete","TTL":"10s"}"#,
        ),
    )
    .await;
    assert!(s.node_checks.is_empty());
    assert_eq!(s.name, "n");
    assert_eq!(s.lock_delay, Duration::from_secs(15));
    assert_eq!(s.behavior, SessionBehavior::Delete);
    assert_eq!(s.ttl, "10s", "the TTL is passed through as text");
    let (_, text) = get(&base, &format!("/v1/session/info/{id}")).await;
    let info = parse(&text);
    assert_eq!(info[0]["NodeChecks"], json!([]), "[] rather than null");
    assert_eq!(info[0]["Behavior"], "delete");
    assert_eq!(info[0]["TTL"], "10s");

    // Lock delays below 1000 (ns) mean seconds (Consul's lockDelayMinThreshold).
    for (body, want) in [
        (r#"{"LockDelay":15}"#, Duration::from_secs(15)),
        (r#"{"LockDelay":"15s"}"#, Duration::from_secs(15)),
        (r#"{"lockdelay":"999ns"}"#, Duration::from_secs(999)),
        (r#"{"LockDelay":2000000000}"#, Duration::from_secs(2)),
        (r#"{"LockDelay":0}"#, Duration::ZERO),
    ] {
        let (_, s) = create(&backend, &base, Some(body)).await;
        assert_eq!(s.lock_delay, want, "{body}");
    }

    // Service checks alone keep the serfHealth default; the legacy `Checks` key and
    // `NodeChecks` both replace it and are merged.
    let (id, s) = create(
        &backend,
        &base,
        Some(r#"{"ServiceChecks":[{"ID":"redis:alive","Namespace":""}],"Node":"foo"}"#),
    )
    .await;
    assert_eq!(s.node_checks, vec!["serfHealth"]);
    assert_eq!(s.node.as_str(), "foo");
    let (_, text) = get(&base, &format!("/v1/session/info/{id}")).await;
    assert_eq!(
        parse(&text)[0]["ServiceChecks"],
        json!([{"ID": "redis:alive", "Namespace": ""}])
    );
    let (_, s) = create(
        &backend,
        &base,
        Some(r#"{"checks":["a"],"NodeChecks":["b","a"]}"#),
    )
    .await;
    assert_eq!(s.node_checks, vec!["b", "a"]);
}

#[tokio::test]
async fn create_errors_write_nothing() {
    let (backend, base) = start().await;
    let cases = [
        (
            r#"{"Behavior":"explode"}"#,
            500,
            "Invalid Behavior setting 'explode'",
        ),
        (
            r#"{"LockDelay":"15"}"#,
            400,
            r#"Request decode failed: time: missing unit in duration "15""#,
        ),
        (r#"{"TTL":10}"#, 400, "Request decode failed: "),
        ("{bad", 400, "Request decode failed: "),
    ];
    for (body, status, text) in cases {
        let (s, b) = put(&base, "/v1/session/create", Some(body)).await;
        assert_eq!(s, status, "{body}: {b}");
        assert!(b.starts_with(text), "{body}: {b}");
    }
    let (s, b) = put(&base, "/v1/session/create?dc=dc2", None).await;
    assert_eq!((s, b.as_str()), (500, "No path to datacenter"));
    assert!(backend.state().writes.is_empty());
}

#[tokio::test]
async fn renew_destroy_and_errors() {
    let (backend, base) = start().await;
    let (id, _) = create(&backend, &base, Some(r#"{"TTL":"10s"}"#)).await;

    let (s, b) = put(&base, &format!("/v1/session/renew/{id}"), None).await;
    assert_eq!(s, 200, "{b}");
    let renewed = parse(&b);
    assert_eq!(renewed[0]["ID"], id.as_str());
    assert_eq!(renewed[0]["TTL"], "10s");

    let (s, b) = put(&base, &format!("/v1/session/destroy/{id}"), None).await;
    assert_eq!((s, b.as_str()), (200, "true"));
    assert!(matches!(
        backend.state().writes.last(),
        Some(WriteRequest::SessionDestroy { id: gone }) if gone.to_string() == id
    ));

    // The Go client's RenewPeriodic stops on exactly this 404.
    let (s, b) = put(&base, &format!("/v1/session/renew/{id}"), None).await;
    assert_eq!((s, b), (404, format!("Session id '{id}' not found")));
    let (s, b) = get(&base, &format!("/v1/session/info/{id}")).await;
    assert_eq!((s, b.as_str()), (200, "[]"));

    for (method, path) in [
        (Method::PUT, "/v1/session/destroy/"),
        (Method::PUT, "/v1/session/renew/"),
        (Method::GET, "/v1/session/info/"),
    ] {
        let (s, _, b) = request(method, &format!("{base}{path}"), None).await;
        assert_eq!((s, b.as_str()), (400, "Missing session"), "{path}");
    }
    let (s, b) = get(&base, "/v1/session/node/").await;
    assert_eq!((s, b.as_str()), (400, "Missing node name"));

    // A malformed ID names no session (Consul 1.20 looks sessions up by string): info
    // is `[]`, renew a 404, destroy a no-op `true`; nothing is written.
    let writes = backend.state().writes.len();
    let one = "1".repeat(36);
    let (s, _, b) = request(Method::GET, &format!("{base}/v1/session/info/{one}"), None).await;
    assert_eq!((s, b.as_str()), (200, "[]"));
    let (s, _, b) = request(Method::PUT, &format!("{base}/v1/session/renew/{one}"), None).await;
    assert_eq!((s, b), (404, format!("Session id '{one}' not found")));
    let (s, _, b) = request(
        Method::PUT,
        &format!("{base}/v1/session/destroy/nope"),
        None,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
    assert_eq!(backend.state().writes.len(), writes);

    // Wrong method: only PUT creates.
    let (s, _) = get(&base, "/v1/session/create").await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn list_and_node_with_filter() {
    let (backend, base) = start().await;
    create(&backend, &base, Some(r#"{"Name":"a"}"#)).await;
    create(&backend, &base, Some(r#"{"Name":"b","Node":"other"}"#)).await;

    let (s, b) = get(&base, "/v1/session/list").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(parse(&b).as_array().map(Vec::len), Some(2));

    let (_, b) = get(&base, "/v1/session/node/node1").await;
    let rows = parse(&b);
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["Name"], "a");

    let (_, b) = get(&base, "/v1/session/list?filter=Name%20%3D%3D%20%22b%22").await;
    let rows = parse(&b);
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["Node"], "other");

    let (_, b) = get(&base, "/v1/session/node/nobody").await;
    assert_eq!(b, "[]");
}
