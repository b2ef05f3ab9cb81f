//! The public handle: [`start`] opens storage, restores the state machine and
//! spawns the raft thread; [`Raft`] talks to that thread over a channel.

#[cfg(test)]
mod tests;

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::RawNode;
use tokio::sync::{oneshot, watch};

use crate::codec;
use crate::config::RaftConfig;
use crate::driver::{thread_main, Command, Driver, DriverConfig, Shared};
use crate::error::{io_err, ConsensusError, ProposeError};
use crate::logger;
use crate::machine::{Applied, StateMachine};
use crate::status::{MetricCounters, PeerProgress, RaftMetrics, RaftStatus};
use crate::storage::{OpenedStorage, RocksStorage};
use crate::transport::Transport;

/// A single-step membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter, or promote a learner to voter.
    AddVoter(u64),
    /// Add a non-voting member that receives the log (e.g. while catching up).
    AddLearner(u64),
    /// Remove a voter or learner.
    Remove(u64),
}

impl MembershipChange {
    pub(crate) fn to_conf_change(self) -> ConfChange {
        let (kind, node_id) = match self {
            MembershipChange::AddVoter(id) => (ConfChangeType::AddNode, id),
            MembershipChange::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
            MembershipChange::Remove(id) => (ConfChangeType::RemoveNode, id),
        };
        ConfChange {
            change_type: kind as i32,
            node_id,
            ..Default::default()
        }
    }
}

/// Start a raft server: open (or create) its data directory, restore the
/// state machine from the newest intact snapshot, and spawn the raft thread,
/// which replays the committed log after that snapshot.
///
/// With `config.bootstrap` and an empty data directory, a configuration with
/// this server as the only voter is created first; such a server elects itself
/// immediately. Existing data is never re-bootstrapped.
pub fn start<S: StateMachine, T: Transport>(
    config: RaftConfig,
    mut sm: S,
    transport: T,
) -> Result<Raft<S>, ConsensusError> {
    config.validate()?;
    let metrics = Arc::new(MetricCounters::default());
    let OpenedStorage {
        mut storage,
        mut base_snapshot,
    } = RocksStorage::open_with_metrics(
        &config.log_dir(),
        &config.snapshot_dir(),
        metrics.clone(),
    )?;
    if storage.is_empty() && config.bootstrap {
        tracing::info!(
            id = config.id,
            "bootstrapping single-voter raft configuration"
        );
        base_snapshot = Some(storage.bootstrap(config.id, &sm.snapshot())?);
    }
    let applied = match &base_snapshot {
        Some(snap) => {
            sm.restore(snap.index, &snap.data)
                .map_err(|source| ConsensusError::Restore {
                    index: snap.index,
                    source,
                })?;
            snap.index
        }
        None => 0,
    };
    let raw = RawNode::new(
        &config.to_raft(applied),
        storage,
        &logger::raft_logger(config.id),
    )?;

    let (status_tx, _) = watch::channel(RaftStatus::default());
    let shared = Arc::new(Shared {
        metrics,
        status: status_tx,
        last_leader_contact: Mutex::new(None),
        fatal: Mutex::new(None),
    });
    let (tx, rx) = mpsc::channel();
    let driver = Driver::new(
        raw,
        sm,
        transport,
        rx,
        shared.clone(),
        DriverConfig {
            tick: config.tick,
            snapshot_threshold: config.snapshot_threshold,
            snapshot_interval: config.snapshot_interval,
            trailing_logs: config.trailing_logs,
        },
    )
    .with_background_snapshots();
    shared.status.send_replace(driver.current_status());
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || thread_main(driver))
        .map_err(io_err(&config.data_dir))?;
    Ok(Raft {
        inner: Arc::new(Inner {
            id: config.id,
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            max_proposal_bytes: config.max_proposal_bytes,
        }),
    })
}

struct Inner<O> {
    id: u64,
    tx: Sender<Command<O>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    max_proposal_bytes: usize,
}

impl<O> Inner<O> {
    /// Why the thread is unreachable: a recorded fatal error, or a shutdown.
    fn stopped(&self) -> ProposeError {
        if self.shared.fatal.lock().is_some() {
            ProposeError::Fatal
        } else {
            ProposeError::Shutdown
        }
    }
}

impl<O> Drop for Inner<O> {
    /// Dropping the last handle stops the thread without the courtesy of
    /// [`Raft::shutdown`] (closest in-process equivalent of a crash: nothing
    /// extra is flushed beyond what each Ready already wrote) and waits for it,
    /// so the data directory can be reopened immediately afterwards.
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop(None));
        if let Some(handle) = self.thread.lock().take() {
            // Never join ourselves (a handle dropped on the raft thread itself).
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// Handle to a running raft server. Cheap to clone; the raft thread stops when
/// [`Raft::shutdown`] is called or the last clone is dropped.
pub struct Raft<S: StateMachine> {
    inner: Arc<Inner<S::Output>>,
}

impl<S: StateMachine> Clone for Raft<S> {
    fn clone(&self) -> Self {
        Raft {
            inner: self.inner.clone(),
        }
    }
}

impl<S: StateMachine> std::fmt::Debug for Raft<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raft")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl<S: StateMachine> Raft<S> {
    /// This server's raft id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Propose; resolves once committed AND applied locally, with the apply output.
    ///
    /// Fails fast with `NotLeader` on followers. `Dropped` means leadership
    /// changed first and the outcome is unknown.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Applied<S::Output>, ProposeError> {
        if data.is_empty() {
            return Err(ProposeError::Empty);
        }
        if data.len() > self.inner.max_proposal_bytes {
            return Err(ProposeError::TooLarge {
                size: data.len(),
                max: self.inner.max_proposal_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Propose { data, reply })
            .map_err(|_| self.inner.stopped())?;
        rx.await.unwrap_or_else(|_| Err(self.inner.stopped()))
    }

    /// Propose a membership change; resolves with its log index once applied.
    /// Only one change may be in flight; raft refuses a second
    /// (`ConfChangeRejected`).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::ChangeMembership { change, reply })
            .map_err(|_| self.inner.stopped())?;
        rx.await.unwrap_or_else(|_| Err(self.inner.stopped()))
    }

    /// Current status; `last_contact` is computed at the time of the call.
    pub fn status(&self) -> RaftStatus {
        let mut status = self.inner.shared.status.borrow().clone();
        if status.running {
            status.last_contact = self.inner.shared.last_contact(status.is_leader);
        }
        status
    }

    /// Status updates: sent on leadership, term, commit/applied index and
    /// membership changes (`last_contact` in these is as of the update).
    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.inner.shared.status.subscribe()
    }

    /// Counters, e.g. fsync'd write batches (to observe group commit).
    pub fn metrics(&self) -> RaftMetrics {
        self.inner.shared.metrics.snapshot()
    }

    /// Take a snapshot now (if anything was applied since the last one) and
    /// compact the log; returns the index of the newest snapshot.
    pub async fn snapshot_now(&self) -> Result<u64, ConsensusError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::SnapshotNow(reply))
            .map_err(|_| ConsensusError::Shutdown)?;
        rx.await.unwrap_or(Err(ConsensusError::Shutdown))
    }

    /// Waits until this server may serve a linearizable read: a quorum confirmed
    /// it still leads (ReadIndex, one round shared by every read queued at the
    /// same time) and it has applied everything committed before the read began.
    /// Returns the index the read is at. Fails with `NotLeader` on followers.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::ReadIndex(reply))
            .map_err(|_| self.inner.stopped())?;
        rx.await.unwrap_or_else(|_| Err(self.inner.stopped()))
    }

    /// Forms a new cluster with `voters` (which must include this server) if this
    /// server has never had raft state; every founding server must be given the
    /// same voters. Fails with [`ConsensusError::AlreadyBootstrapped`] otherwise,
    /// so a cluster is never formed twice over existing data.
    pub async fn bootstrap(&self, voters: Vec<u64>) -> Result<(), ConsensusError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Bootstrap { voters, reply })
            .map_err(|_| ConsensusError::Shutdown)?;
        rx.await.unwrap_or(Err(ConsensusError::Shutdown))
    }

    /// Asks the leader (this server) to hand leadership to `to`; raft does so
    /// once `to` has caught up, within an election timeout.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::TransferLeader { to, reply })
            .map_err(|_| self.inner.stopped())?;
        rx.await.unwrap_or_else(|_| Err(self.inner.stopped()))
    }

    /// The leader's view of each member's replication (empty on followers).
    pub async fn progress(&self) -> Vec<PeerProgress> {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Progress(reply)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Hand an incoming raft message from a peer (an encoded raft `Message`) to
    /// the raft thread. Undecodable or invalid messages are rejected here.
    pub fn step(&self, msg_bytes: &[u8]) -> Result<(), ConsensusError> {
        step_via(&self.inner.tx, self.inner.id, msg_bytes)
    }

    /// Tell raft a peer could not be reached (speeds up replication recovery).
    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.inner.tx.send(Command::ReportUnreachable(peer));
    }

    /// Tell raft whether a snapshot sent to `peer` was delivered.
    pub fn report_snapshot(&self, peer: u64, delivered: bool) {
        let _ = self.inner.tx.send(Command::ReportSnapshot {
            to: peer,
            success: delivered,
        });
    }

    /// A lightweight handle for delivering peer messages that does not keep the
    /// node alive (transports hold this, avoiding reference cycles between nodes).
    pub fn inbox(&self) -> RaftInbox<S> {
        RaftInbox {
            id: self.inner.id,
            tx: self.inner.tx.clone(),
        }
    }

    /// The error that stopped the raft thread, if it stopped on one.
    pub fn fatal_error(&self) -> Option<Arc<ConsensusError>> {
        self.inner.shared.fatal.lock().clone()
    }

    /// Stop the raft thread cleanly; when this returns, RocksDB is closed and
    /// the data directory can be reopened. Later calls return immediately and
    /// later proposals fail with `Shutdown`.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Stop(Some(reply))).is_ok() {
            let _ = rx.await;
        }
        let handle = self.inner.thread.lock().take();
        if let Some(handle) = handle {
            // The thread has already replied (its last act) or died; joining
            // only reaps it.
            let _ = handle.join();
        }
    }
}

/// Delivers peer messages to a raft node without keeping it alive.
pub struct RaftInbox<S: StateMachine> {
    id: u64,
    tx: Sender<Command<S::Output>>,
}

impl<S: StateMachine> Clone for RaftInbox<S> {
    fn clone(&self) -> Self {
        RaftInbox {
            id: self.id,
            tx: self.tx.clone(),
        }
    }
}

impl<S: StateMachine> std::fmt::Debug for RaftInbox<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftInbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<S: StateMachine> RaftInbox<S> {
    /// Same as [`Raft::step`].
    pub fn step(&self, msg_bytes: &[u8]) -> Result<(), ConsensusError> {
        step_via(&self.tx, self.id, msg_bytes)
    }

    /// Same as [`Raft::report_unreachable`].
    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.tx.send(Command::ReportUnreachable(peer));
    }

    /// Same as [`Raft::report_snapshot`].
    pub fn report_snapshot(&self, peer: u64, delivered: bool) {
        let _ = self.tx.send(Command::ReportSnapshot {
            to: peer,
            success: delivered,
        });
    }
}

fn step_via<O>(tx: &Sender<Command<O>>, id: u64, msg_bytes: &[u8]) -> Result<(), ConsensusError> {
    let msg = codec::decode_message(msg_bytes, id)?;
    tx.send(Command::Step(Box::new(msg)))
        .map_err(|_| ConsensusError::Shutdown)
}
