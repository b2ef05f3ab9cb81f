//! The sans-io gossip core: SWIM failure detection with Lifeguard suspicion and
//! local-health awareness (hashicorp/memberlist), plus Serf's layer above it —
//! member statuses alive/leaving/left/failed, join/leave intents on a Lamport
//! clock, user events on a second Lamport clock, reconnecting to failed members
//! and reaping them after a timeout.
//!
//! The core owns no socket, clock or entropy source. The shell (or a test) feeds it
//! packets ([`Core::handle_packet`]), stream exchanges ([`Core::handle_stream`],
//! [`Core::handle_stream_reply`]), timer wakeups ([`Core::tick`], at
//! [`Core::next_wakeup`]) and API calls, each with the current time; it answers
//! with an ordered list of [`Effect`]s. Randomness comes from a seeded RNG, so a run
//! is a pure function of its inputs.
//!
//! Packets handled here are plaintext wire packets ([`crate::wire`]); sealing is the
//! shell's job, but the core leaves room for it in every packet it builds.
//!
//! # Where Tribune departs from memberlist
//!
//! Same messages, timings and knobs (the LAN profile is Consul's); four local
//! policies differ, each invisible on the wire, so members running either
//! policy interoperate (`BENCHMARKS.md`, "Gossip", has the figures):
//!
//! - **Probe target.** Every other probe round goes to the member's successor on
//!   a ring of all alive members ordered by a hash of their names; the other rounds
//!   follow memberlist's shuffled round-robin. Each member then has a prober on a
//!   fixed two-interval beat, which bounds the wait before a crashed member is
//!   first probed (with round-robin alone it is about exponential: 1 crash in
//!   100 waits 4–5 intervals). Where views disagree or the predecessor is down
//!   too, the round-robin rounds are memberlist's behaviour at half the rate.
//! - **Suspicion past the minimum.** Lifeguard's timer falls from 6 × the
//!   minimum to the minimum after `k = mult − 2` independent confirmations and
//!   stops there; here it keeps falling with further confirmations, to a floor of
//!   half the minimum (at least two probe intervals) at `3k` ([`Suspicion`],
//!   [`config::suspicion_floor`]). A confirmation is a distinct member reporting
//!   its own failed direct and indirect probe; a push/pull peer's view is
//!   hearsay and does not count. A lone accuser (a member waking from a stall
//!   with a stale view) still cannot shorten anything.
//! - **Out-of-turn probes of a suspect.** A member that hears of a new suspect
//!   probes it next only with probability `reprobers / (n − 2)`
//!   ([`config::suspicion_reprobers`], 12 at the LAN defaults): enough members
//!   to deliver the accusation to a live suspect and to confirm a dead one, not
//!   all `n` (which sent a slow member hundreds of datagrams at 128 members).
//! - **Ring relay of broadcasts.** News not yet passed to the ring successor
//!   goes there as one of the gossip round's targets (the others random), so a
//!   member the random epidemic misses gets it one gossip interval after its
//!   ring predecessor instead of at the next push/pull.

mod awareness;
mod broadcast;
mod handlers;
mod lamport;
mod outbox;
mod rounds;
mod suspicion;
mod user_events;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tribune_types::model::coordinate::Coordinate;
use tribune_types::model::Member;

pub use awareness::Awareness;
pub use broadcast::{BroadcastKey, BroadcastQueue};
pub use lamport::LamportClock;
pub use suspicion::{Suspicion, SuspicionBounds};
pub use user_events::UserEvent;

use outbox::check_tags;
use user_events::{Coalescer, EventBuffer};

use crate::config::{self, CoreConfig, USER_EVENT_SIZE_HARD_LIMIT};
use crate::error::GossipError;
use crate::vivaldi::Vivaldi;
use crate::wire::{self, Dead, LeaveIntent, Message, Tags, UserEventMsg, WireError};

/// SWIM state of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Answering probes.
    Alive,
    /// Missed a probe round; has until its suspicion deadline to refute.
    Suspect,
    /// Declared dead after its suspicion ran out.
    Dead,
    /// Left gracefully.
    Left,
}

/// Serf member status, with Serf's numbers (as `/v1/agent/members` reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// 1.
    Alive = 1,
    /// 2: leave announced, not yet complete.
    Leaving = 2,
    /// 3: left gracefully.
    Left = 3,
    /// 4: failed (declared dead).
    Failed = 4,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEventKind {
    /// Became alive (new, or back from failed/left).
    Join,
    /// Tags or address changed.
    Update,
    /// Left gracefully.
    Leave,
    /// Declared dead.
    Failed,
    /// Forgotten after the reconnect or tombstone timeout, or by a pruning
    /// force-leave.
    Reap,
}

/// An event for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A membership change, with the member as it is now.
    Member {
        /// What happened.
        kind: MemberEventKind,
        /// The member.
        member: Member,
    },
    /// A user event, delivered once per node.
    User(UserEvent),
}

/// An action for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send one UDP datagram (plaintext wire packet; seal it if encrypting).
    Send {
        /// Destination.
        to: SocketAddr,
        /// The packet.
        packet: Vec<u8>,
    },
    /// Open a stream to `to`, send `request` as one frame, read one frame back and
    /// give it to [`Core::handle_stream_reply`] with the same `join` flag.
    PushPull {
        /// Destination.
        to: SocketAddr,
        /// The request frame (plaintext).
        request: Vec<u8>,
        /// Whether this is an explicit join.
        join: bool,
    },
    /// Deliver an event.
    Event(Event),
    /// The graceful-leave broadcast has been sent its full count (or there was
    /// nobody to send it to).
    LeaveDone,
}

/// Counters of what the core dropped or did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Packets handled.
    pub packets_received: u64,
    /// Packets rejected whole (bad version or framing).
    pub packets_malformed: u64,
    /// Messages inside a good packet that did not decode.
    pub messages_malformed: u64,
    /// Stream frames that did not decode.
    pub streams_malformed: u64,
    /// Broadcasts shed because the queue was full.
    pub broadcasts_dropped: u64,
    /// Accusations: probes of a live member that failed, each of which made this
    /// node suspect the member (or confirm a suspicion it already held).
    pub suspicions_raised: u64,
    /// Times this node refuted a suspicion or death notice about itself.
    pub refutations: u64,
}

/// The local node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Unique member name.
    pub name: String,
    /// Address others reach us at (UDP and TCP).
    pub addr: SocketAddr,
    /// Initial tags.
    pub tags: Tags,
}

/// One member as the core knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Name.
    pub name: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Tags.
    pub tags: Tags,
    /// Last known incarnation.
    pub incarnation: u32,
    /// SWIM state.
    pub state: NodeState,
    /// When `state` last changed.
    pub state_change: Instant,
    /// A leave intent was seen while it was alive.
    pub leaving: bool,
    /// Lamport time of the newest intent seen for it.
    pub status_ltime: u64,
    suspicion: Option<Suspicion>,
}

impl MemberState {
    /// The Serf status.
    pub fn status(&self) -> MemberStatus {
        match self.state {
            NodeState::Alive | NodeState::Suspect if self.leaving => MemberStatus::Leaving,
            NodeState::Alive | NodeState::Suspect => MemberStatus::Alive,
            NodeState::Dead => MemberStatus::Failed,
            NodeState::Left => MemberStatus::Left,
        }
    }

    /// Suspicion deadline, when suspected.
    pub fn suspicion_deadline(&self) -> Option<Instant> {
        self.suspicion.as_ref().map(Suspicion::deadline)
    }

    /// Independent confirmations of the suspicion counted so far, when suspected.
    pub fn suspicion_confirmations(&self) -> Option<u32> {
        self.suspicion.as_ref().map(Suspicion::confirmations)
    }

    /// As `/v1/agent/members` shows it.
    pub fn to_member(&self) -> Member {
        Member {
            name: self.name.clone(),
            addr: self.addr.ip().to_string(),
            port: self.addr.port(),
            tags: self.tags.clone(),
            status: self.status() as u8,
        }
    }

    fn is_up(&self) -> bool {
        matches!(self.state, NodeState::Alive | NodeState::Suspect)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Leaving,
    Left,
}

#[derive(Debug, Clone)]
struct Probe {
    target: String,
    seq: u32,
    /// When the direct ping went out: its ack's round trip feeds the coordinate.
    sent: Instant,
    ack_deadline: Instant,
    deadline: Instant,
    indirect_sent: bool,
    expected_nacks: u32,
    nacks: u32,
}

#[derive(Debug, Clone)]
struct Relay {
    requester: SocketAddr,
    seq: u32,
    deadline: Instant,
    nack: bool,
}

/// The gossip state machine. See the module docs.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    name: String,
    members: BTreeMap<String, MemberState>,
    probe_order: Vec<String>,
    probe_index: usize,
    /// Suspects to probe before anything else (see `handle_suspect`).
    urgent: Vec<String>,
    /// Whether the next regular probe round goes to the ring successor (else to
    /// the round-robin order); alternates.
    ring_turn: bool,
    probe: Option<Probe>,
    relays: BTreeMap<u32, Relay>,
    seq: u32,
    next_probe: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    next_reconnect: Instant,
    next_reap: Instant,
    awareness: Awareness,
    broadcasts: BroadcastQueue,
    member_clock: LamportClock,
    event_clock: LamportClock,
    events: EventBuffer,
    coalescer: Coalescer,
    rng: StdRng,
    phase: Phase,
    stats: CoreStats,
    out: Vec<Effect>,
    changes: u64,
    /// This member's network coordinate.
    vivaldi: Vivaldi,
    /// Peers' coordinates from their direct acks (Serf's coordinate cache).
    peer_coords: BTreeMap<String, Coordinate>,
    /// Bumped whenever a coordinate here changes.
    coord_changes: u64,
    /// Time of the input being handled.
    now: Instant,
}

impl Core {
    /// A core for `local`, alone in its cluster until it joins or is joined.
    /// `seed` drives every random choice (targets, orders, jitter).
    pub fn new(
        cfg: CoreConfig,
        local: LocalNode,
        seed: u64,
        now: Instant,
    ) -> Result<Self, GossipError> {
        cfg.validate()?;
        check_tags(&local.tags)?;
        let mut rng = StdRng::seed_from_u64(seed);
        // Stagger the periodic timers so nodes started together do not probe and
        // gossip in lockstep.
        let mut jitter = |d: Duration| now + d.mul_f64(rng.gen::<f64>());
        let next_probe = jitter(cfg.probe_interval);
        let next_gossip = jitter(cfg.gossip_interval);
        let next_push_pull = jitter(cfg.push_pull_interval);
        let next_reconnect = jitter(cfg.reconnect_interval);
        let next_reap = now + cfg.reap_interval;
        let mut member_clock = LamportClock::default();
        let me = MemberState {
            name: local.name.clone(),
            addr: local.addr,
            tags: local.tags,
            incarnation: 1,
            state: NodeState::Alive,
            state_change: now,
            leaving: false,
            status_ltime: member_clock.increment(),
            suspicion: None,
        };
        Ok(Self {
            awareness: Awareness::new(cfg.awareness_max_multiplier),
            events: EventBuffer::new(cfg.event_buffer),
            cfg,
            name: local.name.clone(),
            members: BTreeMap::from([(local.name, me)]),
            probe_order: Vec::new(),
            probe_index: 0,
            urgent: Vec::new(),
            ring_turn: false,
            probe: None,
            relays: BTreeMap::new(),
            seq: 0,
            next_probe,
            next_gossip,
            next_push_pull,
            next_reconnect,
            next_reap,
            broadcasts: BroadcastQueue::default(),
            member_clock,
            event_clock: LamportClock::default(),
            coalescer: Coalescer::default(),
            rng,
            phase: Phase::Running,
            stats: CoreStats::default(),
            out: Vec::new(),
            changes: 0,
            vivaldi: Vivaldi::default(),
            peer_coords: BTreeMap::new(),
            coord_changes: 0,
            now,
        })
    }

    // ---- inspection -------------------------------------------------------

    /// This member's network coordinate (`None` when coordinates are off).
    pub fn coordinate(&self) -> Option<&Coordinate> {
        self.cfg.coordinates.then(|| self.vivaldi.coordinate())
    }

    /// The last coordinate each peer sent with a direct ack.
    pub fn peer_coordinates(&self) -> &BTreeMap<String, Coordinate> {
        &self.peer_coords
    }

    /// Moves whenever [`Core::coordinate`] or [`Core::peer_coordinates`] changes.
    pub fn coordinate_changes(&self) -> u64 {
        self.coord_changes
    }

    /// The local member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the node has not started leaving.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Every known member (the local one included), by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.values().map(MemberState::to_member).collect()
    }

    /// The full state of one member.
    pub fn member(&self, name: &str) -> Option<&MemberState> {
        self.members.get(name)
    }

    /// Members alive or suspect, the local one included (the `n` of the formulas).
    pub fn num_alive(&self) -> usize {
        self.members.values().filter(|m| m.is_up()).count()
    }

    /// The local incarnation.
    pub fn incarnation(&self) -> u32 {
        self.local().incarnation
    }

    /// Lifeguard awareness score (0 healthy).
    pub fn awareness_score(&self) -> u32 {
        self.awareness.score()
    }

    /// The member and event Lamport clocks.
    pub fn clocks(&self) -> (u64, u64) {
        (self.member_clock.time(), self.event_clock.time())
    }

    /// Broadcasts waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            broadcasts_dropped: self.broadcasts.dropped(),
            ..self.stats
        }
    }

    /// Bumped on every membership change, so a shell can refresh a snapshot cheaply.
    pub fn change_counter(&self) -> u64 {
        self.changes
    }

    /// The earliest time [`Core::tick`] has work to do.
    pub fn next_wakeup(&self) -> Instant {
        let mut at = self.next_gossip.min(self.next_reap);
        if self.phase == Phase::Running {
            at = at.min(self.next_probe).min(self.next_reconnect);
            if !self.cfg.push_pull_interval.is_zero() {
                at = at.min(self.next_push_pull);
            }
        }
        if let Some(p) = &self.probe {
            at = at.min(p.deadline);
            if !p.indirect_sent {
                at = at.min(p.ack_deadline);
            }
        }
        for r in self.relays.values() {
            at = at.min(r.deadline);
        }
        for m in self.members.values() {
            if let Some(d) = m.suspicion_deadline() {
                at = at.min(d);
            }
        }
        if let Some(d) = self.coalescer.deadline(
            self.cfg.user_coalesce_period,
            self.cfg.user_quiescent_period,
        ) {
            at = at.min(d);
        }
        at
    }

    // ---- API calls --------------------------------------------------------

    /// Start push/pull exchanges with `seeds` (Serf `Join`). Events older than what
    /// the seeds have seen are not replayed (Consul joins with `ignoreOld`).
    pub fn join(&mut self, seeds: &[SocketAddr], now: Instant) -> Vec<Effect> {
        self.now = now;
        if self.phase != Phase::Running {
            return Vec::new();
        }
        self.local_join_intent();
        for &to in seeds {
            self.push_pull_to(to, true);
        }
        self.take()
    }

    /// Leave gracefully: announce a leave intent and our own departure, and report
    /// [`Effect::LeaveDone`] once that has been sent its full count.
    pub fn leave(&mut self, now: Instant) -> Vec<Effect> {
        self.now = now;
        if self.phase != Phase::Running {
            return Vec::new();
        }
        self.phase = Phase::Leaving;
        self.probe = None;
        let ltime = self.member_clock.increment();
        let name = self.name.clone();
        if let Some(me) = self.members.get_mut(&name) {
            me.leaving = true;
            me.status_ltime = ltime;
        }
        self.changed();
        self.queue(
            BroadcastKey::Intent(name.clone()),
            &Message::LeaveIntent(LeaveIntent {
                ltime,
                node: name.clone(),
                prune: false,
            }),
            false,
        );
        let incarnation = self.incarnation();
        self.queue(
            BroadcastKey::Member(name.clone()),
            &Message::Dead(Dead {
                incarnation,
                node: name.clone(),
                from: name,
            }),
            true,
        );
        if self.num_alive() <= 1 {
            // Nobody to tell.
            self.finish_leave(now);
        }
        self.take()
    }

    /// Fire a user event; it is also delivered locally, as Serf does.
    pub fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        now: Instant,
    ) -> Result<Vec<Effect>, GossipError> {
        self.now = now;
        if self.phase != Phase::Running {
            return Err(GossipError::NotRunning {
                state: self.phase_name(),
            });
        }
        if name.is_empty() {
            return Err(GossipError::UserEventMissingName);
        }
        let size = name.len() + payload.len();
        let limit = self
            .cfg
            .user_event_size_limit
            .min(USER_EVENT_SIZE_HARD_LIMIT);
        if size > limit {
            return Err(GossipError::UserEventTooLarge { size, limit });
        }
        let msg = UserEventMsg {
            ltime: self.event_clock.time(),
            name: name.to_owned(),
            payload: payload.to_vec(),
            coalesce,
        };
        let encoded = wire::encode_message(&Message::UserEvent(msg.clone()))?;
        if wire::packed_len(&encoded) > self.packet_budget() {
            // Only possible with a configured limit near Serf's 9 KiB hard cap: a
            // user event must fit in one UDP packet to be gossiped at all.
            return Err(GossipError::UserEventTooLarge {
                size: encoded.len(),
                limit: self.packet_budget(),
            });
        }
        self.event_clock.increment();
        self.handle_user_event(msg, now);
        Ok(self.take())
    }

    /// Mark a failed member as left (Serf `RemoveFailedNode`); with `prune`, forget
    /// it at once. On an alive member this only announces the intent: the member
    /// itself refutes it.
    pub fn force_leave(
        &mut self,
        name: &str,
        prune: bool,
        now: Instant,
    ) -> Result<Vec<Effect>, GossipError> {
        self.now = now;
        if name == self.name || !self.members.contains_key(name) {
            return Err(GossipError::UnknownMember {
                name: name.to_owned(),
            });
        }
        let intent = LeaveIntent {
            ltime: self.member_clock.increment(),
            node: name.to_owned(),
            prune,
        };
        self.handle_leave_intent(intent, now);
        Ok(self.take())
    }

    /// Replace the local tags, announcing them with a new incarnation.
    pub fn set_tags(&mut self, tags: Tags, now: Instant) -> Result<Vec<Effect>, GossipError> {
        self.now = now;
        check_tags(&tags)?;
        if self.phase != Phase::Running {
            return Err(GossipError::NotRunning {
                state: self.phase_name(),
            });
        }
        let name = self.name.clone();
        if let Some(me) = self.members.get_mut(&name) {
            me.incarnation += 1;
            me.tags = tags;
        }
        self.broadcast_local_alive();
        self.emit_member(MemberEventKind::Update, &name);
        Ok(self.take())
    }

    // ---- network input ----------------------------------------------------

    /// Handle one plaintext UDP packet from `from`.
    pub fn handle_packet(&mut self, from: SocketAddr, packet: &[u8], now: Instant) -> Vec<Effect> {
        self.now = now;
        self.stats.packets_received += 1;
        match wire::decode_packet(packet) {
            Ok(msgs) => {
                for msg in msgs {
                    match msg {
                        Ok(m) => self.handle_message(from, m, now),
                        Err(e) => {
                            self.stats.messages_malformed += 1;
                            tracing::debug!(%from, error = %e, "gossip: skipping undecodable message");
                        }
                    }
                }
            }
            Err(e) => {
                self.stats.packets_malformed += 1;
                tracing::warn!(%from, error = %e, "gossip: dropping malformed packet");
            }
        }
        self.take()
    }

    /// Serve a push/pull request frame from `from`: merge its state and return our
    /// reply frame (built after the merge, so it already carries any refutation).
    pub fn handle_stream(
        &mut self,
        from: SocketAddr,
        frame: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, Vec<Effect>), WireError> {
        self.now = now;
        let remote = self.decode_push_pull(from, frame)?;
        self.merge(remote, false, now);
        let reply = self.push_pull_frame(false);
        Ok((reply, self.take()))
    }

    /// Merge the reply to a push/pull we started ([`Effect::PushPull`]).
    pub fn handle_stream_reply(
        &mut self,
        from: SocketAddr,
        frame: &[u8],
        join: bool,
        now: Instant,
    ) -> Result<Vec<Effect>, WireError> {
        self.now = now;
        let remote = self.decode_push_pull(from, frame)?;
        self.merge(remote, join, now);
        Ok(self.take())
    }

    // ---- timers -----------------------------------------------------------

    /// Do whatever is due at `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        self.now = now;
        self.tick_probe(now);
        self.tick_relays(now);
        self.tick_suspicions(now);
        if now >= self.next_gossip {
            self.gossip(now);
            self.next_gossip = now + self.cfg.gossip_interval;
        }
        if self.phase == Phase::Running {
            if !self.cfg.push_pull_interval.is_zero() && now >= self.next_push_pull {
                self.periodic_push_pull();
                let n = self.num_alive();
                self.next_push_pull = now + config::push_pull_scale(self.cfg.push_pull_interval, n);
            }
            if now >= self.next_reconnect {
                self.reconnect();
                self.next_reconnect = now + self.cfg.reconnect_interval;
            }
        }
        if now >= self.next_reap {
            self.reap(now);
            self.next_reap = now + self.cfg.reap_interval;
        }
        for ev in self.coalescer.flush(
            now,
            self.cfg.user_coalesce_period,
            self.cfg.user_quiescent_period,
        ) {
            self.out.push(Effect::Event(Event::User(ev)));
        }
        self.take()
    }
}

#[cfg(test)]
mod tests;
