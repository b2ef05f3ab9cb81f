//! Server-side request rate limits (`limits.request_limits`): one global token
//! bucket for reads and one for writes, as Consul's `agent/consul/rate` keeps
//! them, so that a flood from clients (a thousand consul-template watches, a
//! runaway script) is refused at the server instead of starving raft.
//!
//! Sans-io: the caller passes the time, so the tests run on manual time. Each
//! bucket refills at `rate` per second up to a burst of ten seconds' worth
//! (Consul's `requestLimitsBurstMultiplier`) and starts full. Consul takes the
//! burst as `int(rate) * 10`, which leaves a rate below 1 with no burst at all
//! and every request refused; here a positive rate always admits at least one
//! request at a time. A rate of 0 refuses everything, as in Consul.
//!
//! In `permissive` mode requests over the limit are logged and let through; in
//! `enforcing` mode they are refused, and the server answers as Consul does
//! ([`RateLimited`], which travels to client agents in `RpcError`). Status,
//! operator and autopilot requests are exempt (Consul's `OperationTypeExempt`),
//! and so are the server's own reads; session renewals count as writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
pub use tribune_rpc::RateLimited;
use tribune_rpc::TokenBucket;

/// What to do when a limit is exceeded (`limits.request_limits.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No limiting (Consul's default).
    #[default]
    Disabled,
    /// Log requests over the limit, but serve them.
    Permissive,
    /// Refuse requests over the limit.
    Enforcing,
}

/// `limits.request_limits`: the mode and the two rates, in requests per second
/// (`None`: unlimited, Consul's `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RequestLimits {
    /// What happens over the limit.
    pub mode: Mode,
    /// Reads per second.
    pub read_rate: Option<f64>,
    /// Writes per second.
    pub write_rate: Option<f64>,
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Read,
    /// A write (or a session renewal).
    Write,
}

impl Op {
    /// The `limit_type` Consul logs.
    fn limit_type(self) -> &'static str {
        match self {
            Op::Read => "global/read",
            Op::Write => "global/write",
        }
    }
}

/// A bucket for `rate` with a burst of ten seconds' worth.
fn bucket(rate: Option<f64>, now: Instant) -> TokenBucket {
    TokenBucket::new(rate, burst(rate), now)
}

/// Ten seconds' worth of requests, at least one when the rate is positive.
fn burst(rate: Option<f64>) -> f64 {
    match rate {
        None => 0.0,
        Some(r) if r > 0.0 => (r.floor() * 10.0).max(1.0),
        Some(_) => 0.0,
    }
}

/// The server's limiter: the mode and the two buckets, reconfigured on reload.
#[derive(Debug)]
pub struct RequestLimiter {
    /// Whether the mode is other than `disabled`: read without the lock, so
    /// that with limits off (the default) a request pays one atomic load.
    active: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    read: TokenBucket,
    write: TokenBucket,
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Under the limit (or limiting is off).
    Allowed,
    /// Over the limit in `permissive` mode: served, and logged.
    OverButPermitted,
    /// Over the limit in `enforcing` mode: refused.
    Refused,
}

impl RequestLimiter {
    /// A limiter with `limits`, its buckets full at `now`.
    pub fn new(limits: RequestLimits, now: Instant) -> Self {
        RequestLimiter {
            active: AtomicBool::new(limits.mode != Mode::Disabled),
            inner: Mutex::new(Inner {
                mode: limits.mode,
                read: bucket(limits.read_rate, now),
                write: bucket(limits.write_rate, now),
            }),
        }
    }

    /// New limits (`consul reload`), in force from the next request.
    pub fn reconfigure(&self, limits: RequestLimits, now: Instant) {
        let mut inner = self.inner.lock();
        inner.mode = limits.mode;
        inner
            .read
            .reconfigure(limits.read_rate, burst(limits.read_rate), now);
        inner
            .write
            .reconfigure(limits.write_rate, burst(limits.write_rate), now);
        self.active
            .store(limits.mode != Mode::Disabled, Ordering::Relaxed);
    }

    /// Whether any limit applies (the mode is not `disabled`).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts one request of kind `op` at `now`.
    pub fn admit(&self, op: Op, now: Instant) -> Admission {
        if !self.active() {
            return Admission::Allowed;
        }
        let mut inner = self.inner.lock();
        if inner.mode == Mode::Disabled {
            return Admission::Allowed;
        }
        let bucket = match op {
            Op::Read => &mut inner.read,
            Op::Write => &mut inner.write,
        };
        if bucket.allow(now) {
            return Admission::Allowed;
        }
        let enforced = inner.mode == Mode::Enforcing;
        drop(inner);
        tracing::debug!(
            limit_type = op.limit_type(),
            limit_enforced = enforced,
            "RPC exceeded allowed rate limit"
        );
        if enforced {
            Admission::Refused
        } else {
            Admission::OverButPermitted
        }
    }

    /// [`RequestLimiter::admit`] as the server answers it: `Err` when refused,
    /// with Consul's choice of error (only a write refused by the leader cannot
    /// be sent elsewhere). `is_leader` is asked only then.
    pub fn check(
        &self,
        op: Op,
        is_leader: impl FnOnce() -> bool,
        now: Instant,
    ) -> Result<(), RateLimited> {
        match self.admit(op, now) {
            Admission::Refused if op == Op::Write && is_leader() => Err(RateLimited::RetryLater),
            Admission::Refused => Err(RateLimited::RetryElsewhere),
            Admission::Allowed | Admission::OverButPermitted => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(mode: Mode, read: Option<f64>, write: Option<f64>) -> RequestLimits {
        RequestLimits {
            mode,
            read_rate: read,
            write_rate: write,
        }
    }

    #[test]
    fn disabled_admits_everything() {
        let t = Instant::now();
        let l = RequestLimiter::new(limits(Mode::Disabled, Some(0.0), Some(0.0)), t);
        for _ in 0..1000 {
            assert_eq!(l.admit(Op::Write, t), Admission::Allowed);
        }
    }

    #[test]
    fn a_full_burst_then_the_rate() {
        let t = Instant::now();
        // 2 writes/s: a burst of 20, then one every half second.
        let l = RequestLimiter::new(limits(Mode::Enforcing, None, Some(2.0)), t);
        for i in 0..20 {
            assert_eq!(l.check(Op::Write, || true, t), Ok(()), "write {i}");
        }
        assert_eq!(l.check(Op::Write, || true, t), Err(RateLimited::RetryLater));
        // A follower refusing a write says "elsewhere": the leader may take it.
        assert_eq!(
            l.check(Op::Write, || false, t),
            Err(RateLimited::RetryElsewhere)
        );
        let later = t + Duration::from_millis(499);
        assert!(l.check(Op::Write, || true, later).is_err());
        let later = t + Duration::from_millis(500);
        assert_eq!(l.check(Op::Write, || true, later), Ok(()));
        assert!(l.check(Op::Write, || true, later).is_err());
        // Reads have their own, unlimited, bucket.
        for _ in 0..100 {
            assert_eq!(l.check(Op::Read, || true, later), Ok(()));
        }
        // Idle time refills up to the burst, not beyond.
        let much_later = t + Duration::from_secs(3600);
        let admitted = (0..100)
            .filter(|_| l.check(Op::Write, || true, much_later).is_ok())
            .count();
        assert_eq!(admitted, 20);
    }

    #[test]
    fn a_refused_read_is_retry_elsewhere_even_on_the_leader() {
        let t = Instant::now();
        let l = RequestLimiter::new(limits(Mode::Enforcing, Some(1.0), None), t);
        let admitted = (0..15)
            .filter(|_| l.check(Op::Read, || true, t).is_ok())
            .count();
        assert_eq!(admitted, 10);
        assert_eq!(
            l.check(Op::Read, || true, t),
            Err(RateLimited::RetryElsewhere)
        );
    }

    #[test]
    fn permissive_serves_what_it_counts_over() {
        let t = Instant::now();
        let l = RequestLimiter::new(limits(Mode::Permissive, Some(1.0), Some(1.0)), t);
        let over = (0..15)
            .filter(|_| l.admit(Op::Read, t) == Admission::OverButPermitted)
            .count();
        assert_eq!(over, 5);
        assert!((0..15).all(|_| l.check(Op::Read, || true, t).is_ok()));
    }

    #[test]
    fn rates_of_zero_and_below_one() {
        let t = Instant::now();
        let l = RequestLimiter::new(limits(Mode::Enforcing, Some(0.0), Some(0.5)), t);
        // 0 refuses everything, for ever.
        assert!(l
            .check(Op::Read, || false, t + Duration::from_secs(60))
            .is_err());
        // Half a request per second: one now, the next two seconds later.
        assert!(l.check(Op::Write, || true, t).is_ok());
        assert!(l
            .check(Op::Write, || true, t + Duration::from_millis(1999))
            .is_err());
        assert!(l
            .check(Op::Write, || true, t + Duration::from_secs(2))
            .is_ok());
    }

    #[test]
    fn reload_changes_the_limits_from_the_next_request() {
        let t = Instant::now();
        let l = RequestLimiter::new(limits(Mode::Enforcing, None, Some(1.0)), t);
        assert_eq!(
            (0..20)
                .filter(|_| l.check(Op::Write, || true, t).is_ok())
                .count(),
            10
        );
        // Turned off: everything passes.
        l.reconfigure(limits(Mode::Disabled, None, Some(1.0)), t);
        assert!(l.check(Op::Write, || true, t).is_ok());
        // On again with a higher rate: the bucket keeps what it had (empty) and
        // refills at the new rate.
        l.reconfigure(limits(Mode::Enforcing, None, Some(100.0)), t);
        assert!(l.check(Op::Write, || true, t).is_err());
        let later = t + Duration::from_millis(100);
        assert_eq!(
            (0..20)
                .filter(|_| l.check(Op::Write, || true, later).is_ok())
                .count(),
            10
        );
        // A lower burst cuts what was saved.
        let idle = later + Duration::from_secs(60);
        l.reconfigure(limits(Mode::Enforcing, None, Some(1.0)), idle);
        assert_eq!(
            (0..20)
                .filter(|_| l.check(Op::Write, || true, idle).is_ok())
                .count(),
            10
        );
        // Time going backwards (it cannot with Instant, but a caller may pass an
        // older one) neither panics nor mints tokens.
        assert!(l.check(Op::Write, || true, t).is_err());
    }
}
