//! The core's periodic work: the probe round (the target: a suspect owed an
//! out-of-turn probe, else alternately the ring successor and the round-robin
//! order; direct ping, indirect pings after the probe timeout, suspicion at the
//! end of the round), relay nacks, suspicion expiry, gossip rounds (one target the
//! ring successor while it has news to relay), push/pull, reconnecting to failed
//! members and reaping.

use std::time::Instant;

use rand::seq::SliceRandom as _;
use rand::Rng as _;

use super::{Core, NodeState, Phase, Probe};
use crate::wire::{self, Dead, IndirectPing, Message, Nack, Ping, Suspect};

impl Core {
    pub(super) fn tick_probe(&mut self, now: Instant) {
        if self
            .probe
            .as_ref()
            .is_some_and(|p| !p.indirect_sent && now >= p.ack_deadline)
        {
            self.send_indirect();
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.deadline) {
            self.probe_failed(now);
        }
        if self.phase == Phase::Running && now >= self.next_probe {
            if self.probe.is_some() {
                self.probe_failed(now);
            }
            self.start_probe(now);
        }
    }

    /// Whom to probe this round: a suspect waiting for an out-of-turn probe if
    /// any, else, alternately, the ring successor and the next member of the
    /// shuffled round-robin order.
    fn next_probe_target(&mut self) -> Option<String> {
        while !self.urgent.is_empty() {
            let name = self.urgent.remove(0);
            if self
                .members
                .get(&name)
                .is_some_and(|m| m.state == NodeState::Suspect)
            {
                return Some(name);
            }
        }
        self.ring_turn = !self.ring_turn;
        if self.ring_turn {
            if let Some(next) = self.ring_successor() {
                return Some(next);
            }
        }
        self.next_round_robin_target()
    }

    /// The first alive member after us in the ring of all members ordered by a
    /// hash of their names ([`ring_position`]). Suspects are skipped: they get
    /// out-of-turn probes anyway, and skipping them hands the suspect's own
    /// successor to its predecessor at once, so two neighbours crashing together
    /// do not leave the second one without a ring prober until the first is
    /// declared dead.
    ///
    /// Why: with random round-robin alone, each of the other members probes a
    /// given one once per pass at an independent phase, so the time until a
    /// crashed member is first probed by anyone is close to exponential — mean
    /// one probe interval, but about one crash in a hundred waits 4–5 intervals
    /// (memberlist has the same tail). Every member also probing its successor
    /// every other round means each member has one prober on a fixed 2-interval
    /// beat, so that wait is bounded while views agree; the round-robin rounds
    /// keep SWIM's randomised coverage for when they do not (a member not yet
    /// known to its predecessor, a predecessor that crashed or is slow too: then
    /// it is memberlist's behaviour at half the rate). Hashing, rather than
    /// sorting by name, keeps neighbours on the ring uncorrelated with naming
    /// schemes that follow racks or hosts.
    pub(super) fn ring_successor(&self) -> Option<String> {
        let me = ring_position(&self.name);
        self.members
            .values()
            .filter(|m| m.name != self.name && m.state == NodeState::Alive)
            .min_by_key(|m| (ring_position(&m.name).wrapping_sub(me), &m.name))
            .map(|m| m.name.clone())
    }

    /// Next member in the shuffled round-robin order that is worth probing.
    fn next_round_robin_target(&mut self) -> Option<String> {
        let mut looked = 0;
        let mut reset = false;
        loop {
            if self.probe_index >= self.probe_order.len() {
                if reset {
                    return None;
                }
                // A full pass is done: reshuffle, dropping forgotten members, so
                // every member is probed once per pass in a fresh order.
                reset = true;
                let mut order: Vec<String> = self
                    .members
                    .keys()
                    .filter(|n| **n != self.name)
                    .cloned()
                    .collect();
                order.shuffle(&mut self.rng);
                self.probe_order = order;
                self.probe_index = 0;
                continue;
            }
            let name = self.probe_order[self.probe_index].clone();
            self.probe_index += 1;
            looked += 1;
            if self.members.get(&name).is_some_and(|m| m.is_up()) {
                return Some(name);
            }
            if looked > 2 * self.members.len() + 2 {
                return None;
            }
        }
    }

    fn start_probe(&mut self, now: Instant) {
        // Lifeguard: an unhealthy node stretches its probe rounds, giving its
        // own late acks and the indirect probes more time before it accuses.
        let round = self.awareness.scale(self.cfg.probe_interval);
        self.next_probe = now + round;
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let seq = self.next_seq();
        let m = &self.members[&target];
        let addr = m.addr;
        let mut msgs = vec![Message::Ping(Ping {
            seq,
            node: target.clone(),
        })];
        if m.state == NodeState::Suspect {
            // Tell the suspect directly, so it can refute even if gossip about it
            // has not reached it.
            msgs.push(Message::Suspect(Suspect {
                incarnation: m.incarnation,
                node: target.clone(),
                from: self.name.clone(),
            }));
        }
        self.send(addr, &msgs);
        self.probe = Some(Probe {
            target,
            seq,
            sent: now,
            ack_deadline: now + self.cfg.probe_timeout,
            deadline: now + round,
            indirect_sent: false,
            expected_nacks: 0,
            nacks: 0,
        });
    }

    fn send_indirect(&mut self) {
        let Some(p) = self.probe.as_ref() else {
            return;
        };
        let (target, seq) = (p.target.clone(), p.seq);
        let Some(addr) = self.members.get(&target).map(|m| m.addr) else {
            self.probe = None;
            return;
        };
        let relays = self.random_members(self.cfg.indirect_checks, &target, |m| {
            m.state == NodeState::Alive
        });
        for (_, relay) in &relays {
            let req = IndirectPing {
                seq,
                node: target.clone(),
                addr,
                nack: true,
            };
            self.send(*relay, &[Message::IndirectPing(req)]);
        }
        if let Some(p) = self.probe.as_mut() {
            p.indirect_sent = true;
            p.expected_nacks = relays.len() as u32;
        }
    }

    fn probe_failed(&mut self, now: Instant) {
        let Some(p) = self.probe.take() else {
            return;
        };
        // Lifeguard: relays that answered with a nack show our network works, so
        // only missing nacks count against us; with no relays, any failed probe
        // does.
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks)
        } else {
            1
        };
        self.awareness.apply_delta(i64::from(delta));
        let Some(m) = self.members.get(&p.target).filter(|m| m.is_up()) else {
            return;
        };
        tracing::debug!(node = %p.target, "gossip: probe failed, suspecting");
        self.stats.suspicions_raised += 1;
        let s = Suspect {
            incarnation: m.incarnation,
            node: p.target.clone(),
            from: self.name.clone(),
        };
        self.handle_suspect(s, None, now);
    }

    pub(super) fn tick_relays(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            if let Some(r) = self.relays.remove(&seq) {
                if r.nack {
                    self.send(r.requester, &[Message::Nack(Nack { seq: r.seq })]);
                }
            }
        }
    }

    pub(super) fn tick_suspicions(&mut self, now: Instant) {
        let due: Vec<(String, u32)> = self
            .members
            .values()
            .filter(|m| m.suspicion_deadline().is_some_and(|d| d <= now))
            .map(|m| (m.name.clone(), m.incarnation))
            .collect();
        for (node, incarnation) in due {
            let d = Dead {
                incarnation,
                node,
                from: self.name.clone(),
            };
            self.handle_dead(d, None, now);
        }
    }

    pub(super) fn gossip(&mut self, now: Instant) {
        if self.broadcasts.is_empty() {
            return;
        }
        let to_the_dead = self.cfg.gossip_to_the_dead;
        // News we have not passed to our ring successor yet goes there as one of
        // the round's targets (the others random, as in memberlist). Random fan-out
        // alone misses a member now and then (about 1 broadcast in 100 at 64 and
        // 128 members in `cargo xtask bench gossip`, each member relaying it 8 or
        // 12 times): it then waits for a push/pull, tens of seconds. With every member that gets a broadcast
        // handing it to its successor within a gossip interval, a member the
        // epidemic missed gets it one interval after its ring predecessor did.
        // No extra packets: the successor takes one random target's place.
        let mut targets = Vec::with_capacity(self.cfg.gossip_nodes);
        let mut successor = String::new();
        if self.cfg.gossip_nodes > 0 && self.broadcasts.has_unrelayed() {
            if let Some(next) = self.ring_successor() {
                targets.push((next.clone(), self.members[&next].addr));
                successor = next;
            }
        }
        let wanted = self.cfg.gossip_nodes.saturating_sub(targets.len());
        targets.extend(self.random_members(wanted, &successor, |m| {
            m.is_up() || now.duration_since(m.state_change) < to_the_dead
        }));
        for (name, addr) in targets {
            let limit = self.retransmit_limit();
            let budget = self.packet_budget();
            let msgs = if name == successor {
                self.broadcasts.take_relay(budget, limit)
            } else {
                self.broadcasts.take(budget, limit)
            };
            self.after_broadcasts_taken(now);
            if msgs.is_empty() {
                break;
            }
            let packet = wire::encode_packet(msgs.iter().map(Vec::as_slice));
            self.out.push(super::Effect::Send { to: addr, packet });
        }
    }

    pub(super) fn periodic_push_pull(&mut self) {
        let peer = self.random_members(1, "", |m| m.state == NodeState::Alive);
        if let Some((_, addr)) = peer.into_iter().next() {
            self.push_pull_to(addr, false);
        }
    }

    /// Serf's reconnect: now and then, try a full exchange with one failed member,
    /// more eagerly the larger the failed share. After a partition this is what
    /// brings the halves back together.
    pub(super) fn reconnect(&mut self) {
        let failed: Vec<_> = self
            .members
            .values()
            .filter(|m| m.state == NodeState::Dead)
            .map(|m| m.addr)
            .collect();
        if failed.is_empty() {
            return;
        }
        let left = self
            .members
            .values()
            .filter(|m| m.state == NodeState::Left)
            .count();
        let alive = (self.members.len() - failed.len() - left).max(1);
        let prob = failed.len() as f64 / alive as f64;
        if self.rng.gen::<f64>() > prob {
            return;
        }
        if let Some(&addr) = failed.choose(&mut self.rng) {
            self.push_pull_to(addr, false);
        }
    }

    pub(super) fn reap(&mut self, now: Instant) {
        let (failed_ttl, left_ttl) = (self.cfg.reconnect_timeout, self.cfg.tombstone_timeout);
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.name != self.name)
            .filter(|m| match m.state {
                NodeState::Dead => now.duration_since(m.state_change) > failed_ttl,
                NodeState::Left => now.duration_since(m.state_change) > left_ttl,
                _ => false,
            })
            .map(|m| m.name.clone())
            .collect();
        for name in due {
            tracing::info!(node = %name, "gossip: reaping member");
            self.remove_member(&name);
        }
    }
}

/// A member's place on the probe ring: 64-bit FNV-1a of its name. Fixed (not
/// `std`'s randomly keyed hasher) so every member, whatever its build, computes
/// the same ring; a disagreement would only cost detection speed, not safety.
pub(super) fn ring_position(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
