//! Shared helpers: a runner with test-sized intervals, result waits with a
//! deadline, and an HTTP/1 target whose answer the test flips.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tribune_health::{AgentTls, CheckResult, CheckRunner, Limits, RunnerConfig};
use tribune_types::model::CheckDefinition;
use tribune_types::{CheckId, HealthStatus};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);
/// Interval of the checks under test.
pub const INTERVAL: Duration = Duration::from_millis(50);

pub fn runner(scripts: bool) -> (CheckRunner, Results) {
    runner_with(scripts, None)
}

/// A runner lending `agent_tls` to TLS checks (`enable_agent_tls_for_checks`).
pub fn runner_with(scripts: bool, agent_tls: Option<Arc<AgentTls>>) -> (CheckRunner, Results) {
    start(RunnerConfig {
        agent_tls,
        ..config(scripts)
    })
}

/// A runner whose result channel holds only `capacity` results.
pub fn runner_with_capacity(capacity: usize) -> (CheckRunner, Results) {
    start(RunnerConfig {
        result_capacity: capacity,
        ..config(false)
    })
}

fn config(scripts: bool) -> RunnerConfig {
    RunnerConfig {
        limits: Limits {
            enable_script_checks: scripts,
            min_interval: Duration::from_millis(10),
            ..Limits::default()
        },
        ..RunnerConfig::default()
    }
}

fn start(config: RunnerConfig) -> (CheckRunner, Results) {
    let (runner, rx) = CheckRunner::start(config);
    (
        runner,
        Results {
            rx,
            pending: VecDeque::new(),
        },
    )
}

pub fn def(id: &str) -> CheckDefinition {
    CheckDefinition {
        id: id.into(),
        name: id.into(),
        interval: Some(INTERVAL),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    }
}

/// The runner's result channel, with results of other checks kept aside while a
/// test waits for one check's.
pub struct Results {
    pub rx: mpsc::Receiver<CheckResult>,
    pending: VecDeque<CheckResult>,
}

impl Results {
    /// Whether the channel closes (after draining it) within [`WAIT`].
    pub async fn closes(&mut self) -> bool {
        let drain = async { while self.rx.recv().await.is_some() {} };
        tokio::time::timeout(WAIT, drain).await.is_ok()
    }
}

/// The next result for `id`, in order; other checks' results stay queued.
pub async fn next_for(results: &mut Results, id: &str) -> CheckResult {
    let id = CheckId::from(id);
    if let Some(i) = results.pending.iter().position(|r| r.id == id) {
        if let Some(r) = results.pending.remove(i) {
            return r;
        }
    }
    let wait = async {
        loop {
            match results.rx.recv().await {
                Some(r) if r.id == id => return r,
                Some(other) => results.pending.push_back(other),
                None => panic!("result channel closed while waiting for {id}"),
            }
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(r) => r,
        Err(_) => panic!("no result for {id} within {WAIT:?}"),
    }
}

/// Results for `id` until one has `status`; returns it.
pub async fn wait_status(results: &mut Results, id: &str, status: HealthStatus) -> CheckResult {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let r = next_for(results, id).await;
            if r.status == status {
                return r;
            }
            seen.push(r);
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(r) => r,
        Err(_) => panic!("{id} never became {status} within {WAIT:?}; saw {seen:?}"),
    }
}

/// A loopback address nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// One request as the HTTP target saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Default)]
struct HttpState {
    status: u16,
    body: String,
    seen: Vec<Seen>,
    served: HashMap<u16, usize>,
}

/// An HTTP/1 server answering every path with the current status and body, except
/// `/redirect`, which answers `302 Found` to `/health`.
#[derive(Clone)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    state: Arc<Mutex<HttpState>>,
    /// Bumped after every response, so tests can wait for runs without sleeping.
    served_tx: Arc<tokio::sync::watch::Sender<()>>,
}

impl HttpTarget {
    pub async fn start(status: u16, body: &str) -> HttpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(HttpState {
            status,
            body: body.to_owned(),
            ..HttpState::default()
        }));
        let shared = Arc::clone(&state);
        let served_tx = Arc::new(tokio::sync::watch::channel(()).0);
        let notify = Arc::clone(&served_tx);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let notify = Arc::clone(&notify);
                tokio::spawn(async move {
                    let svc =
                        service_fn(move |req| handle(Arc::clone(&state), Arc::clone(&notify), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HttpTarget {
            addr,
            state,
            served_tx,
        }
    }

    /// Waits until at least `n` responses with `status` were served.
    pub async fn wait_served(&self, status: u16, n: usize) {
        let mut changes = self.served_tx.subscribe();
        let wait = async {
            while self.served(status) < n {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("the target was not called in time");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut s = self.state.lock().expect("lock");
        s.status = status;
        s.body = body.to_owned();
    }

    /// How many responses with `status` were served so far.
    pub fn served(&self, status: u16) -> usize {
        let s = self.state.lock().expect("lock");
        s.served.get(&status).copied().unwrap_or(0)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }
}

async fn handle(
    state: Arc<Mutex<HttpState>>,
    notify: Arc<tokio::sync::watch::Sender<()>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = respond(&state, req).await;
    notify.send_replace(());
    Ok(resp)
}

async fn respond(
    state: &Mutex<HttpState>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let mut s = state.lock().expect("lock");
    s.seen.push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    if parts.uri.path() == "/redirect" {
        *s.served.entry(302).or_default() += 1;
        let resp = Response::builder()
            .status(302)
            .header("location", "/health")
            .body(Full::new(Bytes::from_static(b"moved")))
            .expect("response");
        return resp;
    }
    let status = s.status;
    *s.served.entry(status).or_default() += 1;
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(s.body.clone())))
        .expect("response")
}

/// A TCP server that accepts connections and never answers. It reports each
/// accepted connection, and each connection the client closed, on `events`.
pub struct Silent {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<&'static str>,
}

pub async fn silent_server() -> Silent {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let _ = tx.send("accepted");
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // Read (and ignore) the request until the client goes away.
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = tx.send("closed");
            });
        }
    });
    Silent { addr, events }
}

pub async fn next_event(events: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no server event within {WAIT:?}"),
    }
}
