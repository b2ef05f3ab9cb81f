//! Reads: each [`ReadRequest`] subscribes to the topics it depends on, then answers from
//! an immutable snapshot, returning the index Consul would report for it.

use crate::db::{
    pair, Db, StateStore, CA, CHECKS, CONFIG, COORDINATES, KV, NODES, QUERIES, SERVICES,
    SERVICE_NAME, SESSIONS,
};
use std::collections::BTreeMap;
use tribune_store::{Topic, WatchSet};
use tribune_types::model::ops::{
    GatewayService, HealthEntry, ReadRequest, ReadResult, ServiceInstance,
};
use tribune_types::model::{Check, GatewayLink, KvEntry, Service};
use tribune_types::NodeName;

impl StateStore {
    /// Answers `req`. With `watch`, first subscribes it to exactly what the read depends
    /// on, so a write landing between the read and the wait still wakes the caller.
    /// Returns the result and its index (0 if nothing was ever written there).
    pub fn read(&self, req: &ReadRequest, watch: Option<&mut WatchSet>) -> (ReadResult, u64) {
        if let Some(set) = watch {
            for topic in topics(req) {
                self.watches.subscribe(set, topic);
            }
        }
        let db = self.snapshot_db();
        answer(&db, req)
    }
}

fn topics(req: &ReadRequest) -> Vec<Topic> {
    match req {
        // A missing key is watched by its exact name too: Consul wakes such a query on
        // any KV write (hashicorp/consul#9449); we only wake it when that key changes.
        ReadRequest::KvGet { key } => vec![Topic::Key(KV, key.clone())],
        ReadRequest::KvList { prefix } | ReadRequest::KvKeys { prefix, .. } => {
            vec![Topic::Prefix(KV, prefix.clone())]
        }
        ReadRequest::CatalogNodes => vec![Topic::Table(NODES)],
        ReadRequest::CatalogServices => vec![Topic::Table(SERVICES)],
        ReadRequest::CatalogService { service } | ReadRequest::HealthService { service } => {
            vec![Topic::Key(SERVICE_NAME, service.clone())]
        }
        // Proxies of a service are registered under their own names; any service change
        // may add or remove one.
        ReadRequest::CatalogConnect { .. } | ReadRequest::HealthConnect { .. } => {
            vec![
                Topic::Table(SERVICES),
                Topic::Table(CHECKS),
                Topic::Table(NODES),
            ]
        }
        ReadRequest::CatalogNode { .. } => vec![Topic::Table(NODES), Topic::Table(SERVICES)],
        ReadRequest::HealthNode { .. }
        | ReadRequest::HealthChecks { .. }
        | ReadRequest::HealthState { .. } => vec![Topic::Table(CHECKS)],
        // The reported index is the config table's, so the watch is too: any config
        // change moves the index a client blocks on.
        ReadRequest::ConfigGet { .. } => vec![Topic::Table(CONFIG)],
        ReadRequest::ConfigList { .. } | ReadRequest::ConfigKinds { .. } => {
            vec![Topic::Table(CONFIG)]
        }
        ReadRequest::CaRoots | ReadRequest::AutopilotConfig | ReadRequest::CaConfig => {
            vec![Topic::Table(CA)]
        }
        ReadRequest::Usage => vec![Topic::Table(NODES), Topic::Table(SERVICES)],
        ReadRequest::SessionGet { id } => vec![Topic::Key(SESSIONS, id.to_string())],
        ReadRequest::SessionList | ReadRequest::SessionNode { .. } => {
            vec![Topic::Table(SESSIONS)]
        }
        // Neither blocks: a renewal answers at once, and Consul's read-only transactions
        // take no index.
        ReadRequest::SessionRenew { .. } | ReadRequest::Txn(_) => vec![],
        ReadRequest::Coordinates => vec![Topic::Table(COORDINATES)],
        ReadRequest::QueryList | ReadRequest::QueryGet { .. } => vec![Topic::Table(QUERIES)],
        // Consul's execute and explain are not blocking queries.
        ReadRequest::QueryExecute { .. } | ReadRequest::QueryExplain { .. } => vec![],
        // Wildcards expand over the catalog's services, so both tables count.
        ReadRequest::GatewayServices { .. } => {
            vec![Topic::Table(CONFIG), Topic::Table(SERVICES)]
        }
        ReadRequest::HealthIngress { .. } => vec![
            Topic::Table(CONFIG),
            Topic::Table(SERVICES),
            Topic::Table(CHECKS),
            Topic::Table(NODES),
        ],
        ReadRequest::CoordinateNode { node } => {
            vec![Topic::Key(COORDINATES, node.as_str().to_owned())]
        }
    }
}

fn prefix_index(db: &Db, prefix: &str) -> u64 {
    let live = db.kv.prefix(prefix).map(|(_, e)| e.raft.modify_index).max();
    let dead = db.kv.tombstones_under(prefix).map(|(_, t)| t.index).max();
    match live.max(dead) {
        Some(i) if i > 0 => i,
        // Consul falls back to the table index when the prefix never held anything.
        _ => db.kv.max_index(),
    }
}

fn service_index(db: &Db, name: &str) -> u64 {
    db.service_index
        .get(name)
        .copied()
        .unwrap_or_else(|| db.services.max_index())
}

fn instances<'a>(db: &'a Db, name: &str) -> Vec<&'a Service> {
    db.by_service
        .get(name)
        .map(|keys| keys.keys().filter_map(|k| db.services.get(k)).collect())
        .unwrap_or_default()
}

/// Proxies for `name` and its Connect-native instances.
fn connect_instances<'a>(db: &'a Db, name: &str) -> Vec<&'a Service> {
    db.services
        .iter()
        .map(|(_, s)| s)
        .filter(|s| {
            (s.kind == "connect-proxy" && s.proxy_destination == name)
                || (s.service == name && s.connect_native)
        })
        .collect()
}

/// A service's instances with their checks, or its Connect-capable ones, for a
/// prepared query: the name matches case-insensitively, as Consul's catalog index
/// does (the exact spelling first, since it is the common case and a map lookup).
pub(crate) fn health_entries_ci(db: &Db, name: &str, connect: bool) -> Vec<HealthEntry> {
    let stored = if db.by_service.contains_key(name) {
        name
    } else {
        db.by_service
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map_or(name, String::as_str)
    };
    if connect {
        health_entries(db, connect_instances(db, stored))
    } else {
        health_entries(db, instances(db, stored))
    }
}

fn health_entries(db: &Db, services: Vec<&Service>) -> Vec<HealthEntry> {
    services
        .into_iter()
        .filter_map(|s| {
            let node = db.nodes.get(s.node.as_str())?;
            let checks = node_checks(db, &s.node)
                .filter(|c| c.service_id.is_empty() || c.service_id == s.id.as_str())
                .cloned()
                .collect();
            Some(HealthEntry {
                node: node.clone(),
                service: s.clone(),
                checks,
            })
        })
        .collect()
}

fn service_instances(db: &Db, services: Vec<&Service>) -> Vec<ServiceInstance> {
    services
        .into_iter()
        .filter_map(|s| {
            db.nodes.get(s.node.as_str()).map(|n| ServiceInstance {
                node: n.clone(),
                service: s.clone(),
            })
        })
        .collect()
}

fn node_checks<'a>(db: &'a Db, node: &NodeName) -> impl Iterator<Item = &'a Check> + 'a {
    db.checks
        .prefix_owned(pair(node.as_str(), ""))
        .map(|(_, c)| c)
}

const INGRESS: &str = "ingress-gateway";
const TERMINATING: &str = "terminating-gateway";

/// Names of services with at least one typical (non-proxy, non-gateway) instance.
fn typical_service_names(db: &Db) -> impl Iterator<Item = &str> {
    db.by_service
        .iter()
        .filter(|(_, keys)| {
            keys.keys()
                .any(|k| db.services.get(k).is_some_and(|s| s.kind.is_empty()))
        })
        .map(|(name, _)| name.as_str())
}

/// A gateway's services from its config entries (terminating and ingress), sorted
/// by service and port as Consul's gateway-services table is. A `*` link stands for
/// every typical service the entry does not name itself, except `consul`.
fn gateway_services(db: &Db, gateway: &str) -> Vec<GatewayService> {
    let mut out = Vec::new();
    for kind in [TERMINATING, INGRESS] {
        let Some(entry) = db.config.get(&pair(kind, gateway)) else {
            continue;
        };
        let named: Vec<&str> = entry
            .gateway
            .iter()
            .map(|l| l.service.as_str())
            .filter(|s| *s != "*")
            .collect();
        let row = |link: GatewayLink, from_wildcard: bool| GatewayService {
            gateway: gateway.to_owned(),
            gateway_kind: kind.to_owned(),
            link,
            from_wildcard,
            raft: entry.raft,
        };
        for link in &entry.gateway {
            if link.service != "*" {
                out.push(row(link.clone(), false));
                continue;
            }
            for name in typical_service_names(db) {
                if name != "consul" && !named.contains(&name) {
                    let link = GatewayLink {
                        service: name.to_owned(),
                        ..link.clone()
                    };
                    out.push(row(link, true));
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.link.service, a.link.port).cmp(&(&b.link.service, b.link.port)));
    out
}

/// Consul's usage counts: Connect instances by kind, and "billable" instances
/// (typical or Connect-native, other than the `consul` service).
fn usage(db: &Db) -> tribune_types::model::operator::Usage {
    let mut u = tribune_types::model::operator::Usage {
        nodes: db.nodes.len(),
        services: db.by_service.iter().filter(|(_, v)| !v.is_empty()).count(),
        ..Default::default()
    };
    for kind in [
        "api-gateway",
        "connect-native",
        "connect-proxy",
        "ingress-gateway",
        "mesh-gateway",
        "terminating-gateway",
    ] {
        u.connect.insert(kind.to_owned(), 0);
    }
    for (_, s) in db.services.iter() {
        u.service_instances += 1;
        if s.kind.is_empty() {
            if s.connect_native {
                *u.connect.entry("connect-native".into()).or_default() += 1;
            }
            if s.service != "consul" {
                u.billable += 1;
            }
        } else if let Some(n) = u.connect.get_mut(s.kind.as_str()) {
            *n += 1;
        }
    }
    u
}

fn answer(db: &Db, req: &ReadRequest) -> (ReadResult, u64) {
    match req {
        ReadRequest::KvGet { key } => match db.kv.get(key) {
            Some(e) => (ReadResult::Kv(vec![e.clone()]), e.raft.modify_index),
            None => (ReadResult::Kv(vec![]), db.kv.max_index()),
        },
        ReadRequest::KvList { prefix } => {
            let entries: Vec<KvEntry> = db.kv.prefix(prefix).map(|(_, e)| e.clone()).collect();
            (ReadResult::Kv(entries), prefix_index(db, prefix))
        }
        ReadRequest::KvKeys { prefix, separator } => {
            let mut keys: Vec<String> = Vec::new();
            for (k, _) in db.kv.prefix(prefix) {
                let rest = &k[prefix.len()..];
                let name = match (separator.is_empty(), rest.find(separator.as_str())) {
                    (false, Some(pos)) => format!("{prefix}{}", &rest[..pos + separator.len()]),
                    _ => k.to_owned(),
                };
                if keys.last() != Some(&name) {
                    keys.push(name);
                }
            }
            (ReadResult::Keys(keys), prefix_index(db, prefix))
        }
        ReadRequest::CatalogNodes => (
            ReadResult::Nodes(db.nodes.iter().map(|(_, n)| n.clone()).collect()),
            db.nodes.max_index(),
        ),
        ReadRequest::CatalogServices => {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (_, s) in db.services.iter() {
                let tags = map.entry(s.service.clone()).or_default();
                for tag in &s.tags {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
            }
            (
                ReadResult::Services(map.into_iter().collect()),
                db.services.max_index(),
            )
        }
        ReadRequest::CatalogService { service } => (
            ReadResult::ServiceInstances(service_instances(db, instances(db, service))),
            service_index(db, service),
        ),
        ReadRequest::HealthService { service } => (
            ReadResult::Health(health_entries(db, instances(db, service))),
            service_index(db, service),
        ),
        ReadRequest::CatalogConnect { service } => (
            ReadResult::ServiceInstances(service_instances(db, connect_instances(db, service))),
            db.services.max_index().max(db.nodes.max_index()),
        ),
        ReadRequest::HealthConnect { service } => (
            ReadResult::Health(health_entries(db, connect_instances(db, service))),
            db.services
                .max_index()
                .max(db.checks.max_index())
                .max(db.nodes.max_index()),
        ),
        ReadRequest::CatalogNode { node } => {
            let found = db.nodes.get(node.as_str()).map(|n| {
                let services = db
                    .services
                    .prefix_owned(pair(node.as_str(), ""))
                    .map(|(_, s)| s.clone())
                    .collect();
                (n.clone(), services)
            });
            (
                ReadResult::NodeServices(found),
                db.nodes.max_index().max(db.services.max_index()),
            )
        }
        ReadRequest::HealthNode { node } => (
            ReadResult::Checks(node_checks(db, node).cloned().collect()),
            db.checks.max_index(),
        ),
        ReadRequest::HealthChecks { service } => {
            let checks = db
                .checks
                .iter()
                .filter(|(_, c)| &c.service_name == service)
                .map(|(_, c)| c.clone())
                .collect();
            (ReadResult::Checks(checks), db.checks.max_index())
        }
        ReadRequest::HealthState { state } => {
            let checks = db
                .checks
                .iter()
                .filter(|(_, c)| state.is_none_or(|s| c.status == s))
                .map(|(_, c)| c.clone())
                .collect();
            (ReadResult::Checks(checks), db.checks.max_index())
        }
        ReadRequest::ConfigGet { kind, name } => {
            let found: Vec<_> = db
                .config
                .get(&pair(kind, name))
                .cloned()
                .into_iter()
                .collect();
            (ReadResult::Config(found), db.config.max_index())
        }
        ReadRequest::ConfigList { kind } => {
            let list = db
                .config
                .prefix_owned(pair(kind, ""))
                .map(|(_, e)| e.clone())
                .collect();
            (ReadResult::Config(list), db.config.max_index())
        }
        ReadRequest::ConfigKinds { kinds } => {
            let list = kinds
                .iter()
                .flat_map(|kind| {
                    db.config
                        .prefix_owned(pair(kind, ""))
                        .map(|(_, e)| e.clone())
                })
                .collect();
            (ReadResult::Config(list), db.config.max_index())
        }
        ReadRequest::CaRoots => (ReadResult::CaRoots(db.ca_roots.clone()), db.ca_index),
        ReadRequest::CaConfig => (
            ReadResult::CaConfig(db.ca_config.clone()),
            db.ca_config
                .as_ref()
                .map_or(db.ca_index, |c| c.raft.modify_index.max(db.ca_index)),
        ),
        ReadRequest::QueryList => (
            ReadResult::Queries(db.queries.iter().map(|(_, q)| q.clone()).collect()),
            db.queries.max_index(),
        ),
        ReadRequest::QueryGet { id } => (
            ReadResult::Queries(
                db.queries
                    .get(&id.to_ascii_lowercase())
                    .cloned()
                    .into_iter()
                    .collect(),
            ),
            db.queries.max_index(),
        ),
        ReadRequest::QueryExecute {
            id_or_name,
            source,
            limit,
            connect,
        } => (
            ReadResult::QueryExecuted(crate::prepared_query::execute(
                db, id_or_name, source, *limit, *connect,
            )),
            0,
        ),
        ReadRequest::QueryExplain { id_or_name, source } => (
            ReadResult::QueryExplained(Box::new(crate::prepared_query::resolve(
                db, id_or_name, source,
            ))),
            0,
        ),
        ReadRequest::Usage => (
            ReadResult::Usage(usage(db)),
            db.nodes.max_index().max(db.services.max_index()),
        ),
        ReadRequest::AutopilotConfig => {
            let config = db.autopilot.clone().unwrap_or_default();
            let index = config.raft.modify_index;
            (ReadResult::Autopilot(config), index)
        }
        ReadRequest::SessionGet { id } | ReadRequest::SessionRenew { id } => (
            ReadResult::Sessions(
                db.sessions
                    .get(&id.to_string())
                    .cloned()
                    .into_iter()
                    .collect(),
            ),
            db.sessions.max_index(),
        ),
        ReadRequest::SessionList => (
            ReadResult::Sessions(db.sessions.iter().map(|(_, s)| s.clone()).collect()),
            db.sessions.max_index(),
        ),
        ReadRequest::SessionNode { node } => {
            let list = db
                .sessions_by_node
                .get(node.as_str())
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| db.sessions.get(&id.to_string()).cloned())
                        .collect()
                })
                .unwrap_or_default();
            (ReadResult::Sessions(list), db.sessions.max_index())
        }
        ReadRequest::Txn(ops) => (ReadResult::Txn(crate::txn::read_only(db, ops)), db.index),
        ReadRequest::Coordinates => (
            ReadResult::Coordinates(db.coordinates.iter().map(|(_, c)| c.clone()).collect()),
            db.coordinates.max_index(),
        ),
        ReadRequest::GatewayServices { gateway } => (
            ReadResult::GatewayServices(gateway_services(db, gateway)),
            db.config.max_index().max(db.services.max_index()),
        ),
        ReadRequest::HealthIngress { service } => {
            let gateways: Vec<&str> = db
                .config
                .prefix_owned(pair(INGRESS, ""))
                .map(|(_, e)| e)
                .filter(|e| {
                    e.gateway
                        .iter()
                        .any(|l| l.service == *service || l.service == "*")
                })
                .map(|e| e.name.as_str())
                .collect();
            let instances = gateways
                .into_iter()
                .flat_map(|g| instances(db, g))
                .filter(|s| s.kind == INGRESS)
                .collect();
            let index = [
                db.config.max_index(),
                db.services.max_index(),
                db.checks.max_index(),
                db.nodes.max_index(),
            ];
            (
                ReadResult::Health(health_entries(db, instances)),
                index.into_iter().max().unwrap_or(0),
            )
        }
        ReadRequest::CoordinateNode { node } => (
            ReadResult::Coordinates(
                db.coordinates
                    .prefix_owned(pair(node.as_str(), ""))
                    .map(|(_, c)| c.clone())
                    .collect(),
            ),
            db.coordinates.max_index(),
        ),
    }
}
