//! [`MemLookup`]: an in-memory catalog behind the [`Lookup`] port, for tests and
//! examples.

use crate::{Lookup, LookupError, ServerInfo};
use async_trait::async_trait;
use std::net::IpAddr;
use tribune_types::model::ops::HealthEntry;
use tribune_types::model::{Check, Node, Service};

/// A fixed catalog of one datacenter, matched case-insensitively as Consul's catalog
/// is. Any other datacenter is [`LookupError::NoPathToDatacenter`].
#[derive(Debug, Clone, Default)]
pub struct MemLookup {
    datacenter: String,
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    servers: Vec<ServerInfo>,
    failure: Option<LookupError>,
}

impl MemLookup {
    /// An empty catalog for datacenter `datacenter`.
    pub fn new(datacenter: &str) -> MemLookup {
        MemLookup {
            datacenter: datacenter.to_owned(),
            ..MemLookup::default()
        }
    }

    /// Adds a node.
    pub fn with_node(mut self, node: Node) -> MemLookup {
        self.nodes.push(node);
        self
    }

    /// Adds a service instance on its node (`service.node`).
    pub fn with_service(mut self, service: Service) -> MemLookup {
        self.services.push(service);
        self
    }

    /// Adds a check: a node check when `check.service_id` is empty, else the
    /// instance's.
    pub fn with_check(mut self, check: Check) -> MemLookup {
        self.checks.push(check);
        self
    }

    /// Adds a server (NS records).
    pub fn with_server(mut self, server: ServerInfo) -> MemLookup {
        self.servers.push(server);
        self
    }

    /// Makes every read fail with `error`.
    pub fn failing(mut self, error: LookupError) -> MemLookup {
        self.failure = Some(error);
        self
    }

    fn check_dc(&self, dc: Option<&str>) -> Result<(), LookupError> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        match dc {
            Some(dc) if !dc.eq_ignore_ascii_case(&self.datacenter) => {
                Err(LookupError::NoPathToDatacenter)
            }
            _ => Ok(()),
        }
    }

    fn find_node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.node.as_str().eq_ignore_ascii_case(name))
    }

    fn entry(&self, service: &Service) -> Option<HealthEntry> {
        let node = self.find_node(service.node.as_str())?;
        let checks = self
            .checks
            .iter()
            .filter(|c| c.node.as_str().eq_ignore_ascii_case(node.node.as_str()))
            .filter(|c| c.service_id.is_empty() || c.service_id == service.id.as_str())
            .cloned()
            .collect();
        Some(HealthEntry {
            node: node.clone(),
            service: service.clone(),
            checks,
        })
    }
}

#[async_trait]
impl Lookup for MemLookup {
    fn datacenter(&self) -> String {
        self.datacenter.clone()
    }

    async fn health_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<Vec<HealthEntry>, LookupError> {
        self.check_dc(dc)?;
        Ok(self
            .services
            .iter()
            .filter(|s| {
                if connect {
                    (s.kind == "connect-proxy" && s.proxy_destination.eq_ignore_ascii_case(service))
                        || (s.connect_native && s.service.eq_ignore_ascii_case(service))
                } else {
                    s.service.eq_ignore_ascii_case(service)
                }
            })
            .filter_map(|s| self.entry(s))
            .collect())
    }

    async fn node(&self, dc: Option<&str>, name: &str) -> Result<Option<Node>, LookupError> {
        self.check_dc(dc)?;
        Ok(self.find_node(name).cloned())
    }

    async fn nodes(&self, dc: Option<&str>) -> Result<Vec<Node>, LookupError> {
        self.check_dc(dc)?;
        Ok(self.nodes.clone())
    }

    async fn servers(&self) -> Result<Vec<ServerInfo>, LookupError> {
        self.check_dc(None)?;
        Ok(self.servers.clone())
    }

    async fn services_at(
        &self,
        dc: Option<&str>,
        addr: IpAddr,
    ) -> Result<Vec<Service>, LookupError> {
        self.check_dc(dc)?;
        Ok(self
            .services
            .iter()
            .filter(|s| s.address.parse::<IpAddr>().ok() == Some(addr))
            .cloned()
            .collect())
    }
}
