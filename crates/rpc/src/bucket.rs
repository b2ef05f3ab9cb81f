//! A token bucket on caller-supplied time (sans-io): the building block of the
//! request rate limits, a server's `limits.request_limits` (`tribune_server::rate`)
//! and a client agent's `limits.rpc_rate` ([`crate::ServerPool`]). It refills at
//! `rate` tokens a second up to `burst` and starts full, as Go's
//! `golang.org/x/time/rate` limiter, which Consul uses for both.

use std::time::Instant;

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens per second; `None` = unlimited.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate: None` admits everything.
    pub fn new(rate: Option<f64>, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// A new rate and burst, keeping the tokens already earned (up to the new
    /// burst); a bucket that was unlimited starts full, as a new one does.
    pub fn reconfigure(&mut self, rate: Option<f64>, burst: f64, now: Instant) {
        self.refill(now);
        self.tokens = if self.rate.is_none() {
            burst
        } else {
            self.tokens.min(burst)
        };
        self.rate = rate;
        self.burst = burst;
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        }
        // An older `now` than the last one neither panics nor mints tokens.
        self.last = self.last.max(now);
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate.is_none() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether this bucket limits anything.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_full_refills_at_the_rate_and_caps_at_the_burst() {
        let t = Instant::now();
        let mut b = TokenBucket::new(Some(10.0), 3.0, t);
        assert_eq!((0..5).filter(|_| b.allow(t)).count(), 3);
        assert!(!b.allow(t + Duration::from_millis(99)));
        assert!(b.allow(t + Duration::from_millis(100)));
        let idle = t + Duration::from_secs(60);
        assert_eq!((0..5).filter(|_| b.allow(idle)).count(), 3);
        // Backwards time mints nothing.
        assert!(!b.allow(t));
    }

    #[test]
    fn unlimited_and_zero() {
        let t = Instant::now();
        let mut open = TokenBucket::new(None, 0.0, t);
        assert!((0..1000).all(|_| open.allow(t)));
        let mut shut = TokenBucket::new(Some(0.0), 0.0, t);
        assert!(!shut.allow(t + Duration::from_secs(3600)));
    }
}
