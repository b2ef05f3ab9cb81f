//! The server role: consensus + state + KV validation + leader duties, served through
//! the [`ServerApi`](tribune_rpc::ServerApi) trait.
//!
//! - [`Server::start`] opens (or creates) the raft log and snapshots under the data
//!   directory, restores the latest snapshot, replays the log tail and starts the raft
//!   thread. With no data directory (`-dev`) everything lives in a temporary directory
//!   removed on shutdown.
//! - Writes are validated (`tribune_kv`), encoded as `state::Command`s and proposed;
//!   the caller gets the apply outcome once the entry is committed and applied.
//! - Reads answer from the in-memory state, blocking on its watch points per the
//!   query options ([`blocking`]).
//! - When this server becomes leader it registers itself in the catalog (node,
//!   `serfHealth`, the `consul` service), creates the Connect CA root once, and
//!   garbage-collects KV tombstones ([`leader`]), and keeps TTL session timers.
//! - [`Server::reconcile`] makes the catalog follow gossip membership (`reconcile`).
//! - Requests from clients pass the rate limits of `limits.request_limits` first
//!   ([`rate`]).
//! - Operator snapshots (`/v1/snapshot`) stream through temporary files: an archive
//!   is never held whole in memory; a restore holds the state it carries, as raft
//!   replicates it in one entry (`snapshot`).

mod blocking;
mod ca;
mod cluster;
mod config;
mod fsm;
mod leader;
mod operator;
pub mod rate;
mod reconcile;
mod server;
mod snapshot;

pub use cluster::{alive_server_addrs, raft_id};
pub use config::ServerConfig;
pub use server::{Server, ServerError};
