//! The crate's one error enum.
//!
//! Bad packets from the network are not errors here: they are dropped, logged and
//! counted (see [`crate::GossipStats`]), because a peer must never be able to make a
//! local call fail or the node stop.

use std::path::PathBuf;

/// Why a gossip operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// A configuration value the protocol cannot run with.
    #[error("invalid gossip configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Encoded tags exceed memberlist's `MetaMaxSize`.
    #[error("encoded length of tags exceeds limit of {limit} bytes ({size} bytes)")]
    TagsTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A user event larger than the configured limit (Serf's wording).
    #[error("user event exceeds configured limit of {limit} bytes before encoding ({size} bytes)")]
    UserEventTooLarge {
        /// `name + payload` or encoded size.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A user event without a name.
    #[error("user event missing name")]
    UserEventMissingName,
    /// `force_leave` of a member this node does not know.
    #[error("no member named {name:?}")]
    UnknownMember {
        /// The name asked for.
        name: String,
    },
    /// The operation is not allowed once this node has left or shut down.
    #[error("gossip is {state}")]
    NotRunning {
        /// `"leaving"`, `"left"` or `"shut down"`.
        state: &'static str,
    },
    /// An address given to `join` that does not parse or resolve.
    #[error("invalid address {addr:?}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// The resolver's complaint, if it got that far.
        #[source]
        source: Option<std::io::Error>,
    },
    /// No seed of a join could be contacted.
    #[error("failed to join any of {attempted} address(es): {}", errors.join("; "))]
    JoinFailed {
        /// How many addresses were tried.
        attempted: usize,
        /// One line per failed address.
        errors: Vec<String>,
    },
    /// A key that is not base64 or not 16, 24 or 32 bytes long.
    #[error("invalid encryption key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A keyring operation on a node without encryption (Serf: "no keyring to modify").
    #[error("encryption is not enabled: no keyring to modify")]
    EncryptionDisabled,
    /// `use_key`/`remove_key` of a key that is not installed.
    #[error("requested key is not in the keyring")]
    KeyNotInstalled,
    /// `remove_key` of the primary key.
    #[error("removing the primary key is not allowed")]
    RemovePrimaryKey,
    /// Reading or writing the keyring file failed.
    #[error("keyring file {path}: {source}")]
    KeyringFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The keyring file is not a JSON list of base64 keys.
    #[error("keyring file {path} is malformed: {reason}")]
    KeyringFileFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The member snapshot file could not be read, parsed or written.
    #[error("gossip snapshot {path}: {reason}")]
    SnapshotFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Binding the UDP or TCP socket failed.
    #[error("failed to bind gossip {proto} socket on {addr}: {source}")]
    Bind {
        /// `"udp"` or `"tcp"`.
        proto: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A message could not be encoded (a bug, or a value no wire format can carry).
    #[error("failed to encode gossip message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}
