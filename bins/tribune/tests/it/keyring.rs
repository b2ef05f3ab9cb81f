//! A gossip key rotation across a running encrypted cluster (one server, two client
//! agents), driven by `tribune keyring` against the server: install a new key, make it
//! primary, remove the old one. After each step `/v1/operator/keyring` on a client
//! counts the keys on every member; nobody is lost, the keyring files hold the new key
//! only, and a user event fired afterwards still reaches every member.

use crate::gossip::{eventually, fast_gossip, member_status};
use crate::support::{free_port, Agent};
use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// `tribune keyring <args>` against `http`; returns (exit code, stdout, stderr).
fn keyring_cli(http: &str, args: &[&str]) -> Result<(i32, String, String)> {
    crate::support::cli("keyring", http, args)
}

/// `GET /v1/operator/keyring` as (status, parsed body or text).
async fn list(c: &reqwest::Client, http: &str) -> Result<(u16, Value)> {
    let r = c.get(format!("{http}/v1/operator/keyring")).send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Whether a listing's pool (`wan`) shows exactly these key and primary counts.
fn pool_is(listing: &Value, wan: bool, nodes: u64, keys: &Value, primary: &Value) -> bool {
    listing.as_array().is_some_and(|pools| {
        pools.iter().any(|p| {
            p["WAN"] == wan
                && p["NumNodes"] == nodes
                && &p["Keys"] == keys
                && &p["PrimaryKeys"] == primary
        })
    })
}

/// Waits until `http`'s LAN listing shows these counts over three members.
async fn lan_counts(c: &reqwest::Client, http: &str, keys: Value, primary: Value) -> Result<()> {
    let what = format!("LAN keys {keys} primary {primary} on {http}");
    eventually(Duration::from_secs(30), &what, || {
        let (c, http, keys, primary) = (c.clone(), http.to_owned(), keys.clone(), primary.clone());
        async move {
            let (status, body) = list(&c, &http).await?;
            Ok(status == 200 && pool_is(&body, false, 3, &keys, &primary))
        }
    })
    .await
}

fn keyring_file(data_dir: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(data_dir.join("serf").join("local.keyring"))?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_across_a_running_cluster_loses_nobody() -> Result<()> {
    let (k1, k2) = (tribune_gossip::keygen(), tribune_gossip::keygen());
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let server = Agent::start_opts(
        &dir.path().join("srv"),
        json!({"gossip_lan": fast_gossip(), "encrypt": k1, "ports": {"serf_lan": serf}}),
        &["-server", "-bootstrap", "-node=srv"],
    )?;
    let join = format!("-retry-join=127.0.0.1:{serf}");
    let client_cfg = json!({"gossip_lan": fast_gossip(), "encrypt": k1, "retry_interval": "200ms"});
    let mut clients = Vec::new();
    for name in ["c0", "c1"] {
        let node = format!("-node={name}");
        clients.push(Agent::start_opts(
            &dir.path().join(name),
            client_cfg.clone(),
            &[node.as_str(), join.as_str()],
        )?);
    }
    let c = reqwest::Client::new();
    let (srv, c1) = (server.http.clone(), clients[1].http.clone());
    let everyone = [srv.clone(), clients[0].http.clone(), c1.clone()];
    let all_alive = |observer: String| {
        let c = c.clone();
        async move {
            let what = format!("three alive members on {observer}");
            eventually(Duration::from_secs(60), &what, || {
                let (c, o) = (c.clone(), observer.clone());
                async move {
                    for node in ["srv", "c0", "c1"] {
                        if member_status(&c, &o, node).await? != Some(1) {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
            })
            .await
        }
    };
    for http in &everyone {
        all_alive(http.clone()).await?;
    }

    // Before: one key everywhere, in both pools (the WAN pool is the server alone).
    lan_counts(&c, &c1, json!({&k1: 3}), json!({&k1: 3})).await?;
    let (status, body) = list(&c, &srv).await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        pool_is(&body, true, 1, &json!({&k1: 1}), &json!({&k1: 1})),
        "{body}"
    );
    assert_eq!(body[0]["WAN"], true, "the WAN pool comes first: {body}");

    // Install the new key everywhere.
    let (code, out, err) = keyring_cli(&srv, &["-install", &k2])?;
    assert_eq!(
        (code, out.as_str()),
        (0, "==> Installing new gossip encryption key...\n"),
        "{err}"
    );
    lan_counts(&c, &c1, json!({&k1: 3, &k2: 3}), json!({&k1: 3})).await?;

    // The old key is still the primary: removing it is refused, and nothing changes.
    let r = c
        .delete(format!("{srv}/v1/operator/keyring"))
        .body(json!({"Key": k1}).to_string())
        .send()
        .await?;
    assert_eq!(r.status(), 500);
    let text = r.text().await?;
    assert!(text.contains("nodes reported failure"), "{text}");
    assert!(
        text.contains("Removing the primary key is not allowed"),
        "{text}"
    );

    // Make it the primary, then remove the old key.
    let (code, _, err) = keyring_cli(&srv, &["-use", &k2])?;
    assert_eq!(code, 0, "{err}");
    lan_counts(&c, &c1, json!({&k1: 3, &k2: 3}), json!({&k2: 3})).await?;
    let (code, _, err) = keyring_cli(&srv, &["-remove", &k1])?;
    assert_eq!(code, 0, "{err}");
    lan_counts(&c, &c1, json!({&k2: 3}), json!({&k2: 3})).await?;
    let (status, body) = list(&c, &srv).await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        pool_is(&body, true, 1, &json!({&k2: 1}), &json!({&k2: 1})),
        "{body}"
    );
    let (code, out, err) = keyring_cli(&c1, &["-list"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("==> Gathering installed encryption keys...\n\ndc1 (LAN):\n  {k2} [3/3]\n")
    );

    // The keyring files hold the new key only.
    for name in ["srv", "c0", "c1"] {
        let keys = keyring_file(&dir.path().join(name))?;
        ensure!(keys == vec![k2.clone()], "{name}'s keyring file: {keys:?}");
    }

    // Nobody was lost, and gossip still carries events to every member.
    for http in &everyone {
        all_alive(http.clone()).await?;
    }
    let r = c
        .put(format!("{c1}/v1/event/fire/rotated"))
        .body("k2")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    for http in &everyone {
        let what = format!("the event on {http}");
        eventually(Duration::from_secs(30), &what, || {
            let (c, http) = (c.clone(), http.clone());
            async move {
                let events: Value = c
                    .get(format!("{http}/v1/event/list?name=rotated"))
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(events.as_array().is_some_and(|a| a.len() == 1))
            }
        })
        .await?;
    }
    for http in &everyone {
        all_alive(http.clone()).await?;
    }
    Ok(())
}

/// Without `encrypt` there is no keyring: Consul's per-member message, as a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_without_encryption_is_consuls_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Agent::start(&dir.path().join("n1"), json!({}))?;
    let c = reqwest::Client::new();
    let (status, body) = list(&c, &server.http).await?;
    assert_eq!(status, 500);
    let text = body.as_str().unwrap_or_default();
    assert!(
        text.contains("WAN error: 1/1 nodes reported failure"),
        "{text}"
    );
    assert!(
        text.contains("n1: Keyring is empty (encryption not enabled)"),
        "{text}"
    );
    let (code, _, err) = keyring_cli(&server.http, &["-install", &tribune_gossip::keygen()])?;
    assert_eq!(code, 1);
    assert!(
        err.contains("No keyring to modify (encryption not enabled)"),
        "{err}"
    );
    Ok(())
}

/// `disable_keyring_file`: the gossip key works but is never written to the
/// data directory (with the default, the same start writes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_keyring_file_keeps_the_key_off_disk() -> Result<()> {
    let key = tribune_gossip::keygen();
    let dir = tempfile::tempdir()?;
    let kept = dir.path().join("kept");
    let server = Agent::start(&kept, json!({"encrypt": key}))?;
    server.kill9()?;
    assert_eq!(keyring_file(&kept)?, vec![key.clone()]);

    let memory_only = dir.path().join("memory-only");
    let server = Agent::start(
        &memory_only,
        json!({"encrypt": key, "disable_keyring_file": true}),
    )?;
    let c = reqwest::Client::new();
    let (status, body) = list(&c, &server.http).await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        pool_is(
            &body,
            false,
            1,
            &json!({ key.clone(): 1 }),
            &json!({ key: 1 })
        ),
        "{body}"
    );
    server.kill9()?;
    let serf = memory_only.join("serf");
    for file in ["local.keyring", "remote.keyring"] {
        assert!(!serf.join(file).exists(), "{file} was written");
    }
    Ok(())
}
