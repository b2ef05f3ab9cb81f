//! A seeded simulation of lock contention against the state machine: clients create
//! sessions, acquire, release, get killed (their session destroyed or expired behind
//! their back, so they keep believing they hold the lock), see their node's
//! `serfHealth` flap, and overwrite the key with plain PUTs, while the leader clock
//! jumps around. After every step it checks the safety properties a lock user relies on:
//!
//! - a key's `Session` always names a live session;
//! - a `(key, LockIndex)` is only ever granted to one session (release behavior);
//! - no two clients that believe they hold the lock share a `LockIndex`, and the
//!   current holder's acquisition token (`ModifyIndex`) is the largest of them, so a
//!   resource fencing on it refuses every stale believer (delete behavior, too, where
//!   the key's `LockIndex` restarts after a deletion);
//! - no acquisition succeeds inside a lock-delay started by an invalidation.

use super::{check, register};
use std::collections::HashMap;
use std::time::Duration;
use tribune_state::{Command, StateStore};
use tribune_types::model::ops::*;
use tribune_types::model::*;
use tribune_types::{HealthStatus, SessionId};

/// xorshift64*: a few lines, no dependency, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Clone)]
struct Client {
    session: Option<SessionId>,
    /// `(LockIndex, ModifyIndex)` of the acquisition it believes still holds.
    belief: Option<(u64, u64)>,
}

struct Sim {
    store: StateStore,
    index: u64,
    now_ms: u64,
    next_id: u128,
    behavior: SessionBehavior,
    key: &'static str,
    clients: Vec<Client>,
    /// LockIndex → the session it was granted to.
    granted: HashMap<u64, SessionId>,
    /// No acquisition may succeed before this (the last lock-delay started).
    delay_until: u64,
    /// Each session's lock-delay, ms.
    delays: HashMap<SessionId, u64>,
    /// What happened, to show the run exercised the dangerous cases.
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    acquired: u64,
    refused_in_delay: u64,
    stale_believers: u64,
}

impl Sim {
    fn apply(&mut self, req: WriteRequest) -> Result<WriteOutcome, WriteRejected> {
        self.index += 1;
        self.store
            .apply_stamped(self.index, self.now_ms, &Command::Request(req))
    }

    fn entry(&self) -> Option<KvEntry> {
        match self
            .store
            .read(
                &ReadRequest::KvGet {
                    key: self.key.into(),
                },
                None,
            )
            .0
        {
            ReadResult::Kv(mut v) => v.pop(),
            other => panic!("{other:?}"),
        }
    }

    fn live(&self, id: SessionId) -> bool {
        match self.store.read(&ReadRequest::SessionGet { id }, None).0 {
            ReadResult::Sessions(v) => !v.is_empty(),
            other => panic!("{other:?}"),
        }
    }

    /// Records the lock-delay that invalidating `holder` (if it holds the key) starts.
    fn note_invalidation(&mut self, holder: SessionId) {
        if self.entry().is_some_and(|e| e.session == Some(holder)) {
            let d = self.delays.get(&holder).copied().unwrap_or(0);
            if d > 0 {
                self.delay_until = self.delay_until.max(self.now_ms + d);
            }
        }
    }

    fn holder_bound_to_serf(&self) -> Option<SessionId> {
        let holder = self.entry()?.session?;
        match self
            .store
            .read(&ReadRequest::SessionGet { id: holder }, None)
            .0
        {
            ReadResult::Sessions(v) if v.first()?.node_checks.iter().any(|c| c == "serfHealth") => {
                Some(holder)
            }
            _ => None,
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        self.now_ms += rng.below(3_000);
        let c = rng.below(self.clients.len() as u64) as usize;
        match (rng.below(10), self.clients[c].session) {
            (_, None) => {
                self.next_id += 1;
                let id = SessionId(uuid::Uuid::from_u128(self.next_id));
                let serf = rng.below(2) == 0;
                let delay = [0, 5_000, 15_000][rng.below(3) as usize];
                let created = self.apply(WriteRequest::SessionCreate(Session {
                    id,
                    node: "n1".into(),
                    lock_delay: Duration::from_millis(delay),
                    behavior: self.behavior,
                    node_checks: if serf {
                        vec!["serfHealth".into()]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                }));
                // serfHealth may be critical right now: creation is refused then.
                if created.is_ok() {
                    self.clients[c].session = Some(id);
                    self.delays.insert(id, delay);
                }
            }
            (0..=3, Some(id)) => {
                let r = self.apply(WriteRequest::KvSet {
                    entry: KvEntry {
                        key: self.key.into(),
                        value: vec![c as u8],
                        ..Default::default()
                    },
                    mode: KvSetMode::Acquire(id),
                });
                match r {
                    Ok(WriteOutcome::Done) => {
                        self.stats.acquired += 1;
                        assert!(
                            self.now_ms >= self.delay_until,
                            "acquired at {} inside a lock-delay ending at {}",
                            self.now_ms,
                            self.delay_until
                        );
                        let e = self.entry().expect("acquired key exists");
                        assert_eq!(e.session, Some(id));
                        if self.behavior == SessionBehavior::Release {
                            let first = *self.granted.entry(e.lock_index).or_insert(id);
                            assert_eq!(first, id, "LockIndex {} granted twice", e.lock_index);
                        }
                        // A re-acquire by the holder keeps its original token.
                        let keep = self.clients[c].belief.filter(|(li, _)| *li == e.lock_index);
                        self.clients[c].belief =
                            Some(keep.unwrap_or((e.lock_index, e.raft.modify_index)));
                    }
                    Ok(_) => {
                        if self.now_ms < self.delay_until {
                            self.stats.refused_in_delay += 1;
                        }
                    }
                    // The session died behind the client's back: it finds out now.
                    Err(WriteRejected::Failed(m)) if m.starts_with("invalid session") => {
                        self.clients[c] = Client::default();
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            (4..=5, Some(id)) => {
                let r = self.apply(WriteRequest::KvSet {
                    entry: KvEntry {
                        key: self.key.into(),
                        ..Default::default()
                    },
                    mode: KvSetMode::Release(id),
                });
                if r == Ok(WriteOutcome::Done) {
                    assert!(
                        self.clients[c].belief.is_some(),
                        "released a lock it never took"
                    );
                }
                self.clients[c].belief = None;
            }
            // Killed or expired: the session goes, the client keeps believing.
            (6, Some(id)) => {
                self.note_invalidation(id);
                self.apply(WriteRequest::SessionDestroy { id }).unwrap();
            }
            (7, Some(_)) => {
                let status = if rng.below(2) == 0 {
                    HealthStatus::Critical
                } else {
                    HealthStatus::Passing
                };
                if status == HealthStatus::Critical {
                    if let Some(h) = self.holder_bound_to_serf() {
                        self.note_invalidation(h);
                    }
                }
                let Command::Request(flap) =
                    register("n1", None, vec![check("serfHealth", "", status)])
                else {
                    unreachable!("register builds a request")
                };
                self.apply(flap).unwrap();
            }
            // Locks are advisory: a plain PUT overwrites the value, never the holder.
            (_, Some(_)) => {
                let before = self.entry().map(|e| (e.session, e.lock_index));
                self.apply(WriteRequest::KvSet {
                    entry: KvEntry {
                        key: self.key.into(),
                        value: b"plain".to_vec(),
                        ..Default::default()
                    },
                    mode: KvSetMode::Set,
                })
                .unwrap();
                if let Some(before) = before {
                    let after = self.entry().map(|e| (e.session, e.lock_index));
                    assert_eq!(after, Some(before));
                }
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let entry = self.entry();
        if let Some(holder) = entry.as_ref().and_then(|e| e.session) {
            assert!(self.live(holder), "the key names a dead session");
        }
        let believers: Vec<(u64, u64)> = self.clients.iter().filter_map(|c| c.belief).collect();
        if believers.len() > 1 {
            self.stats.stale_believers += 1;
        }
        if self.behavior == SessionBehavior::Release {
            let mut seen: Vec<u64> = believers.iter().map(|b| b.0).collect();
            seen.sort_unstable();
            let n = seen.len();
            seen.dedup();
            assert_eq!(
                seen.len(),
                n,
                "two believers share a LockIndex: {believers:?}"
            );
        }
        // The live holder's token is the largest: fencing on it refuses stale believers.
        if let Some(e) = entry.filter(|e| e.session.is_some()) {
            let holder = self
                .clients
                .iter()
                .find(|c| c.session == e.session)
                .and_then(|c| c.belief)
                .expect("the holder knows it holds the lock");
            assert!(
                believers.iter().all(|b| b.1 <= holder.1),
                "a stale believer has a newer token: {believers:?} vs {holder:?}"
            );
        }
    }
}

fn run(seed: u64, behavior: SessionBehavior, key: &'static str) -> Stats {
    let store = StateStore::new();
    store
        .apply(
            1,
            &register(
                "n1",
                None,
                vec![check("serfHealth", "", HealthStatus::Passing)],
            ),
        )
        .unwrap();
    let mut sim = Sim {
        store,
        index: 1,
        now_ms: 1_000,
        next_id: 0,
        behavior,
        key,
        clients: vec![Client::default(); 5],
        granted: HashMap::new(),
        delay_until: 0,
        delays: HashMap::new(),
        stats: Stats::default(),
    };
    let mut rng = Rng(seed | 1);
    for _ in 0..3_000 {
        sim.step(&mut rng);
    }
    sim.stats
}

/// Runs 20 seeds and checks that, together, they hit the cases that matter.
fn run_seeds(base: u64, behavior: SessionBehavior, key: &'static str) {
    let mut total = Stats::default();
    for seed in 1..=20 {
        let s = run(seed * base, behavior, key);
        total.acquired += s.acquired;
        total.refused_in_delay += s.refused_in_delay;
        total.stale_believers += s.stale_believers;
    }
    assert!(total.acquired > 1_000, "{total:?}");
    assert!(total.refused_in_delay > 50, "{total:?}");
    assert!(total.stale_believers > 100, "{total:?}");
}

#[test]
fn lock_safety_holds_under_kills_flaps_and_overwrites_release() {
    run_seeds(7919, SessionBehavior::Release, "lock");
}

#[test]
fn lock_safety_holds_under_kills_flaps_and_overwrites_delete() {
    run_seeds(104_729, SessionBehavior::Delete, "eph");
}
