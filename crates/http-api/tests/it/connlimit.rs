//! `limits.http_max_conns_per_client` on the plain HTTP listener: a client
//! holding the limit gets Consul's raw 429 on its next connection, which is then
//! closed; other clients are not affected; a closed connection frees its slot
//! by the time the server has closed its side;
//! and a changed limit applies to new connections.

use crate::support::FakeBackend;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tribune_http_api::{ConnLimiter, HttpConfig};
use tribune_types::connlimit::ClientKey;

const REFUSAL: &str = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 81\r\nConnection: close\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls\n";

async fn serve_limited(max: u32) -> (SocketAddr, Arc<ConnLimiter>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limiter = ConnLimiter::new(max);
    let router = tribune_http_api::router(FakeBackend::new(), HttpConfig::default());
    tokio::spawn(tribune_http_api::serve(
        listener,
        router,
        Arc::clone(&limiter),
        std::future::pending(),
    ));
    (addr, limiter)
}

/// A connection from `from` (a loopback address of its own, so that it counts
/// as another client) on which one request has been answered: the server has
/// admitted it and keeps it open.
async fn kept_alive(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let mut s = ask(from, to).await;
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    s
}

/// A connection from `from` with one request sent on it.
async fn ask(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s
}

/// Reads one response whose body has a `content-length`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// What the server sends on a connection it refuses, up to its close.
async fn refused(from: Ipv4Addr, to: SocketAddr) -> String {
    // The request goes out before the answer is read, as a client's would.
    let mut s = ask(from, to).await;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

/// Closes a kept-alive connection and waits for the server to close its side:
/// by then its slot is free (the server frees it before it closes).
async fn close(mut s: TcpStream) {
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection its client closed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_limit_gets_consuls_429_and_others_are_served() {
    let (addr, limiter) = serve_limited(2).await;
    let a = Ipv4Addr::new(127, 0, 0, 1);
    let b = Ipv4Addr::new(127, 0, 0, 2);
    let first = kept_alive(a, addr).await;
    let _second = kept_alive(a, addr).await;
    assert_eq!(refused(a, addr).await, REFUSAL);
    assert_eq!(refused(a, addr).await, REFUSAL);
    // Another address is its own client.
    let _other = kept_alive(b, addr).await;
    let key = ClientKey::Ip(IpAddr::V4(a));
    assert_eq!(limiter.open(key), 2);

    // Closing a connection frees its slot.
    close(first).await;
    assert_eq!(limiter.open(key), 1);
    let _third = kept_alive(a, addr).await;
    assert_eq!(refused(a, addr).await, REFUSAL);

    // A raised limit (a reload) admits more; a lowered one refuses new
    // connections and keeps the open ones.
    limiter.set_max(3);
    let fourth = kept_alive(a, addr).await;
    assert_eq!(refused(a, addr).await, REFUSAL);
    limiter.set_max(1);
    assert_eq!(refused(a, addr).await, REFUSAL);
    close(fourth).await;
    assert_eq!(limiter.open(key), 2);
    assert_eq!(refused(a, addr).await, REFUSAL);
    // 0: no limit.
    limiter.set_max(0);
    let _many: Vec<_> = kept_alive_many(a, addr, 10).await;
    assert_eq!(limiter.open(key), 12);
}

async fn kept_alive_many(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(kept_alive(from, to).await);
    }
    v
}
