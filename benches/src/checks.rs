//! `checks`: the health-check benchmark. One server agent and one client agent
//! joined to it; the client runs `--services` services, each with an HTTP check
//! (`--interval`, `--timeout`) against a target server in this process that
//! answers 200 or 503 per service. It measures the client agent's CPU and RSS
//! over a steady window with every check passing, then flips targets to 503 one
//! at a time and times how long each instance takes to leave
//! `GET /v1/health/service/<name>?passing` on the client agent (a blocking query
//! on the index, so the figure includes the check run, the anti-entropy push,
//! the raft commit on the server and the query's wake-up).
//!
//! Then, with the client agent stopped, the reference measured in the same run:
//! `check-floor` (its own process) sends the same requests at the same rate to
//! the same target from one thread with blocking sockets, once with a fresh
//! connection per run as Consul's checks do and once with kept-alive
//! connections. On loopback the prober is charged for much of the target's
//! kernel work too, so the fresh-connection floor is what any Consul-compatible
//! prober costs on this machine.
//!
//! Targets (issue 5): under 5 % of one core and 50 MiB RSS for the agent, p99
//! under interval + timeout + 500 ms.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::http::HttpConn;
use crate::procs::Proc;
use crate::report::TargetLine;
use crate::sys::{self, free_port, process_cpu_secs};

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches checks [options]

  --services N           services on the client agent, one HTTP check each (default 1000)
  --interval SECS        check interval (default 1)
  --timeout SECS         check timeout (default 1)
  --steady SECS          measured steady-state window, every check passing (default 20)
  --settle SECS          unmeasured time after all checks pass, before the window (default 5)
  --flips N              targets turned unhealthy one after another (default 100)
  --tribune PATH         tribune binary (default: next to this binary)
  --data-root DIR        where the temporary data directories go (default: $TMPDIR or /tmp)
  --json PATH            also write the results as JSON
";

/// The CPU target: cores of the client agent in the steady window.
const MAX_CORES: f64 = 0.05;
/// The memory target: the client agent's RSS, MiB.
const MAX_RSS_MIB: f64 = 50.0;
/// The detection target's slack over interval + timeout.
const DETECT_SLACK: Duration = Duration::from_millis(500);

struct Opts {
    services: usize,
    interval: Duration,
    timeout: Duration,
    steady: Duration,
    settle: Duration,
    flips: usize,
    tribune: PathBuf,
    data_root: PathBuf,
    json: Option<PathBuf>,
}

fn secs(v: &str) -> Result<Duration> {
    Ok(Duration::from_secs_f64(v.parse()?))
}

fn parse(args: &[String]) -> Result<Opts> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut o = Opts {
        services: 1000,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        steady: Duration::from_secs(20),
        settle: Duration::from_secs(5),
        flips: 100,
        tribune: bin_dir.join("tribune"),
        data_root: std::env::temp_dir(),
        json: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--services" => o.services = val()?.parse()?,
            "--interval" => o.interval = secs(val()?)?,
            "--timeout" => o.timeout = secs(val()?)?,
            "--steady" => o.steady = secs(val()?)?,
            "--settle" => o.settle = secs(val()?)?,
            "--flips" => o.flips = val()?.parse()?,
            "--tribune" => o.tribune = val()?.into(),
            "--data-root" => o.data_root = val()?.into(),
            "--json" => o.json = Some(val()?.into()),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    if o.services == 0 || o.flips == 0 {
        bail!("--services and --flips must be positive");
    }
    Ok(o)
}

/// Entry point.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    // This process is the target of 1,000 connections kept by the floor prober.
    raise_open_files_limit();
    let tmp = sys::bench_dir(&opts.data_root)?;
    let _env = sys::Env::announce(tmp.path());
    println!(
        "plan:    {} services with an HTTP check every {} s (timeout {} s) on one client agent; {} s settle + {} s steady window; {} flips to 503",
        opts.services,
        opts.interval.as_secs_f64(),
        opts.timeout.as_secs_f64(),
        opts.settle.as_secs_f64(),
        opts.steady.as_secs_f64(),
        opts.flips
    );
    // One worker thread: the target server and the queries must leave the other
    // core to the agents.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let res = rt.block_on(async {
        tokio::select! {
            r = run_all(&opts, tmp.path()) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    drop(rt);
    let res = res?;
    println!();
    println!("{}", res.table());
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_vec_pretty(&res.json(&opts))?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// What one run measured.
struct Results {
    agent_cores: f64,
    server_cores: f64,
    rss_mib_max: f64,
    rss_mib_end: f64,
    machine_busy: Option<f64>,
    detect_ms: Vec<f64>,
    goal_ms: f64,
    /// `check-floor` with a fresh connection per run (Consul's semantics); `None`
    /// when it could not be measured (the reason was printed).
    floor_close: Option<Floor>,
    /// `check-floor` with kept-alive connections (not Consul's semantics).
    floor_kept: Option<Floor>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Results {
    fn lines(&self) -> Vec<TargetLine> {
        let mut sorted = self.detect_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = percentile(&sorted, 99.0);
        vec![
            TargetLine::below(
                "client agent CPU, steady state (cores)",
                self.agent_cores,
                "cores",
                MAX_CORES,
                format!("< {MAX_CORES}"),
            ),
            TargetLine::below(
                "client agent RSS, max over the steady window",
                self.rss_mib_max,
                "MiB",
                MAX_RSS_MIB,
                format!("< {MAX_RSS_MIB}"),
            ),
            TargetLine::below(
                "unhealthy -> gone from health/service?passing, p99",
                p99,
                "ms",
                self.goal_ms,
                format!("< {:.0}", self.goal_ms),
            ),
            TargetLine::reference("  p50", Some(percentile(&sorted, 50.0)), "ms"),
            TargetLine::reference("  max", sorted.last().copied(), "ms"),
            TargetLine::reference("  min", sorted.first().copied(), "ms"),
            TargetLine::reference(
                "floor: one blocking thread, fresh connection per run (cores)",
                self.floor_close.map(|f| f.cores),
                "cores",
            ),
            TargetLine::reference(
                "  client agent / floor",
                self.floor_close.map(|f| self.agent_cores / f.cores),
                "x",
            ),
            TargetLine::reference(
                "floor with kept-alive connections, not Consul's semantics (cores)",
                self.floor_kept.map(|f| f.cores),
                "cores",
            ),
            TargetLine::reference(
                "server agent CPU, steady state (reference)",
                Some(self.server_cores),
                "cores",
            ),
            TargetLine::reference(
                "client agent RSS at the end of the window (reference)",
                Some(self.rss_mib_end),
                "MiB",
            ),
        ]
    }

    fn table(&self) -> String {
        let mut out = String::from("targets:\n");
        for l in self.lines() {
            out.push_str(&l.line());
            out.push('\n');
        }
        if let Some(b) = self.machine_busy {
            out.push_str(&format!(
                "whole machine busy during the steady window: {:.0}% of all cores\n",
                b * 100.0
            ));
        }
        out.push_str(&format!("flips measured: {}", self.detect_ms.len()));
        out
    }

    fn json(&self, o: &Opts) -> Value {
        json!({
            "benchmark": "checks",
            "services": o.services,
            "interval_s": o.interval.as_secs_f64(),
            "timeout_s": o.timeout.as_secs_f64(),
            "steady_s": o.steady.as_secs_f64(),
            "targets": self.lines().iter().map(TargetLine::json).collect::<Vec<_>>(),
            "detect_ms": self.detect_ms,
            "machine_busy": self.machine_busy,
        })
    }
}

/// A process's resident set, MiB (`VmRSS` in `/proc/<pid>/status`).
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    sys::proc_status_mib(pid, "VmRSS:")
}

/// Whole-machine busy and total jiffies.
fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let nums: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The check target: `GET /svc/<i>` answers 200 while service `i` is healthy,
/// 503 once flipped. Keep-alive is whatever the client asks for (the agent closes
/// every connection, as Consul does).
async fn start_target(services: usize) -> Result<(SocketAddr, Arc<Vec<AtomicBool>>)> {
    let healthy: Arc<Vec<AtomicBool>> =
        Arc::new((0..services).map(|_| AtomicBool::new(true)).collect());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shared = Arc::clone(&healthy);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before accept: the
                // target must outlive it, so wait a moment and go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let healthy = Arc::clone(&shared);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let up = req
                        .uri()
                        .path()
                        .strip_prefix("/svc/")
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| healthy.get(i))
                        .map(|b| b.load(Ordering::Relaxed));
                    async move {
                        let (status, body) = match up {
                            Some(true) => (StatusCode::OK, "ok"),
                            Some(false) => (StatusCode::SERVICE_UNAVAILABLE, "down"),
                            None => (StatusCode::NOT_FOUND, "no such service"),
                        };
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, healthy))
}

/// An agent process and its HTTP address.
struct Agent {
    proc: Proc,
    http: SocketAddr,
    serf_lan: u16,
}

fn start_agent(bin: &Path, dir: &Path, name: &str, role: &[String]) -> Result<Agent> {
    let http = free_port()?;
    let serf_lan = free_port()?;
    let config = json!({
        "ports": {
            "http": http,
            "server": free_port()?,
            "serf_lan": serf_lan,
            "serf_wan": free_port()?,
            "dns": -1,
            "grpc": -1,
        }
    });
    let config_path = dir.join(format!("{name}.json"));
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let mut cmd = Command::new(bin);
    cmd.arg("agent")
        .args(role)
        .arg(format!("-node={name}"))
        .arg(format!(
            "-data-dir={}",
            dir.join(format!("{name}-data")).display()
        ))
        .arg("-bind=127.0.0.1")
        .arg("-client=127.0.0.1")
        .arg(format!("-config-file={}", config_path.display()));
    let proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
    Ok(Agent {
        proc,
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        serf_lan,
    })
}

/// Polls `what` every 100 ms until it returns true, failing after `limit`.
async fn wait_until<F, Fut>(agent: &mut Agent, limit: Duration, what: &str, mut f: F) -> Result<()>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        agent.proc.check_alive()?;
        match f(agent.http).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} not reached within {limit:?} (last error: {:?})\nend of the log:\n{}",
        last,
        agent.proc.log_tail()
    )
}

async fn has_leader(addr: SocketAddr) -> Result<bool> {
    let mut c = HttpConn::connect(addr).await?;
    let body = c.get_ok("/v1/status/leader").await?;
    Ok(!body.is_empty() && body.as_ref() != b"\"\"")
}

fn service_name(i: usize) -> String {
    format!("svc-{i:04}")
}

/// How many of our services' checks the catalog (through the client agent)
/// reports passing.
async fn passing_count(addr: SocketAddr) -> Result<usize> {
    let mut c = HttpConn::connect(addr).await?;
    let body = c.get_ok("/v1/health/state/passing").await?;
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter(|c| {
                    c["ServiceName"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("svc-"))
                })
                .count()
        })
        .unwrap_or(0))
}

/// `GET /v1/health/service/<name>?passing[&index=..]`: the number of instances
/// and the `X-Consul-Index`.
async fn passing_instances(
    c: &mut HttpConn,
    name: &str,
    index: Option<u64>,
) -> Result<(usize, u64)> {
    let path = match index {
        Some(i) => format!("/v1/health/service/{name}?passing&index={i}&wait=30s"),
        None => format!("/v1/health/service/{name}?passing"),
    };
    let (status, headers, body) = c
        .request_with_headers(Method::GET, &path, Bytes::new(), false)
        .await?;
    if status != StatusCode::OK {
        bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    let index = headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no X-Consul-Index")?;
    let v: Value = serde_json::from_slice(&body)?;
    Ok((v.as_array().map_or(0, Vec::len), index))
}

async fn run_all(o: &Opts, dir: &Path) -> Result<Results> {
    let (target, healthy) = start_target(o.services).await?;
    let mut server = start_agent(
        &o.tribune,
        dir,
        "server",
        &["-server".into(), "-bootstrap".into()],
    )?;
    wait_until(
        &mut server,
        Duration::from_secs(60),
        "server leader",
        has_leader,
    )
    .await?;
    let join = format!("-retry-join=127.0.0.1:{}", server.serf_lan);
    let mut client = start_agent(&o.tribune, dir, "client", &[join])?;
    wait_until(
        &mut client,
        Duration::from_secs(60),
        "client joined",
        has_leader,
    )
    .await?;
    println!(
        "agents:  server pid {}, client pid {}; target http://{target}",
        server.proc.pid(),
        client.proc.pid()
    );

    // Register through the client agent's API, as a deployment tool would.
    let t0 = Instant::now();
    let mut c = HttpConn::connect(client.http).await?;
    for i in 0..o.services {
        let body = json!({
            "Name": service_name(i),
            "ID": service_name(i),
            "Port": target.port(),
            "Check": {
                "HTTP": format!("http://{target}/svc/{i}"),
                "Interval": format!("{}ms", o.interval.as_millis()),
                "Timeout": format!("{}ms", o.timeout.as_millis()),
            }
        });
        let (status, resp) = c
            .request(
                Method::PUT,
                "/v1/agent/service/register",
                Bytes::from(body.to_string()),
                true,
            )
            .await?;
        if status != StatusCode::OK {
            bail!(
                "register {}: {status}: {}",
                service_name(i),
                String::from_utf8_lossy(&resp)
            );
        }
    }
    println!(
        "registered {} services in {:.1} s",
        o.services,
        t0.elapsed().as_secs_f64()
    );
    let n = o.services;
    wait_until(
        &mut client,
        Duration::from_secs(120),
        "every check passing",
        |addr| async move { Ok(passing_count(addr).await? == n) },
    )
    .await?;
    println!(
        "all {} checks passing in the catalog {:.1} s after the first registration",
        o.services,
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(o.settle).await;

    // Steady state: nothing but the checks running.
    let pid = client.proc.pid();
    let spid = server.proc.pid();
    let cpu0 = process_cpu_secs(pid).context("client CPU")?;
    let scpu0 = process_cpu_secs(spid).context("server CPU")?;
    let m0 = machine_jiffies();
    let w0 = Instant::now();
    let mut rss_max: f64 = 0.0;
    let mut rss_end = 0.0;
    while w0.elapsed() < o.steady {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(r) = rss_mib(pid) {
            rss_max = rss_max.max(r);
            rss_end = r;
        }
    }
    let wall = w0.elapsed().as_secs_f64();
    let agent_cores = (process_cpu_secs(pid).context("client CPU")? - cpu0) / wall;
    let server_cores = (process_cpu_secs(spid).context("server CPU")? - scpu0) / wall;
    let machine_busy = m0
        .zip(machine_jiffies())
        .and_then(|(a, b)| (b.1 > a.1).then(|| (b.0 - a.0) as f64 / (b.1 - a.1) as f64));
    println!(
        "steady:  client {agent_cores:.4} cores, RSS max {rss_max:.1} MiB; server {server_cores:.4} cores"
    );
    client.proc.check_alive()?;

    // Flips, one at a time, spread over the services.
    let mut detect_ms = Vec::with_capacity(o.flips);
    let stride = (o.services / o.flips).max(1);
    for k in 0..o.flips {
        let i = (k * stride) % o.services;
        let name = service_name(i);
        let (count, mut index) = passing_instances(&mut c, &name, None).await?;
        if count != 1 {
            bail!("{name} has {count} passing instances before its flip");
        }
        healthy[i].store(false, Ordering::Relaxed);
        let flipped = Instant::now();
        loop {
            let (count, next) = passing_instances(&mut c, &name, Some(index)).await?;
            if count == 0 {
                break;
            }
            if flipped.elapsed() > Duration::from_secs(60) {
                bail!("{name} still passing 60 s after its target turned unhealthy");
            }
            // An index that goes backwards restarts the wait (Consul's client rule).
            index = if next < index { 0 } else { next };
        }
        detect_ms.push(flipped.elapsed().as_secs_f64() * 1000.0);
        healthy[i].store(true, Ordering::Relaxed);
    }
    client.proc.check_alive()?;
    server.proc.check_alive()?;

    // The reference: the same requests at the same rate from the cheapest
    // prober there is, with the client agent gone so that only it hits the
    // target.
    client.proc.stop();
    let mut floors = [None, None];
    for (slot, mode) in floors
        .iter_mut()
        .zip([FloorMode::Close, FloorMode::KeepAlive])
    {
        // The agent's figures stand without it: a failed floor is reported, not fatal.
        match run_floor(o, dir, target, mode).await {
            Ok(f) => {
                println!("floor:   {}: {:.4} cores", mode.name(), f.cores);
                *slot = Some(f);
            }
            Err(e) => println!("floor:   {}: not measured: {e:#}", mode.name()),
        }
    }
    let [floor_close, floor_kept] = floors;
    let goal = o.interval + o.timeout + DETECT_SLACK;
    Ok(Results {
        agent_cores,
        server_cores,
        rss_mib_max: rss_max,
        rss_mib_end: rss_end,
        machine_busy,
        detect_ms,
        goal_ms: goal.as_secs_f64() * 1000.0,
        floor_close,
        floor_kept,
    })
}

/// One `check-floor` measurement. (No "machine busy" beside it: `/proc/stat`
/// charges CPU by sampling ticks, and a load that runs 100 µs of every
/// millisecond is nearly invisible there; only per-process times are exact.)
#[derive(Clone, Copy)]
struct Floor {
    /// Its CPU, in cores.
    cores: f64,
}

/// Runs `check-floor` for the steady window's length. Fails when it got anything
/// but 200s or fell behind the rate (a prober that falls behind spends less).
async fn run_floor(o: &Opts, dir: &Path, target: SocketAddr, mode: FloorMode) -> Result<Floor> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("check-floor")
        .arg("--target")
        .arg(target.to_string())
        .arg("--services")
        .arg(o.services.to_string())
        .arg("--interval")
        .arg(o.interval.as_secs_f64().to_string())
        .arg("--secs")
        .arg(o.steady.as_secs_f64().to_string());
    if mode == FloorMode::KeepAlive {
        cmd.arg("--keep-alive");
    }
    let name = mode.name();
    let log = dir.join(format!("{name}.log"));
    let mut proc = Proc::spawn(name, cmd, &log)?;
    proc.wait(o.steady + Duration::from_secs(30)).await?;
    let text = std::fs::read_to_string(&log)?;
    let v: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{name} printed no result:\n{text}"))?;
    if v["failed"].as_u64() != Some(0) {
        bail!("{name}: runs that did not get 200: {v}");
    }
    let wanted = o.services as f64 / o.interval.as_secs_f64();
    let rate = v["rate"].as_f64().unwrap_or(0.0);
    if (rate / wanted - 1.0).abs() > 0.02 {
        bail!("{name}: {rate:.0} runs/s instead of {wanted:.0}");
    }
    let cores = v["cores"]
        .as_f64()
        .with_context(|| format!("{name}: no cores in {v}"))?;
    Ok(Floor { cores })
}

/// Usage of the internal `check-floor` subcommand.
const FLOOR_USAGE: &str = "\
usage: tribune-benches check-floor --target ADDR [--services N] [--interval SECS] [--secs SECS] [--keep-alive]

internal: the cheapest prober of the checks workload, run as its own process so
that its CPU is its own. One thread, blocking sockets, one request every
interval/N to /svc/<i> in turn; prints one JSON line with its CPU in cores.
";

/// How the floor prober talks to the target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FloorMode {
    /// A fresh connection per run, `Connection: close`: Consul's semantics
    /// (its HTTP checks disable keep-alive).
    Close,
    /// One kept-alive connection per check, reused by every run: what giving
    /// up Consul's semantics would buy (not what Tribune does).
    KeepAlive,
}

impl FloorMode {
    fn name(self) -> &'static str {
        match self {
            FloorMode::Close => "floor-close",
            FloorMode::KeepAlive => "floor-keepalive",
        }
    }
}

/// `tribune-benches check-floor`: the reference the client agent's CPU is
/// compared with. The same requests at the same rate against the same target,
/// with nothing else: no scheduler, no runtime, no status tracking, no catalog.
pub fn floor_main(args: &[String]) -> Result<()> {
    let mut target: Option<SocketAddr> = None;
    let (mut services, mut interval, mut window) =
        (1000usize, Duration::from_secs(1), Duration::from_secs(10));
    let mut mode = FloorMode::Close;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--target" => target = Some(val()?.parse()?),
            "--services" => services = val()?.parse()?,
            "--interval" => interval = secs(val()?)?,
            "--secs" => window = secs(val()?)?,
            "--keep-alive" => mode = FloorMode::KeepAlive,
            _ => bail!("unknown option {a:?}\n{FLOOR_USAGE}"),
        }
    }
    let target = target.with_context(|| format!("--target is required\n{FLOOR_USAGE}"))?;
    if services == 0 {
        bail!("--services must be positive");
    }
    let gap = interval / u32::try_from(services)?;
    raise_open_files_limit();
    let mut conns: Vec<Option<std::net::TcpStream>> = (0..services).map(|_| None).collect();
    let mut buf = vec![0u8; 4096];
    if mode == FloorMode::KeepAlive {
        // Opened before the clock starts: the figure is for kept connections only.
        for (i, conn) in conns.iter_mut().enumerate() {
            floor_probe_kept(conn, target, i, &mut buf)
                .with_context(|| format!("opening kept connection {i}"))?;
        }
    }
    let me = std::process::id();
    let cpu0 = process_cpu_secs(me).context("own CPU")?;
    let start = Instant::now();
    let (mut next, mut runs, mut failed) = (start, 0u64, 0u64);
    while start.elapsed() < window {
        next += gap;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let i = (runs % services as u64) as usize;
        let ok = match mode {
            FloorMode::Close => floor_probe_close(target, i, &mut buf),
            FloorMode::KeepAlive => floor_probe_kept(&mut conns[i], target, i, &mut buf),
        };
        runs += 1;
        failed += u64::from(!ok.unwrap_or(false));
    }
    let wall = start.elapsed().as_secs_f64();
    let cores = (process_cpu_secs(me).context("own CPU")? - cpu0) / wall;
    println!(
        "{}",
        json!({ "cores": cores, "runs": runs, "failed": failed, "rate": runs as f64 / wall })
    );
    Ok(())
}

/// Raises this process's open-file limit to its hard limit: the kept-alive floor
/// holds a socket per check, and the target one per kept connection, which a
/// default soft limit of 1,024 leaves little room for. Best effort.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// The request the agent sends for a check (`GET`, Consul's user agent and
/// `Accept`), plus `Connection: close` when each run has its own connection.
fn floor_request(target: SocketAddr, i: usize, close: bool) -> String {
    format!(
        "GET /svc/{i} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: Consul Health Check\r\nAccept: text/plain, text/*, */*\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
}

/// One run on a fresh connection: connect, send, read to the target's close.
/// True when the answer was 200.
fn floor_probe_close(target: SocketAddr, i: usize, buf: &mut [u8]) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(target)?;
    s.set_nodelay(true)?;
    s.write_all(floor_request(target, i, true).as_bytes())?;
    // Only the status line matters; past the buffer's end, reads overwrite its
    // last byte.
    let last = buf.len() - 1;
    let mut got = 0;
    loop {
        let n = s.read(&mut buf[got.min(last)..])?;
        if n == 0 {
            break;
        }
        got = (got + n).min(last);
    }
    Ok(buf[..got].starts_with(b"HTTP/1.1 200"))
}

/// One run on check `i`'s kept connection (opened on first use, dropped on an
/// error): send, read the head and a `Content-Length` body.
fn floor_probe_kept(
    conn: &mut Option<std::net::TcpStream>,
    target: SocketAddr,
    i: usize,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let s = match conn {
        Some(s) => s,
        None => {
            let s = std::net::TcpStream::connect(target)?;
            s.set_nodelay(true)?;
            conn.insert(s)
        }
    };
    let res = (|| {
        s.write_all(floor_request(target, i, false).as_bytes())?;
        let mut got = 0;
        loop {
            let n = s.read(&mut buf[got..])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
            let head = &buf[..got];
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got >= end + 4 + len {
                    return Ok(head.starts_with(b"HTTP/1.1 200"));
                }
            }
            if got == buf.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
        }
    })();
    if res.is_err() {
        *conn = None;
    }
    res
}
