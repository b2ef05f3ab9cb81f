//! The port between DNS and the catalog: [`Lookup`].
//!
//! The agent implements it with (stale by default) reads from the servers; this crate
//! never talks to servers or the store itself. [`MemLookup`](crate::MemLookup) is an
//! in-memory implementation for tests.

use async_trait::async_trait;
use std::net::IpAddr;
use std::time::Duration;
use tribune_types::model::ops::HealthEntry;
use tribune_types::model::query::QueryExecution;
use tribune_types::model::{Node, Service};

/// Why the catalog could not be read.
///
/// Mapped as Consul's `rCodeFromError` does: [`LookupError::Unavailable`] is answered
/// SERVFAIL, [`LookupError::NoPathToDatacenter`] NXDOMAIN with the SOA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The servers could not answer (no leader when a non-stale read was required,
    /// transport failure, shutting down).
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    /// A datacenter other than ours was named and cannot be reached.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
}

/// A server of the cluster, for NS records and their glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Node name (the NS target is `<name>.node.<dc>.<domain>`, with a glue A/AAAA).
    pub name: String,
    /// Its address.
    pub addr: IpAddr,
}

/// What the DNS server needs from the catalog. Every call names the datacenter asked
/// for (`None` = the agent's own).
///
/// Names (services, nodes, datacenters) arrive lower-cased because DNS is
/// case-insensitive; implementations match them case-insensitively, as Consul's
/// catalog indexes do. Staleness (`allow_stale`, `max_stale`) is the implementor's
/// concern.
#[async_trait]
pub trait Lookup: Send + Sync + 'static {
    /// The agent's datacenter.
    fn datacenter(&self) -> String;
    /// Instances of a service with their node and checks (unfiltered: health
    /// filtering is DNS's job). With `connect`, the Connect-capable instances (proxies
    /// of the service and its Connect-native instances).
    async fn health_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<Vec<HealthEntry>, LookupError>;
    /// [`Lookup::health_service`] with the catalog index the answer reflects, when
    /// the catalog can report one and wait on it ([`Lookup::wait_service`]). Only
    /// answers with an index are cached; the default reports none.
    async fn health_service_indexed(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<(Vec<HealthEntry>, Option<u64>), LookupError> {
        Ok((self.health_service(dc, service, connect).await?, None))
    }
    /// Waits until the answer to that service question may have changed since
    /// `index` (a blocking query), or `wait` has passed; returns the index then. Only
    /// called after [`Lookup::health_service_indexed`] reported an index.
    async fn wait_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
        index: u64,
        wait: Duration,
    ) -> Result<u64, LookupError> {
        let _ = (dc, service, connect, index, wait);
        Err(LookupError::Unavailable(
            "this catalog cannot wait for changes".into(),
        ))
    }
    /// Runs the prepared query with that name or ID (Consul's
    /// `PreparedQuery.Execute` for DNS: no limit, sorted only by the query's own
    /// `Near`; `client` is the asker's address, for `_ip`). `None` when no query
    /// or template has that name or ID. The default knows no prepared queries.
    async fn prepared_query(
        &self,
        dc: Option<&str>,
        name: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<QueryExecution>, LookupError> {
        let _ = (dc, name, client);
        Ok(None)
    }
    /// One node.
    async fn node(&self, dc: Option<&str>, name: &str) -> Result<Option<Node>, LookupError>;
    /// Every node (reverse lookups).
    async fn nodes(&self, dc: Option<&str>) -> Result<Vec<Node>, LookupError>;
    /// The servers (NS records).
    async fn servers(&self) -> Result<Vec<ServerInfo>, LookupError>;
    /// Service instances whose own address (`Service.address`) is `addr`, for reverse
    /// lookups that match no node (Consul's `Catalog.ServiceNodes` with
    /// `ServiceAddress`). The default finds none, so PTR answers cover nodes only.
    async fn services_at(
        &self,
        dc: Option<&str>,
        addr: IpAddr,
    ) -> Result<Vec<Service>, LookupError> {
        let _ = (dc, addr);
        Ok(Vec::new())
    }
}
