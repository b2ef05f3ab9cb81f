//! `/v1/operator/keyring`: the four methods reach the backend as the right operation,
//! Consul's parameter checks, the listing's JSON shape, and pool failures answered as
//! a 500 in `go-multierror`'s format.

use crate::support::{request, start};
use reqwest::Method;
use serde_json::{json, Value};
use tribune_http_api::{KeyringOp, KeyringPool};

#[tokio::test]
async fn keyring_methods_params_shape_and_errors() {
    let (backend, base) = start().await;
    let url = format!("{base}/v1/operator/keyring");
    let k = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    backend.state().keyring = vec![
        KeyringPool {
            wan: true,
            datacenter: "dc1".into(),
            keys: [(k.to_owned(), 1)].into(),
            primary_keys: [(k.to_owned(), 1)].into(),
            num_nodes: 1,
            ..Default::default()
        },
        KeyringPool {
            datacenter: "dc1".into(),
            keys: [(k.to_owned(), 3)].into(),
            primary_keys: [(k.to_owned(), 3)].into(),
            num_nodes: 3,
            ..Default::default()
        },
    ];
    let (s, _, b) = request(Method::GET, &format!("{url}?relay-factor=2"), None).await;
    assert_eq!(s, 200, "{b}");
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        list,
        json!([
            {"WAN": true, "Datacenter": "dc1", "Segment": "", "Messages": {},
             "Keys": {k: 1}, "PrimaryKeys": {k: 1}, "NumNodes": 1},
            {"WAN": false, "Datacenter": "dc1", "Segment": "", "Messages": {},
             "Keys": {k: 3}, "PrimaryKeys": {k: 3}, "NumNodes": 3}
        ])
    );
    let body = format!(r#"{{"Key":"{k}"}}"#);
    for (method, op) in [
        (Method::POST, KeyringOp::Install(k.into())),
        (Method::PUT, KeyringOp::Use(k.into())),
        (Method::DELETE, KeyringOp::Remove(k.into())),
    ] {
        let (s, _, b) = request(method, &url, Some(&body)).await;
        assert_eq!((s, b.as_str()), (200, ""));
        assert_eq!(backend.state().keyring_requests.last().unwrap().op, op);
    }
    let first = backend.state().keyring_requests[0].clone();
    assert_eq!(
        (first.op, first.relay_factor, first.local_only),
        (KeyringOp::List, 2, false)
    );

    let (s, _, b) = request(Method::GET, &format!("{url}?relay-factor=6"), None).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Invalid relay-factor: Relay factor must be in range: [0, 5]"
        )
    );
    let (s, _, b) = request(Method::GET, &format!("{url}?relay-factor=x"), None).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Error parsing relay factor: strconv.Atoi: parsing \"x\": invalid syntax"
        )
    );
    let (s, _, b) = request(Method::POST, &format!("{url}?local-only=true"), Some(&body)).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Invalid use of local-only: local-only can only be set for list requests"
        )
    );
    let (s, _, _) = request(Method::GET, &format!("{url}?local-only=1"), None).await;
    assert_eq!(s, 200);
    assert!(backend.state().keyring_requests.last().unwrap().local_only);

    backend.state().keyring[1].error = "1/3 nodes reported failure".into();
    backend.state().keyring[1].messages.insert(
        "c1".into(),
        "Removing the primary key is not allowed".into(),
    );
    let (s, _, b) = request(Method::DELETE, &url, Some(&body)).await;
    assert_eq!(
        (s, b.as_str()),
        (
            500,
            "2 errors occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\t* c1: Removing the primary key is not allowed\n\n"
        )
    );
}
