//! gRPC health and H2PING checks against a small hand-written HTTP/2 server
//! (hyper, cleartext): it answers `grpc.health.v1.Health/Check` from a table the
//! test edits, and, like any HTTP/2 server, acknowledges PINGs.

use crate::support::*;
use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tribune_health::probe::{HealthCheckRequest, HealthCheckResponse, ServingStatus};
use tribune_types::HealthStatus::{Critical, Passing};

pub type Statuses = Arc<Mutex<HashMap<String, ServingStatus>>>;
type GrpcBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn health_server(statuses: Statuses) -> SocketAddr {
    health_server_with(statuses, None).await
}

/// The health server, over TLS when `tls` is given (each connection is handshaken
/// on its own task, so a client that rejects the certificate blocks nobody).
pub async fn health_server_with(
    statuses: Statuses,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let statuses = Arc::clone(&statuses);
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| check(Arc::clone(&statuses), req));
                let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => http2.serve_connection(TokioIo::new(stream), svc).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => http2.serve_connection(TokioIo::new(stream), svc).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
    addr
}

async fn check(
    statuses: Statuses,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<GrpcBody>, Infallible> {
    if req.uri().path() != tribune_health::probe::HEALTH_CHECK_PATH {
        return Ok(grpc_reply(None, 12, "unknown method"));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // gRPC framing: 1 byte compressed flag, 4 bytes length, message.
    let Some(request) = body
        .get(5..)
        .and_then(|m| HealthCheckRequest::decode(m).ok())
    else {
        return Ok(grpc_reply(None, 13, "bad request"));
    };
    let status = statuses
        .lock()
        .expect("lock")
        .get(&request.service)
        .copied();
    Ok(match status {
        Some(s) => grpc_reply(Some(HealthCheckResponse { status: s as i32 }), 0, ""),
        None => grpc_reply(None, 5, "unknown service"),
    })
}

fn grpc_reply(message: Option<HealthCheckResponse>, code: u32, text: &str) -> Response<GrpcBody> {
    let mut frames = Vec::new();
    if let Some(m) = message {
        let bytes = m.encode_to_vec();
        let mut data = vec![0u8];
        data.extend_from_slice(&u32::try_from(bytes.len()).expect("small").to_be_bytes());
        data.extend_from_slice(&bytes);
        frames.push(Ok(Frame::data(Bytes::from(data))));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code));
    if !text.is_empty() {
        trailers.insert("grpc-message", HeaderValue::from_str(text).expect("ascii"));
    }
    frames.push(Ok(Frame::trailers(trailers)));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(stream::iter(frames)))
        .expect("response")
}

#[tokio::test]
async fn grpc_status_follows_the_health_service() {
    let statuses: Statuses = Arc::default();
    statuses
        .lock()
        .expect("lock")
        .insert(String::new(), ServingStatus::Serving);
    statuses
        .lock()
        .expect("lock")
        .insert("db".into(), ServingStatus::Serving);
    let addr = health_server(Arc::clone(&statuses)).await;
    let (runner, mut rx) = runner(false);
    let mut whole = def("grpc-server");
    whole.grpc = addr.to_string();
    let mut db = def("grpc-db");
    db.grpc = format!("{addr}/db");
    let mut unknown = def("grpc-unknown");
    unknown.grpc = format!("{addr}/nope");
    runner.add(&whole).expect("add");
    runner.add(&db).expect("add");
    runner.add(&unknown).expect("add");

    let r = next_for(&mut rx, "grpc-server").await;
    assert_eq!(r.status, Passing);
    assert_eq!(r.output, format!("gRPC check {addr}: success"));
    let r = wait_status(&mut rx, "grpc-db", Passing).await;
    assert_eq!(r.output, format!("gRPC check {addr}/db: success"));
    let r = next_for(&mut rx, "grpc-unknown").await;
    assert_eq!(r.status, Critical);
    assert_eq!(
        r.output,
        "rpc error: code = NotFound desc = unknown service"
    );

    statuses
        .lock()
        .expect("lock")
        .insert("db".into(), ServingStatus::NotServing);
    let r = wait_status(&mut rx, "grpc-db", Critical).await;
    assert_eq!(
        r.output,
        format!("gRPC {addr}/db serving status: NOT_SERVING")
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn grpc_unreachable_is_critical() {
    let closed = closed_port().await;
    let (runner, mut rx) = runner(false);
    let mut d = def("grpc-down");
    d.grpc = closed.to_string();
    runner.add(&d).expect("add");
    let r = next_for(&mut rx, "grpc-down").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output
            .starts_with("rpc error: code = Unavailable desc = connection error: "),
        "{}",
        r.output
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn h2ping_needs_an_http2_peer() {
    let h2 = health_server(Arc::default()).await;
    let h1 = HttpTarget::start(200, "ok").await;
    let closed = closed_port().await;
    let (runner, mut rx) = runner(false);
    for (id, addr) in [("h2", h2), ("h1", h1.addr), ("down", closed)] {
        let mut d = def(id);
        d.h2ping = addr.to_string();
        d.timeout = Some(std::time::Duration::from_secs(2));
        runner.add(&d).expect("add");
    }

    let r = next_for(&mut rx, "h2").await;
    assert_eq!(
        (r.status, r.output.as_str()),
        (Passing, "HTTP2 ping was successful")
    );
    let r = next_for(&mut rx, "h1").await;
    assert_eq!(r.status, Critical);
    assert!(r.output.starts_with("HTTP2 ping failed: "), "{}", r.output);
    let r = next_for(&mut rx, "down").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output
            .starts_with(&format!("Failed to dial to {closed}: ")),
        "{}",
        r.output
    );
    runner.shutdown().await;
}
