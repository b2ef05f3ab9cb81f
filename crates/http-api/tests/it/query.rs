//! Where a prepared query runs from over HTTP: `near=_ip` is the first
//! `X-Forwarded-For` entry when it is an address, else the connection's own
//! client address (Consul's `sourceAddrFromRequest`).

use crate::support::start;
use tribune_types::model::ops::ReadRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_address_is_the_forwarded_one_or_the_clients() {
    let (backend, base) = start().await;
    // A client on an address of its own, so the fallback is visible.
    let client = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let url = format!("{base}/v1/query/my-query/execute");
    for (forwarded, want) in [
        (None, "127.0.0.2"),
        (Some("10.1.2.3, 10.9.9.9"), "10.1.2.3"),
        (Some("not-an-address"), "127.0.0.2"),
    ] {
        let mut req = client.get(&url);
        if let Some(f) = forwarded {
            req = req.header("X-Forwarded-For", f);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{forwarded:?}");
        let ip = backend
            .state()
            .reads
            .iter()
            .rev()
            .find_map(|(r, _)| match r {
                ReadRequest::QueryExecute { source, .. } => Some(source.ip.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(ip, want, "{forwarded:?}");
    }
}
