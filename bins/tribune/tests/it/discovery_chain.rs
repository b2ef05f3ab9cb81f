//! `/v1/discovery-chain` through a real agent: the default chain with the
//! cluster's trust domain, overrides, Consul's refusals, config writes that
//! would break a chain, and a blocking read woken by a config entry.

use crate::support::Agent;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_chains_over_http() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster_id = "11111111-2222-3333-4444-555555555555";
    let agent = Agent::start(
        &dir.path().join("data"),
        json!({"connect": {"enabled": true, "ca_config": {"cluster_id": cluster_id}}}),
    )?;
    let http = agent.http.clone();
    let c = reqwest::Client::new();
    // The CA root is created once the server leads; chains need its trust domain.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (index, chain) = loop {
        let resp = c
            .get(format!("{http}/v1/discovery-chain/web"))
            .send()
            .await?;
        if resp.status() == 200 {
            let index: u64 = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .context("no X-Consul-Index")?;
            break (index, resp.json::<Value>().await?);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no chain: {}",
            resp.text().await?
        );
        // The root is written through raft right after the election; wait for
        // it with a blocking query on the roots rather than a sleep.
        let _ = c
            .get(format!("{http}/v1/connect/ca/roots?index=1&wait=2s"))
            .send()
            .await?;
    };
    let target = &chain["Chain"]["Targets"]["web.default.default.dc1"];
    assert_eq!(
        target["SNI"],
        format!("web.default.dc1.internal.{cluster_id}.consul")
    );
    assert_eq!(chain["Chain"]["Default"], true);

    let (code, body) = {
        let r = c
            .post(format!("{http}/v1/discovery-chain/web"))
            .body(r#"{"OverrideProtocol":"http"}"#)
            .send()
            .await?;
        (r.status().as_u16(), r.json::<Value>().await?)
    };
    assert_eq!(code, 200);
    assert_eq!(
        (
            &body["Chain"]["Protocol"],
            &body["Chain"]["CustomizationHash"]
        ),
        (&json!("http"), &json!("1a47f6e1"))
    );
    for (url, text) in [
        (format!("{http}/v1/discovery-chain/"), "Missing chain name"),
        (
            format!("{http}/v1/discovery-chain/web?ns=team"),
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
        ),
    ] {
        let r = c.get(&url).send().await?;
        assert_eq!((r.status().as_u16(), r.text().await?.as_str()), (400, text));
    }

    // A router on a TCP service is refused when written.
    let router = json!({"Kind": "service-router", "Name": "web",
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]});
    let r = c
        .put(format!("{http}/v1/config"))
        .json(&router)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 500);
    assert!(r
        .text()
        .await?
        .contains("does not permit advanced routing or splitting behavior"));

    // A blocking read of the chain wakes when a config entry is written.
    let waiter = {
        let c = c.clone();
        let url = format!("{http}/v1/discovery-chain/web?index={index}&wait=30s");
        tokio::spawn(async move { c.get(url).send().await?.json::<Value>().await })
    };
    let defaults =
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}});
    let r = c
        .put(format!("{http}/v1/config"))
        .json(&defaults)
        .send()
        .await?;
    assert_eq!(r.text().await?, "true");
    let woken = tokio::time::timeout(Duration::from_secs(20), waiter).await???;
    assert_eq!(woken["Chain"]["Protocol"], "http");
    // With HTTP everywhere, the router is accepted and heads the chain (with
    // `web` alone on HTTP, `admin` behind it would still be TCP).
    let r = c
        .put(format!("{http}/v1/config"))
        .json(&router)
        .send()
        .await?;
    assert_eq!(r.text().await?, "true");
    let chain: Value = c
        .get(format!("{http}/v1/discovery-chain/web"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(chain["Chain"]["StartNode"], "router:web.default.default");
    Ok(())
}
