//! Shared test support: [`FakeBackend`], an in-memory [`Backend`] that behaves like a
//! single-server agent (local services and checks, maintenance, TTL updates, gossip
//! members, a KV store and catalog with blocking reads), and [`serve`], which runs the
//! real router on an ephemeral 127.0.0.1 port so tests talk plain HTTP to it.
//!
//! Every test builds its own backend and server, so tests share no state and can run in
//! parallel. Tests may inspect the backend directly (through [`FakeBackend::state`]) to
//! check that rejected requests changed nothing.

#![allow(dead_code)] // Not every test module uses every helper.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tribune_http_api::backend::LocalCheck;
use tribune_http_api::{
    AgentInfo, Backend, BackendError, ClusterStatus, DatacenterCoordinates, HttpConfig,
    KeyringPool, KeyringRequest, ServiceRegistration,
};
use tribune_types::model::coordinate::CoordinateEntry;
use tribune_types::model::ops::{
    Deregistration, HealthEntry, KvDeleteMode, KvSetMode, QueryMeta, QueryOptions, ReadRequest,
    ReadResult, Registration, ServiceInstance, TxnError, TxnResult, WriteOutcome, WriteRejected,
    WriteRequest,
};
use tribune_types::model::query::QueryOutcome;
use tribune_types::model::{
    CaRoot, Check, CheckDefinition, ConfigEntry, KvEntry, Member, Node, RaftIndex, Service, Session,
};
use tribune_types::{format_go_duration, HealthStatus, SessionId};

/// Consul's default notes for maintenance checks without a reason.
const SERVICE_MAINT_DEFAULT: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";
const NODE_MAINT_DEFAULT: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";

/// Everything the fake agent and its one-server "cluster" hold.
#[derive(Debug, Default)]
pub struct State {
    pub info: AgentInfo,
    pub lan: Vec<Member>,
    pub wan: Vec<Member>,
    pub status: ClusterStatus,
    pub services: BTreeMap<String, Service>,
    pub checks: BTreeMap<String, LocalCheck>,
    /// Raft-like index, bumped by every write (local or cluster).
    pub index: u64,
    pub kv: BTreeMap<String, KvEntry>,
    pub nodes: BTreeMap<String, Node>,
    /// (node, service ID) → service.
    pub catalog_services: BTreeMap<(String, String), Service>,
    /// (node, check ID) → check.
    pub catalog_checks: BTreeMap<(String, String), Check>,
    /// (kind, name) → entry.
    pub config: BTreeMap<(String, String), ConfigEntry>,
    pub ca_roots: Vec<CaRoot>,
    pub autopilot: Option<tribune_types::model::operator::AutopilotSettings>,
    pub ca_config: Option<tribune_types::model::CaConfig>,
    pub left: bool,
    pub reloads: u32,
    pub joins: Vec<(String, bool)>,
    pub force_leaves: Vec<(String, bool, bool)>,
    /// Sessions, kept as written (no validation: that is the state layer's job).
    pub sessions: BTreeMap<SessionId, Session>,
    /// Every cluster write, in order, as the handlers built it.
    pub writes: Vec<WriteRequest>,
    /// Every cluster read, in order, with its options.
    pub reads: Vec<(ReadRequest, QueryOptions)>,
    /// The canned outcome of the next transactions (read-only or not); `None` commits
    /// with no results.
    pub txn_outcome: Option<Result<Vec<TxnResult>, Vec<TxnError>>>,
    /// The canned answer of keyring operations (one entry per pool).
    pub keyring: Vec<KeyringPool>,
    /// Every keyring operation, in order.
    pub keyring_requests: Vec<KeyringRequest>,
    /// node → its coordinate (default segment only).
    pub coordinates: BTreeMap<String, CoordinateEntry>,
    /// The canned answer of `/v1/coordinate/datacenters`.
    pub datacenters: Vec<DatacenterCoordinates>,
}

/// The in-memory backend.
pub struct FakeBackend {
    state: Mutex<State>,
    /// Carries the current index; blocking reads wait on it.
    index_tx: watch::Sender<u64>,
    /// Ticks on every change to local services or checks (`Backend::local_changes`).
    local_tx: watch::Sender<u64>,
    /// How many times `local_changes` was called: lets a test wait until a blocking
    /// request is inside its handler, without sleeping.
    subscriptions: watch::Sender<usize>,
    /// Log lines for `/v1/agent/monitor`.
    pub logs: tokio::sync::broadcast::Sender<Arc<tribune_http_api::LogLine>>,
    /// Fired user events (the fake delivers them to itself, as gossip would).
    events: Mutex<Vec<tribune_http_api::UserEvent>>,
    events_tx: watch::Sender<u64>,
}

impl FakeBackend {
    /// A server agent `node1` in `dc1` that is its own leader.
    pub fn new() -> Arc<Self> {
        let member = Member {
            name: "node1".into(),
            addr: "127.0.0.1".into(),
            port: 8301,
            tags: [
                ("role", "consul"),
                ("dc", "dc1"),
                ("port", "8300"),
                ("id", "7c8f8a1e-2f6b-4ad1-9a3c-3d4b5e6f7a8b"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            status: 1,
        };
        let mut wan_member = member.clone();
        wan_member.name = "node1.dc1".into();
        wan_member.port = 8302;
        let info = AgentInfo {
            node_name: "node1".into(),
            node_id: "7c8f8a1e-2f6b-4ad1-9a3c-3d4b5e6f7a8b".into(),
            datacenter: "dc1".into(),
            primary_datacenter: "dc1".into(),
            server: true,
            version: "1.17.0".into(),
            revision: "abc1234".into(),
            advertise_addr: "127.0.0.1".into(),
            node_meta: [("rack".to_owned(), "r1".to_owned())].into(),
            session_ttl_min: Duration::from_secs(10),
            ports: [
                ("http", 8500),
                ("dns", 8600),
                ("server", 8300),
                ("serf_lan", 8301),
                ("serf_wan", 8302),
                ("grpc", 8502),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            member: member.clone(),
            debug_config: BTreeMap::new(),
            disable_coordinates: false,
        };
        let state = State {
            info,
            lan: vec![member],
            wan: vec![wan_member],
            status: ClusterStatus {
                leader: "127.0.0.1:8300".into(),
                peers: vec!["127.0.0.1:8300".into()],
            },
            index: 1,
            ..Default::default()
        };
        let (index_tx, _) = watch::channel(1);
        let (local_tx, _) = watch::channel(0);
        let (subscriptions, _) = watch::channel(0);
        Arc::new(FakeBackend {
            state: Mutex::new(state),
            index_tx,
            local_tx,
            subscriptions,
            logs: tokio::sync::broadcast::channel(64).0,
            events: Mutex::new(Vec::new()),
            events_tx: watch::channel(0).0,
        })
    }

    /// Direct access to the state, for assertions and setup.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a mutation, bumps the index and wakes blocking readers.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, index) = {
            let mut st = self.state();
            let out = f(&mut st);
            st.index += 1;
            (out, st.index)
        };
        self.index_tx.send_replace(index);
        out
    }

    /// Watches the number of `local_changes` subscriptions made so far.
    pub fn subscriptions(&self) -> watch::Receiver<usize> {
        self.subscriptions.subscribe()
    }

    /// A [`Self::mutate`] of local agent state, which also ticks `local_changes`.
    fn mutate_local<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = self.mutate(f);
        self.local_tx.send_modify(|v| *v += 1);
        out
    }

    fn meta(index: u64, opts: &QueryOptions) -> QueryMeta {
        QueryMeta {
            index,
            known_leader: true,
            last_contact: Duration::ZERO,
            consistency: opts.consistency,
            cache: None,
        }
    }
}

fn raft(index: u64, existing: Option<RaftIndex>) -> RaftIndex {
    RaftIndex {
        create_index: existing.map_or(index, |r| r.create_index),
        modify_index: index,
    }
}

/// The synced record of a local check defined by `def`.
fn local_check(node: &str, def: &CheckDefinition, service: Option<&Service>) -> LocalCheck {
    LocalCheck {
        check: Check {
            node: node.into(),
            check_id: def.id.clone(),
            name: def.name.clone(),
            status: def.status.unwrap_or(HealthStatus::Critical),
            notes: def.notes.clone(),
            output: String::new(),
            service_id: def.service_id.clone(),
            service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            check_type: def.check_type().to_owned(),
            interval: def.interval.map(format_go_duration).unwrap_or_default(),
            timeout: def.timeout.map(format_go_duration).unwrap_or_default(),
            definition_json: None,
            raft: RaftIndex::default(),
        },
        definition: def.clone(),
    }
}

fn maintenance_check(
    node: &str,
    id: &str,
    name: &str,
    notes: String,
    service: Option<&Service>,
) -> LocalCheck {
    LocalCheck {
        check: Check {
            node: node.into(),
            check_id: id.into(),
            name: name.into(),
            status: HealthStatus::Critical,
            notes,
            service_id: service.map(|s| s.id.to_string()).unwrap_or_default(),
            service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            check_type: "maintenance".into(),
            ..Default::default()
        },
        definition: CheckDefinition {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        },
    }
}

impl State {
    fn read(&self, req: &ReadRequest) -> ReadResult {
        match req {
            ReadRequest::KvGet { key } => {
                ReadResult::Kv(self.kv.get(key).cloned().into_iter().collect())
            }
            ReadRequest::KvList { prefix } => ReadResult::Kv(
                self.kv
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
            ReadRequest::KvKeys { prefix, separator } => {
                let mut keys: Vec<String> = Vec::new();
                for k in self.kv.keys().filter(|k| k.starts_with(prefix.as_str())) {
                    let rest = &k[prefix.len()..];
                    let key = match (!separator.is_empty())
                        .then(|| rest.find(separator.as_str()))
                        .flatten()
                    {
                        Some(i) => format!("{prefix}{}", &rest[..i + separator.len()]),
                        None => k.clone(),
                    };
                    if keys.last() != Some(&key) {
                        keys.push(key);
                    }
                }
                ReadResult::Keys(keys)
            }
            ReadRequest::CatalogNodes => ReadResult::Nodes(self.nodes.values().cloned().collect()),
            ReadRequest::CatalogServices => {
                let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in self.catalog_services.values() {
                    let tags = by_name.entry(s.service.clone()).or_default();
                    for t in &s.tags {
                        if !tags.contains(t) {
                            tags.push(t.clone());
                        }
                    }
                }
                ReadResult::Services(by_name.into_iter().collect())
            }
            ReadRequest::CatalogService { service } => ReadResult::ServiceInstances(
                self.catalog_services
                    .iter()
                    .filter(|(_, s)| &s.service == service)
                    .filter_map(|((node, _), s)| {
                        Some(ServiceInstance {
                            node: self.nodes.get(node)?.clone(),
                            service: s.clone(),
                        })
                    })
                    .collect(),
            ),
            ReadRequest::CatalogConnect { service } => ReadResult::ServiceInstances(
                self.catalog_services
                    .iter()
                    .filter(|(_, s)| {
                        (s.kind == "connect-proxy" && &s.proxy_destination == service)
                            || (&s.service == service && s.connect_native)
                    })
                    .filter_map(|((node, _), s)| {
                        Some(ServiceInstance {
                            node: self.nodes.get(node)?.clone(),
                            service: s.clone(),
                        })
                    })
                    .collect(),
            ),
            ReadRequest::HealthConnect { .. } => {
                // Not exercised by these tests; the real query is tested in `state`.
                ReadResult::Health(Vec::new())
            }
            ReadRequest::CatalogNode { node } => {
                ReadResult::NodeServices(self.nodes.get(node.as_str()).map(|n| {
                    let services = self
                        .catalog_services
                        .iter()
                        .filter(|((owner, _), _)| owner == node.as_str())
                        .map(|(_, s)| s.clone())
                        .collect();
                    (n.clone(), services)
                }))
            }
            ReadRequest::HealthNode { node } => ReadResult::Checks(
                self.catalog_checks
                    .iter()
                    .filter(|((n, _), _)| n == node.as_str())
                    .map(|(_, c)| c.clone())
                    .collect(),
            ),
            ReadRequest::HealthChecks { service } => ReadResult::Checks(
                self.catalog_checks
                    .values()
                    .filter(|c| &c.service_name == service)
                    .cloned()
                    .collect(),
            ),
            ReadRequest::HealthState { state } => ReadResult::Checks(
                self.catalog_checks
                    .values()
                    .filter(|c| state.is_none_or(|s| c.status == s))
                    .cloned()
                    .collect(),
            ),
            ReadRequest::HealthService { service } => ReadResult::Health(
                self.catalog_services
                    .iter()
                    .filter(|(_, s)| &s.service == service)
                    .filter_map(|((node, id), s)| {
                        let checks = self
                            .catalog_checks
                            .iter()
                            .filter(|((n, _), c)| {
                                n == node && (c.service_id.is_empty() || &c.service_id == id)
                            })
                            .map(|(_, c)| c.clone())
                            .collect();
                        Some(HealthEntry {
                            node: self.nodes.get(node)?.clone(),
                            service: s.clone(),
                            checks,
                        })
                    })
                    .collect(),
            ),
            ReadRequest::ConfigGet { kind, name } => ReadResult::Config(
                self.config
                    .get(&(kind.clone(), name.clone()))
                    .cloned()
                    .into_iter()
                    .collect(),
            ),
            ReadRequest::ConfigList { kind } => ReadResult::Config(
                self.config
                    .values()
                    .filter(|e| &e.kind == kind)
                    .cloned()
                    .collect(),
            ),
            ReadRequest::CaRoots => ReadResult::CaRoots(self.ca_roots.clone()),
            ReadRequest::CaConfig => ReadResult::CaConfig(self.ca_config.clone()),
            ReadRequest::Usage => ReadResult::Usage(Default::default()),
            ReadRequest::AutopilotConfig => {
                ReadResult::Autopilot(self.autopilot.clone().unwrap_or_default())
            }
            // Renewing is a lookup here: the fake has no TTL timers.
            ReadRequest::SessionGet { id } | ReadRequest::SessionRenew { id } => {
                ReadResult::Sessions(self.sessions.get(id).cloned().into_iter().collect())
            }
            ReadRequest::SessionList => {
                ReadResult::Sessions(self.sessions.values().cloned().collect())
            }
            ReadRequest::SessionNode { node } => ReadResult::Sessions(
                self.sessions
                    .values()
                    .filter(|s| &s.node == node)
                    .cloned()
                    .collect(),
            ),
            ReadRequest::Txn(_) => {
                ReadResult::Txn(self.txn_outcome.clone().unwrap_or(Ok(Vec::new())))
            }
            // Gateways are the state layer's (tested there); the fake has none.
            ReadRequest::GatewayServices { .. } => ReadResult::GatewayServices(Vec::new()),
            ReadRequest::HealthIngress { .. } => ReadResult::Health(Vec::new()),
            ReadRequest::Coordinates => {
                ReadResult::Coordinates(self.coordinates.values().cloned().collect())
            }
            ReadRequest::CoordinateNode { node } => ReadResult::Coordinates(
                self.coordinates
                    .get(node.as_str())
                    .cloned()
                    .into_iter()
                    .collect(),
            ),
            // Prepared queries live in the state store and are tested against a
            // real agent (`bins/tribune/tests/it/prepared_query.rs`); this fake
            // holds none.
            ReadRequest::ConfigKinds { kinds } => ReadResult::Config(
                self.config
                    .values()
                    .filter(|e| kinds.contains(&e.kind))
                    .cloned()
                    .collect(),
            ),
            ReadRequest::QueryList | ReadRequest::QueryGet { .. } => {
                ReadResult::Queries(Vec::new())
            }
            ReadRequest::QueryExecute { .. } => ReadResult::QueryExecuted(QueryOutcome::NotFound),
            ReadRequest::QueryExplain { .. } => {
                ReadResult::QueryExplained(Box::new(QueryOutcome::NotFound))
            }
        }
    }

    fn write(&mut self, req: WriteRequest, index: u64) -> Result<WriteOutcome, WriteRejected> {
        use WriteOutcome::{Done, NotApplied};
        Ok(match req {
            WriteRequest::QuerySet { .. } | WriteRequest::QueryDelete { .. } => {
                return Err(WriteRejected::Failed(
                    "the fake backend stores no prepared queries".into(),
                ))
            }
            WriteRequest::CoordinateBatchUpdate { updates } => {
                for u in updates {
                    if self.nodes.contains_key(&u.node) {
                        self.coordinates.insert(u.node.clone(), u);
                    }
                }
                Done
            }
            WriteRequest::KvSet { mut entry, mode } => {
                let existing = self.kv.get(&entry.key).cloned();
                let held_by = existing.as_ref().and_then(|e| e.session);
                let lock_index = existing.as_ref().map_or(0, |e| e.lock_index);
                // A plain or CAS write keeps the key's lock; acquire and release move it.
                let (lock_index, session) = match mode {
                    KvSetMode::Set => (lock_index, held_by),
                    KvSetMode::Cas(n) => {
                        let current = existing.as_ref().map_or(0, |e| e.raft.modify_index);
                        if current != n {
                            return Ok(NotApplied);
                        }
                        (lock_index, held_by)
                    }
                    KvSetMode::Acquire(s) => match held_by {
                        Some(holder) if holder != s => return Ok(NotApplied),
                        Some(_) => (lock_index, Some(s)),
                        None => (lock_index + 1, Some(s)),
                    },
                    KvSetMode::Release(s) => match held_by {
                        Some(holder) if holder == s => (lock_index, None),
                        _ => return Ok(NotApplied),
                    },
                };
                entry.lock_index = lock_index;
                entry.session = session;
                entry.raft = raft(index, existing.map(|e| e.raft));
                self.kv.insert(entry.key.clone(), entry);
                Done
            }
            WriteRequest::KvDelete { key, mode } => match mode {
                KvDeleteMode::Key => {
                    self.kv.remove(&key);
                    Done
                }
                KvDeleteMode::Cas(n) => {
                    if self.kv.get(&key).map(|e| e.raft.modify_index) == Some(n) {
                        self.kv.remove(&key);
                        Done
                    } else {
                        NotApplied
                    }
                }
                KvDeleteMode::Tree => {
                    self.kv.retain(|k, _| !k.starts_with(key.as_str()));
                    Done
                }
            },
            WriteRequest::Register(reg) => {
                self.register(reg, index);
                Done
            }
            WriteRequest::Deregister(dereg) => {
                self.deregister(dereg);
                Done
            }
            WriteRequest::ConfigSet { mut entry, cas } => {
                let k = (entry.kind.clone(), entry.name.clone());
                let existing = self.config.get(&k).map(|e| e.raft);
                if let Some(cas) = cas {
                    if existing.map_or(0, |r| r.modify_index) != cas {
                        return Ok(NotApplied);
                    }
                }
                entry.raft = raft(index, existing);
                self.config.insert(k, entry);
                Done
            }
            WriteRequest::ConfigDelete { kind, name, cas } => {
                let k = (kind, name);
                if let Some(cas) = cas {
                    if self.config.get(&k).map(|e| e.raft.modify_index) != Some(cas) {
                        return Ok(NotApplied);
                    }
                }
                self.config.remove(&k);
                Done
            }
            WriteRequest::SessionCreate(mut session) => {
                session.raft = raft(index, None);
                self.sessions.insert(session.id, session);
                Done
            }
            WriteRequest::SessionDestroy { id } => {
                self.sessions.remove(&id);
                Done
            }
            WriteRequest::Txn(_) => match self.txn_outcome.clone() {
                None => WriteOutcome::Txn(Vec::new()),
                Some(Ok(results)) => WriteOutcome::Txn(results),
                Some(Err(errors)) => return Err(WriteRejected::TxnRolledBack(errors)),
            },
            WriteRequest::AutopilotSet { mut config, cas } => {
                let current = self.autopilot.as_ref().map_or(0, |a| a.raft.modify_index);
                if cas.is_some_and(|c| c != current) {
                    return Ok(NotApplied);
                }
                config.raft = raft(index, None);
                self.autopilot = Some(config);
                Done
            }
            WriteRequest::CaSetConfig { mut config, cas } => {
                let current = self.ca_config.as_ref().map_or(0, |c| c.raft.modify_index);
                if cas.is_some_and(|c| c != current) {
                    return Ok(NotApplied);
                }
                config.raft = raft(index, None);
                self.ca_config = Some(config);
                Done
            }
            WriteRequest::CaSetRoots { roots } => {
                self.ca_roots = roots
                    .into_iter()
                    .map(|mut r| {
                        r.raft = raft(index, None);
                        r
                    })
                    .collect();
                Done
            }
        })
    }

    fn register(&mut self, reg: Registration, index: u64) {
        let node = reg.node.node.to_string();
        if !reg.skip_node_update || !self.nodes.contains_key(&node) {
            let existing = self.nodes.get(&node).map(|n| n.raft);
            let mut n = reg.node.clone();
            n.raft = raft(index, existing);
            self.nodes.insert(node.clone(), n);
        }
        if let Some(mut s) = reg.service {
            let k = (node.clone(), s.id.to_string());
            s.node = node.as_str().into();
            s.raft = raft(index, self.catalog_services.get(&k).map(|s| s.raft));
            self.catalog_services.insert(k, s);
        }
        for mut c in reg.checks {
            let k = (node.clone(), c.check_id.to_string());
            if let Some(s) = self
                .catalog_services
                .get(&(node.clone(), c.service_id.clone()))
            {
                c.service_name.clone_from(&s.service);
                c.service_tags.clone_from(&s.tags);
            }
            c.raft = raft(index, self.catalog_checks.get(&k).map(|c| c.raft));
            self.catalog_checks.insert(k, c);
        }
    }

    fn deregister(&mut self, d: Deregistration) {
        let node = d.node.to_string();
        match (d.service_id, d.check_id) {
            (Some(sid), _) => {
                self.catalog_services
                    .remove(&(node.clone(), sid.to_string()));
                self.catalog_checks
                    .retain(|(n, _), c| !(n == &node && c.service_id == sid.as_str()));
            }
            (None, Some(cid)) => {
                self.catalog_checks.remove(&(node, cid.to_string()));
            }
            (None, None) => {
                self.nodes.remove(&node);
                self.catalog_services.retain(|(n, _), _| n != &node);
                self.catalog_checks.retain(|(n, _), _| n != &node);
            }
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), BackendError> {
        self.state().reads.push((req.clone(), opts));
        let mut rx = self.index_tx.subscribe();
        let deadline = tokio::time::Instant::now() + opts.max_wait;
        loop {
            let index = *rx.borrow_and_update();
            let (res, index) = {
                let st = self.state();
                (st.read(&req), st.index.max(index))
            };
            // Blocking: wait for any write past `min_index`, or the deadline.
            if opts.min_index == 0
                || index > opts.min_index
                || tokio::time::Instant::now() >= deadline
            {
                return Ok((res, Self::meta(index, &opts)));
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Ok((res, Self::meta(index, &opts))); },
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), BackendError> {
        let (outcome, index) = self.mutate(|st| {
            st.writes.push(req.clone());
            let index = st.index + 1;
            (st.write(req, index), index)
        });
        Ok((outcome?, index))
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        Ok(self.state().status.clone())
    }

    fn agent_info(&self) -> AgentInfo {
        self.state().info.clone()
    }

    async fn connect_leaf(
        &self,
        _service: &str,
        _min_index: u64,
        _max_wait: Duration,
    ) -> Result<tribune_http_api::LeafCert, BackendError> {
        // Signing is the agent's and the servers' (tested there); the fake has no CA.
        Err(BackendError::Unavailable(
            "the fake backend has no CA".into(),
        ))
    }

    fn coordinate_datacenters(&self) -> Vec<DatacenterCoordinates> {
        self.state().datacenters.clone()
    }

    fn members(&self, wan: bool) -> Vec<Member> {
        let st = self.state();
        if wan {
            st.wan.clone()
        } else {
            st.lan.clone()
        }
    }

    fn local_services(&self) -> Vec<Service> {
        self.state().services.values().cloned().collect()
    }

    fn local_checks(&self) -> Vec<LocalCheck> {
        self.state().checks.values().cloned().collect()
    }

    async fn register_service(&self, reg: ServiceRegistration) -> Result<(), BackendError> {
        self.mutate_local(|st| {
            let node = st.info.node_name.clone();
            let mut svc = reg.service;
            svc.node = node.as_str().into();
            let id = svc.id.to_string();
            if reg.replace_existing_checks {
                let keep: Vec<String> = reg.checks.iter().map(|c| c.id.to_string()).collect();
                st.checks.retain(|cid, c| {
                    c.check.service_id != id
                        || keep.contains(cid)
                        || cid.starts_with("_service_maintenance:")
                });
            }
            for c in st.checks.values_mut().filter(|c| c.check.service_id == id) {
                c.check.service_name.clone_from(&svc.service);
                c.check.service_tags.clone_from(&svc.tags);
            }
            for def in &reg.checks {
                st.checks
                    .insert(def.id.to_string(), local_check(&node, def, Some(&svc)));
            }
            st.services.insert(id, svc);
        });
        Ok(())
    }

    async fn deregister_service(&self, id: &str) -> Result<(), BackendError> {
        self.mutate_local(|st| {
            st.services.remove(id);
            st.checks.retain(|_, c| c.check.service_id != id);
        });
        Ok(())
    }

    async fn register_check(&self, def: CheckDefinition) -> Result<(), BackendError> {
        self.mutate_local(|st| {
            let service = st.services.get(&def.service_id).cloned();
            if !def.service_id.is_empty() && service.is_none() {
                return Err(BackendError::NotFound(format!(
                    "ServiceID {:?} does not exist",
                    def.service_id
                )));
            }
            let lc = local_check(&st.info.node_name, &def, service.as_ref());
            st.checks.insert(def.id.to_string(), lc);
            Ok(())
        })
    }

    async fn deregister_check(&self, id: &str) -> Result<(), BackendError> {
        self.mutate_local(|st| st.checks.remove(id));
        Ok(())
    }

    async fn update_ttl_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> Result<(), BackendError> {
        self.mutate_local(|st| {
            let Some(c) = st.checks.get_mut(id) else {
                return Err(BackendError::NotFound(format!("Unknown check ID {id:?}")));
            };
            if c.definition.ttl.is_none() {
                return Err(BackendError::Unavailable(format!(
                    "CheckID {id:?} does not have associated TTL"
                )));
            }
            c.check.status = status;
            c.check.output = output;
            Ok(())
        })
    }

    async fn set_maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: String,
    ) -> Result<(), BackendError> {
        self.mutate_local(|st| {
            let node = st.info.node_name.clone();
            match service {
                Some(id) => {
                    let Some(svc) = st.services.get(id).cloned() else {
                        return Err(BackendError::NotFound(format!(
                            "No service registered with ID {id:?}"
                        )));
                    };
                    let cid = format!("_service_maintenance:{id}");
                    if enable {
                        let notes = if reason.is_empty() {
                            SERVICE_MAINT_DEFAULT.to_owned()
                        } else {
                            reason
                        };
                        let c = maintenance_check(
                            &node,
                            &cid,
                            "Service Maintenance Mode",
                            notes,
                            Some(&svc),
                        );
                        st.checks.insert(cid, c);
                    } else {
                        st.checks.remove(&cid);
                    }
                }
                None => {
                    let cid = "_node_maintenance".to_owned();
                    if enable {
                        let notes = if reason.is_empty() {
                            NODE_MAINT_DEFAULT.to_owned()
                        } else {
                            reason
                        };
                        let c =
                            maintenance_check(&node, &cid, "Node Maintenance Mode", notes, None);
                        st.checks.insert(cid, c);
                    } else {
                        st.checks.remove(&cid);
                    }
                }
            }
            Ok(())
        })
    }

    async fn leave(&self) -> Result<(), BackendError> {
        self.mutate(|st| {
            st.left = true;
            for m in &mut st.lan {
                m.status = 3;
            }
        });
        Ok(())
    }

    async fn reload(&self) -> Result<(), BackendError> {
        self.mutate(|st| st.reloads += 1);
        Ok(())
    }

    async fn force_leave(&self, node: &str, prune: bool, wan: bool) -> Result<(), BackendError> {
        self.mutate(|st| st.force_leaves.push((node.to_owned(), prune, wan)));
        Ok(())
    }

    async fn join(&self, addr: &str, wan: bool) -> Result<(), BackendError> {
        if addr.is_empty() {
            return Err(BackendError::Unavailable(
                "agent: no addresses to join".into(),
            ));
        }
        self.mutate(|st| st.joins.push((addr.to_owned(), wan)));
        Ok(())
    }

    fn gauges(&self) -> Vec<tribune_http_api::Gauge> {
        vec![tribune_http_api::Gauge {
            name: "consul.node1.runtime.alloc_bytes".into(),
            value: 1.0,
        }]
    }

    fn monitor(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<tribune_http_api::LogLine>> {
        self.logs.subscribe()
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        let rx = self.local_tx.subscribe();
        self.subscriptions.send_modify(|n| *n += 1);
        rx
    }

    async fn fire_event(
        &self,
        mut event: tribune_http_api::UserEvent,
    ) -> Result<tribune_http_api::UserEvent, BackendError> {
        let mut events = self.events.lock().unwrap();
        event.id = format!("00000000-0000-0000-0000-{:012x}", events.len() + 1);
        event.version = 1;
        event.ltime = events.len() as u64 + 1;
        events.push(event.clone());
        drop(events);
        self.events_tx.send_modify(|v| *v += 1);
        Ok(event)
    }

    fn events(&self) -> Vec<tribune_http_api::UserEvent> {
        self.events.lock().unwrap().clone()
    }

    fn event_changes(&self) -> watch::Receiver<u64> {
        let rx = self.events_tx.subscribe();
        self.subscriptions.send_modify(|n| *n += 1);
        rx
    }

    async fn keyring(&self, req: KeyringRequest) -> Result<Vec<KeyringPool>, BackendError> {
        let mut st = self.state();
        st.keyring_requests.push(req);
        Ok(st.keyring.clone())
    }
}

/// Serves the real router over `backend` on 127.0.0.1 (ephemeral port) and returns the
/// base URL, e.g. `http://127.0.0.1:41234`. The server lives as long as the test runtime.
pub async fn serve(backend: Arc<FakeBackend>) -> String {
    serve_with(backend, HttpConfig::default()).await
}

/// [`serve`] with non-default HTTP limits.
pub async fn serve_with(backend: Arc<FakeBackend>, config: HttpConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let router = tribune_http_api::router(backend, config);
    tokio::spawn(tribune_http_api::serve(
        listener,
        router,
        tribune_http_api::ConnLimiter::new(0),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// A fresh backend and a server over it.
pub async fn start() -> (Arc<FakeBackend>, String) {
    let backend = FakeBackend::new();
    let base = serve(backend.clone()).await;
    (backend, base)
}

/// One plain HTTP request: status, headers and body text.
pub async fn request(
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, headers, text)
}
