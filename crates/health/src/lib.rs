//! Active health checks, as a Consul agent runs them.
//!
//! A guided tour, from the pure core out:
//!
//! - [`status`]: [`StatusTracker`] applies `success_before_passing`,
//!   `failures_before_warning` and `failures_before_critical` to each raw [`Probe`]
//!   result (Consul's `StatusHandler`).
//! - [`schedule`]: [`Scheduler`] decides when each check runs, with time passed in:
//!   staggered first runs, one run per interval, never two runs of a check at once.
//! - [`plan`]: [`Plan::from_definition`] turns a
//!   [`CheckDefinition`](tribune_types::model::CheckDefinition) into what to run,
//!   with Consul's defaults and validation messages.
//! - [`output`]: the output limits and truncation formats (also the TTL one the agent
//!   applies itself).
//! - [`alias`]: folding another service's or node's checks into one status.
//! - [`probe`]: the async probes — HTTP, TCP, UDP, gRPC health, H2PING, script.
//! - [`process`]: child processes (one pipe for their output, a process-group
//!   kill), shared by script checks and the agent's `consul exec` jobs.
//! - [`runner`]: [`CheckRunner`], the tokio shell that ties them together and sends
//!   the agent a [`CheckResult`] whenever a check's status or output changes.
//!
//! The core modules (`status`, `schedule`, `plan`, `output`, `alias`) do no I/O and
//! use no async runtime:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tribune_health::{Probe, Scheduler, StatusPolicy, StatusTracker};
//! use tribune_types::HealthStatus;
//!
//! // Two consecutive failures before a check is reported critical.
//! let policy = StatusPolicy { failures_before_warning: 2, failures_before_critical: 2, ..Default::default() };
//! let mut tracker = StatusTracker::new(policy);
//! assert_eq!(tracker.observe(Probe::passing("up")).map(|u| u.status), Some(HealthStatus::Passing));
//! assert_eq!(tracker.observe(Probe::critical("down")), None); // held back
//! assert_eq!(tracker.observe(Probe::critical("down")).map(|u| u.status), Some(HealthStatus::Critical));
//!
//! // A check every 10 s, first run 3 s after registration.
//! let t0 = Instant::now();
//! let mut scheduler = Scheduler::new();
//! scheduler.add("web", Duration::from_secs(10), t0, Duration::from_secs(3));
//! assert_eq!(scheduler.due(t0 + Duration::from_secs(3)), vec!["web"]);
//! assert_eq!(scheduler.finished(&"web", t0 + Duration::from_secs(4)), Some(t0 + Duration::from_secs(13)));
//! ```
//!
//! The agent side, in short:
//!
//! ```no_run
//! # async fn agent(def: tribune_types::model::CheckDefinition) -> Result<(), tribune_health::AddError> {
//! use tribune_health::{CheckRunner, Limits, RunnerConfig};
//!
//! let config = RunnerConfig {
//!     limits: Limits { enable_script_checks: true, ..Limits::default() },
//!     ..RunnerConfig::default()
//! };
//! let (runner, mut results) = CheckRunner::start(config);
//! runner.add(&def)?;
//! while let Some(result) = results.recv().await {
//!     println!("{} is now {}: {}", result.id, result.status, result.output);
//! }
//! runner.shutdown().await;
//! # Ok(()) }
//! ```

pub mod alias;
pub mod output;
pub mod plan;
pub mod probe;
pub mod process;
pub mod runner;
pub mod schedule;
pub mod status;

pub use output::{truncate_ttl_output, DEFAULT_OUTPUT_MAX_SIZE};
pub use plan::{Limits, Plan, PlanError, ProbeSpec, TlsSpec};
pub use probe::{AgentTls, AgentTlsError, AgentTlsFiles};
pub use runner::{AddError, CheckResult, CheckRunner, RunnerConfig};
pub use schedule::Scheduler;
pub use status::{Probe, StatusPolicy, StatusTracker, Update};
