//! A minimal keep-alive HTTP/1.1 client: one TCP connection, one request at a
//! time, straight on hyper's connection API.
//!
//! No pool, no redirects, no decompression: per request the client does little
//! more than format the head, parse the response and read the body, so on a
//! two-core machine it leaves as much CPU as possible to the server under test.
//! `TCP_NODELAY` is set as every mainstream client does (Go's net/http, reqwest),
//! otherwise Nagle + delayed ACK would add tens of milliseconds to small writes.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One client connection. Reconnects on the next request after a failure.
pub struct HttpConn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let mut conn = HttpConn {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: None,
        };
        conn.sender().await?;
        Ok(conn)
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the peer closes; either way the
                // next request reconnects.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Send one request and read the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        json: bool,
    ) -> Result<(StatusCode, Bytes)> {
        let (status, _, body) = self
            .request_with_headers(method, path_and_query, body, json)
            .await?;
        Ok((status, body))
    }

    /// [`HttpConn::request`], also returning the response headers (blocking
    /// queries need `X-Consul-Index`).
    pub async fn request_with_headers(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        json: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.host.clone());
        if json {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = req.body(Full::new(body))?;
        let result = async {
            let sender = self.sender().await?;
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok((parts.status, parts.headers, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// GET `path_and_query`; fails unless the status is 200.
    pub async fn get_ok(&mut self, path_and_query: &str) -> Result<Bytes> {
        let (status, body) = self
            .request(Method::GET, path_and_query, Bytes::new(), false)
            .await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path_and_query}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}
