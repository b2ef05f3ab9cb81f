//! The `.consul` DNS domain, on hickory-proto and hickory-server's request types.
//!
//! A guided tour:
//!
//! - [`DnsServer`] binds UDP and TCP listeners and answers until shut down; [`serve`]
//!   does both in one call.
//! - [`Lookup`] is the port to the catalog (the agent implements it with stale reads
//!   from the servers); this crate never talks to servers itself. [`MemLookup`] is an
//!   in-memory implementation.
//! - [`DnsConfig`] is Consul's `dns_config` plus the agent settings DNS needs.
//! - [`query`] classifies question names (`web.service.dc1.consul`,
//!   `_web._tcp.service.consul`, `c000020a.addr.consul`, PTR names, ...).
//!
//! Inside, a request goes through a sans-io pipeline: classify the name, read the
//! catalog, build the records (health-filtered, shuffled with an injected RNG, TTLs
//! from the config), set header and EDNS, trim to the requester's buffer. Names
//! outside `domain`/`alt_domain` are forwarded to `recursors`, or REFUSED.
//!
//! Positive service answers are also kept pre-encoded in an answer cache that the
//! UDP and TCP listeners answer repeated questions from without entering the pipeline;
//! an entry is dropped as soon as the catalog index behind it moves
//! ([`Lookup::wait_service`]). Lookups that report no index are never cached.
//!
//! This is the only crate that knows hickory types.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tribune_dns::{DnsConfig, DnsServer, MemLookup};
//!
//! # async fn example() -> Result<(), tribune_dns::DnsError> {
//! let config = DnsConfig {
//!     bind: vec!["127.0.0.1:0".parse().unwrap()],
//!     ..DnsConfig::default()
//! };
//! let server = DnsServer::bind(config, Arc::new(MemLookup::new("dc1"))).await?;
//! println!("DNS on {:?}", server.udp_addrs());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod answer;
mod cache;
mod config;
mod engine;
#[cfg(test)]
mod fixtures;
mod lookup;
mod mem;
pub mod query;
mod recursor;
mod response;
mod server;
mod slow;
mod tcp;
mod trim;
mod udp;

pub use config::{DnsConfig, RecursorStrategy, SoaConfig};
pub use lookup::{Lookup, LookupError, ServerInfo};
pub use mem::MemLookup;
pub use server::{serve, DnsError, DnsServer, Transport};
