//! The simulated cluster and its scheduler.
//!
//! Each server is a real [`Driver`] (raft-rs, [`RocksStorage`] in its own
//! directory, the Ready handling, pending proposals and ReadIndex batching) with
//! a [`KvMachine`] and a [`SimTransport`]. Nothing runs on its own: the
//! scheduler advances virtual time one step at a time, and one seeded RNG
//! decides what happens in each step: which servers' clocks tick, whether a
//! fault strikes (partition, isolation, crash, leadership transfer; each heals
//! or restarts by itself later), whether a message in flight is lost or
//! duplicated, whether a client calls, and which deliverable messages arrive,
//! in what order (delays are random too, so messages overtake each other).
//! Every input to a server is followed by what `run_loop` does after an input:
//! the read round and the Ready cycles.
//!
//! Determinism: the only other randomness in play is raft-rs' election
//! timeout. `Raft::reset` (raft-rs 0.7, `src/raft.rs`), run on every role or
//! term change, redraws it from `rand::thread_rng()`, and no configuration
//! seeds that. The value is only read when raft ticks, so after every call into
//! a server the scheduler checks whether the server's (term, role) changed and,
//! if so, overwrites the timeout with a draw from the seeded RNG through
//! `set_randomized_election_timeout` (public in raft-rs for its own tests).
//! What raft drew is never used, and an assertion catches any redraw without a
//! role or term change (there is none in raft-rs 0.7). The driver's own clock
//! reads only feed the time-based snapshot interval (zero here) and the
//! `last_contact` status field, neither of which the simulation uses; raft-rs'
//! hash maps use a fixed hasher. So a seed replays exactly, which
//! `a_seed_replays_exactly` checks.
//!
//! A crash drops the server's driver between two inputs, like `kill -9`
//! between two loop iterations: everything written to RocksDB so far survives
//! (the process dies, not the OS, so even unsynced writes are kept), nothing in
//! memory does. The server later reopens the same directory as `start` would.
//! Losing unsynced writes (power failure) is not simulated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use raft::{RawNode, StateRole};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::sync::watch;

use super::kv::{KeyOp, KeyResult, KvMachine, SharedLedger, Write};
use super::net::{Network, Outbox, Outgoing, SimTransport};
use super::workload::{self, CheckSummary, Client, Ended, PendingOp, Recorded, Reply, Request};
use crate::codec;
use crate::config::RaftConfig;
use crate::driver::{Command, Driver, DriverConfig, Shared};
use crate::error::{ConsensusError, ProposeError};
use crate::logger;
use crate::machine::StateMachine;
use crate::node::MembershipChange;
use crate::status::{MetricCounters, RaftMetrics, RaftStatus};
use crate::storage::{OpenedStorage, RocksStorage};

type SimDriver = Driver<KvMachine, SimTransport>;

/// Steps allowed for a healed cluster to elect a leader and catch everyone up.
const SETTLE_STEPS: u64 = 30_000;
/// Chance per step that a server's clock ticks: about every ten steps, so a
/// message (delivered within `max_delay` <= 10 steps) is fast next to the
/// election timeout (`election_tick` >= 5 ticks), as on a real network.
const TICK_CHANCE: f64 = 0.1;
/// Chance per step that a client starts an operation.
const CLIENT_CHANCE: f64 = 0.25;
/// After each delivery in a step, the chance of another one.
const DELIVER_MORE_CHANCE: f64 = 0.8;
/// Chances per step (with faults on) of losing or duplicating a message in flight.
const LOSE_CHANCE: f64 = 0.01;
const DUPLICATE_CHANCE: f64 = 0.01;

/// Everything about one simulation except its seed.
#[derive(Debug, Clone)]
pub(super) struct SimConfig {
    pub(super) servers: usize,
    /// Steps of faults and client load before the cluster is healed and checked.
    pub(super) steps: u64,
    pub(super) clients: usize,
    pub(super) keys: u8,
    pub(super) election_tick: usize,
    pub(super) snapshot_threshold: u64,
    pub(super) trailing_logs: u64,
    pub(super) max_size_per_msg: u64,
    /// Chance that a message is lost when sent (while faults are on).
    pub(super) loss: f64,
    /// Messages arrive 0..=max_delay steps after being sent (or later).
    pub(super) max_delay: u64,
    /// Chance per step of a fault event (while faults are on).
    pub(super) fault_rate: f64,
    pub(super) crashes: bool,
    /// Steps a client waits for an answer before giving up.
    pub(super) op_timeout: u64,
}

impl SimConfig {
    /// A well-behaved network and no faults unless a test injects them.
    pub(super) fn calm(servers: usize) -> Self {
        SimConfig {
            servers,
            steps: 0,
            clients: 3,
            keys: 3,
            election_tick: 6,
            snapshot_threshold: 0,
            trailing_logs: 10,
            max_size_per_msg: 1024 * 1024,
            loss: 0.0,
            max_delay: 6,
            fault_rate: 0.0,
            crashes: false,
            op_timeout: 800,
        }
    }

    /// The profile of a random-fault run, derived from the seed alone so that
    /// the seed is all it takes to replay a run. One seed in six runs five
    /// servers; the rest run three.
    pub(super) fn for_seed(seed: u64, steps: u64) -> Self {
        let mut r = StdRng::seed_from_u64(seed ^ 0x7472_6962_756e_6521);
        let servers = if seed % 6 == 5 { 5 } else { 3 };
        SimConfig {
            servers,
            steps,
            clients: 3,
            keys: 3,
            election_tick: r.gen_range(5..=8),
            // Some runs never snapshot, the others snapshot (and compact) often,
            // so lagging and restarted servers get snapshots.
            snapshot_threshold: [0, 12, 30][r.gen_range(0..3)],
            trailing_logs: r.gen_range(0..=8),
            // Tiny appends split every batch across messages.
            max_size_per_msg: if r.gen_bool(0.3) { 48 } else { 1024 * 1024 },
            loss: [0.0, 0.02, 0.08][r.gen_range(0..3)],
            max_delay: r.gen_range(1..=10),
            fault_rate: [0.002, 0.004, 0.008][r.gen_range(0..3)],
            crashes: r.gen_bool(0.8),
            op_timeout: 800,
        }
    }
}

/// Counters of what happened in one run.
#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    pub(super) writes_ok: u64,
    pub(super) writes_unknown: u64,
    /// `NotLeader`, or the server was down.
    pub(super) writes_rejected: u64,
    pub(super) reads_ok: u64,
    pub(super) reads_failed: u64,
    pub(super) client_timeouts: u64,
    /// Reads never answered although their server led, in the term it led when
    /// they arrived, the whole time (see `Sim::note_stuck`).
    pub(super) stuck_reads: u64,
    /// The same for writes.
    pub(super) stuck_writes: u64,
    /// Of the stuck reads, those that arrived before the leader had committed an entry
    /// of its term.
    pub(super) stuck_reads_fresh_leader: u64,
    pub(super) delivered: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) partitions: u64,
    pub(super) heals: u64,
    pub(super) crashes: u64,
    pub(super) transfers: u64,
    pub(super) max_term: u64,
}

/// One server slot: its directory outlives crashes, its driver does not.
struct SimNode {
    id: u64,
    /// Declared before `dir` so RocksDB is closed before its directory goes.
    driver: Option<SimDriver>,
    dir: tempfile::TempDir,
    /// Kept across restarts so counts cover the server's whole life.
    metrics: Arc<MetricCounters>,
    /// The randomized election timeout we last gave raft.
    election_timeout: usize,
    /// The (term, role) it was given for; `None` right after opening.
    pinned_for: Option<(u64, StateRole)>,
    /// When a crashed server comes back by itself (`None`: when told to).
    restart_at: Option<u64>,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub(super) struct RunReport {
    pub(super) stats: Stats,
    pub(super) check: CheckSummary,
    /// Virtual time at the end, settling included.
    pub(super) steps: u64,
    /// Entries applied (distinct indexes).
    pub(super) entries: usize,
    pub(super) snapshots_installed: u64,
    /// A digest of every scheduling decision and outcome, for determinism tests.
    pub(super) digest: u64,
    pub(super) first_stuck: Option<String>,
}

/// A simulated cluster with its network, clients and history.
pub(super) struct Sim {
    pub(super) seed: u64,
    pub(super) cfg: SimConfig,
    rng: StdRng,
    nodes: Vec<SimNode>,
    outbox: Outbox,
    net: Network,
    ledger: SharedLedger,
    /// Virtual time in steps.
    now: u64,
    /// History stamps: bumped for every call, answer and server input.
    clock: u64,
    clients: Vec<Client>,
    history: Vec<Recorded>,
    next_op_id: u64,
    /// Snapshot deliveries (from, to, delivered) still to report to the sender.
    snapshot_reports: Vec<(u64, u64, bool)>,
    pub(super) stats: Stats,
    digest: u64,
    trace: bool,
    /// When the current random partition heals by itself.
    heal_at: Option<u64>,
    /// The leader of each term seen so far.
    leaders: BTreeMap<u64, u64>,
    /// Random faults, loss and duplication on.
    pub(super) faults: bool,
    /// Clients start new operations.
    pub(super) workload: bool,
    /// Serve reads from the called server's state machine without ReadIndex,
    /// as a buggy server might: a deliberately broken mode that shows the
    /// checker catches stale reads end to end.
    pub(super) unsafe_local_reads: bool,
    first_stuck: Option<String>,
}

impl Sim {
    pub(super) fn new(seed: u64, cfg: SimConfig) -> Self {
        // tmpfs when there is one: the simulation fsyncs constantly, and a crash
        // here is a process crash, which fsync has nothing to do with.
        let shm = Path::new("/dev/shm");
        let nodes = (1..=cfg.servers as u64)
            .map(|id| {
                let mut builder = tempfile::Builder::new();
                builder.prefix("tribune-sim-");
                let dir = if shm.is_dir() {
                    builder.tempdir_in(shm)
                } else {
                    builder.tempdir()
                };
                SimNode {
                    id,
                    driver: None,
                    dir: dir.expect("temp dir"),
                    metrics: Arc::default(),
                    election_timeout: 0,
                    pinned_for: None,
                    restart_at: None,
                }
            })
            .collect();
        Sim {
            seed,
            rng: StdRng::seed_from_u64(seed),
            nodes,
            outbox: Outbox::default(),
            net: Network::new(cfg.servers),
            ledger: SharedLedger::default(),
            now: 0,
            clock: 0,
            clients: (0..cfg.clients).map(|_| Client::default()).collect(),
            history: Vec::new(),
            next_op_id: 1,
            snapshot_reports: Vec::new(),
            stats: Stats::default(),
            digest: 0xcbf2_9ce4_8422_2325,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            heal_at: None,
            leaders: BTreeMap::new(),
            faults: false,
            workload: false,
            unsafe_local_reads: false,
            first_stuck: None,
            cfg,
        }
    }

    /// Start every server on an empty directory and form one cluster of all
    /// of them, as `Raft::bootstrap` does.
    pub(super) fn bootstrap(&mut self) {
        let voters: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for idx in 0..self.nodes.len() {
            self.open(idx);
            let (reply, mut rx) = oneshot::channel();
            let voters = voters.clone();
            self.call(idx, |d| {
                d.sim_handle(Command::Bootstrap { voters, reply })?;
                d.sim_cycle()
            });
            rx.try_recv()
                .expect("bootstrap answered")
                .expect("bootstrap of an empty server");
        }
    }

    /// Run `steps` steps of whatever is switched on.
    pub(super) fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// Step until `done` holds; panics (naming `what`) after `max_steps`.
    pub(super) fn run_until(
        &mut self,
        max_steps: u64,
        what: &str,
        mut done: impl FnMut(&Sim) -> bool,
    ) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(
            done(self),
            "{what}: not reached within {max_steps} steps\n{}",
            self.describe()
        );
    }

    /// One step of virtual time: each server's clock may tick, faults and a
    /// client call may happen, then a random number of deliverable messages
    /// arrive, in random order.
    pub(super) fn step(&mut self) {
        self.now += 1;
        self.restart_due();
        if self.heal_at.is_some_and(|t| t <= self.now) {
            self.heal();
        }
        for idx in 0..self.nodes.len() {
            // Independent draws give each clock its own jitter, and now and then
            // a long pause, as a stalled process would have.
            if self.rng.gen_bool(TICK_CHANCE) {
                self.tick(idx);
            }
        }
        if self.faults {
            if self.rng.gen_bool(self.cfg.fault_rate) {
                self.fault();
            }
            if self.rng.gen_bool(LOSE_CHANCE) {
                self.lose_random();
            }
            if self.rng.gen_bool(DUPLICATE_CHANCE) {
                self.duplicate_random();
            }
        }
        if self.workload && self.rng.gen_bool(CLIENT_CHANCE) {
            self.client_action();
        }
        while self.rng.gen_bool(DELIVER_MORE_CHANCE) {
            if !self.deliver_random() {
                break;
            }
        }
        self.report_snapshots();
        self.poll_clients();
    }

    /// Heal everything, restart every crashed server, stop faults and new
    /// client operations, and run until every client has its answer (or gave
    /// up) and one leader has everyone caught up with its whole log. Returns
    /// the members at that point.
    pub(super) fn settle(&mut self) -> Vec<u64> {
        self.faults = false;
        self.workload = false;
        self.heal();
        for idx in 0..self.nodes.len() {
            if self.nodes[idx].driver.is_none() {
                self.open(idx);
            }
        }
        let deadline = self.now + SETTLE_STEPS;
        while self.now < deadline {
            self.step();
            if !self.clients_idle() {
                continue;
            }
            if let Some(members) = self.converged() {
                return members;
            }
        }
        panic!(
            "cluster did not converge within {SETTLE_STEPS} steps once healed\n{}",
            self.describe()
        );
    }

    /// Settle, check that the members' state machines are identical, and check
    /// the history for linearizability. Panics with the details on failure.
    pub(super) fn finish(&mut self) -> RunReport {
        let members = self.settle();
        self.assert_replicas_agree(&members);
        let check = {
            let ledger = self.ledger.lock().expect("ledger lock");
            workload::check(&self.history, &ledger)
        };
        let check = check.unwrap_or_else(|e| panic!("linearizability violated: {e}"));
        self.mix(check.ops as u64);
        RunReport {
            stats: self.stats.clone(),
            check,
            steps: self.now,
            entries: self.ledger.lock().expect("ledger lock").len(),
            snapshots_installed: self
                .nodes
                .iter()
                .map(|n| n.metrics.snapshot().snapshots_installed)
                .sum(),
            digest: self.digest,
            first_stuck: self.first_stuck.clone(),
        }
    }

    // ---- servers ----

    fn raft_config(&self, id: u64, dir: &Path) -> RaftConfig {
        RaftConfig {
            election_tick: self.cfg.election_tick,
            heartbeat_tick: 1,
            snapshot_threshold: self.cfg.snapshot_threshold,
            trailing_logs: self.cfg.trailing_logs,
            max_size_per_msg: self.cfg.max_size_per_msg,
            ..RaftConfig::new(id, dir)
        }
    }

    /// Open server `idx` from its directory, as [`crate::start`] does minus
    /// the thread.
    fn open(&mut self, idx: usize) {
        let node = &self.nodes[idx];
        let id = node.id;
        let config = self.raft_config(id, node.dir.path());
        let OpenedStorage {
            storage,
            base_snapshot,
        } = RocksStorage::open_with_metrics(
            &config.log_dir(),
            &config.snapshot_dir(),
            node.metrics.clone(),
        )
        .unwrap_or_else(|e| panic!("server {id} cannot open its storage: {e}"));
        let mut sm = KvMachine::new(id, self.ledger.clone());
        let applied = match &base_snapshot {
            Some(snap) => {
                sm.restore(snap.index, &snap.data)
                    .unwrap_or_else(|e| panic!("server {id} cannot restore: {e}"));
                snap.index
            }
            None => 0,
        };
        let raw = RawNode::new(&config.to_raft(applied), storage, &logger::raft_logger(id))
            .unwrap_or_else(|e| panic!("server {id}: raft refused its storage: {e}"));
        let shared = Arc::new(Shared {
            metrics: node.metrics.clone(),
            status: watch::channel(RaftStatus::default()).0,
            last_leader_contact: parking_lot::Mutex::new(None),
            fatal: parking_lot::Mutex::new(None),
        });
        // Commands go straight to `sim_handle`; the channel only satisfies
        // the constructor.
        let (_commands, rx) = mpsc::channel();
        let driver = Driver::new(
            raw,
            sm,
            SimTransport {
                from: id,
                outbox: self.outbox.clone(),
            },
            rx,
            shared,
            DriverConfig {
                tick: config.tick,
                snapshot_threshold: config.snapshot_threshold,
                snapshot_interval: Duration::ZERO,
                trailing_logs: config.trailing_logs,
            },
        );
        let node = &mut self.nodes[idx];
        node.driver = Some(driver);
        node.restart_at = None;
        node.pinned_for = None;
        self.pin_election_timeout(idx);
        self.note("open", id, applied);
        self.call(idx, |d| d.sim_start());
    }

    /// Hand one input to server `idx` (if it is up), then route what it sent.
    /// A fatal error on a server fails the run: the simulation never corrupts
    /// storage, so one means a bug.
    fn call<R>(
        &mut self,
        idx: usize,
        f: impl FnOnce(&mut SimDriver) -> Result<R, ConsensusError>,
    ) -> Option<R> {
        let stamp = self.stamp();
        self.ledger.lock().expect("ledger lock").now = stamp;
        let id = self.nodes[idx].id;
        let driver = self.nodes[idx].driver.as_mut()?;
        let out = f(driver).unwrap_or_else(|e| panic!("server {id} stopped on a fatal error: {e}"));
        self.pin_election_timeout(idx);
        self.route_outbox();
        Some(out)
    }

    /// Replace an election timeout raft drew from its unseeded RNG with one
    /// from ours (see the module docs).
    ///
    /// raft redraws whenever it changes role or term (`Raft::reset`), so that is
    /// when we redraw too. Deciding by what raft drew (redraw if it differs from
    /// ours) would not do: a draw that happens to equal ours would skip one of
    /// our draws and shift the whole rest of the run.
    fn pin_election_timeout(&mut self, idx: usize) {
        let et = self.cfg.election_tick;
        let node = &mut self.nodes[idx];
        let Some(driver) = node.driver.as_mut() else {
            return;
        };
        let raft = &mut driver.sim_raw_mut().raft;
        let role = (raft.term, raft.state);
        if node.pinned_for != Some(role) {
            let timeout = self.rng.gen_range(et..2 * et);
            raft.set_randomized_election_timeout(timeout);
            node.election_timeout = timeout;
            node.pinned_for = Some(role);
        }
        assert_eq!(
            raft.randomized_election_timeout(),
            node.election_timeout,
            "server {}: raft redrew its election timeout without a term or role change; \
             the simulation can no longer pin it",
            node.id
        );
        self.stats.max_term = self.stats.max_term.max(raft.term);
        // Election safety: at most one leader per term, ever.
        if raft.state == StateRole::Leader {
            let first = *self.leaders.entry(raft.term).or_insert(node.id);
            assert_eq!(first, node.id, "two leaders in term {}", raft.term);
        }
    }

    fn tick(&mut self, idx: usize) {
        if self.nodes[idx].driver.is_some() {
            self.note("tick", self.nodes[idx].id, 0);
            self.call(idx, |d| {
                d.sim_raw_mut().tick();
                d.sim_cycle()
            });
        }
    }

    /// Crash server `id`; it stays down until [`Sim::restart`] or settling.
    pub(super) fn crash(&mut self, id: u64) {
        let node = &mut self.nodes[index(id)];
        if node.driver.take().is_some() {
            self.stats.crashes += 1;
            self.note("crash", id, 0);
        }
    }

    pub(super) fn restart(&mut self, id: u64) {
        let idx = index(id);
        if self.nodes[idx].driver.is_none() {
            self.open(idx);
        }
    }

    fn restart_due(&mut self) {
        for idx in 0..self.nodes.len() {
            if self.nodes[idx].restart_at.is_some_and(|t| t <= self.now) {
                self.open(idx);
            }
        }
    }

    // ---- network ----

    fn route_outbox(&mut self) {
        let sent = std::mem::take(&mut *self.outbox.lock().expect("outbox lock"));
        for msg in sent {
            let lost = !self.net.connected(msg.from, msg.to)
                || (self.faults && self.cfg.loss > 0.0 && self.rng.gen_bool(self.cfg.loss));
            if lost {
                self.lose(&msg);
                continue;
            }
            let delay = self.rng.gen_range(0..=self.cfg.max_delay);
            self.net.push(msg, self.now + delay);
        }
    }

    fn lose(&mut self, msg: &Outgoing) {
        self.stats.lost += 1;
        if msg.snapshot {
            // A real transport learns that a snapshot did not arrive; raft
            // stops replicating to that peer until told.
            self.snapshot_reports.push((msg.from, msg.to, false));
        }
    }

    /// Deliver one random deliverable message; false if there was none.
    fn deliver_random(&mut self) -> bool {
        match self.net.take_deliverable(self.now, &mut self.rng) {
            Some(m) => {
                self.deliver(m.msg);
                true
            }
            None => false,
        }
    }

    fn deliver(&mut self, msg: Outgoing) {
        let to = index(msg.to);
        if !self.net.connected(msg.from, msg.to) || self.nodes[to].driver.is_none() {
            self.lose(&msg);
            return;
        }
        let decoded = codec::decode_message(&msg.bytes, msg.to)
            .unwrap_or_else(|e| panic!("message from {} does not decode: {e}", msg.from));
        self.stats.delivered += 1;
        self.note("deliver", msg.from * 1000 + msg.to, decoded.msg_type as u64);
        self.call(to, |d| {
            d.sim_handle(Command::Step(Box::new(decoded)))?;
            d.sim_cycle()
        });
        if msg.snapshot {
            self.snapshot_reports.push((msg.from, msg.to, true));
        }
    }

    fn lose_random(&mut self) {
        if let Some(m) = self.net.take_any(&mut self.rng) {
            self.note("lose", m.msg.from * 1000 + m.msg.to, 0);
            self.lose(&m.msg);
        }
    }

    fn duplicate_random(&mut self) {
        let at = self.now + self.rng.gen_range(0..=self.cfg.max_delay);
        if self.net.duplicate_any(at, &mut self.rng) {
            self.stats.duplicated += 1;
            self.note("duplicate", at, 0);
        }
    }

    fn report_snapshots(&mut self) {
        while !self.snapshot_reports.is_empty() {
            for (from, to, success) in std::mem::take(&mut self.snapshot_reports) {
                self.note("snapshot-report", from * 1000 + to, u64::from(success));
                self.call(index(from), |d| {
                    d.sim_handle(Command::ReportSnapshot { to, success })?;
                    d.sim_cycle()
                });
            }
        }
    }

    /// Cut `id` off from everyone (until [`Sim::heal`]).
    pub(super) fn isolate(&mut self, id: u64) {
        self.stats.partitions += 1;
        self.net.isolate(id);
        self.heal_at = None;
        self.note("isolate", id, 0);
    }

    pub(super) fn heal(&mut self) {
        if self.net.is_partitioned() {
            self.stats.heals += 1;
        }
        self.net.heal();
        self.heal_at = None;
        self.note("heal", 0, 0);
    }

    /// A random fault: a partition or an isolation (replacing any current one)
    /// that heals by itself later, a crash with a restart later, or an operator
    /// moving leadership (which makes raft refuse proposals meanwhile).
    fn fault(&mut self) {
        let n = self.nodes.len() as u64;
        let lasts = self.rng.gen_range(100..=800);
        match self.rng.gen_range(0..7) {
            0 => {
                let first: Vec<u64> = (1..=n).filter(|_| self.rng.gen_bool(0.5)).collect();
                if first.is_empty() || first.len() as u64 == n {
                    let id = self.rng.gen_range(1..=n);
                    self.isolate(id);
                } else {
                    self.stats.partitions += 1;
                    self.net.split(&first);
                    self.note("split", first.iter().fold(0, |acc, id| acc * 10 + id), 0);
                }
                self.heal_at = Some(self.now + lasts);
            }
            1 | 2 => {
                let id = self.rng.gen_range(1..=n);
                self.isolate(id);
                self.heal_at = Some(self.now + lasts);
            }
            3 => {
                let to = self.rng.gen_range(1..=n);
                if let Some(leader) = self.leader().filter(|l| *l != to) {
                    self.stats.transfers += 1;
                    self.note("transfer", leader, to);
                    let (reply, _answer) = oneshot::channel();
                    self.call(index(leader), |d| {
                        d.sim_handle(Command::TransferLeader { to, reply })?;
                        d.sim_cycle()
                    });
                }
            }
            _ => {
                // Crash at most a minority at once, so the cluster can still make
                // progress whenever the network lets it.
                let down = self.nodes.iter().filter(|n| n.driver.is_none()).count();
                let id = self.rng.gen_range(1..=n);
                if self.cfg.crashes && down < (self.nodes.len() - 1) / 2 {
                    let back = self.now + self.rng.gen_range(50..600);
                    self.crash(id);
                    self.nodes[index(id)].restart_at = Some(back);
                } else {
                    self.isolate(id);
                    self.heal_at = Some(self.now + lasts);
                }
            }
        }
    }

    // ---- clients ----

    fn client_action(&mut self) {
        let c = self.rng.gen_range(0..self.clients.len());
        if self.clients[c].pending.is_some() {
            return;
        }
        let n = self.nodes.len() as u64;
        let server = match self.clients[c].leader_hint {
            Some(hint) if self.rng.gen_bool(0.8) => hint,
            _ => self.rng.gen_range(1..=n),
        };
        let key = self.rng.gen_range(0..self.cfg.keys);
        let request = match self.rng.gen_range(0..10) {
            0..=2 => Request::Read(key),
            3..=6 => Request::Write(Write::Put {
                key,
                value: self.rng.gen_range(1..=4),
            }),
            _ => Request::Write(Write::Cas {
                key,
                expected: if self.rng.gen_bool(0.2) {
                    None
                } else {
                    Some(self.rng.gen_range(1..=4))
                },
                new: self.rng.gen_range(1..=4),
            }),
        };
        self.submit(c, server, request);
    }

    /// Client `client` calls `server`. Returns the operation id, or `None` if
    /// the server is down (the call fails outright and is not recorded).
    pub(super) fn submit(&mut self, client: usize, server: u64, request: Request) -> Option<u64> {
        assert!(
            self.clients[client].pending.is_none(),
            "client {client} is busy"
        );
        let idx = index(server);
        let Some(driver) = self.nodes[idx].driver.as_ref() else {
            self.clients[client].leader_hint = None;
            match request {
                Request::Write(_) => self.stats.writes_rejected += 1,
                Request::Read(_) => self.stats.reads_failed += 1,
            }
            return None;
        };
        let raw = driver.sim_raw();
        let leader_term = (raw.raft.state == StateRole::Leader).then_some(raw.raft.term);
        let fresh_leader = leader_term.is_some()
            && raw.raft.raft_log.term(raw.raft.raft_log.committed).ok() != leader_term;
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        let call = self.stamp();
        self.note("submit", op_id, server);
        if let (true, Request::Read(key)) = (self.unsafe_local_reads, request) {
            let value = self.value(server, key);
            let at = self.stamp();
            let output = KeyResult::Value(value);
            self.record(client, op_id, request, call, Ended::Returned { at, output });
            return Some(op_id);
        }
        let reply = match request {
            Request::Write(w) => {
                let (reply, rx) = oneshot::channel();
                let data = w.encode(op_id);
                self.call(idx, |d| {
                    d.sim_handle(Command::Propose { data, reply })?;
                    d.sim_cycle()
                });
                Reply::Write(rx)
            }
            Request::Read(_) => {
                let (reply, rx) = oneshot::channel();
                self.call(idx, |d| {
                    d.sim_handle(Command::ReadIndex(reply))?;
                    d.sim_cycle()
                });
                Reply::Read(rx)
            }
        };
        self.clients[client].pending = Some(PendingOp {
            op_id,
            server,
            request,
            call,
            issued_at: self.now,
            reply,
            leader_term,
            fresh_leader,
        });
        Some(op_id)
    }

    /// Whether no client has an operation outstanding.
    pub(super) fn clients_idle(&self) -> bool {
        self.clients.iter().all(|c| c.pending.is_none())
    }

    /// Collect answers; record what the clients learned.
    fn poll_clients(&mut self) {
        for c in 0..self.clients.len() {
            let Some(mut op) = self.clients[c].pending.take() else {
                continue;
            };
            let timed_out = self.now - op.issued_at >= self.cfg.op_timeout;
            let done = match &mut op.reply {
                Reply::Write(rx) => match rx.try_recv() {
                    Ok(Ok(applied)) => {
                        self.stats.writes_ok += 1;
                        self.clients[c].leader_hint = Some(op.server);
                        let at = self.stamp();
                        self.record(
                            c,
                            op.op_id,
                            op.request,
                            op.call,
                            Ended::Returned {
                                at,
                                output: applied.output.into(),
                            },
                        );
                        true
                    }
                    Ok(Err(ProposeError::NotLeader { leader })) => {
                        self.stats.writes_rejected += 1;
                        self.clients[c].leader_hint = leader;
                        self.note("not-leader", op.op_id, 0);
                        true
                    }
                    Ok(Err(_)) | Err(TryRecvError::Closed) => {
                        self.stats.writes_unknown += 1;
                        self.clients[c].leader_hint = None;
                        self.record(c, op.op_id, op.request, op.call, Ended::Unknown);
                        true
                    }
                    Err(TryRecvError::Empty) if timed_out => {
                        self.stats.client_timeouts += 1;
                        self.stats.writes_unknown += 1;
                        self.clients[c].leader_hint = None;
                        self.note_stuck(&op);
                        self.record(c, op.op_id, op.request, op.call, Ended::Unknown);
                        true
                    }
                    Err(TryRecvError::Empty) => false,
                },
                Reply::Read(rx) => match rx.try_recv() {
                    Ok(Ok(read_index)) => {
                        self.read_done(c, &op, read_index);
                        true
                    }
                    Ok(Err(ProposeError::NotLeader { leader })) => {
                        self.stats.reads_failed += 1;
                        self.clients[c].leader_hint = leader;
                        self.note("not-leader", op.op_id, 0);
                        true
                    }
                    Ok(Err(_)) | Err(TryRecvError::Closed) => {
                        self.stats.reads_failed += 1;
                        self.note("read-failed", op.op_id, 0);
                        true
                    }
                    Err(TryRecvError::Empty) if timed_out => {
                        self.stats.client_timeouts += 1;
                        self.stats.reads_failed += 1;
                        self.clients[c].leader_hint = None;
                        self.note_stuck(&op);
                        true
                    }
                    Err(TryRecvError::Empty) => false,
                },
            };
            if !done {
                self.clients[c].pending = Some(op);
            }
        }
    }

    /// A read's index was confirmed and applied: read the value on that server.
    fn read_done(&mut self, client: usize, op: &PendingOp, read_index: u64) {
        let Request::Read(key) = op.request else {
            unreachable!("read reply for a write");
        };
        let Some(driver) = self.nodes[index(op.server)].driver.as_ref() else {
            self.stats.reads_failed += 1;
            return;
        };
        let applied = driver.current_status().applied;
        assert!(
            applied >= read_index,
            "server {} answered a read at index {read_index} having applied only {applied}",
            op.server
        );
        let value = driver.sim_state_machine().get(key);
        self.stats.reads_ok += 1;
        self.clients[client].leader_hint = Some(op.server);
        let at = self.stamp();
        self.record(
            client,
            op.op_id,
            op.request,
            op.call,
            Ended::Returned {
                at,
                output: KeyResult::Value(value),
            },
        );
    }

    /// An operation timed out. If its server led in the same term the whole
    /// time, nothing (no leadership change, no crash) explains the silence.
    fn note_stuck(&mut self, op: &PendingOp) {
        let Some(term) = op.leader_term else {
            return;
        };
        let Some(driver) = self.nodes[index(op.server)].driver.as_ref() else {
            return;
        };
        let raw = driver.sim_raw();
        if raw.raft.state != StateRole::Leader || raw.raft.term != term {
            return;
        }
        let what = match op.request {
            Request::Read(_) => {
                self.stats.stuck_reads += 1;
                self.stats.stuck_reads_fresh_leader += u64::from(op.fresh_leader);
                "read"
            }
            Request::Write(_) => {
                self.stats.stuck_writes += 1;
                "write"
            }
        };
        if self.first_stuck.is_none() {
            self.first_stuck = Some(format!(
                "seed {}: {what} (op {}) sent at step {} to server {}, leader of term {term} \
                 ({}), still unanswered at step {} with the server still leading term {term} \
                 (commit {}, applied {})",
                self.seed,
                op.op_id,
                op.issued_at,
                op.server,
                if op.fresh_leader {
                    "had not yet committed an entry of its term when the call arrived"
                } else {
                    "had committed in its term when the call arrived"
                },
                self.now,
                raw.raft.raft_log.committed,
                driver.current_status().applied,
            ));
        }
    }

    fn record(&mut self, client: usize, op_id: u64, request: Request, call: u64, ended: Ended) {
        let input = match request {
            Request::Write(w) => w.into(),
            Request::Read(_) => KeyOp::Get,
        };
        let outcome = match ended {
            Ended::Returned { output, .. } => match output {
                KeyResult::Prev(v) => 1_000 + u64::from(v.unwrap_or(255)),
                KeyResult::Swapped(ok) => 2_000 + u64::from(ok),
                KeyResult::Value(v) => 3_000 + u64::from(v.unwrap_or(255)),
            },
            Ended::Unknown => 0,
        };
        self.note("record", op_id, outcome);
        self.history.push(Recorded {
            op_id,
            client,
            key: request.key(),
            input,
            call,
            ended,
        });
    }

    pub(super) fn ledger_applied(&self, op_id: u64) -> bool {
        self.ledger
            .lock()
            .expect("ledger lock")
            .applied_at(op_id)
            .is_some()
    }

    // ---- membership ----

    /// Ask `server` to change the membership; the answer arrives on the receiver.
    pub(super) fn change_membership(
        &mut self,
        server: u64,
        change: MembershipChange,
    ) -> oneshot::Receiver<Result<u64, ProposeError>> {
        let (reply, rx) = oneshot::channel();
        self.note("membership", server, 0);
        self.call(index(server), |d| {
            d.sim_handle(Command::ChangeMembership { change, reply })?;
            d.sim_cycle()
        });
        rx
    }

    // ---- observation ----

    /// The server leading the highest term, if any is up and leading.
    pub(super) fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let raw = n.driver.as_ref()?.sim_raw();
                (raw.raft.state == StateRole::Leader).then_some((raw.raft.term, n.id))
            })
            .max()
            .map(|(_, id)| id)
    }

    pub(super) fn status(&self, id: u64) -> Option<RaftStatus> {
        Some(self.nodes[index(id)].driver.as_ref()?.current_status())
    }

    pub(super) fn metrics(&self, id: u64) -> RaftMetrics {
        self.nodes[index(id)].metrics.snapshot()
    }

    pub(super) fn raw(&self, id: u64) -> Option<&RawNode<RocksStorage>> {
        Some(self.nodes[index(id)].driver.as_ref()?.sim_raw())
    }

    pub(super) fn value(&self, id: u64, key: u8) -> Option<u8> {
        self.nodes[index(id)]
            .driver
            .as_ref()?
            .sim_state_machine()
            .get(key)
    }

    /// Members (voters and learners of the leader's configuration), once one
    /// leader has committed its whole log and every member has applied it.
    fn converged(&self) -> Option<Vec<u64>> {
        let leader = self.status(self.leader()?)?;
        if leader.commit != leader.last_index {
            return None;
        }
        let members: BTreeSet<u64> = leader
            .voters
            .iter()
            .chain(&leader.learners)
            .copied()
            .collect();
        for id in &members {
            let s = self.status(*id)?;
            if s.applied != leader.last_index || s.leader_id != Some(leader.id) {
                return None;
            }
        }
        Some(members.into_iter().collect())
    }

    fn assert_replicas_agree(&self, members: &[u64]) {
        let maps: Vec<_> = members
            .iter()
            .map(|id| {
                let d = self.nodes[index(*id)]
                    .driver
                    .as_ref()
                    .expect("members are up");
                (id, d.sim_state_machine().map().clone())
            })
            .collect();
        for (id, map) in &maps[1..] {
            assert_eq!(
                *map, maps[0].1,
                "server {id}'s state differs from server {}'s after convergence",
                maps[0].0
            );
        }
    }

    /// Every server's view, for failure messages.
    pub(super) fn describe(&self) -> String {
        let mut out = format!(
            "seed {} at step {}: sides {:?}, {} messages in flight\n",
            self.seed,
            self.now,
            self.net.sides(),
            self.net.len()
        );
        for n in &self.nodes {
            match n.driver.as_ref() {
                None => {
                    let _ = writeln!(out, "  server {}: down", n.id);
                }
                Some(d) => {
                    let s = d.current_status();
                    let _ = writeln!(
                        out,
                        "  server {}: {:?} term {} leader {:?} commit {} applied {} log {}..={} \
                         snapshot {} voters {:?}",
                        n.id,
                        d.sim_raw().raft.state,
                        s.term,
                        s.leader_id,
                        s.commit,
                        s.applied,
                        s.first_index,
                        s.last_index,
                        s.snapshot_index,
                        s.voters
                    );
                }
            }
        }
        out
    }

    // ---- bookkeeping ----

    fn stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Fold an event into the run's digest (and print it under `SIM_TRACE`).
    fn note(&mut self, what: &str, a: u64, b: u64) {
        if self.trace {
            eprintln!("[seed {} step {}] {what} {a} {b}", self.seed, self.now);
        }
        for byte in what.bytes() {
            self.mix(u64::from(byte));
        }
        self.mix(a);
        self.mix(b);
    }

    fn mix(&mut self, v: u64) {
        // FNV-1a over the value's bytes.
        for byte in v.to_le_bytes() {
            self.digest ^= u64::from(byte);
            self.digest = self.digest.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("server id fits usize")
}
