//! Sessions, locks, lock-delay, invalidation and transactions on the state machine.
//! Time is the leader stamp passed to `apply_stamped`: no clock is read.

use super::{check, register};
use std::time::Duration;
use tribune_state::{Command, StateStore};
use tribune_types::model::ops::*;
use tribune_types::model::*;
use tribune_types::{HealthStatus, SessionId};

/// Applies with a leader clock of `now_ms`, returning the outcome.
struct S {
    store: StateStore,
    index: u64,
}

impl S {
    fn new() -> S {
        let s = S {
            store: StateStore::new(),
            index: 0,
        };
        s.store
            .apply(
                1,
                &register(
                    "n1",
                    None,
                    vec![check("serfHealth", "", HealthStatus::Passing)],
                ),
            )
            .unwrap();
        S { index: 1, ..s }
    }

    fn at(&mut self, now_ms: u64, req: WriteRequest) -> Result<WriteOutcome, WriteRejected> {
        self.index += 1;
        self.store
            .apply_stamped(self.index, now_ms, &Command::Request(req))
    }

    fn kv(&self, key: &str) -> Option<KvEntry> {
        match self
            .store
            .read(&ReadRequest::KvGet { key: key.into() }, None)
            .0
        {
            ReadResult::Kv(mut v) => v.pop(),
            other => panic!("{other:?}"),
        }
    }

    fn sessions(&self) -> Vec<Session> {
        match self.store.read(&ReadRequest::SessionList, None).0 {
            ReadResult::Sessions(v) => v,
            other => panic!("{other:?}"),
        }
    }
}

fn sid(n: u128) -> SessionId {
    SessionId(uuid::Uuid::from_u128(n))
}

fn session(n: u128, behavior: SessionBehavior, checks: &[&str]) -> WriteRequest {
    WriteRequest::SessionCreate(Session {
        id: sid(n),
        node: "n1".into(),
        lock_delay: Duration::from_secs(15),
        behavior,
        node_checks: checks.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    })
}

fn put(key: &str, val: &str, mode: KvSetMode) -> WriteRequest {
    WriteRequest::KvSet {
        entry: KvEntry {
            key: key.into(),
            value: val.as_bytes().to_vec(),
            ..Default::default()
        },
        mode,
    }
}

const DONE: Result<WriteOutcome, WriteRejected> = Ok(WriteOutcome::Done);
const FALSE: Result<WriteOutcome, WriteRejected> = Ok(WriteOutcome::NotApplied);

#[test]
fn create_checks_node_and_checks_with_consuls_errors() {
    let mut s = S::new();
    let mut bad = Session {
        id: sid(9),
        node: "nope".into(),
        ..Default::default()
    };
    let err = |r: Result<WriteOutcome, WriteRejected>| match r {
        Err(WriteRejected::Failed(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(s.at(1, WriteRequest::SessionCreate(bad.clone()))),
        "Missing node registration"
    );
    bad.node = "n1".into();
    bad.node_checks = vec!["dne".into()];
    assert_eq!(
        err(s.at(1, WriteRequest::SessionCreate(bad.clone()))),
        "Missing check 'dne' registration"
    );
    s.store
        .apply(
            50,
            &register("n1", None, vec![check("down", "", HealthStatus::Critical)]),
        )
        .unwrap();
    s.index = 50;
    bad.node_checks = vec!["down".into()];
    assert_eq!(
        err(s.at(1, WriteRequest::SessionCreate(bad))),
        "Check 'down' is in critical state"
    );
    assert!(s.sessions().is_empty());
    assert_eq!(s.at(1, session(1, SessionBehavior::Release, &[])), DONE);
    assert!(matches!(
        s.at(1, session(1, SessionBehavior::Release, &[])),
        Err(WriteRejected::Failed(_))
    ));
    let list = s.sessions();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].raft.create_index, 52);
}

#[test]
fn acquire_release_lock_index_and_holder_reacquire() {
    let mut s = S::new();
    s.at(1, session(1, SessionBehavior::Release, &["serfHealth"]))
        .unwrap();
    s.at(1, session(2, SessionBehavior::Release, &[])).unwrap();
    // Unknown session: an error with Consul's text, nothing written.
    assert_eq!(
        s.at(1, put("k", "x", KvSetMode::Acquire(sid(7)))),
        Err(WriteRejected::Failed(format!(
            "invalid session \"{}\"",
            sid(7)
        )))
    );
    assert!(s.kv("k").is_none());
    assert_eq!(s.at(1, put("k", "a", KvSetMode::Acquire(sid(1)))), DONE);
    let e = s.kv("k").unwrap();
    assert_eq!(
        (e.lock_index, e.session, e.value.as_slice()),
        (1, Some(sid(1)), &b"a"[..])
    );
    // Held by another session: false, unchanged.
    assert_eq!(s.at(1, put("k", "b", KvSetMode::Acquire(sid(2)))), FALSE);
    assert_eq!(s.kv("k").unwrap().value, b"a");
    // The holder re-acquires: value updated, LockIndex unchanged.
    assert_eq!(s.at(1, put("k", "c", KvSetMode::Acquire(sid(1)))), DONE);
    assert_eq!(s.kv("k").unwrap().lock_index, 1);
    // Only the holder releases; release keeps LockIndex and clears Session.
    assert_eq!(s.at(1, put("k", "d", KvSetMode::Release(sid(2)))), FALSE);
    assert_eq!(s.at(1, put("k", "e", KvSetMode::Release(sid(1)))), DONE);
    let e = s.kv("k").unwrap();
    assert_eq!(
        (e.lock_index, e.session, e.value.as_slice()),
        (1, None, &b"e"[..])
    );
    // A plain PUT overwrites a locked key but keeps the lock (locks are advisory).
    s.at(1, put("k", "f", KvSetMode::Acquire(sid(2)))).unwrap();
    assert_eq!(s.at(1, put("k", "g", KvSetMode::Set)), DONE);
    let e = s.kv("k").unwrap();
    assert_eq!((e.lock_index, e.session), (2, Some(sid(2))));
}

#[test]
fn destroy_releases_or_deletes_and_starts_lock_delay_on_the_stamped_clock() {
    let mut s = S::new();
    s.at(1_000, session(1, SessionBehavior::Release, &[]))
        .unwrap();
    s.at(1_000, session(2, SessionBehavior::Delete, &[]))
        .unwrap();
    s.at(1_000, session(3, SessionBehavior::Release, &[]))
        .unwrap();
    s.at(1_000, put("rel", "v", KvSetMode::Acquire(sid(1))))
        .unwrap();
    s.at(1_000, put("eph", "v", KvSetMode::Acquire(sid(2))))
        .unwrap();
    s.at(2_000, WriteRequest::SessionDestroy { id: sid(1) })
        .unwrap();
    s.at(2_000, WriteRequest::SessionDestroy { id: sid(2) })
        .unwrap();
    // Destroy is idempotent.
    assert_eq!(
        s.at(2_000, WriteRequest::SessionDestroy { id: sid(2) }),
        DONE
    );
    let rel = s.kv("rel").unwrap();
    assert_eq!((rel.session, rel.lock_index), (None, 1));
    assert!(s.kv("eph").is_none(), "behavior delete removes held keys");
    // Within the 15 s lock-delay nobody acquires; after it, the next holder gets LockIndex 2.
    assert_eq!(
        s.at(16_999, put("rel", "w", KvSetMode::Acquire(sid(3)))),
        FALSE
    );
    assert_eq!(
        s.at(17_000, put("rel", "w", KvSetMode::Acquire(sid(3)))),
        DONE
    );
    let rel = s.kv("rel").unwrap();
    assert_eq!((rel.session, rel.lock_index), (Some(sid(3)), 2));
    assert_eq!(s.sessions().len(), 1);
}

#[test]
fn lock_delay_survives_a_snapshot_and_zero_delay_disables_it() {
    let mut s = S::new();
    s.at(1_000, session(1, SessionBehavior::Release, &[]))
        .unwrap();
    let mut quick = match session(2, SessionBehavior::Release, &[]) {
        WriteRequest::SessionCreate(q) => q,
        _ => unreachable!(),
    };
    quick.lock_delay = Duration::ZERO;
    s.at(1_000, WriteRequest::SessionCreate(quick)).unwrap();
    s.at(1_000, session(3, SessionBehavior::Release, &[]))
        .unwrap();
    s.at(1_000, put("a", "", KvSetMode::Acquire(sid(1))))
        .unwrap();
    s.at(1_000, put("b", "", KvSetMode::Acquire(sid(2))))
        .unwrap();
    s.at(1_000, WriteRequest::SessionDestroy { id: sid(1) })
        .unwrap();
    s.at(1_000, WriteRequest::SessionDestroy { id: sid(2) })
        .unwrap();

    let restored = StateStore::new();
    restored.restore(&s.store.snapshot()).unwrap();
    let mut r = S {
        store: restored,
        index: s.index,
    };
    assert_eq!(r.at(1_001, put("b", "", KvSetMode::Acquire(sid(3)))), DONE);
    assert_eq!(r.at(1_001, put("a", "", KvSetMode::Acquire(sid(3)))), FALSE);
    assert_eq!(r.at(16_000, put("a", "", KvSetMode::Acquire(sid(3)))), DONE);
    // The held-keys index was rebuilt: destroying session 3 releases both keys.
    r.at(16_000, WriteRequest::SessionDestroy { id: sid(3) })
        .unwrap();
    assert_eq!(r.kv("a").unwrap().session, None);
    assert_eq!(r.kv("b").unwrap().session, None);
}

#[test]
fn critical_or_removed_checks_and_node_deregistration_invalidate_bound_sessions() {
    let mut s = S::new();
    s.store
        .apply(
            10,
            &register(
                "n1",
                Some("web"),
                vec![check("svc", "web", HealthStatus::Passing)],
            ),
        )
        .unwrap();
    s.index = 10;
    s.at(1, session(1, SessionBehavior::Release, &["serfHealth"]))
        .unwrap();
    s.at(1, session(2, SessionBehavior::Release, &[])).unwrap();
    let mut svc_bound = match session(3, SessionBehavior::Delete, &[]) {
        WriteRequest::SessionCreate(q) => q,
        _ => unreachable!(),
    };
    svc_bound.service_checks = vec![ServiceCheckRef {
        id: "svc".into(),
        namespace: String::new(),
    }];
    s.at(1, WriteRequest::SessionCreate(svc_bound)).unwrap();
    s.at(1, put("held", "", KvSetMode::Acquire(sid(1))))
        .unwrap();
    s.at(1, put("eph", "", KvSetMode::Acquire(sid(3)))).unwrap();

    // serfHealth goes critical: session 1 dies and its lock is released.
    s.at(
        1,
        WriteRequest::Register(Registration {
            node: Node {
                node: "n1".into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            checks: vec![check("serfHealth", "", HealthStatus::Critical)],
            skip_node_update: true,
            ..Default::default()
        }),
    )
    .unwrap();
    let ids: Vec<SessionId> = s.sessions().iter().map(|x| x.id).collect();
    assert_eq!(ids, vec![sid(2), sid(3)]);
    assert_eq!(s.kv("held").unwrap().session, None);

    // The service (and its check) is deregistered: session 3 dies, its key is deleted.
    s.at(
        1,
        WriteRequest::Deregister(Deregistration {
            node: "n1".into(),
            service_id: Some("web".into()),
            check_id: None,
        }),
    )
    .unwrap();
    assert!(s.kv("eph").is_none());
    // Session 2 has no checks; only its node's removal ends it.
    assert_eq!(s.sessions().len(), 1);
    s.at(
        1,
        WriteRequest::Deregister(Deregistration {
            node: "n1".into(),
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(s.sessions().is_empty());
}

fn kv_op(verb: KvVerb, key: &str, val: &str) -> TxnOp {
    TxnOp::Kv {
        verb,
        entry: KvEntry {
            key: key.into(),
            value: val.as_bytes().to_vec(),
            ..Default::default()
        },
    }
}

#[test]
fn txn_is_all_or_nothing_with_per_op_errors() {
    let mut s = S::new();
    s.at(1, put("a", "1", KvSetMode::Set)).unwrap();
    let before = s.store.last_index();
    let r = s.at(
        1,
        WriteRequest::Txn(vec![
            kv_op(KvVerb::Set, "b", "2"),
            kv_op(KvVerb::Get, "missing", ""),
            kv_op(KvVerb::CheckNotExists, "a", ""),
        ]),
    );
    assert_eq!(
        r,
        Err(WriteRejected::TxnRolledBack(vec![
            TxnError {
                op_index: 1,
                what: "key \"missing\" doesn't exist".into()
            },
            TxnError {
                op_index: 2,
                what: "key \"a\" exists".into()
            },
        ]))
    );
    assert!(s.kv("b").is_none(), "rolled back");
    assert!(s.store.last_index() > before);

    let mut cas = kv_op(KvVerb::Cas, "a", "3");
    if let TxnOp::Kv { entry, .. } = &mut cas {
        entry.raft.modify_index = s.kv("a").unwrap().raft.modify_index;
    }
    let r = s
        .at(
            1,
            WriteRequest::Txn(vec![
                kv_op(KvVerb::Set, "b", "2"),
                cas,
                kv_op(KvVerb::Get, "a", ""),
                kv_op(KvVerb::Delete, "b", ""),
            ]),
        )
        .unwrap();
    let WriteOutcome::Txn(results) = r else {
        panic!("{r:?}")
    };
    assert_eq!(results.len(), 3);
    match (&results[0], &results[2]) {
        (TxnResult::Kv(set), TxnResult::Kv(get)) => {
            assert!(set.value.is_empty(), "write results carry no value");
            assert_eq!(get.value, b"3");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.kv("b").is_none());
}

#[test]
fn txn_locks_catalog_ops_and_read_only_path() {
    let mut s = S::new();
    s.at(1, session(1, SessionBehavior::Release, &[])).unwrap();
    let mut lock = kv_op(KvVerb::Lock, "l", "x");
    if let TxnOp::Kv { entry, .. } = &mut lock {
        entry.session = Some(sid(1));
    }
    let node = Node {
        node: "n2".into(),
        address: "10.0.0.2".into(),
        ..Default::default()
    };
    let r = s
        .at(
            1,
            WriteRequest::Txn(vec![
                lock.clone(),
                TxnOp::Node {
                    verb: CatalogVerb::Set,
                    node: node.clone(),
                },
                TxnOp::Service {
                    verb: CatalogVerb::Set,
                    node: "n2".into(),
                    service: Service {
                        id: "db1".into(),
                        service: "db".into(),
                        ..Default::default()
                    },
                },
            ]),
        )
        .unwrap();
    assert!(
        matches!(r, WriteOutcome::Txn(ref v) if v.len() == 3),
        "{r:?}"
    );
    assert_eq!(s.kv("l").unwrap().session, Some(sid(1)));
    // A second lock attempt by another session in a txn is an error, not a false.
    s.at(1, session(2, SessionBehavior::Release, &[])).unwrap();
    if let TxnOp::Kv { entry, .. } = &mut lock {
        entry.session = Some(sid(2));
    }
    assert_eq!(
        s.at(1, WriteRequest::Txn(vec![lock])),
        Err(WriteRejected::TxnRolledBack(vec![TxnError {
            op_index: 0,
            what: "failed to lock key \"l\", lock is already held".into()
        }]))
    );
    // Service set on a missing node fails; CAS on a stale index fails.
    let mut stale = node.clone();
    stale.raft.modify_index = 1;
    let r = s.at(
        1,
        WriteRequest::Txn(vec![
            TxnOp::Service {
                verb: CatalogVerb::Set,
                node: "ghost".into(),
                service: Service {
                    service: "x".into(),
                    ..Default::default()
                },
            },
            TxnOp::Node {
                verb: CatalogVerb::Cas,
                node: stale,
            },
        ]),
    );
    let Err(WriteRejected::TxnRolledBack(errs)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(errs[0].what, "Missing node registration");
    assert_eq!(errs[1].what, "failed to set node \"n2\", index is stale");

    // Read-only transactions answer from a snapshot and change nothing.
    let index = s.store.last_index();
    let (res, at) = s.store.read(
        &ReadRequest::Txn(vec![
            kv_op(KvVerb::Get, "l", ""),
            TxnOp::Node {
                verb: CatalogVerb::Get,
                node,
            },
        ]),
        None,
    );
    assert_eq!(at, index);
    match res {
        ReadResult::Txn(Ok(v)) => assert_eq!(v.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.store.last_index(), index);
}
