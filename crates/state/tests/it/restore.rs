//! An operator's snapshot restore through the `Restore` command: it replaces the
//! state inside an apply batch, wakes every blocked query (even those whose index
//! went backwards) and leaves the state untouched when the bytes are bad.

use tribune_state::{Command, StateStore};
use tribune_store::WatchSet;
use tribune_types::model::ops::{
    ReadRequest, ReadResult, WriteOutcome, WriteRejected, WriteRequest,
};

fn set(key: &str) -> Command {
    Command::Request(WriteRequest::kv_set(key, b"v".to_vec()))
}

fn keys(state: &StateStore) -> Vec<String> {
    match state
        .read(
            &ReadRequest::KvKeys {
                prefix: String::new(),
                separator: String::new(),
            },
            None,
        )
        .0
    {
        ReadResult::Keys(k) => k,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn restore_replaces_state_in_a_batch_and_wakes_watchers() {
    let state = StateStore::new();
    state.apply(1, &set("a")).unwrap();
    let saved = state.snapshot();
    state.apply(2, &set("b")).unwrap();
    let mut ws = WatchSet::new();
    let (_, index) = state.read(&ReadRequest::KvGet { key: "b".into() }, Some(&mut ws));
    assert_eq!(index, 2);
    let before = state.restores();

    // Bad bytes: refused, nothing changes, nobody is woken by a restore.
    state.begin_batch();
    let refused = state.apply(
        3,
        &Command::Restore {
            state: b"junk".to_vec(),
        },
    );
    state.end_batch();
    assert!(refused.is_err());
    assert_eq!(keys(&state), vec!["a", "b"]);
    assert_eq!(state.restores(), before);
    // The refused entry still counts as applied, as any refused command does.
    assert_eq!(state.last_index(), 3);

    // A whole, checksummed frame whose body does not decode passes the cheap
    // check made before proposing (`verify_snapshot`), and is refused here,
    // where the state would be replaced, changing nothing.
    let mut forged = saved.clone();
    let body = 28; // magic 8, version 4, index 8, length 8
    forged[body] = 0xc1; // a MessagePack marker that is never valid
    let end = forged.len() - 4;
    let crc = crc32fast::hash(&forged[..end]);
    forged[end..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(StateStore::verify_snapshot(&forged).unwrap(), 1);
    let refused = state.apply(5, &Command::Restore { state: forged });
    assert!(
        matches!(&refused, Err(WriteRejected::Failed(m)) if m.starts_with("snapshot restore failed")),
        "{refused:?}"
    );
    assert_eq!(keys(&state), vec!["a", "b"]);
    assert_eq!(state.restores(), before);
    assert_eq!(state.last_index(), 5, "outside a batch too");

    state.begin_batch();
    let done = state.apply(6, &Command::Restore { state: saved }).unwrap();
    assert_eq!(done, WriteOutcome::Done);
    // Inside the batch readers still see the old state.
    assert_eq!(keys(&state), vec!["a", "b"]);
    state.end_batch();
    assert_eq!(keys(&state), vec!["a"]);
    assert_eq!(state.restores(), before + 1);
    assert_eq!(state.last_index(), 6);
    // The watcher of `b` is woken although `b` is gone and its index went backwards.
    assert!(ws.wait(std::time::Duration::from_secs(5)).await);
}
