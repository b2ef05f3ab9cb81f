//! Consul's data model on the `store` table engine, and the raft state machine.
//!
//! - [`Command`]: a raft log entry, encoded with an append-only numeric tag
//!   ([`Command::encode`] / [`Command::decode`]); unknown tags with the ignorable bit set
//!   are skipped so newer leaders can add commands older followers may ignore.
//! - [`StateStore`]: the in-memory state. [`StateStore::apply`] is deterministic and
//!   returns a typed outcome; [`StateStore::read`] answers a
//!   [`ReadRequest`](tribune_types::model::ops::ReadRequest) from an O(1) snapshot and
//!   subscribes the caller's [`WatchSet`](tribune_store::WatchSet) to exactly what it read.
//! - [`snapshot`]: the versioned, checksummed snapshot format.
//! - Sessions and KV locks (acquire/release, invalidation by destroy, TTL, node or check
//!   failure, lock-delay on the leader-stamped clock) and transactions, which run each
//!   operation through its single-operation code path on one working copy.
//! - Prepared queries ([`prepared_query`]): stored, looked up by ID, name or
//!   template prefix, and run against the catalog from one snapshot.
//!
//! No async runtime here: blocking is the caller's job, using the watch set.

pub mod command;
mod db;
mod prepared_query;
mod query;
mod session;
pub mod snapshot;
mod txn;

pub use command::{Command, DecodeError, Entry};
pub use db::StateStore;
pub use snapshot::{RecordStats, SnapshotContents, SnapshotError, SnapshotJob};
