//! A generic in-memory table engine for Tribune's state machine.
//!
//! - [`Table`]: rows keyed by string, persistent (O(1) clone, so a read snapshot is a
//!   pointer copy), with per-row create/modify indexes kept by the caller, the table's
//!   max index, and optional tombstones so a prefix's index never goes backwards after
//!   a delete.
//! - [`Watches`]: a registry of watch points by exact key and by key prefix; readers
//!   subscribe before they read ([`WatchSet`]) and writers [`Watches::notify`] after
//!   they publish, so a blocking query is woken only by changes to what it read.
//!
//! Nothing here knows about Consul. There is no async runtime: waiting uses
//! `tokio::sync::watch` only.

mod bloom;
pub mod table;
pub mod watch;

pub use table::{Table, Tombstone};
pub use watch::{Topic, WatchSet, Watches};
