//! The transmit-limited broadcast queue (memberlist `TransmitLimitedQueue`).
//!
//! Every state change is piggybacked on outgoing packets a bounded number of times
//! (`retransmit_mult × ceil(log10(n + 1))`), which is enough for epidemic spread
//! to reach every member with high probability. A newer message about the same
//! member replaces the queued one, so stale news is never sent. Messages that
//! have been sent least go first, larger before smaller (to fill packets), newer
//! before older.

use std::cmp::Reverse;

use crate::wire;

/// What a broadcast is about; a new one with the same key replaces the old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastKey {
    /// SWIM state of a member (alive/suspect/dead).
    Member(String),
    /// Serf join/leave intent for a member.
    Intent(String),
    /// Never replaced (user events).
    Unique,
}

#[derive(Debug, Clone)]
struct Item {
    key: BroadcastKey,
    msg: Vec<u8>,
    transmits: u32,
    id: u64,
    notify: bool,
    /// Sent to the ring successor ([`BroadcastQueue::take_relay`]).
    relayed: bool,
}

/// Queued broadcasts.
#[derive(Debug, Default)]
pub struct BroadcastQueue {
    items: Vec<Item>,
    next_id: u64,
    notify_done: bool,
    dropped: u64,
}

impl BroadcastQueue {
    /// Queue an encoded message. With `notify`, [`Self::take_notify_done`] turns
    /// true once it has been sent its full count or replaced.
    pub fn push(&mut self, key: BroadcastKey, msg: Vec<u8>, notify: bool, max_depth: usize) {
        if key != BroadcastKey::Unique {
            let mut replaced_notify = false;
            self.items.retain(|i| {
                let same = i.key == key;
                replaced_notify |= same && i.notify;
                !same
            });
            if replaced_notify {
                self.notify_done = true;
            }
        }
        self.next_id += 1;
        self.items.push(Item {
            key,
            msg,
            transmits: 0,
            id: self.next_id,
            notify,
            relayed: false,
        });
        if self.items.len() > max_depth.max(1) {
            // Shed the most-sent, then oldest, so fresh news survives a flood.
            self.items.sort_by_key(|i| (Reverse(i.transmits), i.id));
            let excess = self.items.len() - max_depth.max(1);
            for dropped in self.items.drain(..excess) {
                self.dropped += 1;
                if dropped.notify {
                    self.notify_done = true;
                }
            }
        }
    }

    /// Take broadcasts whose packed size fits in `budget` bytes, counting one
    /// transmission each and retiring those that reach `limit`.
    pub fn take(&mut self, budget: usize, limit: u32) -> Vec<Vec<u8>> {
        self.take_inner(budget, limit, false)
    }

    /// [`Self::take`] for the packet to the ring successor: also marks what it
    /// takes as relayed there.
    pub fn take_relay(&mut self, budget: usize, limit: u32) -> Vec<Vec<u8>> {
        self.take_inner(budget, limit, true)
    }

    fn take_inner(&mut self, budget: usize, limit: u32, relay: bool) -> Vec<Vec<u8>> {
        if self.items.is_empty() {
            return Vec::new();
        }
        self.items
            .sort_by_key(|i| (i.transmits, Reverse(i.msg.len()), Reverse(i.id)));
        let mut left = budget;
        let mut out = Vec::new();
        for item in &mut self.items {
            let need = wire::packed_len(&item.msg);
            if need > left {
                continue;
            }
            left -= need;
            item.transmits += 1;
            item.relayed |= relay;
            out.push(item.msg.clone());
        }
        let limit = limit.max(1);
        let mut done = false;
        self.items.retain(|i| {
            let keep = i.transmits < limit;
            done |= !keep && i.notify;
            keep
        });
        self.notify_done |= done;
        out
    }

    /// Whether some queued broadcast has not been sent to the ring successor yet.
    pub fn has_unrelayed(&self) -> bool {
        self.items.iter().any(|i| !i.relayed)
    }

    /// Queued broadcasts.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Broadcasts shed because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether a `notify` broadcast finished since the last call.
    pub fn take_notify_done(&mut self) -> bool {
        std::mem::take(&mut self.notify_done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> BroadcastKey {
        BroadcastKey::Member(s.into())
    }

    #[test]
    fn retransmit_limit_retires_messages() {
        let mut q = BroadcastQueue::default();
        q.push(key("a"), vec![1; 10], true, 100);
        for _ in 0..3 {
            assert_eq!(q.take(1000, 4).len(), 1);
            assert!(!q.take_notify_done());
        }
        assert_eq!(q.take(1000, 4).len(), 1);
        assert!(q.take_notify_done());
        assert!(q.is_empty());
        assert!(q.take(1000, 4).is_empty());
    }

    #[test]
    fn newer_news_replaces_older_and_least_sent_go_first() {
        let mut q = BroadcastQueue::default();
        q.push(key("a"), vec![1], false, 100);
        q.take(1000, 10);
        assert!(q.has_unrelayed(), "sent, but not to the ring successor");
        q.take_relay(1000, 10);
        assert!(!q.has_unrelayed());
        q.push(key("b"), vec![2], false, 100);
        assert!(q.has_unrelayed());
        q.push(BroadcastKey::Unique, vec![3], false, 100);
        q.push(BroadcastKey::Unique, vec![4], false, 100);
        // Room for exactly two one-byte messages (3 bytes each packed).
        let got = q.take(6, 10);
        assert_eq!(got, vec![vec![4], vec![3]], "unsent first, newest first");
        q.push(key("a"), vec![9], false, 100);
        assert_eq!(q.len(), 4);
        assert_eq!(q.take(3, 10), vec![vec![9]]);
    }

    #[test]
    fn budget_skips_what_does_not_fit_and_depth_is_bounded() {
        let mut q = BroadcastQueue::default();
        q.push(BroadcastKey::Unique, vec![0; 300], false, 100);
        q.push(BroadcastKey::Unique, vec![1; 10], false, 100);
        assert_eq!(q.take(100, 10), vec![vec![1; 10]]);
        for i in 0..10u8 {
            q.push(BroadcastKey::Unique, vec![i], false, 5);
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.dropped(), 7);
    }
}
