//! Services, checks and maintenance mode registered through the agent API survive a
//! `kill -9` of the agent: they are back, and synced to the catalog, after a restart
//! on the same data dir; a deregistered one stays gone. The node ID is random
//! per data dir, or with `disable_host_node_id = false` the host's, so a
//! machine that loses its data dir comes back as the same node.

use crate::support::Agent;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

async fn put(c: &reqwest::Client, url: String, body: Option<Value>) -> Result<()> {
    let mut req = c.put(url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "{}", resp.text().await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_registrations_and_maintenance_survive_kill_9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let agent = Agent::start(&data, json!({}))?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    put(
        &c,
        format!("{base}/v1/agent/service/register"),
        Some(
            json!({"ID": "web-1", "Name": "web", "Port": 8080, "Tags": ["v1"],
                    "Check": {"CheckID": "web-ttl", "TTL": "30s"}}),
        ),
    )
    .await?;
    put(
        &c,
        format!("{base}/v1/agent/service/register"),
        Some(json!({"ID": "gone", "Name": "gone"})),
    )
    .await?;
    put(
        &c,
        format!("{base}/v1/agent/check/register"),
        Some(json!({"ID": "disk", "Name": "disk", "TTL": "30s"})),
    )
    .await?;
    put(&c, format!("{base}/v1/agent/service/deregister/gone"), None).await?;
    put(
        &c,
        format!("{base}/v1/agent/service/maintenance/web-1?enable=true&reason=upgrade"),
        None,
    )
    .await?;
    agent.kill9()?;

    let agent = Agent::start(&data, json!({}))?;
    let base = agent.http.clone();
    let services: Value = c
        .get(format!("{base}/v1/agent/services"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(services["web-1"]["Port"], 8080, "{services}");
    assert_eq!(services["web-1"]["Tags"], json!(["v1"]));
    assert!(services.get("gone").is_none(), "{services}");
    let checks: Value = c
        .get(format!("{base}/v1/agent/checks"))
        .send()
        .await?
        .json()
        .await?;
    for id in ["web-ttl", "disk", "_service_maintenance:web-1"] {
        assert!(checks.get(id).is_some(), "{id} missing: {checks}");
    }
    assert_eq!(checks["_service_maintenance:web-1"]["Notes"], "upgrade");
    // A service's checks name the service and its tags, as Consul's do.
    for id in ["web-ttl", "_service_maintenance:web-1"] {
        assert_eq!(checks[id]["ServiceName"], "web", "{checks}");
        assert_eq!(checks[id]["ServiceTags"], json!(["v1"]), "{checks}");
    }
    assert_eq!(checks["disk"]["ServiceName"], "");
    let filtered: Value = c
        .get(format!("{base}/v1/agent/checks"))
        .query(&[("filter", "ServiceName == \"web\"")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(filtered.as_object().map(|m| m.len()), Some(2), "{filtered}");
    // The restored registrations reach the catalog (anti-entropy's first sync).
    let index_of = |r: &reqwest::Response| -> u64 {
        r.headers()["x-consul-index"]
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let mut index = 0;
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = c
                .get(format!(
                    "{base}/v1/catalog/service/web?index={index}&wait=10s"
                ))
                .send()
                .await?;
            index = index_of(&r);
            let v: Value = r.json().await?;
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                return anyhow::Ok(v);
            }
        }
    })
    .await??;
    assert_eq!(found[0]["ServiceID"], "web-1");
    agent.kill9()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_are_random_or_from_the_host() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let c = reqwest::Client::new();
    let mut ids = Vec::new();
    for (name, from_host) in [("a", false), ("b", false), ("c", true), ("d", true)] {
        let agent = Agent::start(
            &dir.path().join(name),
            json!({"disable_host_node_id": !from_host}),
        )?;
        let me: Value = c
            .get(format!("{}/v1/agent/self", agent.http))
            .send()
            .await?
            .json()
            .await?;
        let id = me["Config"]["NodeID"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let persisted = std::fs::read_to_string(dir.path().join(name).join("node-id"))?;
        assert_eq!(id, persisted.trim(), "the ID is kept in the data dir");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "random IDs differ");
    assert_eq!(ids[2], ids[3], "two data dirs on one host share its ID");
    assert!(!ids[..2].contains(&ids[2]));
    Ok(())
}
