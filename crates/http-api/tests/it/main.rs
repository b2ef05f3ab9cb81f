//! Integration tests of the HTTP API over real HTTP, one module per route group, all
//! sharing the in-memory backend and server helper in [`support`].

mod support;

mod acl;
mod agent;
mod cached;
mod connect;
mod connlimit;
mod coordinate;
mod event;
mod operator;
mod query;
mod session;
mod tls;
mod txn;

/// The root answers what Consul's index handler answers without a UI; unknown paths
/// get its two 404 texts.
#[tokio::test]
async fn index_and_unknown_paths_answer_like_consul() {
    let (_backend, base) = support::start().await;
    let (s, _, b) = support::request(reqwest::Method::GET, &format!("{base}/"), None).await;
    assert_eq!(s, 200);
    assert!(b.starts_with("Consul Agent: UI disabled."), "{b}");
    let (s, _, b) = support::request(reqwest::Method::GET, &format!("{base}/v1/nope"), None).await;
    assert_eq!(
        (s, b.as_str()),
        (
            404,
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        )
    );
    let (s, _, b) = support::request(reqwest::Method::GET, &format!("{base}/ui/"), None).await;
    assert_eq!(s, 404);
    assert!(b.contains("ensure the path starts with '/v1/'"), "{b}");
}

/// Consul's wrapper around every endpoint: OPTIONS answers with the methods,
/// a wrong method gets 405 with them and Consul's text, every answer carries
/// the default ACL policy, and a path with a control character is refused.
#[tokio::test]
async fn methods_options_and_printable_paths_as_consul_wraps_them() {
    let (_backend, base) = support::start().await;
    let (s, h, b) =
        support::request(reqwest::Method::OPTIONS, &format!("{base}/v1/kv/a"), None).await;
    assert_eq!((s, b.as_str()), (200, ""));
    assert_eq!(h["allow"], "OPTIONS,GET,PUT,DELETE");
    assert_eq!(h["x-consul-default-acl-policy"], "allow");
    let (s, h, b) = support::request(reqwest::Method::POST, &format!("{base}/v1/kv/a"), None).await;
    assert_eq!((s, b.as_str()), (405, "method POST not allowed"));
    assert_eq!(h["allow"], "OPTIONS,GET,PUT,DELETE");
    let (s, h, _) = support::request(
        reqwest::Method::GET,
        &format!("{base}/v1/status/leader"),
        None,
    )
    .await;
    assert_eq!(
        (s, h["x-consul-default-acl-policy"].to_str().unwrap()),
        (200, "allow")
    );
    // Errors too.
    let (s, h, _) = support::request(reqwest::Method::GET, &format!("{base}/v1/nope"), None).await;
    assert_eq!(
        (s, h["x-consul-default-acl-policy"].to_str().unwrap()),
        (404, "allow")
    );
    for path in ["/v1/kv/nl%0akey", "/v1/kv/tab%09", "/v1/kv/nbsp%C2%A0"] {
        let (s, _, b) =
            support::request(reqwest::Method::PUT, &format!("{base}{path}"), Some("x")).await;
        assert_eq!((s, b.as_str()), (400, ""), "{path}");
    }
    // A space and non-ASCII letters are printable.
    let (s, _, _) = support::request(
        reqwest::Method::PUT,
        &format!("{base}/v1/kv/a%20b%C3%A9"),
        Some("x"),
    )
    .await;
    assert_eq!(s, 200);
}

/// `GET /v1/kv/<key>` is answered outside the router (`conventions::Api`); it
/// must answer exactly as the route does: keys percent-decoded as axum decodes
/// path parameters, every query flag, the meta and policy headers, a missing
/// key's empty 404, and the router's own rejection for a key that does not
/// decode to UTF-8. `HEAD` still takes the route.
#[tokio::test]
async fn kv_reads_outside_the_router_answer_as_the_route_does() {
    let (_backend, base) = support::start().await;
    let put = |path: &str, body: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let (s, _, b) = support::request(reqwest::Method::PUT, &url, Some(body)).await;
            assert_eq!((s, b.as_str()), (200, "true"), "{url}");
        }
    };
    put("/v1/kv/a%20b/c", "v1").await;
    put("/v1/kv/a/b%2Fc", "v2").await;
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { support::request(reqwest::Method::GET, &url, None).await }
    };

    let (s, h, b) = get("/v1/kv/a%20b/c").await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v[0]["Key"].as_str(), v[0]["Value"].as_str()),
        (Some("a b/c"), Some("djE="))
    );
    for name in [
        "x-consul-index",
        "x-consul-knownleader",
        "x-consul-lastcontact",
        "x-consul-effective-consistency",
        "x-consul-default-acl-policy",
    ] {
        assert!(h.contains_key(name), "{name} missing: {h:?}");
    }
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["content-length"], b.len().to_string().as_str());
    assert_eq!(get("/v1/kv/a/b/c?raw").await.2, "v2");
    let (_, h, b) = get("/v1/kv/a/b%2Fc?raw").await;
    assert_eq!(
        (h["content-type"].to_str().unwrap(), b.as_str()),
        ("text/plain", "v2")
    );
    let (_, _, b) = get("/v1/kv/a?recurse").await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{b}");
    assert_eq!(get("/v1/kv/a?keys&separator=/").await.2, r#"["a b/","a/"]"#);
    assert!(get("/v1/kv/a/b/c?pretty").await.2.contains("\n    {"));

    let (s, h, b) = get("/v1/kv/missing").await;
    assert_eq!((s, b.as_str()), (404, ""));
    assert!(h.contains_key("x-consul-index"));
    assert_eq!(h["x-consul-default-acl-policy"], "allow");
    let (s, _, b) = get("/v1/kv/x?index=abc").await;
    assert_eq!((s, b.as_str()), (400, "Invalid index"));
    // Not UTF-8 once decoded: the route's rejection, with the policy header.
    let (s, h, b) = get("/v1/kv/a%FFb").await;
    assert_eq!(
        (s, b.as_str()),
        (400, "Invalid URL: Invalid UTF-8 in `key`")
    );
    assert_eq!(h["x-consul-default-acl-policy"], "allow");

    let url = format!("{base}/v1/kv/a/b/c");
    let (s, h, b) = support::request(reqwest::Method::HEAD, &url, None).await;
    assert_eq!((s, b.as_str()), (200, ""));
    assert!(h.contains_key("x-consul-index"));
}

/// `PUT /v1/kv/<key>`, also answered outside the router, must answer as the
/// route does: flags, `cas`, Consul's refusals and 413 texts, the headers,
/// and for a body past the bound buffered bodies are read under the router's
/// own 413 (the same answer `PUT /v1/txn`, which takes the route, gives).
/// Nothing refused is stored.
#[tokio::test]
async fn kv_writes_outside_the_router_answer_as_the_route_does() {
    let (backend, base) = support::start().await;
    let put = |path: &str, body: String| {
        let url = format!("{base}{path}");
        async move { support::request(reqwest::Method::PUT, &url, Some(&body)).await }
    };
    let (s, h, b) = put("/v1/kv/a%20b?flags=18446744073709551615", "v".into()).await;
    assert_eq!((s, b.as_str()), (200, "true"));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["content-length"], "4");
    assert_eq!(h["x-consul-default-acl-policy"], "allow");
    let url = format!("{base}/v1/kv/a%20b");
    let (_, _, b) = support::request(reqwest::Method::GET, &url, None).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v[0]["Flags"], u64::MAX);
    assert_eq!(put("/v1/kv/new?cas=0", "x".into()).await.2, "true");
    assert_eq!(put("/v1/kv/new?cas=0", "y".into()).await.2, "false");
    let (s, _, b) = put("/v1/kv/c?cas=0&release=x", "z".into()).await;
    assert_eq!((s, b.as_str()), (400, "Conflicting flags: cas=0&release=x"));
    let (s, _, b) = put("/v1/kv/big", "x".repeat(512 * 1024 + 1)).await;
    assert_eq!(s, 413);
    assert!(b.starts_with("Request body(524289 bytes) too large"), "{b}");
    // Past the outer bound: the answer a routed endpoint gives.
    let huge = "x".repeat(4 * 512 * 1024 + 64 * 1024 + 1);
    let (s, h, b) = put("/v1/kv/huge", huge.clone()).await;
    let (txn_s, _, txn_b) = put("/v1/txn", huge).await;
    assert_eq!((s, b.as_str()), (txn_s, txn_b.as_str()));
    assert_eq!(
        (s, b.as_str()),
        (
            413,
            "Failed to buffer the request body: length limit exceeded"
        )
    );
    assert_eq!(h["x-consul-default-acl-policy"], "allow");
    // Not UTF-8 once decoded: the route's rejection.
    let (s, _, b) = put("/v1/kv/a%FFb", "v".into()).await;
    assert_eq!(
        (s, b.as_str()),
        (400, "Invalid URL: Invalid UTF-8 in `key`")
    );
    let keys: Vec<String> = backend.state().kv.keys().cloned().collect();
    assert_eq!(keys, ["a b", "new"]);
}

/// `http_config.max_header_bytes`: a request head over the limit plus Go's
/// 4 KiB of slack gets Go's 431 and changes nothing; one under it is served.
#[tokio::test]
async fn oversized_request_heads_get_431() {
    use tribune_http_api::HttpConfig;

    let backend = support::FakeBackend::new();
    let base = support::serve_with(
        backend.clone(),
        HttpConfig {
            max_header_bytes: 1000,
            ..HttpConfig::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let put = |filler: usize| {
        client
            .put(format!("{base}/v1/kv/k"))
            .header("x-filler", "a".repeat(filler))
            // No body: one the server never reads could turn its close into a
            // reset that loses the answer.
            .send()
    };
    let resp = put(6000).await.unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(
        resp.text().await.unwrap(),
        "431 Request Header Fields Too Large"
    );
    assert!(backend.state().kv.is_empty());
    // Within the slack Go allows above the configured figure.
    let resp = put(4000).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(backend.state().kv.contains_key("k"));
}

/// `http_config`'s wrapper settings: blocked endpoints (percent-decoded
/// prefixes, whatever the method, the direct KV read included), writes only
/// from allowed networks (after the endpoint and method are known to exist,
/// and without reaching the handler), and extra response headers that never
/// replace an endpoint's own.
#[tokio::test]
async fn http_config_blocks_endpoints_restricts_writes_and_adds_headers() {
    use axum::http::{HeaderName, HeaderValue};
    use reqwest::Method;
    use tribune_http_api::HttpConfig;

    let cors = (
        HeaderName::from_static("access-control-allow-origin"),
        HeaderValue::from_static("*"),
    );
    let backend = support::FakeBackend::new();
    let base = support::serve_with(
        backend.clone(),
        HttpConfig {
            block_endpoints: vec!["/v1/kv/secret".into(), "/v1/status/peers".into()],
            // Not loopback: this test's client may only read.
            allow_write_from: vec!["10.0.0.0/8".parse().unwrap()],
            response_headers: vec![
                cors.clone(),
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("text/html"),
                ),
            ],
            ..HttpConfig::default()
        },
    )
    .await;
    let call = |m: Method, path: &str, body: Option<&'static str>| {
        let url = format!("{base}{path}");
        async move { support::request(m, &url, body).await }
    };

    for (m, path) in [
        (Method::GET, "/v1/kv/secret/x"),
        (Method::GET, "/v1/kv/%73ecret"),
        (Method::PUT, "/v1/kv/secret"),
        (Method::OPTIONS, "/v1/kv/secretive"),
        (Method::GET, "/v1/status/peers"),
    ] {
        let (s, h, b) = call(m.clone(), path, None).await;
        assert_eq!(
            (s, b.as_str()),
            (403, "Endpoint is blocked by agent configuration"),
            "{m} {path}"
        );
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["x-consul-default-acl-policy"], "allow");
    }
    let (s, _, _) = call(Method::GET, "/v1/status/leader", None).await;
    assert_eq!(s, 200);

    // A write from outside the allowed networks changes nothing.
    let (s, h, b) = call(Method::PUT, "/v1/kv/k", Some("v")).await;
    assert_eq!((s, b.as_str()), (403, "Access is restricted"));
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(backend.state().kv.is_empty());
    let (s, _, _) = call(Method::DELETE, "/v1/kv/k", None).await;
    assert_eq!(s, 403);
    // Reads are not writes; a method the endpoint does not take is still a
    // 405 and an unknown endpoint a 404.
    let (s, h, b) = call(Method::GET, "/v1/kv/k", None).await;
    assert_eq!((s, b.as_str()), (404, ""));
    assert_eq!(h["access-control-allow-origin"], "*");
    let (s, h, b) = call(Method::POST, "/v1/kv/k", Some("v")).await;
    assert_eq!((s, b.as_str()), (405, "method POST not allowed"));
    assert_eq!(h["allow"], "OPTIONS,GET,PUT,DELETE");
    let (s, _, b) = call(Method::PUT, "/v1/nope", Some("v")).await;
    assert_eq!(
        (s, b.as_str()),
        (
            404,
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        )
    );
    // `/` is Consul's index handler, outside the wrapper's write check.
    let (s, _, b) = call(Method::POST, "/", None).await;
    assert_eq!(s, 200, "{b}");
    // An endpoint's own content type wins over the configured one.
    let (s, h, _) = call(Method::GET, "/v1/status/leader", None).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json");

    // From an allowed network, the same write goes through.
    let base = support::serve_with(
        backend.clone(),
        HttpConfig {
            allow_write_from: vec!["127.0.0.0/8".parse().unwrap()],
            ..HttpConfig::default()
        },
    )
    .await;
    let (s, _, b) = support::request(Method::PUT, &format!("{base}/v1/kv/k"), Some("v")).await;
    assert_eq!((s, b.as_str()), (200, "true"));
    assert!(backend.state().kv.contains_key("k"));
}

/// Consul's `marshalJSON` indents with `?pretty` or on a `-dev` agent, and
/// ends the indented form with a newline, `true`/`false` answers included.
#[tokio::test]
async fn dev_agents_indent_every_answer() {
    use tribune_http_api::HttpConfig;

    let client = reqwest::Client::new();
    let answer = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    };
    let plain = support::serve(support::FakeBackend::new()).await;
    let put = |base: &str, query: &str| client.put(format!("{base}/v1/kv/k{query}")).body("v");
    assert_eq!(answer(put(&plain, "")).await, "true");
    assert_eq!(answer(put(&plain, "?pretty")).await, "true\n");
    assert_eq!(answer(put(&plain, "?cas=99&pretty")).await, "false\n");
    let compact = answer(client.get(format!("{plain}/v1/kv/k"))).await;
    assert!(!compact.contains('\n'), "{compact}");

    let dev = support::serve_with(
        support::FakeBackend::new(),
        HttpConfig {
            pretty_always: true,
            ..HttpConfig::default()
        },
    )
    .await;
    // Answered outside the router (KV GET and PUT) and through it (KV
    // DELETE, catalog, session).
    assert_eq!(answer(put(&dev, "")).await, "true\n");
    let kv = answer(client.get(format!("{dev}/v1/kv/k"))).await;
    assert!(kv.starts_with("[\n    {\n"), "{kv}");
    assert!(kv.ends_with("}\n]\n"), "{kv}");
    let created = answer(client.put(format!("{dev}/v1/session/create"))).await;
    assert!(created.starts_with("{\n    \"ID\": "), "{created}");
    let id: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = id["ID"].as_str().unwrap();
    let destroyed = answer(client.put(format!("{dev}/v1/session/destroy/{id}"))).await;
    assert_eq!(destroyed, "true\n");
    let node = serde_json::json!({"Node": "n1", "Address": "10.0.0.1"});
    let registered = answer(client.put(format!("{dev}/v1/catalog/register")).json(&node)).await;
    assert_eq!(registered, "true\n");
    let nodes = answer(client.get(format!("{dev}/v1/catalog/nodes"))).await;
    assert!(nodes.starts_with("[\n    {\n"), "{nodes}");
    assert_eq!(
        answer(client.delete(format!("{dev}/v1/kv/k"))).await,
        "true\n"
    );
}
