//! The HTTP ceiling: a bare hyper HTTP/1.1 server answering every request with a
//! fixed "hello, world". It runs in its own process (this binary, `hello-server`)
//! on a default multi-threaded tokio runtime — the same runtime shape as
//! `tribune agent` — so the only difference from Tribune's GET path is Tribune's
//! own work (routing, query parsing, the state read, JSON).

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello, world\n";

/// `hello-server --port P`: serve until killed.
pub fn main(args: &[String]) -> Result<()> {
    let port: u16 = match args {
        [flag, p] if flag == "--port" => p.parse().context("--port")?,
        _ => anyhow::bail!("usage: tribune-benches hello-server --port P"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port))))
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
