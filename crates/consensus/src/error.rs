//! Error types. Everything that can go wrong with stored or received bytes has a
//! typed variant: bad data on disk is a fatal, reportable condition, never a panic.

use std::path::PathBuf;

/// A [`crate::RaftConfig`] value that raft-rs cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Raft ids must be non-zero (zero means "no node" inside raft-rs).
    #[error("raft id must be non-zero")]
    ZeroId,
    /// The data directory must be given explicitly.
    #[error("data_dir must be set")]
    EmptyDataDir,
    /// The tick drives all raft timing, so it cannot be zero.
    #[error("tick must be non-zero")]
    ZeroTick,
    /// A zero heartbeat interval would make the leader spin.
    #[error("heartbeat_tick must be non-zero")]
    ZeroHeartbeatTick,
    /// Followers would campaign before the leader had a chance to heartbeat.
    #[error(
        "election_tick ({election_tick}) must be greater than heartbeat_tick ({heartbeat_tick})"
    )]
    ElectionTickTooSmall {
        /// Configured election tick.
        election_tick: usize,
        /// Configured heartbeat tick.
        heartbeat_tick: usize,
    },
    /// Replication could never make progress.
    #[error("max_inflight_msgs must be non-zero")]
    ZeroInflight,
}

/// Raft state on disk that cannot be decoded or is internally inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum CorruptionError {
    /// A key in the log column family is not an 8-byte big-endian index.
    #[error("malformed log key of {len} bytes")]
    LogKey {
        /// Length of the offending key.
        len: usize,
    },
    /// A stored log entry does not decode.
    #[error("log entry {index} does not decode: {source}")]
    Entry {
        /// Index from the entry's key.
        index: u64,
        /// Decoder failure.
        source: prost011::DecodeError,
    },
    /// The entry stored under a key claims a different index.
    #[error("log entry under key {key} claims index {found}")]
    EntryIndexMismatch {
        /// Index from the key.
        key: u64,
        /// Index inside the entry.
        found: u64,
    },
    /// The log has a hole.
    #[error("log gap: expected entry {expected}, found {found}")]
    LogGap {
        /// The index that should have come next.
        expected: u64,
        /// The index actually found.
        found: u64,
    },
    /// Terms must never decrease along the log.
    #[error("term decreases at entry {index}: {term} after {previous}")]
    TermRegression {
        /// Entry index.
        index: u64,
        /// Its term.
        term: u64,
        /// Term of the entry before it.
        previous: u64,
    },
    /// An entry carries an entry type this version does not know.
    #[error("entry {index} has unknown entry type {value}")]
    UnknownEntryType {
        /// Entry index.
        index: u64,
        /// The raw enum value.
        value: i32,
    },
    /// A metadata record (hard state, truncated state, ...) does not decode.
    #[error("metadata record {name} does not decode: {source}")]
    Record {
        /// Which record.
        name: &'static str,
        /// Decoder failure.
        source: prost011::DecodeError,
    },
    /// A fixed-width metadata record has the wrong length.
    #[error("metadata record {name} has {len} bytes")]
    RecordLength {
        /// Which record.
        name: &'static str,
        /// Its length.
        len: usize,
    },
    /// The hard state claims entries were committed that the log does not hold.
    #[error("hard state commit {commit} is beyond the last log index {last_index}")]
    CommitBeyondLog {
        /// Persisted commit index.
        commit: u64,
        /// Last index in the log.
        last_index: u64,
    },
    /// A committed configuration change cannot be decoded.
    #[error("committed conf change at index {index} does not decode: {source}")]
    ConfChange {
        /// Entry index.
        index: u64,
        /// Decoder failure.
        source: prost011::DecodeError,
    },
    /// A committed configuration change carries an unknown enum value.
    #[error("committed conf change at index {index} has unknown enum value {value}")]
    ConfChangeEnum {
        /// Entry index.
        index: u64,
        /// The raw enum value.
        value: i32,
    },
    /// A RocksDB column family this crate creates at open is missing.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// The data directory was written by an incompatible version.
    #[error("unsupported raft storage format version {0}")]
    FormatVersion(u32),
}

/// Why a snapshot file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Reading or writing the file failed.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Shorter than the fixed header plus trailer.
    #[error("snapshot file is truncated ({len} bytes)")]
    TooShort {
        /// Actual length.
        len: usize,
    },
    /// Not a Tribune snapshot file.
    #[error("bad snapshot magic")]
    BadMagic,
    /// Written by a newer (or unknown) format.
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u32),
    /// The lengths in the header do not add up to the file length.
    #[error("snapshot length mismatch: header says {expected} bytes, file has {actual}")]
    LengthMismatch {
        /// Length implied by the header.
        expected: u64,
        /// Actual file length.
        actual: u64,
    },
    /// The content does not match its checksum.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC32 stored in the file.
        stored: u32,
        /// CRC32 of the content.
        computed: u32,
    },
    /// The embedded ConfState does not decode.
    #[error("snapshot conf state does not decode: {0}")]
    ConfState(prost011::DecodeError),
    /// The file name and header disagree about index/term.
    #[error("snapshot header says {index}/{term} but the file name does not")]
    NameMismatch {
        /// Index in the header.
        index: u64,
        /// Term in the header.
        term: u64,
    },
}

/// A committed entry the state machine cannot apply (returned by
/// [`crate::StateMachine::apply`]); fatal for the node.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A state machine could not load a snapshot (returned by
/// [`crate::StateMachine::restore`]).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The bytes are not a snapshot this state machine understands.
    #[error("malformed snapshot data: {0}")]
    Malformed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The snapshot was written by an unknown format version.
    #[error("unsupported snapshot data version {0}")]
    UnsupportedVersion(u32),
}

/// Failure of the consensus layer as a whole: startup, storage, or a fatal
/// condition on the raft thread.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// A committed entry the state machine cannot apply; the node stopped before it.
    #[error("committed entry {index} cannot be applied")]
    Apply {
        /// The entry's index.
        index: u64,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// The configuration is invalid.
    #[error("invalid raft config: {0}")]
    Config(#[from] ConfigError),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A filesystem operation failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Stored raft state is corrupt.
    #[error("corrupt raft state: {0}")]
    Corrupt(#[from] CorruptionError),
    /// A snapshot file could not be written or read.
    #[error("snapshot: {0}")]
    SnapshotFile(#[from] SnapshotFileError),
    /// The log has been compacted, but no intact snapshot covers the compacted part.
    #[error("no usable snapshot: the log starts after index {truncated_index} and none of the {} snapshot file(s) is intact and recent enough", rejected.len())]
    NoUsableSnapshot {
        /// The last index removed from the log.
        truncated_index: u64,
        /// Each snapshot file that was considered and why it was rejected.
        rejected: Vec<(PathBuf, SnapshotRejection)>,
    },
    /// The state machine rejected a snapshot.
    #[error("state machine could not restore snapshot at index {index}: {source}")]
    Restore {
        /// Snapshot index.
        index: u64,
        /// The state machine's reason.
        source: RestoreError,
    },
    /// raft-rs reported an error.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// An incoming raft message could not be decoded.
    #[error("raft message does not decode: {0}")]
    DecodeMessage(#[from] prost011::DecodeError),
    /// An incoming raft message decoded but is not acceptable.
    #[error("invalid raft message: {0}")]
    InvalidMessage(InvalidMessage),
    /// Bootstrap was asked of a server that already has raft state (or is
    /// already part of a cluster).
    #[error("this server already has raft state; it will not bootstrap a new cluster")]
    AlreadyBootstrapped,
    /// A bootstrap configuration must include the server doing it.
    #[error("bootstrap voters do not include this server")]
    BootstrapWithoutSelf,
    /// Nothing has been applied yet, so there is nothing to snapshot.
    #[error("nothing has been applied yet")]
    NothingToSnapshot,
    /// The raft thread has stopped.
    #[error("raft node is shut down")]
    Shutdown,
    /// The raft thread panicked (a bug, or raft-rs hit an invariant violation).
    #[error("raft thread panicked")]
    Panicked,
    /// Serialising or writing a snapshot in the background panicked (a bug); the
    /// log is intact and the next snapshot is tried as usual.
    #[error("snapshot thread panicked")]
    SnapshotPanicked,
}

/// Why a snapshot file was not used at startup.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotRejection {
    /// The file itself is damaged.
    #[error(transparent)]
    File(#[from] SnapshotFileError),
    /// Intact, but older than the start of the log, so replay would leave a gap.
    #[error("snapshot index {index} is older than the log start {truncated_index}")]
    TooOld {
        /// Snapshot index.
        index: u64,
        /// Last compacted log index.
        truncated_index: u64,
    },
}

/// What is wrong with a decoded raft message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// Unknown message type.
    #[error("unknown message type {0}")]
    MessageType(i32),
    /// Local-only message types must not arrive from the network.
    #[error("local message type {0} from the network")]
    LocalMessage(i32),
    /// An entry inside the message has an unknown entry type.
    #[error("unknown entry type {0}")]
    EntryType(i32),
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to node {local}")]
    WrongRecipient {
        /// Addressee.
        to: u64,
        /// This node.
        local: u64,
    },
}

/// Why a proposal did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This server is not the leader; `leader` is the known leader, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader as far as this server knows.
        leader: Option<u64>,
    },
    /// Leadership changed (term moved on) before the entry was applied. The entry
    /// may or may not eventually be applied; the caller must not assume either.
    #[error("proposal dropped: leadership changed before it was applied")]
    Dropped,
    /// The raft node has been shut down.
    #[error("raft node is shut down")]
    Shutdown,
    /// The raft thread stopped on a fatal error (see [`crate::Raft::fatal_error`]).
    #[error("raft node stopped on a fatal error")]
    Fatal,
    /// The proposal exceeds [`crate::RaftConfig::max_proposal_bytes`].
    #[error("proposal of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Proposal size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// Empty proposals are reserved: raft uses empty entries as leader no-ops.
    #[error("empty proposals are not allowed")]
    Empty,
    /// raft refused the membership change (another change pending, or invalid
    /// for the current configuration).
    #[error("membership change rejected")]
    ConfChangeRejected,
}

/// Helper: wrap an `io::Error` with the path it happened on.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConsensusError {
    let path = path.into();
    move |source| ConsensusError::Io { path, source }
}
