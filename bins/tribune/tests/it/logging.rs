//! The agent's log feed: a monitor attached at `loglevel=debug` gets our crates'
//! debug lines from an agent whose console logs at info (those callsites are
//! only enabled while a monitor is attached, so this is what keeps that honest),
//! and `tribune monitor` prints them until the agent goes away.

use crate::support::{free_port, Agent};
use anyhow::{bail, Result};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_monitor_sees_debug_lines_of_an_agent_logging_at_info() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("n1"), json!({}))?;
    let c = reqwest::Client::new();
    let mut monitor = c
        .get(format!("{}/v1/agent/monitor?loglevel=debug", agent.http))
        .send()
        .await?;
    assert_eq!(monitor.status(), 200);
    // Receiving a user event logs at debug. The monitor starts listening when its
    // handler runs, which the response head does not prove, so fire again each
    // time nothing has arrived for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let r = c
            .put(format!("{}/v1/event/fire/probe", agent.http))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let wait = Instant::now() + Duration::from_millis(500);
        while let Ok(chunk) = tokio::time::timeout_at(wait.into(), monitor.chunk()).await {
            let Some(bytes) = chunk? else {
                bail!("the monitor stream ended; got:\n{seen}");
            };
            seen.push_str(&String::from_utf8_lossy(&bytes));
            if seen
                .lines()
                .any(|l| l.contains("[DEBUG]") && l.contains("user event received"))
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no debug line on the monitor; got:\n{seen}");
        }
    }
}

/// `tribune monitor -log-level=debug` prints the same lines, and says so and
/// exits 1 when the agent goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_command_streams_until_the_agent_goes_away() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&dir.path().join("n1"), json!({}))?;
    let mut child = tokio::process::Command::new(crate::support::bin())
        .args([
            "monitor",
            &format!("-http-addr={}", agent.http),
            "-log-level=debug",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    'found: loop {
        c.put(format!("{}/v1/event/fire/probe", agent.http))
            .send()
            .await?;
        // As above: fire again whenever nothing arrived for a while.
        let wait = Instant::now() + Duration::from_millis(500);
        while let Ok(line) = tokio::time::timeout_at(wait.into(), lines.next_line()).await {
            let Some(line) = line? else {
                bail!("monitor ended early");
            };
            if line.contains("[DEBUG]") && line.contains("user event received") {
                break 'found;
            }
        }
        if Instant::now() > deadline {
            bail!("no debug line from `tribune monitor`");
        }
    }
    drop(agent);
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await? {
        rest.push(line);
    }
    let status = child.wait().await?;
    assert_eq!(status.code(), Some(1));
    assert!(
        rest.join("\n").ends_with(
            "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed."
        ),
        "{rest:?}"
    );
    Ok(())
}

/// With `log_file`, what the console logs also goes to `consul.log` in that
/// directory (rotation and pruning are tested on manual time in `logfile`).
#[test]
fn log_file_gets_what_the_console_logs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs)?;
    let agent = Agent::start(
        &dir.path().join("n1"),
        json!({
            "log_file": format!("{}/", logs.display()),
            "log_rotate_bytes": 100_000_000,
            "log_rotate_max_files": 1,
        }),
    )?;
    // Logged before the reload is answered.
    let (code, _, err) = crate::support::cli("reload", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = std::fs::read_dir(&logs)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    let [name] = names.as_slice() else {
        bail!("one file expected: {names:?}");
    };
    assert_eq!(name, "consul.log");
    let text = std::fs::read_to_string(logs.join(name))?;
    assert!(text.contains("configuration reloaded"), "{text}");

    // A directory that does not exist stops the agent before it starts.
    let missing = format!("-log-file={}/missing/", logs.display());
    let err = refused_at_start(&[&missing])?;
    assert!(err.contains("Failed to setup logging"), "{err}");
    Ok(())
}

/// A syslog facility Consul does not know stops the agent before it starts,
/// whether or not a syslog daemon runs.
#[test]
fn an_unknown_syslog_facility_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("syslog.json");
    std::fs::write(&config, r#"{"syslog_facility": "LOCAL9"}"#)?;
    let err = refused_at_start(&["-syslog", &format!("-config-file={}", config.display())])?;
    assert!(err.contains("invalid syslog facility \"LOCAL9\""), "{err}");
    Ok(())
}

/// Runs `tribune agent -dev` with `args` (on ports of its own, should it get
/// that far) and returns its standard error once it exits with 1.
fn refused_at_start(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(crate::support::bin())
        .args([
            "agent",
            "-dev",
            "-http-port=0",
            "-dns-port=-1",
            "-grpc-port=-1",
        ])
        .args(
            [
                ("serf-lan", free_port()),
                ("serf-wan", free_port()),
                ("server", free_port()),
            ]
            .map(|(flag, port)| format!("-{flag}-port={port}")),
        )
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}
