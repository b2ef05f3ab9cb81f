//! The async shell: one tokio task drives the [`Scheduler`] with tokio time, starts
//! each due probe as a future of its own inside that task (so a slow probe delays
//! nobody but itself), feeds results through each check's [`StatusTracker`] and
//! sends the agent only changes.
//!
//! ```text
//! CheckRunner::add/remove ──commands──▶ driver ──push──▶ runs in flight ─┐
//!                                         ▲                               │
//!                                         └─────── Done{id, gen} ◀────────┘
//!                                         │
//!                                         └──▶ mpsc::Receiver<CheckResult> (agent)
//! ```
//!
//! Why the runs are polled by the driver's task instead of spawned: a probe is a
//! handful of short I/O steps, and on a multi-threaded runtime every spawned task
//! may wake a parked worker to steal it; at 1,000 checks a second those cross-thread
//! wake-ups were a measurable share of the agent's CPU (BENCHMARKS.md, "Health
//! checks"). Inside one task, the runs that are ready together are polled in one
//! go. Each run's CPU work between two waits is short (a TLS handshake at most),
//! but all runs share this one task and so one core at a time. A run that panics
//! is reported as a critical result of its check instead of ending the task.
//!
//! Results the agent has not taken yet wait in the driver (the latest per check),
//! so a slow agent never stops the runs in flight or the schedule: a run stalled
//! behind a full channel would otherwise time out against a healthy target.
//!
//! What the runner does not do: TTL checks (the agent's TTL timers own them), alias
//! checks (they need the catalog; the agent folds statuses with
//! [`crate::alias::aggregate`]), persisting anything, or deciding initial statuses.

use crate::plan::{Limits, Plan, PlanError};
use crate::probe::{AgentTls, Prober};
use crate::schedule::{stagger, Scheduler};
use crate::status::{Probe, StatusTracker};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tribune_types::model::CheckDefinition;
use tribune_types::{CheckId, HealthStatus};

/// Default capacity of the result channel.
pub const DEFAULT_RESULT_CAPACITY: usize = 1024;

/// How the runner is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Script switch, output limit and minimum interval.
    pub limits: Limits,
    /// Capacity of the result channel. When it is full, later results wait in the
    /// runner, only the latest per check, until the agent catches up; checks keep
    /// running meanwhile.
    pub result_capacity: usize,
    /// The agent's TLS for TLS checks (`enable_agent_tls_for_checks`): its CAs and
    /// client certificate. `None`: the system's trust store and no client
    /// certificate, Consul's default.
    pub agent_tls: Option<Arc<AgentTls>>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            limits: Limits::default(),
            result_capacity: DEFAULT_RESULT_CAPACITY,
            agent_tls: None,
        }
    }
}

/// A status change to record for a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check.
    pub id: CheckId,
    /// Its new status.
    pub status: HealthStatus,
    /// Its new output.
    pub output: String,
}

/// Why [`CheckRunner::add`] refused a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The definition cannot be run (Consul's message is the display).
    #[error(transparent)]
    Invalid(#[from] PlanError),
    /// The runner's task has ended.
    #[error("the check runner has shut down")]
    Stopped,
}

enum Command {
    Add(Box<Plan>),
    Remove(CheckId),
    Shutdown,
}

/// Handle to the running checks. Dropping it stops them as [`CheckRunner::shutdown`]
/// does, without waiting.
#[derive(Debug)]
pub struct CheckRunner {
    commands: mpsc::UnboundedSender<Command>,
    limits: Limits,
    driver: JoinHandle<()>,
}

impl CheckRunner {
    /// Starts the driver task on the current tokio runtime (so, like
    /// `tokio::spawn`, it panics outside one). Results arrive on the returned
    /// receiver; it closes when the runner stops, and dropping it stops the runner at
    /// its next result.
    pub fn start(config: RunnerConfig) -> (CheckRunner, mpsc::Receiver<CheckResult>) {
        let (results_tx, results_rx) = mpsc::channel(config.result_capacity.max(1));
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            scheduler: Scheduler::new(),
            slots: HashMap::new(),
            next_generation: 0,
            rng: StdRng::from_entropy(),
            runs: FuturesUnordered::new(),
            pending: Pending::default(),
            agent_tls: config.agent_tls,
        };
        let driver = tokio::spawn(driver.run(commands_rx, results_tx));
        (
            CheckRunner {
                commands: commands_tx,
                limits: config.limits,
                driver,
            },
            results_rx,
        )
    }

    /// Checks that `def` could be added, without adding it (for registration
    /// endpoints that validate before persisting).
    pub fn validate(&self, def: &CheckDefinition) -> Result<(), PlanError> {
        Plan::from_definition(def, &self.limits).map(|_| ())
    }

    /// Starts running a check, replacing (and cancelling any run of) a check with the
    /// same ID. Its first run is staggered randomly within its interval; its counters
    /// start afresh, so its first result is always sent.
    pub fn add(&self, def: &CheckDefinition) -> Result<(), AddError> {
        let plan = Plan::from_definition(def, &self.limits)?;
        self.commands
            .send(Command::Add(Box::new(plan)))
            .map_err(|_| AddError::Stopped)
    }

    /// Stops running a check and cancels its run in flight (a script is killed).
    /// Unknown IDs are ignored. A result already queued on the channel may still
    /// arrive after this returns; the agent drops results for checks it no longer has.
    pub fn remove(&self, id: &CheckId) {
        // A send error means the runner is gone, and with it every check.
        let _ = self.commands.send(Command::Remove(id.clone()));
    }

    /// Stops every check, cancels runs in flight and waits for the driver to end;
    /// the result channel then closes.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Err(e) = self.driver.await {
            tracing::warn!(error = %e, "check runner task ended abnormally");
        }
    }
}

/// One check's live state in the driver.
struct Slot {
    plan: Arc<Plan>,
    /// The plan's probe, readied once for all runs.
    prober: Arc<Prober>,
    /// Tags this registration's runs, so a run of a replaced or removed registration
    /// is recognised as stale when it reports.
    generation: u64,
    tracker: StatusTracker,
    last_sent: Option<(HealthStatus, String)>,
    /// Cancels the run in flight when dropped (or sent to).
    run: Option<oneshot::Sender<()>>,
}

/// A run's report.
struct Done {
    id: CheckId,
    generation: u64,
    probe: Probe,
}

struct Driver {
    scheduler: Scheduler<CheckId>,
    slots: HashMap<CheckId, Slot>,
    next_generation: u64,
    rng: StdRng,
    /// Runs in flight; `None` is a cancelled run.
    runs: FuturesUnordered<Run>,
    /// Results not yet in the channel.
    pending: Pending,
    /// Lent to every check's prober.
    agent_tls: Option<Arc<AgentTls>>,
}

/// One run in flight, polled by the driver's task.
type Run = Pin<Box<dyn Future<Output = Option<Done>> + Send>>;

/// Results waiting for room in the channel: the latest per check, in the order the
/// checks first changed. Only the latest matters to the agent, so a backlog never
/// holds more than one result per check.
#[derive(Default)]
struct Pending {
    order: VecDeque<CheckId>,
    latest: HashMap<CheckId, CheckResult>,
}

impl Pending {
    fn push(&mut self, result: CheckResult) {
        if !self.latest.contains_key(&result.id) {
            self.order.push_back(result.id.clone());
        }
        self.latest.insert(result.id.clone(), result);
    }

    fn pop(&mut self) -> Option<CheckResult> {
        // IDs whose result was forgotten are skipped.
        while let Some(id) = self.order.pop_front() {
            if let Some(result) = self.latest.remove(&id) {
                return Some(result);
            }
        }
        None
    }

    fn forget(&mut self, id: &CheckId) {
        self.latest.remove(id);
    }

    fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    /// The driver loop. `results` is not a field so that the permit `select!`
    /// hands out borrows it, not `self`, which the other branches' handlers need.
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        results: mpsc::Sender<CheckResult>,
    ) {
        loop {
            let deadline = self.scheduler.next_deadline();
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                // Commands first: a remove must win over starting the same check.
                biased;
                command = commands.recv() => match command {
                    Some(Command::Add(plan)) => self.add(*plan),
                    Some(Command::Remove(id)) => self.remove(&id),
                    Some(Command::Shutdown) | None => break,
                },
                permit = results.reserve(), if !self.pending.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(result) = self.pending.pop() {
                            permit.send(result);
                        }
                    }
                    // The agent dropped the receiver.
                    Err(_) => break,
                },
                Some(done) = self.runs.next(), if !self.runs.is_empty() => {
                    if let Some(done) = done {
                        self.complete(done);
                    }
                }
                () = timer => self.start_due(),
            }
        }
        // Dropping the runs in flight cancels them (a script is killed).
    }

    fn add(&mut self, plan: Plan) {
        self.remove(&plan.id);
        self.next_generation += 1;
        let offset = stagger(plan.interval, &mut self.rng);
        self.scheduler
            .add(plan.id.clone(), plan.interval, now(), offset);
        tracing::debug!(check = %plan.id, interval = ?plan.interval, first_in = ?offset, "check scheduled");
        self.slots.insert(
            plan.id.clone(),
            Slot {
                tracker: StatusTracker::new(plan.policy),
                prober: Arc::new(Prober::new(&plan.probe, self.agent_tls.clone())),
                plan: Arc::new(plan),
                generation: self.next_generation,
                last_sent: None,
                run: None,
            },
        );
    }

    fn remove(&mut self, id: &CheckId) {
        self.scheduler.remove(id);
        // Dropping the slot drops its run's cancel sender, which ends the run at
        // its next poll (a script is killed). A result it had waiting is stale.
        self.slots.remove(id);
        self.pending.forget(id);
    }

    fn start_due(&mut self) {
        for id in self.scheduler.due(now()) {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let plan = Arc::clone(&slot.plan);
            let prober = Arc::clone(&slot.prober);
            let generation = slot.generation;
            let (cancel, cancelled) = oneshot::channel::<()>();
            self.runs.push(Box::pin(async move {
                let run =
                    AssertUnwindSafe(prober.run(plan.timeout, plan.output_max_size)).catch_unwind();
                tokio::select! {
                    // A run cancelled before its first poll never starts its probe.
                    biased;
                    _ = cancelled => None,
                    probe = run => Some(Done {
                        id: plan.id.clone(),
                        generation,
                        probe: probe.unwrap_or_else(|panic| panicked(&plan.id, &*panic)),
                    }),
                }
            }));
            slot.run = Some(cancel);
        }
    }

    /// Handles a run's report: counts it against the check's thresholds and queues
    /// a result when what the agent knows changes.
    fn complete(&mut self, done: Done) {
        let Some(slot) = self.slots.get_mut(&done.id) else {
            return;
        };
        if slot.generation != done.generation {
            return;
        }
        slot.run = None;
        self.scheduler.finished(&done.id, now());
        let raw = done.probe.status;
        let Some(update) = slot.tracker.observe(done.probe) else {
            tracing::debug!(check = %done.id, status = %raw, "check result held back by its thresholds");
            return;
        };
        let unchanged = slot
            .last_sent
            .as_ref()
            .is_some_and(|(s, o)| *s == update.status && *o == update.output);
        if unchanged {
            return;
        }
        slot.last_sent = Some((update.status, update.output.clone()));
        tracing::debug!(check = %done.id, status = %update.status, "check status updated");
        self.pending.push(CheckResult {
            id: done.id,
            status: update.status,
            output: update.output,
        });
    }
}

/// A run that panicked: a bug of ours, not the target's, but the check must not
/// keep its last status as if it had run. Critical, with the panic's message.
fn panicked(id: &CheckId, panic: &(dyn std::any::Any + Send)) -> Probe {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned());
    tracing::error!(check = %id, panic = %message, "check run panicked");
    Probe::critical(format!("check run failed inside the agent: {message}"))
}
