//! Observable state of a raft node: [`RaftStatus`] (leadership, indexes) and
//! [`RaftMetrics`] (counters, e.g. how many fsync'd batches group commit produced).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point-in-time view of the local raft node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftStatus {
    /// This server's id.
    pub id: u64,
    /// The leader this server currently follows (itself when leading).
    pub leader_id: Option<u64>,
    /// Current raft term.
    pub term: u64,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index applied to the state machine.
    pub applied: u64,
    /// Whether this server is the leader.
    pub is_leader: bool,
    /// `Some(0)` on the leader; on followers the time since the last message from
    /// the leader; `None` if no leader has been heard from since start.
    pub last_contact: Option<Duration>,
    /// First index still present in the log (earlier ones are compacted).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index of the latest snapshot on disk (0 if none).
    pub snapshot_index: u64,
    /// Voters in the applied configuration.
    pub voters: Vec<u64>,
    /// Learners (non-voting members) in the applied configuration.
    pub learners: Vec<u64>,
    /// Log index of the entry that made the newest membership this server
    /// applied, kept across restarts (for a membership that arrived in a
    /// leader's snapshot, the snapshot's index when it differs from the last
    /// one applied here; 0 only for data written before this was recorded).
    pub membership_index: u64,
    /// False once the raft thread has stopped (shutdown or fatal error).
    pub running: bool,
}

/// How far one member's log matches the leader's (from the leader's tracker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member's raft id.
    pub id: u64,
    /// Highest log index known to match the leader's.
    pub matched: u64,
    /// Whether it votes (otherwise a learner).
    pub voter: bool,
    /// Whether it answered the leader within the last election timeout.
    pub recent_active: bool,
}

/// Monotonic counters describing the work the raft thread has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftMetrics {
    /// RocksDB write batches written with `sync = true` (one fsync each).
    pub sync_batches: u64,
    /// Log entries persisted.
    pub entries_persisted: u64,
    /// Normal entries applied to the state machine.
    pub entries_applied: u64,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
}

/// Lock-free counters behind [`RaftMetrics`], shared with the raft thread.
#[derive(Debug, Default)]
pub(crate) struct MetricCounters {
    pub(crate) sync_batches: AtomicU64,
    pub(crate) entries_persisted: AtomicU64,
    pub(crate) entries_applied: AtomicU64,
    pub(crate) snapshots_taken: AtomicU64,
    pub(crate) snapshots_installed: AtomicU64,
}

impl MetricCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: counters are independent and only read for reporting.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RaftMetrics {
        RaftMetrics {
            sync_batches: self.sync_batches.load(Ordering::Relaxed),
            entries_persisted: self.entries_persisted.load(Ordering::Relaxed),
            entries_applied: self.entries_applied.load(Ordering::Relaxed),
            snapshots_taken: self.snapshots_taken.load(Ordering::Relaxed),
            snapshots_installed: self.snapshots_installed.load(Ordering::Relaxed),
        }
    }
}
