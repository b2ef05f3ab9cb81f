//! The built-in Connect CA as a process: a server bootstraps one active root once it
//! leads and serves it at both roots endpoints; with `connect { enabled = false }`
//! it bootstraps none and both endpoints answer Consul's `ErrConnectNotEnabled`.
//! Leaf certificates come from the agent's cache, signed over its own key.

use crate::support::Agent;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_roots_with_connect_on_and_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let c = reqwest::Client::new();

    let on = Agent::start(&dir.path().join("on"), json!({}))?;
    // The root is proposed once the server leads; block on the roots' index.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut index = 0u64;
    // Paces retries only while reads fail (no leader yet); then the query blocks.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let roots = loop {
        let resp = c
            .get(format!(
                "{}/v1/connect/ca/roots?index={index}&wait=2s",
                on.http
            ))
            .send()
            .await?;
        if resp.status().is_success() {
            index = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(index);
            let body: Value = resp.json().await?;
            if body["Roots"].as_array().is_some_and(|r| !r.is_empty()) {
                break body;
            }
        } else {
            pace.tick().await;
        }
        if Instant::now() > deadline {
            bail!("no CA root within 30 s");
        }
    };
    assert_eq!(roots["Roots"][0]["Active"], true, "{roots}");
    assert!(
        roots["Roots"][0].get("PrivateKey").is_none(),
        "never served"
    );
    drop(on);

    let off = Agent::start(
        &dir.path().join("off"),
        json!({"connect": {"enabled": false}}),
    )?;
    for path in [
        "/v1/connect/ca/roots",
        "/v1/agent/connect/ca/roots",
        "/v1/agent/connect/ca/leaf/web",
    ] {
        let resp = c.get(format!("{}{path}", off.http)).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        assert_eq!(
            (status, text.trim()),
            (500, "Connect must be enabled in order to use this endpoint"),
            "{path}"
        );
    }
    Ok(())
}
