//! Prepared queries through a real agent: the `/v1/query` endpoints with
//! Consul's codes and texts, a template, DNS answers for `.query.` names (with
//! `dig`), and the queries kept across a `kill -9`.

use crate::dns::dig;
use crate::support::{register, Agent};
use anyhow::{Context, Result};
use serde_json::{json, Value};

/// `(status, body)` of a request.
async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<(u16, String)> {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// The answer records' data fields and the response status of one dig question.
fn ask(port: u16, name: &str, qtype: &str) -> Result<(String, Vec<String>)> {
    let d = dig(port, &["+bufsize=4096", name, qtype])?;
    let status = d
        .text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .context("no status in dig's output")?
        .to_owned();
    let mut data: Vec<String> = d
        .answers
        .iter()
        .map(|r| r.split(' ').skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    data.sort();
    Ok((status, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_queries_over_http_and_dns() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let agent = Agent::start_with(&data, json!({}), true)?;
    let port = agent.dns.context("no DNS port")?;
    let http = agent.http.clone();
    let c = reqwest::Client::new();
    for (node, addr, tag, status) in [
        ("a", "10.0.0.1", "primary", "passing"),
        ("b", "10.0.0.2", "replica", "passing"),
        ("c", "10.0.0.3", "replica", "critical"),
    ] {
        register(
            &c,
            &http,
            &json!({
                "Node": node, "Address": addr,
                "Service": {"ID": "db", "Service": "db", "Port": 5432, "Tags": [tag]},
                "Check": {"CheckID": "db-up", "Name": "up", "Status": status, "ServiceID": "db"},
            }),
        )
        .await?;
    }

    // Bad definitions change nothing and get Consul's answers.
    let post =
        |body: Option<Value>| call(&c, reqwest::Method::POST, format!("{http}/v1/query"), body);
    assert_eq!(
        post(Some(json!({"Service": {"Service": "db"}}))).await?,
        (
            500,
            "Invalid prepared query: Must be bound to a session".into()
        )
    );
    let (code, text) = post(Some(json!({"Name": "x", "Service": "db"}))).await?;
    assert_eq!(code, 400, "{text}");
    assert!(text.starts_with("Request decode failed: "), "{text}");
    let (code, text) = call(&c, reqwest::Method::POST, format!("{http}/v1/query"), None).await?;
    assert_eq!((code, text.as_str()), (400, "Request decode failed: EOF"));

    let (code, text) = post(Some(json!({
        "Name": "db-primary",
        "Service": {"Service": "db", "Tags": ["primary"]},
        "DNS": {"TTL": "7s"},
    })))
    .await?;
    assert_eq!(code, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text)?["ID"]
        .as_str()
        .context("no ID")?
        .to_owned();
    let (code, text) = post(Some(json!({
        "Name": "geo-",
        "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.*)$"},
        "Service": {"Service": "${match(1)}"},
    })))
    .await?;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        post(Some(
            json!({"Name": "DB-PRIMARY", "Service": {"Service": "db"}})
        ))
        .await?,
        (
            500,
            "name 'DB-PRIMARY' aliases an existing query name".into()
        )
    );

    // Read back: every field, unset lists as null.
    let (code, text) = call(
        &c,
        reqwest::Method::GET,
        format!("{http}/v1/query/{id}"),
        None,
    )
    .await?;
    assert_eq!(code, 200, "{text}");
    let got: Value = serde_json::from_str(&text)?;
    assert_eq!(got[0]["Service"]["Tags"], json!(["primary"]));
    assert_eq!(got[0]["Service"]["IgnoreCheckIDs"], Value::Null);
    assert_eq!(got[0]["DNS"]["TTL"], "7s");
    assert_eq!(got[0]["Template"]["Type"], "");
    let (code, text) = call(
        &c,
        reqwest::Method::GET,
        format!("{http}/v1/query/not-a-uuid"),
        None,
    )
    .await?;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "failed prepared query lookup: UUID must be 36 characters"
        )
    );

    // Execute and explain.
    let exec = |path: String| {
        call(
            &c,
            reqwest::Method::GET,
            format!("{http}/v1/query/{path}"),
            None,
        )
    };
    let (code, text) = exec("geo-db/execute".into()).await?;
    assert_eq!(code, 200, "{text}");
    let run: Value = serde_json::from_str(&text)?;
    let mut nodes: Vec<&str> = run["Nodes"]
        .as_array()
        .context("no Nodes")?
        .iter()
        .filter_map(|n| n["Node"]["Node"].as_str())
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["a", "b"], "the critical instance is left out");
    assert_eq!(
        (run["Service"].as_str(), run["Failovers"].as_u64()),
        (Some("db"), Some(0))
    );
    let (_, text) = exec(format!("{id}/execute")).await?;
    let run: Value = serde_json::from_str(&text)?;
    assert_eq!(run["DNS"]["TTL"], "7s");
    // `?near` puts that node's instance first, `?limit` cuts (two instances
    // qualify; each order is drawn at random, so ask a few times).
    for _ in 0..8 {
        for (near, first) in [("b", "b"), ("a", "a")] {
            let (_, text) = exec(format!("geo-db/execute?near={near}&limit=1")).await?;
            let run: Value = serde_json::from_str(&text)?;
            let nodes = run["Nodes"].as_array().context("no Nodes")?;
            assert_eq!(nodes.len(), 1, "{text}");
            assert_eq!(nodes[0]["Node"]["Node"], first, "{text}");
        }
    }
    // `?index` does not make execute wait: it is not a blocking query.
    let (code, _) = exec("geo-db/execute?index=1000&wait=5m".into()).await?;
    assert_eq!(code, 200);
    let (code, text) = exec("geo-web/explain".into()).await?;
    assert_eq!(code, 200, "{text}");
    let explained: Value = serde_json::from_str(&text)?;
    assert_eq!(explained["Query"]["Service"]["Service"], "web");
    assert_eq!(
        exec("nope/execute".into()).await?,
        (404, "Query not found".into())
    );
    let (code, _) = call(
        &c,
        reqwest::Method::PUT,
        format!("{http}/v1/query/{id}/execute"),
        None,
    )
    .await?;
    assert_eq!(code, 405);

    // DNS: the query's TTL, its filter, the template, SRV, and NXDOMAIN both for
    // a query that does not exist and for one with no instance.
    let (status, answers) = ask(port, "db-primary.query.consul", "A")?;
    assert_eq!(
        (status.as_str(), answers),
        ("NOERROR", vec!["7 IN A 10.0.0.1".to_owned()])
    );
    let (status, answers) = ask(port, "geo-db.query.consul", "A")?;
    assert_eq!(status, "NOERROR");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| a.ends_with("10.0.0.1") || a.ends_with("10.0.0.2")));
    let (status, answers) = ask(port, "_geo-db._tcp.query.consul", "SRV")?;
    assert_eq!(
        (status.as_str(), answers.len()),
        ("NOERROR", 2),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.contains(" SRV 1 1 5432 ")),
        "{answers:?}"
    );
    assert_eq!(ask(port, "nope.query.consul", "A")?.0, "NXDOMAIN");
    assert_eq!(ask(port, "geo-nothing.query.consul", "A")?.0, "NXDOMAIN");

    // Update, then kill -9: acknowledged queries are still there after restart.
    let (code, text) = call(
        &c,
        reqwest::Method::PUT,
        format!("{http}/v1/query/{id}"),
        Some(json!({"Name": "db-any", "Service": {"Service": "db"}})),
    )
    .await?;
    assert_eq!((code, text.as_str()), (200, ""));
    agent.kill9()?;
    let agent = Agent::start_with(&data, json!({}), true)?;
    let http = agent.http.clone();
    let list = |http: String| {
        let c = c.clone();
        async move {
            let (code, text) =
                call(&c, reqwest::Method::GET, format!("{http}/v1/query"), None).await?;
            anyhow::ensure!(code == 200, "list: {code} {text}");
            Ok::<Value, anyhow::Error>(serde_json::from_str(&text)?)
        }
    };
    let mut names: Vec<String> = list(http.clone())
        .await?
        .as_array()
        .context("not a list")?
        .iter()
        .filter_map(|q| q["Name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names, ["db-any", "geo-"]);

    let (code, _) = call(
        &c,
        reqwest::Method::DELETE,
        format!("{http}/v1/query/{id}"),
        None,
    )
    .await?;
    assert_eq!(code, 200);
    let (code, text) = call(
        &c,
        reqwest::Method::DELETE,
        format!("{http}/v1/query/{id}"),
        None,
    )
    .await?;
    assert_eq!(
        (code, text),
        (
            500,
            format!("Cannot modify non-existent prepared query: '{id}'")
        )
    );
    assert_eq!(list(http).await?.as_array().map(Vec::len), Some(1));
    Ok(())
}
