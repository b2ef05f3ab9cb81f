//! The agent's log feed: a monitor attached at `loglevel=debug` gets our crates'
//! debug lines from an agent whose console logs at info (those callsites are
//! only enabled while a monitor is attached, so this is what keeps that honest).

use crate::support::Agent;
use anyhow::{bail, Result};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_monitor_sees_debug_lines_of_an_agent_logging_at_info() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("n1"), json!({}))?;
    let c = reqwest::Client::new();
    let mut monitor = c
        .get(format!("{}/v1/agent/monitor?loglevel=debug", agent.http))
        .send()
        .await?;
    assert_eq!(monitor.status(), 200);
    // Receiving a user event logs at debug. The monitor starts listening when its
    // handler runs, which the response head does not prove, so fire again each
    // time nothing has arrived for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let r = c
            .put(format!("{}/v1/event/fire/probe", agent.http))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let wait = Instant::now() + Duration::from_millis(500);
        while let Ok(chunk) = tokio::time::timeout_at(wait.into(), monitor.chunk()).await {
            let Some(bytes) = chunk? else {
                bail!("the monitor stream ended; got:\n{seen}");
            };
            seen.push_str(&String::from_utf8_lossy(&bytes));
            if seen
                .lines()
                .any(|l| l.contains("[DEBUG]") && l.contains("user event received"))
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no debug line on the monitor; got:\n{seen}");
        }
    }
}
