//! The agent's side of DNS: [`CatalogLookup`] answers the DNS server's catalog
//! questions with reads from the servers, and [`dns_config`] turns the agent's runtime
//! configuration into the DNS server's.
//!
//! Reads are stale by default (`dns_config.allow_stale`), so DNS keeps answering while
//! there is no leader; an answer staler than `max_stale` is retried against the leader,
//! as Consul does.

use crate::config::{RecursorStrategy as CfgStrategy, RuntimeConfig};
use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tribune_dns::{DnsConfig, Lookup, LookupError, RecursorStrategy, ServerInfo, SoaConfig};
use tribune_rpc::{RpcError, ServerApi};
use tribune_types::model::ops::{Consistency, HealthEntry, QueryOptions, ReadRequest, ReadResult};
use tribune_types::model::query::{QueryExecution, QueryOutcome, QuerySource};
use tribune_types::model::Node;

/// How long one catalog read for DNS may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Catalog reads for DNS through the agent's server connection.
pub struct CatalogLookup {
    servers: Arc<dyn ServerApi>,
    datacenter: String,
    allow_stale: bool,
    max_stale: Duration,
    /// This agent's node (`_agent` in a prepared query's `Near`).
    node_name: String,
    /// Whether prepared queries may sort by network coordinates.
    use_coordinates: bool,
}

impl CatalogLookup {
    /// Reads through `servers` for datacenter `datacenter`.
    pub fn new(servers: Arc<dyn ServerApi>, datacenter: &str, cfg: &DnsConfig) -> Self {
        CatalogLookup {
            servers,
            datacenter: datacenter.to_owned(),
            allow_stale: cfg.allow_stale,
            max_stale: cfg.max_stale,
            node_name: String::new(),
            use_coordinates: true,
        }
    }

    /// Names the agent prepared queries run from (`_agent`), and whether they may
    /// sort by coordinates (`disable_coordinates` off).
    pub fn with_agent(mut self, node_name: &str, use_coordinates: bool) -> Self {
        self.node_name = node_name.to_owned();
        self.use_coordinates = use_coordinates;
        self
    }

    fn check_dc(&self, dc: Option<&str>) -> Result<(), LookupError> {
        match dc {
            Some(d) if !d.eq_ignore_ascii_case(&self.datacenter) => {
                // WAN federation does not exist yet: every other datacenter is
                // unreachable, exactly as for `?dc=` on the HTTP API.
                Err(LookupError::NoPathToDatacenter)
            }
            _ => Ok(()),
        }
    }

    /// A read bounded by [`LOOKUP_TIMEOUT`]: a resolver gives up after a few seconds
    /// anyway, and a hung server must not pile up DNS tasks.
    async fn read(&self, req: ReadRequest) -> Result<ReadResult, LookupError> {
        Ok(self.read_indexed(req).await?.0)
    }

    /// [`CatalogLookup::read`] with the answer's index.
    async fn read_indexed(&self, req: ReadRequest) -> Result<(ReadResult, u64), LookupError> {
        let opts = QueryOptions::default();
        tokio::time::timeout(LOOKUP_TIMEOUT, self.read_unbounded(req, opts))
            .await
            .unwrap_or_else(|_| Err(LookupError::Unavailable("catalog read timed out".into())))
    }

    /// A stale read unless `allow_stale` is off or the answering server is more than
    /// `max_stale` behind, in which case the leader answers. `opts` carries the
    /// blocking parameters.
    async fn read_unbounded(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, u64), LookupError> {
        let unavailable = |e: RpcError| LookupError::Unavailable(e.to_string());
        if self.allow_stale {
            let stale = QueryOptions {
                consistency: Consistency::Stale,
                ..opts
            };
            let (res, meta) = self
                .servers
                .read(req.clone(), stale)
                .await
                .map_err(unavailable)?;
            if meta.last_contact <= self.max_stale {
                return Ok((res, meta.index));
            }
        }
        let (res, meta) = self
            .servers
            .read(
                req,
                QueryOptions {
                    consistency: Consistency::Default,
                    ..opts
                },
            )
            .await
            .map_err(unavailable)?;
        Ok((res, meta.index))
    }
}

/// The read behind a service question.
fn health_request(service: &str, connect: bool) -> ReadRequest {
    let service = service.to_owned();
    if connect {
        ReadRequest::HealthConnect { service }
    } else {
        ReadRequest::HealthService { service }
    }
}

fn mismatch(what: &str) -> LookupError {
    LookupError::Unavailable(format!("internal error: unexpected result for {what}"))
}

#[async_trait]
impl Lookup for CatalogLookup {
    fn datacenter(&self) -> String {
        self.datacenter.clone()
    }

    async fn health_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<Vec<HealthEntry>, LookupError> {
        Ok(self.health_service_indexed(dc, service, connect).await?.0)
    }

    async fn health_service_indexed(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<(Vec<HealthEntry>, Option<u64>), LookupError> {
        self.check_dc(dc)?;
        match self.read_indexed(health_request(service, connect)).await? {
            (ReadResult::Health(entries), index) => Ok((entries, Some(index))),
            _ => Err(mismatch("health service")),
        }
    }

    async fn wait_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
        index: u64,
        wait: Duration,
    ) -> Result<u64, LookupError> {
        self.check_dc(dc)?;
        let consistency = if self.allow_stale {
            Consistency::Stale
        } else {
            Consistency::Default
        };
        let opts = QueryOptions {
            min_index: index,
            max_wait: wait,
            consistency,
        };
        let unavailable = |e: RpcError| LookupError::Unavailable(e.to_string());
        // The server ends the wait itself; the margin covers a slow answer.
        let read = self.servers.read(health_request(service, connect), opts);
        let (_, meta) = tokio::time::timeout(wait + LOOKUP_TIMEOUT, read)
            .await
            .map_err(|_| LookupError::Unavailable("catalog wait timed out".into()))?
            .map_err(unavailable)?;
        // A server further behind than max_stale: the cached answer may be too, and
        // a fresh lookup would have gone to the leader, so give the entry up.
        if consistency == Consistency::Stale && meta.last_contact > self.max_stale {
            return Err(LookupError::Unavailable(
                "the answering server is staler than max_stale".into(),
            ));
        }
        Ok(meta.index)
    }

    async fn prepared_query(
        &self,
        dc: Option<&str>,
        name: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<QueryExecution>, LookupError> {
        self.check_dc(dc)?;
        // As Consul's DNS: no limit and no `?near`; only the query's own `Near`.
        let req = ReadRequest::QueryExecute {
            id_or_name: name.to_owned(),
            source: QuerySource {
                agent_node: self.node_name.clone(),
                agent_segment: String::new(),
                near: String::new(),
                ip: client
                    .map(|ip| ip.to_canonical().to_string())
                    .unwrap_or_default(),
                use_coordinates: self.use_coordinates,
            },
            limit: 0,
            connect: false,
        };
        match self.read(req).await? {
            ReadResult::QueryExecuted(QueryOutcome::Found(run)) => Ok(Some(run)),
            ReadResult::QueryExecuted(QueryOutcome::NotFound) => Ok(None),
            // A template that fails to render: the servers' error, as SERVFAIL.
            ReadResult::QueryExecuted(QueryOutcome::Refused(e)) => Err(LookupError::Unavailable(e)),
            _ => Err(mismatch("prepared query")),
        }
    }

    async fn node(&self, dc: Option<&str>, name: &str) -> Result<Option<Node>, LookupError> {
        self.check_dc(dc)?;
        // Node names are case-insensitive in DNS; the catalog keys them as registered,
        // so an exact hit is tried first and the full list only on a miss.
        let req = ReadRequest::CatalogNode { node: name.into() };
        match self.read(req).await? {
            ReadResult::NodeServices(Some((node, _))) => return Ok(Some(node)),
            ReadResult::NodeServices(None) => {}
            _ => return Err(mismatch("catalog node")),
        }
        Ok(self
            .nodes(dc)
            .await?
            .into_iter()
            .find(|n| n.node.as_str().eq_ignore_ascii_case(name)))
    }

    async fn nodes(&self, dc: Option<&str>) -> Result<Vec<Node>, LookupError> {
        self.check_dc(dc)?;
        match self.read(ReadRequest::CatalogNodes).await? {
            ReadResult::Nodes(nodes) => Ok(nodes),
            _ => Err(mismatch("catalog nodes")),
        }
    }

    async fn servers(&self) -> Result<Vec<ServerInfo>, LookupError> {
        // Servers register the `consul` service on their own node (leader duty), so
        // its instances name every server with its address.
        let entries = self.health_service(None, "consul", false).await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let addr: IpAddr = e.node.address.parse().ok()?;
                Some(ServerInfo {
                    name: e.node.node.as_str().to_owned(),
                    addr,
                })
            })
            .collect())
    }
}

/// The DNS server's configuration from the agent's (`dns_config`, `domain`,
/// `alt_domain`, `recursors`, `ports.dns` × `client_addr` / `addresses.dns`).
pub fn dns_config(cfg: &RuntimeConfig) -> DnsConfig {
    let d = &cfg.dns_config;
    DnsConfig {
        bind: cfg.dns_listeners(),
        domain: cfg.domain.clone(),
        alt_domain: cfg.alt_domain.clone(),
        node_ttl: d.node_ttl,
        service_ttl: d.service_ttl.clone(),
        only_passing: d.only_passing,
        a_record_limit: d.a_record_limit as usize,
        udp_answer_limit: d.udp_answer_limit as usize,
        enable_truncate: d.enable_truncate,
        enable_additional_node_meta_txt: d.enable_additional_node_meta_txt,
        allow_stale: d.allow_stale,
        max_stale: d.max_stale,
        disable_compression: d.disable_compression,
        recursors: cfg
            .recursors
            .iter()
            .filter_map(|r| parse_recursor(r))
            .collect(),
        recursor_strategy: match d.recursor_strategy {
            CfgStrategy::Sequential => RecursorStrategy::Sequential,
            CfgStrategy::Random => RecursorStrategy::Random,
        },
        recursor_timeout: d.recursor_timeout,
        soa: SoaConfig {
            refresh: d.soa.refresh,
            retry: d.soa.retry,
            expire: d.soa.expire,
            min_ttl: d.soa.min_ttl,
        },
    }
}

/// `ip`, `ip:port` or `[v6]:port`; port 53 when absent. Config validation has already
/// rejected anything else.
fn parse_recursor(r: &str) -> Option<SocketAddr> {
    if let Ok(addr) = r.parse::<SocketAddr>() {
        return Some(addr);
    }
    r.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursors_default_to_port_53() {
        assert_eq!(
            parse_recursor("8.8.8.8"),
            Some("8.8.8.8:53".parse().unwrap())
        );
        assert_eq!(
            parse_recursor("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_recursor("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(
            parse_recursor("[::1]:54"),
            Some("[::1]:54".parse().unwrap())
        );
        assert_eq!(parse_recursor("dns.example"), None);
    }
}
