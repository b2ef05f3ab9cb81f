//! `?cached` reads through the HTTP layer: the agent's cache status becomes
//! `X-Cache`/`Age`, and `?cached` with `?consistent` is refused as Consul refuses it;
//! with `http_config.use_cache` off the flag is ignored.

use crate::support::{request, serve_with, start, FakeBackend};
use reqwest::Method;

#[tokio::test]
async fn cached_with_consistent_is_refused() {
    let (_backend, base) = start().await;
    let (s, _, b) = request(
        Method::GET,
        &format!("{base}/v1/catalog/service/web?cached&consistent"),
        None,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Cannot specify ?cached with ?consistent, conflicting semantics."
        )
    );
    // Without a cache of its own the backend answers as an ordinary read: no
    // X-Cache header.
    let (s, headers, _) = request(
        Method::GET,
        &format!("{base}/v1/catalog/service/web?cached"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(headers.get("x-cache").is_none());
}

/// With `http_config.use_cache = false` the flag is ignored, as in Consul:
/// `?cached&consistent` is an ordinary consistent read.
#[tokio::test]
async fn use_cache_off_ignores_cached() {
    let base = serve_with(
        FakeBackend::new(),
        tribune_http_api::HttpConfig {
            use_cache: false,
            ..Default::default()
        },
    )
    .await;
    let (s, headers, b) = request(
        Method::GET,
        &format!("{base}/v1/catalog/service/web?cached&consistent"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(headers.get("x-cache").is_none());
}
