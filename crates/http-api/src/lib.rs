//! Consul's HTTP API on axum.
//!
//! - [`Backend`]: everything the API needs from the agent it runs in (cluster reads and
//!   writes forwarded to the servers, and the agent's local state). The only port.
//! - [`router`]: the `/v1/...` routes, inside Consul's wrapper conventions ([`Api`]). Each handler parses with the shared extractors in
//!   [`params`] (blocking, consistency, `dc`, token, `filter`), calls the backend, and
//!   answers through [`reply`] (the `X-Consul-*` headers, `?pretty` or a `-dev` agent).
//! - [`ApiError`]: the one error type, mapped to Consul's status codes and plain-text bodies.
//! - [`dto`]: Consul's JSON shapes (PascalCase out; case-insensitive and snake_case in).
//! - [`filter`]: the `?filter=` expression language (go-bexpr).
//! - [`connlimit`]: `limits.http_max_conns_per_client` on the listeners ([`serve`], [`serve_tls`]).
//!
//! This is the only crate that knows Consul's JSON.

pub mod backend;
pub mod connlimit;
mod conventions;
pub mod discovery_chain;
pub mod dto;
pub mod error;
pub mod filter;
pub mod json_in;
pub mod params;
pub mod reply;
mod routes;

pub use axum::http::{HeaderName, HeaderValue};
pub use backend::{
    AgentInfo, ArchiveBody, Backend, BackendError, ClusterStatus, DatacenterCoordinates, Gauge,
    KeyringOp, KeyringPool, KeyringRequest, LeafCert, LogLine, ServiceRegistration,
    SnapshotDownload, UserEvent,
};
pub use conventions::Api;
pub use error::ApiError;
pub use routes::agent::services::{port_assignment, sidecar_registration, take_sidecar};
pub use routes::{router, serve, serve_tls, HttpConfig, TlsListener};
pub use tribune_types::connlimit::ConnLimiter;
