//! The HTTP ceiling: a bare hyper HTTP/1.1 server answering every request with a
//! fixed "hello, world". It runs in its own process (this binary, `hello-server`)
//! on a default multi-threaded tokio runtime — the same runtime shape as
//! `tribune agent` — so the only difference from Tribune's GET path is Tribune's
//! own work (routing, query parsing, the state read, JSON) and the size of its
//! answer. A second row with a body as large as Tribune's separates the two.
//!
//! With `--fsync-file`, it is also the floor of a durable write acknowledged over
//! HTTP: a request with a body appends it to the file and `fdatasync`s before
//! answering `true`, with no log format, no consensus and no hand-off to another
//! thread — the least any server can do between a PUT and its answer.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HELLO: &[u8] = b"hello, world\n";

/// `hello-server --port P [--body-size N] [--fsync-file PATH]`: serve until
/// killed. With a body size, the answer is N filler bytes instead of "hello,
/// world", to compare with a server that sends as many bytes as Tribune's KV
/// reads do. With an fsync file, see the module doc.
pub fn main(args: &[String]) -> Result<()> {
    const USAGE: &str =
        "usage: tribune-benches hello-server --port P [--body-size N] [--fsync-file PATH]";
    let mut port = None;
    let mut body = Bytes::from_static(HELLO);
    let mut fsync_file: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().context(USAGE)?;
        match flag.as_str() {
            "--port" => port = Some(value.parse::<u16>().context("--port")?),
            "--body-size" => body = Bytes::from(vec![b'x'; value.parse().context("--body-size")?]),
            "--fsync-file" => fsync_file = Some(value.into()),
            _ => anyhow::bail!(USAGE),
        }
    }
    let port = port.context("--port is required")?;
    let log = match fsync_file {
        Some(path) => Some(Arc::new(Mutex::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        ))),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port)), body, log))
}

/// Appends `data` to the log and makes it durable. Runs on the tokio worker
/// itself: a hand-off to another thread is exactly the cost this floor leaves out.
fn append_durably(log: &Mutex<File>, data: &[u8]) -> std::io::Result<()> {
    let mut f = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f.write_all(data)?;
    f.sync_data()
}

async fn serve(addr: SocketAddr, body: Bytes, log: Option<Arc<Mutex<File>>>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let body = body.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                let log = log.clone();
                async move {
                    let Some(log) = log.filter(|_| req.method() == hyper::Method::PUT) else {
                        return Ok(Response::new(Full::new(body)));
                    };
                    let data = req.into_body().collect().await?.to_bytes();
                    let response = match append_durably(&log, &data) {
                        Ok(()) => Response::new(Full::new(Bytes::from_static(b"true"))),
                        Err(e) => {
                            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            r
                        }
                    };
                    Ok::<_, hyper::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
