//! Unit tests for [`super::RocksStorage`]: bootstrap, append/overwrite,
//! corruption detection at open, snapshot serving and installation.

use std::path::Path;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage, StorageError};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use super::layout::{log_key, CF_LOG, CF_META};
use super::{OpenedStorage, RocksStorage};
use crate::error::{ConsensusError, CorruptionError};

fn open(dir: &Path) -> OpenedStorage {
    RocksStorage::open(&dir.join("raft"), &dir.join("snaps")).unwrap()
}

fn try_open(dir: &Path) -> Result<OpenedStorage, ConsensusError> {
    RocksStorage::open(&dir.join("raft"), &dir.join("snaps"))
}

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// Write raw bytes into the log column family behind the storage's back.
fn poke_log(dir: &Path, index: u64, value: &[u8]) {
    let opts = Options::default();
    let cfs = [CF_LOG, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir.join("raft"), cfs).unwrap();
    db.put_cf(db.cf_handle(CF_LOG).unwrap(), log_key(index), value)
        .unwrap();
}

fn bootstrapped(dir: &Path) -> RocksStorage {
    let mut s = open(dir).storage;
    assert!(s.is_empty());
    s.bootstrap(1, b"initial").unwrap();
    s
}

#[test]
fn bootstrap_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    drop(bootstrapped(dir.path()));
    let opened = open(dir.path());
    let s = opened.storage;
    assert!(!s.is_empty());
    let base = opened.base_snapshot.unwrap();
    assert_eq!(
        (base.index, base.term, base.data.as_slice()),
        (1, 1, &b"initial"[..])
    );
    assert_eq!(s.first_index().unwrap(), 2);
    assert_eq!(s.last_index().unwrap(), 1);
    assert_eq!(s.term(1).unwrap(), 1);
    let state = s.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1]);
    assert_eq!(state.hard_state.commit, 1);
}

#[test]
fn append_overwrite_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    let ents: Vec<Entry> = (2..=6).map(|i| entry(i, 2, b"x")).collect();
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 3,
    };
    s.append(&ents, Some(&hs), true).unwrap();
    // A new leader overwrites from index 4 with a shorter tail.
    s.append(&[entry(4, 3, b"y")], None, true).unwrap();
    drop(s);

    let s = open(dir.path()).storage;
    assert_eq!(s.last_index().unwrap(), 4);
    assert_eq!(s.term(4).unwrap(), 3);
    assert_eq!(s.term(3).unwrap(), 2);
    let got = s.entries(2, 5, None, ctx()).unwrap();
    assert_eq!(
        got.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(got[2].data, b"y");
    // A size limit still returns at least one entry.
    assert_eq!(s.entries(2, 5, Some(0), ctx()).unwrap().len(), 1);
    assert!(matches!(
        s.entries(1, 3, None, ctx()),
        Err(raft::Error::Store(StorageError::Compacted))
    ));
    assert!(matches!(
        s.term(9),
        Err(raft::Error::Store(StorageError::Unavailable))
    ));
    assert_eq!(s.hard_state(), &hs);
}

#[test]
fn undecodable_entry_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    s.append(&[entry(2, 2, b"a"), entry(3, 2, b"b")], None, true)
        .unwrap();
    drop(s);
    poke_log(dir.path(), 3, &[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        try_open(dir.path()),
        Err(ConsensusError::Corrupt(CorruptionError::Entry {
            index: 3,
            ..
        }))
    ));
}

#[test]
fn gaps_wrong_indexes_and_unknown_types_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    s.append(&[entry(2, 2, b"a")], None, true).unwrap();
    drop(s);
    poke_log(dir.path(), 4, &crate::codec::encode(&entry(4, 2, b"c")));
    assert!(matches!(
        try_open(dir.path()),
        Err(ConsensusError::Corrupt(CorruptionError::LogGap {
            expected: 3,
            found: 4
        }))
    ));
    poke_log(dir.path(), 3, &crate::codec::encode(&entry(7, 2, b"c")));
    assert!(matches!(
        try_open(dir.path()),
        Err(ConsensusError::Corrupt(
            CorruptionError::EntryIndexMismatch { key: 3, found: 7 }
        ))
    ));
    let mut bad = entry(3, 2, b"c");
    bad.entry_type = 77;
    poke_log(dir.path(), 3, &crate::codec::encode(&bad));
    assert!(matches!(
        try_open(dir.path()),
        Err(ConsensusError::Corrupt(CorruptionError::UnknownEntryType {
            index: 3,
            value: 77
        }))
    ));
}

#[test]
fn snapshot_served_only_to_members() {
    let dir = tempfile::tempdir().unwrap();
    let s = bootstrapped(dir.path());
    let snap = s.snapshot(0, 1).unwrap();
    assert_eq!(snap.get_metadata().index, 1);
    assert_eq!(snap.data, b"initial");
    assert!(!s.take_snapshot_wanted());
    // Server 2 is not in the bootstrap membership: raft must wait for a newer one.
    assert!(matches!(
        s.snapshot(0, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
    assert!(s.take_snapshot_wanted());
    assert!(!s.take_snapshot_wanted());
}

#[test]
fn local_snapshot_compacts_no_further_than_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    let ents: Vec<Entry> = (2..=40).map(|i| entry(i, 2, b"x")).collect();
    s.append(&ents, None, true).unwrap();
    let conf = ConfState {
        voters: vec![1],
        ..Default::default()
    };
    s.install_local_snapshot(20, conf.clone(), b"s20", 5)
        .unwrap();
    // Previous snapshot is the bootstrap one at 1: nothing to compact yet.
    assert_eq!(s.first_index().unwrap(), 2);
    s.install_local_snapshot(35, conf, b"s35", 5).unwrap();
    assert_eq!(s.first_index().unwrap(), 21);
    assert_eq!(s.term(20).unwrap(), 2);
    drop(s);
    let opened = open(dir.path());
    assert_eq!(opened.base_snapshot.unwrap().data, b"s35");
    assert_eq!(opened.storage.first_index().unwrap(), 21);
}

#[test]
fn received_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path()).storage;
    s.append(&[entry(1, 1, b"old")], None, true).unwrap();
    let snap = Snapshot {
        data: b"leader state".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2],
                ..Default::default()
            }),
            index: 50,
            term: 4,
        }),
    };
    s.install_received_snapshot(&snap).unwrap();
    assert_eq!(s.first_index().unwrap(), 51);
    assert_eq!(s.last_index().unwrap(), 50);
    assert_eq!(s.term(50).unwrap(), 4);
    drop(s);
    let opened = open(dir.path());
    assert_eq!(opened.base_snapshot.unwrap().data, b"leader state");
    let state = opened.storage.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1, 2]);
    assert_eq!(state.hard_state.commit, 50);
}

fn members(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    }
}

fn leader_snapshot(index: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        data: b"leader state".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(members(voters)),
            index,
            term: 4,
        }),
    }
}

/// The index of the newest membership survives a restart (its entry is usually
/// compacted away by then), and a leader's snapshot moves it only when it
/// brings a different membership.
#[test]
fn the_membership_index_is_kept_across_restarts_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    assert_eq!(s.applied_conf_index(), 1);
    s.append(&[entry(2, 1, b"a"), entry(3, 1, b"")], None, true)
        .unwrap();
    s.note_applied(2, None);
    s.note_applied(3, Some(members(&[2, 1])));
    s.note_applied(3, None);
    s.flush_progress().unwrap();
    assert_eq!(s.applied_conf_index(), 3);
    drop(s);
    let mut s = open(dir.path()).storage;
    assert_eq!(s.applied_conf_index(), 3);

    // The same servers, listed in another order: the change at 3 stands.
    s.install_received_snapshot(&leader_snapshot(40, &[1, 2]))
        .unwrap();
    assert_eq!(s.applied_conf_index(), 3);
    // A server added behind this one's back: the snapshot is the best bound.
    s.install_received_snapshot(&leader_snapshot(50, &[1, 2, 3]))
        .unwrap();
    assert_eq!(s.applied_conf_index(), 50);
    drop(s);
    assert_eq!(open(dir.path()).storage.applied_conf_index(), 50);
}

#[test]
fn conf_changes_in_the_log_are_noticed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = bootstrapped(dir.path());
    let mut cc = entry(3, 2, b"");
    cc.entry_type = EntryType::EntryConfChange as i32;
    s.append(&[entry(2, 2, b"a"), cc], None, true).unwrap();
    assert_eq!(s.last_conf_change_at_open(), 0);
    drop(s);
    assert_eq!(open(dir.path()).storage.last_conf_change_at_open(), 3);
}

/// The bound on the WAL kept for the meta column family's sake is in force (the
/// options file RocksDB writes at open records what it runs with).
#[test]
fn the_wal_kept_for_unflushed_metadata_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let _s = bootstrapped(dir.path());
    let options: String = std::fs::read_dir(dir.path().join("raft"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("OPTIONS-")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        options.contains(&format!("max_total_wal_size={}", 128u64 << 20)),
        "{options}"
    );
}
