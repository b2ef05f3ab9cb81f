//! Committed entries that cannot be applied stop the node with a typed error.

use std::time::Duration;

use raft::eraftpb::{ConfChange, Entry, EntryType, HardState};

use crate::error::{ConsensusError, CorruptionError, ProposeError, RestoreError};
use crate::{start, NoopTransport, RaftConfig, RocksStorage, StateMachine};

struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, _index: u64, _data: &[u8]) -> Result<u64, crate::ApplyError> {
        self.0 += 1;
        Ok(self.0)
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), RestoreError> {
        let bytes: [u8; 8] = data
            .try_into()
            .map_err(|e| RestoreError::Malformed(Box::new(e)))?;
        self.0 = u64::from_be_bytes(bytes);
        Ok(())
    }
}

/// Bootstrap a data dir and commit one conf-change entry with `data` at index 2.
fn with_committed_conf_change(dir: &std::path::Path, data: Vec<u8>) -> RaftConfig {
    let config = RaftConfig::new(1, dir);
    let mut storage = RocksStorage::open(&config.log_dir(), &config.snapshot_dir())
        .unwrap()
        .storage;
    storage.bootstrap(1, &Counter(0).snapshot()).unwrap();
    let entry = Entry {
        entry_type: EntryType::EntryConfChange as i32,
        index: 2,
        term: 2,
        data,
        ..Default::default()
    };
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 2,
    };
    storage.append(&[entry], Some(&hs), true).unwrap();
    config
}

async fn expect_fatal(config: RaftConfig) -> std::sync::Arc<ConsensusError> {
    let raft = start(config, Counter(0), NoopTransport).unwrap();
    let mut rx = raft.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| !s.running))
        .await
        .expect("node should stop")
        .expect("status channel");
    assert_eq!(raft.propose(b"x".to_vec()).await, Err(ProposeError::Fatal));
    raft.fatal_error().expect("fatal error recorded")
}

#[tokio::test]
async fn undecodable_committed_conf_change_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let config = with_committed_conf_change(dir.path(), vec![0xff; 5]);
    let err = expect_fatal(config).await;
    assert!(
        matches!(
            *err,
            ConsensusError::Corrupt(CorruptionError::ConfChange { index: 2, .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_conf_change_type_is_fatal_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cc = ConfChange {
        change_type: 99,
        node_id: 2,
        ..Default::default()
    };
    let config = with_committed_conf_change(dir.path(), crate::codec::encode(&cc));
    let err = expect_fatal(config).await;
    assert!(
        matches!(
            *err,
            ConsensusError::Corrupt(CorruptionError::ConfChangeEnum {
                index: 2,
                value: 99
            })
        ),
        "{err}"
    );
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<crate::Raft<Counter>>();
    assert_send_sync::<crate::RaftInbox<Counter>>();
}
