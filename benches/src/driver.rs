//! The closed-loop load driver: N clients, each issuing one request at a time on
//! its own connection, for a warm-up period and then a measured period.
//!
//! Every client connects first; the clock starts only once all of them are ready,
//! so connection setup is never measured. Only requests *started* inside the
//! measured window are recorded; throughput is those requests divided by the
//! window's length.

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
    /// Latencies of measured requests, in nanoseconds.
    samples: Vec<u64>,
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
        if let Some(t) = self.timing {
            if t0 >= t.measure_start {
                self.samples.push(t0.elapsed().as_nanos() as u64);
            }
        }
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
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (timing_tx, timing_rx) = watch::channel(None);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let ctx = Ctx {
            barrier: barrier.clone(),
            timing_rx: timing_rx.clone(),
            timing: None,
            samples: Vec::with_capacity(1 << 16),
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

    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(res) = tasks.join_next().await {
        let ctx = res.context("client task panicked")??;
        samples.extend_from_slice(&ctx.samples);
        errors += ctx.errors;
        if first_error.is_none() {
            first_error = ctx.first_error;
        }
    }
    Ok(Measured::from_samples(
        samples,
        plan.measure.as_secs_f64(),
        errors,
        first_error,
        usage,
    ))
}
