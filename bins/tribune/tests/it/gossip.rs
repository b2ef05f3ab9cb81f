//! A gossip cluster of real processes on loopback: one server and six client agents
//! join; every member sees seven alive; `kill -9` of a client makes the others mark it
//! failed and the catalog shows its `serfHealth` critical; restarted, it is alive and
//! passing again with the services of its HCL and JSON config files in the catalog;
//! after `leave` it is `left` (not failed) and gone from the catalog.
//! A user event fired on one client is listed on another. Short gossip timings keep
//! detection to seconds; all waiting is bounded polling of the state the test waits for, never fixed sleeps.

use crate::support::{free_port, Agent};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn fast_gossip() -> Value {
    json!({"probe_interval": "200ms", "probe_timeout": "100ms", "gossip_interval": "50ms"})
}

/// Polls `f` (each call is one HTTP round trip) until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    // Membership has no blocking endpoint: the condition itself is what the test waits
    // for; the interval only keeps the poll from saturating two cores.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        pace.tick().await;
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not reached within {limit:?}");
        }
    }
}

pub async fn member_status(c: &reqwest::Client, http: &str, node: &str) -> Result<Option<u64>> {
    let members: Value = c
        .get(format!("{http}/v1/agent/members"))
        .send()
        .await?
        .json()
        .await?;
    Ok(members
        .as_array()
        .and_then(|a| a.iter().find(|m| m["Name"] == node))
        .and_then(|m| m["Status"].as_u64()))
}

async fn serf_health(c: &reqwest::Client, http: &str, node: &str) -> Result<Option<String>> {
    let checks: Value = c
        .get(format!("{http}/v1/health/node/{node}"))
        .send()
        .await?
        .json()
        .await?;
    Ok(checks
        .as_array()
        .and_then(|a| a.iter().find(|c| c["CheckID"] == "serfHealth"))
        .and_then(|c| c["Status"].as_str().map(str::to_owned)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_six_clients_join_fail_recover_and_leave() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let server = Agent::start_opts(
        &dir.path().join("server"),
        json!({"gossip_lan": fast_gossip(), "ports": {"serf_lan": serf}}),
        &["-server", "-bootstrap", "-node=srv"],
    )?;
    let join = format!("-retry-join=127.0.0.1:{serf}");
    let client_cfg = json!({"gossip_lan": fast_gossip(), "retry_interval": "200ms"});
    // c3 also registers services from an HCL and a JSON config file.
    let hcl = dir.path().join("web.hcl");
    std::fs::write(
        &hcl,
        "service {\n  name = \"web\"\n  port = 8080\n  check {\n    ttl = \"10m\"\n    status = \"passing\"\n  }\n}\n",
    )?;
    let json_file = dir.path().join("db.json");
    std::fs::write(
        &json_file,
        r#"{"services": [{"name": "db", "port": 5432}]}"#,
    )?;
    let c3_files = [
        format!("-config-file={}", hcl.display()),
        format!("-config-file={}", json_file.display()),
    ];
    let mut clients = Vec::new();
    for i in 0..6 {
        let name = format!("-node=c{i}");
        let mut role = vec![name.as_str(), join.as_str()];
        if i == 3 {
            role.extend(c3_files.iter().map(String::as_str));
        }
        clients.push(Agent::start_opts(
            &dir.path().join(format!("c{i}")),
            client_cfg.clone(),
            &role,
        )?);
    }
    let c = reqwest::Client::new();
    let http = server.http.clone();
    eventually(Duration::from_secs(60), "seven alive members", || {
        let (c, http) = (c.clone(), http.clone());
        async move {
            let members: Value = c
                .get(format!("{http}/v1/agent/members"))
                .send()
                .await?
                .json()
                .await?;
            let alive = members
                .as_array()
                .map_or(0, |a| a.iter().filter(|m| m["Status"] == 1).count());
            Ok(alive == 7)
        }
    })
    .await?;
    eventually(Duration::from_secs(30), "c3 passing in the catalog", || {
        let (c, http) = (c.clone(), http.clone());
        async move { Ok(serf_health(&c, &http, "c3").await?.as_deref() == Some("passing")) }
    })
    .await?;

    // A user event fired on one client reaches another.
    let fired = c
        .put(format!("{}/v1/event/fire/deploy", clients[0].http))
        .body("v2")
        .send()
        .await?;
    assert_eq!(fired.status(), 200);
    let other = clients[5].http.clone();
    eventually(Duration::from_secs(30), "the event on c5", || {
        let (c, other) = (c.clone(), other.clone());
        async move {
            let list: Value = c
                .get(format!("{other}/v1/event/list?name=deploy"))
                .send()
                .await?
                .json()
                .await?;
            Ok(list
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["Payload"] == "djI="))
        }
    })
    .await?;

    // kill -9 c3: failed for the others, serfHealth critical in the catalog.
    let c3 = clients.remove(3);
    c3.kill9()?;
    for observer in [&http, &clients[0].http] {
        let o = observer.clone();
        let waited = eventually(Duration::from_secs(60), "c3 failed", || {
            let (c, o) = (c.clone(), o.clone());
            async move { Ok(member_status(&c, &o, "c3").await? == Some(4)) }
        })
        .await;
        if let Err(e) = waited {
            // Seen once in CI (2026-12-02) and not reproduced alone, where this
            // takes about a second: say who was asking and what it saw.
            let members = c
                .get(format!("{o}/v1/agent/members"))
                .send()
                .await?
                .text()
                .await?;
            return Err(e.context(format!("observer {o}; its members: {members}")));
        }
    }
    eventually(Duration::from_secs(30), "c3 critical", || {
        let (c, http) = (c.clone(), http.clone());
        async move { Ok(serf_health(&c, &http, "c3").await?.as_deref() == Some("critical")) }
    })
    .await?;

    // Restarted on its data dir, it is back and passing.
    let c3 = Agent::start_opts(
        &dir.path().join("c3"),
        client_cfg.clone(),
        &["-node=c3", join.as_str()],
    )?;
    eventually(
        Duration::from_secs(60),
        "c3 alive and passing again",
        || {
            let (c, http) = (c.clone(), http.clone());
            async move {
                Ok(member_status(&c, &http, "c3").await? == Some(1)
                    && serf_health(&c, &http, "c3").await?.as_deref() == Some("passing"))
            }
        },
    )
    .await?;

    // A graceful leave: `left`, not failed, and deregistered.
    let r = c.put(format!("{}/v1/agent/leave", c3.http)).send().await?;
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(60), "c3 left and deregistered", || {
        let (c, http) = (c.clone(), http.clone());
        async move {
            let nodes: Value = c
                .get(format!("{http}/v1/catalog/nodes"))
                .send()
                .await?
                .json()
                .await?;
            let listed = nodes
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n["Node"] == "c3"));
            Ok(member_status(&c, &http, "c3").await? == Some(3) && !listed)
        }
    })
    .await?;

    // Operator snapshots stream through client agents both ways: each forwards
    // to the servers over the internal RPC, in pieces.
    let kv = format!("{http}/v1/kv/snap");
    assert_eq!(c.put(&kv).body("before").send().await?.status(), 200);
    let r = c
        .get(format!("{}/v1/snapshot", clients[0].http))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-consul-index"));
    let archive = r.bytes().await?;
    tribune_types::archive::read_archive(&archive[..], &mut std::io::sink())?;
    assert_eq!(c.put(&kv).body("after").send().await?.status(), 200);
    let r = c
        .put(format!("{}/v1/snapshot", clients[1].http))
        .body(archive)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let value = c.get(format!("{kv}?raw")).send().await?.text().await?;
    assert_eq!(value, "before");
    let r = c
        .put(format!("{}/v1/snapshot", clients[1].http))
        .body("not an archive")
        .send()
        .await?;
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await?,
        "snapshot verification failed: failed to decompress snapshot: gzip: invalid header"
    );
    Ok(())
}

/// With `encrypt`, a client holding another key cannot join (its packets are dropped
/// and counted, nothing crashes), while one with the right key joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_mismatched_gossip_keys_do_not_join() -> Result<()> {
    let key = tribune_gossip::keygen();
    let other = tribune_gossip::keygen();
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let server = Agent::start_opts(
        &dir.path().join("server"),
        json!({"gossip_lan": fast_gossip(), "encrypt": key, "ports": {"serf_lan": serf}}),
        &["-server", "-bootstrap", "-node=srv"],
    )?;
    let join = format!("-join=127.0.0.1:{serf}");
    let wrong = Agent::start_opts(
        &dir.path().join("wrong"),
        json!({"gossip_lan": fast_gossip(), "encrypt": other}),
        &["-node=wrong", join.as_str()],
    )?;
    let right = Agent::start_opts(
        &dir.path().join("right"),
        json!({"gossip_lan": fast_gossip(), "encrypt": key}),
        &["-node=right", join.as_str()],
    )?;
    let c = reqwest::Client::new();
    let http = server.http.clone();
    eventually(
        Duration::from_secs(60),
        "the right-key client alive",
        || {
            let (c, http) = (c.clone(), http.clone());
            async move { Ok(member_status(&c, &http, "right").await? == Some(1)) }
        },
    )
    .await?;
    // By the time the right-key client has joined through the same seed, the
    // wrong-key one has had the same chance: it is not a member on either side.
    assert_eq!(member_status(&c, &http, "wrong").await?, None);
    let r = c
        .put(format!("{}/v1/agent/join/127.0.0.1:{serf}", wrong.http))
        .send()
        .await?;
    assert_eq!(
        r.status(),
        500,
        "a join through a seed with another key fails"
    );
    assert_eq!(member_status(&c, &wrong.http, "srv").await?, None);
    // The server is still serving.
    assert_eq!(member_status(&c, &http, "srv").await?, Some(1));
    drop(right);
    Ok(())
}

/// The member snapshot (`serf/local.snapshot`): a client that joined once with `-join`
/// and was `kill -9`ed rejoins on restart with no join flag at all; after a graceful
/// leave it rejoins only with `-rejoin`, and without it stays alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_rejoins_from_its_snapshot_unless_it_left() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let server = Agent::start_opts(
        &dir.path().join("server"),
        json!({"gossip_lan": fast_gossip(), "ports": {"serf_lan": serf}}),
        &["-server", "-bootstrap", "-node=srv"],
    )?;
    let cfg = json!({"gossip_lan": fast_gossip()});
    let data = dir.path().join("c1");
    let join = format!("-join=127.0.0.1:{serf}");
    let c1 = Agent::start_opts(&data, cfg.clone(), &["-node=c1", join.as_str()])?;
    let c = reqwest::Client::new();
    let http = server.http.clone();
    let status_is = |want: u64| {
        let (c, http) = (c.clone(), http.clone());
        move || {
            let (c, http) = (c.clone(), http.clone());
            async move { Ok(member_status(&c, &http, "c1").await? == Some(want)) }
        }
    };
    eventually(Duration::from_secs(60), "c1 alive", status_is(1)).await?;
    // The snapshot is written within its flush interval of the join.
    let snapshot = data.join("serf/local.snapshot");
    eventually(Duration::from_secs(30), "srv in c1's snapshot", || {
        let snapshot = snapshot.clone();
        async move { Ok(std::fs::read_to_string(&snapshot).is_ok_and(|t| t.contains("\"srv\""))) }
    })
    .await?;

    // A crash: back with no join flag, from the snapshot.
    c1.kill9()?;
    eventually(Duration::from_secs(60), "c1 failed", status_is(4)).await?;
    let mut c1 = Agent::start_opts(&data, cfg.clone(), &["-node=c1"])?;
    c1.wait_for_line("rejoined previously known members", Duration::from_secs(30))?;
    eventually(Duration::from_secs(60), "c1 alive again", status_is(1)).await?;

    // A graceful leave, then a restart with -rejoin: back again.
    let leave = |a: &Agent| c.put(format!("{}/v1/agent/leave", a.http)).send();
    assert_eq!(leave(&c1).await?.status(), 200);
    c1.child.wait()?;
    eventually(Duration::from_secs(60), "c1 left", status_is(3)).await?;
    let mut c1 = Agent::start_opts(&data, cfg.clone(), &["-node=c1", "-rejoin"])?;
    c1.wait_for_line("rejoined previously known members", Duration::from_secs(30))?;
    eventually(Duration::from_secs(60), "c1 rejoined", status_is(1)).await?;

    // A graceful leave, then a plain restart: it stays out.
    assert_eq!(leave(&c1).await?.status(), 200);
    c1.child.wait()?;
    eventually(Duration::from_secs(60), "c1 left again", status_is(3)).await?;
    let mut c1 = Agent::start_opts(&data, cfg, &["-node=c1"])?;
    c1.wait_for_line("not rejoining", Duration::from_secs(30))?;
    assert_eq!(member_status(&c, &c1.http, "srv").await?, None);
    Ok(())
}

/// `serf_wan` (`-serf-wan-bind`) is where a server's WAN pool listens, not
/// `bind_addr`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wan_pool_binds_serf_wan() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let server = Agent::start(
        &dir.path().join("n1"),
        json!({"serf_wan": "127.0.0.2", "ports": {"serf_wan": port}}),
    )?;
    let taken = std::net::UdpSocket::bind(("127.0.0.2", port));
    assert!(taken.is_err(), "nothing listens on 127.0.0.2:{port}");
    std::net::UdpSocket::bind(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("the bind address holds the WAN port: {e}"))?;
    server.kill9()
}
