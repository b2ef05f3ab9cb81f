//! `tribune watch -type=event` with a handler: the handler runs at once with the events
//! so far, then once per new event with only the new ones as JSON on stdin and
//! `CONSUL_INDEX` set, as Consul's watch plan does.

use crate::gossip::eventually;
use crate::support::{bin, Agent};
use anyhow::Result;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the watch process even when the test fails.
struct Watch(std::process::Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_watch_runs_the_handler_with_new_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Agent::start(&dir.path().join("n1"), json!({}))?;
    let out = dir.path().join("handled");
    let c = reqwest::Client::new();
    // An event fired before the watch starts is in its first invocation.
    let r = c
        .put(format!("{}/v1/event/fire/deploy", server.http))
        .body("v1")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let http = server.http.clone();
    let listed = || {
        let (c, http) = (c.clone(), http.clone());
        async move {
            let list: Value = c
                .get(format!("{http}/v1/event/list?name=deploy"))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(list.as_array().map_or(0, Vec::len))
        }
    };
    eventually(Duration::from_secs(30), "the first event kept", || {
        let l = listed();
        async move { Ok(l.await? == 1) }
    })
    .await?;

    // One line per invocation: the index, a tab, the JSON on stdin.
    let script = format!(
        "printf '%s\\t' \"$CONSUL_INDEX\" >> {out}; cat >> {out}",
        out = out.display()
    );
    let _watch = Watch(
        Command::new(bin())
            .args(["watch", "-type=event", "-name=deploy"])
            .arg(format!("-http-addr={}", server.http))
            .arg(script)
            .env("SHELL", "/bin/sh")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let lines = || -> Vec<(u64, Value)> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (idx, body) = l.split_once('\t')?;
                Some((idx.parse().ok()?, serde_json::from_str(body).ok()?))
            })
            .collect()
    };
    eventually(Duration::from_secs(30), "the first invocation", || {
        let n = lines().len();
        async move { Ok(n == 1) }
    })
    .await?;
    let (_, first) = lines()[0].clone();
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first[0]["Payload"], "djE=");

    // A new event: the handler gets only it, with the list's new index.
    let r = c
        .put(format!("{}/v1/event/fire/deploy", server.http))
        .body("v2")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let fired: Value = r.json().await?;
    eventually(Duration::from_secs(30), "the second invocation", || {
        let n = lines().len();
        async move { Ok(n == 2) }
    })
    .await?;
    let (index, second) = lines()[1].clone();
    assert_eq!(second.as_array().map(Vec::len), Some(1), "{second}");
    assert_eq!(second[0]["ID"], fired["ID"]);
    assert_eq!(second[0]["Name"], "deploy");
    assert_eq!(second[0]["Payload"], "djI=");
    let id = fired["ID"].as_str().unwrap_or_default().replace('-', "");
    let folded = u64::from_str_radix(&id[..16], 16)? ^ u64::from_str_radix(&id[16..], 16)?;
    assert_eq!(index, folded, "CONSUL_INDEX is the event list's index");
    Ok(())
}
