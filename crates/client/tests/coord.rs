//! Sessions, locks, semaphores and leader election, run end to end against an
//! in-memory agent with real blocking queries (`coord/sim.rs`).
//!
//! Waits are on events (the fake's state or the lost signal) with a timeout, never
//! on sleeps. The only timed waits are try-once acquisitions, whose time-out is the
//! behaviour under test.

#[path = "coord/sim.rs"]
mod sim;

use std::future::pending;
use std::time::Duration;

use serde_json::json;
use sim::Sim;
use tribune_client::{
    current_leader, AcquireOutcome, Client, Config, DestroyOutcome, KvPutOptions, LeaderElection,
    Lock, LockError, LockLost, LockOptions, QueryOptions, RenewEnd, Semaphore, SemaphoreOptions,
    SessionCreateOptions, LOCK_FLAG_VALUE, SEMAPHORE_FLAG_VALUE,
};

const PATIENCE: Duration = Duration::from_secs(10);

fn client(url: &str) -> Client {
    Client::new(Config {
        address: url.to_owned(),
        ..Default::default()
    })
    .unwrap()
}

fn held(outcome: AcquireOutcome) -> LockLost {
    match outcome {
        AcquireOutcome::Acquired(lost) => lost,
        other => panic!("expected the lock to be acquired, got {other:?}"),
    }
}

async fn wait_lost(lost: &mut LockLost) {
    tokio::time::timeout(PATIENCE, lost.wait())
        .await
        .expect("the lost signal did not fire");
}

#[tokio::test]
async fn session_endpoints() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    let sessions = client.session();
    let opts = SessionCreateOptions {
        name: Some("worker".into()),
        ttl: Some(Duration::from_secs(30)),
        node_checks: Some(vec![]),
        ..Default::default()
    };
    let id = sessions.create(&opts).await.unwrap();
    let body = sim.data.lock().unwrap().sessions[&id].body.clone();
    assert_eq!(
        body,
        json!({"Name": "worker", "TTL": "30s", "NodeChecks": []})
    );

    let (info, _) = sessions.info(&id, &QueryOptions::default()).await.unwrap();
    let info = info.unwrap();
    assert_eq!((info.name.as_str(), info.node.as_str()), ("worker", "sim"));
    assert_eq!(info.lock_delay, Duration::from_secs(15));
    let renewed = sessions.renew(&id).await.unwrap().unwrap();
    assert_eq!(renewed.ttl(), Some(Duration::from_secs(30)));

    sessions.destroy(&id).await.unwrap();
    assert!(sessions.renew(&id).await.unwrap().is_none());
    let (info, _) = sessions.info(&id, &QueryOptions::default()).await.unwrap();
    assert!(info.is_none());
}

#[tokio::test]
async fn renewal_destroys_the_session_when_stopped_or_dropped() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    let opts = SessionCreateOptions {
        ttl: Some(Duration::from_secs(15)),
        ..Default::default()
    };
    let a = client.session().create(&opts).await.unwrap();
    let renewal = client
        .session()
        .renew_periodic(&a, Duration::from_secs(15))
        .unwrap();
    assert_eq!(renewal.session_id(), a);
    assert_eq!(renewal.stop().await.unwrap(), RenewEnd::Stopped);
    assert!(!sim.data.lock().unwrap().sessions.contains_key(&a));

    let b = client.session().create(&opts).await.unwrap();
    drop(
        client
            .session()
            .renew_periodic(&b, Duration::from_secs(15))
            .unwrap(),
    );
    sim.wait_until("the dropped renewal destroyed its session", |d| {
        !d.sessions.contains_key(&b)
    })
    .await;

    assert!(client.session().renew_periodic(&b, Duration::ZERO).is_err());
}

#[tokio::test]
async fn lock_excludes_others_and_hands_over_on_release() {
    let (sim, url) = Sim::start().await;
    let key = "svc/leader";
    let mut a = Lock::new(
        client(&url),
        LockOptions {
            value: b"node-a".to_vec(),
            ..LockOptions::new(key)
        },
    )
    .unwrap();
    let mut lost_a = held(a.acquire(pending()).await.unwrap());
    let session_a = a.session().unwrap().to_owned();

    // The wire protocol is the Go client's: session, then acquire with its flags.
    let created = sim.data.lock().unwrap().sessions[&session_a].body.clone();
    assert_eq!(created, json!({"Name": "Consul API Lock", "TTL": "15s"}));
    let acquire = sim.requests("PUT", "/v1/kv/svc/leader");
    assert_eq!(acquire.len(), 1);
    assert_eq!(acquire[0].param("acquire"), Some(session_a.as_str()));
    assert_eq!(acquire[0].param("flags"), Some("3304740253564472344"));
    assert_eq!(acquire[0].body, b"node-a");
    let entry = sim.get(key).unwrap();
    assert_eq!(
        (entry.flags, entry.session.as_deref(), entry.lock_index),
        (LOCK_FLAG_VALUE, Some(session_a.as_str()), 1)
    );
    assert!(matches!(
        a.acquire(pending()).await,
        Err(LockError::LockHeld)
    ));

    // A second contender in try-once mode gives up, and cleans its session up.
    let mut b = Lock::new(
        client(&url),
        LockOptions {
            lock_try_once: true,
            lock_wait_time: Duration::from_millis(300),
            ..LockOptions::new(key)
        },
    )
    .unwrap();
    assert!(matches!(
        b.acquire(pending()).await.unwrap(),
        AcquireOutcome::TimedOut
    ));
    assert_eq!(sim.data.lock().unwrap().sessions.len(), 1);

    // A waiting contender gets the lock once the holder releases it.
    let mut c = Lock::new(client(&url), LockOptions::new(key)).unwrap();
    let waiter = tokio::spawn(async move {
        let lost = held(c.acquire(pending()).await.unwrap());
        (c, lost)
    });
    sim.wait_until("the contender is blocked on the key", |d| d.parked >= 2)
        .await;
    a.release().await.unwrap();
    wait_lost(&mut lost_a).await;
    assert!(matches!(a.release().await, Err(LockError::LockNotHeld)));
    let (mut c, lost_c) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(!lost_c.is_lost());
    assert!(!sim.data.lock().unwrap().sessions.contains_key(&session_a));

    // Destroy refuses while held, and deletes the key once free.
    assert_eq!(a.destroy().await.unwrap(), DestroyOutcome::InUse);
    assert!(matches!(c.destroy().await, Err(LockError::LockHeld)));
    c.release().await.unwrap();
    assert_eq!(c.destroy().await.unwrap(), DestroyOutcome::Destroyed);
    assert_eq!(c.destroy().await.unwrap(), DestroyOutcome::Absent);
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}

#[tokio::test]
async fn lock_is_lost_when_the_session_dies_or_the_key_goes() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    let mut lock = Lock::new(client.clone(), LockOptions::new("job/lock")).unwrap();

    let mut lost = held(lock.acquire(pending()).await.unwrap());
    let session = lock.session().unwrap().to_owned();
    client.session().destroy(&session).await.unwrap();
    wait_lost(&mut lost).await;
    // Releasing a lost lock is allowed; the key is no longer ours anyway.
    lock.release().await.unwrap();

    let mut lost = held(lock.acquire(pending()).await.unwrap());
    assert!(!lost.is_lost());
    client
        .kv()
        .delete("job/lock", &Default::default())
        .await
        .unwrap();
    wait_lost(&mut lost).await;
    lock.release().await.unwrap();
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}

#[tokio::test]
async fn lock_refuses_a_key_that_is_not_a_lock() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    client
        .kv()
        .put("plain", b"data", &KvPutOptions::default())
        .await
        .unwrap();
    let mut lock = Lock::new(client, LockOptions::new("plain")).unwrap();
    assert!(matches!(
        lock.acquire(pending()).await,
        Err(LockError::LockConflict)
    ));
    assert!(matches!(lock.destroy().await, Err(LockError::LockConflict)));
    // The session made for the attempt is gone again.
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}

#[tokio::test]
async fn stopping_an_acquire_destroys_its_session() {
    let (sim, url) = Sim::start().await;
    let mut a = Lock::new(client(&url), LockOptions::new("k")).unwrap();
    let _lost = held(a.acquire(pending()).await.unwrap());
    let mut b = Lock::new(client(&url), LockOptions::new("k")).unwrap();
    // Stop once b is blocked waiting for the key.
    let sim2 = sim.clone();
    let stop = async move {
        sim2.wait_until("b is blocked on the key", |d| d.parked >= 2)
            .await;
    };
    assert!(matches!(
        b.acquire(stop).await.unwrap(),
        AcquireOutcome::Stopped
    ));
    assert_eq!(sim.data.lock().unwrap().sessions.len(), 1);
    assert!(!b.is_held());
}

#[tokio::test]
async fn semaphore_admits_up_to_limit_holders() {
    let (sim, url) = Sim::start().await;
    let sem = |limit| Semaphore::new(client(&url), SemaphoreOptions::new("pool", limit)).unwrap();
    let mut s1 = sem(2);
    let mut s2 = sem(2);
    let _lost1 = held(s1.acquire(pending()).await.unwrap());
    let _lost2 = held(s2.acquire(pending()).await.unwrap());
    let (id1, id2) = (
        s1.session().unwrap().to_owned(),
        s2.session().unwrap().to_owned(),
    );

    // Go's layout: contender keys named after sessions, and the `.lock` document.
    let contender = sim.get(&format!("pool/{id1}")).unwrap();
    assert_eq!(
        (contender.flags, contender.session.as_deref()),
        (SEMAPHORE_FLAG_VALUE, Some(id1.as_str()))
    );
    let doc = sim.get("pool/.lock").unwrap();
    assert_eq!(doc.flags, SEMAPHORE_FLAG_VALUE);
    let mut holders = [id1.as_str(), id2.as_str()];
    holders.sort();
    let expected = format!(
        r#"{{"Limit":2,"Holders":{{"{}":true,"{}":true}}}}"#,
        holders[0], holders[1]
    );
    assert_eq!(
        std::str::from_utf8(doc.value.as_deref().unwrap()).unwrap(),
        expected
    );
    let session_body = sim.data.lock().unwrap().sessions[&id1].body.clone();
    assert_eq!(
        session_body,
        json!({"Name": "Consul API Semaphore", "TTL": "15s", "Behavior": "delete"})
    );

    // Full: a try-once contender times out and leaves nothing behind.
    let mut s3 = Semaphore::new(
        client(&url),
        SemaphoreOptions {
            try_once: true,
            wait_time: Duration::from_millis(300),
            ..SemaphoreOptions::new("pool", 2)
        },
    )
    .unwrap();
    assert!(matches!(
        s3.acquire(pending()).await.unwrap(),
        AcquireOutcome::TimedOut
    ));
    assert_eq!(sim.data.lock().unwrap().sessions.len(), 2);

    // Disagreeing on the limit, or using the prefix as a plain lock, is an error.
    assert!(matches!(
        sem(3).acquire(pending()).await,
        Err(LockError::LimitConflict { lock: 2, local: 3 })
    ));
    let mut lock = Lock::new(client(&url), LockOptions::new("pool/.lock")).unwrap();
    assert!(matches!(
        lock.acquire(pending()).await,
        Err(LockError::LockConflict)
    ));

    // A waiting contender gets the slot s1 gives up.
    let mut s4 = sem(2);
    let waiter = tokio::spawn(async move {
        let lost = held(s4.acquire(pending()).await.unwrap());
        (s4, lost)
    });
    sim.wait_until("the contender is blocked on the prefix", |d| d.parked >= 3)
        .await;
    s1.release().await.unwrap();
    assert!(sim.get(&format!("pool/{id1}")).is_none());
    let (mut s4, _lost4) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(s1.destroy().await.unwrap(), DestroyOutcome::InUse);
    s2.release().await.unwrap();
    s4.release().await.unwrap();
    assert_eq!(s4.destroy().await.unwrap(), DestroyOutcome::Destroyed);
    assert!(sim.data.lock().unwrap().kv.is_empty());
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}

#[tokio::test]
async fn semaphore_slot_is_lost_with_its_session() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    let mut s = Semaphore::new(client.clone(), SemaphoreOptions::new("pool", 1)).unwrap();
    let mut lost = held(s.acquire(pending()).await.unwrap());
    let id = s.session().unwrap().to_owned();
    client.session().destroy(&id).await.unwrap();
    wait_lost(&mut lost).await;
    // Its contender key went with the session (behavior "delete").
    assert!(sim.get(&format!("pool/{id}")).is_none());
    s.release().await.unwrap();
    // The dead holder is pruned: the semaphore can be destroyed.
    assert_eq!(s.destroy().await.unwrap(), DestroyOutcome::Destroyed);
}

#[tokio::test]
async fn leader_election_fails_over() {
    let (sim, url) = Sim::start().await;
    let client = client(&url);
    let candidate = |name: &str| {
        LeaderElection::spawn(
            client.clone(),
            LockOptions {
                value: name.as_bytes().to_vec(),
                ..LockOptions::new("service/leader")
            },
        )
        .unwrap()
    };
    let leads = |e: &LeaderElection| {
        let mut rx = e.subscribe();
        async move {
            tokio::time::timeout(PATIENCE, rx.wait_for(|l| *l))
                .await
                .expect("did not become leader")
                .unwrap();
        }
    };

    let first = candidate("a");
    leads(&first).await;
    let second = candidate("b");
    sim.wait_until("the second candidate is waiting", |d| d.parked >= 2)
        .await;
    assert!(!second.is_leader());
    let leader = current_leader(&client, "service/leader").await.unwrap();
    assert_eq!(leader.unwrap().value.as_deref(), Some(&b"a"[..]));

    first.resign().await.unwrap();
    leads(&second).await;
    let leader = current_leader(&client, "service/leader").await.unwrap();
    assert_eq!(leader.unwrap().value.as_deref(), Some(&b"b"[..]));

    second.resign().await.unwrap();
    assert!(current_leader(&client, "service/leader")
        .await
        .unwrap()
        .is_none());
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}
