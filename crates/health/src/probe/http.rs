//! HTTP checks, as Consul's `CheckHTTP`: one request per run without keep-alive,
//! `User-Agent: Consul Health Check` and `Accept: text/plain, text/*, */*` unless the
//! check sets them, redirects followed (up to 10, Go's default) unless
//! `disable_redirects`, and the response body's last `output_max_size` bytes in the
//! output. 2xx is passing, 429 Too Many Requests warning, anything else critical.
//!
//! Two ways to run one: a [`Check`] sends `http://` and `https://` requests over a
//! bare hyper connection readied once per check (module `plain`), and what that
//! path does not cover — a proxy in the environment, credentials in the URL, a
//! redirect to follow — goes through reqwest (this module).
//!
//! `https://` URLs use the check's `tls_skip_verify` and `tls_server_name`, and the
//! agent's CAs and client certificate when it lends them (see [`super::tls`]). On
//! the lean path `tls_server_name` is, as in Go, both the name sent in SNI and the
//! name the certificate is verified against, while the `Host` header stays the
//! URL's host. On the reqwest path (proxies, credentials, redirects) the
//! certificate is still verified against `tls_server_name`, but the SNI is the
//! host of the URL being fetched, because reqwest opens connections for the URL it
//! is given.
//!
//! reqwest clients are shared between runs and checks with the same TLS and
//! redirect settings: building one per run (a connector, a resolver, a TLS
//! configuration) is needless work with a thousand checks a second. Sharing them
//! reuses no connection: the pool keeps no idle connection.

mod plain;

use super::{error_chain, tls, AgentTls};
use crate::output::TailBuffer;
use crate::plan::HttpSpec;
use crate::status::Probe;
use plain::{Outcome, PlainRequest};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, HOST, USER_AGENT};
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Consul's `checks.UserAgent`.
pub(crate) const CHECK_USER_AGENT: &str = "Consul Health Check";
/// The `Accept` header Consul sends unless the check sets one.
pub(crate) const CHECK_ACCEPT: &str = "text/plain, text/*, */*";

/// An HTTP check readied for its runs.
#[derive(Debug)]
pub(crate) struct Check {
    spec: HttpSpec,
    /// The agent's TLS for `https://`, when lent.
    agent_tls: Option<Arc<AgentTls>>,
    /// The lean request, when the check can use it.
    plain: Option<PlainRequest>,
    /// Set when a run met a redirect to follow: later runs go straight to reqwest,
    /// which follows it, instead of asking twice per run.
    redirects: AtomicBool,
}

impl Check {
    /// Works out once what every run sends.
    pub(crate) fn new(spec: HttpSpec, agent_tls: Option<Arc<AgentTls>>) -> Check {
        // Invalid headers leave the check to reqwest's path, which reports them.
        let plain = headers(&spec.header).ok().and_then(|h| {
            PlainRequest::new(
                &spec,
                method(&spec),
                h,
                proxy_configured,
                agent_tls.as_deref(),
            )
        });
        Check {
            spec,
            agent_tls,
            plain,
            redirects: AtomicBool::new(false),
        }
    }

    /// One run, bounded by `timeout` as a whole (a redirect handed to reqwest
    /// gets what is left of it).
    pub(crate) async fn run(&self, timeout: Duration, output_max_size: usize) -> Probe {
        let deadline = Instant::now() + timeout;
        if let Some(plain) = &self.plain {
            if !self.redirects.load(Ordering::Relaxed) {
                let follow = !self.spec.disable_redirects;
                match plain.run(deadline, follow, output_max_size).await {
                    Outcome::Done(p) => return p,
                    Outcome::Redirect => self.redirects.store(true, Ordering::Relaxed),
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        probe(&self.spec, self.agent_tls.as_deref(), left, output_max_size).await
    }
}

/// The check's method; empty means `GET`.
fn method(spec: &HttpSpec) -> &str {
    if spec.method.is_empty() {
        "GET"
    } else {
        spec.method.as_str()
    }
}

/// Whether the environment names a proxy reqwest would use for URLs of `scheme`
/// (`HTTP_PROXY` for `http`, `HTTPS_PROXY` for `https`, `ALL_PROXY` for both,
/// either case; it applies `NO_PROXY` itself). Read once per process, as Go's
/// `ProxyFromEnvironment` and reqwest's clients do.
fn proxy_configured(scheme: &str) -> bool {
    static HTTP: OnceLock<bool> = OnceLock::new();
    static HTTPS: OnceLock<bool> = OnceLock::new();
    let cell = match scheme {
        "http" => &HTTP,
        "https" => &HTTPS,
        // No other scheme takes the lean path; say "proxied" to keep it off it.
        _ => return true,
    };
    *cell.get_or_init(|| proxy_in(scheme, |name| std::env::var_os(name)))
}

fn proxy_in(scheme: &str, var: impl Fn(&str) -> Option<OsString>) -> bool {
    let own: [&str; 2] = if scheme == "https" {
        ["HTTPS_PROXY", "https_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy"]
    };
    own.into_iter()
        .chain(["ALL_PROXY", "all_proxy"])
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// One run through reqwest.
pub(crate) async fn probe(
    spec: &HttpSpec,
    agent_tls: Option<&AgentTls>,
    timeout: Duration,
    output_max_size: usize,
) -> Probe {
    let method = method(spec);
    let request = match build_request(spec, method, timeout, agent_tls) {
        Ok(r) => r,
        Err(msg) => return Probe::critical(msg),
    };
    // reqwest's own timeout covers connect, headers and body; this outer bound is a
    // backstop for anything it does not (a stuck resolver), with the same message.
    let run = async {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Probe::critical(request_error(method, &spec.url, &e)),
        };
        let status = status_text(&response);
        let code = response.status().as_u16();
        let body = read_tail(response, output_max_size).await;
        let output = format!("HTTP {method} {}: {status} Output: {body}", spec.url);
        match code {
            200..=299 => Probe::passing(output),
            // 429 Too Many Requests (RFC 6585): the service is up but shedding load.
            429 => Probe::warning(output),
            _ => Probe::critical(output),
        }
    };
    match tokio::time::timeout(timeout + Duration::from_millis(100), run).await {
        Ok(p) => p,
        Err(_) => Probe::critical(format!(
            "{} \"{}\": {}",
            go_op(method),
            spec.url,
            TIMEOUT_TEXT
        )),
    }
}

/// Go's `http.Client` timeout message, which Consul users know from check output.
const TIMEOUT_TEXT: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

fn build_request(
    spec: &HttpSpec,
    method: &str,
    timeout: Duration,
    agent_tls: Option<&AgentTls>,
) -> Result<reqwest::RequestBuilder, String> {
    let url = reqwest::Url::parse(&spec.url).map_err(|e| format!("parse \"{}\": {e}", spec.url))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{} \"{}\": unsupported protocol scheme \"{other}\"",
                go_op(method),
                spec.url
            ))
        }
    }
    let method_value = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("net/http: invalid method {method:?}"))?;
    let headers = headers(&spec.header)?;
    let client = client(
        &ClientKey {
            disable_redirects: spec.disable_redirects,
            tls_skip_verify: spec.tls_skip_verify,
            tls_server_name: spec.tls_server_name.clone(),
            agent_tls: agent_tls.map(AgentTls::id),
        },
        agent_tls,
    )?;
    let mut request = client
        .request(method_value, url)
        .headers(headers)
        .timeout(timeout);
    if !spec.body.is_empty() {
        request = request.body(spec.body.clone());
    }
    Ok(request)
}

/// The settings that shape a client; everything else is per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    disable_redirects: bool,
    tls_skip_verify: bool,
    tls_server_name: String,
    /// Which load of the agent's TLS the client was built with, if any.
    agent_tls: Option<u64>,
}

/// Past this many distinct settings the cache starts over, so a stream of checks
/// with ever new `tls_server_name`s cannot grow it without bound.
const MAX_CACHED_CLIENTS: usize = 64;

/// The shared client for `key`, built on first use (`agent_tls` is the one `key`
/// names).
fn client(key: &ClientKey, agent_tls: Option<&AgentTls>) -> Result<reqwest::Client, String> {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();
    let cache = CLIENTS.get_or_init(Mutex::default);
    // A poisoned lock only means another check panicked mid-insert; the map is fine.
    let mut clients = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(key) {
        return Ok(c.clone());
    }
    let built = build_client(key, agent_tls)?;
    if clients.len() >= MAX_CACHED_CLIENTS {
        clients.clear();
    }
    clients.insert(key.clone(), built.clone());
    Ok(built)
}

fn build_client(key: &ClientKey, agent_tls: Option<&AgentTls>) -> Result<reqwest::Client, String> {
    let redirects = if key.disable_redirects {
        // Go's `http.ErrUseLastResponse`: the 3xx itself is the result.
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::limited(10)
    };
    let verify_name = if key.tls_server_name.is_empty() {
        None
    } else {
        Some(tls::server_name(&key.tls_server_name)?)
    };
    let tls = tls::client_config(
        key.tls_skip_verify,
        verify_name,
        &[tls::ALPN_HTTP1],
        agent_tls,
    )?;
    reqwest::Client::builder()
        // Consul disables keep-alive so a check never fails on a connection the
        // server closed between two runs. (Reusing connections for 4 s was tried:
        // 0.113 -> 0.096 cores with 1,000 1 s checks, not enough to justify the
        // deviation; BENCHMARKS.md, `bench checks`.)
        .pool_max_idle_per_host(0)
        .redirect(redirects)
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// The check's headers plus Consul's defaults. A `Host` header sets the request's
/// host (Go's `req.Host`), so only its first value is used.
fn headers(header: &std::collections::BTreeMap<String, Vec<String>>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, values) in header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            if name == HOST {
                map.insert(HOST, value);
                break;
            }
            map.append(name.clone(), value);
        }
    }
    if !map.contains_key(USER_AGENT) {
        map.insert(USER_AGENT, HeaderValue::from_static(CHECK_USER_AGENT));
    }
    if !map.contains_key(ACCEPT) {
        map.insert(ACCEPT, HeaderValue::from_static(CHECK_ACCEPT));
    }
    Ok(map)
}

/// `200 OK`: the code and the server's own reason phrase (Go's `resp.Status`),
/// falling back to the canonical one.
fn status_text(response: &reqwest::Response) -> String {
    let code = response.status();
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| code.canonical_reason().map(str::to_owned))
        .unwrap_or_default();
    format!("{} {reason}", code.as_u16()).trim_end().to_owned()
}

/// The body's tail. A read error (or the timeout) mid-body ends the read and keeps
/// what arrived: Consul logs it and still judges by the status code.
async fn read_tail(mut response: reqwest::Response, max: usize) -> String {
    let mut buf = TailBuffer::new(max);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.write(&chunk),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "check error while reading body");
                break;
            }
        }
    }
    buf.text()
}

/// Go's `url.Error` prefix: the method with only its first letter upper-case.
fn go_op(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// `Get "<url>": <cause>`, Go's `url.Error` shape, without reqwest's own
/// "error sending request for url (...)" wrapper.
fn request_error(method: &str, url: &str, err: &reqwest::Error) -> String {
    let cause = if err.is_timeout() {
        TIMEOUT_TEXT.to_owned()
    } else {
        match std::error::Error::source(err) {
            Some(source) => error_chain(source),
            None => err.to_string(),
        }
    };
    format!("{} \"{url}\": {cause}", go_op(method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn go_op_capitalises_like_url_error() {
        assert_eq!(go_op("GET"), "Get");
        assert_eq!(go_op("POST"), "Post");
        assert_eq!(go_op("purge"), "Purge");
    }

    #[test]
    fn default_headers_unless_set() {
        let map = headers(&BTreeMap::new()).unwrap();
        assert_eq!(map[USER_AGENT], CHECK_USER_AGENT);
        assert_eq!(map[ACCEPT], CHECK_ACCEPT);

        let mut h = BTreeMap::new();
        h.insert("user-agent".to_owned(), vec!["mine".to_owned()]);
        h.insert("X-Multi".to_owned(), vec!["a".to_owned(), "b".to_owned()]);
        h.insert("Host".to_owned(), vec!["one".to_owned(), "two".to_owned()]);
        let map = headers(&h).unwrap();
        assert_eq!(map[USER_AGENT], "mine");
        assert_eq!(
            map.get_all("x-multi").iter().collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(map.get_all(HOST).iter().count(), 1);
        assert_eq!(map[HOST], "one");
    }

    #[test]
    fn bad_header_names_are_reported() {
        let mut h = BTreeMap::new();
        h.insert("bad name".to_owned(), vec!["x".to_owned()]);
        assert_eq!(
            headers(&h).unwrap_err(),
            "net/http: invalid header field name \"bad name\""
        );
    }

    #[test]
    fn a_proxy_in_the_environment_is_noticed() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert!(!proxy_in("http", env(&[])));
        assert!(!proxy_in(
            "http",
            env(&[("HTTPS_PROXY", "http://p:3128"), ("http_proxy", "")])
        ));
        assert!(proxy_in("http", env(&[("http_proxy", "http://p:3128")])));
        assert!(proxy_in("http", env(&[("ALL_PROXY", "socks5://p:1080")])));
        assert!(proxy_in("https", env(&[("HTTPS_PROXY", "http://p:3128")])));
        assert!(proxy_in("https", env(&[("all_proxy", "socks5://p:1080")])));
        assert!(!proxy_in("https", env(&[("HTTP_PROXY", "http://p:3128")])));
    }

    #[tokio::test]
    async fn invalid_requests_stay_on_reqwest_which_reports_them() {
        let mut spec = HttpSpec {
            url: "http://127.0.0.1:1/".to_owned(),
            method: "BAD METHOD".to_owned(),
            header: BTreeMap::new(),
            body: String::new(),
            disable_redirects: false,
            tls_server_name: String::new(),
            tls_skip_verify: false,
        };
        let check = Check::new(spec.clone(), None);
        assert!(check.plain.is_none());
        let p = check.run(Duration::from_secs(1), 4096).await;
        assert_eq!(
            p,
            Probe::critical("net/http: invalid method \"BAD METHOD\"")
        );
        spec.method = String::new();
        spec.header
            .insert("bad name".to_owned(), vec![String::new()]);
        assert!(Check::new(spec, None).plain.is_none());
    }

    #[tokio::test]
    async fn bad_urls_are_critical_without_io() {
        let spec = |url: &str| HttpSpec {
            url: url.to_owned(),
            tls_skip_verify: true,
            ..HttpSpec::default()
        };
        let p = probe(&spec("ftp://x/"), None, Duration::from_secs(1), 4096).await;
        assert_eq!(
            p,
            Probe::critical("Get \"ftp://x/\": unsupported protocol scheme \"ftp\"")
        );
        let p = probe(&spec("not a url"), None, Duration::from_secs(1), 4096).await;
        assert!(
            p.output.starts_with("parse \"not a url\": "),
            "{}",
            p.output
        );
        let mut bad_name = spec("https://127.0.0.1:1/");
        bad_name.tls_skip_verify = false;
        bad_name.tls_server_name = "not a name".to_owned();
        let p = probe(&bad_name, None, Duration::from_secs(1), 4096).await;
        assert!(
            p.output.starts_with("invalid TLS server name"),
            "{}",
            p.output
        );
    }
}
