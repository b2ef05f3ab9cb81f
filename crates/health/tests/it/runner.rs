//! The runner itself: independence of checks, cancellation, replacement, shutdown.

use crate::support::*;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune_health::{AddError, PlanError};
use tribune_types::model::CheckDefinition;
use tribune_types::CheckId;
use tribune_types::HealthStatus::{Critical, Passing};

#[tokio::test]
async fn a_hanging_probe_does_not_delay_other_checks() {
    let mut silent = silent_server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (runner, mut rx) = runner(false);
    let mut slow = def("slow");
    slow.http = format!("http://{}/", silent.addr);
    slow.timeout = Some(Duration::from_secs(60));
    runner.add(&slow).expect("add");
    // The slow check's request is now hanging on the server.
    assert_eq!(next_event(&mut silent.events).await, "accepted");

    let mut fast = def("fast");
    fast.tcp = listener.local_addr().expect("addr").to_string();
    runner.add(&fast).expect("add");
    let r = next_for(&mut rx, "fast").await;
    assert_eq!(r.status, Passing);
    runner.shutdown().await;
}

#[tokio::test]
async fn removing_a_check_cancels_its_run_in_flight() {
    let mut silent = silent_server().await;
    let (runner, _rx) = runner(false);
    let mut d = def("doomed");
    d.http = format!("http://{}/", silent.addr);
    d.timeout = Some(Duration::from_secs(60));
    runner.add(&d).expect("add");
    assert_eq!(next_event(&mut silent.events).await, "accepted");
    runner.remove(&CheckId::from("doomed"));
    // The cancelled run drops its connection long before its 60 s timeout.
    assert_eq!(next_event(&mut silent.events).await, "closed");
    runner.shutdown().await;
}

#[tokio::test]
async fn re_adding_replaces_the_definition() {
    let target = HttpTarget::start(200, "ok").await;
    let closed = closed_port().await;
    let (runner, mut rx) = runner(false);
    let mut d = def("moving");
    d.http = target.url("/");
    runner.add(&d).expect("add");
    assert_eq!(next_for(&mut rx, "moving").await.status, Passing);

    d.http = format!("http://{closed}/");
    runner.add(&d).expect("add");
    let r = wait_status(&mut rx, "moving", Critical).await;
    assert!(r.output.contains(&closed.to_string()), "{}", r.output);
    runner.shutdown().await;
}

#[tokio::test]
async fn unchanged_results_are_sent_once() {
    let target = HttpTarget::start(200, "steady").await;
    let (runner, mut rx) = runner(false);
    let mut d = def("steady");
    d.http = target.url("/");
    runner.add(&d).expect("add");
    assert_eq!(next_for(&mut rx, "steady").await.status, Passing);
    // Let several more runs happen (observed through the server), then change the
    // answer: the next result is the change, not a repeat of "passing".
    target.wait_served(200, target.served(200) + 3).await;
    target.set(500, "broken");
    let r = next_for(&mut rx, "steady").await;
    assert_eq!(r.status, Critical);
    runner.shutdown().await;
}

#[tokio::test]
async fn a_full_result_channel_stops_no_check_and_keeps_the_latest_result() {
    let steady = HttpTarget::start(200, "ok").await;
    let flipping = HttpTarget::start(200, "up").await;
    // Room for one result, and nobody reads until the end.
    let (runner, mut rx) = runner_with_capacity(1);
    for (id, target) in [("steady", &steady), ("flipping", &flipping)] {
        let mut d = def(id);
        d.http = target.url("/");
        runner.add(&d).expect("add");
    }
    // Both checks keep running with their results waiting: runs stalled behind the
    // channel would stop these counts.
    steady.wait_served(200, steady.served(200) + 3).await;
    flipping.wait_served(200, 3).await;
    flipping.set(500, "down");
    flipping.wait_served(500, 2).await;
    steady.wait_served(200, steady.served(200) + 3).await;

    // The channel then delivers the first result, and of what waited only the
    // latest per check: "flipping" ends critical, and "steady" comes once.
    let mut seen = Vec::new();
    while seen.last() != Some(&("flipping".to_owned(), Critical)) {
        let r = tokio::time::timeout(WAIT, rx.rx.recv())
            .await
            .expect("a result within the deadline")
            .expect("channel open");
        seen.push((r.id.to_string(), r.status));
    }
    let steady_results = seen.iter().filter(|(id, _)| id == "steady").count();
    assert_eq!(steady_results, 1, "{seen:?}");
    let flipping_passes = seen
        .iter()
        .filter(|r| **r == ("flipping".to_owned(), Passing))
        .count();
    assert!(flipping_passes <= 1, "{seen:?}");
    runner.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_result_channel() {
    let target = HttpTarget::start(200, "ok").await;
    let (runner, mut rx) = runner(false);
    let mut d = def("web");
    d.http = target.url("/");
    runner.add(&d).expect("add");
    next_for(&mut rx, "web").await;
    runner.shutdown().await;
    assert!(rx.closes().await, "channel closes after shutdown");
}

#[tokio::test]
async fn passive_and_invalid_definitions_are_refused() {
    let (runner, _rx) = runner(true);
    let ttl = CheckDefinition {
        id: "ttl".into(),
        ttl: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    assert!(matches!(
        runner.add(&ttl),
        Err(AddError::Invalid(PlanError::NotActive { kind: "ttl", .. }))
    ));
    let mut no_interval = def("tcp");
    no_interval.tcp = "127.0.0.1:1".into();
    no_interval.interval = None;
    let err = runner.add(&no_interval).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    );
    assert_eq!(
        runner.validate(&no_interval),
        Err(PlanError::MissingInterval { id: "tcp".into() })
    );
    runner.shutdown().await;
}
