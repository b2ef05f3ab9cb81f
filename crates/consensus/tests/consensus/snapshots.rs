//! Snapshots: taking them, compacting the log, restarting from them, and
//! surviving a damaged snapshot file.

use std::path::Path;

use raft::Storage as _;
use tribune_consensus::{
    read_snapshot_file, start, ConsensusError, NoopTransport, RaftConfig, RocksStorage,
    SnapshotFileError, SnapshotRejection,
};

use crate::support::{config, propose_many, single_with, snapshot_files, wait_for, KvMachine};

fn snap_config(dir: &Path, threshold: u64, trailing: u64) -> RaftConfig {
    let mut c = config(dir, 1, true);
    c.snapshot_threshold = threshold;
    c.trailing_logs = trailing;
    c
}

fn flip_byte_in_middle(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single_with(snap_config(dir.path(), 100, 50)).await;
    let last = propose_many(&raft, "s", 1000, 10).await;
    let metrics = raft.metrics();
    assert!(metrics.snapshots_taken >= 5, "{metrics:?}");
    let status = raft.status();
    assert!(status.snapshot_index > 800, "{status:?}");
    assert!(status.first_index > 500, "log not compacted: {status:?}");
    let before = state.lock().unwrap().clone();
    raft.shutdown().await;

    // Only the newest two snapshots are kept, and the early log is gone.
    assert_eq!(snapshot_files(dir.path()).len(), 2);
    {
        let opened =
            RocksStorage::open(&dir.path().join("raft"), &dir.path().join("snapshots")).unwrap();
        let storage = opened.storage;
        let first = storage.first_index().unwrap();
        assert!(first > 500, "first index {first}");
        assert!(matches!(
            storage.entries(2, 10, None, raft::GetEntriesContext::empty(false)),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        ));
        assert_eq!(storage.last_index().unwrap(), last);
        assert_eq!(
            opened.base_snapshot.unwrap().index,
            storage.snapshot_index()
        );
    }

    let (raft, state) = single_with(snap_config(dir.path(), 100, 50)).await;
    wait_for(&raft, "replay", |s| s.applied >= last).await;
    assert_eq!(*state.lock().unwrap(), before);
    assert_eq!(state.lock().unwrap().applies, 1000);
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_now_and_file_format() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single_with(snap_config(dir.path(), 0, 0)).await;
    let last = propose_many(&raft, "n", 30, 5).await;
    let index = raft.snapshot_now().await.unwrap();
    assert!(index >= last);
    // Nothing new applied: the same snapshot is reported.
    assert_eq!(raft.snapshot_now().await.unwrap(), index);
    assert_eq!(raft.metrics().snapshots_taken, 1);
    let newest = snapshot_files(dir.path()).pop().unwrap();
    let file = read_snapshot_file(&newest).unwrap();
    assert_eq!(file.index, index);
    assert_eq!(file.conf_state.voters, vec![1]);
    let expected = {
        let st = state.lock().unwrap();
        format!("{}\n{}\n", st.applies, st.last_index)
    };
    assert!(file.data.starts_with(expected.as_bytes()));
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_newest_snapshot_falls_back_to_previous() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single_with(snap_config(dir.path(), 100, 50)).await;
    let last = propose_many(&raft, "c", 350, 1).await;
    let before = state.lock().unwrap().clone();
    raft.shutdown().await;

    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 2);
    let newest = files.last().unwrap();
    flip_byte_in_middle(newest);
    assert!(matches!(
        read_snapshot_file(newest),
        Err(SnapshotFileError::Checksum { .. })
    ));

    let (raft, state) = single_with(snap_config(dir.path(), 100, 50)).await;
    wait_for(&raft, "replay", |s| s.applied >= last).await;
    assert_eq!(*state.lock().unwrap(), before);
    raft.shutdown().await;
    // The damaged file was set aside rather than deleted or reused.
    assert!(newest.with_extension("snap.corrupt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_snapshots_corrupt_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, _) = single_with(snap_config(dir.path(), 100, 50)).await;
    propose_many(&raft, "x", 350, 1).await;
    raft.shutdown().await;

    for f in snapshot_files(dir.path()) {
        flip_byte_in_middle(&f);
    }
    let (sm, _) = KvMachine::new();
    match start(snap_config(dir.path(), 100, 50), sm, NoopTransport) {
        Err(ConsensusError::NoUsableSnapshot {
            truncated_index,
            rejected,
        }) => {
            assert!(truncated_index > 1);
            assert_eq!(rejected.len(), 2);
            assert!(rejected.iter().all(|(_, why)| matches!(
                why,
                SnapshotRejection::File(SnapshotFileError::Checksum { .. })
            )));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started from corrupt snapshots"),
    }
}

/// `snapshot_interval` holds automatic snapshots back however far past the threshold
/// the log runs; an explicit snapshot still happens at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_interval_spaces_automatic_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = snap_config(dir.path(), 10, 5);
    c.snapshot_interval = std::time::Duration::from_secs(3600);
    let (raft, _state) = single_with(c).await;
    // The bootstrap configuration is written as a snapshot of its own.
    let (taken, index) = (raft.metrics().snapshots_taken, raft.status().snapshot_index);
    let last = propose_many(&raft, "i", 200, 10).await;
    assert_eq!(
        raft.metrics().snapshots_taken,
        taken,
        "held back by the interval"
    );
    assert_eq!(raft.status().snapshot_index, index);
    assert_eq!(raft.snapshot_now().await.unwrap(), last);
    assert_eq!(raft.metrics().snapshots_taken, taken + 1);
    raft.shutdown().await;
}
