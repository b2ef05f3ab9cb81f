//! Consul's discovery-chain compiler (`agent/consul/discoverychain`): from the
//! `service-router`, `service-splitter`, `service-resolver`, `service-defaults`
//! and `proxy-defaults` config entries, the graph a Connect proxy follows for one
//! service — routers, then splitters, then resolvers, and the targets (service,
//! subset, datacenter) they end in. `GET /v1/discovery-chain/{service}` serves it.
//!
//! Config entries are stored as the JSON their writers sent, so this module reads
//! them here, with Consul's case-insensitive field names. Route and split
//! definitions are echoed as they were written. One datacenter, no namespaces,
//! partitions or peers: those parts of targets are always `default` / empty.

use crate::json_in::{get_ci, normalize};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tribune_types::format_go_duration;
use tribune_types::model::ConfigEntry;

/// Consul's connect timeout for a resolver that sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const NS: &str = "default";
/// Splitters nested deeper than this are refused: each level is a stack frame
/// of the compiler, which runs on a request's task.
const MAX_DEPTH: usize = 64;
/// Splits one splitter may have once nested splitters are flattened into it.
const MAX_SPLITS: usize = 1024;
const PARTITION: &str = "default";

/// Why a chain does not compile; the text is Consul's (behind "failed to compile
/// discovery chain: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Two services of the chain speak different protocols.
    #[error("discovery chain {chain:?} uses inconsistent protocols; service {service:?} has {protocol:?} which is not {first:?}")]
    InconsistentProtocols {
        /// The chain.
        chain: String,
        /// The service that differs.
        service: String,
        /// Its protocol.
        protocol: String,
        /// The chain's protocol.
        first: String,
    },
    /// A router or splitter on a protocol that is not HTTP-like.
    #[error("discovery chain {chain:?} uses a protocol {protocol:?} that does not permit advanced routing or splitting behavior")]
    AdvancedRouting {
        /// The chain.
        chain: String,
        /// Its protocol.
        protocol: String,
    },
    /// A resolver redirects back to where it started.
    #[error("detected circular resolver redirect: [{0}]")]
    CircularRedirect(String),
    /// Routers and splitters lead back to themselves.
    #[error("detected circular reference: [{0}]")]
    CircularReference(String),
    /// A target names a subset its resolver does not define.
    #[error("service {service:?} does not have a subset named {subset:?}")]
    NoSuchSubset {
        /// The service.
        service: String,
        /// The subset.
        subset: String,
    },
    /// A service with an external SNI may not be redirected, subset or failed over.
    #[error(
        "service {service:?} has an external SNI set; cannot define {what} for external services"
    )]
    External {
        /// The service.
        service: String,
        /// `redirects`, `subsets` or `failover`.
        what: &'static str,
    },
    /// A redirect or failover to a cluster peer (no peering here).
    #[error(
        "service {0:?} redirects or fails over to a cluster peer; cluster peering is not supported"
    )]
    Peering(String),
    /// Splitters nest deeper, or flatten into more splits, than a chain may have.
    #[error("discovery chain {0:?} is too large to compile")]
    TooLarge(String),
    /// A splitter without splits.
    #[error("no splits configured")]
    NoSplits,
    /// A splitter whose weights do not add up to 100 (the sum as Go's `%f`
    /// prints it).
    #[error("the sum of all split weights must be 100, not {0}")]
    SplitSum(String),
    /// A config entry that is not a JSON object.
    #[error("config entry {kind}/{name} is malformed: {reason}")]
    Malformed {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The request's overrides (`POST /v1/discovery-chain/{service}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `OverrideConnectTimeout` (zero: none).
    pub connect_timeout: Duration,
    /// `OverrideProtocol`.
    pub protocol: String,
    /// `OverrideMeshGateway.Mode`.
    pub mesh_gateway_mode: String,
}

/// What the chain is compiled for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The service.
    pub service: &'a str,
    /// `compile-dc`, or the agent's datacenter.
    pub datacenter: &'a str,
    /// The Connect trust domain (`<cluster id>.consul`).
    pub trust_domain: &'a str,
    /// Overrides.
    pub overrides: Overrides,
}

/// `CompiledDiscoveryChain`, in Consul's field order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Chain {
    pub service_name: String,
    pub namespace: &'static str,
    pub partition: &'static str,
    pub datacenter: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub customization_hash: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub start_node: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, Node>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Target>,
    /// Virtual IPs are not allocated here (transparent proxy is not supported).
    #[serde(rename = "AutoVirtualIPs")]
    pub auto_virtual_ips: Option<Vec<String>>,
    #[serde(rename = "ManualVirtualIPs")]
    pub manual_virtual_ips: Option<Vec<String>>,
}

/// `DiscoveryGraphNode`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Node {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<Resolver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<Value>,
}

/// `DiscoveryRoute`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Route {
    pub definition: Value,
    pub next_node: String,
}

/// `DiscoverySplit`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Split {
    pub definition: Value,
    #[serde(skip_serializing_if = "is_zero_weight", serialize_with = "go_float32")]
    pub weight: f32,
    pub next_node: String,
}

fn is_zero_weight(w: &f32) -> bool {
    *w == 0.0
}

/// A `float32` as Go's JSON encoder writes it: the shortest form that reads
/// back as the same `float32` (`33.33`, not `33.33000183105469`), integers
/// without a fraction (`90`, not `90.0`).
fn go_float32<S: serde::Serializer>(w: &f32, s: S) -> Result<S::Ok, S::Error> {
    if w.fract() == 0.0 && w.abs() < 1e15 {
        return s.serialize_i64(*w as i64);
    }
    // The shortest decimal for the f32, read back as the f64 with that decimal.
    let shortest: f64 = w.to_string().parse().unwrap_or(f64::from(*w));
    s.serialize_f64(shortest)
}

/// `DiscoveryResolver`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Resolver {
    pub connect_timeout: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Nanoseconds: Consul has no string form for this one.
    #[serde(skip_serializing_if = "is_zero")]
    pub request_timeout: u64,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `DiscoveryFailover`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Failover {
    pub targets: Vec<String>,
}

/// `DiscoveryTarget`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Target {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub connect_timeout: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    pub namespace: &'static str,
    pub partition: &'static str,
    pub datacenter: String,
    pub mesh_gateway: MeshGateway,
    pub subset: Subset,
    pub transparent_proxy: TransparentProxy,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(rename = "SNI")]
    pub sni: String,
    pub name: String,
}

/// `MeshGatewayConfig`.
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct MeshGateway {
    #[serde(rename = "Mode", skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// A resolver subset.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Subset {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_passing: bool,
}

/// `TransparentProxy` of a target.
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct TransparentProxy {
    #[serde(rename = "DialedDirectly", skip_serializing_if = "std::ops::Not::not")]
    pub dialed_directly: bool,
}

/// One config entry's body with canonical keys (`json_in`), and as written.
#[derive(Debug, Clone)]
struct Entry {
    canon: Map<String, Value>,
    raw: Map<String, Value>,
}

impl Entry {
    fn str(&self, key: &str) -> &str {
        self.canon
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    fn obj(&self, key: &str) -> Option<&Map<String, Value>> {
        self.canon.get(key).and_then(Value::as_object)
    }
    /// A map whose keys are names the user chose (`Subsets`, `Failover`): keys
    /// as written, values with canonical keys.
    fn named(&self, key: &str) -> Option<Map<String, Value>> {
        let raw = get_ci(&self.raw, key)?.as_object()?;
        Some(
            raw.iter()
                .map(|(k, v)| (k.clone(), normalize(v.clone())))
                .collect(),
        )
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A Go duration as Consul's decoder takes it: a string, or nanoseconds.
fn duration_of(v: Option<&Value>) -> Duration {
    match v {
        Some(Value::String(s)) => tribune_types::parse_go_duration(s).unwrap_or_default(),
        Some(Value::Number(n)) => n.as_u64().map(Duration::from_nanos).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// The entries a chain may use, by kind and name.
#[derive(Debug, Default)]
pub struct Entries {
    by_kind: HashMap<String, HashMap<String, Entry>>,
}

impl Entries {
    /// Parses the stored bodies of `entries` (other kinds are ignored).
    pub fn new(entries: &[ConfigEntry]) -> Result<Entries, ChainError> {
        let mut by_kind: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        for e in entries {
            let malformed = |reason: String| ChainError::Malformed {
                kind: e.kind.clone(),
                name: e.name.clone(),
                reason,
            };
            let raw: Value =
                serde_json::from_str(&e.body_json).map_err(|err| malformed(err.to_string()))?;
            let Value::Object(raw) = raw else {
                return Err(malformed("not an object".into()));
            };
            let Value::Object(canon) = normalize(Value::Object(raw.clone())) else {
                return Err(malformed("not an object".into()));
            };
            by_kind
                .entry(e.kind.clone())
                .or_default()
                .insert(e.name.clone(), Entry { canon, raw });
        }
        Ok(Entries { by_kind })
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Entry> {
        self.by_kind.get(kind)?.get(name)
    }
}

/// The config entry kinds a chain is compiled from.
pub const CHAIN_KINDS: [&str; 5] = [
    "service-router",
    "service-splitter",
    "service-resolver",
    "service-defaults",
    "proxy-defaults",
];

/// Consul's checks when one of [`CHAIN_KINDS`] is written: a splitter's own
/// rules, then every chain the entries define compiled with `proposed` in place
/// of the stored entry of its kind and name (Consul's speculative compile, so a
/// router on a TCP service is refused when written, not when read).
pub fn check_write(
    proposed: &ConfigEntry,
    stored: &[ConfigEntry],
    datacenter: &str,
) -> Result<(), ChainError> {
    if !CHAIN_KINDS.contains(&proposed.kind.as_str()) {
        return Ok(());
    }
    let mut all: Vec<ConfigEntry> = stored
        .iter()
        .filter(|e| !(e.kind == proposed.kind && e.name == proposed.name))
        .cloned()
        .collect();
    all.push(proposed.clone());
    let entries = Entries::new(&all)?;
    if proposed.kind == "service-splitter" {
        check_splits(&entries, &proposed.name)?;
    }
    let mut services: Vec<&str> = all
        .iter()
        .filter(|e| e.kind != "proxy-defaults")
        .map(|e| e.name.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    for service in services {
        let req = Request {
            service,
            datacenter,
            // Consul compiles these with a placeholder trust domain too.
            trust_domain: "11111111-2222-3333-4444-555555555555.consul",
            overrides: Overrides::default(),
        };
        match compile(&req, &entries) {
            // Consul stores redirects and failover to peers; only reading such a
            // chain fails here, since there is no peering to compile them for.
            Ok(_) | Err(ChainError::Peering(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A splitter has splits, and their weights (rounded to hundredths) add up to 100.
fn check_splits(entries: &Entries, name: &str) -> Result<(), ChainError> {
    let splits = entries
        .get("service-splitter", name)
        .and_then(|e| e.canon.get("splits"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if splits.is_empty() {
        return Err(ChainError::NoSplits);
    }
    let hundredths: i64 = splits
        .iter()
        .map(|s| {
            let w = s.get("weight").and_then(Value::as_f64).unwrap_or(0.0);
            (w * 100.0).round() as i64
        })
        .sum();
    if hundredths != 10_000 {
        return Err(ChainError::SplitSum(format!(
            "{:.6}",
            hundredths as f64 / 100.0
        )));
    }
    Ok(())
}

/// A target before it is kept: what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct TargetKey {
    service: String,
    subset: String,
    datacenter: String,
}

impl TargetKey {
    fn id(&self) -> String {
        let base = format!("{}.{NS}.{PARTITION}.{}", self.service, self.datacenter);
        if self.subset.is_empty() {
            base
        } else {
            format!("{}.{base}", self.subset)
        }
    }

    fn sni(&self, trust_domain: &str) -> String {
        let base = format!(
            "{}.{NS}.{}.internal.{trust_domain}",
            self.service, self.datacenter
        );
        if self.subset.is_empty() {
            base
        } else {
            format!("{}.{base}", self.subset)
        }
    }

    /// Consul's `rewriteTarget`: another service drops the subset; the other
    /// fields replace when set.
    fn rewrite(&self, service: &str, subset: &str, datacenter: &str) -> TargetKey {
        let mut t = self.clone();
        if !service.is_empty() && service != t.service {
            t.service = service.to_owned();
            t.subset.clear();
        }
        if !subset.is_empty() {
            t.subset = subset.to_owned();
        }
        if !datacenter.is_empty() {
            t.datacenter = datacenter.to_owned();
        }
        t
    }
}

struct Compiler<'a> {
    req: &'a Request<'a>,
    entries: &'a Entries,
    nodes: BTreeMap<String, Node>,
    targets: BTreeMap<String, Target>,
    protocol: Option<String>,
    advanced: bool,
    /// `OverrideProtocol` is not HTTP-like: routers and splitters are skipped.
    no_advanced: bool,
    customized_protocol: bool,
    customized_timeout: bool,
    customized_mesh: bool,
    /// Splitters being compiled, nested.
    depth: usize,
}

fn http_like(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// Compiles the chain for `req` from `entries`.
pub fn compile(req: &Request<'_>, entries: &Entries) -> Result<Chain, ChainError> {
    let mut c = Compiler {
        req,
        entries,
        nodes: BTreeMap::new(),
        targets: BTreeMap::new(),
        protocol: None,
        advanced: false,
        no_advanced: !req.overrides.protocol.is_empty() && !http_like(&req.overrides.protocol),
        customized_protocol: false,
        customized_timeout: false,
        customized_mesh: false,
        depth: 0,
    };
    let start = c.assemble()?;
    // Before flattening, which would chase a loop of splitters for ever.
    c.detect_cycles(&start)?;
    c.flatten_splitters()?;
    c.remove_unused(&start);
    let mut protocol = c.protocol.clone().unwrap_or_else(|| "tcp".into());
    if c.advanced && !http_like(&protocol) {
        return Err(ChainError::AdvancedRouting {
            chain: req.service.into(),
            protocol,
        });
    }
    if !req.overrides.protocol.is_empty() && req.overrides.protocol != protocol {
        protocol = req.overrides.protocol.clone();
        c.customized_protocol = true;
    }
    let default = match c.nodes.get(&start) {
        None => true,
        Some(n) => n.resolver.as_ref().is_some_and(|r| {
            r.default
                && c.targets
                    .get(&r.target)
                    .is_some_and(|t| t.service == req.service)
        }),
    };
    let service_meta = entries
        .get("service-defaults", req.service)
        .and_then(|e| e.obj("meta"))
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let customization_hash = c.customization_hash();
    Ok(Chain {
        service_name: req.service.into(),
        namespace: NS,
        partition: PARTITION,
        datacenter: req.datacenter.into(),
        customization_hash,
        default,
        protocol,
        service_meta,
        start_node: start,
        nodes: c.nodes,
        targets: c.targets,
        auto_virtual_ips: None,
        manual_virtual_ips: None,
    })
}

impl Compiler<'_> {
    fn target(&self, service: &str) -> TargetKey {
        TargetKey {
            service: service.into(),
            subset: String::new(),
            datacenter: self.req.datacenter.into(),
        }
    }

    /// Consul's protocol for `service`: its service-defaults (even when empty),
    /// else `proxy-defaults/global`'s `Config.protocol`, else tcp.
    fn service_protocol(&self, service: &str) -> String {
        let p = match self.entries.get("service-defaults", service) {
            Some(sd) => sd.str("protocol").to_owned(),
            None => self
                .entries
                .get("proxy-defaults", "global")
                .and_then(|pd| pd.obj("config"))
                .and_then(|cfg| get_ci(cfg, "protocol"))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        };
        if p.is_empty() {
            "tcp".into()
        } else {
            p.to_ascii_lowercase()
        }
    }

    fn record_protocol(&mut self, service: &str) -> Result<(), ChainError> {
        let p = self.service_protocol(service);
        match &self.protocol {
            None => self.protocol = Some(p),
            Some(first) if *first != p => {
                return Err(ChainError::InconsistentProtocols {
                    chain: self.req.service.into(),
                    service: service.into(),
                    protocol: p,
                    first: first.clone(),
                })
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn assemble(&mut self) -> Result<String, ChainError> {
        let name = self.req.service;
        let router = if self.no_advanced {
            if self.entries.get("service-router", name).is_some()
                || self.entries.get("service-splitter", name).is_some()
            {
                self.customized_protocol = true;
            }
            None
        } else {
            self.entries.get("service-router", name)
        };
        let Some(router) = router else {
            return self.splitter_or_resolver(self.target(name));
        };
        self.advanced = true;
        self.record_protocol(name)?;
        let key = format!("router:{name}.{NS}.{PARTITION}");
        let raw_routes: Vec<Value> = get_ci(&router.raw, "Routes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut routes = Vec::new();
        for raw in raw_routes {
            let canon = normalize(raw.clone());
            let dest = canon.get("destination").and_then(Value::as_object);
            let svc = dest
                .map(|d| str_of(d, "service"))
                .filter(|s| !s.is_empty())
                .unwrap_or(name)
                .to_owned();
            let subset = dest.map(|d| str_of(d, "servicesubset")).unwrap_or_default();
            let next = if subset.is_empty() {
                self.splitter_or_resolver(self.target(&svc))?
            } else {
                let t = TargetKey {
                    subset: subset.to_owned(),
                    ..self.target(&svc)
                };
                self.resolver(t, false)?
            };
            routes.push(Route {
                definition: raw,
                next_node: next,
            });
        }
        let next = self.splitter_or_resolver(self.target(name))?;
        routes.push(Route {
            definition: serde_json::json!({
                "Match": {"HTTP": {"PathPrefix": "/"}},
                "Destination": {"Service": name, "Namespace": NS, "Partition": PARTITION},
            }),
            next_node: next,
        });
        self.nodes.insert(
            key.clone(),
            Node {
                kind: "router",
                name: format!("{name}.{NS}.{PARTITION}"),
                routes,
                splits: Vec::new(),
                resolver: None,
                load_balancer: None,
            },
        );
        Ok(key)
    }

    fn splitter_or_resolver(&mut self, t: TargetKey) -> Result<String, ChainError> {
        if !self.no_advanced && self.entries.get("service-splitter", &t.service).is_some() {
            return self.splitter(&t.service);
        }
        self.resolver(t, false)
    }

    fn splitter(&mut self, service: &str) -> Result<String, ChainError> {
        let key = format!("splitter:{service}.{NS}.{PARTITION}");
        if self.nodes.contains_key(&key) {
            return Ok(key);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ChainError::TooLarge(self.req.service.into()));
        }
        let result = self.splitter_node(service, key);
        self.depth -= 1;
        result
    }

    fn splitter_node(&mut self, service: &str, key: String) -> Result<String, ChainError> {
        // Callers look for the entry first; without one the service compiles
        // as its resolver, as in Consul.
        let Some(entry) = self.entries.get("service-splitter", service) else {
            return self.resolver(self.target(service), false);
        };
        self.advanced = true;
        // Recorded before its splits are followed, so a loop back here ends.
        self.nodes.insert(
            key.clone(),
            Node {
                kind: "splitter",
                name: format!("{service}.{NS}.{PARTITION}"),
                routes: Vec::new(),
                splits: Vec::new(),
                resolver: None,
                load_balancer: None,
            },
        );
        let raw_splits: Vec<Value> = get_ci(&entry.raw, "Splits")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut splits = Vec::new();
        let mut load_balancer = None;
        for raw in raw_splits {
            let canon = normalize(raw.clone());
            let m = canon.as_object().cloned().unwrap_or_default();
            let svc = Some(str_of(&m, "service"))
                .filter(|s| !s.is_empty())
                .unwrap_or(service)
                .to_owned();
            let subset = str_of(&m, "servicesubset").to_owned();
            let weight = m.get("weight").and_then(Value::as_f64).unwrap_or(0.0) as f32;
            let next = if svc != service
                && subset.is_empty()
                && self.entries.get("service-splitter", &svc).is_some()
            {
                self.splitter(&svc)?
            } else {
                let t = TargetKey {
                    subset,
                    ..self.target(&svc)
                };
                let next = self.resolver(t, false)?;
                if load_balancer.is_none() {
                    load_balancer = self
                        .nodes
                        .get(&next)
                        .and_then(|n| n.load_balancer.clone())
                        .filter(|lb| {
                            lb.as_object()
                                .and_then(|o| get_ci(o, "Policy"))
                                .and_then(Value::as_str)
                                .is_some_and(|p| p == "ring_hash" || p == "maglev")
                        });
                }
                next
            };
            splits.push(Split {
                definition: raw,
                weight: normalize_weight(weight),
                next_node: next,
            });
        }
        if let Some(node) = self.nodes.get_mut(&key) {
            node.splits = splits;
            node.load_balancer = load_balancer;
        }
        Ok(key)
    }

    /// Consul's `getResolverNode`: follows redirects and default subsets, then
    /// builds the resolver node and keeps its target; unless it is itself a
    /// failover target, also resolves its failover targets.
    fn resolver(&mut self, mut t: TargetKey, for_failover: bool) -> Result<String, ChainError> {
        let mut history: Vec<String> = Vec::new();
        let entry = loop {
            let id = t.id();
            let key = format!("resolver:{id}");
            if self.nodes.contains_key(&key) {
                return Ok(key);
            }
            self.record_protocol(&t.service)?;
            if history.contains(&id) {
                history.push(id);
                return Err(ChainError::CircularRedirect(history.join(" -> ")));
            }
            history.push(id.clone());
            let entry = self.entries.get("service-resolver", &t.service);
            if let Some(r) = entry.and_then(|e| e.obj("redirect")) {
                if !str_of(r, "peer").is_empty() {
                    return Err(ChainError::Peering(t.service.clone()));
                }
                let next = t.rewrite(
                    str_of(r, "service"),
                    str_of(r, "servicesubset"),
                    str_of(r, "datacenter"),
                );
                if next.id() != id {
                    t = next;
                    continue;
                }
            }
            let default_subset = entry.map(|e| e.str("defaultsubset")).unwrap_or_default();
            if t.subset.is_empty() && !default_subset.is_empty() {
                t = t.rewrite("", default_subset, "");
                continue;
            }
            break entry;
        };
        let external = self.is_external(&t);
        let subsets = entry.and_then(|e| e.named("subsets"));
        let failovers = entry.and_then(|e| e.named("failover"));
        if external {
            // Consul's order: a redirect that went nowhere, then subsets, then failover.
            if entry.and_then(|e| e.obj("redirect")).is_some() {
                return Err(self.external(&t, "redirects"));
            }
            if subsets.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(self.external(&t, "subsets"));
            }
            if failovers.as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(self.external(&t, "failover"));
            }
        }
        let subset = if t.subset.is_empty() {
            Subset::default()
        } else {
            let Some(s) = subsets
                .as_ref()
                .and_then(|s| s.get(&t.subset))
                .and_then(Value::as_object)
            else {
                return Err(ChainError::NoSuchSubset {
                    service: t.service.clone(),
                    subset: t.subset.clone(),
                });
            };
            Subset {
                filter: str_of(s, "filter").to_owned(),
                only_passing: s
                    .get("onlypassing")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        };
        let own_timeout = entry
            .map(|e| duration_of(e.canon.get("connecttimeout")))
            .unwrap_or_default();
        let mut connect_timeout = if own_timeout.is_zero() {
            DEFAULT_CONNECT_TIMEOUT
        } else {
            own_timeout
        };
        let override_timeout = self.req.overrides.connect_timeout;
        if !override_timeout.is_zero() && override_timeout != connect_timeout {
            connect_timeout = override_timeout;
            self.customized_timeout = true;
        }
        let request_timeout = entry
            .map(|e| duration_of(e.canon.get("requesttimeout")))
            .unwrap_or_default();
        let load_balancer = entry
            .and_then(|e| get_ci(&e.raw, "LoadBalancer"))
            .filter(|lb| !lb.is_null())
            .cloned();
        // Consul's `IsDefault`, on the parsed values: a "0s" timeout is none, an
        // empty `LoadBalancer` object is one.
        let is_default = entry.is_none_or(|e| {
            e.str("defaultsubset").is_empty()
                && subsets.as_ref().is_none_or(Map::is_empty)
                && e.obj("redirect").is_none()
                && failovers.as_ref().is_none_or(Map::is_empty)
                && own_timeout.is_zero()
                && request_timeout.is_zero()
                && load_balancer.is_none()
        });
        let (sni, external, mesh, dialed) = self.target_settings(&t, external);
        let id = t.id();
        let key = format!("resolver:{id}");
        self.targets.insert(
            id.clone(),
            Target {
                connect_timeout: format_go_duration(connect_timeout),
                id: id.clone(),
                service: t.service.clone(),
                service_subset: t.subset.clone(),
                namespace: NS,
                partition: PARTITION,
                datacenter: t.datacenter.clone(),
                mesh_gateway: MeshGateway { mode: mesh },
                subset,
                transparent_proxy: TransparentProxy {
                    dialed_directly: dialed,
                },
                external,
                sni: sni.unwrap_or_else(|| t.sni(self.req.trust_domain)),
                name: t.sni(self.req.trust_domain),
            },
        );
        let mut node = Node {
            kind: "resolver",
            name: id.clone(),
            routes: Vec::new(),
            splits: Vec::new(),
            resolver: Some(Resolver {
                connect_timeout: format_go_duration(connect_timeout),
                default: is_default,
                request_timeout: u64::try_from(request_timeout.as_nanos()).unwrap_or(u64::MAX),
                target: id.clone(),
                failover: None,
            }),
            load_balancer,
        };
        if for_failover {
            return Ok(key);
        }
        self.nodes.insert(key.clone(), node.clone());
        let failover = failovers.and_then(|f| {
            f.get(&t.subset)
                .or_else(|| f.get("*"))
                .and_then(Value::as_object)
                .cloned()
        });
        if let Some(f) = failover {
            let mut candidates = Vec::new();
            let dcs: Vec<&str> = f
                .get("datacenters")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let targets: Vec<Map<String, Value>> = f
                .get("targets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_object().cloned()).collect())
                .unwrap_or_default();
            let (svc, sub) = (str_of(&f, "service"), str_of(&f, "servicesubset"));
            if !dcs.is_empty() {
                candidates.extend(dcs.iter().map(|dc| t.rewrite(svc, sub, dc)));
            } else if !targets.is_empty() {
                if targets.iter().any(|ft| !str_of(ft, "peer").is_empty()) {
                    return Err(ChainError::Peering(t.service.clone()));
                }
                candidates.extend(targets.iter().map(|ft| {
                    t.rewrite(
                        str_of(ft, "service"),
                        str_of(ft, "servicesubset"),
                        str_of(ft, "datacenter"),
                    )
                }));
            } else {
                candidates.push(t.rewrite(svc, sub, ""));
            }
            candidates.retain(|c| c.id() != id);
            if !candidates.is_empty() {
                let mut ids = Vec::new();
                for c in candidates {
                    let k = self.resolver(c, true)?;
                    ids.push(k.strip_prefix("resolver:").unwrap_or(&k).to_owned());
                }
                if let Some(r) = node.resolver.as_mut() {
                    r.failover = Some(Failover { targets: ids });
                }
                self.nodes.insert(key.clone(), node);
            }
        }
        Ok(key)
    }

    /// Whether the target's service-defaults give it an external SNI.
    fn is_external(&self, t: &TargetKey) -> bool {
        self.entries
            .get("service-defaults", &t.service)
            .is_some_and(|sd| !sd.str("externalsni").is_empty())
    }

    fn external(&self, t: &TargetKey, what: &'static str) -> ChainError {
        ChainError::External {
            service: t.service.clone(),
            what,
        }
    }

    /// A target's SNI override (external services), and its mesh gateway mode
    /// and `DialedDirectly`: service-defaults first, then proxy-defaults, then
    /// the request's override.
    fn target_settings(
        &mut self,
        t: &TargetKey,
        external: bool,
    ) -> (Option<String>, bool, String, bool) {
        let sd = self.entries.get("service-defaults", &t.service);
        let pd = self.entries.get("proxy-defaults", "global");
        let mode_of = |e: Option<&Entry>| {
            e.and_then(|e| e.obj("meshgateway"))
                .map(|m| str_of(m, "mode").to_owned())
                .unwrap_or_default()
        };
        let dialed_of = |e: Option<&Entry>| {
            e.and_then(|e| e.obj("transparentproxy"))
                .and_then(|m| m.get("dialeddirectly"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let sni = external.then(|| {
            sd.map(|e| e.str("externalsni").to_owned())
                .unwrap_or_default()
        });
        let (mut mode, mut dialed) = if external {
            (String::new(), false)
        } else {
            (mode_of(sd), dialed_of(sd))
        };
        if !external {
            if mode.is_empty() {
                mode = mode_of(pd);
            }
            dialed = dialed || dialed_of(pd);
        }
        let over = &self.req.overrides.mesh_gateway_mode;
        if !external && !over.is_empty() && *over != mode {
            mode = over.clone();
            self.customized_mesh = true;
        }
        (sni, external, mode, dialed)
    }

    /// Consul's `flattenAdjacentSplitterNodes`: a split into another splitter
    /// takes that splitter's splits, weights multiplied.
    fn flatten_splitters(&mut self) -> Result<(), ChainError> {
        loop {
            let mut changed = false;
            let keys: Vec<String> = self
                .nodes
                .keys()
                .filter(|k| k.starts_with("splitter:"))
                .cloned()
                .collect();
            for key in keys {
                let splits = self.nodes[&key].splits.clone();
                let mut out = Vec::new();
                for s in splits {
                    match self.nodes.get(&s.next_node) {
                        Some(inner) if inner.kind == "splitter" && s.next_node != key => {
                            changed = true;
                            for i in &inner.splits {
                                out.push(Split {
                                    definition: i.definition.clone(),
                                    weight: normalize_weight(s.weight * i.weight / 100.0),
                                    next_node: i.next_node.clone(),
                                });
                            }
                        }
                        _ => out.push(s),
                    }
                }
                // Layered splitters multiply: bound what one node may end with.
                if out.len() > MAX_SPLITS {
                    return Err(ChainError::TooLarge(self.req.service.into()));
                }
                if let Some(n) = self.nodes.get_mut(&key) {
                    n.splits = out;
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }

    fn edges(&self, key: &str) -> Vec<String> {
        self.nodes.get(key).map_or_else(Vec::new, |n| {
            n.routes
                .iter()
                .map(|r| r.next_node.clone())
                .chain(n.splits.iter().map(|s| s.next_node.clone()))
                .collect()
        })
    }

    /// Consul's `detectCircularReferences`: the error names the whole path from
    /// the start. Nodes already explored are not walked again, so layered
    /// splitters cost their edges, not their paths.
    fn detect_cycles(&self, start: &str) -> Result<(), ChainError> {
        fn visit(
            c: &Compiler<'_>,
            key: &str,
            stack: &mut Vec<String>,
            done: &mut HashSet<String>,
        ) -> Result<(), ChainError> {
            if stack.iter().any(|k| k == key) {
                let mut path = stack.clone();
                path.push(key.to_owned());
                return Err(ChainError::CircularReference(path.join(" -> ")));
            }
            if done.contains(key) {
                return Ok(());
            }
            stack.push(key.to_owned());
            for next in c.edges(key) {
                visit(c, &next, stack, done)?;
            }
            stack.pop();
            done.insert(key.to_owned());
            Ok(())
        }
        visit(self, start, &mut Vec::new(), &mut HashSet::new())
    }

    /// Drops nodes the start no longer reaches (splitters flattened away) and
    /// targets no kept resolver uses.
    fn remove_unused(&mut self, start: &str) {
        let mut seen = HashSet::new();
        let mut todo = vec![start.to_owned()];
        while let Some(k) = todo.pop() {
            if seen.insert(k.clone()) {
                todo.extend(self.edges(&k));
            }
        }
        self.nodes.retain(|k, _| seen.contains(k));
        let used: HashSet<String> = self
            .nodes
            .values()
            .filter_map(|n| n.resolver.as_ref())
            .flat_map(|r| {
                std::iter::once(r.target.clone())
                    .chain(r.failover.iter().flat_map(|f| f.targets.iter().cloned()))
            })
            .collect();
        self.targets.retain(|id, _| used.contains(id));
    }

    /// Consul's `CustomizationHash`: `hashstructure` (FNV-1, 64 bits) of the
    /// overrides that changed the chain, hex, first 8 digits.
    fn customization_hash(&self) -> String {
        if !(self.customized_protocol || self.customized_timeout || self.customized_mesh) {
            return String::new();
        }
        let o = &self.req.overrides;
        let mode = if self.customized_mesh {
            o.mesh_gateway_mode.as_str()
        } else {
            ""
        };
        let protocol = if self.customized_protocol {
            o.protocol.as_str()
        } else {
            ""
        };
        let timeout = if self.customized_timeout {
            i64::try_from(o.connect_timeout.as_nanos()).unwrap_or(i64::MAX)
        } else {
            0
        };
        let mesh = hash_struct("MeshGatewayConfig", &[("Mode", fnv1(mode.as_bytes()))]);
        let top = hash_struct(
            "",
            &[
                ("OverrideMeshGateway", mesh),
                ("OverrideProtocol", fnv1(protocol.as_bytes())),
                ("OverrideConnectTimeout", fnv1(&timeout.to_le_bytes())),
            ],
        );
        format!("{top:x}").chars().take(8).collect()
    }
}

/// Consul's `NormalizeWeight`: scaled to hundredths in `float32`, rounded,
/// scaled back in `float32` (the rounding of `33.335` depends on it).
fn normalize_weight(w: f32) -> f32 {
    (f64::from(w * 100.0).round() as f32) / 100.0
}

/// FNV-1 (not 1a), 64 bits.
fn fnv1(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= u64::from(*b);
    }
    h
}

/// `hashstructure`'s struct hash: the type name's hash, XORed with each field's
/// `(name hash, value hash)` pair hashed in order.
fn hash_struct(name: &str, fields: &[(&str, u64)]) -> u64 {
    let mut h = fnv1(name.as_bytes());
    for (field, value) in fields {
        let mut pair = [0u8; 16];
        pair[..8].copy_from_slice(&fnv1(field.as_bytes()).to_le_bytes());
        pair[8..].copy_from_slice(&value.to_le_bytes());
        h ^= fnv1(&pair);
    }
    h
}

#[cfg(test)]
mod tests;
