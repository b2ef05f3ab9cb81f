//! The Connect CA configuration: CAS on its ModifyIndex (0 only while none is
//! stored), the create index kept across updates, and a blocking read woken by a
//! write.

use tribune_state::{Command, StateStore};
use tribune_store::WatchSet;
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteOutcome, WriteRequest};
use tribune_types::model::CaConfig;

fn set(ttl: u64, cas: Option<u64>) -> Command {
    Command::Request(WriteRequest::CaSetConfig {
        config: CaConfig {
            provider: "consul".into(),
            config_json: "{}".into(),
            leaf_cert_ttl_secs: ttl,
            ..Default::default()
        },
        cas,
    })
}

fn read(state: &StateStore, ws: Option<&mut WatchSet>) -> Option<CaConfig> {
    match state.read(&ReadRequest::CaConfig, ws).0 {
        ReadResult::CaConfig(c) => c,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn ca_config_cas_and_watch() {
    let state = StateStore::new();
    assert_eq!(read(&state, None), None);
    assert_eq!(
        state.apply(1, &set(3600, Some(5))).unwrap(),
        WriteOutcome::NotApplied
    );
    assert_eq!(read(&state, None), None, "a refused CAS changes nothing");
    assert_eq!(
        state.apply(2, &set(3600, Some(0))).unwrap(),
        WriteOutcome::Done
    );
    assert_eq!(
        state.apply(3, &set(7200, Some(0))).unwrap(),
        WriteOutcome::NotApplied
    );

    let mut ws = WatchSet::new();
    let first = read(&state, Some(&mut ws)).unwrap();
    assert_eq!((first.raft.create_index, first.raft.modify_index), (2, 2));
    let woken = tokio::spawn(ws.wait(std::time::Duration::from_secs(60)));
    assert_eq!(
        state.apply(4, &set(7200, None)).unwrap(),
        WriteOutcome::Done
    );
    assert!(woken.await.unwrap(), "woken by the write, not the timeout");
    let now = read(&state, None).unwrap();
    assert_eq!(now.leaf_cert_ttl_secs, 7200);
    assert_eq!((now.raft.create_index, now.raft.modify_index), (2, 4));
}
