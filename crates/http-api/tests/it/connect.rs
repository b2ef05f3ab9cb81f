//! `/v1/agent/connect/authorize`: Consul's 400s for bad input, the default allow
//! without ACLs, and `service-intentions` entries deciding by precedence (exact
//! source before `*`, the target's own entry before the `*` destination's, L7 as
//! deny). The intentions API over the same entries: by name (`exact`, `match`,
//! `check`, list) and the deprecated ID-based calls.

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

async fn call(base: &str, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string());
    let (s, _, b) = request(method, &format!("{base}{path}"), body.as_deref()).await;
    (s, b)
}

fn parse(b: &str) -> Value {
    serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}"))
}

#[tokio::test]
async fn intentions_by_name_are_sources_of_config_entries() {
    let (_backend, base) = start().await;
    let exact = "/v1/connect/intentions/exact?source=web&destination=db";
    let (s, b) = call(&base, Method::GET, exact, None).await;
    assert_eq!((s, b.as_str()), (404, "Intention not found"));

    let body = json!({"SourceType": "consul", "Action": "allow", "Description": "web to db"});
    assert_eq!(
        call(&base, Method::PUT, exact, Some(body)).await,
        (200, "true".into())
    );
    let (s, b) = call(&base, Method::GET, exact, None).await;
    assert_eq!(s, 200);
    let ixn = parse(&b);
    assert_eq!(ixn["SourceName"], "web");
    assert_eq!(ixn["DestinationName"], "db");
    assert_eq!(ixn["Action"], "allow");
    assert_eq!(ixn["Precedence"], 9);
    assert_eq!(ixn["CreatedAt"], "0001-01-01T00:00:00Z");
    assert!(ixn.get("ID").is_none());

    // The same data through the config entry API.
    let (s, b) = call(&base, Method::GET, "/v1/config/service-intentions/db", None).await;
    assert_eq!(s, 200);
    assert_eq!(parse(&b)["Sources"][0]["Name"], "web");

    // A wildcard source, then match and check.
    let body = json!({"Action": "deny"});
    let star = "/v1/connect/intentions/exact?source=*&destination=db";
    assert_eq!(call(&base, Method::PUT, star, Some(body)).await.0, 200);
    let (_, b) = call(&base, Method::GET, "/v1/connect/intentions", None).await;
    let names: Vec<Value> = parse(&b)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SourceName"].clone())
        .collect();
    assert_eq!(names, vec![json!("web"), json!("*")]);
    let (_, b) = call(
        &base,
        Method::GET,
        "/v1/connect/intentions/match?by=destination&name=db",
        None,
    )
    .await;
    assert_eq!(parse(&b)["db"].as_array().unwrap().len(), 2);
    for (src, allowed) in [("web", true), ("default/api", false)] {
        let path = format!("/v1/connect/intentions/check?source={src}&destination=db");
        let (_, b) = call(&base, Method::GET, &path, None).await;
        assert_eq!(parse(&b), json!({"Allowed": allowed}), "{src}");
    }

    // A peer's source of the same name is not the local service: it neither
    // decides for `web` nor is touched by writes to `web`.
    let entry = json!({"Kind": "service-intentions", "Name": "cache", "Sources": [
        {"Name": "web", "Peer": "other", "Action": "allow"},
        {"Name": "*", "Action": "deny"}
    ]});
    let (s, _) = call(&base, Method::PUT, "/v1/config", Some(entry)).await;
    assert_eq!(s, 200);
    let (_, b) = call(
        &base,
        Method::GET,
        "/v1/connect/intentions/check?source=web&destination=cache",
        None,
    )
    .await;
    assert_eq!(parse(&b), json!({"Allowed": false}));
    let web_cache = "/v1/connect/intentions/exact?source=web&destination=cache";
    assert_eq!(call(&base, Method::DELETE, web_cache, None).await.0, 200);
    let (_, b) = call(
        &base,
        Method::GET,
        "/v1/config/service-intentions/cache",
        None,
    )
    .await;
    assert_eq!(parse(&b)["Sources"][0]["Peer"], "other");
    let (s, b) = call(
        &base,
        Method::DELETE,
        "/v1/connect/intentions/exact?source=&destination=cache",
        None,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (500, "required query parameter 'source' not set")
    );

    // Bad input changes nothing.
    let bad = json!({"Action": "maybe"});
    let (s, b) = call(&base, Method::PUT, exact, Some(bad)).await;
    assert_eq!(
        (s, b.as_str()),
        (500, "Action must be set to 'allow' or 'deny'")
    );
    let (s, _) = call(&base, Method::PUT, exact, Some(json!("nope"))).await;
    assert_eq!(s, 400);
    let with_meta = json!({"Action": "deny", "Meta": {"team": "a"}});
    let (s, b) = call(&base, Method::PUT, exact, Some(with_meta)).await;
    assert_eq!(
        (s, b.as_str()),
        (
            500,
            "Meta must not be specified, or should be unchanged during an update."
        )
    );
    let (_, b) = call(&base, Method::GET, exact, None).await;
    assert_eq!(parse(&b)["Action"], "allow");

    // Deleting is idempotent; the last source takes the entry with it.
    for _ in 0..2 {
        assert_eq!(
            call(&base, Method::DELETE, exact, None).await,
            (200, "true".into())
        );
    }
    assert_eq!(call(&base, Method::DELETE, star, None).await.0, 200);
    let (s, _) = call(&base, Method::GET, "/v1/config/service-intentions/db", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn legacy_intentions_keep_their_id_and_creation_time() {
    let (_backend, base) = start().await;
    let body = json!({"SourceName": "api", "DestinationName": "db", "Action": "allow", "SourceType": "consul", "Meta": {"team": "a"}});
    let (s, b) = call(
        &base,
        Method::POST,
        "/v1/connect/intentions",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 200);
    let id = parse(&b)["ID"].as_str().unwrap().to_owned();
    let path = format!("/v1/connect/intentions/{id}");
    let (_, b) = call(&base, Method::GET, &path, None).await;
    let created = parse(&b);
    assert_eq!(created["ID"], id.as_str());
    assert_eq!(created["Meta"], json!({"team": "a"}));

    // A second intention for the same pair is refused.
    let (s, b) = call(&base, Method::POST, "/v1/connect/intentions", Some(body)).await;
    assert_eq!(
        (s, b.as_str()),
        (500, "Sources[1] defines \"default/api\" more than once")
    );

    // Replaced by name, it keeps its ID and creation time.
    let exact = "/v1/connect/intentions/exact?source=api&destination=db";
    let (s, _) = call(&base, Method::PUT, exact, Some(json!({"Action": "deny"}))).await;
    assert_eq!(s, 200);
    let (_, b) = call(&base, Method::GET, &path, None).await;
    let replaced = parse(&b);
    assert_eq!(replaced["Action"], "deny");
    assert_eq!(replaced["CreatedAt"], created["CreatedAt"]);

    let update = json!({"SourceName": "api-2", "DestinationName": "db", "Action": "deny"});
    let (s, b) = call(&base, Method::PUT, &path, Some(update)).await;
    assert_eq!((s, parse(&b)), (200, json!({"ID": id})));
    let (_, b) = call(&base, Method::GET, &path, None).await;
    let updated = parse(&b);
    assert_eq!(updated["SourceName"], "api-2");
    assert_eq!(updated["Action"], "deny");
    assert_eq!(updated["CreatedAt"], created["CreatedAt"]);

    let moved = json!({"SourceName": "api", "DestinationName": "cache", "Action": "deny"});
    let (s, b) = call(&base, Method::PUT, &path, Some(moved)).await;
    assert_eq!(
        (s, b.as_str()),
        (
            500,
            "Cannot modify Destination partition/namespace/name for an intention once it exists."
        )
    );

    assert_eq!(
        call(&base, Method::DELETE, &path, None).await,
        (200, "true".into())
    );
    let (s, b) = call(&base, Method::GET, &path, None).await;
    assert_eq!((s, b.as_str()), (404, "Intention not found"));
    let (s, b) = call(&base, Method::DELETE, &path, None).await;
    assert_eq!(
        (s, b),
        (500, format!("Cannot delete non-existent intention: '{id}'"))
    );
    let (s, b) = call(&base, Method::GET, "/v1/connect/intentions/hello", None).await;
    assert!(s == 400 && b.contains("UUID"), "{s} {b}");
}

#[tokio::test]
async fn an_intention_write_refuses_an_entry_it_cannot_read_and_changes_nothing() {
    let (_backend, base) = start().await;
    // Accepted by the untyped config API, but not a list of sources.
    intentions(&base, "db", json!({"Name": "web", "Action": "allow"})).await;
    let entry = "/v1/config/service-intentions/db";
    let (_, before) = call(&base, Method::GET, entry, None).await;

    let exact = "/v1/connect/intentions/exact?source=api&destination=db";
    let (s, b) = call(&base, Method::PUT, exact, Some(json!({"Action": "deny"}))).await;
    assert_eq!(s, 500, "{b}");
    assert!(b.contains("not a list"), "{b}");
    let (s, b) = call(&base, Method::DELETE, exact, None).await;
    assert_eq!(s, 500, "{b}");
    let (_, after) = call(&base, Method::GET, entry, None).await;
    assert_eq!(parse(&after), parse(&before));
}
