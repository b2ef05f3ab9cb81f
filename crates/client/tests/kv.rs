//! KV endpoints against a fake agent: headers, u64 flags, 404, CAS, escaping.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{client, fake, Resp};
use tribune_client::{Client, Config, Error, KvDeleteOptions, KvPutOptions, QueryOptions};

/// The Go client's semaphore flag value, above 2^63.
const SEMAPHORE_FLAGS: u64 = 0xe0f6_9a2b_aa41_4de0;

#[tokio::test]
async fn get_decodes_pair_and_query_meta() {
    let fake = fake(|_| {
        Resp::json(
            r#"[{"Key":"foo","CreateIndex":5,"ModifyIndex":7,"LockIndex":1,
                 "Flags":16210313421097356768,"Value":"YmFy","Session":"s-1"}]"#,
        )
        .header("X-Consul-Index", "7")
        .header("X-Consul-KnownLeader", "true")
        .header("X-Consul-LastContact", "12")
        .header("X-Consul-Effective-Consistency", "stale")
        .header("X-Consul-Default-ACL-Policy", "allow")
    })
    .await;
    let client = Client::new(Config {
        address: fake.url(),
        token: Some("secret".into()),
        datacenter: Some("dc9".into()),
        ..Default::default()
    })
    .unwrap();
    let opts = QueryOptions {
        stale: true,
        index: 3,
        wait: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let (pair, meta) = client.kv().get("/foo", &opts).await.unwrap();
    let pair = pair.expect("key exists");
    assert_eq!(pair.key, "foo");
    assert_eq!(pair.flags, SEMAPHORE_FLAGS);
    assert_eq!(pair.value.as_deref(), Some(&b"bar"[..]));
    assert_eq!(
        (pair.create_index, pair.modify_index, pair.lock_index),
        (5, 7, 1)
    );
    assert_eq!(pair.session.as_deref(), Some("s-1"));
    assert_eq!(meta.index, 7);
    assert!(meta.known_leader);
    assert_eq!(meta.last_contact, Duration::from_millis(12));
    assert_eq!(meta.effective_consistency.as_deref(), Some("stale"));
    assert_eq!(meta.default_acl_policy.as_deref(), Some("allow"));

    let req = fake.only_request();
    assert_eq!(req.method, "GET");
    // The leading slash is dropped, as the Go client does.
    assert_eq!(req.path, "/v1/kv/foo");
    assert_eq!(req.header("x-consul-token").as_deref(), Some("secret"));
    assert_eq!(req.param("dc").as_deref(), Some("dc9"));
    assert_eq!(req.param("stale").as_deref(), Some(""));
    assert_eq!(req.param("index").as_deref(), Some("3"));
    assert_eq!(req.param("wait").as_deref(), Some("2000ms"));
}

#[tokio::test]
async fn missing_key_is_none_with_index_headers() {
    let fake = fake(|_| Resp::status(404, "").header("X-Consul-Index", "42")).await;
    let client = client(&fake.url());
    let (pair, meta) = client
        .kv()
        .get("nope", &QueryOptions::default())
        .await
        .unwrap();
    assert!(pair.is_none());
    assert_eq!(meta.index, 42);
    // Listing and key listing of an empty prefix are empty, not errors.
    let (pairs, _) = client
        .kv()
        .list("nope", &QueryOptions::default())
        .await
        .unwrap();
    assert!(pairs.is_empty());
    let (keys, _) = client
        .kv()
        .keys("nope", Some("/"), &QueryOptions::default())
        .await
        .unwrap();
    assert!(keys.is_empty());
}

#[tokio::test]
async fn empty_value_is_null_and_missing_headers_default() {
    let fake = fake(|_| Resp::status(200, r#"[{"Key":"empty","Value":null,"Flags":0}]"#)).await;
    let (pair, meta) = client(&fake.url())
        .kv()
        .get("empty", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(pair.unwrap().value, None);
    assert_eq!(meta.index, 0);
    assert!(!meta.known_leader);
}

/// Key → (flags, value).
type Store = HashMap<String, (u64, Vec<u8>)>;

/// A tiny KV store behind the fake, so flags make a full trip through query string,
/// server-side storage and JSON.
#[tokio::test]
async fn flags_above_2_pow_63_round_trip() {
    let store: Arc<Mutex<Store>> = Arc::default();
    let fake = {
        let store = store.clone();
        fake(move |req| {
            let key = req.path.trim_start_matches("/v1/kv/").to_owned();
            match req.method.as_str() {
                "PUT" => {
                    let flags: u64 = req.param("flags").map_or(0, |f| f.parse().unwrap());
                    store.lock().unwrap().insert(key, (flags, req.body.clone()));
                    Resp::json("true")
                }
                _ => match store.lock().unwrap().get(&key) {
                    Some((flags, value)) => Resp::json(&format!(
                        r#"[{{"Key":"{key}","Flags":{flags},"Value":"{}","CreateIndex":1,"ModifyIndex":1,"LockIndex":0}}]"#,
                        base64::engine::general_purpose::STANDARD.encode(value)
                    )),
                    None => Resp::status(404, ""),
                },
            }
        })
        .await
    };
    let client = client(&fake.url());
    for flags in [
        SEMAPHORE_FLAGS,
        u64::MAX,
        (1 << 63) + 1,
        0x2ddc_cbc0_58a5_0c18,
    ] {
        let opts = KvPutOptions {
            flags,
            ..Default::default()
        };
        assert!(client.kv().put("lock/.lock", b"held", &opts).await.unwrap());
        let (pair, _) = client
            .kv()
            .get("lock/.lock", &QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(pair.unwrap().flags, flags);
    }
    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(
        puts[0].param("flags").as_deref(),
        Some("16210313421097356768")
    );
    assert_eq!(
        puts[1].param("flags").as_deref(),
        Some("18446744073709551615")
    );
}

#[tokio::test]
async fn put_sends_body_and_conditions() {
    let fake = fake(|req| {
        if req.param("cas").as_deref() == Some("9") {
            Resp::json("false")
        } else {
            Resp::json("true")
        }
    })
    .await;
    let client = client(&fake.url());
    let ok = client
        .kv()
        .put("a/b", b"\x00\xffbinary", &KvPutOptions::default())
        .await
        .unwrap();
    assert!(ok);
    let cas_failed = client
        .kv()
        .put(
            "a/b",
            b"x",
            &KvPutOptions {
                cas: Some(9),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!cas_failed);
    client
        .kv()
        .put(
            "a/b",
            b"x",
            &KvPutOptions {
                acquire: Some("sess".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client
        .kv()
        .put(
            "a/b",
            b"x",
            &KvPutOptions {
                release: Some("sess".into()),
                cas: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].path, "/v1/kv/a/b");
    assert_eq!(reqs[0].body, b"\x00\xffbinary");
    // flags=0 is not sent, as in the Go client.
    assert_eq!(reqs[0].query, "");
    assert_eq!(
        reqs[0].header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(reqs[2].param("acquire").as_deref(), Some("sess"));
    assert_eq!(reqs[3].param("release").as_deref(), Some("sess"));
    assert_eq!(reqs[3].param("cas").as_deref(), Some("0"));
}

#[tokio::test]
async fn list_keys_and_delete_parameters() {
    let fake = fake(|req| {
        if req.method == "DELETE" {
            return Resp::json(if req.param("cas").is_some() {
                "false"
            } else {
                "true"
            });
        }
        if req.param("keys").is_some() {
            Resp::json(r#"["dir/a","dir/sub/"]"#)
        } else {
            Resp::json(r#"[{"Key":"dir/a","Value":"MQ==","Flags":1},{"Key":"dir/b","Value":null}]"#)
        }
    })
    .await;
    let client = client(&fake.url());
    let (pairs, _) = client
        .kv()
        .list("dir", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].value.as_deref(), Some(&b"1"[..]));
    let (keys, _) = client
        .kv()
        .keys("dir/", Some("/"), &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(keys, ["dir/a", "dir/sub/"]);
    assert!(client
        .kv()
        .delete(
            "dir",
            &KvDeleteOptions {
                recurse: true,
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert!(!client
        .kv()
        .delete(
            "dir/a",
            &KvDeleteOptions {
                cas: Some(4),
                ..Default::default()
            }
        )
        .await
        .unwrap());

    let reqs = fake.requests();
    assert_eq!(reqs[0].param("recurse").as_deref(), Some(""));
    assert_eq!(reqs[1].param("keys").as_deref(), Some(""));
    assert_eq!(reqs[1].param("separator").as_deref(), Some("/"));
    assert_eq!(reqs[2].method, "DELETE");
    assert_eq!(reqs[2].param("recurse").as_deref(), Some(""));
    assert_eq!(reqs[3].param("cas").as_deref(), Some("4"));
}

#[tokio::test]
async fn keys_are_escaped_like_go() {
    let fake = fake(|_| Resp::json("true")).await;
    let client = client(&fake.url());
    client
        .kv()
        .put("a b/c?d#e%f/ü", b"", &KvPutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        fake.only_request().path,
        "/v1/kv/a%20b/c%3Fd%23e%25f/%C3%BC"
    );
}

#[tokio::test]
async fn http_errors_become_status_errors() {
    let fake = fake(|req| match req.path.as_str() {
        "/v1/kv/denied" => Resp::status(403, "Permission denied\n"),
        _ => Resp::status(500, "No cluster leader"),
    })
    .await;
    let client = client(&fake.url());
    let err = client
        .kv()
        .get("x", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { code: 500, ref body } if body == "No cluster leader"));
    assert_eq!(
        err.to_string(),
        "Unexpected response code: 500 (No cluster leader)"
    );
    assert_eq!(err.status_code(), Some(500));
    let err = client
        .kv()
        .put("denied", b"", &KvPutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unexpected response code: 403 (Permission denied)"
    );
}

#[tokio::test]
async fn bad_bodies_and_headers_are_errors_not_panics() {
    let fake = fake(|req| match req.path.as_str() {
        "/v1/kv/garbage" => Resp::json("{not json"),
        "/v1/kv/float-flags" => Resp::json(r#"[{"Key":"f","Flags":1.6e19}]"#),
        "/v1/kv/bad-base64" => Resp::json(r#"[{"Key":"f","Value":"!!!"}]"#),
        _ => Resp::json("[]").header("X-Consul-Index", "twelve"),
    })
    .await;
    let client = client(&fake.url());
    let q = QueryOptions::default();
    for key in ["garbage", "float-flags", "bad-base64"] {
        let err = client.kv().get(key, &q).await.unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{key}: {err:?}");
    }
    let err = client.kv().get("bad-index", &q).await.unwrap_err();
    assert!(
        matches!(err, Error::Header { name: "X-Consul-Index", ref value } if value == "twelve"),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = client(&format!("127.0.0.1:{port}"));
    let err = client
        .kv()
        .get("x", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    // The cause chain is part of the message, not just "error sending request".
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}
