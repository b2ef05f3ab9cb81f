//! `kv`: the KV benchmark. Runs, one system at a time so they never compete for
//! the two cores: the raw fdatasync loop, Tribune, etcd, and the bare hyper
//! server; then prints the table and the target ratios.
//!
//! Everything runs on loopback, in one temporary directory on the disk under
//! test, and is stopped and removed at the end (also on an error or Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::driver::{Measured, Plan};
use crate::etcd::{self, Api, Etcd};
use crate::fsync::{self, Mode};
use crate::http::HttpConn;
use crate::procs::Proc;
use crate::report::{self, Row};
use crate::sys::{self, free_port, Disk, Sampler};
use crate::tribune::{self, Tribune};

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches kv [options]

  --duration SECS        measured time per workload (default 10)
  --warmup SECS          unrecorded warm-up per workload (default 2)
  --clients N            concurrency of the multi-client workloads (default 64)
  --client-threads N     tokio worker threads of the load generator (default 1)
  --etcd-conns N         gRPC connections the etcd clients share (default: one each)
  --only LIST            comma-separated subset of fsync,tribune,etcd,etcd-gw,hyper
  --tribune PATH         tribune binary (default: next to this binary)
  --etcd PATH            etcd binary (default: /usr/bin/etcd)
  --data-root DIR        where the temporary data directories go (default: $TMPDIR
                         or /tmp); the fdatasync loop runs there too
  --json PATH            also write the results as JSON
";

/// Size of every value written.
const VALUE_SIZE: usize = 256;
/// Number of keys the GET workloads read.
const GET_KEYS: usize = 1024;

struct Opts {
    plan: Plan,
    clients: usize,
    client_threads: usize,
    etcd_conns: Option<usize>,
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
        etcd_conns: None,
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
            "--etcd-conns" => o.etcd_conns = Some(value()?.parse()?),
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
    std::fs::create_dir_all(&opts.data_root)?;
    // Removed when dropped, which happens after every process below is killed:
    // the processes live inside the future that `block_on` drops first.
    let tmp = tempfile::Builder::new()
        .prefix("tribune-bench-")
        .tempdir_in(&opts.data_root)
        .with_context(|| format!("creating a temp dir in {}", opts.data_root.display()))?;
    let disk = Disk::of(tmp.path()).unwrap_or_else(|e| {
        println!("note: no flush counts for this disk: {e:#}");
        Disk {
            name: "unknown".into(),
        }
    });
    let machine = sys::describe_machine();
    let disk_desc = sys::describe_disk(tmp.path(), &disk);
    println!("machine: {machine}");
    println!("disk:    {disk_desc}");
    if disk_desc.contains("(tmpfs") || disk_desc.contains("(ramfs") {
        println!("WARNING: {} is in memory: fdatasync is free there, durable-write figures mean nothing (use --data-root)", tmp.path().display());
    }
    println!(
        "plan:    {} s warm-up + {} s measured per workload; {} clients; load generator on {} tokio thread(s), sharing the machine with the server",
        opts.plan.warmup.as_secs_f64(),
        opts.plan.measure.as_secs_f64(),
        opts.clients,
        opts.client_threads
    );
    // Anything else running (a build, another test suite) takes CPU from the
    // servers and the client alike; say so rather than publish skewed figures.
    let background = sys::background_load(2.0);
    if let Some(b) = background {
        println!(
            "background CPU load before the run: {:.0}% of all cores",
            b * 100.0
        );
        if b > 0.10 {
            println!("WARNING: the machine is not idle; figures will be lower and noisier than they should be");
        }
    }
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
    let rows = rows?;
    println!();
    print!("{}", report::table(&rows));
    println!();
    print!("{}", report::ratios(&rows));
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
            "background_load": background,
            "value_size": VALUE_SIZE,
            "get_keys": GET_KEYS,
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report::to_json(&rows, meta))?,
        )?;
        println!("wrote {}", path.display());
    }
    drop(tmp);
    Ok(())
}

/// A 256-byte value of pseudo-random bytes, so nothing along the way (RocksDB's
/// block compression, say) gets an unrealistically easy time.
fn value() -> Bytes {
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
            id,
            workload: workload.to_owned(),
            clients,
            m,
        };
        log_row(&row);
        self.0.push(row);
    }
}

async fn run_all(o: &Opts, tmp: &Path, disk: &Disk) -> Result<Vec<Row>> {
    let plan = o.plan;
    let n = o.clients;
    let value = value();
    let mut rows = Rows(Vec::new());

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
            let m = tokio::task::spawn_blocking(move || fsync::run(&dir, mode, plan, &sampler))
                .await??;
            rows.push("disk", id, name, 1, m);
        }
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
        let m = tribune::put_workload(t.http, 1, value.clone(), plan, &sampler).await?;
        rows.push("tribune", "tribune-put-1", "PUT 256 B", 1, m);
        let m = tribune::put_workload(t.http, n, value.clone(), plan, &sampler).await?;
        rows.push("tribune", "tribune-put-n", "PUT 256 B", n, m);
        t.populate(GET_KEYS, &value).await?;
        let m = tribune::get_workload(t.http, n, GET_KEYS, false, plan, &sampler).await?;
        rows.push(
            "tribune",
            "tribune-get-default",
            "GET (default consistency)",
            n,
            m,
        );
        let m = tribune::get_workload(t.http, n, GET_KEYS, true, plan, &sampler).await?;
        rows.push("tribune", "tribune-get-stale", "GET ?stale", n, m);
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
        e.populate(GET_KEYS, &value).await?;
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
            let conns = o.etcd_conns.unwrap_or(n);
            let m = etcd::put_workload(e.client, api, 1, 1, value.clone(), plan, &sampler).await?;
            rows.push(system, id1, &format!("Put 256 B ({via})"), 1, m);
            let m =
                etcd::put_workload(e.client, api, n, conns, value.clone(), plan, &sampler).await?;
            rows.push(system, idn, &format!("Put 256 B ({via})"), n, m);
            let m =
                etcd::get_workload(e.client, api, n, conns, GET_KEYS, true, plan, &sampler).await?;
            rows.push(system, ids, &format!("Range serializable ({via})"), n, m);
            let m = etcd::get_workload(e.client, api, n, conns, GET_KEYS, false, plan, &sampler)
                .await?;
            rows.push(system, idl, &format!("Range linearizable ({via})"), n, m);
        }
        e.proc.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    if o.wants("hyper") {
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("hello-server").arg("--port").arg(port.to_string());
        let mut p = Proc::spawn("hello-server", cmd, &tmp.join("hello.log"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        wait_hello(&mut p, addr).await?;
        let sampler = Sampler::new(vec![p.pid()], disk.clone());
        let m = hello_workload(addr, n, plan, &sampler).await?;
        rows.push("hyper", "hyper-get", "GET hello world (bare hyper)", n, m);
        p.stop();
    }
    Ok(rows.0)
}

/// Install Debian's etcd 3.4 when it is missing and we may (root); otherwise say how.
fn ensure_etcd(bin: &Path) -> Result<()> {
    if bin.exists() {
        return Ok(());
    }
    if bin != Path::new("/usr/bin/etcd") {
        bail!("{} not found", bin.display());
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        bail!("/usr/bin/etcd not found; install it with: sudo apt-get install -y etcd-server");
    }
    println!("etcd: installing Debian's etcd-server");
    let apt = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success())
    };
    // A fresh machine may have no package lists yet.
    if !apt(&["install", "-y", "etcd-server"])? {
        apt(&["update"])?;
        apt(&["install", "-y", "etcd-server"])?;
    }
    if !bin.exists() {
        bail!(
            "apt-get install -y etcd-server did not provide {}",
            bin.display()
        );
    }
    // If the package started a system etcd (default ports, /var/lib/etcd), it is
    // left alone: ours has its own ports and data directory.
    Ok(())
}

async fn wait_hello(p: &mut Proc, addr: std::net::SocketAddr) -> Result<()> {
    for _ in 0..100 {
        p.check_alive()?;
        if let Ok(mut c) = HttpConn::connect(addr).await {
            if c.get_ok("/").await.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("hello-server did not answer on {addr}")
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
