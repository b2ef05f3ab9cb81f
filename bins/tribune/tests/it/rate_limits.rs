//! `limits.request_limits` on a real server agent: in `enforcing` mode writes
//! over the rate are refused with Consul's 503 on the leader and reads with its
//! 429, status requests stay exempt, a client agent passes the server's
//! refusals on, and a reload changes the limits without a restart; a client
//! agent's `limits.rpc_rate` refuses its own requests with Consul's 429.
//! `limits.http_max_conns_per_client` turns away a client's connections over
//! the limit, and is reloadable too.

use crate::support::{cli, free_port, Agent};
use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const LEADER_ONLY: &str =
    "rate limit exceeded for operation that can only be performed by the leader, try again later";
const ELSEWHERE: &str = "rate limit exceeded, try again later or against a different server";

/// One request over a kept-alive client: (status, body).
async fn call(c: &reqwest::Client, method: Method, url: &str) -> Result<(u16, String)> {
    let r = c.request(method, url).body("v").send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Sends `n` requests and counts the refusals, each of which must be
/// `refusal`; anything but a success or that refusal fails the test.
async fn refusals(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    n: usize,
    refusal: (u16, &str),
) -> Result<usize> {
    let mut refused = 0;
    for _ in 0..n {
        match call(c, method.clone(), url).await? {
            (200 | 404, _) => {}
            (s, body) if (s, body.as_str()) == refusal => refused += 1,
            other => bail!("{method} {url}: unexpected answer {other:?}"),
        }
    }
    Ok(refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_refuse_writes_and_reads_over_the_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // One write and one read a second: bursts of ten, then about one a second,
    // which 30 requests in a row soon exceed.
    let serf = free_port();
    let agent = Agent::start(
        &data,
        json!({
            "ports": {"serf_lan": serf},
            "limits": {"request_limits": {"mode": "enforcing", "read_rate": 1, "write_rate": 1}},
        }),
    )?;
    let c = reqwest::Client::new();
    let kv = format!("{}/v1/kv/limited", agent.http);
    // The agent's own startup spent some of the bursts; the rest runs out.
    let refused = refusals(&c, Method::PUT, &kv, 30, (503, LEADER_ONLY)).await?;
    assert!(refused >= 10, "only {refused} of 30 writes refused");
    let refused = refusals(&c, Method::GET, &kv, 30, (429, ELSEWHERE)).await?;
    assert!(refused >= 10, "only {refused} of 30 reads refused");
    // Status requests are exempt.
    let leader = format!("{}/v1/status/leader", agent.http);
    for _ in 0..30 {
        assert_eq!(call(&c, Method::GET, &leader).await?.0, 200);
    }

    // Through a client agent: the server's refusals arrive as they leave it (a
    // read is tried on every known server first; there is one).
    let join = format!("-retry-join=127.0.0.1:{serf}");
    let client = Agent::start_opts(
        &dir.path().join("client"),
        json!({"retry_interval": "200ms"}),
        &["-node=c1", &join],
    )?;
    // Status is exempt, so it shows when the client has found the server.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        let (s, body) = call(
            &c,
            Method::GET,
            &format!("{}/v1/status/leader", client.http),
        )
        .await?;
        if s == 200 && body.len() > 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the client agent found no server: {s} {body}");
        }
        pace.tick().await;
    }
    let via_client = format!("{}/v1/kv/limited", client.http);
    let refused = refusals(&c, Method::PUT, &via_client, 30, (503, LEADER_ONLY)).await?;
    assert!(refused >= 10, "only {refused} of 30 writes refused");
    let refused = refusals(&c, Method::GET, &via_client, 30, (429, ELSEWHERE)).await?;
    assert!(refused >= 10, "only {refused} of 30 reads refused");

    // Turned off by a reload: writes pass again, without a restart.
    let config_file = data.with_extension("json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
    config["limits"] = json!({"request_limits": {"mode": "disabled"}});
    std::fs::write(&config_file, config.to_string())?;
    let (code, _, err) = cli("reload", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    for _ in 0..30 {
        assert_eq!(call(&c, Method::PUT, &kv).await?, (200, "true".to_owned()));
    }

    // A client agent's own limit on what it sends (`limits.rpc_rate`, a burst
    // of five): refused there with Consul's 429, before reaching a server.
    let limited = Agent::start_opts(
        &dir.path().join("limited"),
        json!({"retry_interval": "200ms", "limits": {"rpc_rate": 0.001, "rpc_max_burst": 5}}),
        &["-node=c2", &join],
    )?;
    let mut refused = 0;
    for _ in 0..20 {
        match call(&c, Method::GET, &format!("{}/v1/kv/limited", limited.http)).await? {
            (429, body) => {
                assert_eq!(body, "RPC rate limit exceeded");
                refused += 1;
            }
            // Before it has joined, or while its burst lasts.
            (200 | 404 | 500, _) => {}
            other => bail!("unexpected answer {other:?}"),
        }
    }
    assert!(refused >= 15, "only {refused} of 20 reads refused");
    Ok(())
}

/// The server's own reads (leader setup: the CA root, session timers) do not
/// count against the limits: a server refusing every client request still
/// sets itself up as leader, as Consul's does from its state store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_never_stall_the_leaders_own_setup() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut agent = Agent::start(
        &dir.path().join("data"),
        json!({"limits": {"request_limits": {"mode": "enforcing", "read_rate": 0, "write_rate": 0}}}),
    )?;
    agent.wait_for_line("cluster leadership established", Duration::from_secs(20))?;
    let c = reqwest::Client::new();
    let roots_url = format!("{}/v1/connect/ca/roots", agent.http);
    assert_eq!(
        call(&c, Method::GET, &roots_url).await?,
        (429, ELSEWHERE.to_owned())
    );
    Ok(())
}

/// `limits.http_max_conns_per_client` on a real agent: a client address that
/// holds the limit gets Consul's 429 on a new connection, and a reload that
/// raises the limit admits it without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_per_client_are_limited_and_reloadable() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let agent = Agent::start(&data, json!({"limits": {"http_max_conns_per_client": 2}}))?;
    let addr: std::net::SocketAddr = agent.http.trim_start_matches("http://").parse()?;
    // The test's connections come from 127.0.0.2, so the harness's and the
    // CLI's own (from 127.0.0.1) are counted apart.
    let connect = || async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.2:0".parse()?)?;
        let mut s = socket.connect(addr).await?;
        s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut head = vec![0u8; 12];
        s.read_exact(&mut head).await?;
        anyhow::Ok((s, String::from_utf8(head)?))
    };
    let (_a, head) = connect().await?;
    assert_eq!(head, "HTTP/1.1 200");
    let (_b, head) = connect().await?;
    assert_eq!(head, "HTTP/1.1 200");
    let (mut refused, head) = connect().await?;
    assert_eq!(head, "HTTP/1.1 429");
    let mut rest = String::new();
    refused.read_to_string(&mut rest).await?;
    assert!(
        rest.ends_with(
            "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
        ),
        "{rest}"
    );

    let config_file = data.with_extension("json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
    config["limits"] = json!({"http_max_conns_per_client": 3});
    std::fs::write(&config_file, config.to_string())?;
    let (code, _, err) = cli("reload", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    let (_c, head) = connect().await?;
    assert_eq!(head, "HTTP/1.1 200");
    let (_, head) = connect().await?;
    assert_eq!(head, "HTTP/1.1 429");
    Ok(())
}
