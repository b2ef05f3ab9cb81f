//! On-disk layout of [`super::RocksStorage`]: column families, metadata keys,
//! and the small encode/decode helpers for them.

use raft::eraftpb::{ConfState, Entry, SnapshotMetadata};
use raft::StorageError;
use rocksdb::{ColumnFamily, WriteOptions, DB};

use crate::codec;
use crate::error::{ConsensusError, CorruptionError};
use crate::snapfile::SnapshotFile;

pub(super) const CF_LOG: &str = "log";
pub(super) const CF_META: &str = "meta";
pub(super) const KEY_VERSION: &[u8] = b"format_version";
pub(super) const KEY_HARD_STATE: &[u8] = b"hard_state";
pub(super) const KEY_TRUNCATED: &[u8] = b"truncated";
pub(super) const KEY_SNAPSHOT: &[u8] = b"snapshot_meta";
pub(super) const KEY_CONF_STATE: &[u8] = b"conf_state";
pub(super) const KEY_APPLIED: &[u8] = b"applied_index";
/// Index of the entry that made the membership in [`KEY_CONF_STATE`] (absent
/// in data directories written before it was kept).
pub(super) const KEY_CONF_INDEX: &[u8] = b"conf_index";
pub(super) const FORMAT_VERSION: u32 = 1;
/// Snapshot files kept on disk: the newest, plus one to fall back on if the
/// newest turns out to be damaged.
pub(super) const SNAPSHOTS_KEPT: usize = 2;

/// A log position: index and the term of the entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct LogPos {
    pub(super) index: u64,
    pub(super) term: u64,
}

pub(super) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(super) fn decode_u64(name: &'static str, bytes: &[u8]) -> Result<u64, CorruptionError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| CorruptionError::RecordLength {
            name,
            len: bytes.len(),
        })?;
    Ok(u64::from_be_bytes(arr))
}

pub(super) fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, CorruptionError> {
    let key_index =
        decode_u64("log key", key).map_err(|_| CorruptionError::LogKey { len: key.len() })?;
    let entry: Entry = codec::decode(value).map_err(|source| CorruptionError::Entry {
        index: key_index,
        source,
    })?;
    if entry.index != key_index {
        return Err(CorruptionError::EntryIndexMismatch {
            key: key_index,
            found: entry.index,
        });
    }
    if !codec::valid_entry_type(entry.entry_type) {
        return Err(CorruptionError::UnknownEntryType {
            index: key_index,
            value: entry.entry_type,
        });
    }
    Ok(entry)
}

pub(super) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, ConsensusError> {
    // Both families are created at open, so absence means a foreign database.
    db.cf_handle(name).ok_or(ConsensusError::Corrupt(
        CorruptionError::MissingColumnFamily(name),
    ))
}

pub(super) fn sync_opts(sync: bool) -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    wo
}

/// raft-rs only accepts its own error type from storage; keep ours as the source.
pub(super) fn to_raft(e: impl Into<ConsensusError>) -> raft::Error {
    let e: ConsensusError = e.into();
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

pub(super) fn truncated_bytes(pos: LogPos) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&pos.index.to_be_bytes());
    out[8..].copy_from_slice(&pos.term.to_be_bytes());
    out
}

pub(super) fn snapshot_meta(snap: &SnapshotFile) -> SnapshotMetadata {
    SnapshotMetadata {
        conf_state: Some(snap.conf_state.clone()),
        index: snap.index,
        term: snap.term,
    }
}

pub(super) fn conf_contains(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .any(|v| *v == id)
}
