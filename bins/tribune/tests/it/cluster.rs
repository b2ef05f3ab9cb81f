//! Raft clusters of real server processes on loopback: three (and five) servers
//! started with `-bootstrap-expect` form one cluster through gossip; under a
//! steady write load sent to every server (followers forward to the leader),
//! `kill -9` of the leader yields a new leader and writes resume; every
//! acknowledged write is then readable from every surviving server, and the
//! killed server, restarted on its data directory, catches up (with three
//! servers, through a snapshot streamed from the leader, its log long compacted).
//!
//! A server that leaves keeps answering for `performance.leave_drain_time`,
//! and the leave request is answered after it, as in Consul.
//!
//! All waiting is bounded polling of the state the test waits for.

use crate::gossip::{eventually, fast_gossip};
use crate::support::{free_port, Agent};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One server process and what the test needs to reach or restart it.
pub(crate) struct Node {
    name: String,
    agent: Option<Agent>,
    data: PathBuf,
    pub(crate) extra: serde_json::Value,
    role: Vec<String>,
    pub(crate) http: String,
    rpc: String,
}

impl Node {
    fn start(&mut self) -> Result<()> {
        let role: Vec<&str> = self.role.iter().map(String::as_str).collect();
        let agent = Agent::start_opts(&self.data, self.extra.clone(), &role)?;
        self.http = agent.http.clone();
        self.agent = Some(agent);
        Ok(())
    }
}

/// Starts `n` servers expecting each other; they find each other through the
/// first two servers' gossip ports.
fn start_cluster(dir: &Path, n: usize) -> Result<Vec<Node>> {
    start_cluster_with(dir, n, json!({}))
}

/// [`start_cluster`] with extra agent config for every server.
pub(crate) fn start_cluster_with(
    dir: &Path,
    n: usize,
    config: serde_json::Value,
) -> Result<Vec<Node>> {
    let serf: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for (i, port) in serf.iter().enumerate() {
        let name = format!("s{}", i + 1);
        let rpc_port = free_port();
        let mut extra = json!({
            "gossip_lan": fast_gossip(),
            "ports": {"serf_lan": port, "server": rpc_port},
        });
        if let (Some(e), Some(c)) = (extra.as_object_mut(), config.as_object()) {
            e.extend(c.clone());
        }
        let role = vec![
            "-server".to_owned(),
            format!("-bootstrap-expect={n}"),
            format!("-node={name}"),
            format!("-retry-join=127.0.0.1:{}", serf[0]),
            format!("-retry-join=127.0.0.1:{}", serf[1]),
            "-retry-interval=200ms".to_owned(),
        ];
        let mut node = Node {
            data: dir.join(&name),
            name,
            agent: None,
            extra,
            role,
            http: String::new(),
            rpc: format!("127.0.0.1:{rpc_port}"),
        };
        node.start()?;
        nodes.push(node);
    }
    Ok(nodes)
}

async fn get_json(c: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let r = c.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.json().await?)
}

/// Waits until every live node names the same leader and `voters` peers; returns
/// the leader's index in `nodes`.
pub(crate) async fn agreed_leader(
    c: &reqwest::Client,
    nodes: &[Node],
    voters: usize,
) -> Result<usize> {
    let found = Arc::new(Mutex::new(None));
    let f = found.clone();
    eventually(
        Duration::from_secs(30),
        "one leader all servers agree on",
        || {
            let f = f.clone();
            async move {
                let mut seen = BTreeSet::new();
                for n in nodes.iter().filter(|n| n.agent.is_some()) {
                    let leader = get_json(c, &format!("{}/v1/status/leader", n.http)).await;
                    let peers = get_json(c, &format!("{}/v1/status/peers", n.http)).await;
                    match (leader, peers) {
                        (Ok(l), Ok(p)) if p.as_array().is_some_and(|p| p.len() == voters) => {
                            seen.insert(l.as_str().unwrap_or_default().to_owned());
                        }
                        _ => return Ok(false),
                    }
                }
                let leader = match seen.into_iter().collect::<Vec<_>>().as_slice() {
                    [one] if !one.is_empty() => one.clone(),
                    _ => return Ok(false),
                };
                *f.lock().unwrap() = nodes.iter().position(|n| n.rpc == leader);
                Ok(f.lock().unwrap().is_some())
            }
        },
    )
    .await?;
    let leader = found.lock().unwrap().context("leader")?;
    Ok(leader)
}

/// Writes `load/<n>` keys round-robin to every live server until stopped,
/// recording the ones acknowledged; failed writes (the server was killed, no
/// leader yet) are simply not recorded.
fn write_load(
    c: reqwest::Client,
    targets: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let list = targets.lock().unwrap().clone();
            let http = &list[n as usize % list.len()];
            let res = c
                .put(format!("{http}/v1/kv/load/{n}"))
                .body(n.to_string())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(r) = res {
                if r.status().is_success() && r.text().await.is_ok_and(|t| t == "true") {
                    acked.lock().unwrap().push(n);
                }
            }
        }
    })
}

/// Waits until `node` has every acknowledged key in its own state (`?stale`).
async fn has_all(c: &reqwest::Client, node: &Node, acked: &[u64]) -> Result<()> {
    let want: BTreeSet<String> = acked.iter().map(|n| format!("load/{n}")).collect();
    let url = format!("{}/v1/kv/load/?keys&stale", node.http);
    eventually(
        Duration::from_secs(30),
        &format!("{} has every acknowledged write", node.name),
        || {
            let want = &want;
            let url = &url;
            async move {
                let keys = match get_json(c, url).await {
                    Ok(k) => k,
                    Err(_) => return Ok(false),
                };
                let have: BTreeSet<String> = keys
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(want.is_subset(&have))
            }
        },
    )
    .await
}

/// Counts acknowledged writes until `more` new ones arrived (bounded).
async fn wait_for_writes(acked: &Arc<Mutex<Vec<u64>>>, more: usize) -> Result<()> {
    let start = acked.lock().unwrap().len();
    eventually(Duration::from_secs(30), "writes acknowledged", || {
        let now = acked.lock().unwrap().len();
        async move { Ok(now >= start + more) }
    })
    .await
}

/// With `snapshots`, servers snapshot and compact their logs every few entries,
/// and enough is written after the last kill that the restarted servers can only
/// catch up through a snapshot sent by the leader.
async fn kill_leaders_under_load(servers: usize, kills: usize, snapshots: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = if snapshots {
        json!({"raft_snapshot_threshold": 16, "raft_trailing_logs": 4,
               "raft_snapshot_interval": "10ms"})
    } else {
        json!({})
    };
    let mut nodes = start_cluster_with(dir.path(), servers, config)?;
    let c = reqwest::Client::new();
    agreed_leader(&c, &nodes, servers).await?;

    let targets = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>(),
    ));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(c.clone(), targets.clone(), acked.clone(), stop.clone());
    wait_for_writes(&acked, 20).await?;

    let mut killed = Vec::new();
    for _ in 0..kills {
        let live = servers - killed.len();
        // With the previous victim removed by autopilot, the live servers are
        // the whole configuration.
        let leader = agreed_leader(&c, &nodes, live).await?;
        let victim = &mut nodes[leader];
        victim.agent.take().context("leader running")?.kill9()?;
        targets.lock().unwrap().retain(|h| *h != victim.http);
        killed.push(leader);
        // A new leader is elected and writes are acknowledged again.
        wait_for_writes(&acked, 20).await?;
    }
    if snapshots {
        // Two snapshots past the killed servers' logs: compaction keeps the log
        // back to the previous snapshot.
        wait_for_writes(&acked, 80).await?;
    }
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    for n in nodes.iter().filter(|n| n.agent.is_some()) {
        has_all(&c, n, &acked).await?;
    }
    // The killed servers restart on their data and catch up.
    for i in killed {
        nodes[i].start()?;
        has_all(&c, &nodes[i], &acked).await?;
        // The membership's index outlives the restart, though the entry that
        // made it was compacted away long before (snapshots saved after a
        // restart used to say 0). 1 is right when the membership is still the
        // bootstrap's (autopilot may or may not have removed the dead server
        // meanwhile); the exact values are the storage tests' job.
        let archive = c
            .get(format!("{}/v1/snapshot?stale", nodes[i].http))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let meta = tribune_types::archive::read_archive(&archive[..], &mut std::io::sink())?;
        assert!(meta.configuration_index > 0, "{meta:?}");
        if snapshots {
            let agent = nodes[i].agent.as_mut().context("restarted")?;
            agent.wait_for_line(
                "installed a snapshot received from the leader",
                Duration::from_secs(10),
            )?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_survive_kill9_of_the_leader() -> Result<()> {
    kill_leaders_under_load(3, 1, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_survive_two_leader_kills() -> Result<()> {
    kill_leaders_under_load(5, 2, false).await
}

async fn put(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> Result<String> {
    let r = c.put(url).body(body).send().await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("PUT {url}: {status}: {text}");
    }
    Ok(text)
}

async fn raft_servers(c: &reqwest::Client, http: &str) -> Result<Vec<serde_json::Value>> {
    let conf = get_json(c, &format!("{http}/v1/operator/raft/configuration")).await?;
    Ok(conf["Servers"].as_array().cloned().unwrap_or_default())
}

/// Operator endpoints against a real cluster: the raft configuration, autopilot
/// settings and health, a fourth server joining as a non-voter and being
/// promoted, leadership transfer, a graceful leave removing a server, removing a
/// dead one by address, and a snapshot saved from a follower and restored
/// through another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_raft_autopilot_and_snapshots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nodes = start_cluster(dir.path(), 3)?;
    let c = reqwest::Client::new();
    let leader = agreed_leader(&c, &nodes, 3).await?;
    let http = nodes[(leader + 1) % 3].http.clone();

    let servers = raft_servers(&c, &http).await?;
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    // The CLI shows the same configuration.
    let out = std::process::Command::new(crate::support::bin())
        .args(["operator", "raft", "list-peers"])
        .env("CONSUL_HTTP_ADDR", http.trim_start_matches("http://"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout)?;
    assert!(table.starts_with("Node "), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" leader ")).count(),
        1,
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(servers
        .iter()
        .all(|s| s["Voter"] == true && s["ProtocolVersion"] == "3"));

    // Autopilot settings are replicated and checked-and-set.
    let conf = get_json(&c, &format!("{http}/v1/operator/autopilot/configuration")).await?;
    assert_eq!(conf["ServerStabilizationTime"], "10s");
    assert_eq!(conf["CleanupDeadServers"], true);
    let body = json!({"CleanupDeadServers": false, "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250, "MinQuorum": 0, "ServerStabilizationTime": "1s"});
    // The leader stored the agent config's settings when it took over.
    let cas = conf["ModifyIndex"].as_u64().context("ModifyIndex")?;
    assert!(cas > 0);
    let url = format!("{http}/v1/operator/autopilot/configuration?cas={cas}");
    assert_eq!(put(&c, &url, body.to_string()).await?, "true");
    assert_eq!(put(&c, &url, body.to_string()).await?, "false", "stale cas");
    let other = nodes[(leader + 2) % 3].http.clone();
    let conf = get_json(
        &c,
        &format!("{other}/v1/operator/autopilot/configuration?stale"),
    )
    .await?;
    assert_eq!(conf["ServerStabilizationTime"], "1s");
    assert_eq!(conf["CleanupDeadServers"], false);

    // Autopilot health: every server healthy, one failure tolerated.
    eventually(Duration::from_secs(20), "autopilot healthy", || async {
        let r = c
            .get(format!("{http}/v1/operator/autopilot/health"))
            .send()
            .await?;
        let ok = r.status() == 200;
        let h: serde_json::Value = r.json().await?;
        Ok(ok && h["Healthy"] == true && h["FailureTolerance"] == 1)
    })
    .await?;

    // A snapshot taken from a follower's own state.
    for i in 0..5 {
        put(&c, &format!("{http}/v1/kv/snap/{i}"), "before").await?;
    }
    // A stale snapshot is the follower's own state, which learns the commit of
    // the last write only after the leader acknowledged it: wait until it has
    // applied all five, or the archive (and every restored server) holds four.
    eventually(Duration::from_secs(10), "follower has the keys", || async {
        let keys = get_json(&c, &format!("{other}/v1/kv/snap/?keys&stale")).await;
        Ok(keys.is_ok_and(|k| k.as_array().is_some_and(|a| a.len() == 5)))
    })
    .await?;
    let r = c.get(format!("{other}/v1/snapshot?stale")).send().await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-consul-index"));
    assert_eq!(r.headers()["content-type"], "application/x-gzip");
    let archive = r.bytes().await?;
    // Consul's container: gzip, then a tar whose sums check out.
    assert_eq!(archive[..2], [0x1f, 0x8b]);
    let meta = tribune_types::archive::read_archive(&archive[..], &mut std::io::sink())?;
    assert!(meta.index >= 5 && meta.configuration.servers.is_some_and(|s| s.len() == 3));
    // Without `stale` the follower forwards to the leader, whose archive
    // streams back through it.
    let r = c.get(format!("{other}/v1/snapshot")).send().await?;
    assert_eq!(r.status(), 200);
    let forwarded = r.bytes().await?;
    let meta = tribune_types::archive::read_archive(&forwarded[..], &mut std::io::sink())?;
    assert!(meta.index >= 5);
    put(&c, &format!("{http}/v1/kv/snap/after"), "x").await?;

    // A fourth server started without bootstrap_expect joins as a non-voter and
    // is promoted once stable.
    let serf0 = nodes[0].extra["ports"]["serf_lan"]
        .as_u64()
        .context("serf port")?;
    let rpc_port = free_port();
    let mut fourth = Node {
        name: "s4".into(),
        agent: None,
        data: dir.path().join("s4"),
        extra: json!({"gossip_lan": fast_gossip(), "ports": {"server": rpc_port}}),
        role: vec![
            "-server".into(),
            "-node=s4".into(),
            format!("-retry-join=127.0.0.1:{serf0}"),
            "-retry-interval=200ms".into(),
        ],
        http: String::new(),
        rpc: format!("127.0.0.1:{rpc_port}"),
    };
    fourth.start()?;
    nodes.push(fourth);
    eventually(Duration::from_secs(30), "s4 promoted to voter", || async {
        let servers = raft_servers(&c, &http).await?;
        Ok(servers.len() == 4
            && servers.iter().all(|s| s["Voter"] == true)
            && servers.iter().any(|s| s["Node"] == "s4"))
    })
    .await?;

    // Leadership moves where it is told.
    let target = raft_servers(&c, &http)
        .await?
        .into_iter()
        .find(|s| s["Leader"] == false)
        .context("a follower")?;
    let id = target["ID"].as_str().context("id")?.to_owned();
    let r = c
        .post(format!("{http}/v1/operator/raft/transfer-leader?id={id}"))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    // The old leader answers once it follows the target; `http` (a follower)
    // learns of it with the new leader's first message.
    eventually(
        Duration::from_secs(10),
        "http's leader is the target",
        || async {
            let leader_addr = get_json(&c, &format!("{http}/v1/status/leader")).await?;
            Ok(leader_addr == target["Address"])
        },
    )
    .await?;
    let leader_addr = target["Address"].clone();

    // Restoring the snapshot (through a follower) brings back its keys, on every
    // server, and drops the key written after it.
    let r = c
        .put(format!("{other}/v1/snapshot"))
        .body(archive.clone())
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let mut damaged = archive.to_vec();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    let r = c
        .put(format!("{http}/v1/snapshot"))
        .body(damaged)
        .send()
        .await?;
    // Consul answers a refused archive with a 500 and the reason.
    assert_eq!(r.status(), 500);
    let text = r.text().await?;
    assert!(
        text.starts_with("snapshot verification failed: failed to"),
        "{text}"
    );
    for n in nodes.iter() {
        eventually(
            Duration::from_secs(10),
            "restored keys everywhere",
            || async {
                let keys = get_json(&c, &format!("{}/v1/kv/snap/?keys&stale", n.http)).await;
                Ok(keys.is_ok_and(|k| k.as_array().is_some_and(|a| a.len() == 5)))
            },
        )
        .await?;
    }

    // A server that leaves gracefully is removed from the configuration.
    let leaver = nodes
        .iter()
        .position(|n| n.rpc != leader_addr.as_str().unwrap_or_default() && n.name != "s1")
        .context("a follower to leave")?;
    let r = c
        .put(format!("{}/v1/agent/leave", nodes[leaver].http))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let left_rpc = nodes[leaver].rpc.clone();
    nodes[leaver].agent.take();
    let http = nodes
        .iter()
        .find(|n| n.agent.is_some())
        .context("a live server")?
        .http
        .clone();
    eventually(Duration::from_secs(20), "left server removed", || async {
        let servers = raft_servers(&c, &http).await?;
        Ok(servers.len() == 3 && servers.iter().all(|s| s["Address"] != left_rpc.as_str()))
    })
    .await?;

    // A dead server stays (cleanup is off) until an operator removes it.
    let dead = nodes
        .iter()
        .position(|n| {
            n.agent.is_some() && n.rpc != leader_addr.as_str().unwrap_or_default() && n.http != http
        })
        .context("a follower to kill")?;
    nodes[dead].agent.take().context("running")?.kill9()?;
    let dead_rpc = nodes[dead].rpc.clone();
    let r = c
        .delete(format!("{http}/v1/operator/raft/peer?address={dead_rpc}"))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let servers = raft_servers(&c, &http).await?;
    assert_eq!(servers.len(), 2);
    let r = c
        .delete(format!("{http}/v1/operator/raft/peer?address={dead_rpc}"))
        .send()
        .await?;
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await?
        .contains("was not found in the Raft configuration"));

    // The leader leaving hands leadership over first; the other server then
    // removes it and is the whole configuration.
    let leader_rpc: String =
        serde_json::from_value(get_json(&c, &format!("{http}/v1/status/leader")).await?)?;
    let leaving = nodes
        .iter()
        .position(|n| n.agent.is_some() && n.rpc == leader_rpc)
        .context("the leader")?;
    let r = c
        .put(format!("{}/v1/agent/leave", nodes[leaving].http))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    nodes[leaving]
        .agent
        .as_mut()
        .context("leader running")?
        .wait_for_line(
            "handed leadership to another server",
            Duration::from_secs(10),
        )?;
    nodes[leaving].agent.take();
    let last = nodes
        .iter()
        .find(|n| n.agent.is_some())
        .context("the last server")?;
    eventually(
        Duration::from_secs(20),
        "last server alone in the configuration",
        || async {
            let servers = raft_servers(&c, &last.http).await?;
            Ok(servers.len() == 1
                && servers[0]["Leader"] == true
                && servers[0]["Address"] == last.rpc.as_str())
        },
    )
    .await?;
    put(&c, &format!("{}/v1/kv/after-leave", last.http), "ok").await?;
    Ok(())
}

/// Removing the leader itself: it hands leadership over and the new leader
/// removes it (raft-rs would otherwise leave it leading a configuration it is
/// not in). The cluster keeps taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_hands_over_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes = start_cluster(dir.path(), 3)?;
    let c = reqwest::Client::new();
    let leader = agreed_leader(&c, &nodes, 3).await?;
    let http = nodes[(leader + 1) % 3].http.clone();
    let servers = raft_servers(&c, &http).await?;
    let id = servers
        .iter()
        .find(|s| s["Leader"] == true)
        .and_then(|s| s["ID"].as_str())
        .context("leader id")?
        .to_owned();
    let r = c
        .delete(format!("{http}/v1/operator/raft/peer?id={id}"))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let old = nodes[leader].rpc.clone();
    eventually(
        Duration::from_secs(20),
        "old leader removed, a new one leads",
        || async {
            let servers = raft_servers(&c, &http).await?;
            Ok(servers.len() == 2
                && servers.iter().all(|s| s["Address"] != old.as_str())
                && servers.iter().any(|s| s["Leader"] == true))
        },
    )
    .await?;
    let leader_now: String =
        serde_json::from_value(get_json(&c, &format!("{http}/v1/status/leader")).await?)?;
    assert_ne!(leader_now, old);
    put(&c, &format!("{http}/v1/kv/after-removal"), "ok").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_server_answers_through_its_drain_time() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Far longer than the test: the drain is still on when the test looks.
    let mut agent = Agent::start(
        &dir.path().join("s"),
        json!({"performance": {"raft_multiplier": 1, "leave_drain_time": "10m"}}),
    )?;
    let c = reqwest::Client::new();
    put(&c, &format!("{}/v1/kv/k", agent.http), "v").await?;
    let leave = tokio::spawn(c.put(format!("{}/v1/agent/leave", agent.http)).send());
    agent.wait_for_line("waiting to drain RPC traffic", Duration::from_secs(10))?;
    let r = c
        .get(format!("{}/v1/kv/k?stale&raw", agent.http))
        .send()
        .await?;
    assert_eq!(
        (r.status().as_u16(), r.text().await?),
        (200, "v".to_owned())
    );
    assert!(
        !leave.is_finished(),
        "the leave is answered after the drain"
    );
    leave.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_its_leave_when_done_and_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut agent = Agent::start(
        &dir.path().join("s"),
        json!({"performance": {"raft_multiplier": 1, "leave_drain_time": "100ms"}}),
    )?;
    let c = reqwest::Client::new();
    let r = c
        .put(format!("{}/v1/agent/leave", agent.http))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    agent.wait_for_line("Tribune agent stopped", Duration::from_secs(30))?;
    Ok(())
}
