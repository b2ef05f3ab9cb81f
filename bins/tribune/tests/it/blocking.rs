//! Blocking queries over real HTTP: a query parked on a missing key returns as soon as
//! the key is written, with a higher index; one on another key keeps waiting.

use crate::support::Agent;
use anyhow::Result;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_get_wakes_on_the_write_it_watches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("data"), serde_json::json!({}))?;
    let client = reqwest::Client::new();
    let first = client
        .get(format!("{}/v1/kv/watched", agent.http))
        .send()
        .await?;
    assert_eq!(first.status(), 404);
    let index: u64 = first.headers()["x-consul-index"].to_str()?.parse()?;
    assert!(index >= 1);
    let url = format!("{}/v1/kv/watched?index={index}&wait=5m", agent.http);
    let parked = tokio::spawn({
        let client = client.clone();
        async move { client.get(url).send().await }
    });
    // Another key does not wake it; the watched key does.
    client
        .put(format!("{}/v1/kv/other", agent.http))
        .body("x")
        .send()
        .await?;
    client
        .put(format!("{}/v1/kv/watched", agent.http))
        .body("v")
        .send()
        .await?;
    let resp = tokio::time::timeout(Duration::from_secs(60), parked).await???;
    assert_eq!(resp.status(), 200);
    let new_index: u64 = resp.headers()["x-consul-index"].to_str()?.parse()?;
    assert!(new_index > index);
    agent.interrupt()?;
    Ok(())
}
