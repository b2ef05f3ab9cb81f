//! Blocking queries over real HTTP: a query parked on a missing key returns once the key
//! is written, every return carries a higher index, and none waits out its timeout.

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
    // A missing key reports the KV table index (as Consul does), so a write to another
    // key that lands before the parked request's first read returns it at once with the
    // new index; the client then blocks again from there. Each round is one blocking
    // request, no sleeps; the test ends when the watched key's value arrives.
    let writer = {
        let (client, base) = (client.clone(), agent.http.clone());
        tokio::spawn(async move {
            client
                .put(format!("{base}/v1/kv/other"))
                .body("x")
                .send()
                .await?;
            client
                .put(format!("{base}/v1/kv/watched"))
                .body("v")
                .send()
                .await?;
            anyhow::Ok(())
        })
    };
    let mut last = index;
    let resp = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let url = format!("{}/v1/kv/watched?index={last}&wait=5m", agent.http);
            let resp = client.get(url).send().await?;
            let new_index: u64 = resp.headers()["x-consul-index"].to_str()?.parse()?;
            assert!(
                new_index > last,
                "a blocking query returned without a newer index"
            );
            last = new_index;
            if resp.status() == 200 {
                return anyhow::Ok(resp);
            }
        }
    })
    .await??;
    writer.await??;
    assert_eq!(
        resp.text().await?,
        r#"[{"LockIndex":0,"Key":"watched","Flags":0,"Value":"dg==","CreateIndex":"#.to_owned()
            + &last.to_string()
            + r#","ModifyIndex":"#
            + &last.to_string()
            + "}]"
    );
    agent.interrupt()?;
    Ok(())
}
