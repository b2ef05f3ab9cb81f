//! `kv`: the KV benchmark. Runs, with one system under load at a time so they
//! never compete for the two cores: the raw fdatasync loop and, with it (`--only
//! fsync`), the bare hyper server that appends and syncs each PUT (the
//! durable-write floor over HTTP), Tribune, the bare hyper server (then
//! alternating with Tribune for the GET target), and etcd; then prints the table
//! and the target ratios.
//!
//! Everything runs on loopback, in one temporary directory on the disk under
//! test, and is stopped and removed at the end (also on an error or Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::driver::{disturbed, wait_quiet, Measured, Plan, DISTURBED_CORES};
use crate::etcd::{self, Api, Etcd};
use crate::fsync::{self, Mode};
use crate::http::HttpConn;
use crate::procs::Proc;
use crate::report::{self, Round, Row};
use crate::sys::{self, free_port, Disk, Sampler};
use crate::tribune::{self, Tribune};

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches kv [options]

  --duration SECS        measured time per workload (default 10)
  --warmup SECS          unrecorded warm-up per workload (default 2)
  --clients N            concurrency of the multi-client workloads (default 64)
  --client-threads N     tokio worker threads of the load generator (default 1)
  --etcd-conns N         gRPC connections the etcd clients share (default 1, as
                         clients of one etcd clientv3.Client do; one per client
                         roughly halves etcd's throughput here)
  --rounds N             interleaved Tribune-GET-?stale / bare-hyper rounds for the
                         GET target (default 3; 0 = use the single rows)
  --retries N            repeat a workload disturbed by other processes (more than
                         0.25 cores of CPU not ours) after the machine quiets
                         down, up to N times (default 3)
  --only LIST            comma-separated subset of fsync,tribune,etcd,etcd-gw,hyper
                         (fsync includes the bare hyper PUT + fdatasync floor)
  --tribune PATH         tribune binary (default: next to this binary)
  --etcd PATH            etcd binary (default: /usr/bin/etcd)
  --data-root DIR        where the temporary data directories go (default: $TMPDIR
                         or /tmp); the fdatasync loop runs there too
  --json PATH            also write the results as JSON
";

/// Size of every value written.
const VALUE_SIZE: usize = 256;
/// Number of keys the GET workloads read (written by each system's `populate`).
pub const GET_KEYS: usize = 1024;

struct Opts {
    plan: Plan,
    clients: usize,
    client_threads: usize,
    etcd_conns: usize,
    rounds: usize,
    retries: usize,
    only: Vec<String>,
    tribune: PathBuf,
    etcd: PathBuf,
    data_root: PathBuf,
    json: Option<PathBuf>,
}

impl Opts {
    fn wants(&self, what: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == what)
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut o = Opts {
        plan: Plan {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(10),
        },
        clients: 64,
        client_threads: 1,
        etcd_conns: 1,
        rounds: 3,
        retries: 3,
        only: Vec::new(),
        tribune: bin_dir.join("tribune"),
        etcd: PathBuf::from("/usr/bin/etcd"),
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
            "--duration" => o.plan.measure = Duration::from_secs_f64(value()?.parse()?),
            "--warmup" => o.plan.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--clients" => o.clients = value()?.parse()?,
            "--client-threads" => o.client_threads = value()?.parse()?,
            "--etcd-conns" => o.etcd_conns = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--retries" => o.retries = value()?.parse()?,
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "--tribune" => o.tribune = value()?.into(),
            "--etcd" => o.etcd = value()?.into(),
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
    if o.clients == 0 || o.client_threads == 0 {
        bail!("--clients and --client-threads must be at least 1");
    }
    Ok(o)
}

/// Entry point of `tribune-benches kv`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let tmp = sys::bench_dir(&opts.data_root)?;
    let env = sys::Env::announce(tmp.path());
    let (disk, machine, disk_desc, background) =
        (env.disk, env.machine, env.disk_desc, env.background);
    println!(
        "plan:    {} s warm-up + {} s measured per workload; {} clients; load generator on {} tokio thread(s), sharing the machine with the server; etcd gRPC over {} connection(s); {} interleaved GET round(s)",
        opts.plan.warmup.as_secs_f64(),
        opts.plan.measure.as_secs_f64(),
        opts.clients,
        opts.client_threads,
        opts.etcd_conns,
        opts.rounds
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        tokio::select! {
            r = run_all(&opts, tmp.path(), &disk) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    // Drop the runtime before the temp dir so no task still holds a file in it.
    drop(rt);
    let (rows, rounds) = rows?;
    println!();
    print!("{}", report::table(&rows));
    println!();
    print!("{}", report::ratios(&rows, &rounds));
    let disturbed: Vec<String> = rows
        .iter()
        .filter(|r| disturbed(&r.m))
        .map(|r| format!("{} {} (c={})", r.system, r.workload, r.clients))
        .collect();
    if !disturbed.is_empty() {
        println!(
            "WARNING: something else used > {DISTURBED_CORES} cores during: {}; re-run on a quiet machine",
            disturbed.join("; ")
        );
    }
    for r in &rows {
        if let Some(e) = &r.m.first_error {
            println!("note: {} {}: first error: {e}", r.system, r.workload);
        }
    }
    if let Some(path) = &opts.json {
        let meta = serde_json::json!({
            "machine": machine,
            "disk": disk_desc,
            "warmup_secs": opts.plan.warmup.as_secs_f64(),
            "measure_secs": opts.plan.measure.as_secs_f64(),
            "clients": opts.clients,
            "client_threads": opts.client_threads,
            "etcd_conns": opts.etcd_conns,
            "background_load": background,
            "value_size": VALUE_SIZE,
            "get_keys": GET_KEYS,
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report::to_json(&rows, &rounds, meta))?,
        )?;
        println!("wrote {}", path.display());
    }
    drop(tmp);
    Ok(())
}

/// A 256-byte value of pseudo-random bytes, so nothing along the way (RocksDB's
/// block compression, say) gets an unrealistically easy time.
pub fn value() -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..VALUE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn log_row(row: &Row) {
    println!(
        "  {:<8} {:<38} c={:<3} {:>9.0} ops/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
        row.system,
        row.workload,
        row.clients,
        row.m.ops_per_sec(),
        row.m.p50_us / 1e3,
        row.m.p99_us / 1e3,
        row.m.errors
    );
}

struct Rows(Vec<Row>);

impl Rows {
    fn push(
        &mut self,
        system: &'static str,
        id: &'static str,
        workload: &str,
        clients: usize,
        m: Measured,
    ) {
        let row = Row {
            system,
            id: id.to_owned(),
            workload: workload.to_owned(),
            clients,
            m,
        };
        log_row(&row);
        self.0.push(row);
    }
}

async fn run_all(o: &Opts, tmp: &Path, disk: &Disk) -> Result<(Vec<Row>, Vec<Round>)> {
    let plan = o.plan;
    let n = o.clients;
    let value = value();
    let mut rows = Rows(Vec::new());
    let mut rounds = Vec::new();
    // Size of Tribune's KV GET response body, for the same-size hyper row.
    let mut get_body = None;
    let mut tribune: Option<(Tribune, PathBuf)> = None;

    if o.wants("fsync") {
        println!("raw fdatasync loop in {}", tmp.display());
        for (mode, id, name) in [
            (
                Mode::Append,
                "fsync-append",
                "write 256 B + fdatasync (append)",
            ),
            (
                Mode::Overwrite,
                "fsync-overwrite",
                "write 256 B + fdatasync (overwrite)",
            ),
        ] {
            let dir = tmp.to_path_buf();
            let sampler = Sampler::new(Vec::new(), disk.clone());
            let m = clean(o, || {
                let dir = dir.clone();
                let sampler = sampler.clone();
                async move {
                    tokio::task::spawn_blocking(move || fsync::run(&dir, mode, plan, &sampler))
                        .await?
                }
            })
            .await?;
            rows.push("disk", id, name, 1, m);
        }
        // The same single client's PUT against a bare hyper server that appends
        // and syncs the body before answering: the floor of an HTTP-acknowledged
        // durable write, against which the fixed cost of HTTP itself shows.
        let durable = Hello::start_durable(tmp, &tmp.join("hyper-fsync.dat")).await?;
        let sampler = durable.sampler(disk);
        let m = clean(o, || {
            tribune::put_workload(durable.addr, 1, value.clone(), plan, &sampler)
        })
        .await?;
        rows.push(
            "hyper",
            "hyper-put-fsync",
            "PUT 256 B, append + fdatasync, then answer (bare hyper)",
            1,
            m,
        );
        durable.proc.stop();
    }

    if o.wants("tribune") {
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
        let m = clean(o, || {
            tribune::put_workload(t.http, 1, value.clone(), plan, &sampler)
        })
        .await?;
        rows.push("tribune", "tribune-put-1", "PUT 256 B", 1, m);
        let m = clean(o, || {
            tribune::put_workload(t.http, n, value.clone(), plan, &sampler)
        })
        .await?;
        rows.push("tribune", "tribune-put-n", "PUT 256 B", n, m);
        get_body = Some(t.populate(&value).await?);
        let m = clean(o, || {
            tribune::get_workload(t.http, n, false, plan, &sampler)
        })
        .await?;
        rows.push(
            "tribune",
            "tribune-get-default",
            "GET (default consistency)",
            n,
            m,
        );
        let m = clean(o, || tribune::get_workload(t.http, n, true, plan, &sampler)).await?;
        rows.push("tribune", "tribune-get-stale", "GET ?stale", n, m);
        // Kept (idle) through the hyper phase for the interleaved rounds.
        tribune = Some((t, dir));
    }

    if o.wants("hyper") {
        let hello = Hello::start(tmp, None).await?;
        let h_sampler = hello.sampler(disk);
        let m = clean(o, || hello_workload(hello.addr, n, plan, &h_sampler)).await?;
        rows.push("hyper", "hyper-get", "GET hello world (bare hyper)", n, m);
        if let Some(size) = get_body {
            let sized = Hello::start(tmp, Some(size)).await?;
            let s_sampler = sized.sampler(disk);
            let m = clean(o, || hello_workload(sized.addr, n, plan, &s_sampler)).await?;
            let name = format!("GET {size} B body (bare hyper)");
            rows.push("hyper", "hyper-get-sized", &name, n, m);
            sized.proc.stop();
        }
        if let Some((t, _)) = &tribune {
            // This VM's throughput drifts by +-20% over minutes, which is as large
            // as the margin the GET target is about. Alternating the two servers
            // in rounds exposes both to the same drift; the target uses the median
            // of the per-round ratios.
            let t_sampler = Sampler::new(vec![t.proc.pid()], disk.clone());
            for round in 1..=o.rounds {
                let (mt, mh) = clean_pair(o, || async {
                    let mt = tribune::get_workload(t.http, n, true, plan, &t_sampler).await?;
                    let mh = hello_workload(hello.addr, n, plan, &h_sampler).await?;
                    Ok((mt, mh))
                })
                .await?;
                println!(
                    "  round {round}: Tribune GET ?stale {:.0} ops/s, bare hyper {:.0} ops/s, ratio {:.2}",
                    mt.ops_per_sec(),
                    mh.ops_per_sec(),
                    mt.ops_per_sec() / mh.ops_per_sec()
                );
                rounds.push(Round {
                    tribune: mt,
                    hyper: mh,
                });
            }
        }
        hello.proc.stop();
    }
    if let Some((t, dir)) = tribune.take() {
        t.proc.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    if o.wants("etcd") || o.wants("etcd-gw") {
        ensure_etcd(&o.etcd)?;
        let dir = tmp.join("etcd");
        std::fs::create_dir_all(&dir)?;
        println!("etcd: starting {}", o.etcd.display());
        let e = Etcd::start(&o.etcd, &dir).await?;
        let sampler = Sampler::new(vec![e.proc.pid()], disk.clone());
        e.populate(&value).await?;
        for (api, system, wanted) in [
            (Api::Grpc, "etcd", "etcd"),
            (Api::Gateway, "etcd-gw", "etcd-gw"),
        ] {
            if !o.wants(wanted) {
                continue;
            }
            let (id1, idn, ids, idl, via) = match api {
                Api::Grpc => (
                    "etcd-put-1",
                    "etcd-put-n",
                    "etcd-get-serial",
                    "etcd-get-linear",
                    "gRPC",
                ),
                Api::Gateway => (
                    "etcd-gw-put-1",
                    "etcd-gw-put-n",
                    "etcd-gw-get-serial",
                    "etcd-gw-get-linear",
                    "JSON gateway",
                ),
            };
            let conns = o.etcd_conns;
            let m = clean(o, || {
                etcd::put_workload(e.client, api, 1, 1, value.clone(), plan, &sampler)
            })
            .await?;
            rows.push(system, id1, &format!("Put 256 B ({via})"), 1, m);
            let m = clean(o, || {
                etcd::put_workload(e.client, api, n, conns, value.clone(), plan, &sampler)
            })
            .await?;
            rows.push(system, idn, &format!("Put 256 B ({via})"), n, m);
            let m = clean(o, || {
                etcd::get_workload(e.client, api, n, conns, true, plan, &sampler)
            })
            .await?;
            rows.push(system, ids, &format!("Range serializable ({via})"), n, m);
            let m = clean(o, || {
                etcd::get_workload(e.client, api, n, conns, false, plan, &sampler)
            })
            .await?;
            rows.push(system, idl, &format!("Range linearizable ({via})"), n, m);
        }
        e.proc.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    Ok((rows.0, rounds))
}

/// Run a workload; if something else on the machine took CPU during it (a build,
/// another test suite: this machine is shared), wait for the machine to be quiet
/// and run it again, up to `--retries` times. The last attempt is kept either way,
/// and the table still flags it.
async fn clean<F, Fut>(o: &Opts, mut f: F) -> Result<Measured>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Measured>>,
{
    let mut attempt = 0;
    loop {
        let m = f().await?;
        if !disturbed(&m) || attempt >= o.retries {
            return Ok(m);
        }
        attempt += 1;
        println!(
            "  (disturbed: {:.2} cores used by other processes; waiting for a quiet machine, attempt {} of {})",
            m.usage.other_cores.unwrap_or(0.0),
            attempt + 1,
            o.retries + 1
        );
        wait_quiet().await;
    }
}

/// [`clean`] for a pair of workloads that must be repeated together.
async fn clean_pair<F, Fut>(o: &Opts, mut f: F) -> Result<(Measured, Measured)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Measured, Measured)>>,
{
    let mut attempt = 0;
    loop {
        let (a, b) = f().await?;
        if !(disturbed(&a) || disturbed(&b)) || attempt >= o.retries {
            return Ok((a, b));
        }
        attempt += 1;
        println!(
            "  (disturbed round; waiting for a quiet machine, attempt {} of {})",
            attempt + 1,
            o.retries + 1
        );
        wait_quiet().await;
    }
}

/// Install Debian's etcd 3.4 when it is missing and we may (root); otherwise say how.
pub(crate) fn ensure_etcd(bin: &Path) -> Result<()> {
    if !bin.exists() && bin != Path::new("/usr/bin/etcd") {
        bail!("{} not found", bin.display());
    }
    // If the package starts a system etcd (default ports, /var/lib/etcd), it is
    // left alone: ours has its own ports and data directory.
    crate::apt::ensure(&[(bin, "etcd-server")])
}

/// A bare hyper server process (this binary's `hello-server`).
pub struct Hello {
    /// The process (killed on drop).
    pub proc: Proc,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl Hello {
    /// Start one in `tmp` (its log goes there); `body_size` pads its answer.
    pub async fn start(tmp: &Path, body_size: Option<usize>) -> Result<Hello> {
        Self::start_with(tmp, body_size, None).await
    }

    /// Start one that appends every PUT's body to `fsync_file` and syncs it before
    /// answering (the durable-write floor, see `hello.rs`).
    pub async fn start_durable(tmp: &Path, fsync_file: &Path) -> Result<Hello> {
        Self::start_with(tmp, None, Some(fsync_file)).await
    }

    async fn start_with(
        tmp: &Path,
        body_size: Option<usize>,
        fsync_file: Option<&Path>,
    ) -> Result<Hello> {
        let port = free_port()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("hello-server").arg("--port").arg(port.to_string());
        if let Some(n) = body_size {
            cmd.arg("--body-size").arg(n.to_string());
        }
        if let Some(f) = fsync_file {
            cmd.arg("--fsync-file").arg(f);
        }
        let log = tmp.join(format!("hello-{port}.log"));
        let mut proc = Proc::spawn("hello-server", cmd, &log)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            proc.check_alive()?;
            if let Ok(mut c) = HttpConn::connect(addr).await {
                if c.get_ok("/").await.is_ok() {
                    return Ok(Hello { proc, addr });
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("hello-server did not answer on {addr}")
    }

    fn sampler(&self, disk: &Disk) -> Sampler {
        Sampler::new(vec![self.proc.pid()], disk.clone())
    }
}

async fn hello_workload(
    addr: std::net::SocketAddr,
    clients: usize,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    crate::driver::run(clients, plan, sampler, move |_, mut ctx| async move {
        let mut c = HttpConn::connect(addr).await?;
        ctx.ready().await?;
        while let Some(t0) = ctx.begin() {
            // A path of the same shape as the KV reads, so request parsing costs
            // the client the same.
            match c.get_ok("/v1/kv/bench/get/00000?stale").await {
                Ok(_) => ctx.done(t0),
                Err(e) => ctx.failed(t0, e),
            }
        }
        Ok(ctx)
    })
    .await
}
