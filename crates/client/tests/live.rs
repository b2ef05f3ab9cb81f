//! Locks, semaphores and sessions against a real agent (Tribune or Consul) at
//! `TRIBUNE_TEST_HTTP_ADDR`, e.g. `TRIBUNE_TEST_HTTP_ADDR=127.0.0.1:8500 cargo test -p
//! tribune-client --test live`. Without the variable every test returns at once after
//! printing why, so the default test run needs no server.
//!
//! Keys live under a prefix unique to the run, and every test cleans up what it made.

use std::future::pending;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tribune_client::{
    current_leader, AcquireOutcome, Client, Config, DestroyOutcome, LeaderElection, Lock,
    LockOptions, QueryOptions, Semaphore, SemaphoreOptions, SessionCreateOptions,
};

const ADDR_ENV: &str = "TRIBUNE_TEST_HTTP_ADDR";
const PATIENCE: Duration = Duration::from_secs(30);

/// A client for the live agent and a fresh key prefix, or `None` (with the reason
/// printed) when no agent is configured.
fn live(test: &str) -> Option<(Client, String)> {
    let Ok(address) = std::env::var(ADDR_ENV) else {
        eprintln!("skipping {test}: {ADDR_ENV} is not set (no agent to test against)");
        return None;
    };
    let client = Client::new(Config {
        address,
        ..Config::from_env()
    })
    .expect("usable agent address");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("tribune-client-live/{test}-{}-{nanos}", std::process::id());
    Some((client, prefix))
}

#[tokio::test]
async fn live_lock_excludes_and_hands_over() {
    let Some((client, prefix)) = live("lock") else {
        return;
    };
    let key = format!("{prefix}/.lock");
    let mut a = Lock::new(client.clone(), LockOptions::new(&key)).unwrap();
    let AcquireOutcome::Acquired(mut lost_a) = a.acquire(pending()).await.unwrap() else {
        panic!("a did not get a free lock");
    };
    let mut b = Lock::new(
        client.clone(),
        LockOptions {
            lock_try_once: true,
            lock_wait_time: Duration::from_secs(1),
            ..LockOptions::new(&key)
        },
    )
    .unwrap();
    assert!(matches!(
        b.acquire(pending()).await.unwrap(),
        AcquireOutcome::TimedOut
    ));
    a.release().await.unwrap();
    tokio::time::timeout(PATIENCE, lost_a.wait()).await.unwrap();
    let mut b = Lock::new(client.clone(), LockOptions::new(&key)).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, b.acquire(pending()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, AcquireOutcome::Acquired(_)));
    b.release().await.unwrap();
    assert_eq!(b.destroy().await.unwrap(), DestroyOutcome::Destroyed);
}

#[tokio::test]
async fn live_lock_is_lost_when_its_session_is_destroyed() {
    let Some((client, prefix)) = live("lost") else {
        return;
    };
    let key = format!("{prefix}/.lock");
    let session = client
        .session()
        .create(&SessionCreateOptions {
            ttl: Some(Duration::from_secs(30)),
            lock_delay: Some(Duration::ZERO),
            node_checks: Some(vec![]),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut lock = Lock::new(
        client.clone(),
        LockOptions {
            session: Some(session.clone()),
            ..LockOptions::new(&key)
        },
    )
    .unwrap();
    let AcquireOutcome::Acquired(mut lost) = lock.acquire(pending()).await.unwrap() else {
        panic!("lock not acquired");
    };
    client.session().destroy(&session).await.unwrap();
    tokio::time::timeout(PATIENCE, lost.wait()).await.unwrap();
    lock.release().await.unwrap();
    assert_eq!(lock.destroy().await.unwrap(), DestroyOutcome::Destroyed);
}

#[tokio::test]
async fn live_semaphore_admits_limit_holders() {
    let Some((client, prefix)) = live("semaphore") else {
        return;
    };
    let sem = |opts: SemaphoreOptions| Semaphore::new(client.clone(), opts).unwrap();
    let mut s1 = sem(SemaphoreOptions::new(&prefix, 2));
    let mut s2 = sem(SemaphoreOptions::new(&prefix, 2));
    assert!(matches!(
        s1.acquire(pending()).await.unwrap(),
        AcquireOutcome::Acquired(_)
    ));
    assert!(matches!(
        s2.acquire(pending()).await.unwrap(),
        AcquireOutcome::Acquired(_)
    ));
    let mut s3 = sem(SemaphoreOptions {
        try_once: true,
        wait_time: Duration::from_secs(1),
        ..SemaphoreOptions::new(&prefix, 2)
    });
    assert!(matches!(
        s3.acquire(pending()).await.unwrap(),
        AcquireOutcome::TimedOut
    ));
    s1.release().await.unwrap();
    s2.release().await.unwrap();
    assert_eq!(s2.destroy().await.unwrap(), DestroyOutcome::Destroyed);
    let (left, _) = client
        .kv()
        .list(&prefix, &QueryOptions::default())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn live_leader_election_fails_over() {
    let Some((client, prefix)) = live("election") else {
        return;
    };
    let key = format!("{prefix}/leader");
    let candidate = |name: &str| {
        LeaderElection::spawn(
            client.clone(),
            LockOptions {
                value: name.as_bytes().to_vec(),
                ..LockOptions::new(&key)
            },
        )
        .unwrap()
    };
    let first = candidate("a");
    let mut rx = first.subscribe();
    tokio::time::timeout(PATIENCE, rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let second = candidate("b");
    let leader = current_leader(&client, &key).await.unwrap().unwrap();
    assert_eq!(leader.value.as_deref(), Some(&b"a"[..]));
    first.resign().await.unwrap();
    let mut rx = second.subscribe();
    tokio::time::timeout(PATIENCE, rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    second.resign().await.unwrap();
    client.kv().delete(&key, &Default::default()).await.unwrap();
}
