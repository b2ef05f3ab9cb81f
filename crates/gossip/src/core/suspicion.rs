//! A suspicion timer with Lifeguard's confirmations (memberlist `suspicion.go`).
//!
//! The timer starts at `max` and falls towards `min` as independent members
//! confirm the suspicion: `timeout = max − (max − min) × log(n + 1) / log(k + 1)`
//! after `n` of the wanted `k` confirmations. When too few members exist to
//! confirm (`k < 1`) it simply runs for `min`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One member's suspicion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    start: Instant,
    k: u32,
    n: u32,
    min: Duration,
    max: Duration,
    confirmations: BTreeSet<String>,
    deadline: Instant,
}

impl Suspicion {
    /// Start a suspicion raised by `from` (who does not count as a confirmation,
    /// since our own suspicion may be gossiped back to us).
    pub fn new(from: &str, k: u32, min: Duration, max: Duration, now: Instant) -> Self {
        let timeout = if k < 1 { min } else { max };
        Self {
            start: now,
            k,
            n: 0,
            min,
            max,
            confirmations: BTreeSet::from([from.to_owned()]),
            deadline: now + timeout,
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
    /// re-gossiping).
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.n >= self.k || !self.confirmations.insert(from.to_owned()) {
            return false;
        }
        self.n += 1;
        self.deadline = self.start + remaining(self.n, self.k, self.min, self.max);
        true
    }
}

/// Total timeout after `n` of `k` confirmations, never below `min`.
fn remaining(n: u32, k: u32, min: Duration, max: Duration) -> Duration {
    let frac = (f64::from(n) + 1.0).ln() / (f64::from(k) + 1.0).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    let timeout = Duration::from_millis((raw * 1000.0).floor().max(0.0) as u64);
    timeout.max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_pull_the_deadline_to_min() {
        let t0 = Instant::now();
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        let mut s = Suspicion::new("a", 2, min, max, t0);
        assert_eq!(s.deadline(), t0 + max);
        assert!(!s.confirm("a"), "the raiser is not a confirmation");
        assert!(s.confirm("b"));
        // log(2)/log(3) of the way from 24 s to 4 s.
        assert_eq!(s.deadline(), t0 + Duration::from_millis(11_381));
        assert!(!s.confirm("b"), "one confirmation per member");
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), t0 + min);
        assert!(!s.confirm("d"), "k reached");
        assert_eq!(s.confirmations(), 2);
    }

    #[test]
    fn without_confirmers_min_applies() {
        let t0 = Instant::now();
        let s = Suspicion::new("a", 0, Duration::from_secs(4), Duration::from_secs(24), t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(4));
    }
}
