//! The coordination workloads of `locks`, driven over Consul's session, KV-lock
//! and transaction HTTP API: lock contention on one key, session churn, 10-op
//! transactions, and a steady renewal schedule for many TTL sessions (also sent
//! over the server's internal gRPC, as client agents forward renewals).
//!
//! Every HTTP client follows what Consul's own Go `api` package does for the
//! same job (its `Lock` recipe, `Session().Create`/`Renew`, `Txn()`), one request
//! at a time on its own keep-alive connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::time::MissedTickBehavior;
use tribune_rpc::{GrpcClient, ServerApi};
use tribune_types::model::ops::{QueryOptions, ReadRequest, ReadResult};
use tribune_types::SessionId;

use crate::driver::{self, Ctx, Measured, Plan};
use crate::http::HttpConn;
use crate::sys::Sampler;

/// Session of a lock contender. `LockDelay` 0 s: with Consul's default 15 s a
/// lock freed by a destroyed session stays unclaimable for 15 s, and even the
/// plain release path would measure the delay rather than the hand-off. No TTL:
/// the contenders hold their sessions only for one row, and a TTL timer would
/// add renewals that are not what the row measures. `NodeChecks: []` so the
/// session does not depend on the agent's `serfHealth` check.
const LOCK_SESSION: &str = r#"{"Name":"bench-lock","LockDelay":"0s","NodeChecks":[]}"#;

/// Session of the churn and renewal workloads: a 10 s TTL, as a service's
/// leader-election session typically has.
const TTL_SESSION: &str = r#"{"Name":"bench-ttl","TTL":"10s","LockDelay":"0s","NodeChecks":[]}"#;

/// How long a waiting contender's blocking query may park on the server. Any
/// value works (a contender stops waiting at the end of the run anyway); Consul's
/// `api.Lock` uses its default wait too.
const LOCK_WAIT: &str = "10s";

/// `PUT /v1/session/create` with `body`; the new session's ID.
pub async fn create_session(c: &mut HttpConn, body: &'static str) -> Result<String> {
    let (status, resp) = c
        .request(
            Method::PUT,
            "/v1/session/create",
            Bytes::from_static(body.as_bytes()),
            true,
        )
        .await?;
    if status != StatusCode::OK {
        bail!(
            "session create: {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&resp).context("session create answer")?;
    Ok(v["ID"]
        .as_str()
        .context("no ID in the session create answer")?
        .to_owned())
}

/// `PUT /v1/session/renew/<id>`; a 404 (the session expired) is an error.
pub async fn renew_session(c: &mut HttpConn, id: &str) -> Result<()> {
    let (status, resp) = c
        .request(
            Method::PUT,
            &format!("/v1/session/renew/{id}"),
            Bytes::new(),
            false,
        )
        .await?;
    if status != StatusCode::OK {
        bail!(
            "session renew: {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok(())
}

/// `PUT /v1/session/destroy/<id>`.
pub async fn destroy_session(c: &mut HttpConn, id: &str) -> Result<()> {
    let (status, resp) = c
        .request(
            Method::PUT,
            &format!("/v1/session/destroy/{id}"),
            Bytes::new(),
            false,
        )
        .await?;
    if status != StatusCode::OK || resp.as_ref() != b"true" {
        bail!(
            "session destroy: {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok(())
}

/// A PUT answered `true` or `false` (`?acquire=`, `?release=`).
async fn put_bool(c: &mut HttpConn, path: &str, body: Bytes) -> Result<bool> {
    let (status, resp) = c.request(Method::PUT, path, body, false).await?;
    match (status, resp.as_ref()) {
        (StatusCode::OK, b"true") => Ok(true),
        (StatusCode::OK, b"false") => Ok(false),
        _ => bail!("PUT {path}: {status}: {}", String::from_utf8_lossy(&resp)),
    }
}

/// From a KV GET answer: its `X-Consul-Index` and whether a session holds the key.
fn lock_state(status: StatusCode, headers: &hyper::HeaderMap, body: &[u8]) -> Result<(u64, bool)> {
    let index = headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no X-Consul-Index on a KV GET")?;
    let held = match status {
        // Nobody has acquired the key yet.
        StatusCode::NOT_FOUND => false,
        StatusCode::OK => {
            let v: serde_json::Value = serde_json::from_slice(body).context("KV GET answer")?;
            v[0]["Session"].as_str().is_some_and(|s| !s.is_empty())
        }
        _ => bail!("KV GET: {status}: {}", String::from_utf8_lossy(body)),
    };
    Ok((index, held))
}

/// What the contenders of one lock saw, in lock order.
///
/// Acquisitions are recorded in the order the lock grants them: acquisition
/// `k + 1` needs release `k` on the server, which holder `k` sends only after
/// recording acquisition `k`. A release's acknowledgement and the next
/// acquisition's can reach this process in either order, though (both can be
/// answered from one raft batch), so releases are recorded against their
/// acquisition's number rather than by arrival.
#[derive(Default)]
struct Handoffs {
    /// Per acquisition: the winning contender and when its `true` arrived.
    acquired: Vec<(usize, Instant)>,
    /// Per acquisition: when the holder's release was acknowledged, and whether
    /// that was inside the measured window.
    released: Vec<Option<(Instant, bool)>>,
    /// Acquire attempts answered `false`, in the measured window.
    lost: u64,
    /// Blocking queries answered, in the measured window.
    waits: u64,
}

impl Handoffs {
    fn acquired(&mut self, who: usize, at: Instant) -> usize {
        self.acquired.push((who, at));
        self.released.push(None);
        self.acquired.len() - 1
    }
}

/// One lock-contention row.
pub struct LockRun {
    /// Every hand-off whose release was acknowledged in the window: latency from
    /// that acknowledgement to the next acquisition's; throughput in hand-offs/s.
    /// Carries the resource use.
    pub all: Measured,
    /// The hand-offs to a different contender than the one that released.
    pub cross: Measured,
    /// Hand-offs whose acquisition arrived before the release's acknowledgement
    /// (answered together; counted as 0).
    pub inverted: u64,
    /// Acquire attempts answered `false` in the window.
    pub lost: u64,
    /// Blocking queries answered in the window.
    pub waits: u64,
}

/// `contenders` clients, each with its own session, loop on one key: acquire;
/// if refused, block on the key until no session holds it, then try again; once
/// held, release at once.
pub async fn lock_workload(
    addr: SocketAddr,
    key: &str,
    contenders: usize,
    plan: Plan,
    sampler: &Sampler,
) -> Result<LockRun> {
    let log = Arc::new(Mutex::new(Handoffs::default()));
    let key: Arc<str> = key.into();
    let m = {
        let log = log.clone();
        driver::run(contenders, plan, sampler, move |i, ctx| {
            contender(addr, key.clone(), i, log.clone(), ctx)
        })
        .await?
    };
    let log = std::mem::take(&mut *log.lock().map_err(|_| anyhow!("poisoned"))?);
    let mut all = Vec::new();
    let mut cross = Vec::new();
    let mut inverted = 0;
    for (k, rel) in log.released.iter().enumerate() {
        let (Some((released, true)), Some(&(winner, acquired))) = (rel, log.acquired.get(k + 1))
        else {
            continue;
        };
        if acquired < *released {
            inverted += 1;
        }
        let ns = acquired.saturating_duration_since(*released).as_nanos() as u64;
        all.push(ns);
        if winner != log.acquired[k].0 {
            cross.push(ns);
        }
    }
    Ok(LockRun {
        all: Measured::from_samples(all, m.secs, m.errors, m.first_error, m.usage),
        cross: Measured::from_samples(cross, m.secs, 0, None, Default::default()),
        inverted,
        lost: log.lost,
        waits: log.waits,
    })
}

async fn contender(
    addr: SocketAddr,
    key: Arc<str>,
    i: usize,
    log: Arc<Mutex<Handoffs>>,
    mut ctx: Ctx,
) -> Result<Ctx> {
    let mut c = HttpConn::connect(addr).await?;
    let session = create_session(&mut c, LOCK_SESSION).await?;
    let acquire = format!("/v1/kv/{key}?acquire={session}");
    let release = format!("/v1/kv/{key}?release={session}");
    let value = Bytes::from(format!("contender {i}"));
    let lock = || log.lock().map_err(|_| anyhow!("hand-off log poisoned"));
    ctx.ready().await?;
    let end = ctx.end().context("run without an end")?;
    // The last X-Consul-Index seen on the key: a blocking query from it returns
    // at once if the key changed since, and otherwise parks until it does.
    let mut index = 0u64;
    'run: while let Some(t0) = ctx.begin() {
        match put_bool(&mut c, &acquire, value.clone()).await {
            Ok(true) => {
                let k = lock()?.acquired(i, Instant::now());
                // Everyone else waits until this goes through, so a release lost
                // to a transport error is retried rather than abandoned.
                loop {
                    match put_bool(&mut c, &release, value.clone()).await {
                        Ok(true) => {
                            let now = Instant::now();
                            lock()?.released[k] = Some((now, ctx.in_window(now)));
                            break;
                        }
                        Ok(false) => bail!("release of a held lock refused"),
                        Err(e) => {
                            ctx.failed(t0, e);
                            if ctx.begin().is_none() {
                                break 'run;
                            }
                        }
                    }
                }
            }
            Ok(false) => {
                if ctx.in_window(t0) {
                    lock()?.lost += 1;
                }
                // Consul's `api.Lock` recipe: block on the key until its Session
                // is empty, then try to acquire again.
                loop {
                    let path = format!("/v1/kv/{key}?index={index}&wait={LOCK_WAIT}");
                    let res = tokio::select! {
                        r = c.request_with_headers(Method::GET, &path, Bytes::new(), false) => r,
                        _ = tokio::time::sleep_until(end.into()) => break 'run,
                    };
                    let t = Instant::now();
                    match res.and_then(|(s, h, b)| lock_state(s, &h, &b)) {
                        Ok((seen, held)) => {
                            if ctx.in_window(t) {
                                lock()?.waits += 1;
                            }
                            // An index that goes backwards (a restored snapshot)
                            // means starting over from 0, as Consul's docs say.
                            index = if seen < index { 0 } else { seen };
                            if !held {
                                break;
                            }
                        }
                        Err(e) => {
                            ctx.failed(t0, e);
                            break;
                        }
                    }
                }
            }
            Err(e) => ctx.failed(t0, e),
        }
    }
    // On a fresh connection: the old one may still have a blocking query in
    // flight. Destroying the session also frees the lock if this contender held
    // it, so the next row (or a retry) starts on a free key.
    let mut c = HttpConn::connect(addr).await?;
    destroy_session(&mut c, &session).await?;
    Ok(ctx)
}

/// The kinds of request [`session_workload`] measures, in its result's order.
pub const SESSION_KINDS: [&str; 4] = ["create", "renew", "destroy", "cycle"];

/// `clients` clients each looping: create a TTL session, renew it, destroy it.
/// One [`Measured`] per entry of [`SESSION_KINDS`] ("cycle" is the three in a row).
pub async fn session_workload(
    addr: SocketAddr,
    clients: usize,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Vec<Measured>> {
    driver::run_kinds(
        clients,
        SESSION_KINDS.len(),
        plan,
        sampler,
        move |_, mut ctx: Ctx| async move {
            let mut c = HttpConn::connect(addr).await?;
            ctx.ready().await?;
            while let Some(t0) = ctx.begin() {
                let id = match create_session(&mut c, TTL_SESSION).await {
                    Ok(id) => id,
                    Err(e) => {
                        ctx.failed(t0, e);
                        continue;
                    }
                };
                ctx.done_kind(0, t0);
                let t1 = Instant::now();
                // A failed renewal still leaves a session to destroy.
                match renew_session(&mut c, &id).await {
                    Ok(()) => ctx.done_kind(1, t1),
                    Err(e) => ctx.failed(t1, e),
                }
                let t2 = Instant::now();
                match destroy_session(&mut c, &id).await {
                    Ok(()) => {
                        ctx.done_kind(2, t2);
                        ctx.done_kind(3, t0);
                    }
                    Err(e) => ctx.failed(t0, e),
                }
            }
            Ok(ctx)
        },
    )
    .await
}

/// `clients` clients each sending `PUT /v1/txn` with `ops` `set` operations on
/// new keys (`bench/txn-<clients>/<client>/<seq>/<op>`), each of `value`.
pub async fn txn_workload(
    addr: SocketAddr,
    clients: usize,
    ops: usize,
    value: &Bytes,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    let b64: Arc<str> = base64::engine::general_purpose::STANDARD
        .encode(value)
        .into();
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| {
        let b64 = b64.clone();
        async move {
            let mut c = HttpConn::connect(addr).await?;
            ctx.ready().await?;
            let mut seq = 0u64;
            while let Some(t0) = ctx.begin() {
                let body = txn_body(clients, i, seq, ops, &b64);
                seq += 1;
                match txn(&mut c, body).await {
                    Ok(()) => ctx.done(t0),
                    Err(e) => ctx.failed(t0, e),
                }
            }
            Ok(ctx)
        }
    })
    .await
}

fn txn_body(clients: usize, client: usize, seq: u64, ops: usize, b64: &str) -> Bytes {
    let ops: Vec<String> = (0..ops)
        .map(|j| {
            format!(
                r#"{{"KV":{{"Verb":"set","Key":"bench/txn-{clients}/{client}/{seq}/{j}","Value":"{b64}"}}}}"#
            )
        })
        .collect();
    Bytes::from(format!("[{}]", ops.join(",")))
}

async fn txn(c: &mut HttpConn, body: Bytes) -> Result<()> {
    let (status, resp) = c.request(Method::PUT, "/v1/txn", body, true).await?;
    // A rolled-back transaction is a 409 listing its errors; a committed one is
    // a 200 with `"Errors":null`.
    let text = String::from_utf8_lossy(&resp);
    if status != StatusCode::OK || !text.contains(r#""Errors":null"#) {
        bail!("txn: {status}: {text}");
    }
    Ok(())
}

/// Create `n` TTL sessions over `workers` connections. Returns their IDs and
/// the latency of each create, in nanoseconds.
pub async fn create_sessions(
    addr: SocketAddr,
    n: usize,
    workers: usize,
) -> Result<(Vec<String>, Vec<u64>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        tasks.spawn(async move {
            let mut c = HttpConn::connect(addr).await?;
            let mut out = Vec::new();
            for _ in (w..n).step_by(workers) {
                let t0 = Instant::now();
                let id = create_session(&mut c, TTL_SESSION).await?;
                out.push((id, t0.elapsed().as_nanos() as u64));
            }
            anyhow::Ok(out)
        });
    }
    let mut ids = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        for (id, ns) in r?? {
            ids.push(id);
            lat.push(ns);
        }
    }
    Ok((ids, lat))
}

/// Destroy sessions over `workers` connections.
pub async fn destroy_sessions(
    addr: SocketAddr,
    ids: Arc<Vec<String>>,
    workers: usize,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let ids = ids.clone();
        tasks.spawn(async move {
            let mut c = HttpConn::connect(addr).await?;
            for id in ids.iter().skip(w).step_by(workers) {
                destroy_session(&mut c, id).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// What a paced client sends as its `seq`-th request on connection `conn`:
/// method and path.
pub type PacedRequest = Arc<dyn Fn(usize, u64) -> (Method, String) + Send + Sync>;

/// One sender of a paced schedule ([`paced`]): whatever it sends its requests
/// over. `send` sends the `seq`-th request of sender `sender` and waits for the
/// answer; an error is a failed request.
pub trait PacedSender: Send + 'static {
    /// Send one request and wait for its answer.
    fn send(&mut self, sender: usize, seq: u64) -> impl Future<Output = Result<()>> + Send;
}

/// Send `rate` requests per second on a fixed schedule spread evenly over time:
/// `senders` senders each send one request per `senders / rate` seconds, their
/// ticks offset from each other so that together they tick every `1 / rate`.
/// `connect(j)` makes sender `j` (its connection is set up before the clock
/// starts). Latency is per request; throughput is the rate the schedule
/// achieved (it only falls short of `rate` if the server or this process cannot
/// keep up).
async fn paced<S, F, Fut>(
    rate: f64,
    senders: usize,
    plan: Plan,
    sampler: &Sampler,
    connect: F,
) -> Result<Measured>
where
    S: PacedSender,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<S>> + Send + 'static,
{
    let period = Duration::from_secs_f64(senders as f64 / rate);
    driver::run(senders, plan, sampler, move |j, mut ctx: Ctx| {
        let sender = connect(j);
        async move {
            let mut s = sender.await?;
            ctx.ready().await?;
            let end = ctx.end().context("run without an end")?;
            // Sender j starts j/senders of a period late, so the senders'
            // requests interleave evenly instead of arriving `senders` at a time.
            let phase = period.mul_f64(j as f64 / senders as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            // After a stall, catch up: a renewal schedule must still renew each
            // session once per period on average, as a real client's would.
            tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep_until(end.into()) => break,
                }
                let Some(t0) = ctx.begin() else { break };
                let res = s.send(j, seq).await;
                seq += 1;
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

/// A [`PacedSender`] over its own HTTP/1.1 keep-alive connection.
struct HttpSender {
    c: HttpConn,
    request: PacedRequest,
}

impl PacedSender for HttpSender {
    async fn send(&mut self, sender: usize, seq: u64) -> Result<()> {
        let (method, path) = (self.request)(sender, seq);
        let (status, body) = self.c.request(method, &path, Bytes::new(), false).await?;
        if status != StatusCode::OK {
            bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// [`paced`] over HTTP: `conns` connections, each one sender. `request` says
/// what each request is; any answer but 200 is an error.
pub async fn paced_workload(
    addr: SocketAddr,
    rate: f64,
    conns: usize,
    plan: Plan,
    sampler: &Sampler,
    request: PacedRequest,
) -> Result<Measured> {
    paced(rate, conns, plan, sampler, move |_| {
        let request = request.clone();
        async move {
            let c = HttpConn::connect(addr).await?;
            Ok(HttpSender { c, request })
        }
    })
    .await
}

/// Which of `n` sessions sender `j` of `senders` renews as its `seq`-th
/// renewal: it owns every `senders`-th session, from the `j`-th, and renews
/// them in turn.
fn owned_session(n: usize, senders: usize, j: usize, seq: u64) -> usize {
    let mine = (n - j).div_ceil(senders);
    j + senders * (seq as usize % mine)
}

/// Renew every session of `ids` once per `every`, evenly spread
/// ([`paced_workload`]) over `conns` HTTP connections (`PUT
/// /v1/session/renew/<id>`): connection `j` owns every `conns`-th session, from
/// the `j`-th, and renews them in turn. A renewal answered 404 (the session
/// expired) is an error.
pub async fn renew_workload(
    addr: SocketAddr,
    ids: Arc<Vec<String>>,
    conns: usize,
    every: Duration,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    if ids.is_empty() {
        bail!("no sessions to renew");
    }
    // Every connection must own at least one session.
    let conns = conns.min(ids.len());
    let rate = ids.len() as f64 / every.as_secs_f64();
    let request: PacedRequest = Arc::new(move |j, seq| {
        let k = owned_session(ids.len(), conns, j, seq);
        (Method::PUT, format!("/v1/session/renew/{}", ids[k]))
    });
    paced_workload(addr, rate, conns, plan, sampler, request).await
}

/// A [`PacedSender`] renewing sessions over the server's internal gRPC, on a
/// channel it may share with other senders (HTTP/2 multiplexes them).
struct RpcRenewer {
    client: GrpcClient,
    ids: Arc<Vec<SessionId>>,
    senders: usize,
}

impl PacedSender for RpcRenewer {
    async fn send(&mut self, sender: usize, seq: u64) -> Result<()> {
        let id = self.ids[owned_session(self.ids.len(), self.senders, sender, seq)];
        let (res, _) = self
            .client
            .read(ReadRequest::SessionRenew { id }, QueryOptions::default())
            .await
            .with_context(|| format!("Session.Renew {id}"))?;
        match res {
            // What the HTTP endpoint turns into a 404: the session expired.
            ReadResult::Sessions(found) if found.is_empty() => {
                bail!("Session.Renew {id}: session not found")
            }
            ReadResult::Sessions(_) => Ok(()),
            _ => bail!("Session.Renew {id}: answered with something else than sessions"),
        }
    }
}

/// [`renew_workload`]'s schedule (the same `senders`, rate and session
/// ownership), sent as `Session.Renew` RPCs to the server's RPC address `rpc`
/// the way client agents forward their applications' renewals: the senders
/// share `channels` gRPC connections (sender `j` uses connection `j %
/// channels`), each connected before the clock starts. A renewal of a session
/// the server no longer has is an error.
pub async fn renew_rpc_workload(
    rpc: SocketAddr,
    ids: Arc<Vec<SessionId>>,
    senders: usize,
    channels: usize,
    every: Duration,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    if ids.is_empty() {
        bail!("no sessions to renew");
    }
    let senders = senders.min(ids.len());
    let channels = channels.clamp(1, senders);
    let rate = ids.len() as f64 / every.as_secs_f64();
    let mut clients = Vec::with_capacity(channels);
    for _ in 0..channels {
        let c = GrpcClient::new(&format!("http://{rpc}"))?;
        // The channel connects lazily: make it connect now, outside the window.
        c.status()
            .await
            .with_context(|| format!("server RPC status on {rpc}"))?;
        clients.push(c);
    }
    paced(rate, senders, plan, sampler, move |j| {
        let sender = RpcRenewer {
            client: clients[j % channels].clone(),
            ids: ids.clone(),
            senders,
        };
        async move { Ok(sender) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::owned_session;

    #[test]
    fn senders_split_the_sessions_and_renew_each_in_turn() {
        let (n, senders) = (10, 4);
        let mut seen = vec![0; n];
        for j in 0..senders {
            let mine = (n - j).div_ceil(senders);
            // Two full rounds of sender j: each of its sessions twice.
            for seq in 0..2 * mine as u64 {
                let k = owned_session(n, senders, j, seq);
                assert_eq!(k % senders, j);
                seen[k] += 1;
            }
        }
        assert_eq!(seen, vec![2; n]);
    }
}
