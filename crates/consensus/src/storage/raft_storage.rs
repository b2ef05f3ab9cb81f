//! raft-rs' read interface ([`raft::Storage`]) over [`super::RocksStorage`].

use prost011::Message as _;
use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{Direction, IteratorMode};

use super::layout::{cf, conf_contains, decode_entry, log_key, to_raft, CF_LOG};
use super::RocksStorage;
use crate::error::CorruptionError;
use crate::snapfile::read_snapshot_file;

impl RocksStorage {
    fn entries_impl(&self, low: u64, high: u64, max_size: Option<u64>) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last.index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.unwrap_or(u64::MAX);
        if let Some(cached) = self.cache.slice(low, high, max) {
            return Ok(cached);
        }
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let start = log_key(low);
        let log = cf(&self.db, CF_LOG).map_err(to_raft)?;
        for item in self
            .db
            .iterator_cf(log, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(to_raft)?;
            let entry = decode_entry(&key, &value).map_err(to_raft)?;
            if entry.index >= high {
                break;
            }
            let expected = low + out.len() as u64;
            if entry.index != expected {
                return Err(to_raft(CorruptionError::LogGap {
                    expected,
                    found: entry.index,
                }));
            }
            // Same rule as raft::util::limit_size: always at least one entry.
            size += entry.encoded_len() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(entry);
        }
        if out.is_empty() && low < high {
            return Err(to_raft(CorruptionError::LogGap {
                expected: low,
                found: high,
            }));
        }
        Ok(out)
    }
}

impl raft::Storage for RocksStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.base_conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.entries_impl(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.term_at(idx).map_err(to_raft)? {
            Some(term) => Ok(term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last.index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || {
            self.snapshot_wanted.set(true);
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ))
        };
        let Some(info) = &self.snapshot else {
            return unavailable();
        };
        // raft-rs' follower drops a snapshot whose membership does not include it,
        // so a snapshot older than the peer's addition is useless to send.
        if info.index < request_index || !conf_contains(&info.conf_state, to) {
            return unavailable();
        }
        match read_snapshot_file(&info.path) {
            Ok(file) => Ok(Snapshot {
                data: file.data,
                metadata: Some(SnapshotMetadata {
                    conf_state: Some(file.conf_state),
                    index: file.index,
                    term: file.term,
                }),
            }),
            Err(e) => {
                tracing::error!(path = %info.path.display(), error = %e, "snapshot file unreadable; will take a new one");
                unavailable()
            }
        }
    }
}
