//! `snapshot`: an operator snapshot of a large state, saved (`GET
//! /v1/snapshot`) and restored (`PUT /v1/snapshot`) through one server's HTTP
//! API: how long each takes, the archive's size, and the server's peak
//! resident memory during each next to its resident memory before (which is
//! mostly the state itself).
//!
//! The server is loaded with `--keys` KV entries of 256 random base64
//! characters (so gzip finds about what it would in real values), 64 per
//! `PUT /v1/txn`. The peak is the kernel's `VmHWM`, reset through
//! `/proc/<pid>/clear_refs` before each operation. The restore is checked: a key
//! written after the save must be gone afterwards.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::RngCore as _;

use crate::http::HttpConn;
use crate::sys;
use crate::tribune::{put, Tribune};

pub const USAGE: &str = "\
tribune-benches snapshot [options]
  --keys N          KV entries loaded before the snapshot (default 320000)
  --rounds N        save and restore this many times (default 2)
  --tribune PATH    tribune binary (default: next to this binary)
  --data-root DIR   where the server's data directory goes (default: the temp dir)
";

/// Keys per `PUT /v1/txn` (Consul's limit on operations per transaction).
const PER_TXN: usize = 64;

pub fn run(args: &[String]) -> Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let (mut keys, mut rounds) = (320_000usize, 2u32);
    let mut tribune = bin_dir.join("tribune");
    let mut data_root: PathBuf = std::env::temp_dir();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
        match a.as_str() {
            "--keys" => keys = v.parse()?,
            "--rounds" => rounds = v.parse::<u32>()?.max(1),
            "--tribune" => tribune = v.into(),
            "--data-root" => data_root = v.into(),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let tmp = sys::bench_dir(&data_root)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = Tribune::start(&tribune, tmp.path()).await?;
        let pid = server.proc.pid();
        let mut c = HttpConn::connect(server.http).await?;
        let start = Instant::now();
        load(&mut c, keys).await?;
        println!(
            "snapshot: {keys} keys of 256 B loaded in {:.1} s; server resident {:.0} MiB",
            start.elapsed().as_secs_f64(),
            status_mib(pid, "VmRSS:")?
        );
        for round in 1..=rounds {
            let before = status_mib(pid, "VmRSS:")?;
            reset_peak(pid)?;
            let start = Instant::now();
            let (status, archive) = c
                .request(Method::GET, "/v1/snapshot", Bytes::new(), false)
                .await?;
            if status != StatusCode::OK {
                bail!("GET /v1/snapshot: {status}");
            }
            println!(
                "  round {round}: save    {:>6.2} s, archive {:>5.1} MiB, server resident {before:.0} MiB, peak {:.0} MiB",
                start.elapsed().as_secs_f64(),
                archive.len() as f64 / f64::from(1 << 20),
                status_mib(pid, "VmHWM:")?
            );
            put(&mut c, "bench/after-save", Bytes::from_static(b"x")).await?;
            let before = status_mib(pid, "VmRSS:")?;
            reset_peak(pid)?;
            let start = Instant::now();
            let (status, body) = c.request(Method::PUT, "/v1/snapshot", archive, false).await?;
            if status != StatusCode::OK {
                bail!("PUT /v1/snapshot: {status}: {}", String::from_utf8_lossy(&body));
            }
            let took = start.elapsed().as_secs_f64();
            let peak = status_mib(pid, "VmHWM:")?;
            let (status, _) = c
                .request(Method::GET, "/v1/kv/bench/after-save", Bytes::new(), false)
                .await?;
            if status != StatusCode::NOT_FOUND {
                bail!("the restore kept a key written after the save ({status})");
            }
            println!(
                "  round {round}: restore {took:>6.2} s,                     server resident {before:.0} MiB, peak {peak:.0} MiB"
            );
        }
        server.proc.stop();
        anyhow::Ok(())
    })
}

/// Writes `keys` entries of 256 random base64 characters.
async fn load(c: &mut HttpConn, keys: usize) -> Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rng = rand::thread_rng();
    let mut raw = [0u8; 192];
    for first in (0..keys).step_by(PER_TXN) {
        let ops: Vec<serde_json::Value> = (first..(first + PER_TXN).min(keys))
            .map(|k| {
                rng.fill_bytes(&mut raw);
                // The stored value is the 256 base64 characters; the API carries
                // it base64-encoded once more.
                let value = b64.encode(b64.encode(raw));
                serde_json::json!({"KV": {"Verb": "set", "Key": format!("bench/snap/{k:08}"), "Value": value}})
            })
            .collect();
        let (status, body) = c
            .request(
                Method::PUT,
                "/v1/txn",
                serde_json::to_vec(&ops)?.into(),
                true,
            )
            .await?;
        if status != StatusCode::OK {
            bail!("PUT /v1/txn: {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

/// A `/proc/<pid>/status` field in MiB (`VmRSS:`, `VmHWM:`).
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    sys::proc_status_mib(pid, field).with_context(|| format!("no {field} for process {pid}"))
}

/// Resets the process's peak resident memory (`VmHWM`) to its current size.
fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak memory of {pid}"))
}
