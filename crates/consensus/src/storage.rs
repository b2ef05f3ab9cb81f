//! [`RocksStorage`]: the raft log and raft metadata in RocksDB, plus the
//! snapshot files, behind raft-rs' [`raft::Storage`] trait.
//!
//! Layout: column family `log` maps an 8-byte big-endian index to a protobuf
//! `Entry` (so iteration order is log order and truncation is one
//! `delete_range`); column family `meta` holds small records:
//!
//! | key              | value                                                        |
//! |------------------|--------------------------------------------------------------|
//! | `format_version` | u32 BE, currently 1                                          |
//! | `hard_state`     | protobuf `HardState` (term, vote, commit)                    |
//! | `truncated`      | u64 BE index + u64 BE term of the last entry removed from the log |
//! | `snapshot_meta`  | protobuf `SnapshotMetadata` of the newest snapshot file      |
//! | `conf_state`     | protobuf `ConfState` as of `applied_index`                   |
//! | `applied_index`  | u64 BE, last index applied to the state machine              |
//!
//! The state machine itself lives in memory and is rebuilt on start from the
//! newest intact snapshot file plus the log after it, so `applied_index` and
//! `conf_state` are bookkeeping, not the source of truth for replay: raft starts
//! from the snapshot's index and membership and re-applies what follows.

mod cache;
mod layout;
mod raft_storage;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost011::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::StorageError;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};

use crate::codec;
use crate::error::{io_err, ConsensusError, CorruptionError, SnapshotRejection};
use crate::snapfile::{read_snapshot_file, SnapshotDir, SnapshotFile};
use crate::status::MetricCounters;
use cache::EntryCache;
use layout::{
    cf, decode_entry, decode_u64, log_key, snapshot_meta, sync_opts, truncated_bytes, LogPos,
    CF_LOG, CF_META, FORMAT_VERSION, KEY_APPLIED, KEY_CONF_INDEX, KEY_CONF_STATE, KEY_HARD_STATE,
    KEY_SNAPSHOT, KEY_TRUNCATED, KEY_VERSION, SNAPSHOTS_KEPT,
};

/// The newest snapshot on disk, as raft needs it to answer `Storage::snapshot`.
#[derive(Debug, Clone)]
struct SnapshotInfo {
    index: u64,
    term: u64,
    conf_state: ConfState,
    path: PathBuf,
}

/// What the bookkeeping records said at open (for logging and sanity checks).
#[derive(Debug, Default)]
struct Bookkeeping {
    snapshot_index: u64,
    applied: u64,
    /// The newest applied membership and its index (0 when not recorded).
    conf: Option<(ConfState, u64)>,
}

/// Result of [`RocksStorage::open`].
#[derive(Debug)]
pub struct OpenedStorage {
    /// The storage, ready to hand to raft.
    pub storage: RocksStorage,
    /// The snapshot the state machine must be restored from before raft
    /// replays the log after it (`None` if the log starts at index 1).
    pub base_snapshot: Option<SnapshotFile>,
}

/// The raft log and metadata in RocksDB plus the snapshot directory.
///
/// Owned by the raft thread (inside raft-rs' `RawNode`); reads come from raft
/// through [`raft::Storage`], writes from the driver's Ready handling.
pub struct RocksStorage {
    db: DB,
    snaps: SnapshotDir,
    hard_state: HardState,
    /// Membership raft starts from: that of the base snapshot.
    base_conf_state: ConfState,
    truncated: LogPos,
    last: LogPos,
    snapshot: Option<SnapshotInfo>,
    /// Set when raft asked for a snapshot the newest one cannot satisfy (too old,
    /// or its membership predates the peer); the driver then takes a new one.
    snapshot_wanted: Cell<bool>,
    /// Applied-index bookkeeping not yet written, with the membership (and the
    /// index it took effect at) when that changed too.
    dirty_progress: Option<(u64, Option<(ConfState, u64)>)>,
    /// The newest applied membership and the index of the entry (or received
    /// snapshot) it came from: what `/v1/operator/raft/configuration` reports,
    /// kept across restarts because the entry itself is usually compacted away.
    applied_conf: (ConfState, u64),
    /// The in-memory hard state has a newer commit than RocksDB.
    dirty_hard_state: bool,
    /// Index of the last membership-change entry in the log (0 if none).
    last_conf_change: u64,
    /// The newest entries, so raft's reads of what was just written skip RocksDB.
    cache: EntryCache,
    metrics: Arc<MetricCounters>,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("hard_state", &self.hard_state)
            .field("truncated", &self.truncated)
            .field("last", &self.last)
            .field(
                "snapshot",
                &self.snapshot.as_ref().map(|s| (s.index, s.term)),
            )
            .finish_non_exhaustive()
    }
}

impl RocksStorage {
    /// Open (creating if needed) the log in `log_dir` and snapshots in
    /// `snapshot_dir`, verify every stored record, and pick the snapshot to
    /// restore from: the newest intact one that the log continues from.
    pub fn open(log_dir: &Path, snapshot_dir: &Path) -> Result<OpenedStorage, ConsensusError> {
        Self::open_with_metrics(log_dir, snapshot_dir, Arc::default())
    }

    /// [`RocksStorage::open`], counting writes into the node's metrics.
    pub(crate) fn open_with_metrics(
        log_dir: &Path,
        snapshot_dir: &Path,
        metrics: Arc<MetricCounters>,
    ) -> Result<OpenedStorage, ConsensusError> {
        std::fs::create_dir_all(log_dir).map_err(io_err(log_dir))?;
        let snaps = SnapshotDir::open(snapshot_dir.to_path_buf())?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The meta column family takes a few small writes per batch and so
        // rarely fills its memtable; until it is flushed it pins every WAL file
        // since. RocksDB's default bound on their total (four times all write
        // buffers: 3 column families × 2 × 64 MiB × 4 = 1.5 GiB) let a server
        // under steady writes keep hundreds of MiB of WAL that a restart reads
        // again. 128 MiB makes RocksDB flush that small memtable instead
        // (measured: raft directory 561 -> 311 MiB, restart 6.1 -> 4.9 s after
        // 30 s of 64-client writes; BENCHMARKS.md).
        opts.set_max_total_wal_size(128 << 20);
        // Flushes and compactions write at most 32 MiB/s, syncing every MiB
        // on the way. Unpaced, a 64 MiB memtable flush (on every server of a
        // cluster at the same moment, since they hold the same log) filled the
        // disk's queue, and the WAL's fdatasyncs waited behind it: write p99
        // of 0.25-0.6 s every ten seconds under load (BENCHMARKS.md, cluster
        // section). Paced, a flush takes about two seconds, well inside the
        // time the second memtable takes to fill at 20,000 writes/s; only an
        // operator restore's single huge entry flushes for longer (a 500 MiB
        // state about 16 s).
        opts.set_bytes_per_sync(1 << 20);
        opts.set_ratelimiter(32 << 20, 100_000, 10);
        // The log's entries live only until the next snapshot's compaction, yet
        // every one is flushed to an SST and compacted at least once: compressing
        // them there cost each server a few percent of a core under load (snappy
        // in the flush profile) to save disk space for seconds.
        let mut log_opts = Options::default();
        log_opts.set_compression_type(rocksdb::DBCompressionType::None);
        let cfs = [
            ColumnFamilyDescriptor::new(CF_LOG, log_opts),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, log_dir, cfs)?;

        let mut storage = RocksStorage {
            db,
            snaps,
            hard_state: HardState::default(),
            base_conf_state: ConfState::default(),
            truncated: LogPos::default(),
            last: LogPos::default(),
            snapshot: None,
            snapshot_wanted: Cell::new(false),
            dirty_progress: None,
            applied_conf: (ConfState::default(), 0),
            dirty_hard_state: false,
            last_conf_change: 0,
            cache: EntryCache::default(),
            metrics,
        };
        storage.check_version()?;
        if let Some(bytes) = storage.get_meta(KEY_HARD_STATE)? {
            storage.hard_state =
                codec::decode(&bytes).map_err(|source| CorruptionError::Record {
                    name: "hard_state",
                    source,
                })?;
        }
        if let Some(bytes) = storage.get_meta(KEY_TRUNCATED)? {
            if bytes.len() != 16 {
                return Err(CorruptionError::RecordLength {
                    name: "truncated",
                    len: bytes.len(),
                }
                .into());
            }
            storage.truncated = LogPos {
                index: decode_u64("truncated", &bytes[..8])?,
                term: decode_u64("truncated", &bytes[8..])?,
            };
        }
        let recorded = storage.read_bookkeeping()?;
        if let Some(conf) = recorded.conf.clone() {
            storage.applied_conf = conf;
        }
        (storage.last, storage.last_conf_change) = storage.scan_log()?;
        let base = match storage.choose_base_snapshot()? {
            Some((snap, path)) => {
                storage.adopt_base_snapshot(&snap, path)?;
                Some(snap)
            }
            None => None,
        };
        let base_index = base.as_ref().map_or(0, |s| s.index);
        if recorded.snapshot_index > base_index {
            tracing::warn!(
                recorded = recorded.snapshot_index,
                using = base_index,
                "newest recorded snapshot is missing or damaged; falling back"
            );
        }
        tracing::info!(
            snapshot = base_index,
            commit = storage.hard_state.commit,
            last_index = storage.last.index,
            previously_applied = recorded.applied,
            "raft storage opened"
        );
        if storage.hard_state.commit > storage.last.index {
            return Err(CorruptionError::CommitBeyondLog {
                commit: storage.hard_state.commit,
                last_index: storage.last.index,
            }
            .into());
        }
        Ok(OpenedStorage {
            storage,
            base_snapshot: base,
        })
    }

    fn check_version(&self) -> Result<(), ConsensusError> {
        match self.get_meta(KEY_VERSION)? {
            Some(bytes) => {
                let arr: [u8; 4] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| CorruptionError::RecordLength {
                            name: "format_version",
                            len: bytes.len(),
                        })?;
                let version = u32::from_be_bytes(arr);
                if version != FORMAT_VERSION {
                    return Err(CorruptionError::FormatVersion(version).into());
                }
            }
            None => {
                let meta = cf(&self.db, CF_META)?;
                self.db.put_cf_opt(
                    meta,
                    KEY_VERSION,
                    FORMAT_VERSION.to_be_bytes(),
                    &sync_opts(true),
                )?;
            }
        }
        Ok(())
    }

    /// Decode the bookkeeping records. They are not needed for replay, but a
    /// record that does not decode means the metadata is damaged, which must
    /// stop startup like any other corruption.
    fn read_bookkeeping(&self) -> Result<Bookkeeping, ConsensusError> {
        let mut out = Bookkeeping::default();
        if let Some(bytes) = self.get_meta(KEY_SNAPSHOT)? {
            let meta: SnapshotMetadata =
                codec::decode(&bytes).map_err(|source| CorruptionError::Record {
                    name: "snapshot_meta",
                    source,
                })?;
            out.snapshot_index = meta.index;
        }
        if let Some(bytes) = self.get_meta(KEY_APPLIED)? {
            out.applied = decode_u64("applied_index", &bytes)?;
        }
        if let Some(bytes) = self.get_meta(KEY_CONF_STATE)? {
            let conf: ConfState =
                codec::decode(&bytes).map_err(|source| CorruptionError::Record {
                    name: "conf_state",
                    source,
                })?;
            let index = match self.get_meta(KEY_CONF_INDEX)? {
                Some(bytes) => decode_u64("conf_index", &bytes)?,
                None => 0,
            };
            out.conf = Some((conf, index));
        }
        Ok(out)
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConsensusError> {
        Ok(self.db.get_cf(cf(&self.db, CF_META)?, key)?)
    }

    /// Walk the whole log once: every entry must decode, sit under its own key,
    /// follow its predecessor without a gap and never lower the term. Catching
    /// this here turns on-disk damage into a typed startup error instead of a
    /// panic deep inside raft-rs later.
    /// Also returns the index of the last membership change in the log.
    fn scan_log(&self) -> Result<(LogPos, u64), ConsensusError> {
        let start = log_key(self.truncated.index + 1);
        let mut last = self.truncated;
        let mut last_conf_change = 0;
        for item in self.db.iterator_cf(
            cf(&self.db, CF_LOG)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (key, value) = item?;
            let entry = decode_entry(&key, &value)?;
            if entry.index != last.index + 1 {
                return Err(CorruptionError::LogGap {
                    expected: last.index + 1,
                    found: entry.index,
                }
                .into());
            }
            if entry.term < last.term {
                return Err(CorruptionError::TermRegression {
                    index: entry.index,
                    term: entry.term,
                    previous: last.term,
                }
                .into());
            }
            if entry.entry_type != EntryType::EntryNormal as i32 {
                last_conf_change = entry.index;
            }
            last = LogPos {
                index: entry.index,
                term: entry.term,
            };
        }
        Ok((last, last_conf_change))
    }

    /// The newest intact snapshot the log continues from. Older-than-log or
    /// damaged files are skipped (and logged); if the log was compacted and no
    /// snapshot covers the gap, the state cannot be rebuilt.
    fn choose_base_snapshot(&self) -> Result<Option<(SnapshotFile, PathBuf)>, ConsensusError> {
        let mut rejected = Vec::new();
        let mut chosen = None;
        for candidate in self.snaps.list()? {
            match read_snapshot_file(&candidate.path) {
                Ok(file) if file.index < self.truncated.index => {
                    rejected.push((
                        candidate.path,
                        SnapshotRejection::TooOld {
                            index: file.index,
                            truncated_index: self.truncated.index,
                        },
                    ));
                }
                Ok(file) => {
                    chosen = Some((file, candidate.path));
                    break;
                }
                Err(e) => rejected.push((candidate.path, SnapshotRejection::File(e))),
            }
        }
        for (path, why) in &rejected {
            tracing::warn!(path = %path.display(), error = %why, "ignoring snapshot file");
        }
        if chosen.is_none() && self.truncated.index > 0 {
            return Err(ConsensusError::NoUsableSnapshot {
                truncated_index: self.truncated.index,
                rejected,
            });
        }
        for (path, why) in &rejected {
            if matches!(why, SnapshotRejection::File(_)) {
                // Set damaged files aside (kept for inspection) so pruning, which
                // keeps the newest files, never keeps a damaged one in place of
                // an intact fallback.
                let aside = path.with_extension("snap.corrupt");
                if let Err(e) = std::fs::rename(path, &aside) {
                    tracing::warn!(path = %path.display(), error = %e, "could not set damaged snapshot aside");
                }
            }
        }
        Ok(chosen)
    }

    /// Make the chosen snapshot the base raft starts from. If the log does not
    /// contain the snapshot's position (a snapshot received from a leader whose
    /// log reset was interrupted by a crash), finish that reset now.
    fn adopt_base_snapshot(
        &mut self,
        snap: &SnapshotFile,
        path: PathBuf,
    ) -> Result<(), ConsensusError> {
        let matches = snap.index <= self.last.index && self.term_at(snap.index)? == Some(snap.term);
        if !matches {
            tracing::info!(
                index = snap.index,
                term = snap.term,
                "log does not contain the snapshot position; discarding the log"
            );
            let mut batch = WriteBatch::default();
            self.reset_log_to(
                &mut batch,
                LogPos {
                    index: snap.index,
                    term: snap.term,
                },
            )?;
            self.db.write_opt(batch, &sync_opts(true))?;
        }
        if snap.index > self.hard_state.commit || snap.term > self.hard_state.term {
            // The snapshot's index is committed by definition; the hard state may
            // lag because commit-only updates are written without fsync.
            self.hard_state.commit = self.hard_state.commit.max(snap.index);
            self.hard_state.term = self.hard_state.term.max(snap.term);
            self.dirty_hard_state = true;
        }
        self.base_conf_state = snap.conf_state.clone();
        self.snapshot = Some(SnapshotInfo {
            index: snap.index,
            term: snap.term,
            conf_state: snap.conf_state.clone(),
            path,
        });
        Ok(())
    }

    /// Queue deletion of every log entry and record `pos` as the new log start.
    fn reset_log_to(&mut self, batch: &mut WriteBatch, pos: LogPos) -> Result<(), ConsensusError> {
        let log = cf(&self.db, CF_LOG)?;
        batch.delete_range_cf(log, log_key(0), log_key(self.last.index.max(pos.index) + 1));
        batch.put_cf(cf(&self.db, CF_META)?, KEY_TRUNCATED, truncated_bytes(pos));
        self.truncated = pos;
        self.last = pos;
        self.last_conf_change = 0;
        self.cache.clear();
        Ok(())
    }

    /// Term of the entry at `index`, if the log (or its truncation point) knows it.
    pub(crate) fn term_at(&self, index: u64) -> Result<Option<u64>, ConsensusError> {
        if index == self.truncated.index {
            return Ok(Some(self.truncated.term));
        }
        if index < self.truncated.index || index > self.last.index {
            return Ok(None);
        }
        if index == self.last.index {
            return Ok(Some(self.last.term));
        }
        if let Some(term) = self.cache.term(index) {
            return Ok(Some(term));
        }
        Ok(self.read_entry(index)?.map(|e| e.term))
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>, ConsensusError> {
        let key = log_key(index);
        match self.db.get_cf(cf(&self.db, CF_LOG)?, key)? {
            Some(value) => Ok(Some(decode_entry(&key, &value)?)),
            None => Ok(None),
        }
    }

    /// True if nothing was ever stored: the only state in which bootstrapping is allowed.
    pub(crate) fn is_empty(&self) -> bool {
        self.hard_state == HardState::default()
            && self.truncated == LogPos::default()
            && self.last == LogPos::default()
            && self.snapshot.is_none()
    }

    /// Create the initial single-voter configuration: a snapshot at index 1, term
    /// 1 of the state machine's initial state with `id` as the only voter. Starting
    /// the log after a snapshot (rather than at index 1) means servers that join
    /// later always receive a snapshot carrying the membership first.
    pub(crate) fn bootstrap(
        &mut self,
        id: u64,
        initial_state: &[u8],
    ) -> Result<SnapshotFile, ConsensusError> {
        let snap = SnapshotFile {
            index: 1,
            term: 1,
            conf_state: ConfState {
                voters: vec![id],
                ..Default::default()
            },
            data: initial_state.to_vec(),
        };
        let path = self
            .snaps
            .write(snap.index, snap.term, &snap.conf_state, &snap.data)?;
        let pos = LogPos { index: 1, term: 1 };
        let mut batch = WriteBatch::default();
        self.reset_log_to(&mut batch, pos)?;
        self.hard_state = HardState {
            term: 1,
            vote: 0,
            commit: 1,
        };
        let meta = cf(&self.db, CF_META)?;
        batch.put_cf(meta, KEY_HARD_STATE, codec::encode(&self.hard_state));
        batch.put_cf(meta, KEY_SNAPSHOT, codec::encode(&snapshot_meta(&snap)));
        batch.put_cf(meta, KEY_CONF_STATE, codec::encode(&snap.conf_state));
        batch.put_cf(meta, KEY_CONF_INDEX, 1u64.to_be_bytes());
        batch.put_cf(meta, KEY_APPLIED, 1u64.to_be_bytes());
        self.write(batch, true)?;
        self.base_conf_state = snap.conf_state.clone();
        self.applied_conf = (snap.conf_state.clone(), 1);
        self.snapshot = Some(SnapshotInfo {
            index: 1,
            term: 1,
            conf_state: snap.conf_state.clone(),
            path,
        });
        Ok(snap)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), ConsensusError> {
        self.db.write_opt(batch, &sync_opts(sync))?;
        if sync {
            MetricCounters::add(&self.metrics.sync_batches, 1);
        }
        Ok(())
    }

    fn put_progress(&mut self, batch: &mut WriteBatch) -> Result<(), ConsensusError> {
        let meta = cf(&self.db, CF_META)?;
        if let Some((applied, conf)) = self.dirty_progress.take() {
            batch.put_cf(meta, KEY_APPLIED, applied.to_be_bytes());
            if let Some((conf, index)) = conf {
                batch.put_cf(meta, KEY_CONF_STATE, codec::encode(&conf));
                batch.put_cf(meta, KEY_CONF_INDEX, index.to_be_bytes());
            }
        }
        if self.dirty_hard_state {
            batch.put_cf(meta, KEY_HARD_STATE, codec::encode(&self.hard_state));
            self.dirty_hard_state = false;
        }
        Ok(())
    }

    /// Persist new entries (overwriting any conflicting suffix) and the hard
    /// state in one write batch — one fsync when `sync`.
    pub(crate) fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), ConsensusError> {
        let mut batch = WriteBatch::default();
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
            self.dirty_hard_state = true;
        }
        self.put_progress(&mut batch)?;
        let mut new_last = self.last;
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            let log = cf(&self.db, CF_LOG)?;
            for e in entries {
                batch.put_cf(log, log_key(e.index), e.encode_to_vec());
            }
            // Entries after the new tail belonged to a deposed leader's term.
            if last.index < self.last.index {
                batch.delete_range_cf(log, log_key(last.index + 1), log_key(self.last.index + 1));
            }
            debug_assert!(first.index > self.truncated.index);
            new_last = LogPos {
                index: last.index,
                term: last.term,
            };
        }
        self.write(batch, sync)?;
        self.last = new_last;
        self.cache.append(entries);
        MetricCounters::add(&self.metrics.entries_persisted, entries.len() as u64);
        Ok(())
    }

    /// Record a commit index learned after the last persist (raft-rs'
    /// LightReady). Written with the next batch; commit need not be durable.
    pub(crate) fn set_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
            self.dirty_hard_state = true;
        }
    }

    /// Note the applied index (and the membership, after a conf change).
    pub(crate) fn note_applied(&mut self, applied: u64, conf_state: Option<ConfState>) {
        if let Some(c) = &conf_state {
            self.applied_conf = (c.clone(), applied);
        }
        let conf = match (self.dirty_progress.take(), conf_state) {
            (_, Some(c)) => Some((c, applied)),
            (Some((_, earlier)), None) => earlier,
            (None, None) => None,
        };
        self.dirty_progress = Some((applied, conf));
    }

    /// Write pending bookkeeping (commit, applied index, membership) without
    /// fsync: it is all re-derivable from the log, so losing it to a power cut
    /// costs only replay work.
    pub(crate) fn flush_progress(&mut self) -> Result<(), ConsensusError> {
        if self.dirty_progress.is_none() && !self.dirty_hard_state {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        self.put_progress(&mut batch)?;
        self.write(batch, false)
    }

    /// Install a snapshot the local state machine just produced at `index`, then
    /// compact the log. The log is kept back to `index - trailing_logs`, but
    /// never past the previous snapshot, so falling back to it (if the new file
    /// is later found damaged) still finds a continuous log.
    pub(crate) fn install_local_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: &[u8],
        trailing_logs: u64,
    ) -> Result<(), ConsensusError> {
        let term = self
            .term_at(index)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        let path = self.snaps.write(index, term, &conf_state, data)?;
        self.record_local_snapshot(index, term, conf_state, path, trailing_logs)
            .map(|_| ())
    }

    /// Where snapshot files go, for a thread that writes one off the raft thread
    /// (then handed to [`RocksStorage::record_local_snapshot`]).
    pub(crate) fn snapshot_dir(&self) -> SnapshotDir {
        self.snaps.clone()
    }

    /// Makes a snapshot file written at `index` (term `term`) the newest
    /// snapshot and compacts the log behind it, as
    /// [`RocksStorage::install_local_snapshot`] does after writing the file.
    /// Returns `false`, recording nothing, if the file is stale by now: a newer
    /// snapshot was installed (or the log reset) while it was being written.
    pub(crate) fn record_local_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        path: PathBuf,
        trailing_logs: u64,
    ) -> Result<bool, ConsensusError> {
        if index <= self.snapshot_index()
            || index <= self.truncated.index
            || self.term_at(index)? != Some(term)
        {
            // Unrecorded, it would only be pruned once newer ones pile up. The
            // same index and term is the same file name as the current one.
            if self.snapshot.as_ref().is_none_or(|s| s.path != path) {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(false);
        }
        let previous = self.snapshot.as_ref().map_or(0, |s| s.index);
        let compact_to = index.saturating_sub(trailing_logs).min(previous);
        let mut batch = WriteBatch::default();
        // Caches change only after the batch is durable, so a failed write
        // leaves storage consistent and the error non-fatal.
        let mut new_truncated = self.truncated;
        if compact_to > self.truncated.index {
            if let Some(compact_term) = self.term_at(compact_to)? {
                batch.delete_range_cf(
                    cf(&self.db, CF_LOG)?,
                    log_key(self.truncated.index + 1),
                    log_key(compact_to + 1),
                );
                let pos = LogPos {
                    index: compact_to,
                    term: compact_term,
                };
                batch.put_cf(cf(&self.db, CF_META)?, KEY_TRUNCATED, truncated_bytes(pos));
                new_truncated = pos;
            }
        }
        let meta = SnapshotMetadata {
            conf_state: Some(conf_state.clone()),
            index,
            term,
        };
        batch.put_cf(cf(&self.db, CF_META)?, KEY_SNAPSHOT, codec::encode(&meta));
        self.put_progress(&mut batch)?;
        self.write(batch, true)?;
        self.truncated = new_truncated;
        self.cache.compact_to(new_truncated.index);
        self.snapshot = Some(SnapshotInfo {
            index,
            term,
            conf_state,
            path,
        });
        self.snaps.prune(SNAPSHOTS_KEPT)?;
        MetricCounters::add(&self.metrics.snapshots_taken, 1);
        Ok(true)
    }

    /// Install a snapshot received from the leader: write the file, discard the
    /// whole log (raft only hands over snapshots our log does not match), and
    /// make it the new base.
    pub(crate) fn install_received_snapshot(
        &mut self,
        snap: &Snapshot,
    ) -> Result<(), ConsensusError> {
        let meta = snap.metadata.clone().unwrap_or_default();
        let conf_state = meta.conf_state.clone().unwrap_or_default();
        let path = self
            .snaps
            .write(meta.index, meta.term, &conf_state, &snap.data)?;
        let mut batch = WriteBatch::default();
        self.reset_log_to(
            &mut batch,
            LogPos {
                index: meta.index,
                term: meta.term,
            },
        )?;
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.dirty_hard_state = true;
        // A snapshot does not say which entry made its membership. Unchanged
        // from what this server applied last, that entry's index stands;
        // otherwise the change happened at or before the snapshot's index,
        // which is the closest this server can tell.
        let conf_index = if same_members(&self.applied_conf.0, &conf_state) {
            self.applied_conf.1
        } else {
            meta.index
        };
        self.note_applied(meta.index, None);
        self.applied_conf = (conf_state.clone(), conf_index);
        if let Some((_, conf)) = &mut self.dirty_progress {
            *conf = Some(self.applied_conf.clone());
        }
        batch.put_cf(cf(&self.db, CF_META)?, KEY_SNAPSHOT, codec::encode(&meta));
        self.put_progress(&mut batch)?;
        self.write(batch, true)?;
        self.base_conf_state = conf_state.clone();
        self.snapshot = Some(SnapshotInfo {
            index: meta.index,
            term: meta.term,
            conf_state,
            path,
        });
        self.snaps.prune(SNAPSHOTS_KEPT)?;
        MetricCounters::add(&self.metrics.snapshots_installed, 1);
        Ok(())
    }

    /// Index of the newest snapshot on disk (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    /// The persisted hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Index of the entry that made the newest applied membership (0 if not
    /// known, as in data directories written before it was recorded).
    pub(crate) fn applied_conf_index(&self) -> u64 {
        self.applied_conf.1
    }

    /// Index of the last membership change that was in the log when it was
    /// opened (0 if none). Used once at startup: a server whose base snapshot
    /// names it the sole voter may only elect itself immediately if no later
    /// membership change is waiting to be replayed.
    pub(crate) fn last_conf_change_at_open(&self) -> u64 {
        self.last_conf_change
    }

    /// Take (and clear) the flag raised when raft wanted a newer snapshot.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }
}

/// Whether two memberships name the same servers in the same roles, whatever
/// the order raft listed them in.
fn same_members(a: &ConfState, b: &ConfState) -> bool {
    fn sorted(ids: &[u64]) -> Vec<u64> {
        let mut v = ids.to_vec();
        v.sort_unstable();
        v
    }
    sorted(&a.voters) == sorted(&b.voters)
        && sorted(&a.learners) == sorted(&b.learners)
        && sorted(&a.voters_outgoing) == sorted(&b.voters_outgoing)
        && sorted(&a.learners_next) == sorted(&b.learners_next)
        && a.auto_leave == b.auto_leave
}
