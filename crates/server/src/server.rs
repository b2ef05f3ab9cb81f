//! [`Server`]: starting, writes through raft, reads with blocking, shutdown.

use crate::blocking;
use crate::config::ServerConfig;
use crate::fsm::{ApplyOutput, Fsm};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tribune_consensus::{NoopTransport, ProposeError, Raft, RaftConfig, RaftStatus};
use tribune_kv::ttl::SessionTimers;
use tribune_kv::{KvError, KvLimits};
use tribune_rpc::{RpcError, ServerApi, ServerStatus};
use tribune_state::StateStore;
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
    /// Keeps a dev server's temporary data directory alive until drop.
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.config.node_name)
            .finish()
    }
}

/// A raft ID from the node ID: stable across restarts, non-zero.
fn raft_id(node_id: &str) -> u64 {
    let bytes = node_id.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
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
        let mut rc = RaftConfig::new(raft_id(&config.node_id), &dir);
        // Consul scales its raft timeouts by raft_multiplier; ticks of 20 ms × multiplier
        // give a 1 s × multiplier election timeout and 100 ms × multiplier heartbeats.
        rc.tick = Duration::from_millis(20 * u64::from(mult));
        rc.election_tick = 50;
        rc.heartbeat_tick = 5;
        rc.snapshot_threshold = config.snapshot_threshold;
        rc.snapshot_interval = config.snapshot_interval;
        rc.trailing_logs = config.trailing_logs;
        rc.bootstrap = config.bootstrap;
        let state = Arc::new(StateStore::new());
        let poisoned = Arc::new(AtomicBool::new(false));
        let fsm = Fsm {
            state: state.clone(),
            poisoned: poisoned.clone(),
        };
        let raft = tribune_consensus::start(rc, fsm, NoopTransport)?;
        let (shutdown_tx, _) = watch::channel(false);
        let server = Arc::new(Server {
            limits: KvLimits {
                max_value_size: config.kv_max_value_size,
                session_ttl_min: config.session_ttl_min,
            },
            session_timers: Mutex::new(SessionTimers::new()),
            timers_changed: tokio::sync::Notify::new(),
            config,
            raft,
            state,
            poisoned,
            shutdown_tx,
            _temp_dir: temp,
        });
        crate::leader::spawn(server.clone(), server.shutdown_tx.subscribe());
        Ok(server)
    }

    /// The in-memory state (read-only use: tests, metrics).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The raft status.
    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// Stops the leader loop and raft, flushing nothing that was not already durable.
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.raft.shutdown().await;
    }

    /// Waits until a leader is known, up to `rpc_hold_timeout` (Consul holds RPCs while
    /// an election runs rather than failing them at once).
    async fn wait_for_leader(&self, need_local: bool) -> Result<RaftStatus, RpcError> {
        let ok = |s: &RaftStatus| {
            if need_local {
                s.is_leader
            } else {
                s.leader_id.is_some()
            }
        };
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
        self.wait_for_leader(true).await?;
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
    async fn renew_session(
        &self,
        req: &ReadRequest,
        opts: &QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        let status = self.wait_for_leader(true).await?;
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

/// The leader's wall clock in ms since the epoch, stamped on every proposed entry.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl ServerApi for Server {
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        use tracing::Instrument;
        self.propose(req)
            .instrument(tracing::debug_span!("raft.apply"))
            .await
    }

    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        self.check_poisoned()?;
        if matches!(req, ReadRequest::SessionRenew { .. }) {
            return self.renew_session(&req, &opts).await;
        }
        // Default and consistent reads are answered by the leader. With one voter the
        // leader's applied state already includes every acknowledged write, which is
        // what a ReadIndex round would establish.
        let status = match opts.consistency {
            Consistency::Stale => self.raft.status(),
            Consistency::Default | Consistency::Consistent => self.wait_for_leader(true).await?,
        };
        let (result, index) = blocking::run(&self.state, &req, &opts).await;
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

    async fn status(&self) -> Result<ServerStatus, RpcError> {
        let s = self.raft.status();
        let me = self.config.rpc_addr.to_string();
        // Only this server's address is known until servers learn each other through
        // gossip (cluster issue); with one voter that is the whole configuration.
        let leader = if s.is_leader {
            me.clone()
        } else {
            String::new()
        };
        Ok(ServerStatus {
            known_leader: s.leader_id.is_some(),
            last_contact_ms: s.last_contact.unwrap_or_default().as_millis() as u64,
            leader,
            peers: vec![me],
        })
    }
}
