//! Integration tests of the HTTP API over real HTTP, one module per route group, all
//! sharing the in-memory backend and server helper in [`support`].

mod support;

mod acl;
mod agent;
mod cached;
mod connect;
mod coordinate;
mod event;
mod operator;
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
