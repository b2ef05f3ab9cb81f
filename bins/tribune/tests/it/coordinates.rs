//! Network coordinates end to end: a server and a client agent on loopback learn
//! their Vivaldi coordinates from gossip probes, report them (every 100 ms here,
//! through the client's forwarding for the client), and the catalog serves them:
//! `/v1/coordinate/nodes` lists both, the estimated round trip between them is a
//! loopback-sized figure, `/v1/coordinate/datacenters` lists the server from its
//! WAN pool, `?near=` reads them, and `tribune rtt` estimates from them.

use crate::gossip::fast_gossip;
use crate::support::{free_port, Agent};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tribune_types::model::coordinate::Coordinate;

/// Waits, with blocking queries, until `/v1/coordinate/nodes` lists `want` nodes
/// whose coordinates have moved off a fresh one's (an agent reports its coordinate
/// before its first probe has been answered, with the largest error).
async fn coordinates_of(c: &reqwest::Client, http: &str, want: usize) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 0u64;
    // Only paces retries while the client agent has no server yet (its reads fail
    // until it joins); once they succeed, blocking queries do the waiting.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        let resp = c
            .get(format!("{http}/v1/coordinate/nodes?index={index}&wait=2s"))
            .send()
            .await?;
        if !resp.status().is_success() {
            if Instant::now() > deadline {
                bail!("coordinate reads still fail: {}", resp.text().await?);
            }
            pace.tick().await;
            continue;
        }
        index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .context("X-Consul-Index")?;
        let list: Value = resp.json().await?;
        let learnt = list.as_array().map_or(0, |a| {
            a.iter()
                .filter(|e| e["Coord"]["Error"].as_f64().is_some_and(|x| x < 1.5))
                .count()
        });
        if learnt >= want {
            return Ok(list);
        }
        if Instant::now() > deadline {
            bail!("{want} coordinates not reported in time: {list}");
        }
    }
}

fn coord(list: &Value, node: &str) -> Result<Coordinate> {
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|e| e["Node"] == node))
        .with_context(|| format!("no coordinate for {node}"))?;
    Ok(serde_json::from_value(entry["Coord"].clone())?)
}

/// `tribune rtt <args>` against `http`: (exit code, stdout, stderr).
fn rtt(http: &str, args: &[&str]) -> Result<(i32, String, String)> {
    crate::support::cli("rtt", http, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_gossip_coordinates_and_near_sorts_by_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let fast = json!({"gossip_lan": fast_gossip(), "sync_coordinate_interval_min": "100ms"});
    let mut server_cfg = fast.clone();
    server_cfg["ports"] = json!({"serf_lan": serf});
    let server = Agent::start_opts(
        &dir.path().join("server"),
        server_cfg,
        &["-server", "-bootstrap", "-node=srv"],
    )?;
    let join = format!("-retry-join=127.0.0.1:{serf}");
    let mut client_cfg = fast.clone();
    client_cfg["retry_interval"] = json!("200ms");
    let client = Agent::start_opts(
        &dir.path().join("client"),
        client_cfg,
        &["-node=cli", &join],
    )?;

    let c = reqwest::Client::new();
    let list = coordinates_of(&c, &client.http, 2).await?;
    let (srv, cli) = (coord(&list, "srv")?, coord(&list, "cli")?);
    let estimate = srv.distance_to(&cli);
    assert!(
        estimate > Duration::ZERO && estimate < Duration::from_millis(100),
        "loopback round trip estimated at {estimate:?}"
    );
    assert!(
        srv.error < 1.5 && cli.error < 1.5,
        "both learnt from samples"
    );

    let dcs: Value = c
        .get(format!("{}/v1/coordinate/datacenters", server.http))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(dcs[0]["Datacenter"], "dc1", "{dcs}");
    assert_eq!(dcs[0]["AreaID"], "WAN");
    assert_eq!(
        dcs[0]["Coordinates"][0]["Node"], "srv",
        "the .dc1 suffix is cut"
    );

    let one: Value = c
        .get(format!("{}/v1/coordinate/node/cli", server.http))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(one[0]["Node"], "cli");

    // `?near=` reads the stored coordinates; the order itself is checked with fixed
    // coordinates in the HTTP tests (live ones move every 100 ms here).
    for near in ["srv", "cli", "_agent"] {
        let nodes: Value = c
            .get(format!("{}/v1/catalog/nodes?near={near}", client.http))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(
            nodes.as_array().map(Vec::len),
            Some(2),
            "?near={near}: {nodes}"
        );
    }

    // `rtt`: LAN by default, the second node defaulting to the agent's own.
    let (code, out, err) = rtt(&client.http, &["srv"])?;
    assert_eq!(code, 0, "{err}");
    // Coordinates move with every report (each 100 ms here), so the figure is
    // checked for its form and range, not against the one read above.
    let ms: f64 = out
        .trim()
        .strip_prefix("Estimated srv <-> cli rtt: ")
        .and_then(|rest| rest.strip_suffix(" ms (using LAN coordinates)"))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("rtt output: {out:?}"))?;
    assert!(ms > 0.0 && ms < 100.0, "{out}");
    let (code, out, err) = rtt(&server.http, &["-wan", "srv.dc1"])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Estimated srv.dc1 <-> srv.dc1 rtt: "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("(using WAN coordinates)"), "{out}");
    let (code, _, err) = rtt(&server.http, &["nosuch"])?;
    assert_eq!(
        (code, err.trim()),
        (1, "Could not find a coordinate for node \"nosuch\"")
    );
    let (code, _, err) = rtt(&server.http, &["-wan", "srv"])?;
    assert_eq!(code, 1);
    assert!(err.contains("<node name>.<datacenter>"), "{err}");
    drop(client);
    drop(server);
    Ok(())
}
