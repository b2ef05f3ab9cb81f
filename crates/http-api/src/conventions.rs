//! [`Api`]: the router inside what Consul's HTTP wrapper does around every
//! endpoint (`wrap` in `agent/http.go`, go-cleanhttp's path check):
//!
//! - with `http_config.max_header_bytes` set, a request whose request line and
//!   headers take more than that plus Go's 4 KiB of slack gets Go's 431
//!   `Request Header Fields Too Large` and the connection is closed (unset, the
//!   only bound is hyper's read buffer, ~400 KiB, where Go's default is 1 MiB);
//! - a path with a control character or a non-ASCII space, once
//!   percent-decoded (`%0a`), is refused with a bare 400, unless
//!   `disable_http_unprintable_char_filter` is set (see [`printable_path`]);
//! - `OPTIONS` on an endpoint answers 200 with `Allow` listing `OPTIONS` and the
//!   endpoint's methods; a method the endpoint does not take gets 405 with the
//!   same `Allow` and the body `method X not allowed`;
//! - a path under one of `http_config.block_endpoints` (percent-decoded, as
//!   Go's `URL.Path`) gets 403 `Endpoint is blocked by agent configuration`
//!   whatever the method (Consul's check sits in its per-endpoint wrapper, so
//!   there an unknown path under a blocked prefix is a 404 instead);
//! - with `http_config.allow_write_http_from` set, a write (any method but
//!   `GET`, `HEAD`, `OPTIONS`) from a client outside those networks gets 403
//!   `Access is restricted`, once the endpoint and method are known to exist
//!   (an unknown path is still 404, a wrong method 405), as in Consul;
//! - every response carries `X-Consul-Default-ACL-Policy` and the configured
//!   `http_config.response_headers` (an endpoint's own header of the same
//!   name wins);
//! - a prepared query's request carries the client's address ([`ClientAddr`]),
//!   which Consul's `near=_ip` falls back to without `X-Forwarded-For`.
//!
//! `GET /v1/kv/<key>` and `PUT /v1/kv/<key>`, the API's hottest read and
//! write, go straight to their handlers instead of through the router:
//! matching, the path parameter's extension map and the route's layers cost
//! about a micro-second of the ~14 µs such a read takes, and a leader under
//! 512 clients' PUTs spent ~18% less CPU per write without them (seven A/B
//! pairs, 5–36%, together with static `true`/`false` answers: BENCHMARKS.md).
//! The handlers are the same, so are the answers: the PUT's body is read
//! under the router's bound and an overrun gets axum's 413. A key that is not
//! valid UTF-8 once decoded, and a PUT from a client `allow_write_http_from`
//! refuses, still go through the router, whose answers those are.
//!
//! A hand-written service around the whole router, rather than an axum
//! middleware: `Router::layer` wraps each route inside its method router, where
//! axum's 405 has no `Allow` yet, and a `from_fn` middleware around a nested
//! router boxes the request's future twice and routes it twice, which cost
//! about 3 µs of the ~15 µs a `GET /v1/kv/k?stale` takes (BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::HttpBody;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use percent_encoding::percent_decode_str;
use tower::Service;

use crate::params::Params;
use crate::reply;
use crate::routes::{AppState, DirectFuture, HttpConfig};
use std::sync::Arc;
use tribune_types::net::Cidr;

/// A constant name, so that inserting it does not parse it on every response.
const DEFAULT_ACL_POLICY: HeaderName = HeaderName::from_static("x-consul-default-acl-policy");

/// The HTTP API: the router and Consul's conventions around it. Cheap to
/// clone (the router is shared).
#[derive(Clone)]
pub struct Api {
    router: Router,
    default_acl_policy: HeaderValue,
    check_paths: bool,
    /// `http_config.max_header_bytes` plus Go's slack; `None` when unset.
    header_limit: Option<usize>,
    /// `http_config.block_endpoints` (empty: none).
    blocked: Arc<[String]>,
    /// `http_config.allow_write_http_from` (empty: everyone may write).
    write_from: Arc<[Cidr]>,
    /// `http_config.response_headers`; `None` when there are none, so the
    /// common answer does not touch a shared count.
    extra_headers: Option<Arc<[(HeaderName, HeaderValue)]>>,
    /// The connection's client, set per connection by the listeners
    /// ([`Api::for_client`]); `None` on a unix socket.
    client: Option<IpAddr>,
    /// The state `GET` and `PUT /v1/kv/<key>` are answered from without the
    /// router.
    kv_direct: Option<AppState>,
}

/// The address of the client that sent a request (a request extension, set
/// on `/v1/query/...` requests only: nothing else reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl Api {
    /// `router` inside the conventions `config` sets.
    pub fn new(router: Router, config: &HttpConfig) -> Self {
        Api {
            // What `axum::serve` does to a plain router for each connection:
            // turn every handler into a ready route once, rather than on each
            // request.
            router: router.with_state(()),
            default_acl_policy: HeaderValue::from_static(config.default_acl_policy),
            check_paths: !config.allow_unprintable_paths,
            // Go reads the request head through a buffer of this size
            // (`initialReadLimitSize`).
            header_limit: (config.max_header_bytes > 0)
                .then(|| config.max_header_bytes.saturating_add(4096)),
            blocked: config.block_endpoints.clone().into(),
            write_from: config.allow_write_from.clone().into(),
            extra_headers: (!config.response_headers.is_empty())
                .then(|| config.response_headers.clone().into()),
            client: None,
            kv_direct: None,
        }
    }

    /// Whether `path` (raw, as in the request line) is under a blocked prefix.
    fn is_blocked(&self, path: &str) -> bool {
        if self.blocked.is_empty() {
            return false;
        }
        let path = percent_decode_str(path).decode_utf8_lossy();
        self.blocked
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }

    /// Whether `method` is a write this connection's client may not make:
    /// `Some(answer)` when it may not, with the answer for a route that takes
    /// it. (A unix-socket client has no address to check; Consul fails to
    /// parse its `RemoteAddr` and answers 500.)
    fn write_refusal(&self, method: &Method) -> Option<Response> {
        if self.write_from.is_empty()
            || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            return None;
        }
        match self.client {
            Some(ip) if self.write_from.iter().any(|n| n.contains(ip)) => None,
            Some(_) => Some(reply::text(StatusCode::FORBIDDEN, "Access is restricted")),
            None => Some(reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unable to parse remote addr: address @: missing port in address",
            )),
        }
    }

    /// What every answer from inside the wrapper carries.
    fn finish(&self) -> Finish {
        Finish {
            policy: self.default_acl_policy.clone(),
            extra: self.extra_headers.clone(),
        }
    }

    /// Answers `GET` and `PUT /v1/kv/<key>` from `state` without the router.
    pub(crate) fn with_kv_direct(mut self, state: AppState) -> Self {
        self.kv_direct = Some(state);
        self
    }

    /// Whether this API takes `req` outside the router, as a `GET` or `PUT
    /// /v1/kv/<key>`: the state to answer from, whether it writes, the key.
    fn kv_direct<B>(&self, req: &Request<B>) -> Option<(AppState, bool, String)> {
        let state = self.kv_direct.as_ref()?;
        let (write, key) = direct_kv_key(req.method(), req.uri().path())?;
        // A refused write is the router's to answer (its probe for the
        // method, then the refusal).
        if write && self.write_refusal(req.method()).is_some() {
            return None;
        }
        Some((state.clone(), write, key))
    }

    /// This API for one connection from `client`.
    pub fn for_client(&self, client: Option<IpAddr>) -> Self {
        Api {
            client: client.map(|ip| ip.to_canonical()),
            ..self.clone()
        }
    }
}

impl<B> Service<Request<B>> for Api
where
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ApiFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> ApiFuture {
        if self
            .header_limit
            .is_some_and(|limit| head_size(&req) > limit)
        {
            // Go's server answers this before any handler: no wrapper headers.
            let mut resp = reply::text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "431 Request Header Fields Too Large",
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return ApiFuture::Done(Some(resp));
        }
        if self.check_paths && !printable_path(req.uri().path()) {
            // Consul's path check sits outside its wrapper: a bare 400.
            return ApiFuture::Done(Some(StatusCode::BAD_REQUEST.into_response()));
        }
        if self.is_blocked(req.uri().path()) {
            let resp = reply::text(
                StatusCode::FORBIDDEN,
                "Endpoint is blocked by agent configuration",
            );
            return ApiFuture::Done(Some(self.finish().apply(resp)));
        }
        // Only prepared queries read it; other requests skip the allocation
        // of an extensions map.
        if let Some(ip) = self.client {
            if req.uri().path().starts_with("/v1/query/") {
                req.extensions_mut().insert(ClientAddr(ip));
            }
        }
        if let Some((state, write, key)) = self.kv_direct(&req) {
            let params = Params::of_request(req.uri(), req.headers(), &state.config);
            let inner = if write {
                crate::routes::kv_put_direct(state, key, params, req.into_body())
            } else {
                crate::routes::kv_get_direct(state, key, params)
            };
            return ApiFuture::Direct {
                inner,
                finish: self.finish(),
            };
        }
        let method = req.method().clone();
        // `/` is Consul's index handler, outside its wrapper: no write check.
        let refusal = (req.uri().path() != "/")
            .then(|| self.write_refusal(&method))
            .flatten();
        if let Some(refusal) = refusal {
            // Refused only where the endpoint takes the method: the router
            // answers an `OPTIONS` probe of the path with the methods it has
            // (or with the 404 of a path it does not know), and the request
            // itself never reaches a handler.
            let mut probe = Request::new(axum::body::Body::empty());
            *probe.method_mut() = Method::OPTIONS;
            *probe.uri_mut() = req.uri().clone();
            return ApiFuture::Probing {
                inner: self.router.call(probe),
                method,
                refusal: Some(refusal),
                finish: self.finish(),
            };
        }
        ApiFuture::Routed {
            inner: self.router.call(req),
            method,
            finish: self.finish(),
        }
    }
}

/// The size of `req`'s head as sent over HTTP/1.1: the request line and each
/// header line with their line ends, and the blank line that ends them.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + 2)
        .sum();
    line + headers + 2
}

/// Whether a request answered outside the router writes, and its key: a
/// `GET` or `PUT` of a key under `/v1/kv/` that decodes (as axum decodes a
/// path parameter) to UTF-8.
fn direct_kv_key(method: &Method, path: &str) -> Option<(bool, String)> {
    let write = match *method {
        Method::GET => false,
        Method::PUT => true,
        _ => return None,
    };
    // `/v1/kv/` alone is the root's route, not a key.
    let raw = path.strip_prefix("/v1/kv/").filter(|k| !k.is_empty())?;
    Some((
        write,
        percent_decode_str(raw).decode_utf8().ok()?.into_owned(),
    ))
}

/// The headers every answer from inside Consul's wrapper gets on its way out.
pub struct Finish {
    policy: HeaderValue,
    extra: Option<Arc<[(HeaderName, HeaderValue)]>>,
}

impl Finish {
    fn apply(&self, mut resp: Response) -> Response {
        let headers = resp.headers_mut();
        headers.insert(DEFAULT_ACL_POLICY, self.policy.clone());
        // Consul sets these before the endpoint runs, so the endpoint's own
        // header of the same name replaces it.
        for (name, value) in self.extra.iter().flat_map(|h| h.iter()) {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        resp
    }
}

/// The response of [`Api`]: the router's, finished on the way out.
// The large variant is the one nearly every request takes; boxing it would
// add the allocation this type exists to avoid.
#[allow(clippy::large_enum_variant)]
pub enum ApiFuture {
    /// Answered before routing.
    Done(Option<Response>),
    /// Answered without the router.
    Direct { inner: DirectFuture, finish: Finish },
    /// In the router.
    Routed {
        inner: RouteFuture<Infallible>,
        method: Method,
        finish: Finish,
    },
    /// A write from a client outside `allow_write_http_from`, while the
    /// router says whether the endpoint takes its method.
    Probing {
        inner: RouteFuture<Infallible>,
        method: Method,
        refusal: Option<Response>,
        finish: Finish,
    },
}

impl Future for ApiFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Nothing here is pinned structurally: `RouteFuture` is `Unpin`.
        match self.get_mut() {
            ApiFuture::Done(resp) => Poll::Ready(Ok(resp
                .take()
                .unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response()))),
            ApiFuture::Direct { inner, finish } => {
                let resp = std::task::ready!(inner.as_mut().poll(cx));
                Poll::Ready(Ok(finish.apply(resp)))
            }
            ApiFuture::Routed {
                inner,
                method,
                finish,
            } => {
                let Ok(resp) = std::task::ready!(Pin::new(inner).poll(cx));
                let resp = if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                    method_not_allowed(resp, method)
                } else {
                    resp
                };
                Poll::Ready(Ok(finish.apply(resp)))
            }
            ApiFuture::Probing {
                inner,
                method,
                refusal,
                finish,
            } => {
                let Ok(probe) = std::task::ready!(Pin::new(inner).poll(cx));
                let resp = match probe.status() {
                    // No such endpoint: the index handler's 404.
                    StatusCode::NOT_FOUND => probe,
                    StatusCode::METHOD_NOT_ALLOWED if !allows(&probe, method) => {
                        method_not_allowed(probe, method)
                    }
                    // The endpoint takes the method. (Only the index handler
                    // at `/` answers an `OPTIONS` itself, and `/` is never
                    // probed; anything else that did would be refused, the
                    // safe side.)
                    _ => refusal.take().unwrap_or(probe),
                };
                Poll::Ready(Ok(finish.apply(resp)))
            }
        }
    }
}

/// Whether axum's 405 lists `method` in its `Allow`.
fn allows(resp: &Response, method: &Method) -> bool {
    resp.headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|allow| allow.split(',').any(|m| m.trim() == method.as_str()))
}

/// axum's 405 (its `Allow` lists the route's methods, with the HEAD axum adds
/// to GET routes and Consul does not list) as Consul answers it: 200 to
/// `OPTIONS`, otherwise 405 `method X not allowed`; `Allow` with `OPTIONS` first.
fn method_not_allowed(resp: Response, method: &Method) -> Response {
    let listed = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut allow = String::from("OPTIONS");
    for m in listed.split(',').map(str::trim) {
        if !m.is_empty() && m != "HEAD" && m != "OPTIONS" {
            allow.push(',');
            allow.push_str(m);
        }
    }
    let allow = HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("OPTIONS"));
    let mut out = if method == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        crate::reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
    };
    out.headers_mut().insert(header::ALLOW, allow);
    out
}

/// Whether a request path, percent-decoded, has no control character and no
/// space but the ASCII one. Go's `unicode.IsPrint`, which Consul uses, also
/// refuses format characters (U+200B, U+FEFF, ...), private-use and unassigned
/// code points; those pass here (std has no Unicode general categories).
fn printable_path(path: &str) -> bool {
    // The common case, visible ASCII and no escape, costs one byte scan. (The
    // request line may carry raw UTF-8, which hyper passes on, so that is
    // checked too.)
    if path.bytes().all(|b| b.is_ascii_graphic() && b != b'%') {
        return true;
    }
    let printable = |c: char| !(c.is_control() || (c.is_whitespace() && c != ' '));
    if !path.contains('%') {
        return path.chars().all(printable);
    }
    // Invalid UTF-8 after decoding (a stray `%ff`) is left to the endpoints,
    // as Go's URL parsing keeps it as it is.
    match percent_encoding::percent_decode_str(path).decode_utf8() {
        Ok(decoded) => decoded.chars().all(printable),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    #[test]
    fn a_request_head_is_measured_as_sent() {
        let req = axum::http::Request::get("/v1/kv/a?stale")
            .header("host", "x")
            .body(())
            .unwrap();
        // "GET /v1/kv/a?stale HTTP/1.1\r\n" + "host: x\r\n" + "\r\n"
        assert_eq!(super::head_size(&req), 29 + 9 + 2);
    }

    #[test]
    fn which_requests_skip_the_router() {
        let key = |m: Method, p: &str| super::direct_kv_key(&m, p);
        let read = |k: &str| Some((false, k.to_owned()));
        assert_eq!(key(Method::GET, "/v1/kv/a%20b/c"), read("a b/c"));
        assert_eq!(key(Method::GET, "/v1/kv//x/"), read("/x/"));
        assert_eq!(key(Method::GET, "/v1/kv/a%2Fb+c"), read("a/b+c"));
        assert_eq!(key(Method::PUT, "/v1/kv/a%20b"), Some((true, "a b".into())));
        for (m, p) in [
            (Method::GET, "/v1/kv/"),
            (Method::GET, "/v1/kv"),
            (Method::GET, "/v1/kv/a%FF"),
            (Method::GET, "/v1/kvx/a"),
            (Method::GET, "/v1/catalog/nodes"),
            (Method::HEAD, "/v1/kv/a"),
            (Method::PUT, "/v1/kv/"),
            (Method::PUT, "/v1/kv/a%FF"),
            (Method::POST, "/v1/kv/a"),
            (Method::DELETE, "/v1/kv/a"),
        ] {
            assert_eq!(key(m.clone(), p), None, "{m} {p}");
        }
    }

    #[test]
    fn printable_paths() {
        for ok in [
            "/v1/kv/a",
            "/v1/kv/raw-\u{e9}t\u{e9}",
            "/v1/kv/a%20b",
            "/v1/kv/%C3%A9t%C3%A9",
            "/v1/kv/%ff",
        ] {
            assert!(super::printable_path(ok), "{ok}");
        }
        for bad in [
            "/v1/kv/a%0a",
            "/v1/kv/%09",
            "/v1/kv/%7f",
            "/v1/kv/%C2%A0",
            "/v1/kv/%E2%80%A8",
            "/v1/kv/raw\u{a0}nbsp",
        ] {
            assert!(!super::printable_path(bad), "{bad}");
        }
    }
}
