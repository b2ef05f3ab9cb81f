//! The leader's session TTL tracker, sans-io: the caller passes the time in and asks
//! which sessions have expired; nothing here reads a clock or sleeps.
//!
//! As in Consul, a session expires after `TTL × 2` without a renewal (the grace lets a
//! client renew at TTL/2 and still survive one lost renewal), and timers are leader
//! state: a new leader re-arms every TTL session with a full `TTL × 2` from the moment it
//! takes over, so a leader change can only lengthen a session's life, never end it early.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tribune_types::SessionId;

/// Consul's `SessionTTLMultiplier`.
pub const TTL_MULTIPLIER: u32 = 2;

/// Deadlines of TTL sessions, soonest first.
#[derive(Debug, Default)]
pub struct SessionTimers {
    by_id: HashMap<SessionId, Instant>,
    queue: BTreeSet<(Instant, SessionId)>,
}

impl SessionTimers {
    /// No timers.
    pub fn new() -> Self {
        Self::default()
    }

    /// (Re)starts a session's timer: it expires `ttl × 2` after `now`.
    pub fn reset(&mut self, id: SessionId, ttl: Duration, now: Instant) {
        self.set_deadline(id, now + ttl * TTL_MULTIPLIER);
    }

    /// Sets an exact deadline (used to retry a destroy that could not be proposed).
    pub fn set_deadline(&mut self, id: SessionId, deadline: Instant) {
        if let Some(old) = self.by_id.insert(id, deadline) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((deadline, id));
    }

    /// Forgets a session (destroyed, or invalidated some other way).
    pub fn remove(&mut self, id: SessionId) {
        if let Some(old) = self.by_id.remove(&id) {
            self.queue.remove(&(old, id));
        }
    }

    /// Forgets everything (leadership lost).
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.queue.clear();
    }

    /// The soonest deadline, to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(d, _)| *d)
    }

    /// Removes and returns the sessions whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<SessionId> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.queue.first() {
            if deadline > now {
                break;
            }
            self.queue.remove(&(deadline, id));
            self.by_id.remove(&id);
            out.push(id);
        }
        out
    }

    /// Whether a session has a timer.
    pub fn contains(&self, id: SessionId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn expires_after_twice_the_ttl_and_renewal_pushes_it_back() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut timers = SessionTimers::new();
        timers.reset(id(1), Duration::from_secs(10), t0);
        timers.reset(id(2), Duration::from_secs(15), t0);
        assert_eq!(timers.next_deadline(), Some(s(20)));
        assert!(timers.take_expired(s(19)).is_empty());
        // Renewed at 15 s: now due at 35 s.
        timers.reset(id(1), Duration::from_secs(10), s(15));
        assert_eq!(timers.take_expired(s(30)), vec![id(2)]);
        assert_eq!(timers.next_deadline(), Some(s(35)));
        assert_eq!(timers.take_expired(s(35)), vec![id(1)]);
        assert!(timers.is_empty());
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn removal_and_clear_forget_timers() {
        let t0 = Instant::now();
        let mut timers = SessionTimers::new();
        for n in 0..5 {
            timers.reset(id(n), Duration::from_secs(10 + n as u64), t0);
        }
        timers.remove(id(0));
        timers.remove(id(42));
        assert_eq!(timers.len(), 4);
        assert!(!timers.contains(id(0)));
        let due = timers.take_expired(t0 + Duration::from_secs(100));
        assert_eq!(due, vec![id(1), id(2), id(3), id(4)]);
        timers.reset(id(7), Duration::from_secs(10), t0);
        timers.clear();
        assert!(timers
            .take_expired(t0 + Duration::from_secs(100))
            .is_empty());
    }

    #[test]
    fn equal_deadlines_are_all_returned() {
        let t0 = Instant::now();
        let mut timers = SessionTimers::new();
        timers.reset(id(2), Duration::from_secs(10), t0);
        timers.reset(id(1), Duration::from_secs(10), t0);
        timers.set_deadline(id(3), t0 + Duration::from_secs(20));
        let mut due = timers.take_expired(t0 + Duration::from_secs(20));
        due.sort();
        assert_eq!(due, vec![id(1), id(2), id(3)]);
    }
}
