//! SWIM gossip membership for Tribune — the part of Consul that is Serf on
//! memberlist: failure detection with Lifeguard suspicion and local-health
//! awareness, member statuses alive/leaving/left/failed with tags, graceful leave
//! and force-leave, user events on a Lamport clock, push/pull state sync, and
//! AES-GCM encryption with a rotating keyring. Our own wire format; no wire
//! compatibility with Consul's gossip is intended.
//!
//! # Tour
//!
//! - [`core::Core`] is the protocol, sans-io: packets, stream exchanges, timer
//!   ticks and API calls go in with the current time; [`core::Effect`]s come out
//!   (send a datagram, run a push/pull, deliver an [`core::Event`]). Time and
//!   randomness are injected, so tests step it in manual time. It keeps
//!   memberlist's messages and knobs but detects crashes faster (probe ring,
//!   suspicion below memberlist's minimum with enough independent confirmations;
//!   see the [`core`] docs).
//! - [`Gossip`] is the tokio shell the agent runs: UDP and TCP on one port,
//!   encryption, a task driving the core; `members()`, `join`, `leave`,
//!   `force_leave`, `fire_event`, `subscribe`, `set_tags`, keyring operations.
//! - [`config::CoreConfig`] holds the timings: [`config::Profile::Lan`] is
//!   memberlist's `DefaultLANConfig` (probe 1 s / 500 ms, gossip 200 ms to 3,
//!   suspicion ×4, retransmit ×4, push/pull 30 s), `Wan` its WAN profile, plus
//!   Serf's reconnect (Consul: 72 h) and tombstone (24 h) timeouts.
//! - [`keyring::Keyring`] seals packets and frames; [`event::EventMessage`] is the
//!   Consul event record the agent carries as a user event payload.
//! - [`sim::SimNet`] runs many cores on a simulated lossy, partitionable network,
//!   with crashes, `SIGSTOP`-like pauses and traffic counters (the tests and
//!   `cargo xtask bench gossip` use it).
//!
//! ```
//! use std::time::Duration;
//! use tribune_gossip::config::CoreConfig;
//! use tribune_gossip::core::NodeState;
//! use tribune_gossip::sim::SimNet;
//!
//! let mut net = SimNet::new(1, Duration::from_millis(1));
//! let a = net.add_node("a", CoreConfig::lan());
//! let b = net.add_node("b", CoreConfig::lan());
//! net.join(b, a);
//! assert!(net.run_until(Duration::from_secs(5), |n| n.all_see(&["a", "b"], NodeState::Alive)));
//! net.stop(b);
//! assert!(net.run_until(Duration::from_secs(30), |n| n.nodes[a].state_of("b") == Some(NodeState::Dead)));
//! ```
//!
//! The shell, as an agent would run it:
//!
//! ```no_run
//! # async fn agent() -> Result<(), tribune_gossip::GossipError> {
//! use tribune_gossip::{Event, Gossip, GossipConfig, MemberEventKind, Profile};
//!
//! let cfg = GossipConfig::new("node-1", "10.0.0.1:8301".parse().unwrap(), Profile::Lan);
//! let gossip = Gossip::start(cfg).await?;
//! let mut events = gossip.subscribe();
//! gossip.join(&["10.0.0.2".to_string()]).await?;
//! while let Ok(ev) = events.recv().await {
//!     if let Event::Member { kind: MemberEventKind::Failed, member } = ev {
//!         println!("{} failed", member.name); // the leader marks serfHealth critical
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod core;
pub mod error;
pub mod event;
pub mod keyring;
mod shell;
pub mod sim;
pub mod snapshot;
pub mod vivaldi;
pub mod wire;

pub use crate::config::{CoreConfig, Profile};
pub use crate::core::{Event, MemberEventKind, MemberStatus, UserEvent};
pub use crate::error::GossipError;
pub use crate::event::{EventMessage, CONSUL_EVENT_PREFIX};
pub use crate::keyring::{keygen, Keyring};
pub use crate::shell::{Gossip, GossipConfig, GossipEvent, GossipStats};
