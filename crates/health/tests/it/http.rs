//! HTTP checks against a loopback HTTP/1 server.

use crate::support::*;
use std::time::Duration;
use tribune_types::HealthStatus::{Critical, Passing, Warning};

#[tokio::test]
async fn status_follows_the_servers_answer() {
    let target = HttpTarget::start(200, "ok").await;
    let (runner, mut rx) = runner(false);
    let url = target.url("/health");
    runner
        .add(&tribune_types::model::CheckDefinition {
            http: url.clone(),
            ..def("web")
        })
        .expect("add");

    let r = wait_status(&mut rx, "web", Passing).await;
    assert_eq!(r.output, format!("HTTP GET {url}: 200 OK Output: ok"));

    target.set(503, "down");
    let r = wait_status(&mut rx, "web", Critical).await;
    assert_eq!(
        r.output,
        format!("HTTP GET {url}: 503 Service Unavailable Output: down")
    );

    target.set(429, "slow down");
    let r = wait_status(&mut rx, "web", Warning).await;
    assert_eq!(
        r.output,
        format!("HTTP GET {url}: 429 Too Many Requests Output: slow down")
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn request_carries_method_headers_body_and_consul_defaults() {
    let target = HttpTarget::start(204, "").await;
    let (runner, mut rx) = runner(false);
    let mut d = def("post");
    d.http = target.url("/hook");
    d.method = "POST".into();
    d.body = "ping".into();
    d.header
        .insert("X-Multi".into(), vec!["a".into(), "b".into()]);
    runner.add(&d).expect("add");

    let r = wait_status(&mut rx, "post", Passing).await;
    assert_eq!(
        r.output,
        format!("HTTP POST {}: 204 No Content Output: ", d.http)
    );
    let seen = target.seen();
    let req = seen.first().expect("a request");
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook");
    assert_eq!(req.body, "ping");
    let header = |name: &str| -> Vec<&str> {
        req.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(header("user-agent"), vec!["Consul Health Check"]);
    assert_eq!(header("accept"), vec!["text/plain, text/*, */*"]);
    assert_eq!(header("x-multi"), vec!["a", "b"]);
    runner.shutdown().await;
}

#[tokio::test]
async fn redirects_are_followed_unless_disabled() {
    let target = HttpTarget::start(200, "ok").await;
    let (runner, mut rx) = runner(false);
    let url = target.url("/redirect");
    let mut follow = def("follow");
    follow.http = url.clone();
    let mut stay = def("stay");
    stay.http = url.clone();
    stay.disable_redirects = true;
    runner.add(&follow).expect("add");
    runner.add(&stay).expect("add");

    let r = next_for(&mut rx, "follow").await;
    assert_eq!(r.status, Passing);
    assert_eq!(r.output, format!("HTTP GET {url}: 200 OK Output: ok"));
    let r = next_for(&mut rx, "stay").await;
    assert_eq!(r.status, Critical);
    assert_eq!(r.output, format!("HTTP GET {url}: 302 Found Output: moved"));
    runner.shutdown().await;
}

#[tokio::test]
async fn long_bodies_keep_their_tail() {
    let target = HttpTarget::start(200, &format!("{}{}", "a".repeat(10), "b".repeat(10))).await;
    let (runner, mut rx) = runner(false);
    let mut d = def("big");
    d.http = target.url("/");
    d.output_max_size = 5;
    runner.add(&d).expect("add");
    let r = next_for(&mut rx, "big").await;
    assert!(r.output.ends_with(": 200 OK Output: bbbbb"), "{}", r.output);
    runner.shutdown().await;
}

#[tokio::test]
async fn unreachable_and_silent_servers_are_critical() {
    let closed = closed_port().await;
    let silent = silent_server().await;
    let (runner, mut rx) = runner(false);
    let mut refused = def("refused");
    refused.http = format!("http://{closed}/");
    let mut hang = def("hang");
    hang.http = format!("http://{}/", silent.addr);
    hang.timeout = Some(Duration::from_millis(200));
    runner.add(&refused).expect("add");
    runner.add(&hang).expect("add");

    let r = next_for(&mut rx, "refused").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output.starts_with(&format!("Get \"http://{closed}/\": ")),
        "{}",
        r.output
    );
    let r = next_for(&mut rx, "hang").await;
    assert_eq!(r.status, Critical);
    assert_eq!(
        r.output,
        format!(
            "Get \"http://{}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            silent.addr
        )
    );
    runner.shutdown().await;
}

/// `success_before_passing` and `failures_before_warning/critical`, end to end: each
/// published change needs the configured number of consecutive answers, which the
/// server counts.
#[tokio::test]
async fn thresholds_hold_back_changes() {
    let target = HttpTarget::start(503, "down").await;
    let (runner, mut rx) = runner(false);
    let mut d = def("flaky");
    d.http = target.url("/");
    d.success_before_passing = 2;
    d.failures_before_warning = 2;
    d.failures_before_critical = 3;
    runner.add(&d).expect("add");

    // The first result is published whatever the thresholds.
    assert_eq!(next_for(&mut rx, "flaky").await.status, Critical);

    let before = target.served(200);
    target.set(200, "up");
    let r = next_for(&mut rx, "flaky").await;
    assert_eq!(r.status, Passing);
    assert!(
        target.served(200) - before >= 2,
        "passing after one success"
    );

    let before = target.served(503);
    target.set(503, "down");
    let r = next_for(&mut rx, "flaky").await;
    assert_eq!(r.status, Warning, "{r:?}");
    assert!(r.output.contains("503 Service Unavailable"));
    assert!(
        target.served(503) - before >= 2,
        "warning after one failure"
    );
    let r = next_for(&mut rx, "flaky").await;
    assert_eq!(r.status, Critical);
    assert!(
        target.served(503) - before >= 3,
        "critical after two failures"
    );
    runner.shutdown().await;
}
