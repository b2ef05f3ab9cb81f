//! The lean path for `http://` and `https://` checks: one TCP connection (wrapped
//! in TLS for `https://`) and one HTTP/1.1 exchange per run over hyper's low-level
//! client connection, with everything that does not change between runs worked
//! out once per check.
//!
//! Why not reqwest here: a thousand 1 s checks are a thousand fresh connections a
//! second (Consul disables keep-alive), and reqwest's per-request work — URL
//! parsing, the connector and pool layers, redirect and timeout wrappers, a task
//! per connection — cost more CPU than the exchange itself (BENCHMARKS.md, `bench
//! checks`). A check's request never changes, so this path keeps its method,
//! origin-form target, headers, body and TLS client ready, and each run only
//! dials, handshakes, writes, reads and drops.
//!
//! For `https://` this path is also what makes `tls_server_name` the name sent in
//! SNI, as Go's `tls.Config.ServerName` does (module [`crate::probe::tls`]); the
//! `Host` header stays the URL's host. The TLS handshake counts against the run's
//! timeout like the dial, and a handshake failure reads `<Method> "<url>": tls:
//! <cause>`.
//!
//! What stays on the reqwest path (module [`super`]): URLs with credentials (Go
//! turns them into basic auth), any check while a proxy for its scheme is
//! configured in the environment, and the run that meets a redirect to follow.
//!
//! As Go's transport with `DisableKeepAlives` (Consul's `CheckHTTP`), the request
//! carries `Connection: close` unless the check sets its own `Connection` header.

use super::{go_op, TIMEOUT_TEXT};
use crate::output::TailBuffer;
use crate::plan::HttpSpec;
use crate::probe::tls::{self, Connector};
use crate::probe::{error_chain, AgentTls};
use crate::status::Probe;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, HOST, LOCATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Where a run connects.
#[derive(Debug)]
enum Target {
    /// An IP literal: nothing to resolve.
    Addr(SocketAddr),
    /// A name, resolved on every run because its records can change (Go's dialer
    /// resolves on every dial too).
    Name { host: String, port: u16 },
}

/// One check's request, ready to send.
#[derive(Debug)]
pub(super) struct PlainRequest {
    target: Target,
    /// `host:port` for dial errors (`dial tcp <addr>: …`, as the TCP check says).
    dial_addr: String,
    /// For `https://`: the TLS client, readied once.
    tls: Option<Connector>,
    method: Method,
    /// Origin form: path and query.
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// `HTTP <METHOD> <url>: `, the head of every answered run's output.
    output_prefix: String,
    /// `<Method> "<url>": `, Go's `url.Error` head of every failed run's output.
    error_prefix: String,
}

/// How a run ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The result.
    Done(Probe),
    /// A redirect the check must follow; the caller runs it on the full client.
    Redirect,
}

impl PlainRequest {
    /// The lean request for `spec`, or `None` when the check needs the full client
    /// (see the module doc) or its request is invalid (the full client then reports
    /// why, in the same words on every run). `headers` are the check's headers with
    /// Consul's defaults, already validated; `proxy_configured` says whether the
    /// environment names a proxy for a scheme; `agent_tls` is the agent's TLS for
    /// checks, when lent.
    pub(super) fn new(
        spec: &HttpSpec,
        method: &str,
        headers: HeaderMap,
        proxy_configured: impl Fn(&str) -> bool,
        agent_tls: Option<&AgentTls>,
    ) -> Option<PlainRequest> {
        let url = reqwest::Url::parse(&spec.url).ok()?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        if proxy_configured(url.scheme()) || !url.username().is_empty() || url.password().is_some()
        {
            return None;
        }
        let port = url.port_or_known_default()?;
        let host = url.host_str()?;
        // The URL parser already normalised the host: an IP literal here is final.
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let (target, dial_addr) = match literal.parse::<IpAddr>() {
            Ok(ip) => {
                let addr = SocketAddr::new(ip, port);
                (Target::Addr(addr), addr.to_string())
            }
            Err(_) => (
                Target::Name {
                    host: host.to_owned(),
                    port,
                },
                format!("{host}:{port}"),
            ),
        };
        let mut path_and_query = url.path().to_owned();
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let uri = Uri::try_from(path_and_query).ok()?;
        let method = Method::from_bytes(method.as_bytes()).ok()?;
        // An invalid `tls_server_name` leaves the check to the full client, which
        // reports it.
        let tls = if https {
            let connector = Connector::new(
                literal,
                spec.tls_skip_verify,
                &spec.tls_server_name,
                &[tls::ALPN_HTTP1],
                agent_tls,
            );
            Some(connector.ok()?)
        } else {
            None
        };
        let mut headers = headers;
        if !headers.contains_key(HOST) {
            // `host_str` keeps an IPv6 literal's brackets; `port` is only the
            // explicit, non-default one, as the full client sends it.
            let value = match url.port() {
                Some(p) => HeaderValue::from_str(&format!("{host}:{p}")),
                None => HeaderValue::from_str(host),
            };
            headers.insert(HOST, value.ok()?);
        }
        if !headers.contains_key(CONNECTION) {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Some(PlainRequest {
            target,
            dial_addr,
            tls,
            output_prefix: format!("HTTP {method} {}: ", spec.url),
            error_prefix: format!("{} \"{}\": ", go_op(method.as_str()), spec.url),
            method,
            uri,
            headers,
            body: Bytes::from(spec.body.clone()),
        })
    }

    /// One run, over by `deadline`. A timeout before the response head is the
    /// full client's timeout message; one while reading the body keeps what
    /// arrived and judges by the status, as a read error does.
    pub(super) async fn run(
        &self,
        deadline: Instant,
        follow_redirects: bool,
        output_max_size: usize,
    ) -> Outcome {
        // One timer for the whole run, shared by every phase.
        let mut expiry = pin!(tokio::time::sleep_until(deadline));
        let stream = tokio::select! {
            biased;
            s = self.dial() => s,
            () = expiry.as_mut() => return Outcome::Done(self.timed_out()),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Done(self.failed(format_args!("dial tcp {}: {e}", self.dial_addr)))
            }
        };
        // A check writes one small request and waits: Nagle would only delay it.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a check connection");
        }
        let Some(tls) = &self.tls else {
            return self
                .exchange(stream, expiry, follow_redirects, output_max_size)
                .await;
        };
        let stream = tokio::select! {
            biased;
            s = tls.connect(stream) => s,
            () = expiry.as_mut() => return Outcome::Done(self.timed_out()),
        };
        match stream {
            Ok(s) => {
                self.exchange(s, expiry, follow_redirects, output_max_size)
                    .await
            }
            Err(e) => Outcome::Done(self.failed(format_args!("{e}"))),
        }
    }

    /// The HTTP/1.1 exchange over a connected stream, under the run's timer.
    async fn exchange<S>(
        &self,
        stream: S,
        mut expiry: Pin<&mut Sleep>,
        follow_redirects: bool,
        output_max_size: usize,
    ) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return Outcome::Done(self.failed(format_args!("{}", error_chain(&e)))),
        };
        let mut conn = Conn {
            conn: pin!(conn),
            done: false,
        };

        let head = tokio::select! {
            biased;
            r = conn.drive(sender.send_request(self.request())) => r,
            () = expiry.as_mut() => return Outcome::Done(self.timed_out()),
        };
        let response = match head {
            Ok(r) => r,
            Err(e) => return Outcome::Done(self.failed(format_args!("{}", error_chain(&e)))),
        };
        let code = response.status();
        if follow_redirects
            && is_followed_redirect(code)
            && response.headers().contains_key(LOCATION)
        {
            return Outcome::Redirect;
        }
        let mut output = String::with_capacity(self.output_prefix.len() + 64);
        output.push_str(&self.output_prefix);
        push_status(&mut output, &response);

        let mut body = response.into_body();
        let mut tail = TailBuffer::new(output_max_size);
        let read = async {
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            tail.write(data);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %error_chain(&e), "check error while reading body");
                        break;
                    }
                    None => break,
                }
            }
        };
        tokio::select! {
            biased;
            () = conn.drive(read) => {}
            () = expiry.as_mut() => {
                tracing::debug!("check timed out while reading body");
            }
        }
        output.push_str(" Output: ");
        output.push_str(&String::from_utf8_lossy(tail.bytes()));
        Outcome::Done(match code.as_u16() {
            200..=299 => Probe::passing(output),
            // 429 Too Many Requests (RFC 6585): the service is up but shedding load.
            429 => Probe::warning(output),
            _ => Probe::critical(output),
        })
    }

    async fn dial(&self) -> std::io::Result<TcpStream> {
        match &self.target {
            Target::Addr(addr) => TcpStream::connect(*addr).await,
            Target::Name { host, port } => TcpStream::connect((host.as_str(), *port)).await,
        }
    }

    /// This run's request: clones of ready parts (the body is reference-counted).
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    fn failed(&self, cause: std::fmt::Arguments<'_>) -> Probe {
        Probe::critical(format!("{}{cause}", self.error_prefix))
    }

    fn timed_out(&self) -> Probe {
        self.failed(format_args!("{TIMEOUT_TEXT}"))
    }
}

/// The codes Go's client follows when the response has a `Location`
/// (`redirectBehavior`); other 3xx are results.
fn is_followed_redirect(code: StatusCode) -> bool {
    matches!(code.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// `200 OK`: the code and the server's own reason phrase (Go's `resp.Status`),
/// falling back to the canonical one; no trailing space without either.
fn push_status<B>(out: &mut String, response: &hyper::Response<B>) {
    use std::fmt::Write;
    let code = response.status();
    let _ = write!(out, "{}", code.as_u16());
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()))
        .or_else(|| code.canonical_reason().map(Into::into));
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        out.push(' ');
        out.push_str(&reason);
    }
}

/// The connection half of a client connection, polled by whatever awaits the
/// request half, so a run is one future inside the runner's task: hyper's usual
/// advice is to spawn the connection, which would cost a task per run.
struct Conn<'a, C> {
    conn: Pin<&'a mut C>,
    /// The connection future finished; it must not be polled again.
    done: bool,
}

impl<C: Future<Output = hyper::Result<()>>> Conn<'_, C> {
    /// Awaits `work` while driving the connection. When the connection ends first
    /// (closed, or failed), `work` learns of it through hyper and ends too.
    async fn drive<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !self.done {
                if let Poll::Ready(result) = self.conn.as_mut().poll(cx) {
                    self.done = true;
                    if let Err(e) = result {
                        tracing::debug!(error = %error_chain(&e), "check connection failed");
                    }
                    return work.as_mut().poll(cx);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> HttpSpec {
        HttpSpec {
            url: url.to_owned(),
            ..HttpSpec::default()
        }
    }

    fn plain(url: &str) -> Option<PlainRequest> {
        PlainRequest::new(&spec(url), "GET", HeaderMap::new(), |_| false, None)
    }

    #[test]
    fn http_and_https_without_credentials_or_proxy_take_this_path() {
        assert!(plain("http://127.0.0.1:8080/x").is_some());
        assert!(plain("http://localhost/").is_some());
        assert!(plain("https://127.0.0.1/").is_some());
        assert!(plain("ftp://127.0.0.1/").is_none());
        assert!(plain("http://user:pw@127.0.0.1/").is_none());
        assert!(plain("https://user@127.0.0.1/").is_none());
        assert!(plain("not a url").is_none());
        // A proxy for the URL's scheme only.
        let https_proxy = |scheme: &str| scheme == "https";
        let new =
            |url: &str| PlainRequest::new(&spec(url), "GET", HeaderMap::new(), https_proxy, None);
        assert!(new("http://127.0.0.1/").is_some());
        assert!(new("https://127.0.0.1/").is_none());
        // An invalid `tls_server_name` is the full client's to report.
        let mut bad = spec("https://127.0.0.1/");
        bad.tls_server_name = "not a name".to_owned();
        assert!(PlainRequest::new(&bad, "GET", HeaderMap::new(), |_| false, None).is_none());
    }

    #[test]
    fn https_sends_the_server_name_but_keeps_the_url_host() {
        let p = plain("https://localhost:8443/h").expect("plain");
        assert_eq!(p.headers[HOST], "localhost:8443");
        assert_eq!(p.dial_addr, "localhost:8443");
        let name = |p: &PlainRequest| format!("{:?}", p.tls.as_ref().expect("tls"));
        assert!(name(&p).contains("localhost"), "{}", name(&p));

        let mut s = spec("https://127.0.0.1/");
        s.tls_server_name = "svc.example".to_owned();
        let p = PlainRequest::new(&s, "GET", HeaderMap::new(), |_| false, None).expect("plain");
        assert_eq!(p.headers[HOST], "127.0.0.1");
        assert_eq!(p.dial_addr, "127.0.0.1:443");
        assert!(name(&p).contains("svc.example"), "{}", name(&p));
        assert!(plain("http://127.0.0.1/").expect("plain").tls.is_none());
    }

    #[test]
    fn request_parts_are_ready() {
        let p = plain("http://127.0.0.1:8080/a/b?c=d#frag").expect("plain");
        assert!(matches!(p.target, Target::Addr(a) if a == "127.0.0.1:8080".parse().unwrap()));
        assert_eq!(p.uri, "/a/b?c=d");
        assert_eq!(p.headers[HOST], "127.0.0.1:8080");
        assert_eq!(p.headers[CONNECTION], "close");
        assert_eq!(
            p.output_prefix,
            "HTTP GET http://127.0.0.1:8080/a/b?c=d#frag: "
        );
        assert_eq!(
            p.error_prefix,
            "Get \"http://127.0.0.1:8080/a/b?c=d#frag\": "
        );

        let p = plain("http://[::1]/").expect("plain");
        assert_eq!(p.headers[HOST], "[::1]");
        assert_eq!(p.dial_addr, "[::1]:80");

        let p = plain("http://Example.COM:81").expect("plain");
        assert!(matches!(&p.target, Target::Name { host, port: 81 } if host == "example.com"));
        assert_eq!(p.uri, "/");
        assert_eq!(p.headers[HOST], "example.com:81");
    }

    #[test]
    fn check_headers_win_over_derived_ones() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("virtual"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        let p = PlainRequest::new(&spec("http://127.0.0.1/"), "GET", h, |_| false, None)
            .expect("plain");
        assert_eq!(p.headers[HOST], "virtual");
        assert_eq!(p.headers[CONNECTION], "keep-alive");
    }

    #[test]
    fn followed_redirects_are_gos() {
        for code in [301, 302, 303, 307, 308] {
            assert!(is_followed_redirect(StatusCode::from_u16(code).unwrap()));
        }
        for code in [300, 304, 305, 200, 404] {
            assert!(!is_followed_redirect(StatusCode::from_u16(code).unwrap()));
        }
    }
}
