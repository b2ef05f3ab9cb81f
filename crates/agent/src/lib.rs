//! The agent runtime every node runs.
//!
//! - [`Agent`]: local services and checks (registered through the HTTP API or config
//!   files), TTL check timers, maintenance mode, and anti-entropy that keeps the
//!   catalog in line with local state: every local change is pushed at once, and a
//!   periodic full sync corrects anything changed behind the agent's back.
//! - The agent implements [`tribune_http_api::Backend`], answering agent endpoints from
//!   local state and forwarding everything else to the servers through a
//!   [`tribune_rpc::ServerApi`] (in process on a server, gRPC on a client agent).
//! - [`config`]: the agent's configuration from flags, JSON and HCL files.
//! - [`dns`]: the catalog reads behind the DNS interface, and its configuration.
//! - [`https`]: the HTTPS API's TLS settings.
//! - [`rpc_tls`]: the internal RPC's TLS settings (`tls.internal_rpc`).
//! - [`tls_suites`]: `tls_cipher_suites` by Consul's names.

mod agent;
mod alias;
mod anti_entropy;
mod backend;
mod cache;
pub mod config;
mod coordinates;
pub mod dns;
pub mod https;
mod keyring;
mod leaf;
mod local;
mod membership;
mod metrics;
mod persist;
pub mod rexec;
pub mod rpc_tls;
pub mod tls_suites;

pub use agent::{load_check_tls, Agent, AgentConfig, AgentEvent};
pub use persist::PersistError;
