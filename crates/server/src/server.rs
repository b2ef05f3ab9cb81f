//! [`Server`]: starting, writes through raft, reads with blocking, shutdown.

use crate::blocking;
use crate::cluster::{self, Feedback, GrpcTransport};
use crate::config::ServerConfig;
use crate::fsm::{ApplyOutput, Fsm};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tribune_consensus::{ProposeError, Raft, RaftConfig, RaftStatus};
use tribune_kv::ttl::SessionTimers;
use tribune_kv::{KvError, KvLimits};
use tribune_rpc::{
    ArchiveStream, GrpcClient, RaftLinks, RpcError, ServerApi, ServerStatus, SnapshotDownload,
};
use tribune_state::StateStore;
use tribune_types::model::operator::{AutopilotHealth, OperatorReply, OperatorRequest};
use tribune_types::model::ops::{
    Consistency, QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRejected,
    WriteRequest,
};

/// A server that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("creating data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Raft or its storage failed to start.
    #[error(transparent)]
    Consensus(#[from] tribune_consensus::ConsensusError),
}

/// A running server.
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) raft: Raft<Fsm>,
    pub(crate) state: Arc<StateStore>,
    poisoned: Arc<AtomicBool>,
    limits: KvLimits,
    /// TTL session deadlines; armed only while this server leads.
    pub(crate) session_timers: Mutex<SessionTimers>,
    /// Wakes the session timer task when a deadline moved earlier.
    pub(crate) timers_changed: tokio::sync::Notify,
    shutdown_tx: watch::Sender<bool>,
    /// Raft traffic to the other servers.
    pub(crate) links: Arc<RaftLinks>,
    /// Connections to other servers for forwarding, by RPC address.
    pub(crate) clients: Mutex<HashMap<String, GrpcClient>>,
    /// Autopilot's latest view of server health (while this server leads).
    pub(crate) health: watch::Sender<Option<AutopilotHealth>>,
    /// Servers an operator removed, and when: autopilot leaves them out for a
    /// reconcile interval rather than adding them straight back.
    pub(crate) removed: Mutex<HashMap<u64, std::time::Instant>>,
    /// The LAN gossip members as last observed.
    pub(crate) members: Mutex<Vec<tribune_types::model::Member>>,
    /// Held by the operator restore this server is verifying or applying:
    /// one at a time, since each holds a whole state in memory (and two at
    /// once could only race to replace each other).
    pub(crate) restoring: tokio::sync::Mutex<()>,
    /// `limits.request_limits`, checked as requests arrive.
    limiter: crate::rate::RequestLimiter,
    /// Keeps a dev server's temporary data directory alive until drop.
    _temp_dir: Option<tempfile::TempDir>,
}

/// Consul's `ErrConnectNotEnabled`.
pub(crate) const CONNECT_DISABLED: &str = "Connect must be enabled in order to use this endpoint";

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.config.node_name)
            .finish()
    }
}

impl Server {
    /// Opens the data directory, restores state and starts raft and the leader loop.
    pub async fn start(config: ServerConfig) -> Result<Arc<Server>, ServerError> {
        let (dir, temp) = match &config.data_dir {
            Some(d) => (d.join("server"), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("tribune-dev-")
                    .tempdir()
                    .map_err(|source| ServerError::DataDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (t.path().join("server"), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let mult = config.raft_multiplier.clamp(1, 10);
        let mut rc = RaftConfig::new(cluster::raft_id(&config.node_id), &dir);
        // Consul scales its raft timeouts by raft_multiplier; ticks of 20 ms × multiplier
        // give 100 ms × multiplier heartbeats and an election timeout drawn from
        // [600 ms, 1.2 s) × multiplier. Consul's followers wait [1 s, 2 s) × multiplier;
        // we wait less so a dead leader is replaced sooner (failover p50 ≈ 1 s at
        // multiplier 1, BENCHMARKS.md), which pre-vote and check-quorum make safe:
        // a follower that times out early cannot disturb a healthy leader's term.
        rc.tick = Duration::from_millis(20 * u64::from(mult));
        rc.election_tick = 30;
        rc.heartbeat_tick = 5;
        rc.snapshot_threshold = config.snapshot_threshold;
        rc.snapshot_interval = config.snapshot_interval;
        rc.trailing_logs = config.trailing_logs;
        rc.bootstrap = config.bootstrap;
        // An operator's snapshot restore is one entry holding the whole state.
        rc.max_proposal_bytes = 128 << 20;
        let state = Arc::new(StateStore::new());
        let poisoned = Arc::new(AtomicBool::new(false));
        let fsm = Fsm {
            state: state.clone(),
            poisoned: poisoned.clone(),
        };
        let links = Arc::new(RaftLinks::new(
            tokio::runtime::Handle::current(),
            config.rpc_tls.clone(),
        ));
        let raft = tribune_consensus::start(rc, fsm, GrpcTransport(links.clone()))?;
        links.set_feedback(Arc::new(Feedback(raft.inbox())));
        let (shutdown_tx, _) = watch::channel(false);
        let server = Arc::new(Server {
            limits: KvLimits {
                max_value_size: config.kv_max_value_size,
                session_ttl_min: config.session_ttl_min,
            },
            session_timers: Mutex::new(SessionTimers::new()),
            timers_changed: tokio::sync::Notify::new(),
            limiter: crate::rate::RequestLimiter::new(
                config.request_limits,
                std::time::Instant::now(),
            ),
            config,
            raft,
            state,
            poisoned,
            shutdown_tx,
            links,
            clients: Mutex::new(HashMap::new()),
            health: watch::channel(None).0,
            members: Mutex::new(Vec::new()),
            removed: Mutex::new(HashMap::new()),
            restoring: tokio::sync::Mutex::new(()),
            _temp_dir: temp,
        });
        crate::leader::spawn(server.clone(), server.shutdown_tx.subscribe());
        if server.config.bootstrap_expect > 1 && !server.config.bootstrap {
            cluster::spawn_formation(
                server.clone(),
                server.config.bootstrap_expect,
                server.shutdown_tx.subscribe(),
            );
        }
        cluster::spawn_autopilot(server.clone(), server.shutdown_tx.subscribe());
        Ok(server)
    }

    /// New request rate limits (`consul reload`), in force from the next request.
    pub fn set_request_limits(&self, limits: crate::rate::RequestLimits) {
        self.limiter.reconfigure(limits, std::time::Instant::now());
    }

    /// Counts a request against the rate limits; `Err` when they refuse it.
    fn rate_limit(&self, op: crate::rate::Op) -> Result<(), RpcError> {
        if !self.limiter.active() {
            return Ok(());
        }
        self.limiter
            .check(
                op,
                || self.raft.status().is_leader,
                std::time::Instant::now(),
            )
            .map_err(RpcError::RateLimited)
    }

    /// The in-memory state (read-only use: tests, metrics).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The raft status.
    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// Waits (at most `limit`) until this server is no longer in the raft
    /// configuration, or is the only member left.
    pub async fn wait_removed(&self, limit: Duration) {
        let me = self.raft.id();
        let mut rx = self.raft.subscribe();
        let gone = |s: &RaftStatus| {
            !s.running
                || (!s.voters.contains(&me) && !s.learners.contains(&me))
                || (s.voters == [me] && s.learners.is_empty())
        };
        let removed = tokio::time::timeout(limit, async { rx.wait_for(gone).await.is_ok() }).await;
        match removed {
            Ok(_) => tracing::info!("left the raft configuration"),
            Err(_) => tracing::warn!("leaving: still in the raft configuration after {limit:?}"),
        }
    }

    /// Stops the leader loop and raft, flushing nothing that was not already durable.
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.raft.shutdown().await;
    }

    /// Waits until a leader is known, up to `rpc_hold_timeout` (Consul holds RPCs while
    /// an election runs rather than failing them at once).
    async fn wait_for_leader(&self) -> Result<RaftStatus, RpcError> {
        let ok = |s: &RaftStatus| s.leader_id.is_some();
        let mut rx = self.raft.subscribe();
        let current = rx.borrow().clone();
        if ok(&current) {
            return Ok(current);
        }
        let wait = async {
            loop {
                if rx.changed().await.is_err() {
                    return None;
                }
                let s = rx.borrow().clone();
                if ok(&s) {
                    return Some(s);
                }
            }
        };
        match tokio::time::timeout(self.config.rpc_hold_timeout, wait).await {
            Ok(Some(s)) => Ok(s),
            _ => Err(RpcError::NoLeader),
        }
    }

    fn check_poisoned(&self) -> Result<(), RpcError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(RpcError::Transport(
                "server stopped: a committed raft entry could not be decoded".into(),
            ));
        }
        Ok(())
    }

    /// Proposes a write and returns its apply outcome (used by the leader loop too).
    pub(crate) async fn propose(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        self.check_poisoned()?;
        // What the session timers must learn once the write is applied.
        let timer_effect = match &req {
            WriteRequest::SessionCreate(s) => s.ttl_duration().map(|ttl| (s.id, Some(ttl))),
            WriteRequest::SessionDestroy { id } => Some((*id, None)),
            _ => None,
        };
        let cmd = tribune_kv::to_command(req, &self.limits).map_err(|e| match e {
            KvError::MissingKey
            | KvError::ValueTooLarge { .. }
            | KvError::TxnValueTooLarge { .. } => {
                RpcError::Rejected(WriteRejected::BadRequest(e.to_string()))
            }
            KvError::SessionTtlInvalid { .. } | KvError::SessionTtlRange { .. } => {
                RpcError::Rejected(WriteRejected::Failed(e.to_string()))
            }
        })?;
        // Callers propose as the leader (`ServerApi::write` routes here only then,
        // leader duties run only while leading); if leadership moved meanwhile,
        // raft refuses with NotLeader, answered as "No cluster leader".
        let applied = self
            .raft
            .propose(cmd.encode(wall_ms()))
            .await
            .map_err(|e| match e {
                ProposeError::NotLeader { .. } => RpcError::NoLeader,
                ProposeError::Shutdown | ProposeError::Fatal => RpcError::ShuttingDown,
                other => RpcError::Transport(other.to_string()),
            })?;
        let output: ApplyOutput = applied.output;
        let outcome = output?;
        if let Some((id, ttl)) = timer_effect {
            let mut timers = self.session_timers.lock();
            match ttl {
                Some(ttl) => timers.reset(id, ttl, std::time::Instant::now()),
                None => timers.remove(id),
            }
            drop(timers);
            self.timers_changed.notify_one();
        }
        Ok((outcome, applied.index))
    }

    /// `Session.Renew`: answered by the leader from its state, restarting the session's
    /// timer when it exists.
    fn renew_session(
        &self,
        req: &ReadRequest,
        opts: &QueryOptions,
        status: &RaftStatus,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        let (result, index) = self.state.read(req, None);
        if let ReadResult::Sessions(found) = &result {
            if let Some(ttl) = found.first().and_then(|s| s.ttl_duration()) {
                let mut timers = self.session_timers.lock();
                for s in found {
                    timers.reset(s.id, ttl, std::time::Instant::now());
                }
            }
        }
        Ok((
            result,
            QueryMeta {
                index: index.max(1),
                known_leader: status.leader_id.is_some(),
                last_contact: Duration::ZERO,
                consistency: opts.consistency,
                cache: None,
            },
        ))
    }
}

/// Whether a read forwarded to the leader failed in transit (another leader may
/// answer it); reads change nothing, so any transport failure may be retried.
fn forward_failed(e: &RpcError) -> bool {
    matches!(e, RpcError::Transport(_) | RpcError::ShuttingDown)
}

/// The leader's wall clock in ms since the epoch, stamped on every proposed entry.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How a request is served, given this server's raft status.
enum Route {
    /// Here: this server leads (or the read may be stale).
    Local(RaftStatus),
    /// On the leader (this raft id), through its server RPC.
    Forward(u64, GrpcClient),
}

impl Server {
    /// Where a request that needs the leader goes: here if this server leads,
    /// otherwise to the leader, waiting up to `rpc_hold_timeout` for one.
    async fn route(&self) -> Result<Route, RpcError> {
        let status = self.wait_for_leader().await?;
        if status.is_leader {
            return Ok(Route::Local(status));
        }
        let leader = status.leader_id.ok_or(RpcError::NoLeader)?;
        Ok(Route::Forward(
            leader,
            cluster::leader_client(self, leader)?,
        ))
    }

    /// Serves `req` on the leader: here, or forwarded. A forward that fails
    /// because the leader cannot be reached (it just died) is retried once a
    /// different leader is known, within `rpc_hold_timeout`, as Consul holds RPCs
    /// across an election; `retry` says which failures are safe to retry (a write
    /// only if it certainly never arrived).
    async fn on_leader<T, L, LF, F, FF>(
        &self,
        retry: fn(&RpcError) -> bool,
        local: L,
        forward: F,
    ) -> Result<T, RpcError>
    where
        L: FnOnce(RaftStatus) -> LF,
        LF: std::future::Future<Output = Result<T, RpcError>>,
        F: Fn(GrpcClient) -> FF,
        FF: std::future::Future<Output = Result<T, RpcError>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.rpc_hold_timeout;
        loop {
            let (failed, err) = match self.route().await? {
                Route::Local(status) => return local(status).await,
                Route::Forward(leader, client) => match forward(client).await {
                    Err(e) if retry(&e) => (leader, e),
                    other => return other,
                },
            };
            let mut rx = self.raft.subscribe();
            let changed = tokio::time::timeout_at(
                deadline,
                rx.wait_for(|s| s.leader_id.is_some_and(|l| l != failed)),
            )
            .await;
            if !matches!(changed, Ok(Ok(_))) {
                return Err(err);
            }
        }
    }

    /// A read answered here: consistent reads first confirm leadership with a
    /// quorum (ReadIndex) and wait until this server has applied that far.
    async fn read_local(
        &self,
        req: &ReadRequest,
        opts: &QueryOptions,
        status: RaftStatus,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        if opts.consistency == Consistency::Consistent {
            self.raft.read_index().await.map_err(|e| match e {
                ProposeError::NotLeader { .. } | ProposeError::Dropped => RpcError::NoLeader,
                ProposeError::Shutdown | ProposeError::Fatal => RpcError::ShuttingDown,
                other => RpcError::Transport(other.to_string()),
            })?;
        }
        let (result, index) =
            blocking::run(&self.state, req, opts, self.config.max_query_time).await;
        Ok((
            result,
            QueryMeta {
                index: index.max(1),
                known_leader: status.leader_id.is_some(),
                last_contact: status.last_contact.unwrap_or_default(),
                consistency: opts.consistency,
                cache: None,
            },
        ))
    }
}

#[async_trait]
impl ServerApi for Server {
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        use tracing::Instrument;
        self.check_poisoned()?;
        // Counted here and again on the leader when forwarded, as Consul's global
        // limits apply to requests from other servers too; its operator
        // endpoints are exempt.
        if !matches!(req, WriteRequest::AutopilotSet { .. }) {
            self.rate_limit(crate::rate::Op::Write)?;
        }
        // Followers forward writes to the leader (Consul's RPC forwarding); the
        // leader proposes them.
        self.on_leader(
            tribune_rpc::not_sent,
            |_| {
                self.propose(req.clone())
                    .instrument(tracing::debug_span!("raft.apply"))
            },
            |leader| {
                let req = req.clone();
                async move { leader.write(req).await }
            },
        )
        .await
    }

    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        self.check_poisoned()?;
        match req {
            // Consul exempts its operator endpoints from the limits.
            ReadRequest::AutopilotConfig => {}
            // A renewal restarts a timer on the leader: Consul counts it as a write.
            ReadRequest::SessionRenew { .. } => self.rate_limit(crate::rate::Op::Write)?,
            _ => self.rate_limit(crate::rate::Op::Read)?,
        }
        self.read_unlimited(req, opts).await
    }

    async fn status(&self) -> Result<ServerStatus, RpcError> {
        let s = self.raft.status();
        let leader = s
            .leader_id
            .and_then(|id| self.addr_of(id))
            .unwrap_or_default();
        let peers = s.voters.iter().filter_map(|id| self.addr_of(*id)).collect();
        Ok(ServerStatus {
            known_leader: s.leader_id.is_some(),
            last_contact_ms: s.last_contact.unwrap_or_default().as_millis() as u64,
            leader,
            peers,
        })
    }

    async fn operator(&self, req: OperatorRequest) -> Result<OperatorReply, RpcError> {
        self.check_poisoned()?;
        // Any server signs leaves: the CA's key is in every server's state.
        if matches!(
            req,
            OperatorRequest::RaftConfiguration { stale: true } | OperatorRequest::SignLeaf { .. }
        ) {
            return self.operator_local(req).await;
        }
        self.on_leader(
            tribune_rpc::not_sent,
            |_| self.operator_local(req.clone()),
            |leader| {
                let req = req.clone();
                async move { leader.operator(req).await }
            },
        )
        .await
    }

    async fn snapshot_save(&self, stale: bool) -> Result<SnapshotDownload, RpcError> {
        self.check_poisoned()?;
        if stale {
            return self.snapshot_download().await;
        }
        self.on_leader(
            tribune_rpc::not_sent,
            |_| self.snapshot_download(),
            |leader| async move { leader.snapshot_save(false).await },
        )
        .await
    }

    async fn snapshot_restore(&self, archive: ArchiveStream) -> Result<(), RpcError> {
        self.check_poisoned()?;
        let spool = self.spool_upload(archive).await?;
        self.on_leader(
            // Retried only when the leader could not be reached at all: a
            // restore that reached it may be committed even if the answer was
            // lost, and a second one would drop the writes made in between.
            crate::snapshot::never_reached,
            |_| self.restore_spooled(&spool),
            |leader| {
                let replayed = crate::snapshot::replay(&spool);
                async move { leader.snapshot_restore(replayed?).await }
            },
        )
        .await
    }

    async fn prepare_leave(&self) {
        if !self.raft.status().is_leader || self.raft.status().voters.len() < 2 {
            return;
        }
        match self
            .operator_local(OperatorRequest::TransferLeader { id: String::new() })
            .await
        {
            Ok(_) => tracing::info!("leaving: handed leadership to another server"),
            Err(e) => tracing::warn!(error = %e, "leaving: could not hand over leadership"),
        }
    }

    fn raft_step(&self, msg: &[u8]) -> Result<(), RpcError> {
        self.raft
            .step(msg)
            .map_err(|e| RpcError::Malformed(e.to_string()))
    }
}

impl Server {
    /// [`ServerApi::read`] without the request rate limits, for the server's
    /// own reads (leader setup, reconcile): Consul makes those on its state
    /// directly, and a limit or a client flood must not stall them.
    pub(crate) async fn read_unlimited(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        // Consul's `ConnectCA.Roots` refuses before reading anything; this server
        // bootstraps no CA then (see `leader::establish`).
        if matches!(req, ReadRequest::CaRoots | ReadRequest::CaConfig)
            && !self.config.connect_enabled
        {
            return Err(RpcError::Refused(CONNECT_DISABLED.into()));
        }
        // Stale reads are answered by any server, even without a leader.
        if opts.consistency == Consistency::Stale {
            let status = self.raft.status();
            return self.read_local(&req, &opts, status).await;
        }
        // Default reads are answered by the leader from its state: raft's check
        // quorum makes a leader cut off from the majority step down within an
        // election timeout (Consul's default mode has the same window).
        let renew = matches!(req, ReadRequest::SessionRenew { .. });
        self.on_leader(
            forward_failed,
            |status| async {
                if renew {
                    return self.renew_session(&req, &opts, &status);
                }
                self.read_local(&req, &opts, status).await
            },
            |leader| {
                let req = req.clone();
                async move { leader.read(req, opts).await }
            },
        )
        .await
    }
}
