//! Active health checks on a real agent against real targets on loopback: an HTTP
//! server whose answer the test flips, a TCP listener the test closes, and a script
//! whose exit code the test changes. Each check turns critical and back, and
//! `/v1/health/service/<name>?passing` follows. Waiting is done with blocking queries.

use crate::support::Agent;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A minimal HTTP/1.0 responder answering every request with `status`.
fn http_target(status: Arc<AtomicU16>) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let code = status.load(Ordering::SeqCst);
            let body = format!("status {code}");
            let _ = write!(
                conn,
                "HTTP/1.0 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// Blocks on the service's checks until `check` has `want` status.
async fn wait_status(
    c: &reqwest::Client,
    base: &str,
    service: &str,
    check: &str,
    want: &str,
) -> Result<Value> {
    let mut index = 0u64;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let r = c
                .get(format!(
                    "{base}/v1/health/checks/{service}?index={index}&wait=20s"
                ))
                .send()
                .await?;
            index = r.headers()["x-consul-index"].to_str()?.parse()?;
            let checks: Value = r.json().await?;
            if let Some(found) = checks
                .as_array()
                .and_then(|a| a.iter().find(|c| c["CheckID"] == check))
            {
                if found["Status"] == want {
                    return anyhow::Ok(found.clone());
                }
            }
        }
    })
    .await
    .with_context(|| format!("{check} never became {want}"))?
}

async fn passing_count(c: &reqwest::Client, base: &str, service: &str) -> Result<usize> {
    let v: Value = c
        .get(format!("{base}/v1/health/service/{service}?passing"))
        .send()
        .await?
        .json()
        .await?;
    Ok(v.as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tcp_and_script_checks_follow_their_targets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(
        &dir.path().join("data"),
        json!({"enable_script_checks": true}),
    )?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    let status = Arc::new(AtomicU16::new(200));
    let http_port = http_target(status.clone())?;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
    let tcp_port = tcp.local_addr()?.port();
    let exit_file = dir.path().join("exit");
    std::fs::write(&exit_file, "0")?;
    let script = format!("exit $(cat {})", exit_file.display());
    let register =
        |id: &str, check: Value| json!({"ID": id, "Name": id, "Port": 1, "Check": check});
    for (id, check) in [
        (
            "web",
            json!({"CheckID": "web-http", "HTTP": format!("http://127.0.0.1:{http_port}/health"),
                       "Interval": "1s", "Timeout": "1s"}),
        ),
        (
            "db",
            json!({"CheckID": "db-tcp", "TCP": format!("127.0.0.1:{tcp_port}"),
                      "Interval": "1s", "Timeout": "1s"}),
        ),
        (
            "job",
            json!({"CheckID": "job-script", "Args": ["sh", "-c", script],
                       "Interval": "1s", "Timeout": "5s"}),
        ),
    ] {
        let r = c
            .put(format!("{base}/v1/agent/service/register"))
            .json(&register(id, check))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
    }
    let up = wait_status(&c, &base, "web", "web-http", "passing").await?;
    assert!(up["Output"].as_str().unwrap_or("").contains("200"), "{up}");
    wait_status(&c, &base, "db", "db-tcp", "passing").await?;
    wait_status(&c, &base, "job", "job-script", "passing").await?;
    assert_eq!(passing_count(&c, &base, "web").await?, 1);

    // Break each target; each check goes critical and ?passing drops the instance.
    status.store(503, Ordering::SeqCst);
    drop(tcp);
    std::fs::write(&exit_file, "2")?;
    let down = wait_status(&c, &base, "web", "web-http", "critical").await?;
    assert!(
        down["Output"].as_str().unwrap_or("").contains("503"),
        "{down}"
    );
    wait_status(&c, &base, "db", "db-tcp", "critical").await?;
    wait_status(&c, &base, "job", "job-script", "critical").await?;
    assert_eq!(passing_count(&c, &base, "web").await?, 0);

    // 429 is a warning; exit 1 is a warning.
    status.store(429, Ordering::SeqCst);
    std::fs::write(&exit_file, "1")?;
    wait_status(&c, &base, "web", "web-http", "warning").await?;
    wait_status(&c, &base, "job", "job-script", "warning").await?;
    // And back.
    status.store(200, Ordering::SeqCst);
    std::fs::write(&exit_file, "0")?;
    wait_status(&c, &base, "web", "web-http", "passing").await?;
    wait_status(&c, &base, "job", "job-script", "passing").await?;
    assert_eq!(passing_count(&c, &base, "web").await?, 1);
    agent.kill9()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_checks_need_enable_script_checks_and_alias_checks_follow_their_target() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("data"), json!({}))?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    let r = c
        .put(format!("{base}/v1/agent/check/register"))
        .json(&json!({"ID": "s", "Name": "s", "Args": ["true"], "Interval": "1s"}))
        .send()
        .await?;
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await?
        .starts_with("Scripts are disabled on this agent"));
    // An alias of a TTL-checked service follows it.
    for body in [
        json!({"ID": "api", "Name": "api", "Check": {"CheckID": "api-ttl", "TTL": "60s"}}),
        json!({"ID": "api-proxy", "Name": "api-proxy",
               "Check": {"CheckID": "api-alias", "AliasService": "api"}}),
    ] {
        let r = c
            .put(format!("{base}/v1/agent/service/register"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
    }
    wait_status(&c, &base, "api-proxy", "api-alias", "critical").await?;
    c.put(format!("{base}/v1/agent/check/pass/api-ttl"))
        .send()
        .await?;
    wait_status(&c, &base, "api-proxy", "api-alias", "passing").await?;
    c.put(format!("{base}/v1/agent/check/warn/api-ttl"))
        .send()
        .await?;
    wait_status(&c, &base, "api-proxy", "api-alias", "warning").await?;
    agent.kill9()
}

/// A server started with `config`, holding a node TTL check `t` (60 s); the
/// agent, a client and its HTTP address.
async fn with_ttl_check(
    dir: &tempfile::TempDir,
    config: Value,
) -> Result<(Agent, reqwest::Client, String)> {
    let agent = Agent::start(&dir.path().join("data"), config)?;
    let (c, base) = (reqwest::Client::new(), agent.http.clone());
    let r = c
        .put(format!("{base}/v1/agent/check/register"))
        .json(&json!({"ID": "t", "Name": "t", "TTL": "60s"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
    Ok((agent, c, base))
}

/// `discard_check_output` drops checks' output before it is stored; the
/// configured `default_query_time` and `max_query_time` bound blocking waits
/// (the client's own timeout, far above them and far below Consul's 5 and 10
/// minute defaults, tells the two apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_check_output_and_configured_query_times() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (agent, c, base) = with_ttl_check(
        &dir,
        json!({"discard_check_output": true,
               "default_query_time": "1s", "max_query_time": "2s"}),
    )
    .await?;
    let r = c
        .put(format!(
            "{base}/v1/agent/check/pass/t?note=changes%20every%20run"
        ))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
    let checks: serde_json::Value = c
        .get(format!("{base}/v1/agent/checks"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(checks["t"]["Status"], "passing");
    assert_eq!(checks["t"]["Output"], "");

    let r = c.get(format!("{base}/v1/kv/none")).send().await?;
    let index = r.headers()["x-consul-index"].to_str()?.to_owned();
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    // Nothing changes meanwhile, so each query waits out its whole time:
    // the configured default without `wait`, the maximum for a longer one.
    for (wait, waited) in [("", 1), ("&wait=10m", 2)] {
        let started = std::time::Instant::now();
        let r = patient
            .get(format!("{base}/v1/kv/none?index={index}{wait}"))
            .send()
            .await?;
        assert_eq!(r.status(), 404, "wait {wait:?}");
        assert_eq!(r.headers()["x-consul-index"].to_str()?, index);
        assert!(
            started.elapsed() >= Duration::from_secs(waited),
            "wait {wait:?} answered after {:?}",
            started.elapsed()
        );
    }
    agent.kill9()
}

/// `check_update_interval`: a status change reaches the catalog at once; a
/// change of output alone shows locally at once and reaches the catalog only
/// after half an interval or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_only_changes_reach_the_catalog_after_check_update_interval() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (agent, c, base) = with_ttl_check(&dir, json!({"check_update_interval": "2s"})).await?;
    // The catalog's output of check `t`, and the index to block on, once it
    // satisfies `want` (blocking queries, so no polling interval).
    let catalog = |want: &'static str| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let mut index = "0".to_owned();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "catalog output never became {want:?}"
                );
                let r = c
                    .get(format!("{base}/v1/health/node/n1?index={index}&wait=5s"))
                    .send()
                    .await?;
                index = r.headers()["x-consul-index"].to_str()?.to_owned();
                let checks: Value = r.json().await?;
                let output = checks
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["CheckID"] == "t"))
                    .map(|c| c["Output"].as_str().unwrap_or_default().to_owned());
                if output.as_deref() == Some(want) {
                    return Ok::<_, anyhow::Error>(index);
                }
            }
        }
    };
    c.put(format!("{base}/v1/agent/check/pass/t?note=a"))
        .send()
        .await?
        .error_for_status()?;
    catalog("a").await?;

    let changed = std::time::Instant::now();
    c.put(format!("{base}/v1/agent/check/pass/t?note=b"))
        .send()
        .await?
        .error_for_status()?;
    let local: Value = c
        .get(format!("{base}/v1/agent/checks"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(local["t"]["Output"], "b");
    catalog("b").await?;
    assert!(
        changed.elapsed() >= Duration::from_secs(1),
        "output reached the catalog after {:?}",
        changed.elapsed()
    );
    agent.kill9()
}
