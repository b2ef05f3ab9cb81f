//! The raft thread: owns raft-rs' `RawNode` (and through it [`RocksStorage`])
//! and the state machine, and turns commands from [`crate::Raft`] handles into
//! Ready cycles.
//!
//! Each loop iteration waits for a command or the next tick, then drains every
//! queued command before asking raft for a Ready. That drain is the group
//! commit: proposals that arrive while the previous batch was being fsync'd are
//! all appended to raft together and persisted in one write batch.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raft::eraftpb::ConfState;
use raft::eraftpb::{
    ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType, Message,
    MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use crate::codec;
use crate::error::{ConsensusError, CorruptionError, ProposeError};
use crate::machine::{Applied, StateMachine};
use crate::pending::{Pending, Waiter};
use crate::reads::{ReadReply, Reads};
use crate::status::PeerProgress;
use crate::status::{MetricCounters, RaftStatus};
use crate::storage::RocksStorage;
use crate::transport::Transport;
use crate::MembershipChange;

/// Where a normal proposal's outcome goes.
type NormalReply<O> = oneshot::Sender<Result<Applied<O>, ProposeError>>;
/// Outcomes held back until the batch that produced them is published.
type Replies<O> = Vec<(NormalReply<O>, Applied<O>)>;

/// Upper bound on commands handled per cycle, so a flood of proposals cannot
/// starve ticks (and with them heartbeats and elections).
const MAX_COMMANDS_PER_CYCLE: usize = 4096;

/// Upper bound on Readies handled back to back before looking at the queue again.
const MAX_READY_ROUNDS: usize = 8;
/// The longest the bookkeeping records wait for an append to carry them before
/// a cycle writes them on their own.
const PROGRESS_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Requests from handles to the raft thread.
pub(crate) enum Command<O> {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Applied<O>, ProposeError>>,
    },
    ChangeMembership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    Step(Box<Message>),
    ReportUnreachable(u64),
    ReportSnapshot {
        to: u64,
        success: bool,
    },
    SnapshotNow(oneshot::Sender<Result<u64, ConsensusError>>),
    /// A linearizable read: reply with the index to read at, once applied.
    ReadIndex(ReadReply),
    /// Form a new cluster with these voters if this server has no raft state.
    Bootstrap {
        voters: Vec<u64>,
        reply: oneshot::Sender<Result<(), ConsensusError>>,
    },
    /// Hand leadership to a peer.
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// The leader's view of each member's replication.
    Progress(oneshot::Sender<Vec<PeerProgress>>),
    /// Stop the thread; the reply (if any) is sent once RocksDB is closed.
    Stop(Option<oneshot::Sender<()>>),
}

/// A snapshot file a background thread finished writing.
struct WrittenSnapshot {
    index: u64,
    term: u64,
    conf_state: ConfState,
    path: PathBuf,
    bytes: u64,
    started: Instant,
}

/// State shared between the raft thread and its handles.
pub(crate) struct Shared {
    pub(crate) metrics: Arc<MetricCounters>,
    pub(crate) status: watch::Sender<RaftStatus>,
    /// When a follower last heard from its leader.
    pub(crate) last_leader_contact: Mutex<Option<Instant>>,
    /// Set if the thread stopped on an error rather than a shutdown.
    pub(crate) fatal: Mutex<Option<Arc<ConsensusError>>>,
}

impl Shared {
    pub(crate) fn last_contact(&self, is_leader: bool) -> Option<Duration> {
        if is_leader {
            return Some(Duration::ZERO);
        }
        self.last_leader_contact.lock().map(|t| t.elapsed())
    }
}

/// Timing and snapshot policy the driver needs from the configuration.
pub(crate) struct DriverConfig {
    pub(crate) tick: Duration,
    pub(crate) snapshot_threshold: u64,
    pub(crate) snapshot_interval: Duration,
    pub(crate) trailing_logs: u64,
}

/// Records a fatal error if the raft thread unwinds. It is the driver's first
/// field, so it runs before the pending proposals are dropped and their
/// proposers (woken by the drop) already see `Fatal` rather than `Shutdown`.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *self.0.fatal.lock() = Some(Arc::new(ConsensusError::Panicked));
        }
    }
}

/// Everything the raft thread owns.
pub(crate) struct Driver<S: StateMachine, T: Transport> {
    _panic_guard: PanicGuard,
    raw: RawNode<RocksStorage>,
    sm: S,
    transport: T,
    rx: Receiver<Command<S::Output>>,
    pending: Pending<S::Output>,
    reads: Reads,
    shared: Arc<Shared>,
    config: DriverConfig,
    applied: u64,
    applied_since_snapshot: u64,
    /// Applied membership changes whose proposers hear of them at the end of
    /// the cycle, after the status is published.
    membership_replies: Vec<(oneshot::Sender<Result<u64, ProposeError>>, u64)>,
    /// No automatic snapshot before this (see [`RaftConfig::snapshot_interval`]).
    ///
    /// [`RaftConfig::snapshot_interval`]: crate::RaftConfig::snapshot_interval
    next_snapshot: Instant,
    /// When the bookkeeping was last written at the end of a cycle (see
    /// [`PROGRESS_FLUSH_EVERY`]).
    last_progress_flush: Instant,
    /// `Some` once a stop was requested; holds the callers to notify.
    stopping: Option<Vec<oneshot::Sender<()>>>,
    /// Automatic snapshots are written on a thread of their own (off in the
    /// deterministic simulation, which takes them on the raft thread).
    background_snapshots: bool,
    /// The automatic snapshot being written in the background, if any, and
    /// where its outcome arrives. A channel of its own, polled every cycle (at
    /// least every tick), rather than the command channel: the driver holding a
    /// sender of that would keep it from ever disconnecting.
    snapshot_in_flight: Option<SnapshotJob>,
}

/// A background snapshot being written.
struct SnapshotJob {
    thread: std::thread::JoinHandle<()>,
    outcome: Receiver<Result<WrittenSnapshot, ConsensusError>>,
}

/// Run a driver to completion on the current thread, converting a panic into a
/// recorded fatal error so handles observe `Fatal` rather than hanging.
pub(crate) fn thread_main<S: StateMachine, T: Transport>(driver: Driver<S, T>) {
    let shared = driver.shared.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || driver.run()));
    let replies = match outcome {
        Ok(replies) => replies,
        Err(_) => {
            // PanicGuard has recorded the fatal error already.
            tracing::error!("raft thread panicked");
            Vec::new()
        }
    };
    shared.status.send_modify(|s| {
        s.running = false;
        s.is_leader = false;
        s.leader_id = None;
    });
    for reply in replies {
        let _ = reply.send(());
    }
}

impl<S: StateMachine, T: Transport> Driver<S, T> {
    pub(crate) fn new(
        raw: RawNode<RocksStorage>,
        sm: S,
        transport: T,
        rx: Receiver<Command<S::Output>>,
        shared: Arc<Shared>,
        config: DriverConfig,
    ) -> Self {
        let applied = raw.raft.raft_log.applied;
        let next_snapshot = Instant::now() + jittered(config.snapshot_interval);
        let last_progress_flush = Instant::now();
        Driver {
            _panic_guard: PanicGuard(shared.clone()),
            raw,
            sm,
            transport,
            rx,
            pending: Pending::new(),
            reads: Reads::default(),
            shared,
            config,
            applied,
            applied_since_snapshot: 0,
            membership_replies: Vec::new(),
            next_snapshot,
            last_progress_flush,
            stopping: None,
            background_snapshots: false,
            snapshot_in_flight: None,
        }
    }

    /// Takes automatic snapshots on a background thread.
    pub(crate) fn with_background_snapshots(mut self) -> Self {
        self.background_snapshots = true;
        self
    }

    /// The status as the raft thread sees it right now.
    pub(crate) fn current_status(&self) -> RaftStatus {
        status_of(&self.raw, &self.shared, self.applied)
    }

    /// Run until stopped; returns the callers waiting for the stop. Consumes the
    /// driver so RocksDB is closed before anyone is told the node has stopped.
    fn run(mut self) -> Vec<oneshot::Sender<()>> {
        let result = self.run_loop();
        // A snapshot still being written is finished and recorded before
        // RocksDB closes, so nothing writes into the data directory after the
        // node has reported that it stopped.
        self.poll_background_snapshot(true);
        let err = match result {
            Ok(()) => ProposeError::Shutdown,
            Err(e) => {
                tracing::error!(error = %e, "raft thread stopping on fatal error");
                *self.shared.fatal.lock() = Some(Arc::new(e));
                ProposeError::Fatal
            }
        };
        // Applied before the thread stopped: they did happen.
        for (tx, index) in self.membership_replies.drain(..) {
            let _ = tx.send(Ok(index));
        }
        self.pending.fail_all(err.clone());
        self.reads.fail_all(&err);
        let mut replies = self.stopping.take().unwrap_or_default();
        // Nobody will read the channel again: answer whatever is still queued.
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Propose { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::ChangeMembership { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::SnapshotNow(reply) => {
                    let _ = reply.send(Err(ConsensusError::Shutdown));
                }
                Command::ReadIndex(reply) => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::Bootstrap { reply, .. } => {
                    let _ = reply.send(Err(ConsensusError::Shutdown));
                }
                Command::TransferLeader { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::Stop(Some(reply)) => replies.push(reply),
                Command::Progress(_)
                | Command::Stop(None)
                | Command::Step(_)
                | Command::ReportUnreachable(_)
                | Command::ReportSnapshot { .. } => {}
            }
        }
        if let Err(e) = self.raw.mut_store().flush_progress() {
            tracing::warn!(error = %e, "could not record applied index at shutdown");
        }
        drop(self);
        replies
    }

    fn run_loop(&mut self) -> Result<(), ConsensusError> {
        self.campaign_if_alone()?;
        self.on_ready()?;
        self.after_cycle()?;
        let mut next_tick = Instant::now() + self.config.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => self.handle(cmd)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            for _ in 0..MAX_COMMANDS_PER_CYCLE {
                match self.rx.try_recv() {
                    Ok(cmd) => self.handle(cmd)?,
                    Err(_) => break,
                }
            }
            if self.stopping.is_some() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick += self.config.tick;
                // After a stall (e.g. a slow fsync) don't fire a burst of ticks.
                if next_tick < now {
                    next_tick = now + self.config.tick;
                }
            }
            self.start_read_round();
            self.on_ready()?;
            self.after_cycle()?;
        }
    }

    /// One ReadIndex round for every read queued this cycle.
    fn start_read_round(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            if self.reads.has_unanswered() {
                let leader = self.leader();
                self.reads
                    .fail_unanswered(&ProposeError::NotLeader { leader });
            }
            return;
        }
        // raft-rs drops a ReadIndex request (without answering) until the leader
        // has committed an entry of its own term, and a new leader has not until
        // its no-op commits. Keep such reads queued until then rather than hand
        // raft a round it will never answer (found by the simulation, `sim`).
        if !self.reads.has_queued() {
            return;
        }
        let raft_log = &self.raw.raft.raft_log;
        let committed_in_term = raft_log.term(raft_log.committed).ok() == Some(self.raw.raft.term);
        if !committed_in_term {
            return;
        }
        if let Some(ctx) = self.reads.start_round() {
            self.raw.read_index(ctx);
        }
    }

    /// Forms a cluster of `voters` on a server that has never had raft state, as
    /// if a leader had sent it a snapshot at (1, 1) of the empty state machine
    /// carrying that membership. Every server of the new cluster does the same
    /// with the same voters, so they agree on index 1 without any leader.
    fn bootstrap(&mut self, mut voters: Vec<u64>) -> Result<(), ConsensusError> {
        voters.sort_unstable();
        voters.dedup();
        if !voters.contains(&self.raw.raft.id) {
            return Err(ConsensusError::BootstrapWithoutSelf);
        }
        if !self.raw.store().is_empty() || self.raw.raft.raft_log.last_index() > 0 {
            return Err(ConsensusError::AlreadyBootstrapped);
        }
        let snap = raft::eraftpb::Snapshot {
            data: self.sm.snapshot(),
            metadata: Some(raft::eraftpb::SnapshotMetadata {
                conf_state: Some(raft::eraftpb::ConfState {
                    voters,
                    ..Default::default()
                }),
                index: 1,
                term: 1,
            }),
        };
        if !self.raw.raft.restore(snap) {
            return Err(ConsensusError::AlreadyBootstrapped);
        }
        tracing::info!(id = self.raw.raft.id, "bootstrapped a new raft cluster");
        Ok(())
    }

    fn progress(&self) -> Vec<PeerProgress> {
        if self.raw.raft.state != StateRole::Leader {
            return Vec::new();
        }
        let conf = self.raw.raft.prs().conf();
        let mut out: Vec<PeerProgress> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| PeerProgress {
                id: *id,
                matched: pr.matched,
                voter: conf.voters().contains(*id),
                recent_active: pr.recent_active,
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// A sole voter has nobody to wait for: become leader now rather than after
    /// an election timeout, so a single server is usable within milliseconds.
    fn campaign_if_alone(&mut self) -> Result<(), ConsensusError> {
        let conf = self.raw.raft.prs().conf().to_conf_state();
        // The membership here is the base snapshot's; a later change still in
        // the log (not yet replayed) may have added voters, and electing
        // ourselves alone under the stale membership could commit entries the
        // real cluster never agreed to.
        let pending_change = self.raw.store().last_conf_change_at_open() > self.applied;
        if conf.voters == [self.raw.raft.id] && conf.voters_outgoing.is_empty() && !pending_change {
            self.raw.campaign()?;
        }
        Ok(())
    }

    fn handle(&mut self, cmd: Command<S::Output>) -> Result<(), ConsensusError> {
        match cmd {
            Command::Propose { data, reply } => self.propose(data, reply),
            Command::ChangeMembership { change, reply } => self.propose_membership(change, reply),
            Command::Step(msg) => self.step(*msg),
            Command::ReportUnreachable(id) => self.raw.report_unreachable(id),
            Command::ReportSnapshot { to, success } => {
                let status = if success {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            Command::SnapshotNow(reply) => {
                let _ = reply.send(self.take_snapshot());
            }
            Command::ReadIndex(reply) => self.reads.queue(reply),
            Command::Bootstrap { voters, reply } => {
                let _ = reply.send(self.bootstrap(voters));
            }
            Command::TransferLeader { to, reply } => {
                let result = if self.raw.raft.state == StateRole::Leader {
                    self.raw.transfer_leader(to);
                    Ok(())
                } else {
                    Err(ProposeError::NotLeader {
                        leader: self.leader(),
                    })
                };
                let _ = reply.send(result);
            }
            Command::Progress(reply) => {
                let _ = reply.send(self.progress());
            }
            Command::Stop(reply) => {
                let stopping = self.stopping.get_or_insert_with(Vec::new);
                stopping.extend(reply);
            }
        }
        Ok(())
    }

    fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|id| *id != 0)
    }

    fn propose(
        &mut self,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Applied<S::Output>, ProposeError>>,
    ) {
        // Followers would forward to the leader, but then we could not track
        // the entry; the caller (Consul-style RPC forwarding) handles that.
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(ProposeError::NotLeader {
                leader: self.leader(),
            }));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        let result = self.raw.propose(Vec::new(), data);
        self.track(before, result, Waiter::Normal(reply));
    }

    fn propose_membership(
        &mut self,
        change: MembershipChange,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    ) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(ProposeError::NotLeader {
                leader: self.leader(),
            }));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        let result = self
            .raw
            .propose_conf_change(Vec::new(), change.to_conf_change());
        self.track(before, result, Waiter::ConfChange(reply));
    }

    fn track(&mut self, before: u64, result: raft::Result<()>, waiter: Waiter<S::Output>) {
        match result {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                if index == before {
                    waiter.fail(ProposeError::Dropped);
                } else {
                    self.pending.push(index, self.raw.raft.term, waiter);
                }
            }
            Err(e) => {
                // ProposalDropped: leadership transfer in progress or the
                // uncommitted-size limit was hit.
                tracing::debug!(error = %e, "proposal refused by raft");
                waiter.fail(ProposeError::Dropped);
            }
        }
    }

    fn step(&mut self, msg: Message) {
        let from = msg.from;
        let from_leader_kind = matches!(
            MessageType::from_i32(msg.msg_type),
            Some(MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot)
        );
        match self.raw.step(msg) {
            Ok(()) => {}
            // Responses from peers removed from (or not yet in) the configuration.
            Err(raft::Error::StepPeerNotFound) => {
                tracing::debug!(from, "ignoring message from unknown peer");
            }
            Err(e) => tracing::debug!(from, error = %e, "raft rejected message"),
        }
        if from_leader_kind && from == self.raw.raft.leader_id {
            *self.shared.last_leader_contact.lock() = Some(Instant::now());
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            let to = msg.to;
            if msg.msg_type == MessageType::MsgSnapshot as i32 {
                self.transport
                    .send_snapshot(to, codec::encode_message(&msg));
            } else {
                self.transport.send(to, codec::encode_message(&msg));
            }
        }
    }

    /// Handle Readies until raft has nothing more to do (bounded, so a busy
    /// node still gets back to its ticks and command queue).
    fn on_ready(&mut self) -> Result<(), ConsensusError> {
        for _ in 0..MAX_READY_ROUNDS {
            if !self.raw.has_ready() {
                break;
            }
            self.handle_ready()?;
        }
        Ok(())
    }

    /// One Ready cycle, in exactly the order raft-rs prescribes.
    fn handle_ready(&mut self) -> Result<(), ConsensusError> {
        let mut ready = self.raw.ready();
        // 1. Leader messages can go out before persisting (raft thesis 10.2.1).
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        for rs in ready.take_read_states() {
            self.reads.answered(&rs.request_ctx, rs.index);
        }
        // 2. A snapshot from the leader replaces both log and state machine. The
        // state machine goes first: its restore decodes and checks the data and
        // changes nothing if that fails, so bad data stops this server before its
        // log or snapshot files are touched (the transport has already checked
        // the bytes' CRC).
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            let meta = snap.metadata.clone().unwrap_or_default();
            self.sm
                .restore(meta.index, &snap.data)
                .map_err(|source| ConsensusError::Restore {
                    index: meta.index,
                    source,
                })?;
            self.raw.mut_store().install_received_snapshot(&snap)?;
            tracing::info!(
                index = meta.index,
                term = meta.term,
                bytes = snap.data.len(),
                "installed a snapshot received from the leader"
            );
            self.applied = meta.index;
            self.applied_since_snapshot = 0;
        }
        // 3. Entries committed (and already persisted) earlier.
        self.apply_entries(ready.take_committed_entries())?;
        // 4. New entries and hard state: one batch, fsync'd if raft requires it.
        let hs = ready.hs().cloned();
        if !ready.entries().is_empty() || hs.is_some() {
            let sync = ready.must_sync();
            self.raw
                .mut_store()
                .append(ready.entries(), hs.as_ref(), sync)?;
        }
        // 5. Follower messages must wait until the entries are durable.
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }
        // 6. Advance, then handle what became possible now that we persisted.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.reads.release(self.applied);
        Ok(())
    }

    /// Applies a cycle's committed entries as one batch of the state machine
    /// ([`StateMachine::end_batch`] runs before any proposer hears its outcome).
    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), ConsensusError> {
        if entries.iter().all(|e| e.index <= self.applied) {
            return Ok(());
        }
        let mut replies = Vec::new();
        self.sm.begin_batch();
        let result = self.apply_batch(entries, &mut replies);
        self.sm.end_batch();
        for (tx, applied) in replies {
            let _ = tx.send(Ok(applied));
        }
        result
    }

    fn apply_batch(
        &mut self,
        entries: Vec<Entry>,
        replies: &mut Replies<S::Output>,
    ) -> Result<(), ConsensusError> {
        let mut applied_normal = 0;
        for entry in entries {
            let index = entry.index;
            if index <= self.applied {
                continue;
            }
            let waiter = self.pending.take(index, entry.term);
            match EntryType::from_i32(entry.entry_type) {
                Some(EntryType::EntryNormal) => {
                    if entry.data.is_empty() {
                        // A leader's no-op (or a conf change raft refused and blanked).
                        if let Some(w) = waiter {
                            w.fail(ProposeError::ConfChangeRejected);
                        }
                    } else {
                        let output = match self.sm.apply(index, &entry.data) {
                            Ok(output) => output,
                            Err(source) => {
                                // Stop before this entry counts as applied: skipping it
                                // would fork this server's state from its peers.
                                if let Some(w) = waiter {
                                    w.fail(ProposeError::Fatal);
                                }
                                return Err(ConsensusError::Apply { index, source });
                            }
                        };
                        applied_normal += 1;
                        match waiter {
                            Some(Waiter::Normal(tx)) => {
                                replies.push((tx, Applied { index, output }));
                            }
                            Some(w @ Waiter::ConfChange(_)) => {
                                w.fail(ProposeError::ConfChangeRejected)
                            }
                            None => {}
                        }
                    }
                    self.raw.mut_store().note_applied(index, None);
                }
                Some(kind @ (EntryType::EntryConfChange | EntryType::EntryConfChangeV2)) => {
                    let applied = self.apply_conf_change(index, kind, &entry.data)?;
                    self.raw.mut_store().note_applied(index, applied.clone());
                    match (waiter, applied) {
                        (Some(Waiter::ConfChange(tx)), Some(_)) => {
                            // Answered once the status shows the new membership
                            // (`after_cycle`), so whoever asked can read it back.
                            self.membership_replies.push((tx, index));
                        }
                        (Some(w), _) => w.fail(ProposeError::ConfChangeRejected),
                        (None, _) => {}
                    }
                }
                None => {
                    return Err(CorruptionError::UnknownEntryType {
                        index,
                        value: entry.entry_type,
                    }
                    .into())
                }
            }
            self.applied = index;
            self.applied_since_snapshot += 1;
        }
        MetricCounters::add(&self.shared.metrics.entries_applied, applied_normal);
        Ok(())
    }

    /// Apply a committed membership change to raft. Returns the new membership,
    /// or `None` if raft refused it; refusal is deterministic, so every server
    /// skips the same change.
    fn apply_conf_change(
        &mut self,
        index: u64,
        kind: EntryType,
        data: &[u8],
    ) -> Result<Option<raft::eraftpb::ConfState>, ConsensusError> {
        let corrupt = |source| CorruptionError::ConfChange { index, source };
        // raft-rs' generated getters panic on unknown enum values, so check
        // them here and report a typed error instead.
        let bad_enum = |value| CorruptionError::ConfChangeEnum { index, value };
        let result = if kind == EntryType::EntryConfChange {
            let cc: ConfChange = codec::decode(data).map_err(corrupt)?;
            if ConfChangeType::from_i32(cc.change_type).is_none() {
                return Err(bad_enum(cc.change_type).into());
            }
            self.raw.apply_conf_change(&cc)
        } else {
            let cc: ConfChangeV2 = codec::decode(data).map_err(corrupt)?;
            if ConfChangeTransition::from_i32(cc.transition).is_none() {
                return Err(bad_enum(cc.transition).into());
            }
            if let Some(c) = cc
                .changes
                .iter()
                .find(|c| ConfChangeType::from_i32(c.change_type).is_none())
            {
                return Err(bad_enum(c.change_type).into());
            }
            self.raw.apply_conf_change(&cc)
        };
        match result {
            Ok(cs) => {
                tracing::info!(index, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
                Ok(Some(cs))
            }
            Err(e) => {
                tracing::warn!(index, error = %e, "committed membership change refused");
                Ok(None)
            }
        }
    }

    /// Snapshot the state machine at the applied index and compact the log.
    fn take_snapshot(&mut self) -> Result<u64, ConsensusError> {
        let index = self.applied;
        if index == 0 {
            return Err(ConsensusError::NothingToSnapshot);
        }
        let existing = self.raw.store().snapshot_index();
        if index <= existing {
            return Ok(existing);
        }
        let conf = self.raw.raft.prs().conf().to_conf_state();
        let data = self.sm.snapshot();
        self.raw.mut_store().install_local_snapshot(
            index,
            conf,
            &data,
            self.config.trailing_logs,
        )?;
        self.applied_since_snapshot = 0;
        self.next_snapshot = Instant::now() + jittered(self.config.snapshot_interval);
        tracing::info!(index, bytes = data.len(), "snapshot taken");
        Ok(index)
    }

    /// Captures the state machine at the applied index and leaves serialising
    /// and writing it to a thread of its own; the raft thread records the file
    /// when it hears back ([`Driver::poll_background_snapshot`]).
    fn start_background_snapshot(&mut self) -> Result<(), ConsensusError> {
        let index = self.applied;
        let term = self
            .raw
            .store()
            .term_at(index)?
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))?;
        let conf_state = self.raw.raft.prs().conf().to_conf_state();
        let task = self.sm.snapshot_task();
        let dir = self.raw.store().snapshot_dir();
        let started = Instant::now();
        let (results, outcome) = std::sync::mpsc::channel();
        let job = move || {
            background_priority();
            let write = move || {
                dir.write_with(index, term, &conf_state, task)
                    .map(|(path, bytes)| WrittenSnapshot {
                        index,
                        term,
                        conf_state,
                        path,
                        bytes,
                        started,
                    })
            };
            // Always answer, even on a panic: the raft thread takes no other
            // automatic snapshot until it hears back.
            let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(write))
                .unwrap_or(Err(ConsensusError::SnapshotPanicked));
            let _ = results.send(written);
        };
        let thread = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(job)
            .map_err(|source| ConsensusError::Io {
                path: PathBuf::from("raft-snapshot thread"),
                source,
            })?;
        self.snapshot_in_flight = Some(SnapshotJob { thread, outcome });
        self.applied_since_snapshot = 0;
        self.next_snapshot = Instant::now() + jittered(self.config.snapshot_interval);
        Ok(())
    }

    /// If the background snapshot has finished (or, with `wait`, once it has),
    /// makes its file the newest snapshot and compacts the log behind it.
    /// Failures are not fatal: the log is intact and the next threshold tries
    /// again.
    fn poll_background_snapshot(&mut self, wait: bool) {
        let Some(job) = &self.snapshot_in_flight else {
            return;
        };
        let result = if wait {
            job.outcome.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            job.outcome.try_recv()
        };
        let result = match result {
            Err(TryRecvError::Empty) => return,
            Ok(result) => result,
            // Cannot happen (the thread always answers, panics included), but
            // a lost answer must not stop automatic snapshots for good.
            Err(TryRecvError::Disconnected) => Err(ConsensusError::SnapshotPanicked),
        };
        if let Some(job) = self.snapshot_in_flight.take() {
            // It has answered, so it is ending.
            let _ = job.thread.join();
        }
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "writing a snapshot failed");
                return;
            }
        };
        let (index, bytes, elapsed) = (w.index, w.bytes, w.started.elapsed());
        match self.raw.mut_store().record_local_snapshot(
            w.index,
            w.term,
            w.conf_state,
            w.path,
            self.config.trailing_logs,
        ) {
            Ok(true) => tracing::info!(
                index,
                bytes,
                elapsed_ms = elapsed.as_millis() as u64,
                "snapshot taken in the background"
            ),
            Ok(false) => tracing::debug!(index, "snapshot superseded while it was written"),
            Err(e) => tracing::error!(index, error = %e, "recording a snapshot failed"),
        }
    }

    fn after_cycle(&mut self) -> Result<(), ConsensusError> {
        if self.raw.raft.state == StateRole::Leader {
            self.pending.drop_stale(self.raw.raft.term);
        } else {
            // Stepped down (possibly in the same term, via check-quorum): only a
            // leader can see its proposals through, so their outcome is unknown.
            self.pending.fail_all(ProposeError::Dropped);
            if self.reads.has_unanswered() {
                self.reads.fail_unanswered(&ProposeError::Dropped);
            }
        }
        let wanted = self.raw.store().take_snapshot_wanted();
        let due = self.config.snapshot_threshold > 0
            && self.applied_since_snapshot >= self.config.snapshot_threshold
            && Instant::now() >= self.next_snapshot;
        self.poll_background_snapshot(false);
        let idle = self.snapshot_in_flight.is_none();
        if (due || wanted) && idle && self.applied > self.raw.store().snapshot_index() {
            let taken = if self.background_snapshots {
                self.start_background_snapshot()
            } else {
                self.take_snapshot().map(|_| ())
            };
            if let Err(e) = taken {
                // Not fatal: the log is intact, only compaction is delayed. Back
                // off a full threshold rather than retrying every cycle.
                tracing::error!(error = %e, "automatic snapshot failed");
                self.applied_since_snapshot = 0;
            }
        }
        // The bookkeeping (applied index, commit, membership) rides along with
        // every append; on its own it is an extra RocksDB write (a `write(2)` to
        // the WAL) per cycle, a tenth of a single server's raft thread under load.
        // It is re-derivable from the log, so writing it at most this often only
        // bounds how stale it is.
        if self.last_progress_flush.elapsed() >= PROGRESS_FLUSH_EVERY {
            self.raw.mut_store().flush_progress()?;
            self.last_progress_flush = Instant::now();
        }
        let next = self.current_status();
        self.shared.status.send_if_modified(|cur| {
            let changed = RaftStatus {
                last_contact: cur.last_contact,
                ..next.clone()
            } != *cur;
            if changed {
                *cur = next;
            }
            changed
        });
        for (tx, index) in self.membership_replies.drain(..) {
            let _ = tx.send(Ok(index));
        }
        Ok(())
    }
}

/// Hooks for the deterministic simulation (`crate::sim`), which drives a driver
/// one input at a time on the test thread instead of through `run_loop`, so a
/// seeded scheduler decides the order of every tick, message and command.
#[cfg(test)]
impl<S: StateMachine, T: Transport> Driver<S, T> {
    /// What `run_loop` does before it first waits for input.
    pub(crate) fn sim_start(&mut self) -> Result<(), ConsensusError> {
        self.campaign_if_alone()?;
        self.on_ready()?;
        self.after_cycle()
    }

    /// One command, handled as `run_loop` handles it on arrival.
    pub(crate) fn sim_handle(&mut self, cmd: Command<S::Output>) -> Result<(), ConsensusError> {
        self.handle(cmd)
    }

    /// The rest of one `run_loop` iteration: the read round and the Readies.
    pub(crate) fn sim_cycle(&mut self) -> Result<(), ConsensusError> {
        self.start_read_round();
        self.on_ready()?;
        self.after_cycle()
    }

    pub(crate) fn sim_raw(&self) -> &RawNode<RocksStorage> {
        &self.raw
    }

    pub(crate) fn sim_raw_mut(&mut self) -> &mut RawNode<RocksStorage> {
        &mut self.raw
    }

    pub(crate) fn sim_state_machine(&self) -> &S {
        &self.sm
    }
}

/// Lowers the calling thread's CPU priority (nice 10).
///
/// Why: serialising a large state takes a core for a second or more (1.2M rows:
/// 0.4–1.3 s), and every server of a cluster does it within the same half minute.
/// At normal priority it took that time from the raft and request threads: in
/// the cluster benchmark a 5 s window with snapshots in it wrote a third less.
/// Reniced it runs mostly on what the foreground leaves (raft threads waiting on
/// fsync leave some) and is merely slower. Best effort: failing to renice
/// changes nothing else.
#[cfg(target_os = "linux")]
fn background_priority() {
    // On Linux a thread id names just that thread to setpriority(2).
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
        tracing::debug!(error = %e, "cannot lower the snapshot thread's priority");
    }
}

/// Elsewhere a thread has no priority of its own to lower.
#[cfg(not(target_os = "linux"))]
fn background_priority() {}

/// The background snapshot thread's nice value. Not 19: a snapshot a lagging
/// follower waits for is written on the same thread, and on a saturated CPU a
/// nice-19 thread gets about 1.5% of a core against normal ones (nice 10 about
/// 10%), which would stretch a one-second snapshot past a minute.
#[cfg(target_os = "linux")]
const BACKGROUND_NICE: i32 = 10;

/// `interval` stretched by a random 0–100%, as hashicorp/raft randomises its
/// snapshot timer, so servers that started together do not all snapshot at once.
fn jittered(interval: Duration) -> Duration {
    if interval.is_zero() {
        return interval;
    }
    // No RNG dependency for this: the clock's nanoseconds are random enough to
    // spread servers apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    interval + interval.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// Build a status view from the raw node.
pub(crate) fn status_of(raw: &RawNode<RocksStorage>, shared: &Shared, applied: u64) -> RaftStatus {
    let raft = &raw.raft;
    let is_leader = raft.state == StateRole::Leader;
    let conf = raft.prs().conf().to_conf_state();
    let mut voters = conf.voters;
    voters.sort_unstable();
    let mut learners = conf.learners;
    learners.sort_unstable();
    let store = raw.store();
    RaftStatus {
        id: raft.id,
        leader_id: Some(raft.leader_id).filter(|id| *id != 0),
        term: raft.term,
        commit: raft.raft_log.committed,
        applied,
        is_leader,
        last_contact: shared.last_contact(is_leader),
        first_index: raft.raft_log.first_index(),
        last_index: raft.raft_log.last_index(),
        snapshot_index: store.snapshot_index(),
        voters,
        learners,
        membership_index: store.applied_conf_index(),
        running: true,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod priority_tests {
    #[test]
    fn the_background_priority_is_the_calling_threads_only() {
        let me = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let before = me().expect("priority");
        let inside = std::thread::spawn(move || {
            super::background_priority();
            me().expect("priority")
        })
        .join()
        .expect("thread");
        assert_eq!(inside, super::BACKGROUND_NICE);
        assert_eq!(me().expect("priority"), before);
    }
}
