//! The built-in Connect CA as a process: a server bootstraps one active root once it
//! leads and serves it at both roots endpoints; with `connect { enabled = false }`
//! it bootstraps none and both endpoints answer Consul's `ErrConnectNotEnabled`.
//! Leaf certificates come from the agent's cache, signed over its own key. The
//! CA configuration changes TTLs through raft (a new leaf follows `LeafCertTTL`),
//! and refuses bad TTLs and a rotation while changing nothing. Config-file
//! services that declare `connect.sidecar_service` get their sidecar, with a
//! port from `ports.sidecar_min_port`..`sidecar_max_port`, and lose it on the
//! reload that drops them.

use crate::support::{cli, Agent};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_roots_with_connect_on_and_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let c = reqwest::Client::new();

    let on = Agent::start(&dir.path().join("on"), json!({}))?;
    // The root is proposed once the server leads; block on the roots' index.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut index = 0u64;
    // Paces retries only while reads fail (no leader yet); then the query blocks.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let roots = loop {
        let resp = c
            .get(format!(
                "{}/v1/connect/ca/roots?index={index}&wait=2s",
                on.http
            ))
            .send()
            .await?;
        if resp.status().is_success() {
            index = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(index);
            let body: Value = resp.json().await?;
            if body["Roots"].as_array().is_some_and(|r| !r.is_empty()) {
                break body;
            }
        } else {
            pace.tick().await;
        }
        if Instant::now() > deadline {
            bail!("no CA root within 30 s");
        }
    };
    assert_eq!(roots["Roots"][0]["Active"], true, "{roots}");
    assert!(
        roots["Roots"][0].get("PrivateKey").is_none(),
        "never served"
    );

    let config_url = format!("{}/v1/connect/ca/configuration", on.http);
    let get_config = || async {
        let v: Value = c.get(&config_url).send().await?.json().await?;
        anyhow::Ok(v)
    };
    let initial = get_config().await?;
    assert_eq!(initial["Provider"], "consul", "{initial}");
    assert_eq!(initial["Config"]["LeafCertTTL"], "72h", "{initial}");
    for (config, want) in [
        (
            json!({"LeafCertTTL": "10m"}),
            "leaf cert TTL must be greater or equal than 1h0m0s",
        ),
        (
            json!({"LeafCertTTL": "100h", "IntermediateCertTTL": "200h"}),
            "Intermediate Cert TTL must be greater or equal than 3 * LeafCertTTL (>=300h0m0s).",
        ),
        (
            json!({"PrivateKey": "-----BEGIN EC PRIVATE KEY-----\nnot ours\n-----END EC PRIVATE KEY-----"}),
            "CA rotation is not supported by Tribune: the configuration may change its TTLs, not the root's private key, certificate or key type",
        ),
    ] {
        let resp = c
            .put(&config_url)
            .json(&json!({"Provider": "consul", "Config": config}))
            .send()
            .await?;
        let status = resp.status().as_u16();
        assert_eq!((status, resp.text().await?.trim()), (500, want));
    }
    assert_eq!(
        get_config().await?,
        initial,
        "refused writes change nothing"
    );

    let resp = c
        .put(&config_url)
        .json(&json!({"Provider": "consul", "Config": {"LeafCertTTL": "24h", "test_state": {"foo": "bar"}}}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let updated = get_config().await?;
    assert_eq!(updated["Config"]["LeafCertTTL"], "24h", "{updated}");
    assert_eq!(updated["State"]["foo"], "bar", "{updated}");
    assert!(updated["ModifyIndex"].as_u64() > initial["ModifyIndex"].as_u64());
    // A leaf signed now lives 24 h (plus the minute it is backdated).
    let leaf: Value = c
        .get(format!("{}/v1/agent/connect/ca/leaf/web", on.http))
        .send()
        .await?
        .json()
        .await?;
    let after = leaf["ValidAfter"].as_str().unwrap_or_default();
    let before = leaf["ValidBefore"].as_str().unwrap_or_default();
    let lifetime = unix_secs(before) - unix_secs(after);
    assert!(
        (86_400..=86_400 + 120).contains(&lifetime),
        "leaf lifetime {lifetime} s ({after} .. {before})"
    );
    drop(on);

    let off = Agent::start(
        &dir.path().join("off"),
        json!({"connect": {"enabled": false}}),
    )?;
    for path in [
        "/v1/connect/ca/roots",
        "/v1/agent/connect/ca/roots",
        "/v1/agent/connect/ca/leaf/web",
        "/v1/connect/ca/configuration",
        "/v1/connect/intentions",
        "/v1/connect/intentions/check?source=web&destination=db",
    ] {
        let resp = c.get(format!("{}{path}", off.http)).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        assert_eq!(
            (status, text.trim()),
            (500, "Connect must be enabled in order to use this endpoint"),
            "{path}"
        );
    }
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 UTC time.
fn unix_secs(t: &str) -> i64 {
    tribune_types::utc::UtcDateTime::parse_rfc3339(t).map_or(0, |d| d.unix_seconds())
}

/// `intention create|check|get|match|list|delete` against a real agent, with
/// Consul's output and exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intention_cli_round_trip() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(dir.path(), json!({}))?;
    // `intention <subcommand> -http-addr=… args`: the subcommand comes first.
    let run = |args: &[&str]| {
        let (sub, rest) = args.split_first().expect("a subcommand");
        crate::support::cli(&format!("intention {sub}"), &agent.http, rest)
    };

    let (code, _, err) = run(&["list"])?;
    assert_eq!((code, err.trim()), (2, "There are no intentions."));
    let (code, out, err) = run(&["create", "web", "db"])?;
    assert_eq!(
        (code, out.trim()),
        (0, "Created: web => db (allow)"),
        "{err}"
    );
    let (code, out, _) = run(&["check", "web", "db"])?;
    assert_eq!((code, out.trim()), (0, "Allowed"));
    let (code, _, err) = run(&["create", "web", "db"])?;
    assert_eq!(code, 1, "a second intention for the pair is refused");
    assert!(
        err.starts_with("Error creating intention \"web => db (allow)\""),
        "{err}"
    );

    let (code, out, _) = run(&["create", "-deny", "-replace", "web", "db"])?;
    assert_eq!((code, out.trim()), (0, "Created: web => db (deny)"));
    let (code, out, _) = run(&["check", "web", "db"])?;
    assert_eq!((code, out.trim()), (1, "Denied"));
    let (code, out, _) = run(&["create", "-deny", "*", "db"])?;
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["match", "db"])?;
    assert_eq!(
        (code, out.as_str()),
        (0, "web => db (deny)\n* => db (deny)\n")
    );
    let (code, out, _) = run(&["get", "web", "db"])?;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Source:       web\nDestination:  db\nAction:       deny\n"),
        "{out}"
    );
    let (code, out, _) = run(&["list"])?;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");

    for (src, dst) in [("web", "db"), ("*", "db")] {
        let (code, out, _) = run(&["delete", src, dst])?;
        assert_eq!((code, out.trim()), (0, "Intention deleted."));
    }
    let (code, out, _) = run(&["check", "web", "db"])?;
    assert_eq!((code, out.trim()), (0, "Allowed"), "no intention: allowed");
    Ok(())
}

/// `connect ca get-config|set-config` against a real agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ca_cli_reads_and_sets_the_configuration() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("agent"), json!({}))?;
    let file = dir.path().join("ca.json");
    std::fs::write(
        &file,
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "48h"}}"#,
    )?;
    let file = file.display().to_string();
    let (code, out, err) = crate::support::cli(
        "connect ca set-config",
        &agent.http,
        &[&format!("-config-file={file}")],
    )?;
    assert_eq!((code, out.trim()), (0, "Configuration updated!"), "{err}");
    let (code, out, err) = crate::support::cli("connect ca get-config", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "{\n\t\"Provider\": \"consul\",\n\t\"Config\": {\n\t\t\"LeafCertTTL\": \"48h\"\n\t},"
        ),
        "{out}"
    );
    let (code, _, err) = crate::support::cli("connect ca set-config", &agent.http, &[])?;
    assert_eq!((code, err.trim()), (1, "The -config-file flag is required"));
    Ok(())
}

/// `config write|read|list|delete` against a real agent: an HCL entry in
/// snake_case lands in the API's shape, CAS writes and deletes, Consul's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_cli_writes_hcl_entries_in_the_api_shape() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("agent"), json!({}))?;
    let file = dir.path().join("db.hcl");
    std::fs::write(
        &file,
        "kind = \"service-intentions\"\nname = \"db\"\nsources {\n  name = \"web\"\n  action = \"deny\"\n}\n",
    )?;
    let file = file.display().to_string();
    let run =
        |sub: &str, args: &[&str]| crate::support::cli(&format!("config {sub}"), &agent.http, args);

    let (code, out, err) = run("write", &[&file])?;
    assert_eq!(
        (code, out.trim()),
        (0, "Config entry written: service-intentions/db"),
        "{err}"
    );
    // The intentions API reads the same entry.
    let (code, out, _) = crate::support::cli("intention check", &agent.http, &["web", "db"])?;
    assert_eq!((code, out.trim()), (1, "Denied"));

    let (code, out, _) = run("read", &["-kind=service-intentions", "-name=db"])?;
    assert_eq!(code, 0);
    let entry: Value = serde_json::from_str(&out)?;
    assert_eq!(entry["Sources"][0]["Action"], "deny", "{out}");
    let index = entry["ModifyIndex"].as_u64().unwrap_or_default();

    let (code, out, _) = run("list", &["-kind=service-intentions"])?;
    assert_eq!((code, out.as_str()), (0, "db\n"));
    let (code, _, err) = run("write", &["-cas", "-modify-index=1", &file])?;
    assert_eq!(
        (code, err.trim()),
        (1, "Config entry not updated: service-intentions/db")
    );
    let stale = format!("-modify-index={}", index + 1000);
    let (code, _, err) = run(
        "delete",
        &["-kind=service-intentions", "-name=db", "-cas", &stale],
    )?;
    assert_eq!(
        (code, err.trim()),
        (1, "Config entry not deleted: service-intentions/db")
    );
    let current = format!("-modify-index={index}");
    let (code, out, _) = run(
        "delete",
        &["-kind=service-intentions", "-name=db", "-cas", &current],
    )?;
    assert_eq!(
        (code, out.trim()),
        (0, "Config entry deleted: service-intentions/db")
    );
    let (code, _, err) = run("read", &["-kind=service-intentions", "-name=db"])?;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = run("read", &["-name=db"])?;
    assert_eq!((code, err.trim()), (1, "Must specify the -kind parameter"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_sidecars_take_ports_from_the_configured_range() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("n1");
    let service = |name: &str, port: u16| json!({"name": name, "port": port, "connect": {"sidecar_service": {}}});
    let agent = Agent::start(
        &data,
        json!({
            "ports": {"sidecar_min_port": 22000, "sidecar_max_port": 22010},
            "services": [service("web", 8080), service("api", 9090)],
        }),
    )?;
    let c = reqwest::Client::new();
    let services = |c: reqwest::Client, http: String| async move {
        let v: Value = c
            .get(format!("{http}/v1/agent/services"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v)
    };
    let listed = services(c.clone(), agent.http.clone()).await?;
    assert_eq!(listed["web-sidecar-proxy"]["Port"], 22000, "{listed}");
    assert_eq!(listed["api-sidecar-proxy"]["Port"], 22001, "{listed}");
    assert_eq!(listed["api-sidecar-proxy"]["Kind"], "connect-proxy");
    assert!(listed["web"].get("Connect").is_none(), "{listed}");

    // A reload that drops `web` removes its sidecar; `api`'s keeps its port.
    let config_file = data.with_extension("json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
    config["services"] = json!([service("api", 9090)]);
    std::fs::write(&config_file, config.to_string())?;
    let (code, _, err) = cli("reload", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    let listed = services(c.clone(), agent.http.clone()).await?;
    let mut ids: Vec<&String> = listed
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    ids.sort();
    assert_eq!(ids, ["api", "api-sidecar-proxy"], "{listed}");
    assert_eq!(listed["api-sidecar-proxy"]["Port"], 22001);
    if listed["api-sidecar-proxy"]["Proxy"]["DestinationServiceID"] != "api" {
        bail!("the sidecar does not point at its parent: {listed}");
    }
    Ok(())
}

/// A reload that fails part-way (no sidecar port left) keeps track of what it
/// registered before failing, so the next reload that drops it removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_track_of_what_it_registered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("n1");
    let sidecar =
        |name: &str| json!({"name": name, "port": 80, "connect": {"sidecar_service": {}}});
    let agent = Agent::start(
        &data,
        json!({
            "ports": {"sidecar_min_port": 22000, "sidecar_max_port": 22000},
            "services": [sidecar("a")],
        }),
    )?;
    let config_file = data.with_extension("json");
    let reload_with = |services: Value| -> Result<(i32, String)> {
        let mut config: Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
        config["services"] = services;
        std::fs::write(&config_file, config.to_string())?;
        let (code, _, err) = cli("reload", &agent.http, &[])?;
        Ok((code, err))
    };
    // `b` goes in; `c`'s sidecar finds the one port taken by `a`'s.
    let (code, err) = reload_with(json!([{"name": "b", "port": 81}, sidecar("c")]))?;
    assert_ne!(code, 0);
    assert!(err.contains("none left in the configured range"), "{err}");
    let (code, err) = reload_with(json!([]))?;
    assert_eq!(code, 0, "{err}");
    let listed: Value = reqwest::get(format!("{}/v1/agent/services", agent.http))
        .await?
        .json()
        .await?;
    assert_eq!(listed, json!({}), "everything from config files is gone");
    Ok(())
}
