//! An in-process simulated network for driving many [`Core`]s with manual time:
//! no sockets, no tokio, seeded randomness, so a run is reproducible.
//!
//! Datagrams travel with a fixed latency and can be dropped at random, across a
//! partition, or because either end is stopped; push/pull streams complete
//! instantly when both ends can reach each other (TCP being reliable, random loss
//! does not apply to them). Every event a node delivers is recorded with its time,
//! and the datagrams sent can be recorded decoded, for tests that assert on the
//! exact exchange. [`SimTraffic`] counts what was sent, in bytes, for the
//! bandwidth figures of `cargo xtask bench gossip`.
//!
//! Two ways for a node to stop running:
//!
//! - [`SimNet::stop`] is a crash (`kill -9`): datagrams to it are lost.
//! - [`SimNet::pause`] is `SIGSTOP` (a process starved of CPU): it neither ticks
//!   nor reads, but the kernel still queues datagrams sent to it, up to its
//!   receive buffer ([`PAUSED_RECV_BUFFER`]); [`SimNet::resume`] hands them over.
//!   A push/pull to a paused node fails, as the stream would time out.
//!
//! It lives in the library (not only in tests) so that higher layers — the agent,
//! the server's reconciliation — can test against real gossip behaviour.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::CoreConfig;
use crate::core::{Core, Effect, Event, LocalNode, MemberEventKind, NodeState};
use crate::wire::{self, Message, Tags};

/// Receive buffer of a paused node, in bytes: Linux's default `SO_RCVBUF`
/// (`net.core.rmem_default`, 212,992), which the shell's UDP socket keeps.
pub const PAUSED_RECV_BUFFER: usize = 212_992;

/// What one queued datagram costs against [`PAUSED_RECV_BUFFER`] beyond its
/// payload. The kernel charges a buffer's "truesize" (the payload plus its
/// `sk_buff` and shared info, about 576 bytes on x86-64 for a loopback
/// datagram), so many small pings fill the buffer sooner than their bytes alone
/// would.
pub const PAUSED_DATAGRAM_OVERHEAD: usize = 576;

/// Traffic counters of a [`SimNet`] since it was created (all nodes together).
///
/// Bytes are plaintext wire bytes as the core produced them: encryption adds
/// [`crate::keyring::SEAL_OVERHEAD`] per datagram and per stream frame, and the
/// UDP/IP or TCP headers come on top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimTraffic {
    /// Datagrams sent (also those the network then dropped).
    pub datagrams: u64,
    /// Their bytes.
    pub datagram_bytes: u64,
    /// Push/pull exchanges that took place (request and reply).
    pub streams: u64,
    /// Bytes of both frames of those exchanges.
    pub stream_bytes: u64,
    /// Datagrams lost because a paused node's receive buffer was full.
    pub recv_buffer_overflows: u64,
}

/// One simulated member.
#[derive(Debug)]
pub struct SimNode {
    /// Its core.
    pub core: Core,
    /// Its address.
    pub addr: SocketAddr,
    /// Events it delivered, with the time.
    pub events: Vec<(Instant, Event)>,
    /// Whether it runs (a stopped node neither ticks nor receives).
    pub up: bool,
    /// Whether it is paused ([`SimNet::pause`]): up, but neither ticking nor
    /// reading; datagrams to it wait in `held`.
    pub paused: bool,
    /// Whether it reported [`Effect::LeaveDone`].
    pub leave_done: bool,
    wake: Instant,
    held: VecDeque<Flight>,
    held_bytes: usize,
}

impl SimNode {
    /// When `name` last had an event of `kind` here.
    pub fn last_event(&self, kind: MemberEventKind, name: &str) -> Option<Instant> {
        self.events
            .iter()
            .rev()
            .find(|(_, e)| {
                matches!(e, Event::Member { kind: k, member } if *k == kind && member.name == name)
            })
            .map(|(t, _)| *t)
    }

    /// The state this node holds for `name`.
    pub fn state_of(&self, name: &str) -> Option<NodeState> {
        self.core.member(name).map(|m| m.state)
    }

    /// User events delivered here, as `(name, payload)`.
    pub fn user_events(&self) -> Vec<(String, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::User(u) => Some((u.name.clone(), u.payload.clone())),
                Event::Member { .. } => None,
            })
            .collect()
    }
}

/// A datagram as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPacket {
    /// Send time.
    pub at: Instant,
    /// Sender index.
    pub from: usize,
    /// Receiver index (`None` for an address no node has).
    pub to: Option<usize>,
    /// Decoded messages, first the packet's own, then piggybacked broadcasts.
    pub msgs: Vec<Message>,
    /// Whether the network dropped it.
    pub dropped: bool,
}

#[derive(Debug)]
struct Flight {
    from: SocketAddr,
    to: usize,
    packet: Vec<u8>,
}

/// The simulated network.
pub struct SimNet {
    /// The members, by index.
    pub nodes: Vec<SimNode>,
    /// Datagrams sent, when recording.
    pub sent: Vec<SentPacket>,
    /// Whether to record datagrams.
    pub record: bool,
    /// What has been sent so far.
    pub traffic: SimTraffic,
    start: Instant,
    now: Instant,
    rng: StdRng,
    seed: u64,
    latency: Duration,
    loss: f64,
    groups: Option<Vec<usize>>,
    in_flight: BTreeMap<(Instant, u64), Flight>,
    flight_seq: u64,
    by_addr: HashMap<SocketAddr, usize>,
}

impl SimNet {
    /// An empty network; `seed` drives loss and every node's RNG.
    pub fn new(seed: u64, latency: Duration) -> Self {
        let start = Instant::now();
        Self {
            nodes: Vec::new(),
            sent: Vec::new(),
            record: false,
            traffic: SimTraffic::default(),
            start,
            now: start,
            rng: StdRng::seed_from_u64(seed),
            seed,
            latency,
            loss: 0.0,
            groups: None,
            in_flight: BTreeMap::new(),
            flight_seq: 0,
            by_addr: HashMap::new(),
        }
    }

    /// Current simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Add a node named `name` at a made-up address.
    pub fn add_node(&mut self, name: &str, cfg: CoreConfig) -> usize {
        let i = self.nodes.len();
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8)),
            8301,
        );
        let core = self.make_core(name, addr, cfg, i as u64);
        self.by_addr.insert(addr, i);
        let wake = core.next_wakeup();
        self.nodes.push(SimNode {
            core,
            addr,
            events: Vec::new(),
            up: true,
            paused: false,
            leave_done: false,
            wake,
            held: VecDeque::new(),
            held_bytes: 0,
        });
        i
    }

    fn make_core(&self, name: &str, addr: SocketAddr, cfg: CoreConfig, salt: u64) -> Core {
        let local = LocalNode {
            name: name.to_owned(),
            addr,
            tags: Tags::new(),
        };
        let seed = self.seed.wrapping_mul(1_000_003).wrapping_add(salt);
        match Core::new(cfg, local, seed, self.now) {
            Ok(core) => core,
            Err(e) => panic!("simulated node {name} has an invalid config: {e}"),
        }
    }

    /// Replace node `i` by a fresh process with the same name and address (a
    /// restart: incarnation and clocks start over), and bring it up.
    pub fn restart(&mut self, i: usize, cfg: CoreConfig) {
        let name = self.nodes[i].core.name().to_owned();
        let salt = 10_000 + i as u64 + self.flight_seq;
        let core = self.make_core(&name, self.nodes[i].addr, cfg, salt);
        let node = &mut self.nodes[i];
        node.wake = core.next_wakeup();
        node.core = core;
        node.up = true;
        node.paused = false;
        node.held.clear();
        node.held_bytes = 0;
        node.leave_done = false;
    }

    /// Random datagram loss, 0.0 to 1.0.
    pub fn set_loss(&mut self, p: f64) {
        self.loss = p;
    }

    /// Split the network: nodes in different groups cannot reach each other.
    /// Nodes not listed form one more group together.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut of = vec![usize::MAX; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                of[i] = g;
            }
        }
        self.groups = Some(of);
    }

    /// Undo [`SimNet::partition`].
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Stop node `i` without leaving (a crash).
    pub fn stop(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.up = false;
        // A killed process's socket buffer goes with it.
        node.paused = false;
        node.held.clear();
        node.held_bytes = 0;
    }

    /// Pause node `i` (`SIGSTOP`): no ticks, and datagrams to it are held, up to
    /// [`PAUSED_RECV_BUFFER`], until [`SimNet::resume`].
    pub fn pause(&mut self, i: usize) {
        if self.nodes[i].up {
            self.nodes[i].paused = true;
        }
    }

    /// Resume a paused node (`SIGCONT`). Its overdue timers fire first, then the
    /// held datagrams are read in arrival order, all at the current time. The
    /// shell's loop picks at random among ready inputs, so with dozens of
    /// datagrams waiting its timers fire after at most a few of them: handling
    /// the timers first is the stale-view worst case.
    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.paused {
            return;
        }
        node.paused = false;
        node.held_bytes = 0;
        let held = std::mem::take(&mut node.held);
        for flight in held {
            self.flight_seq += 1;
            self.in_flight.insert((self.now, self.flight_seq), flight);
        }
    }

    /// Datagrams waiting in node `i`'s receive buffer while it is paused.
    pub fn held(&self, i: usize) -> usize {
        self.nodes[i].held.len()
    }

    /// Run an API call on node `i` and route its effects.
    pub fn call(&mut self, i: usize, f: impl FnOnce(&mut Core, Instant) -> Vec<Effect>) {
        let now = self.now;
        let effects = f(&mut self.nodes[i].core, now);
        self.process(i, effects);
    }

    /// Node `i` joins through node `j`.
    pub fn join(&mut self, i: usize, j: usize) {
        let to = self.nodes[j].addr;
        self.call(i, |core, now| core.join(&[to], now));
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let same_side = match &self.groups {
            Some(g) => g[a] == g[b],
            None => true,
        };
        self.nodes[a].up && self.nodes[b].up && same_side
    }

    fn process(&mut self, origin: usize, effects: Vec<Effect>) {
        let mut work = VecDeque::from([(origin, effects)]);
        while let Some((i, effects)) = work.pop_front() {
            for effect in effects {
                match effect {
                    Effect::Send { to, packet } => self.send(i, to, packet),
                    Effect::PushPull { to, request, join } => {
                        let Some(&j) = self.by_addr.get(&to) else {
                            continue;
                        };
                        // A paused process does not answer: the stream times out.
                        if !self.reachable(i, j) || self.nodes[j].paused {
                            continue;
                        }
                        let (now, from) = (self.now, self.nodes[i].addr);
                        let Ok((reply, remote)) =
                            self.nodes[j].core.handle_stream(from, &request, now)
                        else {
                            continue;
                        };
                        self.traffic.streams += 1;
                        self.traffic.stream_bytes += (request.len() + reply.len()) as u64;
                        work.push_back((j, remote));
                        if let Ok(local) = self.nodes[i]
                            .core
                            .handle_stream_reply(to, &reply, join, now)
                        {
                            work.push_back((i, local));
                        }
                    }
                    Effect::Event(ev) => self.nodes[i].events.push((self.now, ev)),
                    Effect::LeaveDone => self.nodes[i].leave_done = true,
                }
            }
            self.nodes[i].wake = self.nodes[i].core.next_wakeup();
        }
    }

    fn send(&mut self, i: usize, to: SocketAddr, packet: Vec<u8>) {
        let j = self.by_addr.get(&to).copied();
        let lost = self.loss > 0.0 && self.rng.gen::<f64>() < self.loss;
        let dropped = match j {
            Some(j) => lost || !self.reachable(i, j),
            None => true,
        };
        self.traffic.datagrams += 1;
        self.traffic.datagram_bytes += packet.len() as u64;
        if self.record {
            let msgs = wire::decode_packet(&packet)
                .map(|ms| ms.into_iter().filter_map(Result::ok).collect())
                .unwrap_or_default();
            self.sent.push(SentPacket {
                at: self.now,
                from: i,
                to: j,
                msgs,
                dropped,
            });
        }
        if let (false, Some(to)) = (dropped, j) {
            self.flight_seq += 1;
            let flight = Flight {
                from: self.nodes[i].addr,
                to,
                packet,
            };
            self.in_flight
                .insert((self.now + self.latency, self.flight_seq), flight);
        }
    }

    /// Advance to the next delivery or wakeup and handle it; `false` if there is
    /// nothing left to do before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let next_flight = self.in_flight.keys().next().map(|k| k.0);
        let next_wake = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up && !n.paused)
            .min_by_key(|(_, n)| n.wake)
            .map(|(i, n)| (n.wake, i));
        let flight_first = match (next_flight, next_wake) {
            (Some(f), Some((w, _))) => f <= w,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if flight_first {
            let Some((&key, _)) = self.in_flight.iter().next() else {
                return false;
            };
            if key.0 > limit {
                return false;
            }
            let Some(flight) = self.in_flight.remove(&key) else {
                return false;
            };
            self.now = self.now.max(key.0);
            let to = &mut self.nodes[flight.to];
            if !to.up {
                return true;
            }
            if to.paused {
                let cost = flight.packet.len() + PAUSED_DATAGRAM_OVERHEAD;
                if to.held_bytes + cost > PAUSED_RECV_BUFFER {
                    self.traffic.recv_buffer_overflows += 1;
                } else {
                    to.held_bytes += cost;
                    to.held.push_back(flight);
                }
                return true;
            }
            let now = self.now;
            let effects =
                self.nodes[flight.to]
                    .core
                    .handle_packet(flight.from, &flight.packet, now);
            self.process(flight.to, effects);
        } else if let Some((wake, i)) = next_wake {
            if wake > limit {
                return false;
            }
            self.now = self.now.max(wake);
            let now = self.now;
            let effects = self.nodes[i].core.tick(now);
            self.process(i, effects);
        }
        true
    }

    /// Run for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = self.now.max(limit);
    }

    /// Run until `done` holds or `d` has passed; returns whether it held.
    /// `done` is checked every 50 ms of simulated time (checking after every
    /// delivery would dominate the cost of large runs); use event timestamps for
    /// exact timings.
    pub fn run_until(&mut self, d: Duration, mut done: impl FnMut(&SimNet) -> bool) -> bool {
        let limit = self.now + d;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= limit {
                return false;
            }
            let step = Duration::from_millis(50).min(limit - self.now);
            self.run_for(step);
        }
    }

    /// Whether every running node sees every node of `names` in `state`.
    pub fn all_see(&self, names: &[&str], state: NodeState) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .all(|n| names.iter().all(|name| n.state_of(name) == Some(state)))
    }

    /// Names of all nodes.
    pub fn names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.core.name().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn pair() -> SimNet {
        let mut net = SimNet::new(3, Duration::from_millis(1));
        let a = net.add_node("a", CoreConfig::lan());
        let b = net.add_node("b", CoreConfig::lan());
        net.join(b, a);
        assert!(net.run_until(5 * SEC, |n| n.all_see(&["a", "b"], NodeState::Alive)));
        net
    }

    #[test]
    fn a_paused_node_reads_what_was_sent_to_it_when_resumed() {
        let mut net = pair();
        net.pause(1);
        net.run_for(3 * SEC);
        let held = net.held(1);
        assert!(held > 0, "a's probes wait in b's buffer");
        let before = net.nodes[1].core.stats().packets_received;
        let bytes_before = net.traffic.datagram_bytes;
        net.resume(1);
        net.run_for(Duration::from_millis(10));
        assert_eq!(net.held(1), 0);
        let read = net.nodes[1].core.stats().packets_received - before;
        assert!(read >= held as u64, "read {read} of {held} held");
        assert!(net.traffic.datagram_bytes > bytes_before, "b answered");
        assert_eq!(net.traffic.recv_buffer_overflows, 0);
    }

    #[test]
    fn a_crash_loses_the_buffer_and_later_datagrams() {
        let mut net = pair();
        net.pause(1);
        net.run_for(3 * SEC);
        net.stop(1);
        assert_eq!(net.held(1), 0);
        net.run_for(3 * SEC);
        assert_eq!(net.held(1), 0);
        assert!(!net.nodes[1].paused);
    }
}
