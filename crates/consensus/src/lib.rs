//! Tribune's consensus layer: a raft-rs node whose log lives in RocksDB, driving
//! a replicated [`StateMachine`]. This is the only crate that knows about raft-rs
//! or RocksDB; the rest of Tribune sees [`Raft`], [`StateMachine`] and
//! [`Transport`].
//!
//! # Tour
//!
//! - [`start`] validates a [`RaftConfig`], opens `data_dir/raft` (RocksDB) and
//!   `data_dir/snapshots`, bootstraps a single-voter cluster if asked and the
//!   directory is empty, restores the state machine from the newest intact
//!   snapshot, and spawns the raft thread.
//! - The raft thread (`driver`) owns raft-rs' `RawNode<RocksStorage>` and the
//!   state machine. It ticks every [`RaftConfig::tick`], and before each Ready it
//!   drains *all* queued commands, so concurrent proposals share one RocksDB
//!   write batch and one fsync (group commit; see [`RaftMetrics::sync_batches`]).
//!   Ready handling follows raft-rs' order exactly: send, install snapshot,
//!   apply committed, persist entries + hard state, send persisted messages,
//!   advance, then the LightReady.
//! - [`Raft::propose`] resolves once the entry is committed *and* applied
//!   locally, with [`StateMachine::apply`]'s output. Proposals are tracked by
//!   (index, term); a term change fails them with [`ProposeError::Dropped`].
//! - [`RocksStorage`] implements [`raft::Storage`]: log entries under 8-byte
//!   big-endian keys in a `log` column family, metadata in `meta`.
//! - Snapshots (`snapfile`): every [`RaftConfig::snapshot_threshold`] applied
//!   entries (or on [`Raft::snapshot_now`]) the state machine is serialised to a
//!   checksummed file (write tmp, fsync, rename, fsync dir; the newest two are
//!   kept) and the log is compacted to `index - trailing_logs`, never past the
//!   previous snapshot so a damaged newest file can fall back to the older one.
//! - Peers: the [`Transport`] sends encoded raft messages; the receiving side
//!   passes them to [`Raft::step`] (or a [`RaftInbox`], which does not keep the
//!   node alive). Membership changes go through [`Raft::change_membership`];
//!   servers that join later start without `bootstrap` and receive a snapshot.
//! - Observability: [`Raft::status`] / [`Raft::subscribe`] ([`RaftStatus`]:
//!   leader, term, commit/applied, last contact, log bounds, membership) and
//!   [`Raft::metrics`] ([`RaftMetrics`]).
//! - Failure: bad bytes on disk or in a committed entry are typed errors
//!   ([`CorruptionError`], [`SnapshotFileError`]), never panics. At startup they
//!   fail [`start`]; on the raft thread they stop it, proposals then fail with
//!   [`ProposeError::Fatal`] and [`Raft::fatal_error`] says why.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tribune_consensus::{start, NoopTransport, RaftConfig, RestoreError, StateMachine};
//!
//! struct Counter(u64);
//! impl StateMachine for Counter {
//!     type Output = u64;
//!     fn apply(&mut self, _index: u64, _data: &[u8]) -> Result<u64, tribune_consensus::ApplyError> { self.0 += 1; Ok(self.0) }
//!     fn snapshot(&self) -> Vec<u8> { self.0.to_be_bytes().to_vec() }
//!     fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), RestoreError> {
//!         let bytes: [u8; 8] = data.try_into().map_err(|e| RestoreError::Malformed(Box::new(e)))?;
//!         self.0 = u64::from_be_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! let mut config = RaftConfig::new(1, "/var/lib/tribune");
//! config.bootstrap = true;
//! let raft = start(config, Counter(0), NoopTransport)?;
//! let mut status = raft.subscribe();
//! status.wait_for(|s| s.is_leader).await?;
//! let applied = raft.propose(b"incr".to_vec()).await?;
//! assert_eq!(applied.output, 1);
//! raft.shutdown().await;
//! # Ok(()) }
//! ```

mod codec;
mod config;
mod driver;
mod error;
mod logger;
mod machine;
mod node;
mod pending;
mod reads;
#[cfg(test)]
mod sim;
mod snapfile;
mod status;
mod storage;
mod transport;

pub use config::RaftConfig;
pub use error::{
    ApplyError, ConfigError, ConsensusError, CorruptionError, InvalidMessage, ProposeError,
    RestoreError, SnapshotFileError, SnapshotRejection,
};
pub use machine::{Applied, SnapshotSink, SnapshotTask, StateMachine};
pub use node::{start, MembershipChange, Raft, RaftInbox};
pub use snapfile::{read_snapshot_file, SnapshotFile};
pub use status::{PeerProgress, RaftMetrics, RaftStatus};
pub use storage::{OpenedStorage, RocksStorage};
pub use transport::{NoopTransport, Transport};
