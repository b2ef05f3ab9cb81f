//! `/v1/event/fire` and `/v1/event/list`: Consul's shapes, the name filter, the
//! opaque index, and a blocking list that returns when a new event arrives.

use crate::support::{request, start};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn fire_list_filter_and_block() {
    let (backend, base) = start().await;
    let (s, _, b) = request(Method::PUT, &format!("{base}/v1/event/fire/"), None).await;
    assert_eq!((s, b.as_str()), (400, "Missing name"));
    let (s, _, b) = request(
        Method::PUT,
        &format!("{base}/v1/event/fire/deploy?node=web.*&service=api&tag=v1"),
        Some("v2"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let ev: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(ev["Name"], "deploy");
    assert_eq!(ev["Payload"], "djI=");
    assert_eq!(ev["NodeFilter"], "web.*");
    assert_eq!(ev["TagFilter"], "v1");
    assert_eq!(ev["Version"], 1);
    request(Method::PUT, &format!("{base}/v1/event/fire/other"), None).await;

    let (s, h, b) = request(
        Method::GET,
        &format!("{base}/v1/event/list?name=deploy"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let index: u64 = h["x-consul-index"].to_str().unwrap().parse().unwrap();
    assert_eq!(index, 1, "the first fake event's ID folds to 1");
    let (_, h, b) = request(
        Method::GET,
        &format!("{base}/v1/event/list?name=none"),
        None,
    )
    .await;
    assert_eq!(
        (b.as_str(), h["x-consul-index"].to_str().unwrap()),
        ("[]", "1")
    );

    // Blocking on the current index returns once another event arrives.
    let mut subs = backend.subscriptions();
    let before = *subs.borrow_and_update();
    let waiter = tokio::spawn({
        let base = base.clone();
        async move {
            request(
                Method::GET,
                &format!("{base}/v1/event/list?index=2&wait=30s"),
                None,
            )
            .await
        }
    });
    subs.wait_for(|n| *n > before).await.unwrap();
    request(Method::PUT, &format!("{base}/v1/event/fire/third"), None).await;
    let (s, h, b) = waiter.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["x-consul-index"].to_str().unwrap(), "3");
    assert_eq!(
        serde_json::from_str::<Value>(&b)
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}
