//! `dns`: the DNS benchmark. dnsperf against Tribune's DNS server and against
//! unbound serving the same records from `local-data`, both pinned to the same
//! core (dnsperf on the other one), with `web.service.consul` A and SRV
//! questions (alternating) for a service of five healthy instances.
//!
//! Each round measures, for each server in turn:
//!
//! - UDP and TCP at saturation, with dnsperf (queries per second: the
//!   throughput targets);
//! - UDP at a fixed offered load below both servers' capacity, with dnsperf
//!   (latency under load, for reference);
//! - UDP and TCP one query at a time, with our own closed-loop client
//!   ([`crate::dnsclient`]; latency: the p99 target). dnsperf's TCP latencies
//!   are dominated by dnsperf itself (see there), so it is not used for them.
//!
//! Rounds alternate which server goes first, and the targets use the median of
//! the per-round ratios, because this VM's throughput drifts by ±20% over
//! minutes. Both servers run for the whole benchmark; only one is queried at a
//! time. This process pins itself to dnsperf's CPU, so that its own client
//! never runs on the servers' core.
//!
//! Everything runs on loopback, in one temporary directory, and is stopped and
//! removed at the end (also on an error or Ctrl-C).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::dnsclient::{self, TYPE_A, TYPE_SRV};
use crate::dnsperf::{self, Load, Outcome, DNSPERF};
use crate::driver::{disturbed, undisturbed, Measured, Plan};
use crate::http::HttpConn;
use crate::report::{self, median, server_us_per_op, Row, TargetLine};
use crate::sys::{self, free_port, Disk, Sampler};
use crate::tribune::Tribune;
use crate::unbound::{Unbound, UNBOUND};

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches dns [options]

  --duration SECS        length of each run (dnsperf -l; for the one-at-a-time
                         client, 1 s warm-up + the rest measured; default 4)
  --rounds N             interleaved Tribune / unbound rounds (default 3)
  --clients N            UDP sockets / TCP connections of the saturating runs
                         (dnsperf -c; default 4; 100 queries in flight in all)
  --paced-qps N          offered load of the paced UDP run (dnsperf -Q, one
                         socket; default 10000)
  --server-cpu N         the CPU both servers are pinned to (default 1)
  --server-quota F       also cap both servers at F of their CPU (a cgroup CPU
                         quota, e.g. 0.5), so that one CPU of dnsperf can
                         saturate them and the queries/s ratio compares the
                         servers rather than the load generator (default: no cap)
  --client-cpu N         the CPU dnsperf and this process are pinned to (default 0)
  --retries N            repeat a disturbed run after the machine quiets down, up
                         to N times (default 3): a saturating run during which
                         other processes took more than 0.25 cores, or in which
                         neither dnsperf nor the server kept its CPU busy; a
                         latency run during which others took more than 0.10
                         cores
  --only LIST            comma-separated subset of udp,tcp,udp-paced,udp-1,tcp-1
  --tribune PATH         tribune binary (default: next to this binary)
  --data-root DIR        where the temporary directory goes (default: $TMPDIR or /tmp)
  --json PATH            also write the results as JSON
";

/// The service every query asks for, and how many healthy instances it has.
const SERVICE: &str = "web";
const INSTANCES: usize = 5;
/// Tribune's datacenter (the default), which SRV targets name.
const DC: &str = "dc1";
/// The name asked for.
const QNAME: &str = "web.service.consul";
/// The questions, alternating: dnsperf cycles through the file.
const QUERIES: &str = "web.service.consul A\nweb.service.consul SRV\n";
/// The ratio targets: Tribune's queries/s over unbound's, at least ...
const UDP_QPS_RATIO: f64 = 1.0;
const TCP_QPS_RATIO: f64 = 0.5;
/// ... and Tribune's p99 over unbound's, at most.
const P99_RATIO: f64 = 1.0;
/// dnsperf above this many cores is the bottleneck of a saturating run: the
/// server's figure is then a lower bound on what it can do.
const CLIENT_BOUND_CORES: f64 = 0.9;
/// In a saturating run one side must be the bottleneck and keep its CPU busy.
/// When neither reaches this, both were waiting on something outside the
/// guest (in trials: both at ~0.5 cores, a third of the usual throughput, no
/// other process busy and no steal time reported, most likely slow wake-ups
/// of the VM's idle CPU by a busy host), and the run measured the host.
const SATURATED_CORES: f64 = 0.85;
/// A latency run is disturbed at a lower level of other activity than a
/// throughput run: its p99 is the slowest 1% of queries, and a process taking
/// a tenth of a core time-slices with the server far more often than that.
const LATENCY_DISTURBED_CORES: f64 = 0.10;

/// How a run loads the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// dnsperf with 100 queries in flight: the server's throughput.
    Saturating,
    /// dnsperf at `--paced-qps`: latency under a load both servers sustain.
    Paced,
    /// Our closed-loop client, one query in flight: latency.
    OneAtATime,
}

/// One kind of run, repeated for each server in each round.
#[derive(Clone, Copy)]
struct Workload {
    id: &'static str,
    tcp: bool,
    kind: Kind,
}

const WORKLOADS: [Workload; 5] = [
    Workload {
        id: "udp",
        tcp: false,
        kind: Kind::Saturating,
    },
    Workload {
        id: "tcp",
        tcp: true,
        kind: Kind::Saturating,
    },
    Workload {
        id: "udp-paced",
        tcp: false,
        kind: Kind::Paced,
    },
    Workload {
        id: "udp-1",
        tcp: false,
        kind: Kind::OneAtATime,
    },
    Workload {
        id: "tcp-1",
        tcp: true,
        kind: Kind::OneAtATime,
    },
];

/// Sockets of the paced run: one, so that dnsperf's pacing is as even as it gets.
const PACED_CLIENTS: usize = 1;
/// Clients of the one-at-a-time runs: one query in flight in all.
const ONE_AT_A_TIME_CLIENTS: usize = 1;

struct Opts {
    secs: f64,
    rounds: usize,
    clients: usize,
    paced_qps: u32,
    server_cpu: usize,
    /// CPU share the servers may use on their CPU (`--server-quota`).
    server_quota: Option<f64>,
    client_cpu: usize,
    retries: usize,
    only: Vec<String>,
    tribune: PathBuf,
    data_root: PathBuf,
    json: Option<PathBuf>,
}

impl Opts {
    /// The CPU the servers may use, in cores.
    fn cap(&self) -> f64 {
        self.server_quota.unwrap_or(1.0)
    }

    fn wants(&self, what: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == what)
    }

    fn label(&self, w: Workload) -> String {
        let transport = if w.tcp { "TCP" } else { "UDP" };
        match w.kind {
            Kind::Saturating => format!("A+SRV over {transport}, saturating (dnsperf)"),
            Kind::Paced => format!("A+SRV over {transport} at {}/s (dnsperf)", self.paced_qps),
            Kind::OneAtATime => format!("A+SRV over {transport}, one at a time"),
        }
    }

    fn clients(&self, w: Workload) -> usize {
        match w.kind {
            Kind::Saturating => self.clients,
            Kind::Paced => PACED_CLIENTS,
            Kind::OneAtATime => ONE_AT_A_TIME_CLIENTS,
        }
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut o = Opts {
        secs: 4.0,
        rounds: 3,
        clients: 4,
        paced_qps: 10_000,
        server_cpu: 1,
        server_quota: None,
        client_cpu: 0,
        retries: 3,
        only: Vec::new(),
        tribune: bin_dir.join("tribune"),
        data_root: std::env::temp_dir(),
        json: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--duration" => o.secs = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--paced-qps" => o.paced_qps = value()?.parse()?,
            "--server-cpu" => o.server_cpu = value()?.parse()?,
            "--server-quota" => {
                let q: f64 = value()?.parse()?;
                if !(0.05..=1.0).contains(&q) {
                    bail!("--server-quota must be between 0.05 and 1");
                }
                o.server_quota = Some(q);
            }
            "--client-cpu" => o.client_cpu = value()?.parse()?,
            "--retries" => o.retries = value()?.parse()?,
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "--tribune" => o.tribune = value()?.into(),
            "--data-root" => o.data_root = value()?.into(),
            "--json" => o.json = Some(value()?.into()),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprint!("{USAGE}");
                bail!("unknown option {other}")
            }
        }
    }
    if o.clients == 0 || o.paced_qps == 0 || o.rounds == 0 {
        bail!("--clients, --paced-qps and --rounds must be at least 1");
    }
    if o.secs < 2.0 {
        bail!("--duration must be at least 2 s");
    }
    if let Some(w) = o
        .only
        .iter()
        .find(|w| !WORKLOADS.iter().any(|x| x.id == *w))
    {
        bail!("--only: unknown workload {w:?} (udp, tcp, udp-paced, udp-1, tcp-1)");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if o.server_cpu.max(o.client_cpu) >= cpus {
        bail!("this machine has {cpus} CPU(s); pick --server-cpu and --client-cpu below {cpus}");
    }
    Ok(o)
}

/// One instance of the service: node name, address, port (1-based).
fn instance(i: usize) -> (String, String, u16) {
    (format!("node{i}"), format!("10.0.0.{i}"), 8000 + i as u16)
}

/// The answers both servers must give, as `dig +short` prints them, sorted:
/// A, then SRV.
fn expected() -> (Vec<String>, Vec<String>) {
    let mut a = Vec::new();
    let mut srv = Vec::new();
    for i in 1..=INSTANCES {
        let (node, addr, port) = instance(i);
        a.push(addr);
        // Consul's SRV answers: priority 1, weight 1 (no Weights set), the
        // node's name as target, with its A record in the additional section.
        srv.push(format!("1 1 {port} {node}.node.{DC}.consul."));
    }
    a.sort();
    srv.sort();
    (a, srv)
}

/// unbound's `local-data`: the same A and SRV records, plus the targets' A
/// records (which unbound answers when asked, but does not add to an SRV
/// answer's additional section as Tribune does). TTL 0, Consul's default.
fn local_data() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 1..=INSTANCES {
        let (node, addr, port) = instance(i);
        lines.push(format!("{SERVICE}.service.consul. 0 IN A {addr}"));
        lines.push(format!(
            "{SERVICE}.service.consul. 0 IN SRV 1 1 {port} {node}.node.{DC}.consul."
        ));
        lines.push(format!("{node}.node.{DC}.consul. 0 IN A {addr}"));
    }
    lines
}

/// Register the service's instances, one per node, through the catalog API.
async fn seed(addr: SocketAddr) -> Result<()> {
    let mut c = HttpConn::connect(addr).await?;
    for i in 1..=INSTANCES {
        let (node, address, port) = instance(i);
        let body = json!({
            "Node": node,
            "Address": address,
            "Service": {"ID": format!("{SERVICE}-{i}"), "Service": SERVICE, "Port": port},
        });
        let (status, resp) = c
            .request(
                Method::PUT,
                "/v1/catalog/register",
                Bytes::from(serde_json::to_vec(&body)?),
                true,
            )
            .await?;
        if status != StatusCode::OK || resp.as_ref() != b"true" {
            bail!(
                "registering {node}: {status}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    Ok(())
}

/// `dig +short` for the service's `qtype` records on 127.0.0.1:`port`, sorted.
fn dig(port: u16, tcp: bool, qtype: &str) -> Result<Vec<String>> {
    let out = Command::new("dig")
        .arg("+short")
        .arg("+tries=1")
        .arg("+time=1")
        .arg(if tcp { "+tcp" } else { "+notcp" })
        .arg("-p")
        .arg(port.to_string())
        .arg("@127.0.0.1")
        .arg(format!("{SERVICE}.service.consul."))
        .arg(qtype)
        .output()
        .context("running dig")?;
    if !out.status.success() {
        bail!("dig: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    Ok(lines)
}

/// Fails unless the server on `port` gives exactly the expected A and SRV
/// answers over UDP and TCP; retried for up to 10 s while it starts.
async fn check_answers(name: &str, port: u16) -> Result<()> {
    let (a, srv) = expected();
    let check = || -> Result<()> {
        for tcp in [false, true] {
            for (qtype, want) in [("A", &a), ("SRV", &srv)] {
                let got = dig(port, tcp, qtype)?;
                if &got != want {
                    bail!(
                        "{name} answered {qtype} over {} with {got:?}, expected {want:?}",
                        if tcp { "TCP" } else { "UDP" }
                    );
                }
            }
        }
        Ok(())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A server under test, as the rounds see it.
struct Server<'a> {
    system: &'static str,
    port: u16,
    sampler: &'a Sampler,
}

/// Everything a run produced.
struct Results {
    rows: Vec<Row>,
    /// Average response size per system, from its first run.
    response_bytes: Vec<(&'static str, f64)>,
}

/// Entry point of `tribune-benches dns`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    crate::apt::ensure(&[
        (Path::new(DNSPERF), "dnsperf"),
        (Path::new(UNBOUND), "unbound"),
        (Path::new("/usr/bin/dig"), "bind9-dnsutils"),
    ])?;
    let tmp = sys::bench_dir(&opts.data_root)?;
    let env = sys::Env::announce(tmp.path());
    println!(
        "plan:    {} round(s); per server and round, {} s each: A+SRV over UDP and TCP saturating (dnsperf, {} sockets/connections), over UDP at {}/s (dnsperf, {PACED_CLIENTS} socket), over UDP and TCP one query at a time (our client); servers on CPU {}, dnsperf and this process on CPU {}",
        opts.rounds,
        opts.secs,
        opts.clients,
        opts.paced_qps,
        opts.server_cpu,
        opts.client_cpu,
    );
    if opts.server_cpu == opts.client_cpu {
        println!("WARNING: servers and clients share CPU {}", opts.server_cpu);
    }
    pin_self(opts.client_cpu)?;
    // One worker thread: this process starts dnsperf, samples /proc and runs the
    // one-at-a-time client, which needs no more.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let res = rt.block_on(async {
        tokio::select! {
            r = run_all(&opts, tmp.path(), &env.disk) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    drop(rt);
    let res = res?;
    println!();
    print!("{}", report::table(&res.rows));
    println!();
    for line in round_lines(&opts, &res.rows) {
        println!("{line}");
    }
    for (system, bytes) in &res.response_bytes {
        println!("{system}: average response {bytes:.0} B");
    }
    let targets = targets(&opts, &res.rows);
    println!();
    for t in &targets {
        println!("{}", t.line());
    }
    for note in client_bound(&opts, &res.rows) {
        println!("note: {note}");
    }
    let shaky_rows: Vec<String> = res
        .rows
        .iter()
        .filter(|r| shaky(row_kind(&opts, r), &r.m, opts.cap()))
        .map(|r| format!("{} {}", r.system, r.workload))
        .collect();
    if !shaky_rows.is_empty() {
        println!(
            "WARNING: disturbed (other processes busy, or neither side of a saturating run busy) after every retry: {}; re-run on a quiet machine",
            shaky_rows.join("; ")
        );
    }
    for r in &res.rows {
        if let Some(e) = &r.m.first_error {
            println!("note: {} {}: first error: {e}", r.system, r.workload);
        }
    }
    if let Some(path) = &opts.json {
        let meta = json!({
            "machine": env.machine,
            "background_load": env.background,
            "dnsperf_secs": opts.secs,
            "rounds": opts.rounds,
            "clients": opts.clients,
            "paced_qps": opts.paced_qps,
            "paced_clients": PACED_CLIENTS,
            "one_at_a_time_clients": ONE_AT_A_TIME_CLIENTS,
            "server_cpu": opts.server_cpu,
            "client_cpu": opts.client_cpu,
            "queries": QUERIES,
            "response_bytes": res.response_bytes.iter().map(|(s, b)| json!({"system": s, "bytes": b})).collect::<Vec<_>>(),
        });
        let doc = json!({
            "meta": meta,
            "rows": report::rows_json(&res.rows),
            "rounds": round_lines(&opts, &res.rows),
            "targets": targets.iter().map(TargetLine::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("wrote {}", path.display());
    }
    drop(tmp);
    Ok(())
}

/// Pin every thread of this process (and so the runtime's, created after) to
/// `cpu`: the one-at-a-time client must not run on the servers' core. taskset
/// does it from outside, as this crate has no unsafe code for sched_setaffinity.
fn pin_self(cpu: usize) -> Result<()> {
    let out = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .output()
        .context("running taskset")?;
    if !out.status.success() {
        bail!(
            "taskset -p -c {cpu}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn log_row(row: &Row) {
    println!(
        "  {:<8} {:<40} c={:<2} {:>8.0}/s  p50 {:>7.3} ms  p99 {:>7.3} ms  server CPU {}  client CPU {}  errors {}",
        row.system,
        row.workload,
        row.clients,
        row.m.ops_per_sec(),
        row.m.p50_us / 1e3,
        row.m.p99_us / 1e3,
        row.m
            .usage
            .server_cores
            .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
        row.m
            .usage
            .client_cores
            .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
        row.m.errors
    );
}

async fn run_all(o: &Opts, tmp: &Path, disk: &Disk) -> Result<Results> {
    if !o.tribune.exists() {
        bail!(
            "{} not found (build it with `cargo build --release -p tribune`, or pass --tribune)",
            o.tribune.display()
        );
    }
    let queries = tmp.join("queries.txt");
    std::fs::write(&queries, QUERIES)?;

    let dir = tmp.join("tribune");
    std::fs::create_dir_all(&dir)?;
    println!(
        "tribune: starting {} on CPU {}",
        o.tribune.display(),
        o.server_cpu
    );
    let dns_port = free_port()?;
    let t = Tribune::start_with(&o.tribune, &dir, Some(dns_port), Some(o.server_cpu)).await?;
    seed(t.http).await?;
    check_answers("tribune", dns_port).await?;

    let udir = tmp.join("unbound");
    std::fs::create_dir_all(&udir)?;
    println!("unbound: starting {UNBOUND} on CPU {}", o.server_cpu);
    let mut u = Unbound::start(&udir, "consul.", &local_data(), Some(o.server_cpu))?;
    if let Err(e) = check_answers("unbound", u.port).await {
        u.proc.check_alive()?;
        return Err(e.context(format!("unbound's log:\n{}", u.proc.log_tail())));
    }
    println!("both servers give the expected A and SRV answers over UDP and TCP");

    let _quota = match o.server_quota {
        Some(q) => {
            println!("both servers capped at {q} of a CPU (cgroup CPU quota)");
            Some(sys::CpuQuota::new(
                "tribune-bench-dns",
                q,
                &[t.proc.pid(), u.proc.pid()],
            )?)
        }
        None => None,
    };
    let t_sampler = Sampler::new(vec![t.proc.pid()], disk.clone());
    let u_sampler = Sampler::new(vec![u.proc.pid()], disk.clone());
    let servers = [
        Server {
            system: "tribune",
            port: dns_port,
            sampler: &t_sampler,
        },
        Server {
            system: "unbound",
            port: u.port,
            sampler: &u_sampler,
        },
    ];
    let load = |w: Workload, port: u16, secs: f64| Load {
        port,
        tcp: w.tcp,
        clients: o.clients(w),
        max_qps: (w.kind == Kind::Paced).then_some(o.paced_qps),
        secs,
        cpu: Some(o.client_cpu),
    };

    // Warm-up, not recorded: first reads, page faults, allocator growth.
    for s in &servers {
        dnsperf::run(&load(WORKLOADS[0], s.port, 1.0), &queries, tmp, s.sampler).await?;
    }

    let mut rows = Vec::new();
    let mut response_bytes: Vec<(&'static str, f64)> = Vec::new();
    for round in 1..=o.rounds {
        println!("round {round}");
        // Odd rounds start with Tribune, even ones with unbound, so neither
        // always runs right after the other on a warm or a cold core.
        let order: Vec<&Server> = if round % 2 == 1 {
            servers.iter().collect()
        } else {
            servers.iter().rev().collect()
        };
        for w in WORKLOADS.iter().copied().filter(|w| o.wants(w.id)) {
            for s in &order {
                let m = match w.kind {
                    Kind::Saturating | Kind::Paced => {
                        let l = load(w, s.port, o.secs);
                        let out: Outcome = undisturbed(
                            o.retries,
                            |r: &Outcome| shaky(w.kind, &r.m, o.cap()),
                            || dnsperf::run(&l, &queries, tmp, s.sampler),
                        )
                        .await?;
                        if let Some(b) = out.response_bytes {
                            if !response_bytes.iter().any(|(sys, _)| *sys == s.system) {
                                response_bytes.push((s.system, b));
                            }
                        }
                        out.m
                    }
                    Kind::OneAtATime => {
                        let server = SocketAddr::from(([127, 0, 0, 1], s.port));
                        let plan = Plan {
                            warmup: Duration::from_secs(1),
                            measure: Duration::from_secs_f64(o.secs - 1.0),
                        };
                        let questions = [(QNAME, TYPE_A), (QNAME, TYPE_SRV)];
                        undisturbed(
                            o.retries,
                            |m| shaky(w.kind, m, o.cap()),
                            || {
                                dnsclient::closed_loop(
                                    server,
                                    w.tcp,
                                    ONE_AT_A_TIME_CLIENTS,
                                    &questions,
                                    INSTANCES as u16,
                                    plan,
                                    s.sampler,
                                )
                            },
                        )
                        .await?
                    }
                };
                let row = Row {
                    system: s.system,
                    id: row_id(s.system, w.id, round),
                    workload: format!("{} (round {round})", o.label(w)),
                    clients: o.clients(w),
                    m,
                };
                log_row(&row);
                rows.push(row);
            }
        }
    }
    u.proc.stop();
    t.proc.stop();
    Ok(Results {
        rows,
        response_bytes,
    })
}

fn row_id(system: &str, workload: &str, round: usize) -> String {
    format!("{system}-{workload}-{round}")
}

/// Tribune's and unbound's rows of one workload in one round.
fn pair<'a>(rows: &'a [Row], workload: &str, round: usize) -> Option<(&'a Measured, &'a Measured)> {
    let find = |system| {
        rows.iter()
            .find(|r| r.id == row_id(system, workload, round))
            .map(|r| &r.m)
    };
    find("tribune").zip(find("unbound"))
}

/// A per-round ratio of one workload, Tribune over unbound.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

/// What a target compares: throughput, p99, or server CPU per query.
#[derive(Clone, Copy)]
enum Figure {
    Qps,
    P99,
    /// unbound's CPU per query over Tribune's: comparable to the throughput
    /// ratio, but blind to how the client shared out the time.
    CpuPerQuery,
}

impl Figure {
    fn of(self, t: &Measured, u: &Measured) -> Option<f64> {
        match self {
            Figure::Qps => ratio(t.ops_per_sec(), u.ops_per_sec()),
            Figure::P99 => ratio(t.p99_us, u.p99_us),
            Figure::CpuPerQuery => server_us_per_op(u)
                .zip(server_us_per_op(t))
                .and_then(|(u, t)| ratio(u, t)),
        }
    }
}

/// The median over the rounds of one figure's ratio, and whether any round's
/// pair was disturbed.
fn median_ratio(o: &Opts, rows: &[Row], workload_id: &str, fig: Figure) -> (Option<f64>, bool) {
    let kind = workload(workload_id).map_or(Kind::Saturating, |w| w.kind);
    let mut ratios = Vec::new();
    let mut any_shaky = false;
    for round in 1..=o.rounds {
        if let Some((t, u)) = pair(rows, workload_id, round) {
            any_shaky |= shaky(kind, t, o.cap()) || shaky(kind, u, o.cap());
            if let Some(r) = fig.of(t, u) {
                ratios.push(r);
            }
        }
    }
    (median(ratios), any_shaky)
}

/// The workload called `id`.
fn workload(id: &str) -> Option<Workload> {
    WORKLOADS.iter().copied().find(|w| w.id == id)
}

/// The kind of run a row comes from.
fn row_kind(o: &Opts, r: &Row) -> Kind {
    WORKLOADS
        .iter()
        .find(|w| (1..=o.rounds).any(|n| r.id == row_id(r.system, w.id, n)))
        .map_or(Kind::Saturating, |w| w.kind)
}

/// Whether a run cannot be trusted (see [`SATURATED_CORES`] and
/// [`LATENCY_DISTURBED_CORES`]); such a run is repeated, and a target that
/// uses it gets no verdict. `cap` is the CPU the servers may use (1.0, or the
/// `--server-quota`).
fn shaky(kind: Kind, m: &Measured, cap: f64) -> bool {
    match kind {
        Kind::Saturating => disturbed(m) || stalled(m, cap),
        Kind::Paced | Kind::OneAtATime => m
            .usage
            .other_cores
            .is_some_and(|c| c > LATENCY_DISTURBED_CORES),
    }
}

/// Neither side of a saturating run kept its CPU (or the server its quota) busy.
fn stalled(m: &Measured, cap: f64) -> bool {
    match (m.usage.server_cores, m.usage.client_cores) {
        (Some(s), Some(c)) => (s / cap).max(c) < SATURATED_CORES,
        _ => false,
    }
}

/// One line per round: the ratios the targets take the median of.
fn round_lines(o: &Opts, rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for round in 1..=o.rounds {
        let mut parts = Vec::new();
        for w in WORKLOADS {
            let Some((t, u)) = pair(rows, w.id, round) else {
                continue;
            };
            let part = if w.kind != Kind::Saturating {
                format!(
                    "{} p99 {:.3} / {:.3} ms = {}",
                    w.id,
                    t.p99_us / 1e3,
                    u.p99_us / 1e3,
                    Figure::P99
                        .of(t, u)
                        .map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
                )
            } else {
                format!(
                    "{} {:.0} / {:.0} q/s = {}",
                    w.id,
                    t.ops_per_sec(),
                    u.ops_per_sec(),
                    Figure::Qps
                        .of(t, u)
                        .map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
                )
            };
            parts.push(part);
        }
        if !parts.is_empty() {
            out.push(format!(
                "round {round}, Tribune / unbound: {}",
                parts.join("; ")
            ));
        }
    }
    out
}

fn targets(o: &Opts, rows: &[Row]) -> Vec<TargetLine> {
    let n = o.rounds;
    let mut out = Vec::new();
    let mut push = |name: String, workload: &str, fig: Figure, goal: Option<(bool, f64)>| {
        let (measured, shaky) = median_ratio(o, rows, workload, fig);
        out.push(TargetLine {
            name,
            measured,
            unit: "x",
            goal: goal.map_or_else(String::new, |(at_least, v)| {
                format!("{} {v:.1}", if at_least { ">=" } else { "<=" })
            }),
            met: goal
                .and_then(|(at_least, v)| measured.map(|m| if at_least { m >= v } else { m <= v })),
            disturbed: shaky,
            reference: goal.is_none(),
        });
    };
    if o.wants("udp") {
        push(
            format!("UDP queries/s, Tribune / unbound (median of {n})"),
            "udp",
            Figure::Qps,
            Some((true, UDP_QPS_RATIO)),
        );
        push(
            "  for reference: by server CPU per query (unbound / Tribune)".into(),
            "udp",
            Figure::CpuPerQuery,
            None,
        );
    }
    if o.wants("tcp") {
        push(
            format!("TCP queries/s, Tribune / unbound (median of {n})"),
            "tcp",
            Figure::Qps,
            Some((true, TCP_QPS_RATIO)),
        );
        push(
            "  for reference: by server CPU per query (unbound / Tribune)".into(),
            "tcp",
            Figure::CpuPerQuery,
            None,
        );
    }
    for (id, transport) in [("udp-1", "UDP"), ("tcp-1", "TCP")] {
        if o.wants(id) {
            push(
                format!(
                    "p99 one query at a time over {transport}, Tribune / unbound (median of {n})"
                ),
                id,
                Figure::P99,
                Some((false, P99_RATIO)),
            );
        }
    }
    if o.wants("udp-paced") {
        push(
            format!(
                "  for reference: p99 at {}/s over UDP (dnsperf), Tribune / unbound",
                o.paced_qps
            ),
            "udp-paced",
            Figure::P99,
            None,
        );
    }
    for (id, transport) in [("udp", "UDP"), ("tcp", "TCP")] {
        if o.wants(id) {
            push(
                format!("  for reference: p99 saturating over {transport}, Tribune / unbound"),
                id,
                Figure::P99,
                None,
            );
        }
    }
    out
}

/// Saturating rows in which dnsperf, not the server, was the bottleneck: dnsperf
/// had its CPU to itself while the server still had room.
fn client_bound(o: &Opts, rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        let client = r.m.usage.client_cores.unwrap_or(0.0);
        let server = r.m.usage.server_cores.unwrap_or(1.0);
        if row_kind(o, r) == Kind::Saturating
            && client >= CLIENT_BOUND_CORES
            && server < CLIENT_BOUND_CORES * o.cap()
        {
            out.push(format!(
                "{} {}: dnsperf used {client:.2} cores of its one CPU, the server {server:.2}: dnsperf was the bottleneck, so this is a lower bound on the server's throughput",
                r.system, r.workload,
            ));
        }
    }
    out
}
