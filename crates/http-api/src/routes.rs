//! The `/v1` router and the helpers every handler shares.

mod acl;
pub(crate) mod agent;
mod catalog;
mod config;
mod connect;
mod coordinate;
mod discovery_chain;
mod event;
mod health;
mod intentions;
mod kv;
mod operator;
mod query;
mod raft;
mod session;
mod snapshot;
mod status;
mod txn;

pub(crate) use kv::{get_direct as kv_get_direct, put_direct as kv_put_direct};

use crate::backend::Backend;
use crate::connlimit::{self, Limited, PeerKey, PerConnection};
use crate::conventions::Api;
use crate::error::ApiError;
use crate::filter::Filter;
use crate::params::{Params, QueryTimes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tribune_types::connlimit::{Admission, ClientKey, ConnLimiter};
use tribune_types::model::ops::{Consistency, QueryMeta, ReadRequest, ReadResult};
use tribune_types::net::Cidr;

/// HTTP-level limits and settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `limits.kv_max_value_size`.
    pub kv_max_value_size: usize,
    /// `limits.txn_max_req_len`.
    pub txn_max_req_len: usize,
    /// `acl.default_policy` (`allow` or `deny`), sent on every response as
    /// `X-Consul-Default-ACL-Policy`, as Consul does even with ACLs disabled.
    pub default_acl_policy: &'static str,
    /// `disable_http_unprintable_char_filter`: accept paths with non-printable
    /// characters (Consul refuses them with a bare 400 unless this is set).
    pub allow_unprintable_paths: bool,
    /// `http_config.block_endpoints`: path prefixes answered with 403.
    pub block_endpoints: Vec<String>,
    /// `http_config.allow_write_http_from`: the networks whose clients may
    /// write (empty: every client).
    pub allow_write_from: Vec<Cidr>,
    /// `http_config.response_headers`: added to every answer (an endpoint's
    /// own header of the same name wins, as in Consul).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `default_query_time` and `max_query_time`.
    pub query_times: QueryTimes,
    /// `http_config.use_cache`: whether `?cached` reads use the agent's
    /// cache (when off, the flag is ignored, as in Consul).
    pub use_cache: bool,
    /// `ports.sidecar_min_port`..=`ports.sidecar_max_port`: where sidecar
    /// services registered without a port get one; `None` when either end is
    /// disabled, which turns the assignment off as in Consul.
    pub sidecar_ports: Option<std::ops::RangeInclusive<u16>>,
    /// `http_config.max_header_bytes` (0: unset; see [`Api`]).
    pub max_header_bytes: usize,
    /// Indent every JSON answer as `?pretty` does: Consul's agents do in
    /// `-dev` mode (`marshalJSON`: `?pretty` or `DevMode`).
    pub pretty_always: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
            default_acl_policy: "allow",
            allow_unprintable_paths: false,
            block_endpoints: Vec::new(),
            allow_write_from: Vec::new(),
            response_headers: Vec::new(),
            query_times: QueryTimes::default(),
            use_cache: true,
            sidecar_ports: Some(21000..=21255),
            max_header_bytes: 0,
            pretty_always: false,
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: Arc<HttpConfig>,
}

/// Builds the `/v1` router over `backend`, inside Consul's conventions
/// ([`Api`]).
pub fn router(backend: Arc<dyn Backend>, config: HttpConfig) -> Api {
    let cap = body_cap(&config);
    let state = AppState {
        backend,
        config: Arc::new(config),
    };
    let state_for_reads = state.clone();
    let routes = Router::new()
        .merge(kv::routes())
        .merge(acl::routes())
        .merge(catalog::routes())
        .merge(health::routes())
        .merge(status::routes())
        .merge(config::routes())
        .merge(coordinate::routes())
        .merge(connect::routes())
        .merge(intentions::routes())
        .merge(agent::routes())
        .merge(event::routes())
        .merge(operator::routes())
        .merge(raft::routes())
        .merge(snapshot::routes())
        .merge(query::routes())
        .merge(discovery_chain::routes())
        .merge(session::routes())
        .merge(txn::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(cap))
        .with_state(state);
    let api = Api::new(routes, &state_for_reads.config);
    api.with_kv_direct(state_for_reads)
}

/// The most of a request body an endpoint that buffers it reads (the router's
/// `DefaultBodyLimit`, and the direct KV write's). Bodies are size-checked by
/// each handler against Consul's limits (to answer 413 with Consul's text);
/// this outer cap only bounds memory. (`PUT /v1/snapshot` streams its body
/// and is not bounded by it.)
pub(crate) fn body_cap(config: &HttpConfig) -> usize {
    config.kv_max_value_size.max(config.txn_max_req_len) * 4 + 64 * 1024
}

/// A response being made outside the router (boxed: it is one allocation
/// against the router's several).
pub(crate) type DirectFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// Consul's index handler, which also answers every path no endpoint matched: the
/// root says what this server is (there is no web UI in this build), anything else is
/// a 404 whose text tells API users what went wrong.
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/" {
        return (
            StatusCode::OK,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
        )
            .into_response();
    }
    let text = if path.contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    };
    (StatusCode::NOT_FOUND, text).into_response()
}

/// Where the HTTPS API listens: TCP, or a unix socket (Consul serves TLS on both).
#[derive(Debug)]
pub enum TlsListener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix socket listener.
    Unix(tokio::net::UnixListener),
}

/// A connection accepted by a [`TlsListener`].
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl TlsListener {
    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, String, ClientKey)> {
        match self {
            TlsListener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Box::new(s), peer.to_string(), peer.client_key()))
            }
            TlsListener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), "unix socket".to_owned(), ClientKey::Unix))
            }
        }
    }
}

/// Serves `router` over TLS on an already-bound listener until `shutdown`
/// resolves, then lets the open connections finish their requests (the caller
/// bounds how long). Each connection's handshake runs in its own task, and the
/// handshake and the first request's headers share one deadline
/// (`limits.https_handshake_timeout`), so a slow or silent client holds a
/// connection no longer than that. HTTP/1.1 and HTTP/2 (by ALPN) are served. A
/// failed handshake (no certificate configured, a client certificate refused)
/// ends that connection only, after its alert ([`linger_close`], which also
/// holds it up to a second at shutdown). Each connection takes the newest configuration
/// `tls` holds, so certificates reloaded by the agent apply to new connections.
/// A client over `limiter`'s limit gets Consul's 429 over TLS, as Consul writes
/// it to the TLS connection (see [`crate::connlimit`]).
pub async fn serve_tls(
    listener: TlsListener,
    router: Api,
    tls: tokio::sync::watch::Receiver<Arc<tokio_rustls::rustls::ServerConfig>>,
    handshake_timeout: std::time::Duration,
    limiter: Arc<ConnLimiter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped as we go, so the set stays small.
        while connections.try_join_next().is_some() {}
        let (stream, peer, key) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of descriptors and the like: back off instead of
                    // spinning on an error that the next accept would repeat.
                    tracing::warn!(%error, "HTTPS accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.borrow()));
        let permit = match limiter.admit(key) {
            Admission::Admitted(permit) => permit,
            Admission::LimitReached { limit } => {
                tracing::debug!(%peer, limit, "HTTPS connection over the per-client limit refused");
                connections.spawn(async move {
                    // A short budget of its own: a client already at its limit
                    // must not hold more sockets for a whole handshake timeout.
                    let budget = handshake_timeout.min(connlimit::REFUSAL_HANDSHAKE_BUDGET);
                    let accept = acceptor.accept(stream);
                    if let Ok(Ok(stream)) = tokio::time::timeout(budget, accept).await {
                        connlimit::refuse(stream).await;
                    }
                });
                continue;
            }
        };
        let client = match key {
            ClientKey::Ip(ip) => Some(ip),
            ClientKey::Unix => None,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.for_client(client));
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            // Under TLS too the slot is freed as the server ends the
            // connection, before its side of the socket closes (see `Counted`).
            let stream = connlimit::Counted::new(stream, permit);
            let deadline = tokio::time::Instant::now() + handshake_timeout;
            let accept = acceptor.accept(stream).into_fallible();
            let stream = match tokio::time::timeout_at(deadline, accept).await {
                Ok(Ok(stream)) => stream,
                Ok(Err((error, io))) => {
                    tracing::debug!(%peer, %error, "HTTPS handshake failed");
                    linger_close(io).await;
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "HTTPS handshake timed out");
                    return;
                }
            };
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                );
            let conn = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            // The guard `wait_for` returns must not live across the awaits below.
            let stopped = async move {
                let _ = stop.wait_for(|v| *v).await;
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopped => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "HTTPS connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long a connection whose handshake failed is kept for its client to
/// read the alert and close.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// How much of what such a client sends is read (and dropped) meanwhile.
const LINGER_BYTES: usize = 64 * 1024;

/// Closes a connection whose handshake failed without resetting it. With TLS
/// 1.3 a client learns that its certificate was refused only after it has
/// finished its side of the handshake, and it sends its request at once; had
/// we closed the socket with that request unread, the kernel would answer with
/// a reset, and the client would report "broken pipe" or "connection reset"
/// instead of the alert the TLS layer has already written ("certificate
/// required", which the Go client's own tests look for). So: end our side
/// (FIN after the alert), then read and drop what the client still sends until
/// it closes, for at most [`LINGER`] and [`LINGER_BYTES`].
async fn linger_close<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S) {
    use tokio::io::AsyncWriteExt as _;
    if io.shutdown().await.is_err() {
        return;
    }
    connlimit::drain(&mut io, LINGER, LINGER_BYTES).await;
}

/// Serves `router` on an already-bound listener (TCP or unix socket) until
/// `shutdown` resolves, admitting connections through `limiter`
/// (`limits.http_max_conns_per_client`, see [`crate::connlimit`]).
pub async fn serve<L>(
    listener: L,
    router: Api,
    limiter: Arc<ConnLimiter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: PeerKey + std::fmt::Debug,
{
    axum::serve(Limited::new(listener, limiter), PerConnection(router))
        .with_graceful_shutdown(shutdown)
        .await
}

impl AppState {
    /// Rejects a `?dc=` other than ours: the one datacenter-forwarding point. Until WAN
    /// federation exists every other datacenter is unreachable.
    pub(crate) fn check_dc(&self, p: &Params) -> Result<(), ApiError> {
        match p.get("dc") {
            Some(dc) if !dc.is_empty() && dc != self.backend.agent_info().datacenter => {
                Err(ApiError::Internal("No path to datacenter".into()))
            }
            _ => Ok(()),
        }
    }

    /// Rejects a write whose body names another datacenter (clients such as py-consul
    /// send `Datacenter` in the body instead of `?dc=`).
    pub(crate) fn check_body_dc(&self, dc: &str) -> Result<(), ApiError> {
        if !dc.is_empty() && dc != self.backend.agent_info().datacenter {
            return Err(ApiError::Internal("No path to datacenter".into()));
        }
        Ok(())
    }

    /// Runs a (possibly blocking) read with the request's query options; `?cached`
    /// asks the agent's cache first.
    pub(crate) async fn read(
        &self,
        p: &Params,
        req: ReadRequest,
    ) -> Result<(ReadResult, QueryMeta), ApiError> {
        self.check_dc(p)?;
        let opts = p.query_options(self.config.query_times)?;
        if p.has("cached") && self.config.use_cache {
            if opts.consistency == Consistency::Consistent {
                return Err(ApiError::bad(
                    "Cannot specify ?cached with ?consistent, conflicting semantics.",
                ));
            }
            return Ok(self.backend.read_cached(req, opts).await?);
        }
        Ok(self.backend.read(req, opts).await?)
    }
}

/// Applies `?filter=` to rendered rows. The filter runs over each row's JSON, so the
/// selectors are exactly Consul's field names.
pub(crate) fn apply_filter<T: Serialize>(
    rows: Vec<T>,
    filter: Option<&Filter>,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let v = serde_json::to_value(&row).map_err(|e| ApiError::Internal(e.to_string()))?;
        let keep = match filter {
            None => true,
            Some(f) => f
                .matches(&v)
                .map_err(|e| ApiError::bad(format!("Failed to evaluate filter: {e}")))?,
        };
        if keep {
            out.push(v);
        }
    }
    Ok(out)
}

/// The body of a write that answers Consul's literal `true`/`false`.
pub(crate) fn bool_reply(ok: bool, pretty: bool) -> Response {
    // Every KV write answers one of these: no serializer, no body buffer.
    // Consul's indented form ends in a newline, as every pretty answer does.
    let body: &'static [u8] = match (ok, pretty) {
        (true, false) => b"true",
        (false, false) => b"false",
        (true, true) => b"true\n",
        (false, true) => b"false\n",
    };
    crate::reply::json_bytes(StatusCode::OK, body)
}

/// An unexpected result variant: a bug between backend and handler, not bad input.
pub(crate) fn mismatch(what: &str) -> ApiError {
    ApiError::Internal(format!("internal error: unexpected result for {what}"))
}
