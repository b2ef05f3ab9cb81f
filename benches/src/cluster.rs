//! `cluster`: three Tribune servers next to a three-member etcd cluster, each
//! member on its own loopback address (127.0.0.1–3) with its own data directory
//! on the same disk, in the same run.
//!
//! Both clusters stay up side by side and every workload alternates between
//! them for `--rounds` rounds (default 3); the ratios are medians of the
//! per-round ratios, because this machine's throughput drifts by tens of percent
//! over minutes. Before each workload the run waits until both clusters are idle
//! (`--no-settle` skips that), and the table shows what the other, idle cluster
//! used meanwhile ("idle sys"), so a run can tell drift from interference.
//!
//! - Writes: 256 B PUTs with 1, 64 and 512 closed-loop clients, Tribune over
//!   Consul's HTTP API, etcd over its gRPC `KV/Put` on one shared connection (its
//!   best case, see `etcd`). Both are sent to the leader, so neither pays a
//!   follower's forwarding hop.
//! - Consistent reads: `GET /v1/kv/<key>?consistent` (ReadIndex) against etcd's
//!   linearizable `Range`, on the leader, with the same client counts.
//! - Failover (Tribune): `raft_multiplier = 1`; a writer per surviving server
//!   keeps writing; the leader is killed with SIGKILL, and the time from the
//!   kill to the first acknowledged write that was *sent after* the kill is
//!   recorded. The killed server is restarted and the cluster waits until all
//!   three agree on a leader before the next kill (`--kills`, default 20).
//!   Autopilot's dead-server cleanup is turned off first, so a killed server
//!   stays a voter and simply rejoins, as it would after a crash in production.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::Method;

use crate::driver::{Measured, Plan};
use crate::etcd::{self, Api, KvClient};
use crate::http::HttpConn;
use crate::procs::Proc;
use crate::sys::{self, Disk, Sampler};
use crate::tribune;

pub const USAGE: &str = "\
tribune-benches cluster [options]
  --warmup SECS       warm-up per workload (default 2)
  --secs SECS         measured seconds per workload (default 5)
  --clients LIST      client counts (default 1,64,512)
  --kills N           leader kills for the failover figure (default 20; 0 skips)
  --rounds N          rounds of every workload, alternating the systems (default 3)
  --only LIST         comma-separated subset of tribune,etcd,failover
  --tribune PATH      tribune binary (default: next to this binary)
  --etcd PATH         etcd binary (default: /usr/bin/etcd)
  --data-root DIR     where the data directories go (default: the system temp dir)
  --no-settle         start each workload at once instead of first waiting (up to
                      20 s) until both clusters are idle
";

struct Opts {
    plan: Plan,
    clients: Vec<usize>,
    kills: usize,
    rounds: usize,
    only: Option<Vec<String>>,
    tribune: PathBuf,
    etcd: PathBuf,
    data_root: PathBuf,
    settle: bool,
}

impl Opts {
    fn wants(&self, what: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == what))
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        plan: Plan {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(5),
        },
        clients: vec![1, 64, 512],
        kills: 20,
        rounds: 3,
        only: None,
        tribune: std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("tribune"),
        etcd: PathBuf::from("/usr/bin/etcd"),
        data_root: std::env::temp_dir(),
        settle: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--warmup" => o.plan.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--secs" => o.plan.measure = Duration::from_secs_f64(value()?.parse()?),
            "--clients" => {
                o.clients = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--kills" => o.kills = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse::<usize>()?.max(1),
            "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--tribune" => o.tribune = value()?.into(),
            "--etcd" => o.etcd = value()?.into(),
            "--data-root" => o.data_root = value()?.into(),
            "--no-settle" => o.settle = false,
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Loopback address of member `i` (0-based).
fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8))
}

const HTTP_PORT: u16 = 18500;
const RPC_PORT: u16 = 18300;
const SERF_PORT: u16 = 18301;

/// One Tribune server and how to start it again.
struct Server {
    proc: Option<Proc>,
    http: SocketAddr,
    rpc: String,
    args: Vec<String>,
    log: PathBuf,
}

struct TribuneCluster {
    bin: PathBuf,
    servers: Vec<Server>,
}

impl TribuneCluster {
    async fn start(bin: &Path, dir: &Path, n: usize) -> Result<TribuneCluster> {
        let mut servers = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("s{}", i + 1));
            std::fs::create_dir_all(&data)?;
            let config = serde_json::json!({
                "ports": {"http": HTTP_PORT, "server": RPC_PORT, "serf_lan": SERF_PORT,
                          "serf_wan": SERF_PORT + 1, "dns": -1, "grpc": -1},
                "performance": {"raft_multiplier": 1},
                // 512 load-generator connections from one address (Consul's
                // default limit per client is 200).
                "limits": {"http_max_conns_per_client": 4096},
            });
            let config_path = data.with_extension("json");
            std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
            let args = vec![
                "agent".to_owned(),
                "-server".to_owned(),
                format!("-bootstrap-expect={n}"),
                format!("-node=s{}", i + 1),
                format!("-bind={}", ip(i)),
                format!("-client={}", ip(i)),
                format!("-data-dir={}", data.display()),
                format!("-config-file={}", config_path.display()),
                format!("-retry-join={}:{SERF_PORT}", ip(0)),
                format!("-retry-join={}:{SERF_PORT}", ip(1)),
                "-retry-interval=200ms".to_owned(),
            ];
            let mut s = Server {
                proc: None,
                http: SocketAddr::new(ip(i), HTTP_PORT),
                rpc: format!("{}:{RPC_PORT}", ip(i)),
                args,
                log: dir.join(format!("s{}.log", i + 1)),
            };
            s.proc = Some(spawn(bin, &s)?);
            servers.push(s);
        }
        let c = TribuneCluster {
            bin: bin.to_path_buf(),
            servers,
        };
        c.wait_agreed(Duration::from_secs(60)).await?;
        Ok(c)
    }

    /// Says so if leadership moved away from `leader` (the workload then ran
    /// partly through a follower's forwarding, or saw the election's errors).
    async fn note_leader_change(&self, leader: usize) {
        match self.wait_agreed(Duration::from_secs(30)).await {
            Ok(now) if now == leader => {}
            Ok(now) => println!(
                "  note: leadership moved from s{} to s{} during the run",
                leader + 1,
                now + 1
            ),
            Err(e) => println!("  note: {e:#}"),
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .filter_map(|s| s.proc.as_ref().map(Proc::pid))
            .collect()
    }

    /// Waits until every running server names the same leader and all voters;
    /// returns the leader's index.
    async fn wait_agreed(&self, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(i)) = self.agreed().await {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("tribune servers did not agree on a leader within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agreed(&self) -> Result<Option<usize>> {
        let mut leader = None;
        for s in self.servers.iter().filter(|s| s.proc.is_some()) {
            let mut c = HttpConn::connect(s.http).await?;
            let l: String = serde_json::from_slice(&c.get_ok("/v1/status/leader").await?)?;
            let peers: Vec<String> = serde_json::from_slice(&c.get_ok("/v1/status/peers").await?)?;
            if l.is_empty() || peers.len() != self.servers.len() {
                return Ok(None);
            }
            if leader.get_or_insert(l.clone()) != &l {
                return Ok(None);
            }
        }
        Ok(leader.and_then(|l| self.servers.iter().position(|s| s.rpc == l)))
    }
}

fn spawn(bin: &Path, s: &Server) -> Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args(&s.args);
    Proc::spawn("tribune", cmd, &s.log)
}

/// Three etcd members on 127.0.0.1–3.
struct EtcdCluster {
    procs: Vec<Proc>,
    clients: Vec<SocketAddr>,
}

impl EtcdCluster {
    async fn start(bin: &Path, dir: &Path, n: usize) -> Result<EtcdCluster> {
        let peers: Vec<String> = (0..n)
            .map(|i| format!("e{}=http://{}:2380", i + 1, ip(i)))
            .collect();
        let mut procs = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n {
            let client_url = format!("http://{}:2379", ip(i));
            let peer_url = format!("http://{}:2380", ip(i));
            let cmd = etcd::member_command(
                bin,
                &format!("e{}", i + 1),
                &dir.join(format!("e{}", i + 1)),
                &client_url,
                &peer_url,
                &peers.join(","),
            );
            procs.push(Proc::spawn(
                "etcd",
                cmd,
                &dir.join(format!("e{}.log", i + 1)),
            )?);
            clients.push(SocketAddr::new(ip(i), 2379));
        }
        let e = EtcdCluster { procs, clients };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async {
                let mut c = KvClient::connect(e.clients[0]).await?;
                c.put(b"bench/ready".to_vec(), b"1".to_vec()).await?;
                anyhow::Ok(())
            };
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd cluster not ready after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(e)
    }

    /// The leader's client address, from each member's maintenance status.
    async fn leader(&self) -> Result<SocketAddr> {
        for addr in &self.clients {
            let mut c = HttpConn::connect(*addr).await?;
            let (_, body) = c
                .request(Method::POST, "/v3/maintenance/status", "{}".into(), true)
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let me = v["header"]["member_id"].as_str().unwrap_or_default();
            if !me.is_empty() && v["leader"].as_str() == Some(me) {
                return Ok(*addr);
            }
        }
        bail!("no etcd member says it leads")
    }
}

/// A workload result with what it was.
struct Row {
    round: usize,
    system: &'static str,
    workload: &'static str,
    clients: usize,
    m: Measured,
    /// CPU of the other cluster, idle in principle, over the workload (warm-up
    /// included), in cores.
    idle_cores: Option<f64>,
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let tmp = sys::bench_dir(&opts.data_root)?;
    let env = sys::Env::announce(tmp.path());
    println!(
        "plan:    {} s warm-up + {} s measured per workload; clients {:?}; {} leader kills",
        opts.plan.warmup.as_secs_f64(),
        opts.plan.measure.as_secs_f64(),
        opts.clients,
        opts.kills
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run_all(&opts, tmp.path(), &env.disk) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    drop(rt);
    let (rows, failover) = result?;
    println!();
    println!(
        "{:>5} {:<8} {:<16} {:>7} {:>9} {:>8} {:>8} {:>6} {:>7} {:>7} {:>8}",
        "round",
        "system",
        "workload",
        "clients",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "srv cpu",
        "cli cpu",
        "idle sys"
    );
    let cores = |c: Option<f64>| c.map_or("-".to_owned(), |c| format!("{c:.2}"));
    for r in &rows {
        println!(
            "{:>5} {:<8} {:<16} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>6} {:>7} {:>7} {:>8}",
            r.round,
            r.system,
            r.workload,
            r.clients,
            r.m.ops_per_sec(),
            r.m.p50_us / 1e3,
            r.m.p99_us / 1e3,
            r.m.errors,
            cores(r.m.usage.server_cores),
            cores(r.m.usage.client_cores),
            cores(r.idle_cores),
        );
    }
    println!();
    for (workload, target) in [(PUT, 2.0), (GET, 2.0)] {
        for &n in &opts.clients {
            let find = |system: &str, round: usize| {
                rows.iter()
                    .find(|r| {
                        r.round == round
                            && r.system == system
                            && r.workload == workload
                            && r.clients == n
                    })
                    .map(|r| r.m.ops_per_sec())
            };
            // The median of the per-round ratios: each round's pair ran minutes
            // apart at most, under the same drift.
            let ratios: Vec<f64> = (1..=opts.rounds)
                .filter_map(|round| Some(find("tribune", round)? / find("etcd", round)?.max(1e-9)))
                .collect();
            let each = ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(ratio) = crate::report::median(ratios) {
                let judged = n >= 64 || workload != PUT;
                println!(
                    "{workload} c={n}: tribune/etcd median {ratio:.2} (rounds: {each}){}",
                    if judged {
                        format!(
                            " (target >= {target}: {})",
                            if ratio >= target { "met" } else { "NOT met" }
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    for r in &rows {
        if let Some(e) = &r.m.first_error {
            println!(
                "note: {} {} c={}: first error: {e}",
                r.system, r.workload, r.clients
            );
        }
    }
    if !failover.is_empty() {
        let mut ms: Vec<f64> = failover.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "failover over {} kills: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (targets p50 <= 1200, p99 <= 2500)",
            ms.len(),
            pct(0.5),
            pct(0.99),
            ms[ms.len() - 1]
        );
        println!(
            "  each: {}",
            ms.iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    drop(tmp);
    Ok(())
}

async fn run_all(o: &Opts, tmp: &Path, disk: &Disk) -> Result<(Vec<Row>, Vec<Duration>)> {
    let value = crate::kv::value();
    let mut rows = Vec::new();
    let mut tribune = None;
    if o.wants("tribune") || o.wants("failover") {
        if !o.tribune.exists() {
            bail!(
                "{} not found (cargo build --release -p tribune)",
                o.tribune.display()
            );
        }
        let dir = tmp.join("tribune");
        std::fs::create_dir_all(&dir)?;
        println!("tribune: starting 3 servers");
        tribune = Some(TribuneCluster::start(&o.tribune, &dir, 3).await?);
    }
    let mut etcd = None;
    if o.wants("etcd") {
        crate::kv::ensure_etcd(&o.etcd)?;
        let dir = tmp.join("etcd");
        std::fs::create_dir_all(&dir)?;
        println!("etcd: starting 3 members");
        etcd = Some(EtcdCluster::start(&o.etcd, &dir, 3).await?);
    }
    // Both clusters run side by side (an idle one costs a few hundredths of a
    // core) and the workloads alternate between them, round after round, so both
    // see this machine's drift alike; the ratios are medians over the rounds.
    let t = match (&tribune, o.wants("tribune")) {
        (Some(c), true) => {
            let leader = c.wait_agreed(Duration::from_secs(30)).await?;
            tribune::populate_at(c.servers[leader].http, &value).await?;
            Some((c, Sampler::new(c.pids(), disk.clone())))
        }
        _ => None,
    };
    let e = match &etcd {
        Some(e) => {
            let addr = e.leader().await?;
            etcd::populate_at(addr, &value).await?;
            let pids = e.procs.iter().map(Proc::pid).collect();
            Some((addr, Sampler::new(pids, disk.clone())))
        }
        None => None,
    };
    let tribune_sampler = t.as_ref().map(|(_, s)| s);
    let etcd_sampler = e.as_ref().map(|(_, s)| s);
    for round in 1..=o.rounds {
        for workload in [PUT, GET] {
            for &n in &o.clients {
                if let Some((c, sampler)) = &t {
                    if o.settle {
                        settle([tribune_sampler, etcd_sampler]).await;
                    }
                    let idle = etcd_sampler.map(|s| (s, s.sample()));
                    // Whichever server leads now: an election in an earlier
                    // workload must not turn every later one into forwarding.
                    let leader = c.wait_agreed(Duration::from_secs(30)).await?;
                    let addr = c.servers[leader].http;
                    let m = if workload == PUT {
                        tribune::put_workload(addr, n, value.clone(), o.plan, sampler).await?
                    } else {
                        tribune::get_workload_with(addr, n, "?consistent", o.plan, sampler).await?
                    };
                    c.note_leader_change(leader).await;
                    println!(
                        "  round {round}: tribune {workload} c={n}: {:.0} ops/s",
                        m.ops_per_sec()
                    );
                    rows.push(Row {
                        round,
                        system: "tribune",
                        workload,
                        clients: n,
                        m,
                        idle_cores: idle.and_then(|(s, a)| s.usage(&a, &s.sample()).server_cores),
                    });
                }
                if let Some((addr, sampler)) = &e {
                    if o.settle {
                        settle([tribune_sampler, etcd_sampler]).await;
                    }
                    let idle = tribune_sampler.map(|s| (s, s.sample()));
                    let m = if workload == PUT {
                        etcd::put_workload(*addr, Api::Grpc, n, 1, value.clone(), o.plan, sampler)
                            .await?
                    } else {
                        etcd::get_workload(*addr, Api::Grpc, n, 1, false, o.plan, sampler).await?
                    };
                    println!(
                        "  round {round}: etcd {workload} c={n}: {:.0} ops/s",
                        m.ops_per_sec()
                    );
                    rows.push(Row {
                        round,
                        system: "etcd",
                        workload,
                        clients: n,
                        m,
                        idle_cores: idle.and_then(|(s, a)| s.usage(&a, &s.sample()).server_cores),
                    });
                }
            }
        }
    }
    if let Some(e) = etcd {
        for p in e.procs {
            p.stop();
        }
    }
    let mut failover = Vec::new();
    if let Some(mut c) = tribune {
        if o.wants("failover") && o.kills > 0 {
            failover = kill_leaders(&mut c, o.kills).await?;
        }
        for s in &mut c.servers {
            if let Some(p) = s.proc.take() {
                p.stop();
            }
        }
    }
    Ok((rows, failover))
}

/// Waits until the servers of both clusters are idle (under [`IDLE_CORES`]
/// together over half a second), for at most [`SETTLE_MAX`].
///
/// Why: both clusters stay up, and the one just measured goes on working after
/// its workload ends (etcd's backend commits and garbage collection, Tribune's
/// background snapshots), inside the next workload's window, which belongs to
/// the other system. Waiting gives each workload the same quiet start.
async fn settle(samplers: [Option<&Sampler>; 2]) {
    let started = Instant::now();
    while started.elapsed() < SETTLE_MAX {
        let before: Vec<_> = samplers.iter().flatten().map(|s| s.sample()).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy: f64 = samplers
            .iter()
            .flatten()
            .zip(&before)
            .filter_map(|(s, a)| s.usage(a, &s.sample()).server_cores)
            .sum();
        if busy < IDLE_CORES {
            return;
        }
    }
    println!("  (the clusters were still busy after {SETTLE_MAX:?}; measuring anyway)");
}

/// CPU, in cores, below which six idle servers count as settled: their
/// heartbeats and timers take about 0.02–0.04.
const IDLE_CORES: f64 = 0.08;
const SETTLE_MAX: Duration = Duration::from_secs(20);

const PUT: &str = "PUT 256 B";
const GET: &str = "GET ?consistent";

/// Kills the leader `kills` times under a steady write load; returns, per kill,
/// the time from the kill to the first acknowledged write sent after it.
async fn kill_leaders(c: &mut TribuneCluster, kills: usize) -> Result<Vec<Duration>> {
    // Killed servers must stay voters and rejoin (see the module docs).
    let leader = c.wait_agreed(Duration::from_secs(30)).await?;
    let mut conn = HttpConn::connect(c.servers[leader].http).await?;
    let body = r#"{"CleanupDeadServers": false, "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250, "MinQuorum": 0, "ServerStabilizationTime": "10s"}"#;
    let (status, _) = conn
        .request(
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            body.into(),
            true,
        )
        .await?;
    if !status.is_success() {
        bail!("setting the autopilot configuration: {status}");
    }
    let mut out = Vec::new();
    for k in 0..kills {
        let leader = c.wait_agreed(Duration::from_secs(60)).await?;
        // Writers on the other servers (followers forward to whichever leads):
        // (sent, acknowledged) of every acknowledged write.
        let acks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = tokio::task::JoinSet::new();
        for (i, s) in c.servers.iter().enumerate().filter(|(i, _)| *i != leader) {
            let (addr, acks, stop) = (s.http, acks.clone(), stop.clone());
            writers.spawn(async move {
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seq += 1;
                    let sent = Instant::now();
                    let put = async {
                        let mut conn = HttpConn::connect(addr).await?;
                        tribune::put(&mut conn, &format!("failover/{k}/{i}/{seq}"), "x".into())
                            .await
                    };
                    if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(10), put).await {
                        acks.lock().unwrap().push((sent, Instant::now()));
                    }
                }
            });
        }
        let killed_at = Instant::now();
        if let Some(p) = c.servers[leader].proc.take() {
            // Proc::stop is SIGKILL.
            p.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            let first_after = acks
                .lock()
                .unwrap()
                .iter()
                .filter(|(sent, _)| *sent >= killed_at)
                .map(|(_, acked)| *acked)
                .min();
            if let Some(t) = first_after {
                break t;
            }
            if Instant::now() > deadline {
                bail!("no write acknowledged within 30 s of killing the leader");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while writers.join_next().await.is_some() {}
        let took = first.duration_since(killed_at);
        println!(
            "  kill {}: first acknowledged write after {:.0} ms",
            k + 1,
            took.as_secs_f64() * 1e3
        );
        out.push(took);
        let s = &mut c.servers[leader];
        s.proc = Some(spawn(&c.bin, s)?);
    }
    c.wait_agreed(Duration::from_secs(60)).await?;
    Ok(out)
}
