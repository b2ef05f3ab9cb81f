//! Lamport clocks, as Serf keeps them: one for membership intents, one for user
//! events. A clock only moves forward; witnessing a time at or past ours moves us
//! just beyond it, so anything we stamp next sorts after what we have seen.

/// A Lamport clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock(u64);

impl LamportClock {
    /// The current time (the stamp the next message would carry).
    pub fn time(self) -> u64 {
        self.0
    }

    /// Advance by one and return the new time.
    pub fn increment(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }

    /// Observe a time from elsewhere.
    pub fn witness(&mut self, seen: u64) {
        if seen >= self.0 {
            self.0 = seen.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_moves_past_and_never_back() {
        let mut c = LamportClock::default();
        assert_eq!(c.increment(), 1);
        c.witness(10);
        assert_eq!(c.time(), 11);
        c.witness(3);
        assert_eq!(c.time(), 11);
        c.witness(11);
        assert_eq!(c.time(), 12);
    }
}
