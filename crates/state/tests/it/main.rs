//! Integration tests of the state machine: apply semantics, read indexes, watches, snapshots.

use std::time::Duration;
use tribune_state::{Command, StateStore};
use tribune_store::WatchSet;
use tribune_types::model::ops::*;
use tribune_types::model::*;
use tribune_types::{HealthStatus, NodeName};

mod ca_config;
mod lock_sim;
mod prepared_queries;
mod restore;
mod sessions;

fn set(key: &str, val: &str, mode: KvSetMode) -> Command {
    Command::Request(WriteRequest::KvSet {
        entry: KvEntry {
            key: key.into(),
            value: val.as_bytes().to_vec(),
            flags: 1 << 63,
            ..Default::default()
        },
        mode,
    })
}

fn del(key: &str, mode: KvDeleteMode) -> Command {
    Command::Request(WriteRequest::KvDelete {
        key: key.into(),
        mode,
    })
}

fn kv(s: &StateStore, key: &str) -> (Option<KvEntry>, u64) {
    match s.read(&ReadRequest::KvGet { key: key.into() }, None) {
        (ReadResult::Kv(mut v), i) => (v.pop(), i),
        other => panic!("{other:?}"),
    }
}

#[test]
fn kv_cas_semantics() {
    let s = StateStore::new();
    assert_eq!(
        s.apply(1, &set("a", "1", KvSetMode::Cas(0))),
        Ok(WriteOutcome::Done)
    );
    assert_eq!(
        s.apply(2, &set("a", "2", KvSetMode::Cas(0))),
        Ok(WriteOutcome::NotApplied)
    );
    assert_eq!(
        s.apply(3, &set("a", "3", KvSetMode::Cas(2))),
        Ok(WriteOutcome::NotApplied)
    );
    assert_eq!(
        s.apply(4, &set("a", "4", KvSetMode::Cas(1))),
        Ok(WriteOutcome::Done)
    );
    let (e, idx) = kv(&s, "a");
    let e = e.unwrap();
    assert_eq!(
        (
            e.value.as_slice(),
            e.raft.create_index,
            e.raft.modify_index,
            idx
        ),
        (&b"4"[..], 1, 4, 4)
    );
    assert_eq!(e.flags, 1 << 63);
    assert_eq!(
        s.apply(5, &del("a", KvDeleteMode::Cas(0))),
        Ok(WriteOutcome::NotApplied)
    );
    assert_eq!(
        s.apply(6, &del("a", KvDeleteMode::Cas(4))),
        Ok(WriteOutcome::Done)
    );
    // A missing key reports the KV table's index.
    assert_eq!(kv(&s, "a"), (None, 6));
}

#[test]
fn prefix_index_never_goes_backwards_after_delete() {
    let s = StateStore::new();
    s.apply(1, &set("p/a", "1", KvSetMode::Set)).unwrap();
    s.apply(2, &set("p/b", "1", KvSetMode::Set)).unwrap();
    s.apply(3, &set("q", "1", KvSetMode::Set)).unwrap();
    s.apply(4, &del("p/b", KvDeleteMode::Key)).unwrap();
    let (_, idx) = s.read(
        &ReadRequest::KvList {
            prefix: "p/".into(),
        },
        None,
    );
    assert_eq!(idx, 4);
    s.apply(5, &del("p/", KvDeleteMode::Tree)).unwrap();
    let (res, idx) = s.read(
        &ReadRequest::KvList {
            prefix: "p/".into(),
        },
        None,
    );
    assert_eq!((res, idx), (ReadResult::Kv(vec![]), 5));
}

#[test]
fn keys_with_separator() {
    let s = StateStore::new();
    for (i, k) in ["web/a", "web/sub/x", "web/sub/y", "webz", "other"]
        .iter()
        .enumerate()
    {
        s.apply(i as u64 + 1, &set(k, "", KvSetMode::Set)).unwrap();
    }
    let (res, _) = s.read(
        &ReadRequest::KvKeys {
            prefix: "web".into(),
            separator: "/".into(),
        },
        None,
    );
    assert_eq!(res, ReadResult::Keys(vec!["web/".into(), "webz".into()]));
    let (res, _) = s.read(
        &ReadRequest::KvKeys {
            prefix: "web/".into(),
            separator: "/".into(),
        },
        None,
    );
    assert_eq!(
        res,
        ReadResult::Keys(vec!["web/a".into(), "web/sub/".into()])
    );
}

fn register(node: &str, svc: Option<&str>, checks: Vec<Check>) -> Command {
    Command::Request(WriteRequest::Register(Registration {
        node: Node {
            node: node.into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        },
        service: svc.map(|s| Service {
            service: s.into(),
            port: 80,
            ..Default::default()
        }),
        checks,
        skip_node_update: false,
    }))
}

fn check(id: &str, svc: &str, status: HealthStatus) -> Check {
    Check {
        check_id: id.into(),
        name: id.into(),
        service_id: svc.into(),
        status,
        ..Default::default()
    }
}

#[test]
fn health_service_has_node_and_service_checks_and_per_service_index() {
    let s = StateStore::new();
    s.apply(
        1,
        &register(
            "n1",
            None,
            vec![check("serfHealth", "", HealthStatus::Passing)],
        ),
    )
    .unwrap();
    s.apply(
        2,
        &register(
            "n1",
            Some("web"),
            vec![check("web-check", "web", HealthStatus::Critical)],
        ),
    )
    .unwrap();
    s.apply(3, &register("n2", Some("db"), vec![])).unwrap();
    let (res, idx) = s.read(
        &ReadRequest::HealthService {
            service: "web".into(),
        },
        None,
    );
    let ReadResult::Health(entries) = res else {
        panic!()
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].checks.len(), 2);
    assert_eq!(entries[0].checks[1].service_name, "web");
    // Registering db on another node did not move web's index.
    assert_eq!(idx, 2);
    // Re-registering identical data changes nothing.
    s.apply(4, &register("n1", Some("web"), vec![])).unwrap();
    let (_, idx) = s.read(
        &ReadRequest::HealthService {
            service: "web".into(),
        },
        None,
    );
    assert_eq!(idx, 2);
    // A check bound to an unknown service is rejected and changes nothing.
    let r = s.apply(
        5,
        &register("n3", None, vec![check("c", "nope", HealthStatus::Passing)]),
    );
    assert!(r.is_err());
    let (res, _) = s.read(&ReadRequest::CatalogNodes, None);
    let ReadResult::Nodes(nodes) = res else {
        panic!()
    };
    assert_eq!(nodes.len(), 2);
    // Deregistering the node removes its services and checks.
    s.apply(
        6,
        &Command::Request(WriteRequest::Deregister(Deregistration {
            node: NodeName::from("n1"),
            ..Default::default()
        })),
    )
    .unwrap();
    let (res, idx) = s.read(
        &ReadRequest::HealthService {
            service: "web".into(),
        },
        None,
    );
    assert_eq!((res, idx), (ReadResult::Health(vec![]), 6));
    let (res, _) = s.read(&ReadRequest::HealthState { state: None }, None);
    assert_eq!(res, ReadResult::Checks(vec![]));
}

#[tokio::test(start_paused = true)]
async fn watches_wake_only_for_what_was_read() {
    let s = StateStore::new();
    let mut ws = WatchSet::new();
    s.read(
        &ReadRequest::KvGet {
            key: "watched".into(),
        },
        Some(&mut ws),
    );
    s.apply(1, &set("other", "x", KvSetMode::Set)).unwrap();
    assert!(!ws.wait(Duration::from_secs(5)).await);
    let mut ws = WatchSet::new();
    s.read(
        &ReadRequest::KvGet {
            key: "watched".into(),
        },
        Some(&mut ws),
    );
    s.apply(2, &set("watched", "x", KvSetMode::Set)).unwrap();
    assert!(ws.wait(Duration::from_secs(5)).await);
}

#[test]
fn snapshot_round_trip_and_corruption() {
    let s = StateStore::new();
    s.apply(
        1,
        &register(
            "n1",
            Some("web"),
            vec![check("c", "web", HealthStatus::Passing)],
        ),
    )
    .unwrap();
    s.apply(2, &set("k", "v", KvSetMode::Set)).unwrap();
    s.apply(3, &del("k", KvDeleteMode::Key)).unwrap();
    let snap = s.snapshot();
    let t = StateStore::new();
    assert_eq!(t.restore(&snap).unwrap(), 3);
    assert_eq!(t.snapshot(), snap);
    assert_eq!(
        t.read(&ReadRequest::KvList { prefix: "".into() }, None).1,
        3
    );
    let mut bad = snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    assert!(t.restore(&bad).is_err());
    assert!(t.restore(&snap[..snap.len() - 1]).is_err());
    assert!(t.restore(b"garbage").is_err());
    // Failed restores left the state alone.
    assert_eq!(t.snapshot(), snap);

    // What `snapshot inspect` lists: records under Consul's names, measured.
    let contents = StateStore::inspect_snapshot(&snap).unwrap();
    assert_eq!(contents.index, 3);
    let count = |name: &str| {
        contents
            .records
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.count)
    };
    assert_eq!(count("Register"), Some(3), "{:?}", contents.records);
    assert_eq!(count("Tombstone"), Some(1));
    assert_eq!(count("KVS"), None, "the key was deleted");
    let total: usize = contents.records.iter().map(|r| r.size).sum();
    assert!(total > 0 && total < snap.len(), "{total} of {}", snap.len());
    assert!(StateStore::inspect_snapshot(&bad).is_err());
}

/// A snapshot task serialises the state as it was when the task was made, even
/// if writes are applied before it runs (it runs on another thread while the
/// raft thread goes on applying).
#[test]
fn snapshot_task_serialises_the_state_it_captured() {
    let s = StateStore::new();
    s.apply(1, &set("a", "1", KvSetMode::Set)).unwrap();
    let expected = s.snapshot();
    let job = s.snapshot_job();
    s.apply(2, &set("a", "2", KvSetMode::Set)).unwrap();
    s.apply(3, &set("b", "3", KvSetMode::Set)).unwrap();
    let data = std::thread::spawn(move || {
        // Written behind other bytes, as into a file after its own header.
        let mut out = std::io::Cursor::new(b"prefix".to_vec());
        out.set_position(6);
        let len = job.write_to(&mut out).unwrap();
        let out = out.into_inner();
        assert_eq!(len as usize, out.len() - 6);
        out[6..].to_vec()
    })
    .join()
    .unwrap();
    assert_eq!(data, expected);
    let t = StateStore::new();
    assert_eq!(t.restore(&data).unwrap(), 1);
}

/// A snapshot whose output fails (a full disk) reports the error instead of
/// panicking or claiming success.
#[test]
fn a_snapshot_job_reports_a_failing_output() {
    struct Full(std::io::Cursor<Vec<u8>>);
    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.get_ref().len() + buf.len() > 100 {
                return Err(std::io::Error::other("no space left"));
            }
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl std::io::Seek for Full {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(to)
        }
    }
    let s = StateStore::new();
    for i in 0..20 {
        s.apply(i + 1, &set(&format!("k/{i}"), "some value", KvSetMode::Set))
            .unwrap();
    }
    let err = s
        .snapshot_job()
        .write_to(&mut Full(std::io::Cursor::new(Vec::new())))
        .unwrap_err();
    assert_eq!(err.to_string(), "no space left");
}

#[test]
fn connect_instances_are_proxies_of_the_service_and_native_instances() {
    let s = StateStore::new();
    let reg = |node: &str, svc: Service| {
        Command::Request(WriteRequest::Register(Registration {
            node: Node {
                node: node.into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            service: Some(svc),
            checks: vec![],
            skip_node_update: false,
        }))
    };
    s.apply(
        1,
        &reg(
            "n1",
            Service {
                service: "web".into(),
                ..Default::default()
            },
        ),
    )
    .unwrap();
    let proxy = Service {
        service: "web-proxy".into(),
        kind: "connect-proxy".into(),
        proxy_destination: "web".into(),
        ..Default::default()
    };
    s.apply(2, &reg("n1", proxy)).unwrap();
    let native = Service {
        service: "web".into(),
        id: "web-native".into(),
        connect_native: true,
        ..Default::default()
    };
    s.apply(3, &reg("n2", native)).unwrap();
    let (res, _) = s.read(
        &ReadRequest::CatalogConnect {
            service: "web".into(),
        },
        None,
    );
    let ReadResult::ServiceInstances(inst) = res else {
        panic!()
    };
    let mut ids: Vec<_> = inst
        .iter()
        .map(|i| i.service.id.as_str().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["web-native", "web-proxy"]);
    let (res, _) = s.read(
        &ReadRequest::HealthConnect {
            service: "db".into(),
        },
        None,
    );
    assert_eq!(res, ReadResult::Health(vec![]));
}

#[test]
fn a_check_that_moves_bumps_its_old_owner_and_renames_follow_the_service() {
    let s = StateStore::new();
    s.apply(
        1,
        &register(
            "n1",
            Some("db"),
            vec![check("c", "", HealthStatus::Critical)],
        ),
    )
    .unwrap();
    s.apply(2, &register("n1", Some("web"), vec![])).unwrap();
    let (_, before) = s.read(
        &ReadRequest::HealthService {
            service: "db".into(),
        },
        None,
    );
    // `c` becomes a check of `web`: `db` no longer sees it, so its index must move.
    s.apply(
        3,
        &register("n1", None, vec![check("c", "web", HealthStatus::Critical)]),
    )
    .unwrap();
    let (res, after) = s.read(
        &ReadRequest::HealthService {
            service: "db".into(),
        },
        None,
    );
    assert!(after > before);
    let ReadResult::Health(entries) = res else {
        panic!()
    };
    assert!(entries[0].checks.is_empty());
    // Renaming `web` (same ID) carries its check along.
    let rename = Command::Request(WriteRequest::Register(Registration {
        node: Node {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        },
        service: Some(Service {
            id: "web".into(),
            service: "www".into(),
            ..Default::default()
        }),
        checks: vec![],
        skip_node_update: true,
    }));
    s.apply(4, &rename).unwrap();
    let (res, _) = s.read(
        &ReadRequest::HealthChecks {
            service: "www".into(),
        },
        None,
    );
    let ReadResult::Checks(checks) = res else {
        panic!()
    };
    assert_eq!(checks.len(), 1);
    // A NUL byte in a name is refused.
    assert!(s.apply(5, &register("a\0b", None, vec![])).is_err());
}

/// A batch (the commands one raft cycle commits) is invisible to readers and
/// watchers until it ends, then visible all at once; a command rejected inside it
/// changes nothing while the others stand.
#[tokio::test(start_paused = true)]
async fn a_batch_is_published_at_its_end() {
    let s = StateStore::new();
    s.apply(1, &set("a", "0", KvSetMode::Set)).unwrap();
    let mut early = WatchSet::new();
    s.read(&ReadRequest::KvGet { key: "b".into() }, Some(&mut early));
    let mut ws = WatchSet::new();
    s.read(&ReadRequest::KvGet { key: "b".into() }, Some(&mut ws));

    s.begin_batch();
    s.apply(2, &set("a", "1", KvSetMode::Set)).unwrap();
    let bad = Command::Request(WriteRequest::SessionCreate(Session {
        node: "nowhere".into(),
        ..Default::default()
    }));
    assert!(s.apply(3, &bad).is_err(), "unknown node");
    s.apply(4, &set("b", "2", KvSetMode::Set)).unwrap();
    assert_eq!(
        s.apply(5, &set("a", "x", KvSetMode::Cas(1))).unwrap(),
        WriteOutcome::NotApplied,
        "CAS sees the batch's own write (a is at 2 now)"
    );
    assert_eq!(kv(&s, "a").0.unwrap().value, b"0", "not published yet");
    assert!(kv(&s, "b").0.is_none());
    assert_eq!(s.last_index(), 1);
    assert!(
        !early.wait(Duration::from_millis(1)).await,
        "nobody woken yet"
    );

    s.end_batch();
    assert_eq!(kv(&s, "a").0.unwrap().value, b"1");
    let (b, index) = kv(&s, "b");
    assert_eq!((b.unwrap().value, index), (b"2".to_vec(), 4));
    assert_eq!(s.last_index(), 5);
    assert!(ws.wait(Duration::from_secs(5)).await, "b's watcher woken");
    match s.read(&ReadRequest::SessionList, None) {
        (ReadResult::Sessions(list), _) => assert!(list.is_empty()),
        other => panic!("{other:?}"),
    }
    // An empty batch publishes nothing.
    s.begin_batch();
    s.end_batch();
    assert_eq!(s.last_index(), 5);
}

/// `/v1/operator/usage`'s counts: Connect kinds, and billable instances exclude
/// proxies and the `consul` service.
#[test]
fn usage_counts_kinds_and_billable_instances() {
    let state = StateStore::new();
    let mut index = 0;
    let mut add = |id: &str, name: &str, kind: &str, native: bool| {
        index += 1;
        let cmd = Command::Request(WriteRequest::Register(Registration {
            node: Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: Some(Service {
                id: id.into(),
                service: name.into(),
                kind: kind.into(),
                connect_native: native,
                ..Default::default()
            }),
            checks: Vec::new(),
            skip_node_update: false,
        }));
        state.apply(index, &cmd).unwrap();
    };
    add("consul", "consul", "", false);
    add("redis1", "redis", "", false);
    add("redis2", "redis", "", false);
    add("proxy1", "proxy", "connect-proxy", false);
    add("web-native", "web", "", true);
    let ReadResult::Usage(u) = state.read(&ReadRequest::Usage, None).0 else {
        panic!("not a usage answer");
    };
    assert_eq!(
        (u.nodes, u.services, u.service_instances, u.billable),
        (1, 4, 5, 3)
    );
    assert_eq!(u.connect["connect-proxy"], 1);
    assert_eq!(u.connect["connect-native"], 1);
    assert_eq!(u.connect["mesh-gateway"], 0);
}
