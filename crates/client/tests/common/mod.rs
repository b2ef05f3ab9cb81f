//! An in-test fake agent: a real axum server on 127.0.0.1 port 0 whose every request
//! is recorded and answered by a closure the test supplies.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Router;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Path exactly as sent (still percent-encoded).
    pub path: String,
    /// Raw query string, "" if none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    /// Decoded query pairs, in order.
    pub fn params(&self) -> Vec<(String, String)> {
        url_pairs(&self.query)
    }

    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let text = text.replace('+', " ");
    percent_encoding::percent_decode_str(&text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A canned answer.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// 200 with a JSON body and the usual query headers.
    pub fn json(body: &str) -> Self {
        Resp {
            status: 200,
            headers: vec![
                ("X-Consul-Index", "1".into()),
                ("X-Consul-KnownLeader", "true".into()),
                ("X-Consul-LastContact", "0".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A status with a plain-text body.
    pub fn status(status: u16, body: &str) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Replaces or adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A running fake agent.
pub struct Fake {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// The only request so far.
    pub fn only_request(&self) -> Req {
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "expected exactly one request: {reqs:?}");
        reqs.into_iter().next().unwrap()
    }
}

fn router(handler: Handler, requests: Arc<Mutex<Vec<Req>>>) -> Router {
    Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let handler = handler.clone();
            let requests = requests.clone();
            async move {
                let req = Req {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers,
                    body: body.to_vec(),
                };
                requests.lock().unwrap().push(req.clone());
                let resp = handler(&req);
                let mut builder = Response::builder().status(resp.status);
                for (name, value) in resp.headers {
                    builder = builder.header(name, value);
                }
                builder.body(Body::from(resp.body)).unwrap()
            }
        },
    )
}

/// Starts a fake agent on a TCP port chosen by the OS.
pub async fn fake(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = router(Arc::new(handler), requests.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { addr, requests }
}

/// Starts a fake agent on a Unix socket at `path`.
#[cfg(unix)]
pub async fn fake_unix(
    path: &std::path::Path,
    handler: impl Fn(&Req) -> Resp + Send + Sync + 'static,
) -> Arc<Mutex<Vec<Req>>> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = router(Arc::new(handler), requests.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    requests
}

/// A client for the fake at `url`.
pub fn client(url: &str) -> tribune_client::Client {
    tribune_client::Client::new(tribune_client::Config {
        address: url.to_owned(),
        ..Default::default()
    })
    .unwrap()
}
