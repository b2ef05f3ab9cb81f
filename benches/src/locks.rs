//! `locks`: the coordination benchmark. Against one durable Tribune server it
//! measures lock hand-off latency on one contended key, session
//! create/renew/destroy throughput, 10-op transaction throughput, and the
//! server's CPU while many TTL sessions are renewed on a steady schedule, once
//! over HTTP straight to the server agent and once as `Session.Renew` RPCs on
//! its server port (what client agents send the leader); the raw fdatasync loop
//! runs first as the same-run reference the hand-off target is stated in. Then
//! it prints the table and the targets.
//!
//! Everything runs on loopback, in one temporary directory on the disk under
//! test, and is stopped and removed at the end (also on an error or Ctrl-C).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::json;

use crate::coord::{self, LockRun, PacedRequest, SESSION_KINDS};
use crate::driver::{disturbed, undisturbed, Measured, Plan, DISTURBED_CORES};
use crate::fsync::{self, Mode};
use crate::kv::Hello;
use crate::report::{self, Row, TargetLine};
use crate::sys::{self, Disk, Sampler};
use crate::tribune::Tribune;
use tribune_types::SessionId;

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches locks [options]

  --duration SECS        measured time per workload (default 5)
  --warmup SECS          unrecorded warm-up per workload (default 1)
  --contenders LIST      lock contenders on the one key, one row each (default 2,50)
  --session-clients N    clients of the session create/renew/destroy loop (default 16)
  --txn-clients LIST     clients of the transaction workload, one row each (default 1,16)
  --txn-ops N            set operations per transaction (default 10)
  --sessions N           TTL (10 s) sessions kept alive by renewals (default 10000)
  --renew-every SECS     how often each of them is renewed (default 5)
  --renew-conns N        senders the renewals are spread over (default 16); over
                         HTTP each has its own connection
  --renew-rpc-conns N    gRPC connections (client agents) the same senders share
                         when renewing over the server RPC port (default 4)
  --renew-secs SECS      measured renewal window (default 10: two renewal rounds)
  --idle-secs SECS       measured window with the sessions alive and no
                         renewals, the baseline (default 3)
  --retries N            repeat a workload disturbed by other processes (more than
                         0.25 cores of CPU not ours) after the machine quiets
                         down, up to N times (default 3)
  --only LIST            comma-separated subset of fsync,locks,sessions,txn,renew
  --tribune PATH         tribune binary (default: next to this binary)
  --data-root DIR        where the temporary data directory goes (default: $TMPDIR
                         or /tmp); the fdatasync loop runs there too
  --json PATH            also write the results as JSON
";

/// The hand-off target: p99 under this many raw fdatasyncs (p50, append) ...
const HANDOFF_FSYNCS: f64 = 2.0;
/// ... plus this many milliseconds.
const HANDOFF_SLACK_MS: f64 = 5.0;
/// The renewal target: the server's CPU, in cores, while the sessions are renewed.
const RENEW_MAX_CORES: f64 = 0.10;
/// Connections that create and destroy the renewal workload's sessions.
const POPULATE_WORKERS: usize = 16;
/// The label of the renewal row sent over HTTP, wherever its figure is shown
/// next to the target: that row is not how a deployed leader is renewed.
const RENEW_HTTP_LABEL: &str = "renewals sent over HTTP straight to the server agent: includes the HTTP API cost a client agent would normally carry";

struct Opts {
    plan: Plan,
    contenders: Vec<usize>,
    session_clients: usize,
    txn_clients: Vec<usize>,
    txn_ops: usize,
    sessions: usize,
    renew_every: Duration,
    renew_conns: usize,
    renew_rpc_conns: usize,
    renew_window: Duration,
    idle_window: Duration,
    retries: usize,
    only: Vec<String>,
    tribune: PathBuf,
    data_root: PathBuf,
    json: Option<PathBuf>,
}

impl Opts {
    fn wants(&self, what: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == what)
    }
}

fn list(v: &str) -> Result<Vec<usize>> {
    v.split(',')
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("bad number {n:?}"))
        })
        .collect()
}

fn secs(v: &str) -> Result<Duration> {
    Ok(Duration::from_secs_f64(v.parse()?))
}

fn parse(args: &[String]) -> Result<Opts> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut o = Opts {
        plan: Plan {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
        },
        contenders: vec![2, 50],
        session_clients: 16,
        txn_clients: vec![1, 16],
        txn_ops: 10,
        sessions: 10_000,
        renew_every: Duration::from_secs(5),
        renew_conns: 16,
        renew_rpc_conns: 4,
        renew_window: Duration::from_secs(10),
        idle_window: Duration::from_secs(3),
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
            "--duration" => o.plan.measure = secs(&value()?)?,
            "--warmup" => o.plan.warmup = secs(&value()?)?,
            "--contenders" => o.contenders = list(&value()?)?,
            "--session-clients" => o.session_clients = value()?.parse()?,
            "--txn-clients" => o.txn_clients = list(&value()?)?,
            "--txn-ops" => o.txn_ops = value()?.parse()?,
            "--sessions" => o.sessions = value()?.parse()?,
            "--renew-every" => o.renew_every = secs(&value()?)?,
            "--renew-conns" => o.renew_conns = value()?.parse()?,
            "--renew-rpc-conns" => o.renew_rpc_conns = value()?.parse()?,
            "--renew-secs" => o.renew_window = secs(&value()?)?,
            "--idle-secs" => o.idle_window = secs(&value()?)?,
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
    if o.contenders.contains(&0)
        || o.txn_clients.contains(&0)
        || o.session_clients == 0
        || o.txn_ops == 0
        || o.renew_conns == 0
        || o.renew_rpc_conns == 0
    {
        bail!("client, contender and operation counts must be at least 1");
    }
    if o.renew_every >= Duration::from_secs(10) {
        // The sessions' TTL is 10 s; renewing less often would let them expire
        // (after 2 × TTL, Consul's grace) and measure expiry instead.
        bail!("--renew-every must be under the sessions' 10 s TTL");
    }
    Ok(o)
}

/// Extra figures of one lock row, for the notes and the JSON.
struct LockNote {
    contenders: usize,
    handoffs: u64,
    cross: u64,
    inverted: u64,
    lost: u64,
    waits: u64,
}

/// Everything a run produced.
struct Results {
    rows: Vec<Row>,
    locks: Vec<LockNote>,
    /// Sessions the renewal workload kept alive (0 if it did not run).
    sessions: usize,
    /// Renewals per second its schedule asks for.
    renew_rate: f64,
}

/// Entry point of `tribune-benches locks`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let tmp = sys::bench_dir(&opts.data_root)?;
    let env = sys::Env::announce(tmp.path());
    println!(
        "plan:    {} s warm-up + {} s measured per workload; lock contenders {:?}; {} session clients; txn clients {:?} x {} ops; {} TTL sessions renewed every {} s by {} senders, over HTTP (a connection each) then over server RPC ({} gRPC connections) ({} s idle + {} s measured each)",
        opts.plan.warmup.as_secs_f64(),
        opts.plan.measure.as_secs_f64(),
        opts.contenders,
        opts.session_clients,
        opts.txn_clients,
        opts.txn_ops,
        opts.sessions,
        opts.renew_every.as_secs_f64(),
        opts.renew_conns,
        opts.renew_rpc_conns,
        opts.idle_window.as_secs_f64(),
        opts.renew_window.as_secs_f64(),
    );
    // One worker thread, as in `kv`: the load generator must not take more than
    // one of the two cores from the server.
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
    for n in &res.locks {
        print!("{}", lock_note(n));
    }
    let targets = targets(&res);
    println!();
    for t in &targets {
        println!("{}", t.line());
    }
    let shaky: Vec<String> = res
        .rows
        .iter()
        .filter(|r| disturbed(&r.m))
        .map(|r| format!("{} (c={})", r.workload, r.clients))
        .collect();
    if !shaky.is_empty() {
        println!(
            "WARNING: something else used > {DISTURBED_CORES} cores during: {}; re-run on a quiet machine",
            shaky.join("; ")
        );
    }
    for r in &res.rows {
        if let Some(e) = &r.m.first_error {
            println!("note: {}: first error: {e}", r.workload);
        }
    }
    if let Some(path) = &opts.json {
        let meta = json!({
            "machine": env.machine,
            "disk": env.disk_desc,
            "background_load": env.background,
            "warmup_secs": opts.plan.warmup.as_secs_f64(),
            "measure_secs": opts.plan.measure.as_secs_f64(),
            "contenders": opts.contenders,
            "session_clients": opts.session_clients,
            "txn_clients": opts.txn_clients,
            "txn_ops": opts.txn_ops,
            "sessions": opts.sessions,
            "renew_every_secs": opts.renew_every.as_secs_f64(),
            "renew_conns": opts.renew_conns,
            "renew_rpc_conns": opts.renew_rpc_conns,
            "renew_secs": opts.renew_window.as_secs_f64(),
            "idle_secs": opts.idle_window.as_secs_f64(),
        });
        let locks: Vec<_> = res
            .locks
            .iter()
            .map(|n| {
                json!({
                    "contenders": n.contenders,
                    "handoffs": n.handoffs,
                    "to_another_contender": n.cross,
                    "answered_together": n.inverted,
                    "refused_acquires": n.lost,
                    "blocking_queries": n.waits,
                })
            })
            .collect();
        let targets: Vec<_> = targets.iter().map(TargetLine::json).collect();
        let doc = json!({
            "meta": meta,
            "rows": report::rows_json(&res.rows),
            "locks": locks,
            "targets": targets,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("wrote {}", path.display());
    }
    drop(tmp);
    Ok(())
}

fn lock_note(n: &LockNote) -> String {
    let per = |x: u64| x as f64 / n.handoffs.max(1) as f64;
    format!(
        "{} contenders: {} hand-offs, {:.0}% to another contender; per hand-off {:.1} refused acquires and {:.1} blocking-query answers; {} answered before their release's acknowledgement (counted as 0)\n",
        n.contenders,
        n.handoffs,
        100.0 * per(n.cross),
        per(n.lost),
        per(n.waits),
        n.inverted,
    )
}

fn log_row(row: &Row) {
    let ms = |us: f64| {
        if us.is_finite() {
            format!("{:>7.3} ms", us / 1e3)
        } else {
            format!("{:>10}", "-")
        }
    };
    println!(
        "  {:<46} c={:<5} {:>8.0}/s  p50 {}  p99 {}  server CPU {}  errors {}",
        row.workload,
        row.clients,
        row.m.ops_per_sec(),
        ms(row.m.p50_us),
        ms(row.m.p99_us),
        row.m
            .usage
            .server_cores
            .map_or_else(|| "-".into(), |c| format!("{c:.3}")),
        row.m.errors
    );
}

fn push(
    rows: &mut Vec<Row>,
    system: &'static str,
    id: String,
    workload: String,
    clients: usize,
    m: Measured,
) {
    let row = Row {
        system,
        id,
        workload,
        clients,
        m,
    };
    log_row(&row);
    rows.push(row);
}

async fn run_all(o: &Opts, tmp: &Path, disk: &Disk) -> Result<Results> {
    let plan = o.plan;
    let mut rows = Vec::new();
    let mut locks = Vec::new();
    let mut sessions = 0;

    if o.wants("fsync") {
        // The same loop as `kv`'s "append" row: the hand-off target is stated in
        // fdatasyncs of this disk, measured now rather than remembered.
        println!("raw fdatasync loop in {}", tmp.display());
        let dir = tmp.to_path_buf();
        let sampler = Sampler::new(Vec::new(), disk.clone());
        let m = undisturbed(o.retries, disturbed, || {
            let dir = dir.clone();
            let sampler = sampler.clone();
            async move {
                tokio::task::spawn_blocking(move || fsync::run(&dir, Mode::Append, plan, &sampler))
                    .await?
            }
        })
        .await?;
        push(
            &mut rows,
            "disk",
            "fsync-append".into(),
            "write 256 B + fdatasync (append)".into(),
            1,
            m,
        );
    }

    let tribune_work = ["locks", "sessions", "txn", "renew"];
    if !tribune_work.iter().any(|w| o.wants(w)) {
        return Ok(Results {
            rows,
            locks,
            sessions,
            renew_rate: 0.0,
        });
    }
    if !o.tribune.exists() {
        bail!(
            "{} not found (build it with `cargo build --release -p tribune`, or pass --tribune)",
            o.tribune.display()
        );
    }
    let dir = tmp.join("tribune");
    std::fs::create_dir_all(&dir)?;
    println!("tribune: starting {}", o.tribune.display());
    let t = Tribune::start(&o.tribune, &dir).await?;
    let sampler = Sampler::new(vec![t.proc.pid()], disk.clone());
    let addr = t.http;
    let rpc = t.rpc;

    if o.wants("locks") {
        for &n in &o.contenders {
            let key = format!("bench/lock-{n}");
            let r: LockRun = undisturbed(
                o.retries,
                |r: &LockRun| disturbed(&r.all),
                || coord::lock_workload(addr, &key, n, plan, &sampler),
            )
            .await?;
            locks.push(LockNote {
                contenders: n,
                handoffs: r.all.ops,
                cross: r.cross.ops,
                inverted: r.inverted,
                lost: r.lost,
                waits: r.waits,
            });
            push(
                &mut rows,
                "tribune",
                format!("lock-{n}"),
                "lock hand-off (release ack → next acquire ack)".into(),
                n,
                r.all,
            );
            push(
                &mut rows,
                "tribune",
                format!("lock-{n}-cross"),
                "  of which to another contender".into(),
                n,
                r.cross,
            );
        }
    }

    if o.wants("sessions") {
        let n = o.session_clients;
        let ms = undisturbed(
            o.retries,
            |ms: &Vec<Measured>| ms.iter().any(disturbed),
            || coord::session_workload(addr, n, plan, &sampler),
        )
        .await?;
        for (kind, mut m) in SESSION_KINDS.iter().zip(ms) {
            let workload = if *kind == "cycle" {
                "session create + renew + destroy (cycle)".to_owned()
            } else {
                // The server's CPU is that of the whole cycle: shown on that row
                // only, so that no per-request figure is divided by one kind.
                m.usage = Default::default();
                format!("  session {kind} (in the cycle)")
            };
            push(
                &mut rows,
                "tribune",
                format!("session-{kind}"),
                workload,
                n,
                m,
            );
        }
    }

    if o.wants("txn") {
        let value = crate::kv::value();
        for &n in &o.txn_clients {
            let ops = o.txn_ops;
            let m = undisturbed(o.retries, disturbed, || {
                coord::txn_workload(addr, n, ops, &value, plan, &sampler)
            })
            .await?;
            push(
                &mut rows,
                "tribune",
                format!("txn-{n}"),
                format!("txn of {ops} sets of 256 B"),
                n,
                m,
            );
        }
    }

    if o.wants("renew") && o.sessions > 0 {
        let r: RenewRun = undisturbed(
            o.retries,
            |r: &RenewRun| disturbed(&r.idle) || disturbed(&r.http) || disturbed(&r.rpc),
            || renew_phase(o, addr, rpc, &sampler),
        )
        .await?;
        sessions = o.sessions;
        let n = o.sessions;
        push(
            &mut rows,
            "tribune",
            "renew-populate".into(),
            format!("create {n} TTL sessions"),
            POPULATE_WORKERS,
            r.populate,
        );
        push(
            &mut rows,
            "tribune",
            "renew-idle".into(),
            format!("{n} TTL sessions alive, no requests"),
            0,
            r.idle,
        );
        let every = o.renew_every.as_secs_f64();
        push(
            &mut rows,
            "tribune",
            "renew-http".into(),
            format!("{n} TTL sessions, each renewed every {every} s: HTTP to the server agent"),
            o.renew_conns.min(n),
            r.http,
        );
        push(
            &mut rows,
            "tribune",
            "renew-rpc".into(),
            format!("{n} TTL sessions, each renewed every {every} s: server RPC (as deployed)"),
            o.renew_rpc_conns.clamp(1, o.renew_conns.min(n)),
            r.rpc,
        );

        // References for the HTTP renewal row: the same schedule (rate,
        // connections, window) of a plain KV GET on Tribune, and of a bare hyper
        // server. They separate what renewing costs from what any request evenly
        // paced at this rate costs this HTTP stack on this machine.
        let rate = o.sessions as f64 / o.renew_every.as_secs_f64();
        let conns = o.renew_conns.min(o.sessions);
        let plan = renew_plan(o);
        let mut c = crate::http::HttpConn::connect(addr).await?;
        crate::tribune::put(&mut c, "bench/paced", bytes::Bytes::from_static(b"1")).await?;
        drop(c);
        let get: PacedRequest = Arc::new(|_, _| (Method::GET, "/v1/kv/bench/paced".into()));
        let m = undisturbed(o.retries, disturbed, || {
            coord::paced_workload(addr, rate, conns, plan, &sampler, get.clone())
        })
        .await?;
        push(
            &mut rows,
            "tribune",
            "paced-get".into(),
            format!("  reference: KV GET at the same pace ({rate:.0}/s)"),
            conns,
            m,
        );
        let hello = Hello::start(tmp, None).await?;
        let h_sampler = Sampler::new(vec![hello.proc.pid()], disk.clone());
        let path: PacedRequest = Arc::new(|_, _| (Method::GET, "/v1/kv/bench/paced".into()));
        let m = undisturbed(o.retries, disturbed, || {
            coord::paced_workload(hello.addr, rate, conns, plan, &h_sampler, path.clone())
        })
        .await?;
        hello.proc.stop();
        push(
            &mut rows,
            "hyper",
            "paced-hello".into(),
            format!("  reference: bare hyper GET at the same pace ({rate:.0}/s)"),
            conns,
            m,
        );
    }

    t.proc.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Results {
        rows,
        locks,
        sessions,
        renew_rate: o.sessions as f64 / o.renew_every.as_secs_f64(),
    })
}

/// What [`renew_phase`] measured.
struct RenewRun {
    /// Creating the sessions.
    populate: Measured,
    /// The sessions alive, nothing asked of the server.
    idle: Measured,
    /// The renewal schedule over HTTP to the server agent.
    http: Measured,
    /// The same schedule as `Session.Renew` RPCs on the server port.
    rpc: Measured,
}

/// Create the sessions, measure the server idle with them, measure it while
/// they are renewed on schedule over HTTP, then over the server RPC port, and
/// destroy them (so that a retry does not pay for the expiry of the previous
/// attempt's sessions). The two schedules follow each other without a gap
/// longer than a connection setup, so no session goes a whole TTL unrenewed.
async fn renew_phase(
    o: &Opts,
    addr: std::net::SocketAddr,
    rpc: std::net::SocketAddr,
    sampler: &Sampler,
) -> Result<RenewRun> {
    let before = sampler.sample();
    let t0 = Instant::now();
    let (ids, lat) = coord::create_sessions(addr, o.sessions, POPULATE_WORKERS).await?;
    let secs = t0.elapsed().as_secs_f64();
    let populate = Measured::from_samples(
        lat,
        secs,
        0,
        None,
        sampler.usage(&before, &sampler.sample()),
    );
    println!("  created {} TTL sessions in {secs:.1} s", ids.len());

    // The baseline: what the server spends with the sessions alive and nothing
    // asked of it (its TTL timers, gossip, anti-entropy). The window is short
    // enough that no session comes near its TTL.
    let before = sampler.sample();
    tokio::time::sleep(o.idle_window).await;
    let idle = Measured::from_samples(
        Vec::new(),
        o.idle_window.as_secs_f64(),
        0,
        None,
        sampler.usage(&before, &sampler.sample()),
    );

    let rpc_ids = ids
        .iter()
        .map(|id| {
            uuid::Uuid::parse_str(id)
                .map(SessionId)
                .with_context(|| format!("session ID {id:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let ids = Arc::new(ids);
    let http = coord::renew_workload(
        addr,
        ids.clone(),
        o.renew_conns,
        o.renew_every,
        renew_plan(o),
        sampler,
    )
    .await?;
    log_renew("over HTTP", &http);
    let rpc = coord::renew_rpc_workload(
        rpc,
        Arc::new(rpc_ids),
        o.renew_conns,
        o.renew_rpc_conns,
        o.renew_every,
        renew_plan(o),
        sampler,
    )
    .await?;
    log_renew("over server RPC", &rpc);
    coord::destroy_sessions(addr, ids, POPULATE_WORKERS).await?;
    Ok(RenewRun {
        populate,
        idle,
        http,
        rpc,
    })
}

/// Progress line of one renewal window (the rows are printed once the phase,
/// which a disturbance may repeat, is over).
fn log_renew(how: &str, m: &Measured) {
    println!(
        "  renewed {how}: {:.0}/s, server CPU {}",
        m.ops_per_sec(),
        m.usage
            .server_cores
            .map_or_else(|| "-".into(), |c| format!("{c:.3} cores")),
    );
}

/// The renewal window and its paced references.
fn renew_plan(o: &Opts) -> Plan {
    Plan {
        // Ramp-up: every connection has started its schedule.
        warmup: Duration::from_secs(2),
        measure: o.renew_window,
    }
}

fn targets(res: &Results) -> Vec<TargetLine> {
    let find = |id: &str| res.rows.iter().find(|r| r.id == id).map(|r| &r.m);
    let fsync = find("fsync-append");
    let fsync_ms = fsync.map(|m| m.p50_us / 1e3).filter(|v| v.is_finite());
    let bound_ms = fsync_ms.map(|f| HANDOFF_FSYNCS * f + HANDOFF_SLACK_MS);
    let goal = match (bound_ms, fsync_ms) {
        (Some(b), Some(f)) => format!("< {b:.3} ms (2 x {f:.3} + 5)"),
        _ => "< 2 fsync p50 + 5 ms".into(),
    };
    let mut out = Vec::new();
    for n in &res.locks {
        let c = n.contenders;
        let all = find(&format!("lock-{c}"));
        let cross = find(&format!("lock-{c}-cross"));
        let shaky = all.is_some_and(disturbed) || fsync.is_some_and(disturbed);
        let p99 = |m: Option<&Measured>| m.map(|m| m.p99_us / 1e3).filter(|v| v.is_finite());
        let all_p99 = p99(all);
        out.push(TargetLine {
            name: format!("lock hand-off p99, {c} contenders"),
            measured: all_p99,
            unit: "ms",
            goal: goal.clone(),
            met: all_p99.zip(bound_ms).map(|(p, b)| p < b),
            disturbed: shaky,
            reference: false,
        });
        let cross_p99 = p99(cross);
        out.push(TargetLine {
            name: "  for reference: hand-offs to another contender only".into(),
            measured: cross_p99,
            unit: "ms",
            goal: goal.clone(),
            met: cross_p99.zip(bound_ms).map(|(p, b)| p < b),
            disturbed: shaky,
            reference: true,
        });
    }
    // The target is the leader's cost as deployed: applications renew through
    // their local client agent, which forwards a `Session.Renew` RPC. The same
    // renewals over HTTP straight to the server stay visible as a reference.
    if let Some(m) = find("renew-rpc") {
        let n = res.sessions;
        renew_target(&mut out, m, false, res.renew_rate, |rate| {
            format!("server CPU, {n} sessions renewed at {rate:.0}/s over server RPC (as deployed)")
        });
    }
    if let Some(m) = find("renew-http") {
        renew_target(&mut out, m, true, res.renew_rate, |rate| {
            format!("  {RENEW_HTTP_LABEL} ({rate:.0}/s)")
        });
    }
    out
}

/// The renewal CPU target line of one renewal row, named by `name` given the
/// rate achieved (a reference line carries the figure but no verdict).
fn renew_target(
    out: &mut Vec<TargetLine>,
    m: &Measured,
    reference: bool,
    wanted: f64,
    name: impl Fn(f64) -> String,
) {
    let cores = m.usage.server_cores;
    let achieved = m.ops_per_sec();
    out.push(TargetLine {
        name: name(achieved),
        measured: cores,
        unit: "cores",
        goal: format!("< {RENEW_MAX_CORES:.2}"),
        met: cores.map(|c| c < RENEW_MAX_CORES),
        disturbed: disturbed(m),
        reference,
    });
    // If the schedule fell short (the driver could not keep up), say what the
    // measured CPU per renewal gives at the full rate. Labelled: it is an
    // extrapolation, not a measurement.
    if let Some(us) = report::server_us_per_op(m) {
        if achieved < 0.95 * wanted {
            out.push(TargetLine {
                name: format!("  EXTRAPOLATED to {wanted:.0} renewals/s ({us:.0} µs per renewal)"),
                measured: Some(us * wanted / 1e6),
                unit: "cores",
                goal: format!("< {RENEW_MAX_CORES:.2}"),
                met: None,
                disturbed: disturbed(m),
                reference: true,
            });
        }
    }
}
