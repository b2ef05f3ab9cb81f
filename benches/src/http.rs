//! A minimal keep-alive HTTP/1.1 client: one TCP connection, one request at a
//! time, read and written by the calling task itself.
//!
//! Why not hyper's client connection: on a two-core machine the load generator
//! competes with the servers it measures, so what it costs per request decides
//! part of the result. hyper's client runs each connection as a second task
//! behind a channel, so every request wakes two tasks and crosses a channel;
//! with 512 connections to a 3-server cluster that cost the generator about 22 µs
//! of CPU per write, where `wrk` needs 15 µs (BENCHMARKS.md, cluster section,
//! "Seventeenth session"). Here a request is one `write` of a preformatted head
//! and body, and the response is parsed (with `httparse`) from the bytes as they
//! arrive: about 13 µs per write.
//!
//! Framing handled: `Content-Length`, `Transfer-Encoding: chunked`, bodiless
//! statuses (1xx, 204, 304) and read-until-close. `TCP_NODELAY` is set as every
//! mainstream client does (Go's net/http, reqwest); otherwise Nagle and delayed
//! ACKs would add tens of milliseconds to small writes.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most headers a response may carry; Tribune's and etcd's carry under 10.
const MAX_HEADERS: usize = 32;

/// One client connection. Reconnects on the next request after a failure.
pub struct HttpConn {
    addr: SocketAddr,
    host: String,
    /// The open connection, or `None` after a failure, a `Connection: close`, or
    /// a request that was cancelled midway (its future dropped while the stream
    /// was taken out), any of which leaves the stream in an unknown state.
    stream: Option<TcpStream>,
    /// The request being written, reused across requests.
    out: Vec<u8>,
    /// Bytes received and not yet consumed.
    inbuf: BytesMut,
}

impl HttpConn {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let mut conn = HttpConn {
            addr,
            host: addr.to_string(),
            stream: None,
            out: Vec::with_capacity(512),
            inbuf: BytesMut::with_capacity(READ_CHUNK),
        };
        conn.stream = Some(conn.open().await?);
        Ok(conn)
    }

    async fn open(&self) -> Result<TcpStream> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        Ok(stream)
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
            .exchange(method, path_and_query, &body, json, false)
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
        self.exchange(method, path_and_query, &body, json, true)
            .await
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

    /// One request/response on the kept-alive connection (opened first if there
    /// is none). Headers are collected only when `want_headers`: building a
    /// `HeaderMap` is most of the parsing cost and the hot workloads need only
    /// the status.
    async fn exchange(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        json: bool,
        want_headers: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        // Taken out for the whole exchange and put back only after a complete
        // response, so a failure or a cancellation leaves no half-read stream.
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.open().await?,
        };
        self.inbuf.clear();
        self.out.clear();
        write!(
            self.out,
            "{method} {path_and_query} HTTP/1.1\r\nhost: {}\r\n",
            self.host
        )?;
        if json {
            self.out
                .extend_from_slice(b"content-type: application/json\r\n");
        }
        // A bodiless GET carries no length, as curl and Go's client send it.
        if !body.is_empty() || !matches!(method, Method::GET | Method::HEAD) {
            write!(self.out, "content-length: {}\r\n", body.len())?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        stream
            .write_all(&self.out)
            .await
            .with_context(|| format!("{method} {path_and_query}: sending"))?;
        let resp = read_response(&mut stream, &mut self.inbuf, &method, want_headers)
            .await
            .with_context(|| format!("{method} {path_and_query}: reading the response"))?;
        if resp.keep_alive {
            self.stream = Some(stream);
        }
        Ok((resp.status, resp.headers, resp.body))
    }
}

/// How much to ask the kernel for per read: most responses fit in one.
const READ_CHUNK: usize = 8 << 10;

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    keep_alive: bool,
}

/// How the body of a response is delimited.
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

async fn read_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    method: &Method,
    want_headers: bool,
) -> Result<Response> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let head_len = match parsed.parse(buf)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                fill(stream, buf).await?;
                continue;
            }
        };
        let code = parsed.code.context("response without a status")?;
        let status = StatusCode::from_u16(code)?;
        let mut headers = HeaderMap::new();
        let mut framing = Framing::UntilClose;
        let mut keep_alive = parsed.version == Some(1);
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)?.trim().parse()?;
                framing = Framing::Length(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked wins over a length (RFC 9112, section 6.3).
                if h.value.eq_ignore_ascii_case(b"chunked") {
                    framing = Framing::Chunked;
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                keep_alive = !h.value.eq_ignore_ascii_case(b"close");
            }
            if want_headers {
                headers.append(
                    HeaderName::from_bytes(h.name.as_bytes())?,
                    HeaderValue::from_bytes(h.value)?,
                );
            }
        }
        buf.advance(head_len);
        if status.is_informational() {
            // A 100 Continue nobody asked for: the real response follows.
            continue;
        }
        if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            framing = Framing::None;
        }
        let body = match framing {
            Framing::None => Bytes::new(),
            Framing::Length(n) => {
                while buf.len() < n {
                    fill(stream, buf).await?;
                }
                buf.split_to(n).freeze()
            }
            Framing::Chunked => read_chunked(stream, buf).await?,
            Framing::UntilClose => {
                keep_alive = false;
                while stream.read_buf(buf).await? > 0 {}
                buf.split().freeze()
            }
        };
        return Ok(Response {
            status,
            headers,
            body,
            keep_alive,
        });
    }
}

/// Read more bytes into `buf`; the peer closing here is an error, since a
/// response was still expected.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    buf.reserve(READ_CHUNK);
    if stream.read_buf(buf).await? == 0 {
        bail!("connection closed mid-response");
    }
    Ok(())
}

/// Decode a chunked body (RFC 9112, section 7.1), trailers discarded.
async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes> {
    let mut body = BytesMut::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)?.trim();
        let size =
            usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            // Trailer lines up to the empty one that ends the message.
            while !read_line(stream, buf).await?.is_empty() {}
            return Ok(body.freeze());
        }
        // A size near usize::MAX from a broken peer must be an error, not an
        // overflow.
        let framed = size
            .checked_add(2)
            .with_context(|| format!("chunk size {size} too large"))?;
        while buf.len() < framed {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..framed] != b"\r\n" {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
        buf.advance(framed);
    }
}

/// The next CRLF-terminated line, without its CRLF.
async fn read_line(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i).freeze();
            buf.advance(2);
            return Ok(line);
        }
        fill(stream, buf).await?;
    }
}

#[cfg(test)]
mod tests {
    //! Against a raw listener that answers with canned bytes, so every framing
    //! is exercised exactly as written, split across reads as a server might.

    use super::*;
    use tokio::net::TcpListener;

    /// Serve `responses` in order, one per request received (each request is
    /// read up to its blank line, plus `content-length` bytes), writing each in
    /// two pieces to exercise partial reads; returns the requests' raw bytes.
    async fn serve(
        responses: Vec<&'static [u8]>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = BytesMut::new();
            for resp in responses {
                let req = loop {
                    let mut slots = [httparse::EMPTY_HEADER; 16];
                    let mut r = httparse::Request::new(&mut slots);
                    if let httparse::Status::Complete(n) = r.parse(&buf).unwrap() {
                        let len: usize = r
                            .headers
                            .iter()
                            .find(|h| h.name == "content-length")
                            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                            .unwrap_or(0);
                        if buf.len() >= n + len {
                            break buf.split_to(n + len).to_vec();
                        }
                    }
                    assert!(s.read_buf(&mut buf).await.unwrap() > 0, "client hung up");
                };
                seen.push(req);
                let (a, b) = resp.split_at(resp.len() / 2);
                s.write_all(a).await.unwrap();
                s.flush().await.unwrap();
                s.write_all(b).await.unwrap();
            }
            seen
        });
        (addr, h)
    }

    #[tokio::test]
    async fn framings_on_one_kept_alive_connection() {
        let (addr, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Consul-Index: 7\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut c = HttpConn::connect(addr).await.unwrap();
        let (status, headers, body) = c
            .request_with_headers(Method::GET, "/v1/kv/a?index=3", Bytes::new(), false)
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
        assert_eq!(headers["x-consul-index"], "7");
        assert_eq!(&c.get_ok("/chunked").await.unwrap()[..], b"abcdefg");
        let (status, body) = c
            .request(Method::PUT, "/v1/kv/b", Bytes::from_static(b"{}"), true)
            .await
            .unwrap();
        assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
        let (status, _) = c
            .request(Method::DELETE, "/v1/kv/c", Bytes::new(), false)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 4, "all four on one connection");
        let put = String::from_utf8(seen[2].clone()).unwrap();
        assert!(put.starts_with("PUT /v1/kv/b HTTP/1.1\r\n"), "{put}");
        assert!(put.contains("content-type: application/json\r\n"), "{put}");
        assert!(put.ends_with("content-length: 2\r\n\r\n{}"), "{put}");
        let get = String::from_utf8(seen[0].clone()).unwrap();
        assert!(!get.contains("content-length"), "{get}");
        assert!(get.contains(&format!("host: {addr}\r\n")), "{get}");
    }

    #[tokio::test]
    async fn close_delimited_body_then_reconnects() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                &b"HTTP/1.0 200 OK\r\n\r\nuntil close"[..],
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = BytesMut::new();
                while !buf.ends_with(b"\r\n\r\n") {
                    assert!(s.read_buf(&mut buf).await.unwrap() > 0);
                }
                s.write_all(answer).await.unwrap();
                // Dropping `s` closes the connection, ending the first body.
            }
        });
        let mut c = HttpConn::connect(addr).await.unwrap();
        assert_eq!(&c.get_ok("/").await.unwrap()[..], b"until close");
        assert_eq!(&c.get_ok("/").await.unwrap()[..], b"ok");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_chunk_size_past_usize_is_an_error() {
        let (addr, _server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        ])
        .await;
        let mut c = HttpConn::connect(addr).await.unwrap();
        let err = c.get_ok("/").await.unwrap_err();
        assert!(format!("{err:#}").contains("too large"), "{err:#}");
    }

    #[tokio::test]
    async fn a_response_cut_short_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = BytesMut::new();
            while !buf.ends_with(b"\r\n\r\n") {
                assert!(s.read_buf(&mut buf).await.unwrap() > 0);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
                .await
                .unwrap();
        });
        let mut c = HttpConn::connect(addr).await.unwrap();
        let err = c.get_ok("/").await.unwrap_err();
        assert!(
            format!("{err:#}").contains("closed mid-response"),
            "{err:#}"
        );
    }
}
