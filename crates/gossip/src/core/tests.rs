//! Deterministic tests of the core: exact effects where the exchange is short,
//! the simulated network (manual time, seeded) where it takes several members.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sim::{SentPacket, SimNet};
use crate::wire::{Ack, IndirectPing, Nack, Ping, Suspect, UserEventMsg};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 9, 0, i], 8301))
}

fn core(name: &str, i: u8, cfg: CoreConfig, t0: Instant) -> Core {
    let local = LocalNode {
        name: name.into(),
        addr: addr(i),
        tags: Tags::new(),
    };
    Core::new(cfg, local, u64::from(i), t0).unwrap()
}

fn packet(msgs: &[Message]) -> Vec<u8> {
    let enc: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| wire::encode_message(m).unwrap())
        .collect();
    wire::encode_packet(enc.iter().map(Vec::as_slice))
}

/// `(to, first message)` of every datagram in `effects`.
fn sends(effects: &[Effect]) -> Vec<(SocketAddr, Message)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, packet } => {
                let first = wire::decode_packet(packet).ok()?.into_iter().next()?.ok()?;
                Some((*to, first))
            }
            _ => None,
        })
        .collect()
}

fn member_events(effects: &[Effect]) -> Vec<(MemberEventKind, String, u8)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(Event::Member { kind, member }) => {
                Some((*kind, member.name.clone(), member.status))
            }
            _ => None,
        })
        .collect()
}

/// Join `a` to `b` by hand, checking the exact effects on both sides.
fn joined_pair(t0: Instant, cfg: CoreConfig) -> (Core, Core) {
    let mut a = core("a", 1, cfg.clone(), t0);
    let mut b = core("b", 2, cfg, t0);
    let eff = a.join(&[addr(2)], t0);
    let [Effect::PushPull {
        to,
        request,
        join: true,
    }] = eff.as_slice()
    else {
        panic!("expected one join push/pull, got {eff:?}");
    };
    assert_eq!(*to, addr(2));
    let (reply, eff_b) = b.handle_stream(addr(1), request, t0).unwrap();
    assert_eq!(
        member_events(&eff_b),
        vec![(MemberEventKind::Join, "a".into(), 1)]
    );
    let eff_a = a.handle_stream_reply(addr(2), &reply, true, t0).unwrap();
    assert_eq!(
        member_events(&eff_a),
        vec![(MemberEventKind::Join, "b".into(), 1)]
    );
    (a, b)
}

/// Tick `c` at its wakeups until a datagram whose first message matches `want`.
fn tick_until(
    c: &mut Core,
    mut now: Instant,
    limit: Duration,
    want: impl Fn(&Message) -> bool,
) -> (Instant, Vec<Effect>) {
    let end = now + limit;
    while now < end {
        now = c.next_wakeup().max(now);
        let eff = c.tick(now);
        if sends(&eff).iter().any(|(_, m)| want(m)) {
            return (now, eff);
        }
    }
    panic!("nothing matching within {limit:?}");
}

#[test]
fn probe_is_acked_and_health_stays_good() {
    let t0 = Instant::now();
    let (mut a, mut b) = joined_pair(t0, CoreConfig::lan());
    let (t, eff) = tick_until(&mut a, t0, 2 * SEC, |m| matches!(m, Message::Ping(_)));
    assert_eq!(
        sends(&eff),
        vec![(
            addr(2),
            Message::Ping(Ping {
                seq: 1,
                node: "b".into()
            })
        )]
    );
    let Effect::Send { packet, .. } = &eff[0] else {
        unreachable!()
    };
    let eff = b.handle_packet(addr(1), packet, t + MS);
    let ack = Ack {
        seq: 1,
        coord: Some(Coordinate::origin()),
    };
    assert_eq!(sends(&eff), vec![(addr(1), Message::Ack(ack))]);
    let Effect::Send { packet, .. } = &eff[0] else {
        unreachable!()
    };
    let eff = a.handle_packet(addr(2), packet, t + 2 * MS);
    assert!(sends(&eff).is_empty());
    // The 2 ms round trip moved a's coordinate, and b's is cached.
    assert_eq!(a.coordinate_changes(), 1);
    assert_eq!(a.peer_coordinates().get("b"), Some(&Coordinate::origin()));
    assert_ne!(a.coordinate(), Some(&Coordinate::origin()));
    // Past the probe timeout and the round: no indirect probe, no suspicion.
    let eff = a.tick(t + SEC - MS);
    assert!(sends(&eff)
        .iter()
        .all(|(_, m)| !matches!(m, Message::IndirectPing(_) | Message::Suspect(_))));
    assert_eq!(a.member("b").unwrap().state, NodeState::Alive);
    assert_eq!(a.awareness_score(), 0);
}

#[test]
fn with_coordinates_off_acks_carry_none_and_nothing_is_learnt() {
    let t0 = Instant::now();
    let cfg = CoreConfig {
        coordinates: false,
        ..CoreConfig::lan()
    };
    let (mut a, mut b) = joined_pair(t0, cfg);
    let (t, eff) = tick_until(&mut a, t0, 2 * SEC, |m| matches!(m, Message::Ping(_)));
    let Effect::Send { packet: ping, .. } = &eff[0] else {
        unreachable!()
    };
    let eff = b.handle_packet(addr(1), ping, t + MS);
    assert_eq!(
        sends(&eff),
        vec![(
            addr(1),
            Message::Ack(Ack {
                seq: 1,
                coord: None
            })
        )]
    );
    // Even a peer that sends one anyway does not move a disabled coordinate.
    let ack = Ack {
        seq: 1,
        coord: Some(Coordinate::origin()),
    };
    a.handle_packet(addr(2), &packet(&[Message::Ack(ack)]), t + 2 * MS);
    assert_eq!(a.coordinate(), None);
    assert_eq!(a.coordinate_changes(), 0);
}

#[test]
fn a_ping_for_another_name_is_not_acked() {
    let t0 = Instant::now();
    let (_, mut b) = joined_pair(t0, CoreConfig::lan());
    let eff = b.handle_packet(
        addr(1),
        &packet(&[Message::Ping(Ping {
            seq: 3,
            node: "old-b".into(),
        })]),
        t0,
    );
    assert!(sends(&eff).is_empty());
}

#[test]
fn relay_forwards_ack_or_nacks_before_the_probe_round_ends() {
    let t0 = Instant::now();
    let (mut a, _) = joined_pair(t0, CoreConfig::lan());
    let req = |seq| {
        packet(&[Message::IndirectPing(IndirectPing {
            seq,
            node: "b".into(),
            addr: addr(2),
            nack: true,
        })])
    };
    // "c" (addr 3) asks a to probe b.
    let eff = a.handle_packet(addr(3), &req(40), t0);
    let sent = sends(&eff);
    let [(to, Message::Ping(Ping { seq, node }))] = sent.as_slice() else {
        panic!("expected a relayed ping: {eff:?}");
    };
    assert_eq!((*to, node.as_str()), (addr(2), "b"));
    let seq = *seq;
    let direct = Ack {
        seq,
        coord: Some(Coordinate::origin()),
    };
    let eff = a.handle_packet(addr(2), &packet(&[Message::Ack(direct)]), t0 + MS);
    // Relayed without b's coordinate: c's round trip went through a.
    let relayed = Ack {
        seq: 40,
        coord: None,
    };
    assert_eq!(sends(&eff), vec![(addr(3), Message::Ack(relayed))]);
    assert_eq!(a.coordinate_changes(), 0, "a relay learns nothing");
    // Second request: b stays silent, a nacks at 4/5 of the probe timeout, so the
    // nack reaches c within its probe round.
    a.handle_packet(addr(3), &req(41), t0 + SEC);
    assert!(a.next_wakeup() <= t0 + SEC + 400 * MS);
    let eff = a.tick(t0 + SEC + 400 * MS);
    assert!(sends(&eff).contains(&(addr(3), Message::Nack(Nack { seq: 41 }))));
}

/// Messages of the probe protocol (not gossip) in a recorded run.
fn probes(sent: &[SentPacket]) -> Vec<&SentPacket> {
    sent.iter()
        .filter(|p| {
            matches!(
                p.msgs.first(),
                Some(
                    Message::Ping(_)
                        | Message::IndirectPing(_)
                        | Message::Nack(_)
                        | Message::Ack(_)
                )
            )
        })
        .collect()
}

fn three(cfg: &CoreConfig, seed: u64) -> SimNet {
    let mut net = SimNet::new(seed, MS);
    for name in ["a", "b", "c"] {
        net.add_node(name, cfg.clone());
    }
    net.join(1, 0);
    net.join(2, 0);
    assert!(net.run_until(10 * SEC, |n| n.all_see(&["a", "b", "c"], NodeState::Alive)));
    net
}

#[test]
fn missed_ack_goes_indirect_then_suspect_then_dead_after_the_timeout() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 7);
    net.record = true;
    net.stop(1);
    assert!(net.run_until(10 * SEC, |n| [0, 2]
        .iter()
        .any(|&i| n.nodes[i].state_of("b") == Some(NodeState::Suspect))));
    // The first failed probe of b, by a or c (whichever got to it first): direct
    // ping, then after the probe timeout an indirect request to the other, which
    // pings b and nacks when b stays silent.
    let log = probes(&net.sent);
    let ping = log
        .iter()
        .find(|p| matches!(&p.msgs[0], Message::Ping(Ping { node, .. }) if node == "b"))
        .expect("someone pinged b");
    let (x, y) = (ping.from, 2 - ping.from);
    let Message::Ping(Ping { seq, .. }) = ping.msgs[0].clone() else {
        unreachable!()
    };
    let indirect = log
        .iter()
        .find(|p| p.from == x && matches!(&p.msgs[0], Message::IndirectPing(r) if r.seq == seq))
        .expect("the prober asked the other");
    assert_eq!(indirect.to, Some(y));
    assert_eq!(indirect.at - ping.at, cfg.probe_timeout);
    let relayed = log
        .iter()
        .find(|p| {
            p.from == y
                && p.at >= indirect.at
                && matches!(&p.msgs[0], Message::Ping(Ping { node, .. }) if node == "b")
        })
        .expect("the relay pinged b");
    let nack = log
        .iter()
        .find(|p| p.from == y && p.msgs[0] == Message::Nack(Nack { seq }))
        .expect("the relay nacked");
    assert_eq!(nack.at - relayed.at, cfg.probe_timeout * 4 / 5);
    // The nack proves the prober's own network fine: no awareness penalty.
    assert_eq!(net.nodes[x].core.awareness_score(), 0);

    // Three members: no one can confirm (k = 0), so the minimum applies:
    // 4 × max(1, log10(3)) × 1 s = 4 s.
    let suspected_at = net.nodes[x].core.member("b").unwrap().state_change;
    assert!(net.run_until(10 * SEC, |n| n.nodes[x].state_of("b")
        == Some(NodeState::Dead)));
    let failed_at = net.nodes[x]
        .last_event(MemberEventKind::Failed, "b")
        .unwrap();
    assert_eq!(failed_at - suspected_at, 4 * SEC);
    assert!(net.run_until(SEC, |n| n.nodes[y].state_of("b") == Some(NodeState::Dead)));
    assert_eq!(
        net.nodes[y].core.members()[1].status,
        MemberStatus::Failed as u8
    );
}

#[test]
fn suspected_member_refutes_with_a_higher_incarnation() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 11);
    let inc = net.nodes[1].core.incarnation();
    let accuse = packet(&[Message::Suspect(Suspect {
        incarnation: inc,
        node: "b".into(),
        from: "c".into(),
    })]);
    let from_c = net.nodes[2].addr;
    net.call(0, |core, now| core.handle_packet(from_c, &accuse, now));
    assert_eq!(net.nodes[0].state_of("b"), Some(NodeState::Suspect));
    // b hears the accusation itself (from a's next gossip or probe) and refutes.
    assert!(net.run_until(3 * SEC, |n| n.nodes[0].state_of("b")
        == Some(NodeState::Alive)));
    assert!(net.nodes[1].core.incarnation() > inc);
    assert_eq!(
        net.nodes[0].core.member("b").unwrap().incarnation,
        net.nodes[1].core.incarnation()
    );
    assert_eq!(
        net.nodes[1].core.awareness_score(),
        1,
        "refuting costs health"
    );
    net.run_for(10 * SEC);
    assert!(net.nodes[0]
        .last_event(MemberEventKind::Failed, "b")
        .is_none());
}

#[test]
fn graceful_leave_is_left_not_failed() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 3);
    net.call(2, |core, now| core.leave(now));
    assert_eq!(
        net.nodes[2].core.members()[2].status,
        MemberStatus::Leaving as u8
    );
    assert!(net.run_until(5 * SEC, |n| n.nodes[2].leave_done));
    net.stop(2);
    assert!(net.run_until(SEC, |n| n.all_see(&["c"], NodeState::Left)));
    net.run_for(30 * SEC);
    for i in 0..2 {
        let node = &net.nodes[i];
        assert!(node.last_event(MemberEventKind::Leave, "c").is_some());
        assert!(node.last_event(MemberEventKind::Failed, "c").is_none());
        assert_eq!(node.state_of("c"), Some(NodeState::Left));
        assert_eq!(node.core.members()[2].status, MemberStatus::Left as u8);
    }
    assert_eq!(
        net.nodes[2].core.members()[2].status,
        MemberStatus::Left as u8
    );
}

#[test]
fn restarted_member_rejoins_with_a_higher_incarnation() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 5);
    net.stop(1);
    assert!(net.run_until(30 * SEC, |n| n.all_see(&["b"], NodeState::Dead)));
    let dead_inc = net.nodes[0].core.member("b").unwrap().incarnation;
    net.restart(1, cfg.clone());
    assert_eq!(net.nodes[1].core.incarnation(), 1);
    net.join(1, 0);
    assert!(net.run_until(5 * SEC, |n| n.all_see(&["a", "b", "c"], NodeState::Alive)));
    for i in [0, 2] {
        let b = net.nodes[i].core.member("b").unwrap();
        assert!(b.incarnation > dead_inc, "{} <= {dead_inc}", b.incarnation);
        let failed = net.nodes[i]
            .last_event(MemberEventKind::Failed, "b")
            .unwrap();
        let joined = net.nodes[i].last_event(MemberEventKind::Join, "b").unwrap();
        assert!(joined > failed);
    }
}

#[test]
fn broadcasts_are_sent_exactly_the_retransmit_limit() {
    for (n, limit) in [(3, 4), (10, 8)] {
        let cfg = CoreConfig {
            push_pull_interval: Duration::ZERO,
            ..CoreConfig::lan()
        };
        let mut net = SimNet::new(n as u64, MS);
        for i in 0..n {
            net.add_node(&format!("n{i}"), cfg.clone());
        }
        for i in 1..n {
            net.join(i, 0);
        }
        let names = net.names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(net.run_until(20 * SEC, |net| net.all_see(&names, NodeState::Alive)));
        net.run_for(10 * SEC); // let the join news die down
        assert_eq!(config::retransmit_limit(4, n), limit);
        net.record = true;
        net.call(1, |core, now| {
            core.user_event("deploy", b"v1", false, now).unwrap()
        });
        net.run_for(10 * SEC);
        let carried = |from: usize| {
            net.sent
                .iter()
                .filter(|p| {
                    p.from == from && p.msgs.iter().any(|m| matches!(m, Message::UserEvent(_)))
                })
                .count()
        };
        assert_eq!(carried(1), limit as usize, "n = {n}");
        for node in &net.nodes {
            assert_eq!(node.user_events(), vec![("deploy".into(), b"v1".to_vec())]);
        }
    }
}

#[test]
fn user_events_are_deduplicated_by_lamport_time_name_and_payload() {
    let t0 = Instant::now();
    let (mut a, _) = joined_pair(t0, CoreConfig::lan());
    let ev = |ltime, payload: &[u8]| {
        packet(&[Message::UserEvent(UserEventMsg {
            ltime,
            name: "deploy".into(),
            payload: payload.to_vec(),
            coalesce: false,
        })])
    };
    let delivered = |eff: &[Effect]| {
        eff.iter()
            .filter_map(|e| match e {
                Effect::Event(Event::User(u)) => Some((u.ltime, u.payload.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        delivered(&a.handle_packet(addr(2), &ev(5, b"x"), t0)),
        vec![(5, b"x".to_vec())]
    );
    assert_eq!(a.clocks().1, 6, "the event clock witnessed time 5");
    assert!(delivered(&a.handle_packet(addr(2), &ev(5, b"x"), t0)).is_empty());
    assert_eq!(
        delivered(&a.handle_packet(addr(2), &ev(5, b"y"), t0)).len(),
        1
    );
    assert_eq!(
        delivered(&a.handle_packet(addr(2), &ev(6, b"x"), t0)).len(),
        1
    );
    // Push the clock far ahead: an event older than the 512-slot buffer is refused.
    a.handle_packet(addr(2), &ev(2000, b"z"), t0);
    assert!(delivered(&a.handle_packet(addr(2), &ev(7, b"late"), t0)).is_empty());
    // Our own events are stamped after everything seen, and delivered locally.
    let eff = a.user_event("deploy", b"mine", false, t0).unwrap();
    assert_eq!(delivered(&eff), vec![(2001, b"mine".to_vec())]);
    assert!(matches!(
        a.user_event("deploy", &[0; 600], false, t0),
        Err(GossipError::UserEventTooLarge {
            size: 606,
            limit: 512
        })
    ));
    assert!(matches!(
        a.user_event("", b"", false, t0),
        Err(GossipError::UserEventMissingName)
    ));
}

#[test]
fn coalesced_user_events_deliver_only_the_newest_per_name() {
    let t0 = Instant::now();
    let cfg = CoreConfig {
        user_coalesce_period: 2 * SEC,
        ..CoreConfig::lan()
    };
    let mut a = core("a", 1, cfg, t0);
    let mut delivered = Vec::new();
    for payload in [b"1", b"2", b"3"] {
        let eff = a.user_event("cfg", payload, true, t0).unwrap();
        assert!(eff.iter().all(|e| !matches!(e, Effect::Event(_))));
    }
    let mut now = t0;
    while now < t0 + 3 * SEC {
        now = a.next_wakeup();
        for e in a.tick(now) {
            if let Effect::Event(Event::User(u)) = e {
                delivered.push((now - t0, u.payload));
            }
        }
    }
    assert_eq!(delivered, vec![(2 * SEC, b"3".to_vec())]);
}

#[test]
fn awareness_stretches_probe_rounds_when_probes_fail() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 13);
    net.record = true;
    net.stop(1);
    net.stop(2);
    net.run_for(6 * SEC);
    let pings: Vec<Instant> = net
        .sent
        .iter()
        .filter(|p| p.from == 0 && matches!(p.msgs[0], Message::Ping(_)))
        .map(|p| p.at)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    // Each failed round with no nack from the (silent) relay costs one point, and
    // the next round lasts (score + 1) probe intervals.
    assert_eq!(gaps[0], SEC, "{gaps:?}");
    assert_eq!(gaps[1], 2 * SEC, "{gaps:?}");
    assert!(net.nodes[0].core.awareness_score() >= 2);
    assert!(net.nodes[0].core.awareness_score() < cfg.awareness_max_multiplier);
}

#[test]
fn force_leave_turns_failed_into_left_and_prune_reaps() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 17);
    net.stop(2);
    assert!(net.run_until(30 * SEC, |n| n.all_see(&["c"], NodeState::Dead)));
    net.call(0, |core, now| core.force_leave("c", false, now).unwrap());
    assert!(net.run_until(2 * SEC, |n| n.all_see(&["c"], NodeState::Left)));
    assert!(net.nodes[1]
        .last_event(MemberEventKind::Leave, "c")
        .is_some());
    net.call(0, |core, now| core.force_leave("c", true, now).unwrap());
    assert!(net.run_until(2 * SEC, |n| n.nodes[..2]
        .iter()
        .all(|x| x.state_of("c").is_none())));
    assert!(net.nodes[1]
        .last_event(MemberEventKind::Reap, "c")
        .is_some());
    assert!(matches!(
        {
            let now = net.now();
            net.nodes[0].core.force_leave("zz", false, now)
        },
        Err(GossipError::UnknownMember { .. })
    ));
}

#[test]
fn failed_members_are_reaped_after_the_reconnect_timeout() {
    let cfg = CoreConfig {
        reconnect_timeout: 60 * SEC,
        ..CoreConfig::lan()
    };
    let mut net = three(&cfg, 19);
    net.stop(2);
    assert!(net.run_until(30 * SEC, |n| n.nodes[0].state_of("c")
        == Some(NodeState::Dead)));
    let failed_at = net.nodes[0]
        .last_event(MemberEventKind::Failed, "c")
        .unwrap();
    assert!(net.run_until(120 * SEC, |n| n.nodes[0].state_of("c").is_none()));
    let reaped_at = net.nodes[0].last_event(MemberEventKind::Reap, "c").unwrap();
    let waited = reaped_at - failed_at;
    assert!(
        waited > 60 * SEC && waited <= 60 * SEC + cfg.reap_interval,
        "{waited:?}"
    );
}

#[test]
fn tag_changes_are_updates() {
    let cfg = CoreConfig::lan();
    let mut net = three(&cfg, 23);
    let tags = Tags::from([("role".to_string(), "consul".to_string())]);
    net.call(1, |core, now| core.set_tags(tags.clone(), now).unwrap());
    assert!(net.run_until(3 * SEC, |n| {
        n.nodes
            .iter()
            .all(|x| x.core.member("b").is_some_and(|m| m.tags == tags))
    }));
    assert!(net.nodes[2]
        .last_event(MemberEventKind::Update, "b")
        .is_some());
    let huge = Tags::from([("k".to_string(), "v".repeat(600))]);
    assert!(matches!(
        {
            let now = net.now();
            net.nodes[1].core.set_tags(huge, now)
        },
        Err(GossipError::TagsTooLarge { .. })
    ));
}

#[test]
fn garbage_packets_are_counted_not_fatal() {
    let t0 = Instant::now();
    let (mut a, _) = joined_pair(t0, CoreConfig::lan());
    assert!(a.handle_packet(addr(9), &[], t0).is_empty());
    assert!(a.handle_packet(addr(9), &[0x01, 0xff, 0x00], t0).is_empty());
    assert!(a.handle_stream(addr(9), b"\x01junk", t0).is_err());
    let s = a.stats();
    assert_eq!((s.packets_malformed, s.streams_malformed), (2, 1));
    assert_eq!(a.member("b").unwrap().state, NodeState::Alive);
}

/// Tribune's suspicion past Lifeguard's `k`: each distinct member that reports
/// its own failed probe shortens the timer, down to the floor and no further; a
/// push/pull peer's view of a suspect we already suspect is hearsay and does not
/// count; and the accuser itself never does.
#[test]
fn confirmations_past_k_go_down_to_the_floor_and_hearsay_does_not_count() {
    let t0 = Instant::now();
    let cfg = CoreConfig::lan();
    let mut a = core("a", 1, cfg.clone(), t0);
    // Ten members: a, the suspect s, and m2..m9.
    let mut alive = vec![Message::Alive(wire::Alive {
        incarnation: 1,
        node: "s".into(),
        addr: addr(10),
        tags: Tags::new(),
    })];
    for i in 2..=9u8 {
        alive.push(Message::Alive(wire::Alive {
            incarnation: 1,
            node: format!("m{i}"),
            addr: addr(i),
            tags: Tags::new(),
        }));
    }
    a.handle_packet(addr(2), &packet(&alive), t0);
    assert_eq!(a.num_alive(), 10);
    let n = 10;
    let min = config::suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval);
    let floor = config::suspicion_floor(min, cfg.probe_interval);
    let k = config::suspicion_confirmations(cfg.suspicion_mult, n);
    let k_floor = config::suspicion_floor_confirmations(k, n);
    assert_eq!((k, k_floor), (2, 6));
    assert_eq!((min, floor), (4 * SEC, 2 * SEC));

    let suspect = |from: &str| {
        packet(&[Message::Suspect(Suspect {
            incarnation: 1,
            node: "s".into(),
            from: from.into(),
        })])
    };
    a.handle_packet(addr(2), &suspect("m2"), t0);
    let s = a.member("s").unwrap();
    assert_eq!(s.state, NodeState::Suspect);
    assert_eq!(
        s.suspicion_confirmations(),
        Some(0),
        "the accuser is not a confirmation"
    );
    assert_eq!(
        s.suspicion_deadline(),
        Some(t0 + min * cfg.suspicion_max_timeout_mult)
    );

    // m3 pushes its whole state: it suspects s too, but that is not a probe of
    // its own.
    let frame = wire::encode_stream(&wire::StreamMsg::PushPull(wire::PushPull {
        from: "m3".into(),
        join: false,
        members: vec![wire::PushMember {
            node: "s".into(),
            addr: addr(10),
            incarnation: 1,
            state: wire::WireState::Suspect,
            tags: Tags::new(),
            status_ltime: 0,
        }],
        member_ltime: 1,
        event_ltime: 0,
        events: vec![],
    }))
    .unwrap();
    a.handle_stream(addr(3), &frame, t0).unwrap();
    assert_eq!(a.member("s").unwrap().suspicion_confirmations(), Some(0));

    let mut last = a.member("s").unwrap().suspicion_deadline().unwrap();
    for (i, from) in ["m3", "m4", "m5", "m6", "m7", "m8", "m9"]
        .into_iter()
        .enumerate()
    {
        a.handle_packet(addr(3), &suspect(from), t0);
        let s = a.member("s").unwrap();
        let (count, deadline) = (
            s.suspicion_confirmations().unwrap(),
            s.suspicion_deadline().unwrap(),
        );
        assert_eq!(count, (i as u32 + 1).min(k_floor));
        assert!(deadline >= t0 + floor, "never below the floor");
        if count <= k {
            assert!(
                deadline >= t0 + min,
                "not below memberlist's minimum before k"
            );
        } else if count < k_floor {
            assert!(deadline < last, "each confirmation past k shortens it");
        }
        last = deadline;
    }
    assert_eq!(last, t0 + floor);
    // A repeat from a member already counted changes nothing.
    a.handle_packet(addr(4), &suspect("m4"), t0);
    assert_eq!(
        a.member("s").unwrap().suspicion_deadline(),
        Some(t0 + floor)
    );
    // And it is declared dead exactly at the floor.
    let eff = a.tick(t0 + floor - MS);
    assert!(member_events(&eff).is_empty());
    let eff = a.tick(t0 + floor);
    assert_eq!(
        member_events(&eff),
        vec![(
            MemberEventKind::Failed,
            "s".into(),
            MemberStatus::Failed as u8
        )]
    );
}

/// The probe ring: the successor is the next alive member by hash position,
/// wrapping around; suspects and the dead are skipped, so the ring heals in each
/// member's own view as soon as it learns of trouble.
#[test]
fn the_ring_successor_is_the_next_alive_member_by_hash() {
    let t0 = Instant::now();
    let mut a = core("a", 1, CoreConfig::lan(), t0);
    assert_eq!(a.ring_successor(), None, "alone");
    let names: Vec<String> = (2..=9u8).map(|i| format!("m{i}")).collect();
    let alive: Vec<Message> = names
        .iter()
        .zip(2u8..)
        .map(|(n, i)| {
            Message::Alive(wire::Alive {
                incarnation: 1,
                node: n.clone(),
                addr: addr(i),
                tags: Tags::new(),
            })
        })
        .collect();
    a.handle_packet(addr(2), &packet(&alive), t0);
    let mut ring: Vec<String> = names.clone();
    ring.push("a".into());
    ring.sort_by_key(|n| rounds::ring_position(n));
    let at = ring.iter().position(|n| n == "a").unwrap();
    let next = |k: usize| ring[(at + k) % ring.len()].clone();
    assert_eq!(a.ring_successor(), Some(next(1)));
    a.handle_packet(
        addr(2),
        &packet(&[Message::Suspect(Suspect {
            incarnation: 1,
            node: next(1),
            from: "m9".into(),
        })]),
        t0,
    );
    assert_eq!(a.ring_successor(), Some(next(2)), "a suspect is skipped");
    for k in 2..ring.len() - 1 {
        a.handle_packet(
            addr(2),
            &packet(&[Message::Dead(wire::Dead {
                incarnation: 1,
                node: next(k),
                from: "m9".into(),
            })]),
            t0,
        );
    }
    assert_eq!(
        a.ring_successor(),
        Some(next(ring.len() - 1)),
        "wraps around"
    );
}
