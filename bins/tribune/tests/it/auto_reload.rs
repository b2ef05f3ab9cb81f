//! `auto_reload_config`: editing the agent's configuration file is enough for
//! the change to apply, as after `consul reload`.

use crate::gossip::eventually;
use crate::support::Agent;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_config_file_is_applied_without_a_reload_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("n1");
    let agent = Agent::start(
        &data,
        json!({"auto_reload_config": true, "service": {"name": "first", "port": 1}}),
    )?;
    let c = reqwest::Client::new();
    let services = || async {
        let s: Value = c
            .get(format!("{}/v1/agent/services", agent.http))
            .send()
            .await?
            .json()
            .await?;
        Ok::<_, anyhow::Error>(s)
    };
    assert!(services().await?.get("first").is_some());

    // The file the agent was started with, edited in place.
    let file = data.with_extension("json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    config["service"] = json!({"name": "second", "port": 2});
    std::fs::write(&file, config.to_string())?;
    eventually(
        Duration::from_secs(30),
        "the edited file applied",
        || async {
            let s = services().await?;
            Ok(s.get("second").is_some() && s.get("first").is_none())
        },
    )
    .await?;
    Ok(())
}
