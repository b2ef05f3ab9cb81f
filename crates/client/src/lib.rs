//! Typed async client for Tribune's HTTP API, which is Consul's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tribune_client::Error> {
//! use tribune_client::{Client, Config, KvPutOptions, QueryOptions};
//!
//! let client = Client::new(Config::from_env())?;
//! client.kv().put("app/config", b"on", &KvPutOptions::default()).await?;
//! let (pair, meta) = client.kv().get("app/config", &QueryOptions::default()).await?;
//! assert_eq!(pair.and_then(|p| p.value).as_deref(), Some(&b"on"[..]));
//! // Block until the key changes (or the wait runs out).
//! let opts = QueryOptions { index: meta.index, ..Default::default() };
//! let _ = client.kv().get("app/config", &opts).await?;
//! # Ok(()) }
//! ```
//!
//! - [`Client`] and [`Config`] (address, token, datacenter; [`Config::from_env`] reads `CONSUL_HTTP_*`).
//! - Endpoint groups: [`Client::kv`], [`Client::catalog`], [`Client::agent`],
//!   [`Client::event`], [`Client::operator`], [`Client::session`], [`Client::snapshot`],
//!   [`Client::status`].
//! - Reads take [`QueryOptions`] and return [`QueryMeta`] from the `X-Consul-*` headers.
//! - Failures are [`Error`]; an unexpected HTTP status is [`Error::Status`].
//! - Coordination, interoperable with the Go client's `api.Lock` and `api.Semaphore`
//!   on the same keys: [`Lock`] (a mutex on one key), [`Semaphore`] (up to N holders
//!   under a prefix), and [`LeaderElection`] (a background campaign built on `Lock`).
//!   Each holds a session kept alive by [`Session::renew_periodic`], and reports a lost
//!   hold through [`LockLost`].
//! - [`service_def`] turns Consul service-definition files (JSON or HCL) into
//!   [`AgentServiceRegistration`]s.
//!
//! The JSON types here are the client's own (PascalCase, as on the wire) so the client
//! does not depend on the server's internal model. KV flags and indexes are `u64`
//! end to end: Consul clients store flags above 2^63.

mod agent;
mod catalog;
mod config;
mod config_entries;
mod connect_ca;
mod coord;
mod coordinate;
mod election;
mod error;
mod event;
mod health;
mod intention;
mod kv;
mod lock;
mod monitor;
mod operator;
mod query;
mod semaphore;
mod serde_util;
pub mod service_def;
mod session;
mod snapshot;
mod status;
mod tls;

use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

pub use agent::{
    Agent, AgentCheck, AgentMember, AgentSelf, AgentSelfConfig, AgentService,
    AgentServiceRegistration, AgentWeights, MembersOptions, ServiceAddress, ServiceRegisterOptions,
};
pub use catalog::{Catalog, CatalogNode, CatalogNodeServices, CatalogService};
pub use config::{
    parse_address, BasicAuth, Config, Endpoint, CACERT_ENV, CAPATH_ENV, CLIENT_CERT_ENV,
    CLIENT_KEY_ENV, DEFAULT_ADDRESS, HTTP_ADDR_ENV, HTTP_AUTH_ENV, HTTP_SSL_ENV,
    HTTP_SSL_VERIFY_ENV, HTTP_TOKEN_ENV, HTTP_TOKEN_FILE_ENV, TLS_SERVER_NAME_ENV,
};
pub use config_entries::{ConfigEntries, ConfigEntry};
pub use connect_ca::{CaConfig, ConnectCa};
pub use coord::{
    path_join, AcquireOutcome, DestroyOutcome, LockError, LockLost, DEFAULT_LOCK_RETRY_TIME,
    DEFAULT_MONITOR_RETRY_TIME, DEFAULT_SESSION_TTL, DEFAULT_WAIT_TIME,
};
pub use coordinate::{Coordinate, CoordinateEntry, Coordinates, DatacenterMap};
pub use election::{current_leader, LeaderElection};
pub use error::Error;
pub use event::{Event, UserEvent};
pub use health::{Health, HealthCheck, ServiceEntry};
pub use intention::{Intention, Intentions};
pub use kv::{Kv, KvDeleteOptions, KvPair, KvPutOptions};
pub use lock::{Lock, LockOptions, DEFAULT_LOCK_SESSION_NAME, LOCK_FLAG_VALUE};
pub use monitor::Monitor;
pub use operator::{
    AutopilotConfiguration, AutopilotServer, AutopilotState, AutopilotUpgrade, AutopilotZone,
    KeyringOptions, KeyringResponse, Operator, OperatorHealthReply, RaftConfiguration, RaftServer,
    ServerHealth,
};
pub use query::{QueryMeta, QueryOptions};
pub use semaphore::{
    Semaphore, SemaphoreDoc, SemaphoreOptions, DEFAULT_SEMAPHORE_SESSION_NAME,
    SEMAPHORE_FLAG_VALUE, SEMAPHORE_LOCK_KEY,
};
pub use session::{
    RenewEnd, ServiceCheck, Session, SessionBehavior, SessionCreateOptions, SessionEntry,
    SessionRenewal,
};
pub use snapshot::Snapshot;
pub use status::Status;
pub use tls::TlsOptions;

/// Characters escaped in a URL path: Go's `url.URL.EscapedPath` keeps unreserved
/// characters and `$&+,/:;=@`, so Tribune sees the same request paths Consul would.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

/// Characters escaped in a single path segment (Go's `url.PathEscape`): as [`PATH`]
/// plus `/`, `,` and `;`, so a service ID `a/b` stays one segment (`a%2Fb`).
const SEGMENT: &AsciiSet = &PATH.add(b'/').add(b',').add(b';');

/// Escapes a multi-segment path such as a KV key.
pub(crate) fn escape_path(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PATH).to_string()
}

/// Escapes one path segment such as a service ID or node name.
pub(crate) fn escape_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// A handle on one agent's HTTP API. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
    datacenter: Option<String>,
    auth: Option<BasicAuth>,
}

impl Client {
    /// Builds a client. Fails on an unusable address, TLS settings that cannot be
    /// loaded, or an unreadable token file; it does not contact the agent.
    pub fn new(config: Config) -> Result<Self, Error> {
        let endpoint = parse_address(&config.address, config.tls)?;
        let token = config.resolve_token()?;
        // No overall timeout: blocking queries legitimately take up to ~10 minutes.
        #[allow(unused_mut)] // only mutated on Unix
        let mut builder = reqwest::Client::builder();
        let base_url = match endpoint {
            Endpoint::Http { base_url } => base_url,
            Endpoint::Unix { path, tls } => {
                #[cfg(unix)]
                {
                    builder = builder.unix_socket(path);
                }
                #[cfg(not(unix))]
                drop(path);
                // The host part is not dialled on a socket; it fills the Host header
                // and is the name TLS verifies, as in the Go client.
                if tls {
                    "https://localhost"
                } else {
                    "http://localhost"
                }
                .to_owned()
            }
        };
        if base_url.starts_with("https://") {
            builder = builder.use_preconfigured_tls(tls::client_config(&config.tls_options)?);
        }
        let http = builder.build().map_err(Error::transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                token,
                datacenter: config.datacenter.filter(|dc| !dc.is_empty()),
                auth: config.http_auth,
            }),
        })
    }

    /// The URL requests are made against (`http://localhost` for Unix sockets).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The key/value store (`/v1/kv`).
    pub fn kv(&self) -> Kv<'_> {
        Kv::new(self)
    }

    /// The catalog (`/v1/catalog`).
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog::new(self)
    }

    /// Config entries (`/v1/config`).
    pub fn config_entries(&self) -> ConfigEntries<'_> {
        ConfigEntries::new(self)
    }

    /// The Connect CA's configuration (`/v1/connect/ca/configuration`).
    pub fn connect_ca(&self) -> ConnectCa<'_> {
        ConnectCa::new(self)
    }

    /// Connect intentions (`/v1/connect/intentions`).
    pub fn intentions(&self) -> Intentions<'_> {
        Intentions::new(self)
    }

    /// Health of services and checks (`/v1/health`).
    pub fn health(&self) -> Health<'_> {
        Health::new(self)
    }

    /// The local agent (`/v1/agent`).
    pub fn agent(&self) -> Agent<'_> {
        Agent::new(self)
    }

    /// The `/v1/event` endpoints.
    pub fn event(&self) -> Event<'_> {
        Event::new(self)
    }

    /// Operator endpoints (`/v1/operator`): the gossip keyring, Raft peers, Autopilot.
    pub fn operator(&self) -> Operator<'_> {
        Operator::new(self)
    }

    /// Snapshots of the servers' state (`/v1/snapshot`).
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::new(self)
    }

    /// Sessions (`/v1/session`).
    pub fn session(&self) -> Session<'_> {
        Session::new(self)
    }

    /// Network coordinates (`/v1/coordinate`).
    pub fn coordinate(&self) -> Coordinates<'_> {
        Coordinates::new(self)
    }

    /// Raft status (`/v1/status`).
    pub fn status(&self) -> Status<'_> {
        Status::new(self)
    }

    /// Starts a request: URL, token, basic auth and datacenter. `path` is already escaped.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        datacenter: Option<&str>,
        token: Option<&str>,
    ) -> RequestBuilder {
        let mut req = self
            .inner
            .http
            .request(method, format!("{}{}", self.inner.base_url, path));
        if let Some(token) = token
            .filter(|t| !t.is_empty())
            .or(self.inner.token.as_deref())
        {
            req = req.header("X-Consul-Token", token);
        }
        if let Some(auth) = &self.inner.auth {
            req = req.basic_auth(&auth.username, auth.password.as_ref());
        }
        if let Some(dc) = datacenter
            .filter(|dc| !dc.is_empty())
            .or(self.inner.datacenter.as_deref())
        {
            req = req.query(&[("dc", dc)]);
        }
        req
    }

    /// A `GET` carrying `opts` plus endpoint-specific `params`.
    pub(crate) fn query_request(
        &self,
        path: &str,
        opts: &QueryOptions,
        params: &[(&str, String)],
    ) -> RequestBuilder {
        let req = self.request(
            Method::GET,
            path,
            opts.datacenter.as_deref(),
            opts.token.as_deref(),
        );
        req.query(&opts.params()).query(params)
    }

    /// Sends a request; any 2xx is success, and so is 404 when `allow_404` (the
    /// caller turns it into "not found"). Other statuses become [`Error::Status`].
    pub(crate) async fn send(
        &self,
        req: RequestBuilder,
        allow_404: bool,
    ) -> Result<Response, Error> {
        let resp = req.send().await.map_err(Error::transport)?;
        let status = resp.status();
        if status.is_success() || (allow_404 && status == reqwest::StatusCode::NOT_FOUND) {
            return Ok(resp);
        }
        let code = status.as_u16();
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status {
            code,
            body: body.trim_end().to_owned(),
        })
    }

    /// Reads a whole response body as JSON.
    pub(crate) async fn decode<T: DeserializeOwned>(
        resp: Response,
        path: &str,
    ) -> Result<T, Error> {
        let bytes = resp.bytes().await.map_err(Error::transport)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// `GET` returning JSON and the query metadata.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
        params: &[(&str, String)],
    ) -> Result<(T, QueryMeta), Error> {
        let resp = self
            .send(self.query_request(path, opts, params), false)
            .await?;
        let meta = QueryMeta::from_headers(resp.headers())?;
        Ok((Self::decode(resp, path).await?, meta))
    }

    /// `GET` where 404 means "no such thing" (`None`), as for KV reads.
    pub(crate) async fn get_json_opt<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
        params: &[(&str, String)],
    ) -> Result<(Option<T>, QueryMeta), Error> {
        let resp = self
            .send(self.query_request(path, opts, params), true)
            .await?;
        let meta = QueryMeta::from_headers(resp.headers())?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok((None, meta));
        }
        Ok((Self::decode(resp, path).await?, meta))
    }

    /// A write whose response body is the literal `true` or `false`.
    pub(crate) async fn write_bool(&self, req: RequestBuilder, path: &str) -> Result<bool, Error> {
        let resp = self.send(req, false).await?;
        Self::decode(resp, path).await
    }

    /// A write whose response body carries nothing of interest.
    pub(crate) async fn write_unit(&self, req: RequestBuilder) -> Result<(), Error> {
        let resp = self.send(req, false).await?;
        // Drain the body so the connection can be reused.
        let _ = resp.bytes().await;
        Ok(())
    }
}
