//! A suspicion timer with Lifeguard's confirmations (memberlist `suspicion.go`),
//! extended past memberlist's minimum.
//!
//! The timer starts at `max` and falls towards `min` as independent members
//! confirm the suspicion: `timeout = max − (max − min) × log(n + 1) / log(k + 1)`
//! after `n` of the wanted `k` confirmations. When too few members exist to
//! confirm (`k < 1`) it simply runs for `min`.
//!
//! memberlist stops counting at `k`. Tribune keeps counting, up to `k_floor`, and
//! the same log-shaped curve takes the timeout from `min` down to `floor`:
//! `timeout = min − (min − floor) × log(j + 1) / log(k_floor − k + 1)` after
//! `j = n − k` further confirmations. Each confirmation is a distinct member
//! whose own direct and indirect probes of the suspect failed, so the more of
//! them, the less likely a live member is being accused — the single stale
//! accuser Lifeguard guards against cannot shorten the timer at all. The floor
//! (see [`crate::config::suspicion_floor`]) still leaves a running suspect time to
//! hear of the accusation and refute it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The bounds of one suspicion timer (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionBounds {
    /// Confirmations that take the timer from `max` to `min` (Lifeguard's `k`).
    pub k: u32,
    /// Confirmations that take it on to `floor` (`≥ k`; equal: no extension).
    pub k_floor: u32,
    /// Timeout with `k` confirmations (memberlist's `suspicionTimeout`).
    pub min: Duration,
    /// Timeout with none.
    pub max: Duration,
    /// Timeout with `k_floor` confirmations (`≤ min`).
    pub floor: Duration,
}

impl SuspicionBounds {
    /// Total timeout after `n` confirmations, never below `floor`, never below
    /// `min` before `k` of them.
    pub fn timeout(&self, n: u32) -> Duration {
        if self.k < 1 {
            return self.min;
        }
        if n <= self.k {
            return log_step(n, self.k, self.max, self.min).max(self.min);
        }
        let extra = self.k_floor.saturating_sub(self.k);
        if extra == 0 {
            return self.min;
        }
        let floor = self.floor.min(self.min);
        log_step(n.min(self.k_floor) - self.k, extra, self.min, floor).max(floor)
    }
}

/// One member's suspicion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    start: Instant,
    n: u32,
    bounds: SuspicionBounds,
    confirmations: BTreeSet<String>,
    deadline: Instant,
}

impl Suspicion {
    /// Start a suspicion raised by `from` (who does not count as a confirmation,
    /// since our own suspicion may be gossiped back to us).
    pub fn new(from: &str, bounds: SuspicionBounds, now: Instant) -> Self {
        Self {
            start: now,
            n: 0,
            bounds,
            confirmations: BTreeSet::from([from.to_owned()]),
            deadline: now + bounds.timeout(0),
        }
    }

    /// When the member is to be declared dead.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Confirmations counted so far.
    pub fn confirmations(&self) -> u32 {
        self.n
    }

    /// Count a confirmation from `from`; `true` if it was new (and so worth
    /// re-gossiping, so other members count it too).
    pub fn confirm(&mut self, from: &str) -> bool {
        let wanted = self.bounds.k_floor.max(self.bounds.k);
        if self.n >= wanted || !self.confirmations.insert(from.to_owned()) {
            return false;
        }
        self.n += 1;
        self.deadline = self.start + self.bounds.timeout(self.n);
        true
    }
}

/// `from − (from − to) × log(i + 1) / log(of + 1)`, in whole milliseconds
/// (memberlist's rounding).
fn log_step(i: u32, of: u32, from: Duration, to: Duration) -> Duration {
    let frac = (f64::from(i) + 1.0).ln() / (f64::from(of) + 1.0).ln();
    let raw = from.as_secs_f64() - frac * (from.as_secs_f64() - to.as_secs_f64());
    Duration::from_millis((raw * 1000.0).floor().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(k: u32, k_floor: u32) -> SuspicionBounds {
        SuspicionBounds {
            k,
            k_floor,
            min: Duration::from_secs(4),
            max: Duration::from_secs(24),
            floor: Duration::from_secs(2),
        }
    }

    #[test]
    fn confirmations_pull_the_deadline_to_min() {
        let t0 = Instant::now();
        let mut s = Suspicion::new("a", bounds(2, 2), t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(24));
        assert!(!s.confirm("a"), "the raiser is not a confirmation");
        assert!(s.confirm("b"));
        // log(2)/log(3) of the way from 24 s to 4 s.
        assert_eq!(s.deadline(), t0 + Duration::from_millis(11_381));
        assert!(!s.confirm("b"), "one confirmation per member");
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), t0 + Duration::from_secs(4));
        assert!(!s.confirm("d"), "k reached, and no extension");
        assert_eq!(s.confirmations(), 2);
    }

    #[test]
    fn further_confirmations_go_on_to_the_floor_and_no_lower() {
        let t0 = Instant::now();
        let mut s = Suspicion::new("a", bounds(2, 6), t0);
        let mut last = s.deadline();
        for (i, who) in ["b", "c", "d", "e", "f", "g"].into_iter().enumerate() {
            assert!(s.confirm(who), "confirmation {} counts", i + 1);
            assert!(s.deadline() < last, "each one shortens the timer");
            assert!(
                s.deadline() >= t0 + Duration::from_secs(2),
                "never below the floor"
            );
            if i < 2 {
                assert!(s.deadline() >= t0 + Duration::from_secs(4), "min until k");
            }
            last = s.deadline();
        }
        assert_eq!(s.deadline(), t0 + Duration::from_secs(2));
        assert!(!s.confirm("h"), "k_floor reached: nothing more to gossip");
        assert!(!s.confirm("a") && !s.confirm("b"));
        assert_eq!(s.confirmations(), 6);
        // One past k: log(2)/log(5) of the way from 4 s to 2 s.
        let b = bounds(2, 6);
        assert_eq!(b.timeout(3), Duration::from_millis(3_138));
    }

    #[test]
    fn the_timeout_never_goes_below_the_floor_nor_rises() {
        for k in 0..6 {
            for k_floor in k..(3 * k + 2) {
                let b = bounds(k, k_floor);
                let mut prev = b.timeout(0);
                for n in 0..40 {
                    let t = b.timeout(n);
                    assert!(
                        t >= b.floor && t <= b.max,
                        "k {k} k_floor {k_floor} n {n}: {t:?}"
                    );
                    assert!(t <= prev, "monotone");
                    if n <= k {
                        assert!(t >= b.min);
                    }
                    prev = t;
                }
            }
        }
    }

    #[test]
    fn without_confirmers_min_applies() {
        let t0 = Instant::now();
        let mut s = Suspicion::new("a", bounds(0, 0), t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(4));
        assert!(!s.confirm("b"));
        assert_eq!(s.deadline(), t0 + Duration::from_secs(4));
    }
}
