//! The binary as harnesses see it: `version -format=json`, a `consul` symlink, clean
//! SIGINT shutdown, and config files with services.

use crate::support::{bin, Agent};
use anyhow::Result;
use std::process::Command;

#[test]
fn version_json_parses_and_consul_symlink_behaves_identically() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let consul = dir.path().join("consul");
    std::os::unix::fs::symlink(bin(), &consul)?;
    let a = Command::new(bin())
        .args(["version", "-format=json"])
        .output()?;
    let b = Command::new(&consul)
        .args(["version", "-format=json"])
        .output()?;
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout)?;
    let version = v["Version"].as_str().unwrap_or("");
    assert_eq!(
        version.split('.').count(),
        3,
        "semver expected, got {version}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_services_register_and_sigint_exits_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let extra = serde_json::json!({
        "services": [{"name": "web", "port": 80, "tags": ["v1"],
                      "check": {"id": "web-ttl", "ttl": "30s", "status": "passing"}}],
        "node_meta": {"os": "linux"},
    });
    let agent = Agent::start(&dir.path().join("data"), extra)?;
    let client = reqwest::Client::new();
    // Config services reach the catalog through the agent's first sync: wait for it
    // with blocking queries rather than sleeping.
    let url = format!("{}/v1/health/service/web?passing", agent.http);
    let mut index = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let resp = client
            .get(format!("{url}&index={index}&wait=10s"))
            .send()
            .await?;
        index = resp.headers()["x-consul-index"].to_str()?.parse()?;
        let body: serde_json::Value = resp.json().await?;
        if body.as_array().is_some_and(|a| !a.is_empty()) || std::time::Instant::now() > deadline {
            break body;
        }
    };
    let entries = body.as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["Service"]["Tags"][0], "v1");
    let nodes: serde_json::Value = client
        .get(format!(
            "{}/v1/catalog/nodes?filter=Meta.os%20%3D%3D%20%22linux%22",
            agent.http
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    let status = agent.interrupt()?;
    assert!(status.success(), "{status}");
    Ok(())
}
