//! The closed-loop load driver: N clients, each issuing one request at a time on
//! its own connection, for a warm-up period and then a measured period.
//!
//! Every client connects first; the clock starts only once all of them are ready,
//! so connection setup is never measured. Only requests *started* inside the
//! measured window are recorded; throughput is those requests divided by the
//! window's length. A client may sort its requests into several kinds (create,
//! renew, destroy, ...), each measured separately over the same window.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::sync::{watch, Barrier};

use crate::sys::{Sampler, Usage};

/// How long to run a workload.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Unrecorded time before measuring (connection pools, caches, JITs of the
    /// other side's runtime, RocksDB/bbolt first-write effects).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

#[derive(Clone, Copy)]
struct Timing {
    measure_start: Instant,
    end: Instant,
}

/// A client's view of the run: when to go, when to stop, and its latency record.
pub struct Ctx {
    barrier: Arc<Barrier>,
    timing_rx: watch::Receiver<Option<Timing>>,
    timing: Option<Timing>,
    /// Latencies of measured requests, in nanoseconds, one list per kind.
    samples: Vec<Vec<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Ctx {
    /// Wait until every client is connected and the clock has started.
    pub async fn ready(&mut self) -> Result<()> {
        self.barrier.wait().await;
        let t = self
            .timing_rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| anyhow!("driver went away"))?;
        self.timing = *t;
        Ok(())
    }

    /// The start time of the next request, or `None` when the run is over.
    pub fn begin(&self) -> Option<Instant> {
        let now = Instant::now();
        match self.timing {
            Some(t) if now < t.end => Some(now),
            _ => None,
        }
    }

    /// Record a completed request that started at `t0`.
    pub fn done(&mut self, t0: Instant) {
        self.done_kind(0, t0);
    }

    /// Record a completed request of kind `kind` (below the `kinds` given to
    /// [`run_kinds`]) that started at `t0`.
    pub fn done_kind(&mut self, kind: usize, t0: Instant) {
        if self.in_window(t0) {
            self.samples[kind].push(t0.elapsed().as_nanos() as u64);
        }
    }

    /// Whether `t` falls in the measured window (warm-up excluded), for clients
    /// that measure something other than their own request latencies.
    pub fn in_window(&self, t: Instant) -> bool {
        self.timing
            .is_some_and(|w| t >= w.measure_start && t < w.end)
    }

    /// When the run ends (once [`Ctx::ready`] has returned): a client that waits
    /// on something open-ended (a blocking query) stops waiting then.
    pub fn end(&self) -> Option<Instant> {
        self.timing.map(|t| t.end)
    }

    /// Record a failed request. Failures are counted and shown, not fatal: one
    /// reset connection should not throw away a ten-second run.
    pub fn failed(&mut self, t0: Instant, err: anyhow::Error) {
        if self.timing.is_some_and(|t| t0 >= t.measure_start) {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("{err:#}"));
        }
    }
}

/// What a workload measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Requests completed in the measured window.
    pub ops: u64,
    /// Length of the measured window in seconds.
    pub secs: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// The first error any client saw (warm-up included), for the log.
    pub first_error: Option<String>,
    /// Resource use during the measured window.
    pub usage: Usage,
}

impl Measured {
    /// Requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }

    /// Build from raw samples (nanoseconds).
    pub fn from_samples(
        mut samples: Vec<u64>,
        secs: f64,
        errors: u64,
        first_error: Option<String>,
        usage: Usage,
    ) -> Measured {
        samples.sort_unstable();
        Measured {
            ops: samples.len() as u64,
            secs,
            p50_us: percentile(&samples, 0.50) / 1e3,
            p99_us: percentile(&samples, 0.99) / 1e3,
            errors,
            first_error,
            usage,
        }
    }
}

/// CPU (in cores) that something other than the server under test and the load
/// generator may use before a measurement counts as disturbed. Idle kernel
/// threads (writeback, RCU) stay well below it.
pub const DISTURBED_CORES: f64 = 0.25;

/// Whether something else on the machine took enough CPU during `m` to skew it.
pub fn disturbed(m: &Measured) -> bool {
    m.usage.other_cores.is_some_and(|c| c > DISTURBED_CORES)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// Run `clients` copies of `client` (given its index and a [`Ctx`]) under `plan`,
/// sampling resource use with `sampler` over the measured window.
///
/// A client must connect, call [`Ctx::ready`], then loop on [`Ctx::begin`] and
/// report each request with [`Ctx::done`] or [`Ctx::failed`], and return its `Ctx`.
pub async fn run<F, Fut>(
    clients: usize,
    plan: Plan,
    sampler: &Sampler,
    client: F,
) -> Result<Measured>
where
    F: Fn(usize, Ctx) -> Fut,
    Fut: Future<Output = Result<Ctx>> + Send + 'static,
{
    let mut kinds = run_kinds(clients, 1, plan, sampler, client).await?;
    Ok(kinds.remove(0))
}

/// [`run`] for clients that record `kinds` kinds of request with
/// [`Ctx::done_kind`]: one [`Measured`] per kind, all over the same window and
/// carrying the same resource use. Errors and the first error go to kind 0.
pub async fn run_kinds<F, Fut>(
    clients: usize,
    kinds: usize,
    plan: Plan,
    sampler: &Sampler,
    client: F,
) -> Result<Vec<Measured>>
where
    F: Fn(usize, Ctx) -> Fut,
    Fut: Future<Output = Result<Ctx>> + Send + 'static,
{
    assert!(kinds >= 1, "at least one kind of request");
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (timing_tx, timing_rx) = watch::channel(None);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let ctx = Ctx {
            barrier: barrier.clone(),
            timing_rx: timing_rx.clone(),
            timing: None,
            samples: (0..kinds).map(|_| Vec::with_capacity(1 << 14)).collect(),
            errors: 0,
            first_error: None,
        };
        tasks.spawn(client(i, ctx));
    }
    // A client that fails to connect never reaches the barrier; don't hang on it.
    tokio::select! {
        _ = barrier.wait() => {}
        Some(res) = tasks.join_next() => {
            let err = match res {
                Ok(Ok(_)) => anyhow!("a client finished before the run started"),
                Ok(Err(e)) => e,
                Err(e) => anyhow!("client task: {e}"),
            };
            return Err(err.context("starting clients"));
        }
        _ = tokio::time::sleep(Duration::from_secs(60)) => {
            anyhow::bail!("clients did not connect within 60 s");
        }
    }
    let start = Instant::now();
    let timing = Timing {
        measure_start: start + plan.warmup,
        end: start + plan.warmup + plan.measure,
    };
    let _ = timing_tx.send(Some(timing));

    tokio::time::sleep_until(timing.measure_start.into()).await;
    let before = sampler.sample();
    tokio::time::sleep_until(timing.end.into()).await;
    let after = sampler.sample();
    let usage = sampler.usage(&before, &after);

    let mut samples = vec![Vec::new(); kinds];
    let mut errors = 0;
    let mut first_error = None;
    while let Some(res) = tasks.join_next().await {
        let ctx = res.context("client task panicked")??;
        for (all, mine) in samples.iter_mut().zip(&ctx.samples) {
            all.extend_from_slice(mine);
        }
        errors += ctx.errors;
        if first_error.is_none() {
            first_error = ctx.first_error;
        }
    }
    let secs = plan.measure.as_secs_f64();
    Ok(samples
        .into_iter()
        .enumerate()
        .map(|(kind, s)| {
            let (errors, first_error) = if kind == 0 {
                (errors, first_error.clone())
            } else {
                (0, None)
            };
            Measured::from_samples(s, secs, errors, first_error, usage.clone())
        })
        .collect())
}

/// Run a workload; if something else on the machine took CPU during it (a build,
/// another test suite: this machine is shared), wait for the machine to be quiet
/// and run it again, up to `retries` times. The last attempt is kept either way,
/// and the table still flags it. `is_disturbed` says whether an attempt's result
/// was disturbed.
pub async fn undisturbed<T, F, Fut>(
    retries: usize,
    is_disturbed: impl Fn(&T) -> bool,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let m = f().await?;
        if !is_disturbed(&m) || attempt >= retries {
            return Ok(m);
        }
        attempt += 1;
        println!(
            "  (disturbed by other processes; waiting for a quiet machine, attempt {} of {})",
            attempt + 1,
            retries + 1
        );
        wait_quiet().await;
    }
}

/// Wait until the machine has been below 10% busy for 5 s (at most 10 minutes).
pub async fn wait_quiet() {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let load = tokio::task::spawn_blocking(|| crate::sys::background_load(5.0))
            .await
            .ok()
            .flatten();
        if load.is_none_or(|l| l < 0.10) {
            return;
        }
    }
}
