//! Sessions and locks on a real server process: a TTL session that is not renewed loses
//! its lock (release) or its keys (delete) within 2×TTL, a lock and its session survive
//! `kill -9`, and the restarted leader re-arms the TTL timer so the lock still expires.
//! Waiting is done with blocking queries on the lock key, never with sleeps.

use crate::support::Agent;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn create_session(c: &reqwest::Client, base: &str, body: Value) -> Result<String> {
    let resp = c
        .put(format!("{base}/v1/session/create"))
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("session create: {status} {text}");
    }
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["ID"].as_str().context("no ID")?.to_owned())
}

/// Blocks until the agent's node `n1` is in the catalog: a session needs its node
/// registered ("Missing node registration" otherwise), and a fresh server registers
/// itself only after it has won its first election.
async fn node_registered(c: &reqwest::Client, base: &str) -> Result<()> {
    let mut index = 0u64;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let resp = c
                .get(format!("{base}/v1/catalog/node/n1?index={index}&wait=10s"))
                .send()
                .await?;
            if !resp.status().is_success() {
                // No leader yet: the read fails at once; ask again.
                continue;
            }
            index = resp.headers()["x-consul-index"].to_str()?.parse()?;
            let node: Value = resp.json().await?;
            if !node.is_null() {
                return anyhow::Ok(());
            }
        }
    })
    .await
    .context("node n1 not registered in time")?
}

async fn put(c: &reqwest::Client, url: String, body: &str) -> Result<String> {
    Ok(c.put(url)
        .body(body.to_owned())
        .send()
        .await?
        .text()
        .await?)
}

/// Blocks on `key` until `done(entry)` holds (entry = `None` when the key is gone).
async fn wait_for(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    limit: Duration,
    done: impl Fn(Option<&Value>) -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    let mut index = 0u64;
    tokio::time::timeout(limit, async {
        loop {
            let resp = c
                .get(format!("{base}/v1/kv/{key}?index={index}&wait=30s"))
                .send()
                .await?;
            index = resp.headers()["x-consul-index"].to_str()?.parse()?;
            let entries: Option<Value> = if resp.status() == 404 {
                None
            } else {
                Some(resp.json().await?)
            };
            if done(entries.as_ref().and_then(|v| v.get(0))) {
                return anyhow::Ok(start.elapsed());
            }
        }
    })
    .await
    .context("condition not reached in time")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrenewed_ttl_sessions_release_or_delete_their_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("data"), json!({"session_ttl_min": "1s"}))?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    node_registered(&c, &base).await?;
    let rel = create_session(
        &c,
        &base,
        json!({"TTL": "3s", "LockDelay": "0s", "NodeChecks": []}),
    )
    .await?;
    let del = create_session(
        &c,
        &base,
        json!({"TTL": "3s", "Behavior": "delete", "NodeChecks": []}),
    )
    .await?;
    assert_eq!(
        put(&c, format!("{base}/v1/kv/lock?acquire={rel}"), "a").await?,
        "true"
    );
    assert_eq!(
        put(&c, format!("{base}/v1/kv/eph?acquire={del}"), "b").await?,
        "true"
    );
    // Neither is renewed: within 2×TTL (plus scheduling slack) both die.
    wait_for(&c, &base, "lock", Duration::from_secs(30), |e| {
        e.is_some_and(|e| e.get("Session").is_none())
    })
    .await?;
    wait_for(&c, &base, "eph", Duration::from_secs(30), |e| e.is_none()).await?;
    let renew = c
        .put(format!("{base}/v1/session/renew/{rel}"))
        .send()
        .await?;
    assert_eq!(renew.status(), 404);
    assert_eq!(renew.text().await?, format!("Session id '{rel}' not found"));
    // A released lock can be taken again (lock-delay 0); LockIndex moves on.
    let next = create_session(&c, &base, json!({"NodeChecks": []})).await?;
    assert_eq!(
        put(&c, format!("{base}/v1/kv/lock?acquire={next}"), "c").await?,
        "true"
    );
    let v: Value = c
        .get(format!("{base}/v1/kv/lock"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(v[0]["LockIndex"], 2);
    agent.kill9()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_survives_kill_9_and_the_new_leader_still_expires_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = json!({"session_ttl_min": "1s"});
    let agent = Agent::start(&data, cfg.clone())?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    node_registered(&c, &base).await?;
    // Long enough that a loaded machine cannot expire it before the kill (20 s).
    let id = create_session(&c, &base, json!({"TTL": "10s", "NodeChecks": []})).await?;
    assert_eq!(
        put(&c, format!("{base}/v1/kv/leader?acquire={id}"), "me").await?,
        "true"
    );
    agent.kill9()?;

    let agent = Agent::start(&data, cfg)?;
    let base = agent.http.clone();
    // The acknowledged session and lock are there after the crash...
    let info: Value = c
        .get(format!("{base}/v1/session/info/{id}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info[0]["ID"], id.as_str());
    // ...and the restarted leader armed a fresh timer, so the lock is released.
    wait_for(&c, &base, "leader", Duration::from_secs(60), |e| {
        e.is_some_and(|e| e.get("Session").is_none())
    })
    .await?;
    // Lock-delay (default 15 s) now blocks a new holder.
    let other = create_session(&c, &base, json!({"NodeChecks": []})).await?;
    assert_eq!(
        put(&c, format!("{base}/v1/kv/leader?acquire={other}"), "x").await?,
        "false"
    );
    agent.kill9()
}

/// `tribune lock` end to end: the holder's child runs with `CONSUL_LOCK_HELD=true`; the
/// holder is killed with `-9` (so nobody releases or destroys anything); a second
/// `tribune lock` on the same prefix gets the lock once the server invalidates the dead
/// holder's session — within TTL×2 (the CLI's session TTL is Consul's 15 s) plus the
/// 15 s lock-delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_is_replaced_after_ttl_and_lock_delay() -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("data"), json!({}))?;
    node_registered(&reqwest::Client::new(), &agent.http).await?;
    let addr = format!("-http-addr={}", agent.http);
    // The child blocks reading stdin (passed through with -pass-stdin), which this test
    // holds open; it ends when the test drops it.
    let mut holder = Command::new(crate::support::bin())
        .args(["lock", &addr, "-pass-stdin", "job"])
        .arg(r#"test "$CONSUL_LOCK_HELD" = true && echo held; read _"#)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = holder.stdout.take().context("holder stdout")?;
    let first = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .find(|l| l == "held")
    });
    let held = tokio::time::timeout(Duration::from_secs(30), first).await??;
    assert_eq!(held.as_deref(), Some("held"));
    let c = reqwest::Client::new();
    let lock: Value = c
        .get(format!("{}/v1/kv/job/.lock", agent.http))
        .send()
        .await?
        .json()
        .await?;
    assert!(lock[0]["Session"].is_string(), "{lock}");
    assert_eq!(
        lock[0]["Flags"], 3304740253564472344u64,
        "Go's LockFlagValue"
    );

    holder.kill()?;
    holder.wait()?;
    let contender = tokio::process::Command::new(crate::support::bin())
        .args(["lock", &addr, "-timeout=120s", "job"])
        .arg(r#"test "$CONSUL_LOCK_HELD" = true && echo got"#)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), contender).await??;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got"),
        "{out:?}"
    );
    drop(holder.stdin.take());
    agent.kill9()
}
