//! etcd under test: a single member (Debian's `etcd-server`, 3.4) with its own
//! data directory on the benchmark disk, driven two ways:
//!
//! - **gRPC** (`etcdserverpb.KV/Put`, `/Range`): etcd's native API, what its Go
//!   client uses. The few messages needed are written out below as prost structs
//!   (field numbers from etcd's `rpc.proto` / `kv.proto`), so there is no protoc
//!   step. By default all clients share one HTTP/2 connection, as goroutines
//!   sharing one `clientv3.Client` do; that is etcd's best case here (one
//!   connection per client, `--etcd-conns 64`, costs it about half its write
//!   throughput on two cores). This is the comparison the PUT target is judged on.
//! - **JSON gateway** (`POST /v3/kv/put`, `/v3/kv/range`, base64 keys/values):
//!   the same HTTP/1.1 + JSON client as Tribune's rows. In etcd 3.4 the gateway
//!   is grpc-gateway, which re-dials etcd's own gRPC port over loopback, so these
//!   rows pay an extra hop; they are shown for reference only.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tonic::client::Grpc;
use tonic::codec::ProstCodec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::driver::{self, Ctx, Measured, Plan};
use crate::http::HttpConn;
use crate::kv::GET_KEYS;
use crate::procs::Proc;
use crate::sys::{free_port, Sampler};

/// `etcdserverpb.PutRequest` (only the fields we send).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// Key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// Cluster ID.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// Member ID.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// Store revision.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    /// Raft term.
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `etcdserverpb.PutResponse` (without `prev_kv`, which we never ask for).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    /// Header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `etcdserverpb.RangeRequest` (single key; the rest default).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    /// Key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Member-local read instead of a linearizable (ReadIndex) one.
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Revision of the key's creation.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// Revision of the last modification.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// Number of modifications.
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// Value.
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    /// Header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// Matching pairs.
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range.
    #[prost(int64, tag = "4")]
    pub count: i64,
}

/// A gRPC KV client on one HTTP/2 connection.
#[derive(Clone)]
pub struct KvClient {
    grpc: Grpc<Channel>,
}

impl KvClient {
    /// Connect to etcd's client URL.
    pub async fn connect(addr: SocketAddr) -> Result<KvClient> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(KvClient {
            grpc: Grpc::new(channel),
        })
    }

    /// `KV/Put`.
    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<PutResponse> {
        self.grpc
            .ready()
            .await
            .map_err(|e| anyhow!("channel: {e}"))?;
        let resp = self
            .grpc
            .unary(
                tonic::Request::new(PutRequest { key, value }),
                PathAndQuery::from_static("/etcdserverpb.KV/Put"),
                ProstCodec::<PutRequest, PutResponse>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// `KV/Range` of one key.
    pub async fn get(&mut self, key: Vec<u8>, serializable: bool) -> Result<RangeResponse> {
        self.grpc
            .ready()
            .await
            .map_err(|e| anyhow!("channel: {e}"))?;
        let resp = self
            .grpc
            .unary(
                tonic::Request::new(RangeRequest { key, serializable }),
                PathAndQuery::from_static("/etcdserverpb.KV/Range"),
                ProstCodec::<RangeRequest, RangeResponse>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }
}

/// A running etcd member.
pub struct Etcd {
    /// The process (killed on drop).
    pub proc: Proc,
    /// Client URL address (gRPC and the JSON gateway share it).
    pub client: SocketAddr,
}

/// The command line of one member of a new cluster (`initial_cluster`:
/// `name=peer_url,...`).
pub fn member_command(
    bin: &Path,
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg("--initial-cluster-state=new")
        // 8 GiB, etcd's documented maximum: the run must never hit NOSPACE.
        .arg("--quota-backend-bytes=8589934592")
        .arg("--logger=zap")
        .arg("--log-level=warn");
    // etcd also reads its flags from ETCD_* variables (Debian's unit file sets
    // them from /etc/default/etcd); make sure none leak in from our environment.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

impl Etcd {
    /// Start `bin` with its data directory and log under `dir`, and wait until it
    /// accepts a write.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Etcd> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let cmd = member_command(
            bin,
            "bench",
            &dir.join("etcd-data"),
            &client_url,
            &peer_url,
            &format!("bench={peer_url}"),
        );
        let proc = Proc::spawn("etcd", cmd, &dir.join("etcd.log"))?;
        let mut e = Etcd {
            proc,
            client: SocketAddr::from(([127, 0, 0, 1], client_port)),
        };
        e.wait_ready().await?;
        Ok(e)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_err = None;
        while Instant::now() < deadline {
            self.proc.check_alive()?;
            let attempt = async {
                let mut c = KvClient::connect(self.client).await?;
                c.put(b"bench/ready".to_vec(), b"1".to_vec()).await?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => last_err = Some(anyhow!("timed out")),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "etcd not ready after 60 s: {:#}\nend of its log:\n{}",
            last_err.unwrap_or_else(|| anyhow!("no attempt")),
            self.proc.log_tail()
        )
    }

    /// Write the keys the GET workloads read, and check one reads back intact
    /// through both APIs.
    pub async fn populate(&self, value: &Bytes) -> Result<()> {
        populate_at(self.client, value).await?;
        let mut h = HttpConn::connect(self.client).await?;
        let body = gw_range_body(&get_key(0), false);
        let (status, resp) = h.request(Method::POST, "/v3/kv/range", body, true).await?;
        let v: serde_json::Value = serde_json::from_slice(&resp)?;
        let got = v["kvs"][0]["value"]
            .as_str()
            .map(|s| b64().decode(s))
            .transpose()?;
        if status != StatusCode::OK || got.as_deref() != Some(value.as_ref()) {
            bail!(
                "etcd gateway range: {status}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
        Ok(())
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The key the GET workloads read as number `k` (same names as Tribune's).
fn get_key(k: usize) -> Vec<u8> {
    format!("bench/get/{k:05}").into_bytes()
}

fn gw_range_body(key: &[u8], serializable: bool) -> Bytes {
    Bytes::from(
        serde_json::json!({ "key": b64().encode(key), "serializable": serializable }).to_string(),
    )
}

/// Which API a workload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Native gRPC.
    Grpc,
    /// The grpc-gateway JSON API over HTTP/1.1.
    Gateway,
}

/// Put `value` under a new key per request, `clients` at a time.
pub async fn put_workload(
    addr: SocketAddr,
    api: Api,
    clients: usize,
    conns: usize,
    value: Bytes,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    let pool = grpc_pool(addr, api, clients, conns).await?;
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| {
        let value = value.clone();
        let mut grpc = pool.get(i % pool.len().max(1)).cloned();
        async move {
            let value_b64 = b64().encode(&value);
            let mut http = None;
            if api == Api::Gateway {
                http = Some(HttpConn::connect(addr).await?);
            }
            ctx.ready().await?;
            let mut seq = 0u64;
            while let Some(t0) = ctx.begin() {
                let key = format!("bench/put-{clients}/{i}/{seq}");
                seq += 1;
                let res = match (&mut grpc, &mut http) {
                    (Some(g), _) => g.put(key.into_bytes(), value.to_vec()).await.map(drop),
                    (_, Some(h)) => {
                        let body =
                            format!(r#"{{"key":"{}","value":"{value_b64}"}}"#, b64().encode(key));
                        gw_call(h, "/v3/kv/put", Bytes::from(body)).await
                    }
                    _ => unreachable!("one client is set"),
                };
                match res {
                    Ok(()) => ctx.done(t0),
                    Err(e) => ctx.failed(t0, e),
                }
            }
            Ok(ctx)
        }
    })
    .await
}

/// Range one of the `GET_KEYS` populated keys per request, serializable or linearizable.
pub async fn get_workload(
    addr: SocketAddr,
    api: Api,
    clients: usize,
    conns: usize,
    serializable: bool,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    let pool = grpc_pool(addr, api, clients, conns).await?;
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| {
        let mut grpc = pool.get(i % pool.len().max(1)).cloned();
        async move {
            let mut http = None;
            if api == Api::Gateway {
                http = Some(HttpConn::connect(addr).await?);
            }
            ctx.ready().await?;
            let keys = GET_KEYS;
            let mut k = i % keys;
            while let Some(t0) = ctx.begin() {
                let key = get_key(k);
                k = (k + clients) % keys;
                let res = match (&mut grpc, &mut http) {
                    (Some(g), _) => g.get(key, serializable).await.and_then(|r| {
                        if r.kvs.len() == 1 {
                            Ok(())
                        } else {
                            Err(anyhow!("Range returned {} pairs", r.kvs.len()))
                        }
                    }),
                    (_, Some(h)) => {
                        gw_call(h, "/v3/kv/range", gw_range_body(&key, serializable)).await
                    }
                    _ => unreachable!("one client is set"),
                };
                match res {
                    Ok(()) => ctx.done(t0),
                    Err(e) => ctx.failed(t0, e),
                }
            }
            Ok(ctx)
        }
    })
    .await
}

/// Writes the keys the GET workloads read through the member at `addr` and
/// checks one reads back intact over gRPC.
pub async fn populate_at(addr: SocketAddr, value: &Bytes) -> Result<()> {
    let keys = GET_KEYS;
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let value = value.clone();
        tasks.spawn(async move {
            let mut c = KvClient::connect(addr).await?;
            for k in (w..keys).step_by(workers) {
                c.put(get_key(k), value.to_vec()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let mut c = KvClient::connect(addr).await?;
    let r = c.get(get_key(0), false).await?;
    if r.kvs.first().map(|kv| kv.value.as_slice()) != Some(value.as_ref()) {
        bail!("etcd Range returned a different value than was Put");
    }
    Ok(())
}

/// The gRPC connections for a workload: `conns` HTTP/2 connections shared
/// round-robin by `clients` clients (gRPC multiplexes concurrent calls on one
/// connection). Empty for the gateway, whose clients each open an HTTP/1.1
/// connection.
async fn grpc_pool(
    addr: SocketAddr,
    api: Api,
    clients: usize,
    conns: usize,
) -> Result<Vec<KvClient>> {
    let mut pool = Vec::new();
    if api == Api::Grpc {
        for _ in 0..conns.clamp(1, clients) {
            pool.push(KvClient::connect(addr).await?);
        }
    }
    Ok(pool)
}

async fn gw_call(h: &mut HttpConn, path: &str, body: Bytes) -> Result<()> {
    let (status, resp) = h.request(Method::POST, path, body, true).await?;
    if status != StatusCode::OK {
        bail!("{path}: {status}: {}", String::from_utf8_lossy(&resp));
    }
    Ok(())
}
