//! How the core reacts to each message: probes and acks, the alive/suspect/dead
//! rules of SWIM with incarnations and refutation, Serf's intents, user events and
//! push/pull merging.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng as _;

use super::{
    BroadcastKey, Core, Effect, Event, MemberEventKind, MemberState, NodeState, Phase, Relay,
    Suspicion, SuspicionBounds,
};
use crate::config;
use crate::core::user_events::UserEvent;
use crate::wire::{
    Ack, Alive, Dead, IndirectPing, JoinIntent, LeaveIntent, Message, Nack, Ping, PushPull,
    Suspect, UserEventMsg, WireState,
};
use tribune_types::model::coordinate::Coordinate;

impl Core {
    pub(super) fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Instant) {
        match msg {
            Message::Ping(p) => self.handle_ping(from, p),
            Message::IndirectPing(p) => self.handle_indirect_ping(from, p, now),
            Message::Ack(a) => self.handle_ack(a, now),
            Message::Nack(n) => self.handle_nack(n),
            Message::Alive(a) => self.handle_alive(a, now),
            Message::Suspect(s) => self.handle_suspect(s, Some(from), now),
            Message::Dead(d) => self.handle_dead(d, Some(from), now),
            Message::UserEvent(e) => {
                self.handle_user_event(e, now);
            }
            Message::JoinIntent(j) => self.handle_join_intent(j),
            Message::LeaveIntent(l) => self.handle_leave_intent(l, now),
        }
    }

    fn handle_ping(&mut self, from: SocketAddr, ping: Ping) {
        if ping.node != self.name {
            tracing::debug!(%from, node = %ping.node, "gossip: ping for another node");
            return;
        }
        let coord = self.coordinate().cloned();
        self.send(
            from,
            &[Message::Ack(Ack {
                seq: ping.seq,
                coord,
            })],
        );
    }

    fn handle_indirect_ping(&mut self, from: SocketAddr, req: IndirectPing, now: Instant) {
        let seq = self.next_seq();
        self.relays.insert(
            seq,
            Relay {
                requester: from,
                seq: req.seq,
                // The requester asked after its own probe timeout and ends its
                // round one probe timeout later; give up at 4/5 of that so the
                // nack lands inside its round. (memberlist waits the full probe
                // timeout, so its nacks tend to arrive just too late to count.)
                deadline: now + self.cfg.probe_timeout * 4 / 5,
                nack: req.nack,
            },
        );
        self.send(
            req.addr,
            &[Message::Ping(Ping {
                seq,
                node: req.node,
            })],
        );
    }

    fn handle_ack(&mut self, ack: Ack, now: Instant) {
        if let Some(relay) = self.relays.remove(&ack.seq) {
            let relayed = Ack {
                seq: relay.seq,
                coord: None,
            };
            self.send(relay.requester, &[Message::Ack(relayed)]);
            return;
        }
        if let Some(probe) = self.probe.take_if(|p| p.seq == ack.seq) {
            // A probe answered is evidence we are healthy ourselves.
            self.awareness.apply_delta(-1);
            if let Some(coord) = ack.coord.filter(|_| self.cfg.coordinates) {
                self.observe_rtt(
                    &probe.target,
                    coord,
                    now.saturating_duration_since(probe.sent),
                );
            }
        }
    }

    /// Serf's `NotifyPingComplete`: a direct round trip moves our coordinate, and
    /// the peer's is cached. A sample the model rejects (an implausible round
    /// trip, a coordinate from another space) changes nothing.
    fn observe_rtt(&mut self, peer: &str, coord: Coordinate, rtt: Duration) {
        match self.vivaldi.observe(peer, &coord, rtt, &mut self.rng) {
            Ok(_) => {
                self.peer_coords.insert(peer.to_owned(), coord);
                self.coord_changes += 1;
            }
            Err(e) => tracing::debug!(peer, error = %e, "gossip: coordinate sample rejected"),
        }
    }

    fn handle_nack(&mut self, nack: Nack) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == nack.seq) {
            p.nacks += 1;
        }
    }

    /// Raise our incarnation above `accused` and announce it.
    fn refute(&mut self, accused: u32) {
        let name = self.name.clone();
        if let Some(me) = self.members.get_mut(&name) {
            me.incarnation = me.incarnation.max(accused) + 1;
        }
        // Being suspected is a hint that we are the slow one (Lifeguard).
        self.awareness.apply_delta(1);
        self.stats.refutations += 1;
        self.broadcast_local_alive();
        self.changed();
    }

    /// Tell our accuser, and the member that relayed the accusation, who we are
    /// now, directly. Gossip alone can miss the one member whose timer matters:
    /// everyone else ignores a stale accusation, so nobody would repeat our
    /// refutation to it, and it would declare us dead on its own. This matters most
    /// during a partition, when half of all gossip goes nowhere.
    fn answer_accuser(&mut self, accuser: &str, src: Option<SocketAddr>) {
        if self.phase != Phase::Running {
            return;
        }
        let accuser = self
            .members
            .get(accuser)
            .filter(|m| m.name != self.name)
            .map(|m| m.addr);
        let me = self.local();
        let alive = Message::Alive(Alive {
            incarnation: me.incarnation,
            node: me.name.clone(),
            addr: me.addr,
            tags: me.tags.clone(),
        });
        let mut targets = vec![];
        for to in [accuser, src].into_iter().flatten() {
            if !targets.contains(&to) {
                targets.push(to);
            }
        }
        for to in targets {
            self.send(to, std::slice::from_ref(&alive));
        }
    }

    pub(super) fn broadcast_local_alive(&mut self) {
        let me = self.local();
        let msg = Message::Alive(Alive {
            incarnation: me.incarnation,
            node: me.name.clone(),
            addr: me.addr,
            tags: me.tags.clone(),
        });
        self.queue(BroadcastKey::Member(self.name.clone()), &msg, false);
    }

    pub(super) fn handle_alive(&mut self, a: Alive, now: Instant) {
        if a.node == self.name {
            let me = self.local();
            let stale_echo = a.incarnation < me.incarnation
                || (a.incarnation == me.incarnation && a.addr == me.addr && a.tags == me.tags);
            // Someone believes in a newer (or different) us: a previous life of this
            // node, or a name clash. Out-bid it.
            if !stale_echo && self.phase == Phase::Running {
                self.refute(a.incarnation);
            }
            return;
        }
        let is_new = !self.members.contains_key(&a.node);
        if is_new {
            self.members.insert(
                a.node.clone(),
                MemberState {
                    name: a.node.clone(),
                    addr: a.addr,
                    tags: a.tags.clone(),
                    incarnation: 0,
                    state: NodeState::Dead,
                    state_change: now,
                    leaving: false,
                    status_ltime: 0,
                    suspicion: None,
                },
            );
            // Random position: if every node appended, a new member would be probed
            // last by everyone and failure detection would be slow for it.
            let at = self.rng.gen_range(0..=self.probe_order.len());
            self.probe_order.insert(at, a.node.clone());
        }
        let reclaim = self.cfg.dead_node_reclaim_time;
        let Some(m) = self.members.get_mut(&a.node) else {
            return;
        };
        if m.addr != a.addr {
            let may_move = is_new
                || m.state == NodeState::Left
                || (m.state == NodeState::Dead && now.duration_since(m.state_change) > reclaim);
            if !may_move {
                tracing::warn!(
                    node = %a.node, known = %m.addr, claimed = %a.addr,
                    "gossip: conflicting address for member"
                );
                return;
            }
        }
        if !is_new && a.incarnation <= m.incarnation {
            return;
        }
        let was_up = m.is_up();
        let changed_meta = m.tags != a.tags || m.addr != a.addr;
        m.incarnation = a.incarnation;
        m.addr = a.addr;
        m.tags = a.tags.clone();
        m.suspicion = None;
        if m.state != NodeState::Alive {
            m.state = NodeState::Alive;
            m.state_change = now;
        }
        if !was_up {
            m.leaving = false;
        }
        let node = a.node.clone();
        self.queue(
            BroadcastKey::Member(node.clone()),
            &Message::Alive(a),
            false,
        );
        if !was_up {
            self.emit_member(MemberEventKind::Join, &node);
        } else if changed_meta {
            self.emit_member(MemberEventKind::Update, &node);
        } else {
            self.changed();
        }
    }

    /// `src` is the datagram's sender, when the suspicion came in one.
    pub(super) fn handle_suspect(&mut self, s: Suspect, src: Option<SocketAddr>, now: Instant) {
        let n = self.num_alive();
        let Some(m) = self.members.get_mut(&s.node) else {
            return;
        };
        if s.incarnation < m.incarnation {
            if s.node == self.name {
                self.answer_accuser(&s.from, src);
            }
            return;
        }
        match m.state {
            NodeState::Dead | NodeState::Left => return,
            NodeState::Suspect => {
                // Another member agrees: Lifeguard shortens the timer, and the news
                // is worth passing on once per confirmer.
                if let Some(sus) = m.suspicion.as_mut() {
                    if sus.confirm(&s.from) {
                        let node = s.node.clone();
                        self.queue(BroadcastKey::Member(node), &Message::Suspect(s), false);
                    }
                }
                return;
            }
            NodeState::Alive => {}
        }
        if s.node == self.name {
            if self.phase == Phase::Running {
                self.refute(s.incarnation);
                self.answer_accuser(&s.from, src);
            }
            return;
        }
        m.incarnation = s.incarnation;
        m.state = NodeState::Suspect;
        m.state_change = now;
        // k confirmations wanted so the timeout reaches its minimum two probe
        // rounds before the nominal one; none expected in tiny clusters (n counts
        // us and the suspect). Past k, more of them take it on down to the floor.
        let k = config::suspicion_confirmations(self.cfg.suspicion_mult, n);
        let k_floor = config::suspicion_floor_confirmations(k, n);
        let min = config::suspicion_timeout(self.cfg.suspicion_mult, n, self.cfg.probe_interval);
        let bounds = SuspicionBounds {
            k,
            k_floor,
            min,
            max: min * self.cfg.suspicion_max_timeout_mult,
            floor: config::suspicion_floor(min, self.cfg.probe_interval),
        };
        m.suspicion = Some(Suspicion::new(&s.from, bounds, now));
        let node = s.node.clone();
        // Some members probe a new suspect next rather than whenever their turn
        // comes: the ping carries the suspicion to the member itself, which then
        // refutes (or corrects a stale incarnation), and if it is really down each
        // failed probe is one more independent confirmation. Only about
        // `suspicion_reprobers` of them, chosen at random by each member for
        // itself: everyone doing it sends O(n) probes, each with three indirect
        // ones, at a member that may just be slow (at 128 members that overflowed
        // a paused member's receive buffer). Our own accusation needs no re-probe.
        if s.from != self.name {
            let wanted = config::suspicion_reprobers(k_floor, self.cfg.indirect_checks);
            let others = n.saturating_sub(2).max(1) as f64;
            if self.rng.gen::<f64>() < f64::from(wanted) / others {
                self.urgent.retain(|u| *u != node);
                self.urgent.push(node.clone());
            }
        }
        tracing::info!(node = %node, incarnation = s.incarnation, "gossip: member suspect");
        self.queue(BroadcastKey::Member(node), &Message::Suspect(s), false);
        self.changed();
    }

    /// `src` is the datagram's sender, when the verdict came in one.
    pub(super) fn handle_dead(&mut self, d: Dead, src: Option<SocketAddr>, now: Instant) {
        let left = d.from == d.node;
        let Some(m) = self.members.get_mut(&d.node) else {
            return;
        };
        if d.incarnation < m.incarnation {
            if d.node == self.name && !left {
                self.answer_accuser(&d.from, src);
            }
            return;
        }
        match m.state {
            NodeState::Left => return,
            // A graceful leave that arrives after we declared the member dead still
            // turns it into "left": left members are deregistered, failed ones are
            // not (Serf does this with the leave intent).
            NodeState::Dead if !left => return,
            _ => {}
        }
        if d.node == self.name {
            if self.phase == Phase::Running {
                self.refute(d.incarnation);
                self.answer_accuser(&d.from, src);
            }
            return;
        }
        m.incarnation = d.incarnation;
        m.state = if left {
            NodeState::Left
        } else {
            NodeState::Dead
        };
        m.state_change = now;
        m.suspicion = None;
        m.leaving = false;
        let node = d.node.clone();
        tracing::info!(node = %node, left, "gossip: member {}", if left { "left" } else { "failed" });
        self.queue(BroadcastKey::Member(node.clone()), &Message::Dead(d), false);
        let kind = if left {
            MemberEventKind::Leave
        } else {
            MemberEventKind::Failed
        };
        self.emit_member(kind, &node);
    }

    /// Record, re-gossip and deliver a user event if it is new; `true` if it was.
    pub(super) fn handle_user_event(&mut self, msg: UserEventMsg, now: Instant) -> bool {
        self.event_clock.witness(msg.ltime);
        if let Err(why) = self.events.record(&msg, self.event_clock.time()) {
            tracing::trace!(name = %msg.name, ltime = msg.ltime, ?why, "gossip: user event ignored");
            return false;
        }
        self.queue(
            BroadcastKey::Unique,
            &Message::UserEvent(msg.clone()),
            false,
        );
        let ev = UserEvent::from(msg);
        if ev.coalesce && !self.cfg.user_coalesce_period.is_zero() {
            self.coalescer.add(ev, now);
        } else {
            self.out.push(Effect::Event(Event::User(ev)));
        }
        true
    }

    /// Announce that we are (still) a member, ordered after any older leave intent.
    pub(super) fn local_join_intent(&mut self) {
        let ltime = self.member_clock.increment();
        let name = self.name.clone();
        if let Some(me) = self.members.get_mut(&name) {
            me.status_ltime = ltime;
        }
        self.queue(
            BroadcastKey::Intent(name.clone()),
            &Message::JoinIntent(JoinIntent { ltime, node: name }),
            false,
        );
    }

    fn handle_join_intent(&mut self, j: JoinIntent) {
        self.member_clock.witness(j.ltime);
        let Some(m) = self.members.get_mut(&j.node) else {
            return;
        };
        // Strictly newer only, or our own intents echoing back would circulate
        // for ever.
        if j.ltime <= m.status_ltime {
            return;
        }
        m.status_ltime = j.ltime;
        if m.leaving && m.is_up() {
            m.leaving = false;
            self.changed();
        }
        let node = j.node.clone();
        self.queue(BroadcastKey::Intent(node), &Message::JoinIntent(j), false);
    }

    pub(super) fn handle_leave_intent(&mut self, l: LeaveIntent, now: Instant) {
        self.member_clock.witness(l.ltime);
        if l.node == self.name {
            // Someone force-left us while we run: refute with a newer join intent.
            if self.phase == Phase::Running && l.ltime > self.local().status_ltime {
                self.local_join_intent();
            }
            return;
        }
        let Some(m) = self.members.get_mut(&l.node) else {
            return;
        };
        if l.ltime <= m.status_ltime {
            return;
        }
        m.status_ltime = l.ltime;
        let node = l.node.clone();
        let prune = l.prune;
        self.queue(
            BroadcastKey::Intent(node.clone()),
            &Message::LeaveIntent(l),
            false,
        );
        let Some(m) = self.members.get_mut(&node) else {
            return;
        };
        match m.state {
            NodeState::Alive | NodeState::Suspect => {
                m.leaving = true;
                self.changed();
            }
            NodeState::Dead => {
                m.state = NodeState::Left;
                m.state_change = now;
                self.emit_member(MemberEventKind::Leave, &node);
                if prune {
                    self.remove_member(&node);
                }
            }
            NodeState::Left => {
                if prune {
                    self.remove_member(&node);
                }
            }
        }
    }

    pub(super) fn remove_member(&mut self, name: &str) {
        self.emit_member(MemberEventKind::Reap, name);
        self.members.remove(name);
        self.vivaldi.forget(name);
        if self.peer_coords.remove(name).is_some() {
            self.coord_changes += 1;
        }
        self.probe_order.retain(|n| n != name);
        self.urgent.retain(|n| n != name);
    }

    /// Merge a remote push/pull state (memberlist `mergeState` + Serf
    /// `MergeRemoteState`).
    pub(super) fn merge(&mut self, remote: PushPull, join: bool, now: Instant) {
        // No message carrying the remote clock value itself has been sent yet.
        self.member_clock
            .witness(remote.member_ltime.saturating_sub(1));
        if join && remote.event_ltime > self.events.min_time {
            // Joining with "ignore old": do not replay what the cluster fired before.
            self.events.min_time = remote.event_ltime;
        }
        self.event_clock
            .witness(remote.event_ltime.saturating_sub(1));
        for pm in remote.members {
            match pm.state {
                WireState::Alive => self.handle_alive(
                    Alive {
                        incarnation: pm.incarnation,
                        node: pm.node.clone(),
                        addr: pm.addr,
                        tags: pm.tags,
                    },
                    now,
                ),
                WireState::Left => self.handle_dead(
                    Dead {
                        incarnation: pm.incarnation,
                        node: pm.node.clone(),
                        from: pm.node.clone(),
                    },
                    None,
                    now,
                ),
                // A remote verdict of death is only a suspicion here: the member
                // gets its chance to refute (memberlist does the same). If we
                // suspect it already, the remote view is hearsay, not a probe of
                // its own, so it is not counted as a confirmation.
                WireState::Dead | WireState::Suspect
                    if self
                        .members
                        .get(&pm.node)
                        .is_some_and(|m| m.state == NodeState::Suspect) => {}
                WireState::Dead | WireState::Suspect => self.handle_suspect(
                    Suspect {
                        incarnation: pm.incarnation,
                        node: pm.node.clone(),
                        from: remote.from.clone(),
                    },
                    None,
                    now,
                ),
            }
            if let Some(m) = self.members.get_mut(&pm.node) {
                m.status_ltime = m.status_ltime.max(pm.status_ltime);
            }
        }
        for ev in remote.events {
            self.handle_user_event(ev, now);
        }
    }
}
