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
    // The CA root is written through raft once the server leads, and chains
    // need its trust domain: wait for it with blocking queries on the roots.
    let index_of = |resp: &reqwest::Response| -> Result<u64> {
        resp.headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("no X-Consul-Index")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut roots_index = 0;
    loop {
        let resp = c
            .get(format!(
                "{http}/v1/connect/ca/roots?index={roots_index}&wait=5s"
            ))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "roots: {}", resp.text().await?);
        roots_index = index_of(&resp)?;
        let roots: Value = resp.json().await?;
        if roots["ActiveRootID"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
        {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no CA root");
    }
    let resp = c
        .get(format!("{http}/v1/discovery-chain/web"))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "chain: {}", resp.text().await?);
    let index = index_of(&resp)?;
    let chain: Value = resp.json().await?;
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
