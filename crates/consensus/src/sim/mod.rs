//! Deterministic simulation of a Tribune raft cluster, checked for
//! linearizability.
//!
//! The thread-based cluster tests (`tests/consensus/cluster.rs`) run servers in
//! real time, so they see the few interleavings the OS scheduler happens to
//! produce and cannot replay a failure. Here N real [`Driver`]s (raft-rs,
//! RocksDB, Ready handling, pending proposals, ReadIndex batching: everything
//! but the thread and its clock) run on the test thread, and one seeded RNG
//! decides every tick, delivery, loss, duplication, partition, crash and client
//! call. A failing seed replays exactly, step for step.
//!
//! Clients record what they were told; at the end the cluster is healed, must
//! converge (one leader, every member caught up, identical state machines), and
//! the history must be linearizable. Raft safety is also checked as it happens:
//! no two servers may ever apply different entries at one index.
//!
//! - [`linearizability`]: a reusable checker (Wing & Gong search, memoised).
//! - [`kv`]: the servers' key/value state machine, its model, and the ledger.
//! - [`net`]: the queueing transport and the faulty network.
//! - [`workload`]: clients, the history, and how it is checked.
//! - [`cluster`]: servers and the scheduler.
//!
//! Environment knobs for `linearizable_under_faults`: `SIM_SEED=<n>` runs just
//! seed n, `SIM_SEEDS=<n>` runs seeds 0..n (a longer soak), `SIM_STEPS=<n>`
//! changes the steps per seed, and `SIM_TRACE=1` prints every event.
//!
//! [`Driver`]: crate::driver::Driver

mod cluster;
mod kv;
mod linearizability;
mod net;
mod tests;
mod workload;
