//! The shared request extractors: query flags by presence, blocking and consistency
//! options, `dc`, the ACL token and `?filter=`. Every handler parses these the same way.

use crate::error::ApiError;
use crate::filter::Filter;
use crate::routes::{AppState, HttpConfig};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use percent_encoding::percent_decode_str;
use std::time::Duration;
use tribune_types::model::ops::{Consistency, QueryOptions};
use tribune_types::parse_go_duration;

/// How long blocking queries wait: `default_query_time` when `?index` comes
/// without `?wait` (or with a zero one), and at most `max_query_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTimes {
    /// `default_query_time` (Consul: 300 s).
    pub default: Duration,
    /// `max_query_time` (Consul: 600 s).
    pub max: Duration,
}

impl Default for QueryTimes {
    fn default() -> Self {
        QueryTimes {
            default: Duration::from_secs(300),
            max: Duration::from_secs(600),
        }
    }
}

impl QueryTimes {
    /// The wait of a blocking query asking for `wait` (zero: none given),
    /// plus up to a sixteenth of random jitter, so that many watchers of one
    /// index do not all return at the same instant (Consul's `jitterFraction`).
    pub fn wait(&self, wait: Duration) -> Duration {
        let wait = self.base(wait);
        let jitter_max = u64::try_from(wait.as_nanos() / 16).unwrap_or(u64::MAX);
        if jitter_max == 0 {
            return wait;
        }
        wait + Duration::from_nanos(rand::random::<u64>() % jitter_max)
    }

    /// The wait before jitter: the default for none, and never past the
    /// maximum, a default set above it included (Consul's `rpcQueryTimeout`).
    fn base(&self, wait: Duration) -> Duration {
        let wait = if wait.is_zero() { self.default } else { wait };
        wait.min(self.max)
    }
}

/// The decoded query string. Flags count by presence, whatever their value
/// (`?recurse`, `?recurse=`, `?keys=True` are all "set"), as in Consul.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    raw: String,
    /// The request's ACL token (`X-Consul-Token`, `Authorization: Bearer`, `?token=`).
    /// Carried to the one authorization point; ignored while ACLs are disabled.
    pub token: Option<String>,
    /// Answers are indented whether or not `?pretty` was given (`-dev`).
    pretty_always: bool,
}

/// The request header carrying the ACL token (a constant: looking a header up by
/// `&str` parses the name on every request).
const X_CONSUL_TOKEN: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-consul-token");

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Params {
            pairs,
            raw: query.unwrap_or("").to_owned(),
            token: None,
            pretty_always: false,
        }
    }

    /// The raw query string (Consul quotes it in some error messages).
    pub fn raw(&self) -> String {
        self.raw.clone()
    }

    /// Whether the parameter appears at all.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A u64 parameter; `what` names it in the 400 error.
    pub fn u64(&self, name: &str, what: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            // Go's `Query().Get` gives "" for `?index=`, which Consul skips.
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("Invalid {what}: {v:?}"))),
        }
    }

    /// `?node-meta=key:value` pairs (repeatable).
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.to_owned(), String::new()),
            })
            .collect()
    }

    /// A boolean parameter as Consul reads it: present without a value = true,
    /// otherwise Go's `strconv.ParseBool`; anything else is a 400.
    pub fn go_bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("") => Ok(true),
            Some(v) => tribune_types::goflag::parse_go_bool(v)
                .ok_or_else(|| ApiError::bad(format!("Invalid value for ?{name}: {v:?}"))),
        }
    }

    /// Whether the answer is indented: `?pretty` was given, or the agent
    /// runs in `-dev` mode.
    pub fn pretty(&self) -> bool {
        self.pretty_always || self.has("pretty")
    }

    /// The parsed `?filter=` expression, if any.
    pub fn filter(&self) -> Result<Option<Filter>, ApiError> {
        match self.get("filter") {
            None | Some("") => Ok(None),
            Some(expr) => Filter::parse(expr).map(Some).map_err(|e| {
                ApiError::bad(format!(
                    "Failed to create boolean expression evaluator: {e}"
                ))
            }),
        }
    }

    /// Blocking and consistency options; `?wait` as [`QueryTimes::wait`] makes it.
    pub fn query_options(&self, times: QueryTimes) -> Result<QueryOptions, ApiError> {
        // Consul's `parseWait` answers these two without the value.
        let min_index = match self.get("index") {
            None | Some("") => 0,
            Some(v) => v.parse().map_err(|_| ApiError::bad("Invalid index"))?,
        };
        let stale = self.has("stale");
        let consistent = self.has("consistent");
        if stale && consistent {
            return Err(ApiError::bad(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        let asked = match self.get("wait") {
            None | Some("") => Duration::ZERO,
            Some(w) => parse_go_duration(w).map_err(|_| ApiError::bad("Invalid wait time"))?,
        };
        // The jitter only matters to a query that blocks.
        let wait = if min_index > 0 {
            times.wait(asked)
        } else {
            times.base(asked)
        };
        Ok(QueryOptions {
            min_index,
            max_wait: wait,
            consistency: if stale {
                Consistency::Stale
            } else if consistent {
                Consistency::Consistent
            } else {
                Consistency::Default
            },
        })
    }
}

impl FromRequestParts<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Params::of_request(&parts.uri, &parts.headers, &st.config))
    }
}

impl Params {
    /// The query parameters and ACL token of a request with this URI and
    /// these headers, to an agent with this configuration (`-dev` indents
    /// every answer).
    pub(crate) fn of_request(
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        config: &HttpConfig,
    ) -> Params {
        let mut p = Params::parse(uri.query());
        p.pretty_always = config.pretty_always;
        // Consul's `parseTokenInternal` order: `?token=`, then
        // `X-Consul-Token`, then `Authorization` with the `Bearer` scheme
        // in any case; an empty one counts as absent.
        let query = p.get("token").filter(|t| !t.is_empty()).map(str::to_owned);
        let header_token = headers
            .get(X_CONSUL_TOKEN)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, value)| value.trim().to_owned())
            .filter(|t| !t.is_empty());
        p.token = query.or(header_token).or(bearer);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_by_presence_and_decoding() {
        let p = Params::parse(Some(
            "recurse&keys=True&stale=&tag=a&tag=b%2Fc&filter=Service+%3D%3D+%22x%22",
        ));
        assert!(p.has("recurse") && p.has("keys") && p.has("stale"));
        assert_eq!(p.all("tag"), ["a", "b/c"]);
        assert_eq!(p.get("filter"), Some("Service == \"x\""));
    }

    #[test]
    fn query_options() {
        let t = QueryTimes::default();
        let o = Params::parse(Some("index=5&wait=20ms"))
            .query_options(t)
            .unwrap();
        assert_eq!(o.min_index, 5);
        assert!(o.max_wait >= Duration::from_millis(20) && o.max_wait <= Duration::from_millis(22));
        let o = Params::parse(Some("index=5&wait=1h"))
            .query_options(t)
            .unwrap();
        assert!(o.max_wait >= t.max && o.max_wait <= t.max + t.max / 16);
        assert_eq!(
            Params::parse(Some("stale"))
                .query_options(t)
                .unwrap()
                .consistency,
            Consistency::Stale
        );
        assert!(Params::parse(Some("stale&consistent"))
            .query_options(t)
            .is_err());
        assert!(Params::parse(Some("index=x")).query_options(t).is_err());
        assert!(Params::parse(Some("wait=forever"))
            .query_options(t)
            .is_err());
    }

    /// The token comes from `?token=`, then `X-Consul-Token`, then a bearer
    /// `Authorization`, as Consul reads it.
    #[test]
    fn token_sources_in_consuls_order() {
        use axum::http::{HeaderMap, HeaderValue, Uri};
        let token = |uri: &str, headers: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in headers {
                h.insert(*n, HeaderValue::from_static(v));
            }
            Params::of_request(&uri.parse::<Uri>().unwrap(), &h, &HttpConfig::default()).token
        };
        let both = [
            ("x-consul-token", "header"),
            ("authorization", "Bearer  bear "),
        ];
        assert_eq!(
            token("/v1/kv/a?token=query", &both).as_deref(),
            Some("query")
        );
        assert_eq!(token("/v1/kv/a?token=", &both).as_deref(), Some("header"));
        assert_eq!(token("/v1/kv/a", &both[1..]).as_deref(), Some("bear"));
        assert_eq!(
            token("/v1/kv/a", &[("authorization", "bearer x")]).as_deref(),
            Some("x")
        );
        assert_eq!(token("/v1/kv/a", &[("authorization", "Basic x")]), None);
        assert_eq!(token("/v1/kv/a", &[]), None);
    }

    /// `default_query_time` and `max_query_time` as configured.
    #[test]
    fn configured_query_times() {
        let t = QueryTimes {
            default: Duration::from_secs(10),
            max: Duration::from_secs(20),
        };
        let within = |d: Duration, base: u64| {
            let base = Duration::from_secs(base);
            d >= base && d <= base + base / 16
        };
        let o = Params::parse(Some("index=5")).query_options(t).unwrap();
        assert!(within(o.max_wait, 10), "{:?}", o.max_wait);
        let o = Params::parse(Some("index=5&wait=0s"))
            .query_options(t)
            .unwrap();
        assert!(within(o.max_wait, 10), "{:?}", o.max_wait);
        let o = Params::parse(Some("index=5&wait=5m"))
            .query_options(t)
            .unwrap();
        assert!(within(o.max_wait, 20), "{:?}", o.max_wait);
        let o = Params::parse(Some("index=5&wait=15s"))
            .query_options(t)
            .unwrap();
        assert!(within(o.max_wait, 15), "{:?}", o.max_wait);
        // A default above the maximum is cut to it.
        let t = QueryTimes {
            default: Duration::from_secs(900),
            max: Duration::from_secs(600),
        };
        let o = Params::parse(Some("index=5")).query_options(t).unwrap();
        assert!(within(o.max_wait, 600), "{:?}", o.max_wait);
    }
}
