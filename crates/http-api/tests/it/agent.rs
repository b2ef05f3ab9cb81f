//! `/v1/agent/*` over real HTTP against the in-memory backend: registration in every key
//! spelling clients use, percent-encoded IDs, TTL updates, per-service health codes,
//! maintenance, hash-based blocking, method handling and Consul's error texts.

use crate::support::start;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A tiny client bound to one server.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn new() -> (std::sync::Arc<crate::support::FakeBackend>, Api) {
        let (backend, base) = start().await;
        (
            backend,
            Api {
                client: reqwest::Client::new(),
                base,
            },
        )
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, HeaderMap, String) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (status, headers, text)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = self.call(Method::GET, path, None, &[]).await;
        (s, b)
    }

    async fn put(&self, path: &str, body: &str) -> (u16, String) {
        let (s, _, b) = self.call(Method::PUT, path, Some(body), &[]).await;
        (s, b)
    }

    /// A GET that must succeed, parsed as JSON.
    async fn json(&self, path: &str) -> Value {
        let (s, b) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("GET {path}: {e}: {b}"))
    }

    /// A PUT that must succeed with Consul's empty body.
    async fn put_ok(&self, path: &str, body: &str) {
        let (s, b) = self.put(path, body).await;
        assert_eq!((s, b.as_str()), (200, ""), "PUT {path}");
    }
}

#[tokio::test]
async fn register_accepts_pascal_and_snake_case_bodies() {
    let (_b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"web","ID":"web1","Tags":["a","b"],"Port":8080,"Address":"10.0.0.1",
            "Meta":{"Env_Name":"prod"},"EnableTagOverride":true,
            "TaggedAddresses":{"lan":{"Address":"10.0.0.1","Port":8080}},
            "Check":{"TTL":"15s","Status":"passing"}}"#,
    )
    .await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"name":"db","id":"db1","tags":["x"],"port":5432,"enable_tag_override":true,
            "tagged_addresses":{"wan":{"address":"1.2.3.4","port":5432}},
            "meta":{"Some_Key":"v"},
            "checks":[{"ttl":"10s","deregister_critical_service_after":"90m"},{"ttl":"20s","name":"second"}]}"#,
    )
    .await;

    let services = api.json("/v1/agent/services").await;
    let web = &services["web1"];
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Tags"], json!(["a", "b"]));
    assert_eq!(web["Port"], 8080);
    assert_eq!(
        web["Meta"],
        json!({"Env_Name": "prod"}),
        "user map keys are kept as sent"
    );
    assert_eq!(web["EnableTagOverride"], true);
    assert_eq!(
        web["TaggedAddresses"]["lan"],
        json!({"Address": "10.0.0.1", "Port": 8080})
    );
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web["Datacenter"], "dc1");
    assert!(
        web.get("ContentHash").is_none(),
        "only the single-service read has a hash"
    );
    let db = &services["db1"];
    assert_eq!(db["EnableTagOverride"], true);
    assert_eq!(db["TaggedAddresses"]["wan"]["Address"], "1.2.3.4");
    assert_eq!(db["Meta"], json!({"Some_Key": "v"}));

    let checks = api.json("/v1/agent/checks").await;
    assert_eq!(checks["service:web1"]["Status"], "passing");
    assert_eq!(checks["service:web1"]["Type"], "ttl");
    assert_eq!(checks["service:web1"]["ServiceName"], "web");
    assert_eq!(checks["service:web1"]["Name"], "Service 'web' check");
    assert_eq!(checks["service:web1"]["Definition"]["TTL"], "15s");
    assert_eq!(
        checks["service:db1:1"]["Status"], "critical",
        "checks start critical"
    );
    assert_eq!(
        checks["service:db1:1"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1h30m0s"
    );
    assert!(checks.get("second").is_some() || checks.get("service:db1:2").is_some());
}

#[tokio::test]
async fn single_service_has_consuls_content_hash() {
    let (_b, api) = Api::new().await;
    // The registration of the Go client's TestAPI_AgentService, whose expected hash
    // Consul computed.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","Tags":["bar","baz"],"Port":8000,"Checks":[{"TTL":"15s"},{"TTL":"30s"}]}"#,
    )
    .await;
    let (s, headers, body) = api
        .call(Method::GET, "/v1/agent/service/foo", None, &[])
        .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["ContentHash"], "3e352f348d44f7eb");
    assert_eq!(headers["x-consul-contenthash"], "3e352f348d44f7eb");
    assert_eq!(v["ID"], "foo");
    assert_eq!(v["Meta"], json!({}));
    assert_eq!(v["Datacenter"], "dc1");

    let (s, b) = api.get("/v1/agent/service/nope").await;
    assert_eq!((s, b.as_str()), (404, "unknown service ID: nope"));
}

#[tokio::test]
async fn hash_blocking_waits_while_unchanged_and_returns_at_once_when_different() {
    let (_b, api) = Api::new().await;
    api.put_ok("/v1/agent/service/register", r#"{"Name":"foo","Port":1}"#)
        .await;
    let first = api.json("/v1/agent/service/foo").await;
    let hash = first["ContentHash"].as_str().expect("hash").to_owned();

    // Same hash: held for the whole wait (Go client test: elapsed >= WaitTime).
    let start = Instant::now();
    let v = api
        .json(&format!("/v1/agent/service/foo?hash={hash}&wait=100ms"))
        .await;
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "returned after {:?}",
        start.elapsed()
    );
    assert_eq!(v["ContentHash"], hash.as_str());

    // After a change the old hash no longer matches: the answer is immediate and new.
    api.put_ok("/v1/agent/service/register", r#"{"Name":"foo","Port":2}"#)
        .await;
    let start = Instant::now();
    let v = api
        .json(&format!("/v1/agent/service/foo?hash={hash}&wait=5m"))
        .await;
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(v["Port"], 2);
    assert_ne!(v["ContentHash"], hash.as_str());

    let (s, b) = api.get("/v1/agent/service/foo?hash=x&wait=soon").await;
    assert_eq!((s, b.as_str()), (400, "Invalid wait time"));
}

#[tokio::test]
async fn a_change_wakes_a_parked_hash_blocking_request() {
    let (b, api) = Api::new().await;
    api.put_ok("/v1/agent/service/register", r#"{"Name":"foo","Port":1}"#)
        .await;
    let hash = api.json("/v1/agent/service/foo").await["ContentHash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let mut subs = b.subscriptions();
    let seen = *subs.borrow_and_update();
    let api = std::sync::Arc::new(api);
    let waiter = {
        let api = api.clone();
        let path = format!("/v1/agent/service/foo?hash={hash}&wait=5m");
        tokio::spawn(async move { api.json(&path).await })
    };
    // The handler subscribes to local changes before reading state, so once it has
    // subscribed, any later change is guaranteed to reach it.
    subs.wait_for(|n| *n > seen).await.expect("subscription");
    api.put_ok("/v1/agent/service/register", r#"{"Name":"foo","Port":2}"#)
        .await;
    let v = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the change, not by the 5m deadline")
        .expect("task");
    assert_eq!(v["Port"], 2);
    assert_ne!(v["ContentHash"], hash.as_str());
}

#[tokio::test]
async fn percent_encoded_ids_reach_the_handlers_decoded() {
    let (b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"batman","ID":"batman/pg1","Check":{"CheckID":"chk/1","TTL":"10s"}}"#,
    )
    .await;
    let v = api.json("/v1/agent/service/batman%2Fpg1").await;
    assert_eq!(v["ID"], "batman/pg1");
    api.put_ok("/v1/agent/check/pass/chk%2F1?note=fine", "")
        .await;
    assert_eq!(
        api.json("/v1/agent/checks").await["chk/1"]["Status"],
        "passing"
    );
    let (s, body) = api
        .get("/v1/agent/health/service/id/batman%2Fpg1?format=text")
        .await;
    assert_eq!((s, body.as_str()), (200, "passing"));
    api.put_ok("/v1/agent/service/deregister/batman%2Fpg1", "")
        .await;
    assert!(b.state().services.is_empty());
    assert!(
        b.state().checks.is_empty(),
        "the service's checks go with it"
    );
}

#[tokio::test]
async fn ttl_pass_warn_fail_and_update() {
    let (b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/check/register",
        r#"{"Name":"mem","TTL":"15s","OutputMaxSize":10}"#,
    )
    .await;
    let status = |v: Value| {
        (
            v["mem"]["Status"].as_str().unwrap_or("").to_owned(),
            v["mem"]["Output"].as_str().unwrap_or("").to_owned(),
        )
    };
    let c = api.json("/v1/agent/checks").await;
    assert_eq!(c["mem"]["Type"], "ttl");
    assert_eq!(status(c), ("critical".into(), String::new()));

    api.put_ok("/v1/agent/check/pass/mem?note=ok", "").await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await),
        ("passing".into(), "ok".into())
    );
    api.put_ok("/v1/agent/check/warn/mem?note=hmm", "").await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await),
        ("warning".into(), "hmm".into())
    );
    api.put_ok("/v1/agent/check/fail/mem", "").await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await),
        ("critical".into(), String::new())
    );
    api.put_ok(
        "/v1/agent/check/update/mem",
        r#"{"Status":"passing","Output":"fine"}"#,
    )
    .await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await),
        ("passing".into(), "fine".into())
    );
    // snake/lower-case keys work too.
    api.put_ok(
        "/v1/agent/check/update/mem",
        r#"{"status":"warning","output":"lower"}"#,
    )
    .await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await),
        ("warning".into(), "lower".into())
    );

    // Output beyond the check's OutputMaxSize is cut like Consul's CheckTTL does.
    api.put_ok(
        "/v1/agent/check/update/mem",
        r#"{"Status":"passing","Output":"0123456789abcdef"}"#,
    )
    .await;
    assert_eq!(
        status(api.json("/v1/agent/checks").await).1,
        "0123456789 ... (captured 10 of 16 bytes)"
    );

    // Bad status: 400 with Consul's text, nothing changes.
    let before = b.state().checks["mem"].check.clone();
    let (s, body) = api
        .put(
            "/v1/agent/check/update/mem",
            r#"{"Status":"bogus","Output":"x"}"#,
        )
        .await;
    assert_eq!((s, body.as_str()), (400, "Invalid check status: 'bogus'"));
    let (s, body) = api.put("/v1/agent/check/update/mem", "{not json").await;
    assert_eq!(s, 400);
    assert!(body.starts_with("Request decode failed"), "{body}");
    assert_eq!(b.state().checks["mem"].check, before);

    // Unknown check: 404; not a TTL check: 500.
    let (s, body) = api.put("/v1/agent/check/pass/nope", "").await;
    assert_eq!(
        (s, body.as_str()),
        (
            404,
            "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
        )
    );
    let (s, _) = api
        .put("/v1/agent/check/update/nope", r#"{"Status":"passing"}"#)
        .await;
    assert_eq!(s, 404);
    api.put_ok(
        "/v1/agent/check/register",
        r#"{"Name":"web","HTTP":"http://127.0.0.1:1/","Interval":"10s"}"#,
    )
    .await;
    let (s, body) = api.put("/v1/agent/check/pass/web", "").await;
    assert_eq!(
        (s, body.as_str()),
        (500, "CheckID \"web\" does not have associated TTL")
    );

    // Deregistration: known goes, unknown is a 404.
    api.put_ok("/v1/agent/check/deregister/mem", "").await;
    assert!(api.json("/v1/agent/checks").await.get("mem").is_none());
    let (s, _) = api.put("/v1/agent/check/deregister/mem", "").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn check_register_rejections_change_nothing() {
    let (b, api) = Api::new().await;
    let cases = [
        (r#"{"TTL":"10s"}"#, 400, "Missing check name"),
        (r#"{"ID":"x","TTL":"10s"}"#, 400, "Missing check name"),
        (
            r#"{"Name":"x","TTL":"10s","Status":"fluffy"}"#,
            400,
            "Bad check status",
        ),
        (
            r#"{"Name":"x","TTL":"10s","ServiceID":"nosuch"}"#,
            404,
            "ServiceID \"nosuch\" does not exist",
        ),
    ];
    for (body, code, text) in cases {
        let (s, got) = api.put("/v1/agent/check/register", body).await;
        assert_eq!((s, got.as_str()), (code, text), "{body}");
    }
    let (s, got) = api.put("/v1/agent/check/register", r#"{"Name":"x"}"#).await;
    assert_eq!(s, 400);
    assert!(got.starts_with("Invalid check"), "{got}");
    let (s, got) = api
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"x","TTL":"15s","DeregisterCriticalServiceAfter":"nope"}"#,
        )
        .await;
    assert_eq!(s, 400);
    assert!(got.contains("invalid duration"), "{got}");
    let (s, got) = api.put("/v1/agent/check/register", "[1,2").await;
    assert_eq!(s, 400);
    assert!(got.starts_with("Request decode failed"), "{got}");
    assert!(b.state().checks.is_empty());

    // A check bound to an existing service takes its name and tags.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"redis","Tags":["t"]}"#,
    )
    .await;
    api.put_ok(
        "/v1/agent/check/register",
        r#"{"Name":"redischeck","serviceid":"redis","ttl":"15s","deregister_critical_service_after":"90m"}"#,
    )
    .await;
    let c = &api.json("/v1/agent/checks").await["redischeck"];
    assert_eq!(c["ServiceID"], "redis");
    assert_eq!(c["ServiceName"], "redis");
    assert_eq!(c["ServiceTags"], json!(["t"]));
}

#[tokio::test]
async fn service_register_rejections_change_nothing() {
    let (b, api) = Api::new().await;
    let cases = [
        (r#"{"Port":80}"#, "Missing service name"),
        (r#"{"Name":"x","Address":"0.0.0.0"}"#, "Invalid service address"),
        (r#"{"Name":"x","Address":"[::]"}"#, "Invalid service address"),
        (r#"{"Name":"x","Weights":{"Passing":0,"Warning":1}}"#, "Invalid Weights: Passing must be greater than 0"),
        (
            r#"{"Name":"x","Check":{"TTL":"15s","Status":"fluffy"}}"#,
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            r#"{"Name":"p","Kind":"connect-proxy","Port":0}"#,
            "Validation failed: 2 errors occurred:\n\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\t* Port or SocketPath must be set for a Connect proxy\n\n",
        ),
    ];
    for (body, text) in cases {
        let (s, got) = api.put("/v1/agent/service/register", body).await;
        assert_eq!((s, got.as_str()), (400, text), "{body}");
    }
    let (s, got) = api
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"x","Port":"eighty"}"#,
        )
        .await;
    assert_eq!(s, 400);
    assert!(got.starts_with("Request decode failed"), "{got}");
    let (s, _) = api
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"Interval":"10s"}}"#,
        )
        .await;
    assert_eq!(s, 400, "a check without a way to run is rejected");
    assert!(b.state().services.is_empty());
    assert!(b.state().checks.is_empty());
}

#[tokio::test]
async fn replace_existing_checks_drops_checks_left_out() {
    let (_b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","Port":8000,"Check":{"TTL":"15s"}}"#,
    )
    .await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","Port":9000}"#,
    )
    .await;
    assert!(
        api.json("/v1/agent/checks")
            .await
            .get("service:foo")
            .is_some(),
        "kept without the flag"
    );
    api.put_ok(
        "/v1/agent/service/register?replace-existing-checks=true",
        r#"{"Name":"foo","Port":9000}"#,
    )
    .await;
    assert_eq!(api.json("/v1/agent/checks").await, json!({}));
    let (s, b) = api.get("/v1/agent/health/service/id/foo").await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(v["AggregatedStatus"], "passing");
    assert_eq!(v["Service"]["Port"], 9000);
}

#[tokio::test]
async fn health_by_id_and_name_encode_status_in_the_code() {
    let (_b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"web","ID":"web1","Check":{"TTL":"15s"}}"#,
    )
    .await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"web","ID":"web2","Check":{"TTL":"15s","Status":"passing"}}"#,
    )
    .await;

    let (s, body) = api.get("/v1/agent/health/service/id/web1").await;
    assert_eq!(s, 503);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["AggregatedStatus"], "critical");
    assert_eq!(v["Service"]["ID"], "web1");
    assert_eq!(v["Checks"][0]["CheckID"], "service:web1");

    api.put_ok("/v1/agent/check/warn/service:web1", "").await;
    let (s, body) = api
        .get("/v1/agent/health/service/id/web1?format=text")
        .await;
    assert_eq!((s, body.as_str()), (429, "warning"));
    let (s, h, body) = api
        .call(
            Method::GET,
            "/v1/agent/health/service/id/web1",
            None,
            &[("Accept", "text/plain")],
        )
        .await;
    assert_eq!((s, body.as_str()), (429, "warning"));
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["x-consul-reason"], "warning");
    let (_, h, _) = api
        .call(Method::GET, "/v1/agent/health/service/id/nope", None, &[])
        .await;
    assert_eq!(h["x-consul-reason"], "ServiceId nope not found");
    let (_, h, _) = api
        .call(Method::GET, "/v1/agent/health/service/name/web", None, &[])
        .await;
    assert_eq!(h["x-consul-reason"], "warning");
    api.put_ok("/v1/agent/check/pass/service:web1", "").await;
    let (s, body) = api
        .get("/v1/agent/health/service/id/web1?format=text")
        .await;
    assert_eq!((s, body.as_str()), (200, "passing"));

    // By name: the worst instance decides.
    api.put_ok("/v1/agent/check/fail/service:web2", "").await;
    let (s, body) = api.get("/v1/agent/health/service/name/web").await;
    assert_eq!(s, 503);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[0]["AggregatedStatus"], "passing");
    assert_eq!(v[1]["AggregatedStatus"], "critical");
    let (s, body) = api
        .get("/v1/agent/health/service/name/web?format=text")
        .await;
    assert_eq!((s, body.as_str()), (503, "critical"));

    // Maintenance is reported as such and is unavailable.
    api.put_ok(
        "/v1/agent/service/maintenance/web1?enable=true&reason=deploy",
        "",
    )
    .await;
    let (s, body) = api
        .get("/v1/agent/health/service/id/web1?format=text")
        .await;
    assert_eq!((s, body.as_str()), (503, "maintenance"));
    api.put_ok("/v1/agent/service/maintenance/web1?enable=false", "")
        .await;
    api.put_ok("/v1/agent/maintenance?enable=true", "").await;
    let (s, body) = api
        .get("/v1/agent/health/service/id/web1?format=text")
        .await;
    assert_eq!(
        (s, body.as_str()),
        (503, "maintenance"),
        "node maintenance covers every service"
    );

    // Unknown service / name.
    let (s, body) = api.get("/v1/agent/health/service/id/nope").await;
    assert_eq!(s, 404);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v,
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
    let (s, body) = api
        .get("/v1/agent/health/service/id/nope?format=text")
        .await;
    assert_eq!((s, body.as_str()), (404, "ServiceId nope not found"));
    let (s, body) = api.get("/v1/agent/health/service/name/nope").await;
    assert_eq!((s, body.as_str()), (404, "[]"));
    let (s, body) = api
        .get("/v1/agent/health/service/name/nope?format=text")
        .await;
    assert_eq!((s, body.as_str()), (404, "ServiceName nope Not Found"));
    let (s, body) = api.get("/v1/agent/health/service/id/").await;
    assert_eq!((s, body.as_str()), (400, "Missing serviceID"));
}

#[tokio::test]
async fn service_and_node_maintenance() {
    let (b, api) = Api::new().await;
    api.put_ok("/v1/agent/service/register", r#"{"Name":"redis"}"#)
        .await;

    let (s, body) = api.put("/v1/agent/service/maintenance/redis", "").await;
    assert_eq!((s, body.as_str()), (400, "Missing value for enable"));
    let (s, body) = api
        .put("/v1/agent/service/maintenance/redis?enable=maybe", "")
        .await;
    assert_eq!(
        (s, body.as_str()),
        (400, "Invalid value for enable: \"maybe\"")
    );
    let (s, body) = api
        .put("/v1/agent/service/maintenance/nope?enable=true", "")
        .await;
    assert_eq!(
        (s, body.as_str()),
        (404, "Unknown service ID \"nope\". Ensure that the service ID is passed, not the service name.")
    );
    let (s, body) = api
        .put("/v1/agent/service/maintenance/?enable=true", "")
        .await;
    assert_eq!((s, body.as_str()), (400, "Missing service ID"));
    assert!(b.state().checks.is_empty());

    api.put_ok(
        "/v1/agent/service/maintenance/redis?enable=true&reason=broken",
        "",
    )
    .await;
    let c = &api.json("/v1/agent/checks").await["_service_maintenance:redis"];
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Notes"], "broken");
    assert_eq!(c["ServiceID"], "redis");
    api.put_ok("/v1/agent/service/maintenance/redis?enable=false", "")
        .await;
    assert_eq!(api.json("/v1/agent/checks").await, json!({}));

    // Node maintenance; Python clients send `enable=True`.
    let (s, body) = api.put("/v1/agent/maintenance", "").await;
    assert_eq!((s, body.as_str()), (400, "Missing value for enable"));
    api.put_ok("/v1/agent/maintenance?enable=True&reason=test", "")
        .await;
    assert_eq!(
        api.json("/v1/agent/checks").await["_node_maintenance"]["Notes"],
        "test"
    );
    api.put_ok("/v1/agent/maintenance?enable=0", "").await;
    assert_eq!(api.json("/v1/agent/checks").await, json!({}));
}

#[tokio::test]
async fn deregister_unknown_service_is_404() {
    let (_b, api) = Api::new().await;
    let (s, body) = api.put("/v1/agent/service/deregister/ghost", "").await;
    assert_eq!(
        (s, body.as_str()),
        (404, "Unknown service ID \"ghost\". Ensure that the service ID is passed, not the service name.")
    );
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let (_b, api) = Api::new().await;
    for (method, path, allowed) in [
        (Method::GET, "/v1/agent/service/register", "PUT"),
        (Method::PUT, "/v1/agent/services", "GET"),
        (Method::POST, "/v1/agent/check/pass/x", "PUT"),
        (Method::DELETE, "/v1/agent/self", "GET"),
        (Method::PUT, "/v1/agent/service/foo", "GET"),
        (Method::GET, "/v1/agent/service/deregister/foo", "PUT"),
        (Method::GET, "/v1/agent/leave", "PUT"),
    ] {
        let (s, h, _) = api.call(method.clone(), path, None, &[]).await;
        assert_eq!(s, 405, "{method} {path}");
        let allow = h.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow:?}");
    }
}

#[tokio::test]
async fn self_members_and_leader_agree() {
    let (_b, api) = Api::new().await;
    let me = api.json("/v1/agent/self").await;
    let keys: Vec<&str> = me
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "Config",
        "DebugConfig",
        "Coord",
        "Member",
        "Stats",
        "Meta",
        "xDS",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(me["Config"]["NodeName"], "node1");
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["Config"]["SessionTTLMin"], 10_000_000_000u64);
    assert_eq!(me["DebugConfig"]["SessionTTLMin"], "10s");
    assert_eq!(
        me["DebugConfig"]["SerfAdvertiseAddrLAN"],
        "tcp://127.0.0.1:8301"
    );
    assert_eq!(me["Meta"], json!({"rack": "r1"}));
    assert_eq!(me["Coord"]["Vec"].as_array().map(Vec::len), Some(8));
    let leader = api.json("/v1/status/leader").await;
    assert_eq!(me["Stats"]["consul"]["leader_addr"], leader);
    assert_eq!(me["Stats"]["consul"]["leader"], "true");

    let members = api.json("/v1/agent/members").await;
    assert!(
        members.as_array().expect("list").contains(&me["Member"]),
        "self is one of the members"
    );
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["ProtocolCur"], 2);
    let wan = api.json("/v1/agent/members?wan=1").await;
    assert_eq!(wan[0]["Name"], "node1.dc1");
    let (s, body) = api.get("/v1/agent/members?wan=1&segment=alpha").await;
    assert_eq!(
        (s, body.as_str()),
        (400, "Cannot provide a segment with wan=true")
    );
    let filtered = api
        .json("/v1/agent/members?filter=Name%20%3D%3D%20%22other%22")
        .await;
    assert_eq!(filtered, json!([]));

    let version = api.json("/v1/agent/version").await;
    assert_eq!(version["HumanVersion"], "1.17.0");
    let host = api.json("/v1/agent/host").await;
    assert!(host["CollectionTime"].as_u64().is_some_and(|t| t > 0));
}

#[tokio::test]
async fn filters_on_services_and_checks() {
    let (_b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","ID":"foo","Tags":["bar"],"Check":{"TTL":"15s"}}"#,
    )
    .await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","ID":"foo2","Tags":["foo"]}"#,
    )
    .await;
    api.put_ok("/v1/agent/check/register", r#"{"Name":"bar","TTL":"15s"}"#)
        .await;

    let v = api.json("/v1/agent/services?filter=foo%20in%20Tags").await;
    assert_eq!(
        v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["foo2".to_owned()])
    );
    let v = api
        .json("/v1/agent/checks?filter=Name%20%3D%3D%20bar")
        .await;
    assert_eq!(
        v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["bar".to_owned()])
    );
    let (s, body) = api.get("/v1/agent/services?filter=Nope%20%3D%3D%201").await;
    assert_eq!(s, 400);
    assert!(
        body.starts_with("Failed to create boolean expression evaluator"),
        "{body}"
    );
    let (s, _) = api.get("/v1/agent/checks?filter=%3D%3D").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn sidecar_service_is_registered_and_removed_with_its_parent() {
    let (b, api) = Api::new().await;
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","Port":8000,"Tags":["t"],"Connect":{"SidecarService":{}}}"#,
    )
    .await;
    let services = api.json("/v1/agent/services").await;
    let parent = &services["foo"];
    assert!(
        parent.get("Connect").is_none(),
        "the sidecar block is not stored on the parent"
    );
    let sidecar = &services["foo-sidecar-proxy"];
    assert_eq!(sidecar["Kind"], "connect-proxy");
    assert_eq!(sidecar["Service"], "foo-sidecar-proxy");
    assert_eq!(sidecar["Port"], 21000);
    assert_eq!(sidecar["Tags"], json!(["t"]));
    let proxy = &sidecar["Proxy"];
    // Consul's spelling, as its answers always have it.
    assert_eq!(proxy["DestinationServiceName"], "foo");
    assert_eq!(proxy["DestinationServiceID"], "foo");
    assert_eq!(proxy["LocalServicePort"], 8000);
    let checks = api.json("/v1/agent/checks").await;
    assert_eq!(
        checks["service:foo-sidecar-proxy:1"]["Definition"]["TCP"],
        "127.0.0.1:21000"
    );
    assert_eq!(
        checks["service:foo-sidecar-proxy:2"]["Definition"]["AliasService"],
        "foo"
    );

    // A second sidecar gets the next free port; re-registration keeps its port.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"bar","Port":9000,"Connect":{"sidecar_service":{}}}"#,
    )
    .await;
    assert_eq!(
        api.json("/v1/agent/services").await["bar-sidecar-proxy"]["Port"],
        21001
    );
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"foo","Port":8000,"Connect":{"SidecarService":{}}}"#,
    )
    .await;
    assert_eq!(
        api.json("/v1/agent/services").await["foo-sidecar-proxy"]["Port"],
        21000
    );

    api.put_ok("/v1/agent/service/deregister/foo", "").await;
    let services = b.state().services.keys().cloned().collect::<Vec<_>>();
    assert_eq!(services, ["bar", "bar-sidecar-proxy"]);

    // An empty value under another spelling gives way to the default: one
    // key, in Consul's spelling, which the listening check uses.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"baz","Port":7000,"Connect":{"SidecarService":{"Proxy":{"local_service_address":""}}}}"#,
    )
    .await;
    let sidecar = &api.json("/v1/agent/services").await["baz-sidecar-proxy"];
    let keys: Vec<&String> = sidecar["Proxy"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys.iter()
            .filter(
                |k| k.to_lowercase().contains("localserviceaddress") || k.contains("local_service")
            )
            .count(),
        1,
        "{sidecar}"
    );
    assert_eq!(sidecar["Proxy"]["LocalServiceAddress"], "127.0.0.1");
    let port = sidecar["Port"].as_u64().unwrap();
    assert_eq!(
        api.json("/v1/agent/checks").await["service:baz-sidecar-proxy:1"]["Definition"]["TCP"],
        format!("127.0.0.1:{port}")
    );
}

/// Where a sidecar reaches its service is filled in only when no part of it
/// is given: the parent's socket when it listens on one, otherwise
/// 127.0.0.1 and the parent's port where missing (Consul's
/// `sidecarServiceFromNodeService`).
#[tokio::test]
async fn a_sidecar_reaches_its_service_where_the_service_listens() {
    let (_b, api) = Api::new().await;
    let proxy_of = |services: &serde_json::Value, id: &str| services[id]["Proxy"].clone();
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"sock","SocketPath":"/run/sock.sock","Connect":{"SidecarService":{}}}"#,
    )
    .await;
    let proxy = proxy_of(&api.json("/v1/agent/services").await, "sock-sidecar-proxy");
    assert_eq!(proxy["LocalServiceSocketPath"], "/run/sock.sock", "{proxy}");
    assert!(
        proxy.get("LocalServiceAddress").is_none_or(|a| a == ""),
        "{proxy}"
    );
    assert!(
        proxy.get("LocalServicePort").is_none_or(|p| p == 0),
        "{proxy}"
    );

    // Only the missing half is filled in.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"half","Port":8080,"Connect":{"SidecarService":{"Proxy":{"LocalServiceAddress":"10.0.0.7"}}}}"#,
    )
    .await;
    let proxy = proxy_of(&api.json("/v1/agent/services").await, "half-sidecar-proxy");
    assert_eq!(proxy["LocalServiceAddress"], "10.0.0.7");
    assert_eq!(proxy["LocalServicePort"], 8080);

    // A socket given for the proxy leaves the address and port alone.
    api.put_ok(
        "/v1/agent/service/register",
        r#"{"Name":"given","Port":8081,"Connect":{"SidecarService":{"Proxy":{"LocalServiceSocketPath":"/run/other.sock"}}}}"#,
    )
    .await;
    let proxy = proxy_of(&api.json("/v1/agent/services").await, "given-sidecar-proxy");
    assert_eq!(proxy["LocalServiceSocketPath"], "/run/other.sock");
    assert!(
        proxy.get("LocalServicePort").is_none_or(|p| p == 0),
        "{proxy}"
    );
}

/// Sidecars registered at the same time never get the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sidecars_get_distinct_ports() {
    let (b, api) = Api::new().await;
    let api = std::sync::Arc::new(api);
    let all = (0..16).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            let body =
                format!(r#"{{"Name":"s{i}","Port":80,"Connect":{{"SidecarService":{{}}}}}}"#);
            api.put_ok("/v1/agent/service/register", &body).await;
        })
    });
    for r in futures::future::join_all(all).await {
        r.unwrap();
    }
    let mut ports: Vec<u16> = b
        .state()
        .services
        .values()
        .filter(|s| s.id.as_str().ends_with("-sidecar-proxy"))
        .map(|s| s.port)
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, (21000..21016).collect::<Vec<u16>>());
}

/// `ports.sidecar_min_port`/`sidecar_max_port` bound the ports sidecars get;
/// a full or disabled range answers Consul's 500 text and registers nothing.
/// A sidecar inherits its parent's address, which its listening check uses.
#[tokio::test]
async fn sidecar_ports_come_from_the_configured_range() {
    use tribune_http_api::HttpConfig;

    let serve = |range: Option<std::ops::RangeInclusive<u16>>| {
        let backend = crate::support::FakeBackend::new();
        async move {
            let base = crate::support::serve_with(
                backend.clone(),
                HttpConfig {
                    sidecar_ports: range,
                    ..HttpConfig::default()
                },
            )
            .await;
            (backend, base)
        }
    };
    let register = |base: String, name: &'static str| async move {
        let body = format!(
            r#"{{"Name":"{name}","Port":80,"Address":"10.1.2.3","Connect":{{"SidecarService":{{}}}}}}"#
        );
        crate::support::request(
            Method::PUT,
            &format!("{base}/v1/agent/service/register"),
            Some(&body),
        )
        .await
    };

    let (b, base) = serve(Some(3000..=3001)).await;
    for name in ["a", "b"] {
        let (s, _, body) = register(base.clone(), name).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _, body) = register(base.clone(), "c").await;
    assert_eq!(
        (s, body.as_str()),
        (
            500,
            "no port provided for sidecar_service and none left in the configured range [3000, 3001]"
        )
    );
    let (s, _, body) = register(base.clone(), "a").await;
    assert_eq!(s, 200, "re-registration keeps its port: {body}");
    {
        let state = b.state();
        let port = |id: &str| state.services[id].port;
        assert_eq!(
            (port("a-sidecar-proxy"), port("b-sidecar-proxy")),
            (3000, 3001)
        );
        assert!(
            !state.services.contains_key("c"),
            "the failed request changed nothing"
        );
        assert_eq!(state.services["a-sidecar-proxy"].address, "10.1.2.3");
    }
    let checks = crate::support::request(Method::GET, &format!("{base}/v1/agent/checks"), None)
        .await
        .2;
    let checks: Value = serde_json::from_str(&checks).unwrap();
    assert_eq!(
        checks["service:a-sidecar-proxy:1"]["Definition"]["TCP"],
        "10.1.2.3:3000"
    );

    let (b, base) = serve(None).await;
    let (s, _, body) = register(base.clone(), "a").await;
    assert_eq!(
        (s, body.as_str()),
        (
            500,
            "no port provided for sidecar_service and auto-assignment disabled in config"
        )
    );
    assert!(b.state().services.is_empty());
}

#[tokio::test]
async fn agent_operations() {
    let (b, api) = Api::new().await;
    api.put_ok("/v1/agent/reload", "").await;
    assert_eq!(b.state().reloads, 1);
    api.put_ok("/v1/agent/join/10.0.0.2:8301?wan=1", "").await;
    api.put_ok("/v1/agent/join/10.0.0.3", "").await;
    assert_eq!(
        b.state().joins,
        [
            ("10.0.0.2:8301".to_owned(), true),
            ("10.0.0.3".to_owned(), false)
        ]
    );
    api.put_ok("/v1/agent/force-leave/node2?prune", "").await;
    assert_eq!(b.state().force_leaves, [("node2".to_owned(), true, false)]);
    let (s, body) = api.put("/v1/agent/token/default", r#"{"Token":"x"}"#).await;
    assert_eq!((s, body.as_str()), (401, "ACL support disabled"));
    api.put_ok("/v1/agent/leave", "").await;
    assert!(b.state().left);
}

#[tokio::test]
async fn monitor_streams_lines_at_or_above_the_level_and_rejects_bad_levels() {
    let (b, base) = start().await;
    let client = reqwest::Client::new();
    let bad = client
        .get(format!("{base}/v1/agent/monitor?loglevel=loud"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.text().await.unwrap(), "Unknown log level: loud");
    let mut resp = client
        .get(format!("{base}/v1/agent/monitor?loglevel=info"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The handler has subscribed once the response headers arrived.
    let line = |level: u8, text: &str| {
        std::sync::Arc::new(tribune_http_api::LogLine {
            level,
            text: text.into(),
            json: String::new(),
        })
    };
    b.logs.send(line(1, "[DEBUG] hidden")).unwrap();
    b.logs.send(line(2, "[INFO]  agent: shown")).unwrap();
    let chunk = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&chunk[..], b"[INFO]  agent: shown\n");
}

#[tokio::test]
async fn metrics_json_and_prometheus() {
    let (_b, base) = start().await;
    let client = reqwest::Client::new();
    let v: Value = client
        .get(format!("{base}/v1/agent/metrics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["Timestamp"].is_string());
    assert_eq!(v["Gauges"][0]["Name"], "consul.node1.runtime.alloc_bytes");
    let text = client
        .get(format!("{base}/v1/agent/metrics?format=prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("consul_runtime_alloc_bytes 1"), "{text}");
}
