//! ACLs are not enforced yet, so a configuration that turns them on is
//! refused, when the agent starts and when it reloads, instead of being served
//! with every endpoint open; the ACL endpoints say "ACL support disabled".

use crate::support::{bin, cli, free_port, Agent};
use anyhow::{bail, Result};
use serde_json::json;
use std::io::{Read as _, Write as _};
use std::time::Duration;

#[test]
fn a_configuration_with_acls_on_is_refused_at_start_and_on_reload() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.hcl");
    std::fs::write(
        &file,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens { initial_management = \"root\" }\n}\n",
    )?;
    let child = std::process::Command::new(bin())
        .args(["agent", "-dev", "-dns-port=-1", "-grpc-port=-1"])
        .arg(format!("-http-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-config-file={}", file.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // An agent that did not refuse would run until killed: wait for its exit
    // on another thread, for a bounded time.
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(30)) else {
        // Stop it, so that the failure does not leave an agent running.
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
        bail!("the agent started with acl.enabled = true");
    };
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("acl.enabled = true, but Tribune does not enforce ACLs yet"),
        "{stderr}"
    );

    // Allowed on purpose, the same configuration runs, unenforced, and says so.
    let mut open = std::process::Command::new(bin())
        .args(["agent", "-dev", "-dns-port=-1", "-grpc-port=-1"])
        .arg(format!("-http-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-config-file={}", file.display()))
        .env("TRIBUNE_ALLOW_UNENFORCED_ACLS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stdout = open.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let warned = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("ACLs are NOT enforced") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let _ = open.kill();
    let _ = open.wait();
    assert!(warned, "no warning that ACLs are not enforced");

    // Turned on in the file of a running agent: the reload is refused and the
    // agent goes on as it was.
    let data = dir.path().join("data");
    let agent = Agent::start(&data, json!({}))?;
    let config_file = data.with_extension("json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
    config["acl"] = json!({"enabled": true});
    std::fs::write(&config_file, config.to_string())?;
    let (code, _, err) = cli("reload", &agent.http, &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not enforce ACLs yet"), "{err}");
    let (code, _, err) = cli("kv put", &agent.http, &["still/here", "v"])?;
    assert_eq!(code, 0, "{err}");
    // The ACL endpoints answer as Consul's do with ACLs off.
    let (code, _, err) = cli("kv get", &agent.http, &["still/here"])?;
    assert_eq!(code, 0, "{err}");
    let addr = agent.http.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.write_all(b"GET /v1/acl/token/self HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nACL support disabled"), "{reply}");
    Ok(())
}
