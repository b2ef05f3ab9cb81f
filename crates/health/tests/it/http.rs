//! HTTP checks against a loopback HTTP/1 server: through the runner, and single
//! runs of the lean `http://` path through `probe::run`.

use crate::support::*;
use std::time::Duration;
use tribune_health::plan::HttpSpec;
use tribune_health::{probe, Probe, ProbeSpec};
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

// The lean path: plain `http://` runs over a bare hyper connection, called
// directly through `probe::run`.

fn spec(url: &str) -> ProbeSpec {
    ProbeSpec::Http(HttpSpec {
        url: url.to_owned(),
        ..HttpSpec::default()
    })
}

fn http_spec(spec: &mut ProbeSpec) -> &mut HttpSpec {
    match spec {
        ProbeSpec::Http(h) => h,
        other => panic!("not an HTTP spec: {other:?}"),
    }
}

/// Whether these runs take the lean path, which (like Go with keep-alive off)
/// sends `Connection: close`; a proxy in the environment sends them to reqwest.
fn lean_path_expected() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .all(|v| std::env::var_os(v).is_none_or(|v| v.is_empty()))
}

fn header<'a>(seen: &'a Seen, name: &str) -> Vec<&'a str> {
    seen.headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn plain_runs_judge_by_status_code() {
    let target = HttpTarget::start(200, "fine").await;
    let url = target.url("/h?x=1");
    let s = spec(&url);

    let p = probe::run(&s, WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP GET {url}: 200 OK Output: fine"))
    );
    target.set(429, "later");
    let p = probe::run(&s, WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::warning(format!(
            "HTTP GET {url}: 429 Too Many Requests Output: later"
        ))
    );
    target.set(503, "");
    let p = probe::run(&s, WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::critical(format!("HTTP GET {url}: 503 Service Unavailable Output: "))
    );
    target.set(404, "nope");
    let p = probe::run(&s, WAIT, 4096).await;
    assert_eq!(p.status, Critical);

    let seen = target.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].path, "/h");
    assert_eq!(header(&seen[0], "host"), vec![target.addr.to_string()]);
    if lean_path_expected() {
        assert_eq!(header(&seen[0], "connection"), vec!["close"]);
    }
}

#[tokio::test]
async fn plain_runs_keep_the_body_tail() {
    let target = HttpTarget::start(200, &format!("{}{}", "a".repeat(5000), "b".repeat(10))).await;
    let url = target.url("/");
    let p = probe::run(&spec(&url), WAIT, 11).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP GET {url}: 200 OK Output: abbbbbbbbbb"))
    );
    // The default limit keeps the last 4 KiB of a longer body.
    let p = probe::run(&spec(&url), WAIT, 4096).await;
    let body = p.output.split_once(" Output: ").expect("output").1;
    assert_eq!(body.len(), 4096);
    assert!(body.ends_with("abbbbbbbbbb"));
}

#[tokio::test]
async fn plain_runs_send_method_headers_and_body() {
    let target = HttpTarget::start(201, "made").await;
    let url = target.url("/put");
    let mut s = spec(&url);
    let h = http_spec(&mut s);
    h.method = "PUT".into();
    h.body = "payload".into();
    h.header
        .insert("X-Multi".into(), vec!["a".into(), "b".into()]);
    h.header.insert("User-Agent".into(), vec!["mine".into()]);
    h.header
        .insert("Host".into(), vec!["virtual.example".into()]);

    let p = probe::run(&s, WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP PUT {url}: 201 Created Output: made"))
    );
    let seen = target.seen();
    let req = seen.first().expect("a request");
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/put");
    assert_eq!(req.body, "payload");
    assert_eq!(header(req, "x-multi"), vec!["a", "b"]);
    assert_eq!(header(req, "user-agent"), vec!["mine"]);
    assert_eq!(header(req, "accept"), vec!["text/plain, text/*, */*"]);
    assert_eq!(header(req, "host"), vec!["virtual.example"]);
    assert_eq!(header(req, "content-length"), vec!["7"]);
}

#[tokio::test]
async fn plain_runs_time_out_as_a_whole() {
    let mut silent = silent_server().await;
    let url = format!("http://{}/", silent.addr);
    let p = probe::run(&spec(&url), Duration::from_millis(200), 4096).await;
    assert_eq!(
        p,
        Probe::critical(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    // The run dropped its connection.
    assert_eq!(next_event(&mut silent.events).await, "accepted");
    assert_eq!(next_event(&mut silent.events).await, "closed");
}

/// A body cut short by the timeout keeps what arrived, and the status decides.
#[tokio::test]
async fn a_stalled_body_keeps_what_arrived() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await.expect("request");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            .await
            .expect("write");
        // Hold the rest back until the client gives up.
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(());
    });
    let url = format!("http://{addr}/");
    let p = probe::run(&spec(&url), Duration::from_millis(300), 4096).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP GET {url}: 200 OK Output: partial"))
    );
    tokio::time::timeout(WAIT, closed)
        .await
        .expect("connection closed")
        .expect("server");
}

#[tokio::test]
async fn plain_runs_follow_redirects_unless_disabled() {
    let target = HttpTarget::start(200, "ok").await;
    let url = target.url("/redirect");
    let p = probe::run(&spec(&url), WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP GET {url}: 200 OK Output: ok"))
    );
    assert_eq!(target.seen().last().expect("seen").path, "/health");

    let mut stay = spec(&url);
    http_spec(&mut stay).disable_redirects = true;
    let before = target.seen().len();
    let p = probe::run(&stay, WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::critical(format!("HTTP GET {url}: 302 Found Output: moved"))
    );
    let seen = target.seen();
    assert_eq!(seen.len(), before + 1, "one request, not followed");
}

/// A check that met a redirect sends later runs straight to the client that
/// follows it, rather than asking twice on every run.
#[tokio::test]
async fn a_redirecting_check_asks_once_per_run() {
    let target = HttpTarget::start(200, "ok").await;
    let (runner, mut rx) = runner(false);
    let mut d = def("hop");
    d.http = target.url("/redirect");
    runner.add(&d).expect("add");
    assert_eq!(next_for(&mut rx, "hop").await.status, Passing);
    target.wait_served(200, 5).await;
    let seen = target.seen();
    let count = |path: &str| seen.iter().filter(|s| s.path == path).count();
    // First run: the lean try, then reqwest's request and its hop; one more
    // redirect may belong to a run in flight.
    assert!(
        count("/redirect") <= count("/health") + 2,
        "{} redirects for {} runs",
        count("/redirect"),
        count("/health")
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn plain_runs_resolve_host_names() {
    let target = HttpTarget::start(200, "named").await;
    let url = format!("http://localhost:{}/", target.addr.port());
    let p = probe::run(&spec(&url), WAIT, 4096).await;
    assert_eq!(
        p,
        Probe::passing(format!("HTTP GET {url}: 200 OK Output: named"))
    );
    let seen = target.seen();
    assert_eq!(
        header(&seen[0], "host"),
        vec![format!("localhost:{}", target.addr.port())]
    );
}

#[tokio::test]
async fn plain_runs_report_refused_connections() {
    let closed = closed_port().await;
    let url = format!("http://{closed}/");
    let p = probe::run(&spec(&url), SECOND, 4096).await;
    assert_eq!(p.status, Critical);
    let expected = if lean_path_expected() {
        format!("Get \"{url}\": dial tcp {closed}: ")
    } else {
        format!("Get \"{url}\": ")
    };
    assert!(p.output.starts_with(&expected), "{}", p.output);
}
