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
