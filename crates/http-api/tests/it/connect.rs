//! `/v1/agent/connect/authorize`: Consul's 400s for bad input, the default allow
//! without ACLs, and `service-intentions` entries deciding by precedence (exact
//! source before `*`, the target's own entry before the `*` destination's, L7 as
//! deny).

use crate::support::{request, start};
use reqwest::Method;
use serde_json::{json, Value};

const WEB: &str = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web";
const API: &str = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/api";

async fn authorize(base: &str, target: &str, uri: &str) -> (u16, Value) {
    let body = json!({"Target": target, "ClientCertURI": uri, "ClientCertSerial": "fake"});
    let url = format!("{base}/v1/agent/connect/authorize");
    let (s, _, b) = request(Method::POST, &url, Some(&body.to_string())).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
}

async fn intentions(base: &str, dest: &str, sources: Value) {
    let body = json!({"Kind": "service-intentions", "Name": dest, "Sources": sources});
    let (s, _, b) = request(
        Method::PUT,
        &format!("{base}/v1/config"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
}

#[tokio::test]
async fn authorize_follows_intentions_and_defaults_to_allow() {
    let (_backend, base) = start().await;
    let (s, v) = authorize(&base, "foo", WEB).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"Authorized": true, "Reason": "Default behavior configured by ACLs"})
    );

    intentions(
        &base,
        "foo",
        json!([{"Name": "web", "Action": "deny"}, {"Name": "*", "Action": "allow"}]),
    )
    .await;
    let (_, v) = authorize(&base, "foo", WEB).await;
    assert_eq!(v["Authorized"], false);
    assert_eq!(
        v["Reason"],
        "Matched L4 intention: web => foo (Precedence: 9)"
    );
    let (_, v) = authorize(&base, "foo", API).await;
    assert_eq!(v["Authorized"], true);
    assert_eq!(
        v["Reason"],
        "Matched L4 intention: * => foo (Precedence: 8)"
    );

    // The `*` destination applies to targets without an entry of their own.
    intentions(
        &base,
        "*",
        json!([{"Name": "api", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]),
    )
    .await;
    let (_, v) = authorize(&base, "bar", API).await;
    assert_eq!(v["Authorized"], false, "L7 intentions deny an L4 question");
    assert_eq!(
        v["Reason"],
        "Matched L7 intention: api => * (Precedence: 6)"
    );
    let (_, v) = authorize(&base, "bar", WEB).await;
    assert_eq!(v["Authorized"], true);
}

#[tokio::test]
async fn bad_authorize_requests_get_consuls_400s() {
    let (_backend, base) = start().await;
    for (target, uri, want) in [
        ("", WEB, "Target service must be specified"),
        (
            "foo",
            "not a uri",
            "ClientCertURI not a valid Connect identifier",
        ),
        (
            "foo",
            "spiffe://x.consul/ns/default/svc/web",
            "ClientCertURI not a valid Connect identifier",
        ),
        (
            "foo",
            "spiffe://x.consul/agent/client/dc/dc1/id/123",
            "ClientCertURI not a valid Service identifier",
        ),
    ] {
        let (s, v) = authorize(&base, target, uri).await;
        assert_eq!((s, v), (400, Value::String(want.into())), "{target} {uri}");
    }
}
