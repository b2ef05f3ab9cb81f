//! The HTTP ceiling: a bare hyper HTTP/1.1 server answering every request with a
//! fixed "hello, world". It runs in its own process (this binary, `hello-server`)
//! on a default multi-threaded tokio runtime — the same runtime shape as
//! `tribune agent` — so the only difference from Tribune's GET path is Tribune's
//! own work (routing, query parsing, the state read, JSON) and the size of its
//! answer. A second row with a body as large as Tribune's separates the two.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HELLO: &[u8] = b"hello, world\n";

/// `hello-server --port P [--body-size N]`: serve until killed. With a body size,
/// the answer is N filler bytes instead of "hello, world", to compare with a
/// server that sends as many bytes as Tribune's KV reads do.
pub fn main(args: &[String]) -> Result<()> {
    let mut port = None;
    let mut body = Bytes::from_static(HELLO);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().context("missing value")?;
        match flag.as_str() {
            "--port" => port = Some(value.parse::<u16>().context("--port")?),
            "--body-size" => body = Bytes::from(vec![b'x'; value.parse().context("--body-size")?]),
            _ => anyhow::bail!("usage: tribune-benches hello-server --port P [--body-size N]"),
        }
    }
    let port = port.context("--port is required")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port)), body))
}

async fn serve(addr: SocketAddr, body: Bytes) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
