//! `?cached` reads through the HTTP layer: the agent's cache status becomes
//! `X-Cache`/`Age`, and `?cached` with `?consistent` is refused as Consul refuses it.

use crate::support::{request, start};
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
