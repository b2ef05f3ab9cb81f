//! How the core produces output: effects, packets filled with piggybacked
//! broadcasts up to the UDP budget, push/pull frames, and the small helpers the
//! handlers share.

use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::SliceRandom;

use super::{BroadcastKey, Core, Effect, Event, MemberEventKind, MemberState, NodeState, Phase};
use crate::config::{self, META_MAX_SIZE};
use crate::error::GossipError;
use crate::keyring::SEAL_OVERHEAD;
use crate::wire::{self, Message, PushMember, PushPull, StreamMsg, Tags, WireError, WireState};

pub(super) fn check_tags(tags: &Tags) -> Result<(), GossipError> {
    let size = rmp_serde::to_vec(tags)?.len();
    if size > META_MAX_SIZE {
        return Err(GossipError::TagsTooLarge {
            size,
            limit: META_MAX_SIZE,
        });
    }
    Ok(())
}

impl Core {
    pub(super) fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    pub(super) fn local(&self) -> &MemberState {
        // The local member is inserted at construction and never removed.
        &self.members[&self.name]
    }

    pub(super) fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Running => "running",
            Phase::Leaving => "leaving",
            Phase::Left => "left",
        }
    }

    pub(super) fn changed(&mut self) {
        self.changes += 1;
    }

    /// Payload bytes available for messages in one packet.
    pub(super) fn packet_budget(&self) -> usize {
        self.cfg.udp_buffer_size - SEAL_OVERHEAD - wire::PACKET_HEADER_RESERVE
    }

    pub(super) fn retransmit_limit(&self) -> u32 {
        config::retransmit_limit(self.cfg.retransmit_mult, self.num_alive())
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub(super) fn emit_member(&mut self, kind: MemberEventKind, name: &str) {
        self.changed();
        if let Some(m) = self.members.get(name) {
            let member = m.to_member();
            self.out.push(Effect::Event(Event::Member { kind, member }));
        }
    }

    pub(super) fn queue(&mut self, key: BroadcastKey, msg: &Message, notify: bool) {
        match wire::encode_message(msg) {
            Ok(bytes) => self
                .broadcasts
                .push(key, bytes, notify, self.cfg.max_queue_depth),
            Err(e) => tracing::error!(error = %e, "gossip: failed to encode broadcast"),
        }
    }

    /// Send `msg` to `to`, filling the rest of the packet with broadcasts.
    pub(super) fn send(&mut self, to: SocketAddr, msgs: &[Message]) {
        let mut encoded = Vec::with_capacity(msgs.len());
        for m in msgs {
            match wire::encode_message(m) {
                Ok(b) => encoded.push(b),
                Err(e) => {
                    tracing::error!(error = %e, "gossip: failed to encode message");
                    return;
                }
            }
        }
        let used: usize = encoded.iter().map(|b| wire::packed_len(b)).sum();
        let budget = self.packet_budget().saturating_sub(used);
        let limit = self.retransmit_limit();
        encoded.extend(self.broadcasts.take(budget, limit));
        self.after_broadcasts_taken(self.now);
        let packet = wire::encode_packet(encoded.iter().map(Vec::as_slice));
        self.out.push(Effect::Send { to, packet });
    }

    pub(super) fn after_broadcasts_taken(&mut self, now: Instant) {
        if self.broadcasts.take_notify_done() {
            self.finish_leave(now);
        }
    }

    pub(super) fn finish_leave(&mut self, now: Instant) {
        if self.phase != Phase::Leaving {
            return;
        }
        self.phase = Phase::Left;
        let name = self.name.clone();
        if let Some(me) = self.members.get_mut(&name) {
            me.state = NodeState::Left;
            me.state_change = now;
            me.leaving = false;
        }
        self.changed();
        self.out.push(Effect::LeaveDone);
    }

    pub(super) fn push_pull_frame(&self, join: bool) -> Vec<u8> {
        let members = self
            .members
            .values()
            .map(|m| PushMember {
                node: m.name.clone(),
                addr: m.addr,
                incarnation: m.incarnation,
                state: match m.state {
                    NodeState::Alive => WireState::Alive,
                    NodeState::Suspect => WireState::Suspect,
                    NodeState::Dead => WireState::Dead,
                    NodeState::Left => WireState::Left,
                },
                tags: m.tags.clone(),
                status_ltime: m.status_ltime,
            })
            .collect();
        let msg = StreamMsg::PushPull(PushPull {
            from: self.name.clone(),
            join,
            members,
            member_ltime: self.member_clock.time(),
            event_ltime: self.event_clock.time(),
            events: self.events.recent(),
        });
        wire::encode_stream(&msg).unwrap_or_else(|e| {
            tracing::error!(error = %e, "gossip: failed to encode push/pull state");
            Vec::new()
        })
    }

    pub(super) fn push_pull_to(&mut self, to: SocketAddr, join: bool) {
        let request = self.push_pull_frame(join);
        self.out.push(Effect::PushPull { to, request, join });
    }

    pub(super) fn decode_push_pull(
        &mut self,
        from: SocketAddr,
        frame: &[u8],
    ) -> Result<PushPull, WireError> {
        match wire::decode_stream(frame) {
            Ok(StreamMsg::PushPull(pp)) => Ok(pp),
            Err(e) => {
                self.stats.streams_malformed += 1;
                tracing::warn!(%from, error = %e, "gossip: dropping malformed stream frame");
                Err(e)
            }
        }
    }

    pub(super) fn random_members(
        &mut self,
        k: usize,
        exclude: &str,
        keep: impl Fn(&MemberState) -> bool,
    ) -> Vec<(String, SocketAddr)> {
        let eligible: Vec<(String, SocketAddr)> = self
            .members
            .values()
            .filter(|m| m.name != self.name && m.name != exclude && keep(m))
            .map(|m| (m.name.clone(), m.addr))
            .collect();
        eligible
            .choose_multiple(&mut self.rng, k)
            .cloned()
            .collect()
    }
}
