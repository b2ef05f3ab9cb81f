//! [`ServerPool`]: how a client agent talks to "the servers" — one [`ServerApi`] over a
//! changing set of server addresses (learned from gossip or configured), with one
//! reused gRPC connection per server.
//!
//! Requests go to the agent's current preferred server. When a server cannot be
//! reached the pool moves on to the next one and keeps the new one preferred, so a dead
//! server costs one failed attempt, not one per request. Reads are always retried on
//! the next server; writes only when the failure proves the write was not applied (the
//! connection could not be made, or the server answered "no leader"), because a
//! retried CAS or lock acquisition must not apply twice. [`ServerPool::rebalance`]
//! (called periodically by the agent) moves the preference to a random server so
//! clients spread over the servers, as Consul's router does.
//!
//! `limits.rpc_rate` / `rpc_max_burst` bound how fast the agent sends requests
//! ([`ServerPool::set_rate_limit`]); over the limit a request fails at once with
//! Consul's "RPC rate limit exceeded" (429), without reaching a server.

use crate::tls::RpcTls;
use crate::{ArchiveStream, GrpcClient, RpcError, ServerApi, ServerStatus, SnapshotDownload};
use async_trait::async_trait;
use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tribune_types::model::operator::{OperatorReply, OperatorRequest};
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};

/// Consul's error when a client agent knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";

#[derive(Default)]
struct State {
    /// Server RPC addresses (`ip:port`), preferred first.
    order: Vec<String>,
    clients: HashMap<String, GrpcClient>,
}

/// A [`ServerApi`] over a set of servers with failover.
pub struct ServerPool {
    state: Mutex<State>,
    /// `limits.rpc_rate`: unlimited unless configured.
    limit: Mutex<crate::TokenBucket>,
    /// `limits.rpc_client_timeout` (zero: none).
    client_timeout: Mutex<Duration>,
    /// How connections to the servers are opened (`tls.internal_rpc`).
    tls: Arc<RpcTls>,
}

impl Default for ServerPool {
    fn default() -> Self {
        Self::with_tls(RpcTls::new(crate::RpcTlsConfig::plain()))
    }
}

/// What a server that took longer than `limits.rpc_client_timeout` fails
/// with (Go's text for a passed deadline).
pub const TIMED_OUT: &str = "rpc error making call: i/o timeout";

impl std::fmt::Debug for ServerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPool")
            .field("servers", &self.state.lock().order)
            .finish()
    }
}

/// Whether a failed request certainly did not reach a server, or was refused
/// before anything was done with it (so even a write may be retried elsewhere):
/// a rate limit that says another server may take it is Consul's one
/// retryable refusal.
pub fn not_sent(e: &RpcError) -> bool {
    match e {
        RpcError::NoLeader | RpcError::RateLimited(crate::RateLimited::RetryElsewhere) => true,
        // tonic reports a failed connect as a transport error mentioning it.
        RpcError::Transport(m) => {
            let m = m.to_ascii_lowercase();
            m.contains("connect") || m.contains("connection refused") || m.contains(NO_SERVERS)
        }
        _ => false,
    }
}

/// Whether another server might answer a read that failed this way.
fn retry_read(e: &RpcError) -> bool {
    matches!(
        e,
        RpcError::Transport(_)
            | RpcError::NoLeader
            | RpcError::ShuttingDown
            | RpcError::RateLimited(crate::RateLimited::RetryElsewhere)
    )
}

impl ServerPool {
    /// An empty pool (every request fails with [`NO_SERVERS`] until servers are set).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool whose connections are opened as `tls` says at the time.
    pub fn with_tls(tls: Arc<RpcTls>) -> Self {
        ServerPool {
            state: Mutex::default(),
            limit: Mutex::new(crate::TokenBucket::new(None, 0.0, Instant::now())),
            client_timeout: Mutex::new(Duration::ZERO),
            tls,
        }
    }

    /// Replaces the set of servers. Known servers keep their place and connection; new
    /// ones are appended; gone ones are dropped.
    pub fn set_servers(&self, addrs: &[String]) {
        let mut st = self.state.lock();
        st.order.retain(|a| addrs.contains(a));
        for a in addrs {
            if !st.order.contains(a) {
                st.order.push(a.clone());
            }
        }
        let keep = st.order.clone();
        st.clients.retain(|a, _| keep.contains(a));
    }

    /// Limits the requests sent to the servers to `rate` a second with bursts
    /// of `burst` (`limits.rpc_rate`, `rpc_max_burst`); `None` lifts the limit.
    pub fn set_rate_limit(&self, rate: Option<f64>, burst: u32) {
        self.limit
            .lock()
            .reconfigure(rate, f64::from(burst), Instant::now());
    }

    /// How long one server may take to answer (`limits.rpc_client_timeout`;
    /// zero: as long as it takes). A blocking read may take its wait, and a
    /// sixteenth of it for the server's jitter, on top.
    pub fn set_client_timeout(&self, timeout: Duration) {
        *self.client_timeout.lock() = timeout;
    }

    /// The time one server has for a request that may block for `wait`.
    fn deadline_for(&self, wait: Duration) -> Option<Duration> {
        let base = *self.client_timeout.lock();
        (!base.is_zero()).then(|| base + wait + wait / 16)
    }

    /// Counts one request against `limits.rpc_rate`.
    fn admit(&self) -> Result<(), RpcError> {
        let mut limit = self.limit.lock();
        if !limit.is_limited() || limit.allow(Instant::now()) {
            Ok(())
        } else {
            Err(RpcError::RateLimited(crate::RateLimited::ClientRpc))
        }
    }

    /// The servers, preferred first.
    pub fn servers(&self) -> Vec<String> {
        self.state.lock().order.clone()
    }

    /// Makes a random server the preferred one.
    pub fn rebalance(&self) {
        let mut st = self.state.lock();
        if st.order.len() > 1 {
            let k = rand::thread_rng().gen_range(0..st.order.len());
            st.order.rotate_left(k);
        }
    }

    /// The servers to try, in order, with their (lazily connecting) clients.
    fn candidates(&self) -> Result<Vec<(String, GrpcClient)>, RpcError> {
        let mut st = self.state.lock();
        if st.order.is_empty() {
            return Err(RpcError::Transport(NO_SERVERS.into()));
        }
        let order = st.order.clone();
        let mut out = Vec::with_capacity(order.len());
        for a in order {
            let client = match st.clients.get(&a) {
                Some(c) => c.clone(),
                None => {
                    let c = GrpcClient::dial(&a, &self.tls)?;
                    st.clients.insert(a.clone(), c.clone());
                    c
                }
            };
            out.push((a, client));
        }
        Ok(out)
    }

    /// Moves a failed server to the back, unless the order changed meanwhile.
    fn demote(&self, addr: &str) {
        let mut st = self.state.lock();
        if st.order.first().map(String::as_str) == Some(addr) {
            st.order.rotate_left(1);
        }
    }

    /// Sends a request to each server in turn until one answers, or fails in
    /// a way `retry` says another server should not be asked. Each server has
    /// `deadline` (see [`ServerPool::deadline_for`]; `None`: no limit); a
    /// timeout counts as a transport failure that may have reached the server.
    async fn each<T, F, Fut>(
        &self,
        retry: fn(&RpcError) -> bool,
        deadline: Option<Duration>,
        mut call: F,
    ) -> Result<T, RpcError>
    where
        F: FnMut(GrpcClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        self.admit()?;
        let mut last = RpcError::Transport(NO_SERVERS.into());
        for (addr, client) in self.candidates()? {
            let answer = match deadline {
                Some(d) => tokio::time::timeout(d, call(client))
                    .await
                    .unwrap_or_else(|_| Err(RpcError::Transport(TIMED_OUT.into()))),
                None => call(client).await,
            };
            match answer {
                Ok(v) => return Ok(v),
                Err(e) if retry(&e) => {
                    tracing::debug!(server = %addr, error = %e, "server failed; trying the next one");
                    self.demote(&addr);
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

#[async_trait]
impl ServerApi for ServerPool {
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        self.each(not_sent, self.deadline_for(Duration::ZERO), |c| {
            let req = req.clone();
            async move { c.write(req).await }
        })
        .await
    }

    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        let wait = if opts.min_index > 0 {
            opts.max_wait
        } else {
            Duration::ZERO
        };
        self.each(retry_read, self.deadline_for(wait), |c| {
            let req = req.clone();
            async move { c.read(req, opts).await }
        })
        .await
    }

    async fn status(&self) -> Result<ServerStatus, RpcError> {
        self.each(
            retry_read,
            self.deadline_for(Duration::ZERO),
            |c| async move { c.status().await },
        )
        .await
    }

    async fn operator(&self, req: OperatorRequest) -> Result<OperatorReply, RpcError> {
        // Removing a peer or moving leadership must not happen twice.
        self.each(not_sent, self.deadline_for(Duration::ZERO), |c| {
            let req = req.clone();
            async move { c.operator(req).await }
        })
        .await
    }

    async fn snapshot_save(&self, stale: bool) -> Result<SnapshotDownload, RpcError> {
        // Retried only until a server starts answering: a download cut off
        // later fails, as the bytes already passed on cannot be taken back.
        // No deadline: making a large snapshot may take a while.
        self.each(
            retry_read,
            None,
            |c| async move { c.snapshot_save(stale).await },
        )
        .await
    }

    async fn snapshot_restore(&self, archive: ArchiveStream) -> Result<(), RpcError> {
        // One server only: the upload is consumed as it is sent. The server
        // forwards it to the leader itself.
        self.admit()?;
        let (_, client) = self
            .candidates()?
            .into_iter()
            .next()
            .ok_or_else(|| RpcError::Transport(NO_SERVERS.into()))?;
        client.snapshot_restore(archive).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_servers_keeps_order_and_rebalance_rotates() {
        let pool = ServerPool::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        pool.set_servers(&s(&["a:1", "b:1", "c:1"]));
        pool.demote("a:1");
        assert_eq!(pool.servers(), s(&["b:1", "c:1", "a:1"]));
        pool.set_servers(&s(&["a:1", "c:1", "d:1"]));
        assert_eq!(pool.servers(), s(&["c:1", "a:1", "d:1"]));
        for _ in 0..10 {
            pool.rebalance();
            let mut got = pool.servers();
            got.sort();
            assert_eq!(got, s(&["a:1", "c:1", "d:1"]));
        }
    }

    #[tokio::test]
    async fn rpc_rate_refuses_before_sending_and_can_be_lifted() {
        async fn status(pool: &ServerPool) -> RpcError {
            pool.status().await.unwrap_err()
        }
        // No servers: a request that got past the limit fails with NO_SERVERS.
        let pool = ServerPool::new();
        let no_servers = RpcError::Transport(NO_SERVERS.into());
        assert_eq!(status(&pool).await, no_servers);
        // A burst of two, refilled at one request an hour.
        pool.set_rate_limit(Some(1.0 / 3600.0), 2);
        for _ in 0..2 {
            assert_eq!(status(&pool).await, no_servers);
        }
        let refused = status(&pool).await;
        assert_eq!(
            refused,
            RpcError::RateLimited(crate::RateLimited::ClientRpc)
        );
        assert_eq!(refused.to_string(), "RPC rate limit exceeded");
        assert!(!not_sent(&refused) && !retry_read(&refused));
        pool.set_rate_limit(None, 2);
        assert_eq!(status(&pool).await, no_servers);
    }

    #[test]
    fn blocking_reads_get_their_wait_on_top_of_the_client_timeout() {
        let pool = ServerPool::new();
        assert_eq!(pool.deadline_for(Duration::from_secs(160)), None);
        pool.set_client_timeout(Duration::from_secs(60));
        assert_eq!(
            pool.deadline_for(Duration::ZERO),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            pool.deadline_for(Duration::from_secs(160)),
            Some(Duration::from_secs(230))
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(crate::serve(
            listener,
            std::sync::Arc::new(crate::silent::Silent),
            Default::default(),
            Default::default(),
            std::future::pending(),
        ));
        let pool = ServerPool::new();
        pool.set_servers(&[addr.to_string()]);
        pool.set_client_timeout(Duration::from_millis(300));
        let got = pool
            .read(
                ReadRequest::KvGet { key: "k".into() },
                QueryOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(got, RpcError::Transport(TIMED_OUT.into()));
        assert!(retry_read(&got) && !not_sent(&got));
        server.abort();
    }

    #[test]
    fn only_unsent_writes_are_retried() {
        assert!(not_sent(&RpcError::NoLeader));
        assert!(not_sent(&RpcError::Transport(
            "transport error: tcp connect error: Connection refused".into()
        )));
        assert!(!not_sent(&RpcError::Transport("timeout expired".into())));
        assert!(!not_sent(&RpcError::ShuttingDown));
        assert!(retry_read(&RpcError::Transport("timeout expired".into())));
        // A rate limit that points elsewhere refused before doing anything; the
        // leader's "try again later" is final.
        let elsewhere = RpcError::RateLimited(crate::RateLimited::RetryElsewhere);
        let later = RpcError::RateLimited(crate::RateLimited::RetryLater);
        assert!(not_sent(&elsewhere) && retry_read(&elsewhere));
        assert!(!not_sent(&later) && !retry_read(&later));
    }
}
