//! Tribune under test: a durable single server (`agent -server -bootstrap`) with
//! its data directory on the benchmark disk, driven over Consul's HTTP API (and,
//! for `dns`, queried on its DNS port; for `locks`' renewals, also over its
//! server RPC port, as a client agent would).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::driver::{self, Ctx, Measured, Plan};
use crate::http::HttpConn;
use crate::kv::GET_KEYS;
use crate::procs::Proc;
use crate::sys::{free_port, Sampler};

/// A running Tribune server.
pub struct Tribune {
    /// The process (killed on drop).
    pub proc: Proc,
    /// Its HTTP API address.
    pub http: SocketAddr,
    /// Its server RPC address (`ports.server`): the internal gRPC service client
    /// agents forward their requests to.
    pub rpc: SocketAddr,
}

impl Tribune {
    /// Start `bin` with its data directory and log under `dir`, and wait until it
    /// is leader and accepts a write.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Tribune> {
        Tribune::start_with(bin, dir, None, None).await
    }

    /// [`Tribune::start`], also serving DNS on 127.0.0.1:`dns_port` when given
    /// (otherwise DNS is off), and pinned to CPU `cpu` with `taskset` when given
    /// (taskset execs the agent, so the process id is still the agent's).
    pub async fn start_with(
        bin: &Path,
        dir: &Path,
        dns_port: Option<u16>,
        cpu: Option<usize>,
    ) -> Result<Tribune> {
        let http_port = free_port()?;
        let rpc_port = free_port()?;
        let config = serde_json::json!({
            "ports": {
                "http": http_port,
                "server": rpc_port,
                "serf_lan": free_port()?,
                "serf_wan": free_port()?,
                "dns": dns_port.map_or(-1, i32::from),
                "grpc": -1,
            },
            // The load generators open up to 512 connections from one
            // address; Consul's default of 200 per client would turn most away.
            "limits": {"http_max_conns_per_client": 4096},
        });
        let config_path = dir.join("tribune.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let data = dir.join("tribune-data");
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("agent")
            .arg("-server")
            .arg("-bootstrap")
            .arg(format!("-data-dir={}", data.display()))
            .arg("-node=bench")
            .arg("-bind=127.0.0.1")
            .arg("-client=127.0.0.1")
            .arg(format!("-config-file={}", config_path.display()));
        let proc = Proc::spawn("tribune", cmd, &dir.join("tribune.log"))?;
        let mut t = Tribune {
            proc,
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc_port)),
        };
        t.wait_ready().await?;
        Ok(t)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_err = None;
        while Instant::now() < deadline {
            self.proc.check_alive()?;
            match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "tribune not ready after 60 s: {:#}\nend of its log:\n{}",
            last_err.unwrap_or_else(|| anyhow::anyhow!("no attempt")),
            self.proc.log_tail()
        )
    }

    async fn probe(&self) -> Result<()> {
        let mut c = HttpConn::connect(self.http).await?;
        let leader = c.get_ok("/v1/status/leader").await?;
        if leader.as_ref() == b"\"\"" || leader.is_empty() {
            bail!("no leader yet");
        }
        put(&mut c, "bench/ready", Bytes::from_static(b"1")).await
    }

    /// Write the keys the GET workloads read, and check one reads back intact.
    /// Returns the size of a GET response body.
    pub async fn populate(&self, value: &Bytes) -> Result<usize> {
        populate_at(self.http, value).await
    }
}

/// Writes the keys the GET workloads read through the server at `http`, checks
/// one reads back intact, and returns the size of a GET response body.
pub async fn populate_at(http: SocketAddr, value: &Bytes) -> Result<usize> {
    let keys = GET_KEYS;
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let addr = http;
        let value = value.clone();
        tasks.spawn(async move {
            let mut c = HttpConn::connect(addr).await?;
            for k in (w..keys).step_by(workers) {
                put(&mut c, &get_key(k), value.clone()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let mut c = HttpConn::connect(http).await?;
    let body = c.get_ok(&format!("/v1/kv/{}", get_key(0))).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).context("GET response")?;
    let b64 = v[0]["Value"].as_str().context("no Value in GET response")?;
    let got = base64::engine::general_purpose::STANDARD.decode(b64)?;
    if got != value.as_ref() {
        bail!("GET returned a different value than was PUT");
    }
    Ok(body.len())
}

/// The key the GET workloads read as number `k`.
fn get_key(k: usize) -> String {
    format!("bench/get/{k:05}")
}

/// `PUT /v1/kv/<key>` with `value`; fails unless answered `true`.
pub async fn put(c: &mut HttpConn, key: &str, value: Bytes) -> Result<()> {
    let (status, body) = c
        .request(Method::PUT, &format!("/v1/kv/{key}"), value, false)
        .await?;
    if status != StatusCode::OK || body.as_ref() != b"true" {
        bail!("PUT {key}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// PUT `value` under a new key per request (`bench/put-<clients>/<client>/<seq>`),
/// `clients` at a time.
pub async fn put_workload(
    addr: SocketAddr,
    clients: usize,
    value: Bytes,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| {
        let value = value.clone();
        async move {
            let mut c = HttpConn::connect(addr).await?;
            ctx.ready().await?;
            let mut seq = 0u64;
            while let Some(t0) = ctx.begin() {
                let key = format!("bench/put-{clients}/{i}/{seq}");
                seq += 1;
                match put(&mut c, &key, value.clone()).await {
                    Ok(()) => ctx.done(t0),
                    Err(e) => ctx.failed(t0, e),
                }
            }
            Ok(ctx)
        }
    })
    .await
}

/// GET one of the `GET_KEYS` populated keys per request, default consistency or `?stale`.
pub async fn get_workload(
    addr: SocketAddr,
    clients: usize,
    stale: bool,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    let suffix = if stale { "?stale" } else { "" };
    get_workload_with(addr, clients, suffix, plan, sampler).await
}

/// [`get_workload`] with any query suffix (`?consistent`).
pub async fn get_workload_with(
    addr: SocketAddr,
    clients: usize,
    suffix: &'static str,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| async move {
        let mut c = HttpConn::connect(addr).await?;
        ctx.ready().await?;
        // Clients start at different keys and stride by the client count, so
        // together they sweep the whole key set.
        let keys = GET_KEYS;
        let mut k = i % keys;
        while let Some(t0) = ctx.begin() {
            let path = format!("/v1/kv/{}{suffix}", get_key(k));
            k = (k + clients) % keys;
            match c.get_ok(&path).await {
                Ok(_) => ctx.done(t0),
                Err(e) => ctx.failed(t0, e),
            }
        }
        Ok(ctx)
    })
    .await
}
