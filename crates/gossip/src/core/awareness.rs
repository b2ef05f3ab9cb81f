//! Lifeguard local health awareness (memberlist `awareness.go`).
//!
//! A node that misses acks may be the slow one — overloaded, paused, its own
//! network failing. Each failed probe round without the expected nacks raises a
//! score, each successful one lowers it, and a refutation (someone suspected us)
//! raises it; probe rounds are stretched by `score + 1` so an unhealthy node
//! accuses others less eagerly.

use std::time::Duration;

/// The awareness score, `0 ≤ score < max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awareness {
    max: u32,
    score: u32,
}

impl Awareness {
    /// A healthy score with ceiling `max` (memberlist `AwarenessMaxMultiplier`).
    pub fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            score: 0,
        }
    }

    /// The current score (0 is healthy).
    pub fn score(self) -> u32 {
        self.score
    }

    /// Apply a change, clamped to `[0, max - 1]`.
    pub fn apply_delta(&mut self, delta: i64) {
        let next = (i64::from(self.score) + delta).clamp(0, i64::from(self.max) - 1);
        self.score = next as u32;
    }

    /// `timeout × (score + 1)`.
    pub fn scale(self, timeout: Duration) -> Duration {
        timeout * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_and_scales() {
        let mut a = Awareness::new(8);
        a.apply_delta(-1);
        assert_eq!(a.score(), 0);
        a.apply_delta(3);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(4));
        a.apply_delta(100);
        assert_eq!(a.score(), 7);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(8));
    }
}
