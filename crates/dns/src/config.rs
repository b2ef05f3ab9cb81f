//! The DNS server's settings: Consul's `dns_config` block plus the agent settings DNS
//! needs (`domain`, `alt_domain`, `recursors`, the listen addresses).
//!
//! Plain data: the agent builds a [`DnsConfig`] from its runtime configuration and
//! hands it to [`DnsServer::bind`](crate::DnsServer::bind).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How `recursors` are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecursorStrategy {
    /// In order (Consul's default).
    #[default]
    Sequential,
    /// In random order.
    Random,
}

/// The SOA record's tunables (`dns_config.soa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaConfig {
    /// Refresh, seconds (3600).
    pub refresh: u32,
    /// Retry, seconds (600).
    pub retry: u32,
    /// Expire, seconds (86400).
    pub expire: u32,
    /// Minimum TTL, also the SOA record's own TTL (0).
    pub min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// DNS settings: Consul's `dns_config` block plus `domain`, `alt_domain`,
/// `recursors` and the listener addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP listen addresses (`client_addr` × `ports.dns`).
    pub bind: Vec<SocketAddr>,
    /// `domain`, with a trailing dot (`consul.`).
    pub domain: String,
    /// `alt_domain` (answers echo the domain asked), with a trailing dot.
    pub alt_domain: Option<String>,
    /// `node_ttl` (0).
    pub node_ttl: Duration,
    /// `service_ttl`: exact name, `prefix*` or `*` → TTL.
    pub service_ttl: BTreeMap<String, Duration>,
    /// `only_passing`: also drop instances with a warning check.
    pub only_passing: bool,
    /// `a_record_limit` (0 = unlimited).
    pub a_record_limit: usize,
    /// `udp_answer_limit` (3).
    pub udp_answer_limit: usize,
    /// `enable_truncate`: set TC when a UDP answer was trimmed.
    pub enable_truncate: bool,
    /// `enable_additional_node_meta_txt` (true).
    pub enable_additional_node_meta_txt: bool,
    /// `allow_stale` (true).
    pub allow_stale: bool,
    /// `max_stale` (87600h).
    pub max_stale: Duration,
    /// `disable_compression`.
    pub disable_compression: bool,
    /// `recursors` (`ip` or `ip:port`; port 53 when absent).
    pub recursors: Vec<SocketAddr>,
    /// `recursor_strategy`.
    pub recursor_strategy: RecursorStrategy,
    /// `recursor_timeout` (2s).
    pub recursor_timeout: Duration,
    /// `soa`.
    pub soa: SoaConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 8600))],
            domain: "consul.".into(),
            alt_domain: None,
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            a_record_limit: 0,
            udp_answer_limit: 3,
            enable_truncate: false,
            enable_additional_node_meta_txt: true,
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            disable_compression: false,
            recursors: Vec::new(),
            recursor_strategy: RecursorStrategy::Sequential,
            recursor_timeout: Duration::from_secs(2),
            soa: SoaConfig::default(),
        }
    }
}

impl DnsConfig {
    /// The TTL of a service's records: an exact `service_ttl` entry wins over the
    /// longest matching `prefix*` entry, which wins over `*`; no match is 0.
    ///
    /// Consul's `GetTTLForService` (a strict map plus a radix tree of prefixes).
    /// Names are compared case-insensitively because DNS names arrive lower-cased.
    pub fn ttl_for_service(&self, service: &str) -> Duration {
        let service = service.to_ascii_lowercase();
        let mut best: Option<(usize, Duration)> = None;
        for (key, ttl) in &self.service_ttl {
            let key = key.to_ascii_lowercase();
            match key.strip_suffix('*') {
                None if key == service => return *ttl,
                None => {}
                Some(prefix) if service.starts_with(prefix) => {
                    let longer = match best {
                        Some((len, _)) => prefix.len() > len,
                        None => true,
                    };
                    if longer {
                        best = Some((prefix.len(), *ttl));
                    }
                }
                Some(_) => {}
            }
        }
        best.map(|(_, ttl)| ttl).unwrap_or(Duration::ZERO)
    }

    /// Whether out-of-zone questions can be forwarded (RA is set on answers).
    pub fn recursion_available(&self) -> bool {
        !self.recursors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttl_prefers_exact_then_longest_prefix_then_star() {
        let mut cfg = DnsConfig::default();
        for (k, s) in [
            ("*", 1),
            ("db*", 2),
            ("db-primary*", 3),
            ("db-primary-eu", 4),
        ] {
            cfg.service_ttl.insert(k.into(), Duration::from_secs(s));
        }
        let ttl = |s: &str| cfg.ttl_for_service(s).as_secs();
        assert_eq!(ttl("web"), 1);
        assert_eq!(ttl("db"), 2);
        assert_eq!(ttl("db-replica"), 2);
        assert_eq!(ttl("db-primary-us"), 3);
        assert_eq!(ttl("db-primary-eu"), 4);
        assert_eq!(ttl("DB-Primary-EU"), 4);

        cfg.service_ttl.remove("*");
        assert_eq!(cfg.ttl_for_service("web"), Duration::ZERO);
    }
}
