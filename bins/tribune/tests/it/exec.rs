//! `tribune exec` against real agents: the job reaches a client agent through
//! gossip, runs there, and its output and exit code come back through the KV
//! store; a server left at Consul's default (`disable_remote_exec`) ignores it;
//! the filters select nodes; and nothing is left in the KV store afterwards.

use crate::gossip::{eventually, member_status};
use crate::support::{cli, free_port, Agent};
use anyhow::Result;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_on_agents_that_allow_it_and_reports_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let serf = free_port();
    let server = Agent::start(&dir.path().join("n1"), json!({"ports": {"serf_lan": serf}}))?;
    let join = format!("-retry-join=127.0.0.1:{serf}");
    let _client = Agent::start_opts(
        &dir.path().join("c1"),
        json!({"retry_interval": "200ms", "disable_remote_exec": false}),
        &["-node=c1", &join],
    )?;
    // The event goes to the members the server knows.
    let c = reqwest::Client::new();
    eventually(Duration::from_secs(60), "c1 alive on n1", || {
        let (c, http) = (c.clone(), server.http.clone());
        async move { Ok(member_status(&c, &http, "c1").await? == Some(1)) }
    })
    .await?;

    let (code, out, err) = cli("exec", &server.http, &["-wait=3s", "echo hello; exit 3"])?;
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("    c1: hello\n"), "{out}");
    assert!(out.contains("==> c1: finished with exit code 3\n"), "{out}");
    // n1 (disable_remote_exec by default) neither acknowledged nor ran it.
    assert!(
        out.ends_with("1 / 1 node(s) completed / acknowledged\n"),
        "{out}"
    );
    assert!(!out.contains("n1:"), "{out}");

    // Arguments without a shell, and a node filter that selects nobody.
    let (code, out, err) = cli("exec", &server.http, &["-wait=3s", "-shell=false", "true"])?;
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "==> c1: finished with exit code 0\n1 / 1 node(s) completed / acknowledged\n"
        ),
        "{err}"
    );
    let (code, out, _) = cli("exec", &server.http, &["-wait=500ms", "-node=^n", "true"])?;
    assert_eq!(
        (code, out.as_str()),
        (0, "0 / 0 node(s) completed / acknowledged\n")
    );

    // Nothing is left behind.
    let keys = c
        .get(format!("{}/v1/kv/_rexec?keys", server.http))
        .send()
        .await?;
    assert_eq!(keys.status(), 404);
    Ok(())
}
