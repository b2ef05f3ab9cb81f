//! Configuration of one raft server: identity, data directory, timing and the
//! snapshot/compaction policy.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// Everything [`crate::start`] needs to know about the local server.
///
/// Build one with [`RaftConfig::new`] and override fields as needed; the defaults
/// mirror Consul's (`raft_snapshot_threshold` 16384, `raft_trailing_logs` 10240).
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This server's raft id. Must be non-zero and unique in the cluster.
    pub id: u64,
    /// Directory owned by this node: `raft/` holds the RocksDB log and
    /// `snapshots/` the state-machine snapshots.
    pub data_dir: PathBuf,
    /// Length of one raft logical clock tick (default 100 ms).
    pub tick: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (default 10).
    pub election_tick: usize,
    /// Ticks between leader heartbeats (default 1). Must be below `election_tick`.
    pub heartbeat_tick: usize,
    /// Entries applied since the last snapshot before a new one is taken
    /// (default 16384). Zero disables automatic snapshots.
    pub snapshot_threshold: u64,
    /// The least time between two automatic snapshots (default zero: as soon as the
    /// threshold is reached). Consul's servers use `raft_snapshot_interval` (30 s):
    /// under a steady write load a snapshot serialises the whole state, so taking
    /// one every `snapshot_threshold` entries would cost more than the writes. The
    /// actual wait is stretched by a random 0–100%, as hashicorp/raft does.
    pub snapshot_interval: Duration,
    /// Entries kept in the log behind a snapshot so slow followers can catch up
    /// without a full snapshot transfer (default 10240).
    pub trailing_logs: u64,
    /// Create a configuration with this server as the only voter if the data
    /// directory is empty. Ignored when the directory already holds raft state.
    pub bootstrap: bool,
    /// Largest proposal accepted by [`crate::Raft::propose`] (default 16 MiB).
    pub max_proposal_bytes: usize,
    /// Soft limit on the bytes of entries in one append message (default 1 MiB).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower while replicating optimistically
    /// (default 256).
    pub max_inflight_msgs: usize,
}

impl RaftConfig {
    /// A configuration with Consul-like defaults for server `id` storing its state
    /// under `data_dir`. `bootstrap` defaults to `false`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            id,
            data_dir: data_dir.into(),
            tick: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 1,
            snapshot_threshold: 16384,
            snapshot_interval: Duration::ZERO,
            trailing_logs: 10240,
            bootstrap: false,
            max_proposal_bytes: 16 * 1024 * 1024,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
        }
    }

    /// Check the values raft-rs would otherwise reject (or panic on) later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDataDir);
        }
        if self.tick.is_zero() {
            return Err(ConfigError::ZeroTick);
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::ZeroHeartbeatTick);
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::ElectionTickTooSmall {
                election_tick: self.election_tick,
                heartbeat_tick: self.heartbeat_tick,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        Ok(())
    }

    /// Directory of the RocksDB instance holding the log and raft metadata.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }

    /// Directory of the snapshot files.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// The raft-rs configuration derived from this one; `applied` is where the
    /// state machine stands after restoring its snapshot.
    pub(crate) fn to_raft(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            // Proposals handled in one cycle extend the append already queued
            // for a peer instead of each sending its own: under write load the
            // leader otherwise sent about one message (and one acknowledgement
            // back) per write per follower.
            batch_append: true,
            ..raft::Config::default()
        }
    }
}

impl Default for RaftConfig {
    /// Defaults with `id` 0 and an empty `data_dir`, both of which must be set
    /// (validation rejects them); handy for `..RaftConfig::default()`.
    fn default() -> Self {
        RaftConfig::new(0, PathBuf::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RaftConfig::new(1, "/tmp/x").validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = RaftConfig::new(0, "/tmp/x");
        assert_eq!(c.validate(), Err(ConfigError::ZeroId));
        let empty = RaftConfig {
            id: 1,
            ..RaftConfig::default()
        };
        assert_eq!(empty.validate(), Err(ConfigError::EmptyDataDir));
        c.id = 1;
        c.election_tick = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionTickTooSmall { .. })
        ));
        c.election_tick = 10;
        c.tick = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroTick));
    }
}
