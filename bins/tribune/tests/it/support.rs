//! Starting `tribune agent` processes on free loopback ports and waiting for them.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `PUT /v1/catalog/register` with `body`; an error unless it succeeds.
pub async fn register(c: &reqwest::Client, http: &str, body: &serde_json::Value) -> Result<()> {
    let resp = c
        .put(format!("{http}/v1/catalog/register"))
        .json(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("register: {}", resp.text().await?);
    }
    Ok(())
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tribune"))
}

/// `tribune <command> -http-addr=<http> <args>`: (exit code, stdout, stderr).
/// `command` may name a subcommand too (`"intention check"`).
pub fn cli(command: &str, http: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin())
        .args(command.split_whitespace())
        .arg(format!("-http-addr={http}"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A port on 127.0.0.1 free for both TCP and UDP (gossip binds both), checked and
/// released like sdk/freeport's. Chosen below the kernel's ephemeral range
/// (32768 and up), so the outgoing connections of tests running in parallel
/// cannot take it between this check and the agent's bind (port 0 would hand out
/// exactly those ports), and never handed out twice by this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..10_000 {
        // xorshift: spread over the range without a dependency.
        let mut x = STATE.load(Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        STATE.store(x, Ordering::SeqCst);
        let port = 20_000 + (x % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.contains(&port) {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000")
}

/// A running agent process.
pub struct Agent {
    pub child: Child,
    pub http: String,
    /// The DNS port (UDP and TCP), when started with DNS.
    pub dns: Option<u16>,
    lines: mpsc::Receiver<String>,
    /// Lines printed before the HTTP API was up (start-up logs a test may look for).
    early: Vec<String>,
}

impl Agent {
    /// Starts a durable single server on `data_dir` with extra JSON config, and waits
    /// until it reports its listeners.
    pub fn start(data_dir: &Path, extra: serde_json::Value) -> Result<Agent> {
        Self::start_with(data_dir, extra, false)
    }

    /// [`Agent::start`], with the DNS interface on a free port when `dns` is set.
    pub fn start_with(data_dir: &Path, extra: serde_json::Value, dns: bool) -> Result<Agent> {
        Self::launch(data_dir, extra, dns, &["-server", "-bootstrap", "-node=n1"])
    }

    /// An agent with these role flags (`-server -bootstrap -node=…`, or a client's
    /// `-node=… -retry-join=…`); `extra`'s `ports` entries override the free ports.
    pub fn start_opts(data_dir: &Path, extra: serde_json::Value, role: &[&str]) -> Result<Agent> {
        Self::launch(data_dir, extra, false, role)
    }

    fn launch(
        data_dir: &Path,
        extra: serde_json::Value,
        dns: bool,
        role: &[&str],
    ) -> Result<Agent> {
        let http = free_port();
        let dns = dns.then(free_port);
        let mut cfg = serde_json::json!({
            "ports": {"http": http, "server": free_port(),
                      "dns": dns.map_or(-1, i32::from), "grpc": -1,
                      "serf_lan": free_port(), "serf_wan": free_port()},
            "performance": {"raft_multiplier": 1},
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                // `ports` merges key by key, so a test can pin one (e.g. serf_lan).
                match (c.get_mut(k).and_then(|x| x.as_object_mut()), v.as_object()) {
                    (Some(into), Some(from)) if k == "ports" => {
                        for (pk, pv) in from {
                            into.insert(pk.clone(), pv.clone());
                        }
                    }
                    _ => {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        std::fs::create_dir_all(data_dir)?;
        let cfg_path = data_dir.with_extension("json");
        std::fs::write(&cfg_path, cfg.to_string())?;
        let mut child = Command::new(bin())
            .arg("agent")
            .args(role)
            .args(["-bind=127.0.0.1", "-client=127.0.0.1"])
            .arg(format!("-data-dir={}", data_dir.display()))
            .arg(format!("-config-file={}", cfg_path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning tribune")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            http: format!("http://127.0.0.1:{http}"),
            dns,
            lines,
            early: Vec::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match agent.lines.recv_timeout(left) {
                Ok(line) if line.contains("HTTP API:") => break,
                Ok(line) => agent.early.push(line),
                Err(_) => bail!("agent did not print \"HTTP API:\" within 30s"),
            }
        }
        Ok(agent)
    }

    /// Waits for an output line containing `needle`.
    /// Lines printed during start-up count too (each is matched once).
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        if let Some(i) = self.early.iter().position(|l| l.contains(needle)) {
            return Ok(self.early.remove(i));
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!("agent did not print {needle:?} within {timeout:?}"),
            }
        }
    }

    /// `kill -9`.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGINT and wait for a clean exit.
    pub fn interrupt(mut self) -> Result<std::process::ExitStatus> {
        // `kill -INT` rather than libc: the workspace forbids unsafe code.
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -INT failed");
        }
        Ok(self.child.wait()?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
