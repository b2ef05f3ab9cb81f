//! User event bookkeeping (Serf `handleUserEvent` and its coalescer).
//!
//! Events are deduplicated by `(ltime, name, payload)` in a ring indexed by Lamport
//! time: an event older than the ring (`ltime < clock − size`) or older than the
//! join horizon is dropped, since it can no longer be told apart from one already
//! delivered. Events fired with `coalesce` may be held for a period so that only
//! the newest per name is delivered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::wire::UserEventMsg;

/// A delivered user event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    /// Lamport time it was fired at.
    pub ltime: u64,
    /// Name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Whether it was fired as coalescable.
    pub coalesce: bool,
}

impl From<UserEventMsg> for UserEvent {
    fn from(m: UserEventMsg) -> Self {
        Self {
            ltime: m.ltime,
            name: m.name,
            payload: m.payload,
            coalesce: m.coalesce,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    ltime: u64,
    events: Vec<(String, Vec<u8>)>,
}

/// Recent events by Lamport time.
#[derive(Debug)]
pub struct EventBuffer {
    slots: Vec<Option<Slot>>,
    /// Events below this time are ignored (set when joining with "ignore old").
    pub min_time: u64,
}

/// Why an event was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Already seen.
    Duplicate,
    /// Older than the ring or the join horizon.
    TooOld,
}

impl EventBuffer {
    /// A ring of `size` Lamport slots.
    pub fn new(size: usize) -> Self {
        Self {
            slots: vec![None; size.max(1)],
            min_time: 0,
        }
    }

    /// Record `msg` given the (already witnessed) clock time; `Ok` if it is new.
    pub fn record(&mut self, msg: &UserEventMsg, clock: u64) -> Result<(), Rejected> {
        let size = self.slots.len() as u64;
        if msg.ltime < self.min_time || (clock > size && msg.ltime < clock - size) {
            return Err(Rejected::TooOld);
        }
        let idx = (msg.ltime % size) as usize;
        match &mut self.slots[idx] {
            Some(slot) if slot.ltime == msg.ltime => {
                if slot
                    .events
                    .iter()
                    .any(|(n, p)| *n == msg.name && *p == msg.payload)
                {
                    return Err(Rejected::Duplicate);
                }
                slot.events.push((msg.name.clone(), msg.payload.clone()));
            }
            other => {
                *other = Some(Slot {
                    ltime: msg.ltime,
                    events: vec![(msg.name.clone(), msg.payload.clone())],
                })
            }
        }
        Ok(())
    }

    /// Everything remembered, for a push/pull exchange.
    pub fn recent(&self) -> Vec<UserEventMsg> {
        let mut out: Vec<UserEventMsg> = self
            .slots
            .iter()
            .flatten()
            .flat_map(|s| {
                s.events.iter().map(|(name, payload)| UserEventMsg {
                    ltime: s.ltime,
                    name: name.clone(),
                    payload: payload.clone(),
                    coalesce: false,
                })
            })
            .collect();
        out.sort_by_key(|e| e.ltime);
        out
    }
}

/// Holds coalescable events until their period or quiet time passes.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BTreeMap<String, UserEvent>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Coalescer {
    /// Hold `ev`, keeping only the newest per name.
    pub fn add(&mut self, ev: UserEvent, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        match self.pending.get(&ev.name) {
            Some(held) if held.ltime > ev.ltime => {}
            _ => {
                self.pending.insert(ev.name.clone(), ev);
            }
        }
    }

    /// When the held events are due, if any are held.
    pub fn deadline(&self, period: Duration, quiescent: Duration) -> Option<Instant> {
        let first = self.first? + period;
        match (quiescent.is_zero(), self.last) {
            (false, Some(last)) => Some(first.min(last + quiescent)),
            _ => Some(first),
        }
    }

    /// Release the held events if due.
    pub fn flush(&mut self, now: Instant, period: Duration, quiescent: Duration) -> Vec<UserEvent> {
        match self.deadline(period, quiescent) {
            Some(at) if at <= now => {
                self.first = None;
                self.last = None;
                let mut out: Vec<UserEvent> =
                    std::mem::take(&mut self.pending).into_values().collect();
                out.sort_by_key(|e| e.ltime);
                out
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ltime: u64, name: &str, payload: &[u8]) -> UserEventMsg {
        UserEventMsg {
            ltime,
            name: name.into(),
            payload: payload.to_vec(),
            coalesce: false,
        }
    }

    #[test]
    fn dedup_by_ltime_name_payload() {
        let mut b = EventBuffer::new(4);
        assert_eq!(b.record(&ev(1, "a", b"x"), 2), Ok(()));
        assert_eq!(b.record(&ev(1, "a", b"x"), 2), Err(Rejected::Duplicate));
        assert_eq!(b.record(&ev(1, "a", b"y"), 2), Ok(()), "other payload");
        assert_eq!(b.record(&ev(1, "b", b"x"), 2), Ok(()), "other name");
        assert_eq!(b.record(&ev(2, "a", b"x"), 3), Ok(()), "other time");
        // Slot 5 % 4 == 1 overwrites ltime 1; ltime 1 is now too old to tell.
        assert_eq!(b.record(&ev(5, "a", b"x"), 6), Ok(()));
        assert_eq!(b.record(&ev(1, "a", b"x"), 6), Err(Rejected::TooOld));
        b.min_time = 6;
        assert_eq!(b.record(&ev(5, "z", b""), 6), Err(Rejected::TooOld));
        assert_eq!(b.recent().len(), 2);
    }

    #[test]
    fn coalescer_keeps_newest_per_name() {
        let t0 = Instant::now();
        let (period, quiet) = (Duration::from_secs(10), Duration::from_secs(2));
        let mut c = Coalescer::default();
        let mk = |l, n: &str| UserEvent {
            ltime: l,
            name: n.into(),
            payload: vec![],
            coalesce: true,
        };
        c.add(mk(3, "deploy"), t0);
        c.add(mk(2, "deploy"), t0 + Duration::from_secs(1));
        c.add(mk(1, "other"), t0 + Duration::from_secs(1));
        assert_eq!(c.deadline(period, quiet), Some(t0 + Duration::from_secs(3)));
        assert!(c
            .flush(t0 + Duration::from_secs(2), period, quiet)
            .is_empty());
        let out = c.flush(t0 + Duration::from_secs(3), period, quiet);
        assert_eq!(
            out.iter()
                .map(|e| (e.ltime, e.name.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "other"), (3, "deploy")]
        );
        assert_eq!(c.deadline(period, quiet), None);
    }
}
