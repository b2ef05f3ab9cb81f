//! The simulation's tests: many seeds of random faults under client load, one
//! determinism check, and scripted scenarios for the situations random faults
//! reach only by luck (log repair after an isolated leader, snapshot catch-up,
//! membership change during a partition).
//!
//! Every test runs under [`guarded`], so a failure names its seed and how to
//! replay it. `SIM_SEED` also overrides the fixed seeds of the scenarios, to
//! run them under other schedules.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use raft::StateRole;
use tokio::sync::oneshot::error::TryRecvError;

use super::cluster::{RunReport, Sim, SimConfig};
use super::kv::Write;
use super::workload::Request;
use crate::error::ProposeError;
use crate::node::MembershipChange;

/// Seeds `linearizable_under_faults` runs by default (one in six has five
/// servers, see [`SimConfig::for_seed`]).
const DEFAULT_SEEDS: u64 = 60;
/// Steps of faults and load per seed, before healing and checking.
const DEFAULT_STEPS: u64 = 3_000;
/// Writes that must succeed per `DEFAULT_STEPS` steps, so a cluster that never
/// makes progress (and thus trivially never violates anything) cannot pass.
const MIN_WRITES: u64 = 20;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// Run `f` for `seed`; if it panics, panic again with the seed and how to
/// replay just that seed.
fn guarded<R>(test: &str, seed: u64, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!(
                "{test} failed with seed {seed}: {msg}\n\
                 replay: SIM_SEED={seed} cargo test -p tribune-consensus sim::tests::{test} \
                 -- --nocapture   (add SIM_TRACE=1 to print every event)"
            );
        }
    }
}

/// One random-fault run of `seed`.
fn random_run(seed: u64, steps: u64) -> RunReport {
    let min_writes = MIN_WRITES * steps / DEFAULT_STEPS;
    let cfg = SimConfig::for_seed(seed, steps);
    let mut sim = Sim::new(seed, cfg.clone());
    sim.bootstrap();
    sim.faults = true;
    sim.workload = true;
    sim.run(cfg.steps);
    let report = sim.finish();
    assert!(
        report.stats.writes_ok >= min_writes,
        "only {} writes succeeded ({cfg:?}): {:?}",
        report.stats.writes_ok,
        report.stats
    );
    report
}

#[test]
fn linearizable_under_faults() {
    let steps = env_u64("SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let started = Instant::now();
    let (mut ops, mut writes, mut reads, mut unknown, mut faults, mut snapshots) =
        (0, 0, 0, 0, 0, 0);
    let (mut stuck, mut stuck_fresh, mut stuck_writes) = (0, 0, 0);
    let (mut stuck_seeds, mut first_stuck) = (Vec::new(), None);
    for &seed in &seeds {
        let report = guarded("linearizable_under_faults", seed, || {
            random_run(seed, steps)
        });
        let s = &report.stats;
        ops += report.check.ops;
        writes += s.writes_ok;
        reads += s.reads_ok;
        unknown += s.writes_unknown;
        faults += s.partitions + s.crashes + s.transfers;
        snapshots += report.snapshots_installed;
        stuck += s.stuck_reads;
        stuck_writes += s.stuck_writes;
        stuck_fresh += s.stuck_reads_fresh_leader;
        if s.stuck_reads + s.stuck_writes > 0 {
            stuck_seeds.push(seed);
        }
        if first_stuck.is_none() {
            first_stuck = report.first_stuck.clone();
        }
        if seeds.len() == 1 {
            eprintln!("seed {seed}: {report:?}");
        }
    }
    eprintln!(
        "{} seeds x {steps} steps in {:.1?}: {ops} operations checked ({writes} acknowledged \
         writes, {reads} reads, {unknown} writes of unknown outcome), {faults} partitions, \
         crashes and leader transfers, {snapshots} snapshots installed, {stuck} reads stuck on \
         a leader ({stuck_fresh} of them sent before it committed in its term), \
         {stuck_writes} writes stuck on a leader (seeds {stuck_seeds:?})",
        seeds.len(),
        started.elapsed()
    );
    if let Some(first) = first_stuck {
        eprintln!("first stuck operation: {first}");
        // A leader that keeps leading must answer every read and write sent to it.
        panic!(
            "{stuck} reads and {stuck_writes} writes stuck on a leader that kept leading \
             (seeds {stuck_seeds:?}); rerun one with SIM_SEED=<seed> SIM_TRACE=1"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let run = || guarded("a_seed_replays_exactly", 5, || random_run(5, 800));
    let (a, b) = (run(), run());
    assert_eq!(a.digest, b.digest, "{a:?}\n{b:?}");
    assert_eq!(
        (a.steps, a.check.ops, a.entries),
        (b.steps, b.check.ops, b.entries)
    );
}

/// Reads served from any server's local state, without ReadIndex, are stale
/// on followers and deposed leaders: the whole pipeline (history, ledger,
/// checker) must catch that, or a green run would mean little.
#[test]
fn stale_local_reads_are_caught() {
    let caught = (0..8).find(|&seed| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let cfg = SimConfig::for_seed(seed, 1_000);
            let mut sim = Sim::new(seed, cfg.clone());
            sim.unsafe_local_reads = true;
            sim.bootstrap();
            sim.faults = true;
            sim.workload = true;
            sim.run(cfg.steps);
            sim.finish()
        }));
        match outcome {
            Ok(_) => false,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    msg.contains("linearizability violated"),
                    "seed {seed}: {msg}"
                );
                true
            }
        }
    });
    assert!(caught.is_some(), "no seed caught stale local reads");
}

/// An isolated leader keeps accepting writes it can never commit. The others
/// elect a new leader and commit other entries at the same indexes; once the
/// old leader is back, raft must overwrite its divergent suffix and keep what
/// was committed.
#[test]
fn isolated_leader_loses_uncommitted_entries() {
    let seed = env_u64("SIM_SEED").unwrap_or(11);
    guarded("isolated_leader_loses_uncommitted_entries", seed, || {
        let mut sim = Sim::new(seed, SimConfig::calm(3));
        sim.bootstrap();
        sim.workload = true;
        sim.run_until(10_000, "first writes", |s| s.stats.writes_ok >= 5);
        sim.workload = false;
        sim.run_until(10_000, "clients idle", |s| s.clients_idle());
        let old = sim.leader().expect("a leader");
        let before = sim.status(old).expect("leader is up");
        assert_eq!(
            before.commit, before.last_index,
            "nothing should be in flight"
        );
        let committed_terms: Vec<u64> = {
            let log = &sim.raw(old).expect("up").raft.raft_log;
            (before.first_index..=before.commit)
                .map(|i| log.term(i).expect("in the log"))
                .collect()
        };

        sim.isolate(old);
        let doomed: Vec<u64> = (0..3)
            .map(|client| {
                let write = Write::Put {
                    key: 0,
                    value: 100 + client as u8,
                };
                sim.submit(client, old, Request::Write(write))
                    .expect("old leader is up")
            })
            .collect();
        let (old_term, divergent) = {
            let raft = &sim.raw(old).expect("up").raft;
            assert_eq!(raft.state, StateRole::Leader);
            (
                raft.term,
                before.last_index + 1..=raft.raft_log.last_index(),
            )
        };
        assert_eq!(divergent.clone().count(), 3, "one entry per doomed write");

        // The majority moves on, past the indexes the old leader wrote.
        sim.run_until(20_000, "a new leader", |s| {
            s.leader().is_some_and(|l| l != old)
        });
        sim.workload = true;
        let target = *divergent.end() + 3;
        sim.run_until(
            30_000,
            "the majority commits past the divergent entries",
            |s| {
                s.leader()
                    .and_then(|l| s.status(l))
                    .is_some_and(|st| st.id != old && st.commit >= target)
            },
        );
        let raft = &sim.raw(old).expect("up").raft;
        assert_ne!(
            raft.state,
            StateRole::Leader,
            "check-quorum should depose it"
        );
        assert_eq!(
            raft.term, old_term,
            "pre-vote keeps an isolated server's term"
        );

        sim.heal();
        sim.finish();
        let log = &sim.raw(old).expect("up").raft.raft_log;
        for index in divergent {
            assert_ne!(
                log.term(index).expect("in the log"),
                old_term,
                "divergent entry {index} survived on the old leader"
            );
        }
        for (offset, term) in committed_terms.iter().enumerate() {
            let index = before.first_index + offset as u64;
            assert_eq!(
                log.term(index).expect("in the log"),
                *term,
                "committed entry {index} changed"
            );
        }
        for op in doomed {
            assert!(
                !sim.ledger_applied(op),
                "uncommitted write {op} was applied"
            );
        }
        for id in 1..=3 {
            let value = sim.value(id, 0);
            assert!(
                !matches!(value, Some(v) if v >= 100),
                "server {id} has {value:?}"
            );
        }
    });
}

/// A server down while the others compact their logs past its last entry can
/// only catch up through a snapshot.
#[test]
fn lagging_server_catches_up_from_a_snapshot() {
    let seed = env_u64("SIM_SEED").unwrap_or(23);
    guarded("lagging_server_catches_up_from_a_snapshot", seed, || {
        let mut cfg = SimConfig::calm(3);
        cfg.snapshot_threshold = 8;
        cfg.trailing_logs = 2;
        let mut sim = Sim::new(seed, cfg);
        sim.bootstrap();
        sim.workload = true;
        sim.run_until(10_000, "first writes", |s| s.stats.writes_ok >= 3);
        let leader = sim.leader().expect("a leader");
        let lagger = (1..=3).find(|id| *id != leader).expect("a follower");
        let lag_last = sim.status(lagger).expect("up").last_index;
        sim.crash(lagger);
        sim.run_until(50_000, "the leader compacts past the crashed server", |s| {
            s.leader()
                .and_then(|l| s.status(l))
                .is_some_and(|st| st.first_index > lag_last + 1)
        });
        sim.restart(lagger);
        sim.finish();
        assert!(
            sim.metrics(lagger).snapshots_installed > 0,
            "server {lagger} caught up without a snapshot: {:?}",
            sim.metrics(lagger)
        );
    });
}

/// Remove one voter while another is partitioned away, under client load,
/// then heal. With five servers the remaining four keep a quorum throughout;
/// with three, the new configuration {leader, partitioned} has none until the
/// partition heals, and the removed server may still campaign.
#[test]
fn membership_change_during_partition() {
    for (servers, seed) in [(5, 31), (3, 37)] {
        let seed = env_u64("SIM_SEED").unwrap_or(seed);
        guarded("membership_change_during_partition", seed, || {
            remove_during_partition(servers, seed)
        });
    }
}

fn remove_during_partition(servers: u64, seed: u64) {
    let mut sim = Sim::new(seed, SimConfig::calm(servers as usize));
    sim.bootstrap();
    sim.workload = true;
    sim.run_until(10_000, "first writes", |s| s.stats.writes_ok >= 5);
    let leader = sim.leader().expect("a leader");
    let others: Vec<u64> = (1..=servers).filter(|id| *id != leader).collect();
    let (cut, removed) = (others[0], others[1]);
    sim.isolate(cut);
    let mut rx = sim.change_membership(leader, MembershipChange::Remove(removed));
    let mut answer = None;
    sim.run_until(20_000, "the removal to be answered", |_| {
        if answer.is_none() {
            answer = match rx.try_recv() {
                Ok(result) => Some(result),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Closed) => Some(Err(ProposeError::Shutdown)),
            };
        }
        answer.is_some()
    });
    answer
        .expect("answered")
        .unwrap_or_else(|e| panic!("removing {removed} failed: {e}"));
    let ok = sim.stats.writes_ok;
    if servers == 5 {
        sim.run_until(30_000, "progress without the partitioned server", |s| {
            s.stats.writes_ok >= ok + 5
        });
    } else {
        sim.run(3_000);
    }
    sim.heal();
    sim.run_until(30_000, "progress after healing", |s| {
        s.stats.writes_ok >= ok + 5
    });
    let report = sim.finish();
    let expected: Vec<u64> = (1..=servers).filter(|id| *id != removed).collect();
    for id in &expected {
        let status = sim.status(*id).expect("members are up");
        assert_eq!(status.voters, expected, "server {id}");
    }
    assert!(
        report.stats.writes_ok > ok,
        "no writes after the removal: {:?}",
        report.stats
    );
}
