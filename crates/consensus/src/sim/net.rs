//! The simulated network: a [`Transport`] that only queues, and the set of
//! messages in flight between servers, which the scheduler delivers late, out
//! of order, twice or never, and cuts along partitions.
//!
//! Nothing here draws randomness itself except through the RNG it is handed, so
//! the scheduler's seed decides every delivery.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::Rng;

use crate::transport::Transport;

/// A message a server handed to its transport, not yet given a delivery time.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) bytes: Vec<u8>,
    /// Sent with `send_snapshot`: its fate must be reported back to the sender.
    pub(super) snapshot: bool,
}

/// Where every server's transport puts what it sends. `Transport` must be
/// `Send`, hence the mutex, although only the test thread ever touches it.
pub(super) type Outbox = Arc<Mutex<Vec<Outgoing>>>;

/// One server's transport.
pub(super) struct SimTransport {
    pub(super) from: u64,
    pub(super) outbox: Outbox,
}

impl SimTransport {
    fn push(&self, to: u64, bytes: Vec<u8>, snapshot: bool) {
        self.outbox.lock().expect("outbox lock").push(Outgoing {
            from: self.from,
            to,
            bytes,
            snapshot,
        });
    }
}

impl Transport for SimTransport {
    fn send(&mut self, to: u64, msg_bytes: Vec<u8>) {
        self.push(to, msg_bytes, false);
    }

    fn send_snapshot(&mut self, to: u64, msg_bytes: Vec<u8>) {
        self.push(to, msg_bytes, true);
    }
}

/// A message on the wire, deliverable from `deliver_at` (virtual time).
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) msg: Outgoing,
    pub(super) deliver_at: u64,
}

/// Messages in flight and the current partition.
pub(super) struct Network {
    in_flight: Vec<InFlight>,
    /// Partition side of each server (index = id - 1): messages only pass
    /// between servers on the same side.
    side: Vec<u8>,
}

impl Network {
    pub(super) fn new(servers: usize) -> Self {
        Network {
            in_flight: Vec::new(),
            side: vec![0; servers],
        }
    }

    pub(super) fn connected(&self, a: u64, b: u64) -> bool {
        self.side[index(a)] == self.side[index(b)]
    }

    pub(super) fn is_partitioned(&self) -> bool {
        self.side.iter().any(|s| *s != self.side[0])
    }

    pub(super) fn heal(&mut self) {
        self.side.fill(0);
    }

    /// Cut `id` off from everyone else.
    pub(super) fn isolate(&mut self, id: u64) {
        self.heal();
        self.side[index(id)] = 1;
    }

    /// Split the servers into the two non-empty groups `first` and the rest.
    pub(super) fn split(&mut self, first: &[u64]) {
        self.heal();
        for id in first {
            self.side[index(*id)] = 1;
        }
    }

    /// Current side of every server (for traces).
    pub(super) fn sides(&self) -> &[u8] {
        &self.side
    }

    pub(super) fn push(&mut self, msg: Outgoing, deliver_at: u64) {
        self.in_flight.push(InFlight { msg, deliver_at });
    }

    pub(super) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Remove and return a random message that may be delivered at `now`.
    pub(super) fn take_deliverable(&mut self, now: u64, rng: &mut StdRng) -> Option<InFlight> {
        let ready: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| self.in_flight[i].deliver_at <= now)
            .collect();
        if ready.is_empty() {
            return None;
        }
        let pick = ready[rng.gen_range(0..ready.len())];
        Some(self.in_flight.swap_remove(pick))
    }

    /// Remove and return a random message, deliverable or not (to lose it).
    pub(super) fn take_any(&mut self, rng: &mut StdRng) -> Option<InFlight> {
        if self.in_flight.is_empty() {
            return None;
        }
        let pick = rng.gen_range(0..self.in_flight.len());
        Some(self.in_flight.swap_remove(pick))
    }

    /// Send a random message a second time, deliverable from `deliver_at`.
    pub(super) fn duplicate_any(&mut self, deliver_at: u64, rng: &mut StdRng) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let pick = rng.gen_range(0..self.in_flight.len());
        let msg = self.in_flight[pick].msg.clone();
        self.push(msg, deliver_at);
        true
    }
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("server id fits usize")
}
