//! [`Agent`]: local state, background TTL/anti-entropy loop, and lifecycle events.

use crate::local::{service_maint_id, Local, LocalCheck, Recorded, NODE_MAINT};
use crate::persist::{PersistedCheck, Store};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tribune_http_api::{BackendError, ServiceRegistration};
use tribune_rpc::{RpcError, ServerApi};
use tribune_types::model::{CheckDefinition, Node};
use tribune_types::HealthStatus;

/// The agent's identity and settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Primary datacenter.
    pub primary_datacenter: String,
    /// Advertised address.
    pub advertise_addr: String,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Whether this agent is a server.
    pub server: bool,
    /// Whether this server bootstrapped.
    pub bootstrap: bool,
    /// `session_ttl_min`.
    pub session_ttl_min: Duration,
    /// Enabled listener ports by name.
    pub ports: BTreeMap<String, u16>,
    /// Consul-compatible version.
    pub version: String,
    /// Build revision.
    pub revision: String,
    /// Period of the full anti-entropy sync.
    pub sync_interval: Duration,
    /// Settings shown in `/v1/agent/self`'s `DebugConfig`.
    pub debug_config: BTreeMap<String, String>,
    /// Where API-registered services and checks are persisted (`None`: dev mode,
    /// nothing survives a restart).
    pub data_dir: Option<std::path::PathBuf>,
    /// `enable_script_checks`: script checks from the HTTP API (and config files).
    pub enable_script_checks: bool,
    /// `enable_local_script_checks`: script checks from config files only.
    pub enable_local_script_checks: bool,
    /// `check_output_max_size`.
    pub check_output_max_size: usize,
    /// `check_update_interval`: how long a change of a check's output alone
    /// may wait before it is pushed to the catalog (0: pushed at once).
    pub check_update_interval: Duration,
    /// `discard_check_output`: checks' output is dropped before it is stored,
    /// so output that changes on every run (timestamps, process ids) does not
    /// turn every run into a catalog write.
    pub discard_check_output: bool,
    /// `enable_agent_tls_for_checks`: the agent's CAs and certificate, loaded at
    /// start ([`crate::load_check_tls`]), for TLS checks. `None`: checks verify
    /// against the system's trust store and present no certificate.
    pub check_tls: Option<Arc<tribune_health::AgentTls>>,
    /// `disable_remote_exec`: ignore `consul exec` jobs (Consul's default).
    pub disable_remote_exec: bool,
    /// `disable_coordinates`.
    pub disable_coordinates: bool,
    /// `sync_coordinate_interval_min`: the shortest wait between two reports of
    /// this node's coordinate (15 s).
    pub coordinate_interval_min: Duration,
    /// `sync_coordinate_rate_target`: reports a second across the cluster that
    /// longer waits aim for in large clusters (64).
    pub coordinate_rate_target: f64,
}

/// Loads the agent's TLS for checks when `enable_agent_tls_for_checks` is set
/// (`Ok(None)` otherwise). An unreadable or invalid file is an error naming it: the
/// agent should refuse to start, as Consul does on bad TLS files.
pub fn load_check_tls(
    cfg: &crate::config::RuntimeConfig,
) -> Result<Option<Arc<tribune_health::AgentTls>>, tribune_health::AgentTlsError> {
    cfg.check_tls_files()
        .map(|files| tribune_health::AgentTls::load(&files).map(Arc::new))
        .transpose()
}

/// Things the agent asks its process to do.
#[derive(Debug)]
pub enum AgentEvent {
    /// `PUT /v1/agent/leave`: the gossip pools are left; finish leaving (a
    /// server drains and waits for its removal), answer on the channel, and
    /// stop. As in Consul, the request is answered once the leave is done.
    Leave(tokio::sync::oneshot::Sender<()>),
    /// `PUT /v1/agent/reload`: reload config files; answer on the channel.
    Reload(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The agent runtime.
pub struct Agent {
    pub(crate) cfg: AgentConfig,
    pub(crate) servers: Arc<dyn ServerApi>,
    pub(crate) local: Mutex<Local>,
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) events: mpsc::Sender<AgentEvent>,
    /// Orders catalog pushes (see `Agent::sync_service`).
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// Log records for `/v1/agent/monitor` (fed by the process's tracing layer).
    pub(crate) logs: tokio::sync::broadcast::Sender<Arc<tribune_http_api::LogLine>>,
    /// Persistence of API registrations.
    pub(crate) persist: Option<Store>,
    /// Runs the active checks (HTTP, TCP, UDP, gRPC, H2PING, script).
    pub(crate) runner: tribune_health::CheckRunner,
    /// Its results, until the background loop takes them.
    pub(crate) results: Mutex<Option<mpsc::Receiver<tribune_health::CheckResult>>>,
    /// Alias checks' watch tasks, by check ID.
    pub(crate) aliases: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    /// Connect leaf certificates by service name.
    pub(crate) leaves: Mutex<BTreeMap<String, crate::leaf::CachedLeaf>>,
    /// This agent, for tasks it starts (they must not keep it alive).
    pub(crate) this: std::sync::Weak<Agent>,
    /// Gossip pools, once attached.
    pub(crate) pools: Mutex<crate::membership::Pools>,
    /// Received user events (oldest first).
    pub(crate) user_events: Mutex<std::collections::VecDeque<tribune_http_api::UserEvent>>,
    /// Ticks when an event is kept.
    pub(crate) event_tx: watch::Sender<u64>,
    /// Key names and published digests for cluster-wide keyring operations.
    pub(crate) keyring: crate::keyring::KeyringState,
    /// `?cached` answers.
    pub(crate) read_cache: Arc<crate::cache::ReadCache>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.cfg.node_name)
            .finish()
    }
}

pub(crate) fn backend_err(e: RpcError) -> BackendError {
    match e {
        RpcError::Rejected(r) => BackendError::Rejected(r),
        RpcError::NoLeader => BackendError::NoLeader,
        RpcError::NoPathToDatacenter => BackendError::NoPathToDatacenter,
        RpcError::RateLimited(r @ tribune_rpc::RateLimited::RetryLater) => {
            BackendError::ServiceUnavailable(r.to_string())
        }
        RpcError::RateLimited(r) => BackendError::TooManyRequests(r.to_string()),
        other => BackendError::Unavailable(other.to_string()),
    }
}

impl Agent {
    /// Creates the agent; [`Agent::start_sync`] starts its background loop (TTL expiry
    /// and anti-entropy). Lifecycle requests arrive on the returned receiver.
    /// `logs` carries the process's log records for `/v1/agent/monitor`.
    pub fn start(
        cfg: AgentConfig,
        servers: Arc<dyn ServerApi>,
        logs: tokio::sync::broadcast::Sender<Arc<tribune_http_api::LogLine>>,
    ) -> (Arc<Agent>, mpsc::Receiver<AgentEvent>) {
        let (events, rx) = mpsc::channel(8);
        let (changed, _) = watch::channel(0);
        let persist = cfg.data_dir.as_deref().map(Store::new);
        let (runner, results) = tribune_health::CheckRunner::start(tribune_health::RunnerConfig {
            limits: tribune_health::Limits {
                // The runner enforces "scripts at all"; the remote/local distinction is
                // made where API registrations come in (`Agent::admit`).
                enable_script_checks: cfg.enable_script_checks || cfg.enable_local_script_checks,
                check_output_max_size: cfg.check_output_max_size,
                ..tribune_health::Limits::default()
            },
            agent_tls: cfg.check_tls.clone(),
            ..Default::default()
        });
        let agent = Arc::new_cyclic(|this| Agent {
            this: this.clone(),
            pools: Mutex::new(Default::default()),
            user_events: Mutex::new(Default::default()),
            event_tx: watch::channel(0).0,
            keyring: Default::default(),
            read_cache: Default::default(),
            persist,
            runner,
            results: Mutex::new(Some(results)),
            aliases: Mutex::new(BTreeMap::new()),
            leaves: Mutex::new(BTreeMap::new()),
            cfg,
            servers,
            local: Mutex::new(Local::default()),
            changed,
            events,
            logs,
            sync_lock: tokio::sync::Mutex::new(()),
        });
        (agent, rx)
    }

    /// Starts TTL expiry and anti-entropy, beginning with a full sync. Call it once,
    /// after loading config-file definitions ([`Agent::load_service`]), so the first
    /// sync does not remove services from the catalog that are about to be re-added.
    pub fn start_sync(self: &Arc<Self>) {
        tokio::spawn(background(Arc::downgrade(self)));
        if let Some(results) = self.results.lock().take() {
            tokio::spawn(check_results(Arc::downgrade(self), results));
        }
    }

    /// Refuses a check from the HTTP API that this agent will not run: script checks
    /// need `enable_script_checks` (config files may use `enable_local_script_checks`),
    /// and an active check needs a valid interval (Consul's messages).
    fn admit(&self, def: &CheckDefinition) -> Result<(), BackendError> {
        let script = !def.args.is_empty() || !def.docker_container_id.is_empty();
        if script && !self.cfg.enable_script_checks {
            // Consul's `AddCheck` refuses with a plain error, which its HTTP
            // layer answers with 500.
            return Err(BackendError::Unavailable(
                if self.cfg.enable_local_script_checks {
                    "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true".into()
                } else {
                    "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true".into()
                },
            ));
        }
        match self.runner.validate(def) {
            Ok(()) | Err(tribune_health::PlanError::NotActive { .. }) => Ok(()),
            Err(e) => Err(BackendError::BadRequest(e.to_string())),
        }
    }

    /// Starts running a check that was just put into local state: active checks go to
    /// the runner, alias checks get a watch task; TTL and maintenance checks need
    /// nothing (the background loop expires TTLs).
    pub(crate) fn activate(&self, def: &CheckDefinition) {
        let id = def.id.as_str().to_owned();
        if let Some(task) = self.aliases.lock().remove(&id) {
            task.abort();
        }
        if !def.alias_node.is_empty() || !def.alias_service.is_empty() {
            let task = tokio::spawn(crate::alias::watch(self.this.clone(), def.clone()));
            self.aliases.lock().insert(id, task);
            return;
        }
        match self.runner.add(def) {
            Ok(())
            | Err(tribune_health::AddError::Invalid(tribune_health::PlanError::NotActive {
                ..
            })) => {}
            Err(e) => tracing::warn!(check = %id, error = %e, "check not started"),
        }
    }

    /// Stops running a check (it was removed from local state).
    pub(crate) fn deactivate(&self, id: &str) {
        self.runner.remove(&id.into());
        if let Some(task) = self.aliases.lock().remove(id) {
            task.abort();
        }
    }

    /// Records a new status and output for a local check and pushes it to the catalog.
    pub(crate) async fn set_check_status(&self, id: &str, status: HealthStatus, output: String) {
        let output = self.kept_output(output);
        let recorded = {
            let mut local = self.local.lock();
            match local.checks.get_mut(id) {
                Some(c) => c.record(
                    status,
                    output,
                    Instant::now(),
                    self.cfg.check_update_interval,
                ),
                None => Recorded::Unchanged,
            }
        };
        self.after_record(id, recorded).await;
    }

    /// Announces a recorded result: local watchers (and the timer loop, for a
    /// deferred push) hear of any change; a status change goes to the catalog.
    async fn after_record(&self, id: &str, recorded: Recorded) {
        if recorded != Recorded::Unchanged {
            self.bump();
        }
        if recorded == Recorded::Changed {
            self.sync_check(id).await;
        }
    }

    /// The agent's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// This node as registered in the catalog.
    pub(crate) fn node(&self) -> Node {
        let c = &self.cfg;
        Node::of_agent(
            &c.node_id,
            &c.node_name,
            &c.advertise_addr,
            &c.datacenter,
            &c.node_meta,
            &c.version,
        )
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Registers a service and its checks locally, then syncs them.
    pub async fn add_service(&self, reg: ServiceRegistration) -> Result<(), BackendError> {
        for def in &reg.checks {
            self.admit(def)?;
        }
        // Durable before it is acknowledged: a registration must not vanish on restart.
        if let Some(store) = &self.persist {
            let mut svc = reg.service.clone();
            svc.node = self.cfg.node_name.clone().into();
            store.save_service(&svc).map_err(persist_err)?;
            for def in &reg.checks {
                store
                    .save_check(&PersistedCheck {
                        definition: def.clone(),
                        maintenance: false,
                    })
                    .map_err(persist_err)?;
            }
        }
        let (id, removed) = self.load_service(reg);
        if let Some(store) = &self.persist {
            for cid in &removed {
                store.remove_check(cid).map_err(persist_err)?;
            }
        }
        for cid in removed {
            self.sync_check_removed(&cid).await;
        }
        self.sync_service(&id).await;
        Ok(())
    }

    /// Registers a service and its checks in local state only (the next sync pushes
    /// them). Returns the service ID and the check IDs `replace_existing_checks` removed.
    pub fn load_service(&self, reg: ServiceRegistration) -> (String, Vec<String>) {
        let mut svc = reg.service;
        svc.node = self.cfg.node_name.clone().into();
        let id = svc.id.as_str().to_owned();
        let now = Instant::now();
        let removed = {
            let mut local = self.local.lock();
            let keep: Vec<String> = reg
                .checks
                .iter()
                .map(|c| c.id.as_str().to_owned())
                .collect();
            let removed: Vec<String> = if reg.replace_existing_checks {
                local
                    .checks
                    .iter()
                    .filter(|(cid, c)| c.check.service_id == id && !keep.contains(cid))
                    .map(|(cid, _)| cid.clone())
                    .collect()
            } else {
                Vec::new()
            };
            for cid in &removed {
                local.checks.remove(cid);
            }
            local.services.insert(id.clone(), svc);
            for def in reg.checks.iter().cloned() {
                insert_check(&mut local, &self.cfg.node_name, def, now);
            }
            removed
        };
        for cid in &removed {
            self.deactivate(cid);
        }
        for def in &reg.checks {
            self.activate(def);
        }
        self.bump();
        (id, removed)
    }

    /// Removes a local service and its checks.
    pub async fn remove_service(&self, id: &str) -> Result<(), BackendError> {
        let (existed, checks) = {
            let mut local = self.local.lock();
            let checks: Vec<String> = local
                .checks
                .iter()
                .filter(|(_, c)| c.check.service_id == id)
                .map(|(cid, _)| cid.clone())
                .collect();
            for cid in &checks {
                local.checks.remove(cid);
            }
            (local.services.remove(id).is_some(), checks)
        };
        for cid in &checks {
            self.deactivate(cid);
        }
        if let Some(store) = &self.persist {
            store.remove_service(id).map_err(persist_err)?;
            for cid in &checks {
                store.remove_check(cid).map_err(persist_err)?;
            }
        }
        if existed {
            self.bump();
            self.sync_service_removed(id).await;
        }
        Ok(())
    }

    /// Registers a local check, then syncs it.
    pub async fn add_check(&self, def: CheckDefinition) -> Result<(), BackendError> {
        self.check_service_exists(&def)?;
        self.admit(&def)?;
        if let Some(store) = &self.persist {
            store
                .save_check(&PersistedCheck {
                    definition: def.clone(),
                    maintenance: false,
                })
                .map_err(persist_err)?;
        }
        let cid = self.load_check(def)?;
        self.sync_check(&cid).await;
        Ok(())
    }

    /// Registers a check in local state only; returns its ID.
    pub fn load_check(&self, def: CheckDefinition) -> Result<String, BackendError> {
        let cid = def.id.as_str().to_owned();
        self.check_service_exists(&def)?;
        insert_check(
            &mut self.local.lock(),
            &self.cfg.node_name,
            def.clone(),
            Instant::now(),
        );
        self.activate(&def);
        self.bump();
        Ok(cid)
    }

    fn check_service_exists(&self, def: &CheckDefinition) -> Result<(), BackendError> {
        if !def.service_id.is_empty() && !self.local.lock().services.contains_key(&def.service_id) {
            return Err(BackendError::NotFound(format!(
                "ServiceID \"{}\" does not exist",
                def.service_id
            )));
        }
        Ok(())
    }

    /// Loads the services and checks persisted by earlier runs (after the config-file
    /// definitions, which win on a shared ID). Call before [`Agent::start_sync`].
    pub fn load_persisted(&self) {
        let Some(store) = &self.persist else {
            return;
        };
        let now = Instant::now();
        let (mut services, mut checks) = (0, 0);
        let mut to_run = Vec::new();
        {
            let mut local = self.local.lock();
            for mut svc in store.services() {
                let id = svc.id.as_str().to_owned();
                if local.services.contains_key(&id) {
                    continue;
                }
                svc.node = self.cfg.node_name.clone().into();
                local.services.insert(id, svc);
                services += 1;
            }
            for p in store.checks() {
                let def = p.definition;
                let cid = def.id.as_str().to_owned();
                let orphan =
                    !def.service_id.is_empty() && !local.services.contains_key(&def.service_id);
                if orphan || local.checks.contains_key(&cid) {
                    continue;
                }
                if !p.maintenance {
                    to_run.push(def.clone());
                }
                let mut lc = LocalCheck::new(&self.cfg.node_name, def, now);
                if p.maintenance {
                    lc.check.check_type = "maintenance".into();
                }
                local.checks.insert(cid, lc);
                checks += 1;
            }
        }
        for def in &to_run {
            self.activate(def);
        }
        if services + checks > 0 {
            tracing::info!(services, checks, "restored persisted services and checks");
            self.bump();
        }
    }

    /// Removes a local check.
    pub async fn remove_check(&self, id: &str) -> Result<(), BackendError> {
        let existed = self.local.lock().checks.remove(id).is_some();
        self.deactivate(id);
        if let Some(store) = &self.persist {
            store.remove_check(id).map_err(persist_err)?;
        }
        if existed {
            self.bump();
            self.sync_check_removed(id).await;
        }
        Ok(())
    }

    /// A check's output as it is stored: nothing with `discard_check_output`.
    fn kept_output(&self, output: String) -> String {
        if self.cfg.discard_check_output {
            String::new()
        } else {
            output
        }
    }

    /// Updates a TTL check (pass/warn/fail/update) and restarts its TTL.
    pub async fn update_ttl(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> Result<(), BackendError> {
        let recorded = {
            let mut local = self.local.lock();
            let Some(c) = local.checks.get_mut(id) else {
                return Err(BackendError::NotFound(format!(
                    "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
                )));
            };
            let Some(ttl) = c.def.ttl else {
                return Err(BackendError::Unavailable(format!(
                    "CheckID \"{id}\" does not have associated TTL"
                )));
            };
            // The HTTP layer already cut the output to the check's OutputMaxSize.
            let output = self.kept_output(output);
            let now = Instant::now();
            c.ttl_deadline = Some(now + ttl);
            c.record(status, output, now, self.cfg.check_update_interval)
        };
        // The TTL restarted even if nothing changed: wake the timer loop.
        self.bump();
        self.after_record(id, recorded).await;
        Ok(())
    }

    /// Enables or disables node (`service` = None) or service maintenance.
    pub async fn maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: String,
    ) -> Result<(), BackendError> {
        let (cid, def) = match service {
            None => (
                NODE_MAINT.to_owned(),
                CheckDefinition {
                    id: NODE_MAINT.into(),
                    name: "Node Maintenance Mode".into(),
                    notes: if reason.is_empty() {
                        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".into()
                    } else {
                        reason
                    },
                    status: Some(HealthStatus::Critical),
                    ..Default::default()
                },
            ),
            Some(sid) => {
                if !self.local.lock().services.contains_key(sid) {
                    return Err(BackendError::NotFound(format!(
                        "No service registered with ID \"{sid}\""
                    )));
                }
                let cid = service_maint_id(sid);
                (
                    cid.clone(),
                    CheckDefinition {
                        id: cid.into(),
                        name: "Service Maintenance Mode".into(),
                        service_id: sid.to_owned(),
                        notes: if reason.is_empty() {
                            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".into()
                        } else {
                            reason
                        },
                        status: Some(HealthStatus::Critical),
                        ..Default::default()
                    },
                )
            }
        };
        if enable {
            if let Some(store) = &self.persist {
                store
                    .save_check(&PersistedCheck {
                        definition: def.clone(),
                        maintenance: true,
                    })
                    .map_err(persist_err)?;
            }
            let mut lc = LocalCheck::new(&self.cfg.node_name, def, Instant::now());
            lc.check.check_type = "maintenance".into();
            self.local.lock().checks.insert(cid.clone(), lc);
            self.bump();
            self.sync_check(&cid).await;
            Ok(())
        } else {
            self.remove_check(&cid).await
        }
    }

    pub(crate) async fn send_event(&self, ev: AgentEvent) -> Result<(), BackendError> {
        self.events
            .send(ev)
            .await
            .map_err(|_| BackendError::Unavailable("agent is shutting down".into()))
    }
}

fn persist_err(e: crate::persist::PersistError) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

/// Delay before retrying a failed full sync.
const SYNC_RETRY: Duration = Duration::from_secs(1);

/// Inserts or replaces a local check. A check that already exists keeps its status
/// and output (and its TTL deadline if the TTL is unchanged) unless the new definition
/// sets a status: re-registering a service or reloading config must not flap its
/// health (Consul's `snapshotCheckState`).
fn insert_check(local: &mut Local, node: &str, def: CheckDefinition, now: Instant) {
    let cid = def.id.as_str().to_owned();
    let explicit_status = def.status.is_some();
    let mut fresh = LocalCheck::new(node, def, now);
    if let Some(old) = local.checks.get(&cid) {
        if !explicit_status {
            fresh.check.status = old.check.status;
            fresh.check.output = old.check.output.clone();
        }
        if old.def.ttl == fresh.def.ttl {
            fresh.ttl_deadline = old.ttl_deadline;
        }
        if fresh.check.status == old.check.status {
            fresh.critical_since = old.critical_since;
        }
    }
    local.checks.insert(cid, fresh);
}

/// Applies the check runner's results to local state (and so to the catalog).
async fn check_results(
    agent: std::sync::Weak<Agent>,
    mut results: mpsc::Receiver<tribune_health::CheckResult>,
) {
    while let Some(r) = results.recv().await {
        let Some(a) = agent.upgrade() else { return };
        a.set_check_status(r.id.as_str(), r.status, r.output).await;
    }
}

/// Expires TTL checks at their deadlines and runs the periodic full sync. Holds only a
/// weak reference so dropping the agent ends the loop.
async fn background(agent: std::sync::Weak<Agent>) {
    let (mut changes, sync_interval) = match agent.upgrade() {
        Some(a) => (a.changed.subscribe(), a.cfg.sync_interval),
        None => return,
    };
    let mut next_sync = Instant::now();
    loop {
        let Some(a) = agent.upgrade() else { return };
        let now = Instant::now();
        let expired = a.local.lock().expire_ttls(now);
        for id in expired {
            a.bump();
            a.sync_check(&id).await;
        }
        // Output held back by `check_update_interval`, now due.
        let due = a.local.lock().due_deferred(now);
        for id in due {
            a.sync_check(&id).await;
        }
        let reap = a.local.lock().reap(now);
        for sid in reap {
            tracing::info!(service = %sid, "a check of the service has been critical for too long; deregistering it");
            if let Err(e) = a.remove_service(&sid).await {
                tracing::warn!(service = %sid, error = %e, "deregistering a critical service failed");
            }
        }
        if now >= next_sync {
            // A failed sync (no leader yet at startup, a server restarting) is retried
            // soon rather than a whole interval later.
            let retry = if a.full_sync().await {
                sync_interval
            } else {
                SYNC_RETRY.min(sync_interval)
            };
            next_sync = Instant::now() + retry;
        }
        let deadline = a
            .local
            .lock()
            .next_deadline()
            .map_or(next_sync, |d| d.min(next_sync));
        drop(a);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            r = changes.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl_check(status: Option<HealthStatus>, ttl: u64) -> CheckDefinition {
        CheckDefinition {
            id: "c".into(),
            name: "c".into(),
            ttl: Some(Duration::from_secs(ttl)),
            status,
            ..Default::default()
        }
    }

    #[test]
    fn re_registering_a_check_keeps_its_state_unless_a_status_is_given() {
        let t0 = Instant::now();
        let mut local = Local::default();
        insert_check(
            &mut local,
            "n",
            ttl_check(Some(HealthStatus::Passing), 30),
            t0,
        );
        local.checks.get_mut("c").unwrap().check.output = "ok".into();
        let later = t0 + Duration::from_secs(5);
        insert_check(&mut local, "n", ttl_check(None, 30), later);
        let c = &local.checks["c"];
        assert_eq!(
            (c.check.status, c.check.output.as_str()),
            (HealthStatus::Passing, "ok")
        );
        assert_eq!(c.ttl_deadline, Some(t0 + Duration::from_secs(30)));
        // A new TTL restarts the clock; an explicit status wins.
        insert_check(
            &mut local,
            "n",
            ttl_check(Some(HealthStatus::Warning), 60),
            later,
        );
        let c = &local.checks["c"];
        assert_eq!(c.check.status, HealthStatus::Warning);
        assert_eq!(c.ttl_deadline, Some(later + Duration::from_secs(60)));
    }
}
