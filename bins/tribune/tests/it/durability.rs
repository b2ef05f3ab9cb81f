//! `kill -9` in the middle of a stream of acknowledged writes loses none of them,
//! including across snapshots and log compaction.

use crate::support::Agent;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // A low snapshot threshold so the stream crosses snapshots and compactions.
    let extra = serde_json::json!({
        "raft_snapshot_threshold": 40,
        "raft_snapshot_interval": "0s",
        "raft_trailing_logs": 10
    });
    let agent = Agent::start(&data, extra.clone())?;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, acked, count_tx) = (
            client.clone(),
            agent.http.clone(),
            acked.clone(),
            count_tx.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w}/{i}");
                let value = format!("value-{w}-{i}");
                let resp = client
                    .put(format!("{base}/v1/kv/{key}"))
                    .body(value.clone())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        if r.text().await.ok().as_deref() == Some("true") {
                            acked.lock().unwrap().insert(key, value);
                            count_tx.send_modify(|c| *c += 1);
                        }
                    }
                    // The server died: everything after this is unacknowledged.
                    _ => return,
                }
            }
        }));
    }
    // Kill mid-stream, once a good number of writes (and several snapshots) happened.
    count_rx.wait_for(|c| *c >= 400).await?;
    agent.kill9()?;
    for w in writers {
        w.await?;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let agent = Agent::start(&data, extra)?;
    let mut missing = Vec::new();
    for (key, value) in &acked {
        let r = client
            .get(format!("{}/v1/kv/{key}?raw", agent.http))
            .send()
            .await?;
        if !r.status().is_success() || r.text().await? != *value {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let snapshots = std::fs::read_dir(data.join("server").join("snapshots"))?.count();
    assert!(snapshots >= 1, "the stream should have crossed a snapshot");
    agent.interrupt()?;
    Ok(())
}
