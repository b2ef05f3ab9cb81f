//! Test support: a minimal fake agent on 127.0.0.1 port 0, so command tests need no
//! extra dev-dependencies. It speaks just enough HTTP/1.1 for reqwest: one request per
//! connection, `Content-Length` bodies, `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{dispatch, Ctx};

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub(crate) method: String,
    /// Path and query, still percent-encoded.
    pub(crate) target: String,
    /// Raw header block (request line included).
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
}

impl Req {
    /// The path without the query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A request header's value (names compare case-insensitively).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    }

    /// The raw query string.
    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// An answer: status, extra headers, body.
pub(crate) type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// 200 with a JSON (or any) body.
pub(crate) fn ok(body: &str) -> Answer {
    (200, Vec::new(), body.as_bytes().to_vec())
}

/// A status with a plain-text body.
pub(crate) fn status(code: u16, body: &str) -> Answer {
    (code, Vec::new(), body.as_bytes().to_vec())
}

/// A running fake agent.
pub(crate) struct Fake {
    pub(crate) addr: String,
    pub(crate) requests: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

/// An answer computed asynchronously (a blocking query that waits for a change).
pub(crate) type AsyncAnswer = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Starts the fake; `handler` answers each request.
pub(crate) async fn fake(handler: impl Fn(&Req) -> Answer + Send + Sync + 'static) -> Fake {
    fake_async(move |req| {
        let answer = handler(&req);
        Box::pin(async move { answer })
    })
    .await
}

/// Starts the fake with a handler that may take its time (blocking queries). The
/// usual query headers are added unless the handler's answer carries its own.
pub(crate) async fn fake_async(
    handler: impl Fn(Req) -> AsyncAnswer + Send + Sync + 'static,
) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests: Arc<Mutex<Vec<Req>>> = Arc::default();
    let handler = Arc::new(handler);
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let req = Req {
                    method: first.next().unwrap_or("").to_owned(),
                    target: first.next().unwrap_or("").to_owned(),
                    headers: head.clone(),
                    body: buf[head_end..head_end + length].to_vec(),
                };
                seen.lock().unwrap().push(req.clone());
                let (code, mut headers, body) = handler(req).await;
                let mut resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in [
                    ("X-Consul-Index", "1"),
                    ("X-Consul-KnownLeader", "true"),
                    ("X-Consul-LastContact", "0"),
                ] {
                    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                        headers.push((name, value.to_owned()));
                    }
                }
                for (name, value) in headers {
                    resp.push_str(&format!("{name}: {value}\r\n"));
                }
                resp.push_str("\r\n");
                let mut bytes = resp.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Fake { addr, requests }
}

/// What a command run produced.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) out: String,
    pub(crate) err: String,
}

/// Runs `command args...` against the fake at `addr` (given as `CONSUL_HTTP_ADDR`).
pub(crate) async fn run_at(addr: &str, command: &str, args: &[&str], stdin: &[u8]) -> Run {
    run_env(&[("CONSUL_HTTP_ADDR", addr)], command, args, stdin).await
}

/// Runs `command args...` with the given environment variables.
pub(crate) async fn run_env(
    vars: &[(&str, &str)],
    command: &str,
    args: &[&str],
    stdin: &[u8],
) -> Run {
    let mut ctx = Ctx::fake(vars, stdin);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let code = dispatch(command, &args, &mut ctx).await;
    Run {
        code,
        out: ctx.stdout(),
        err: ctx.stderr(),
    }
}
