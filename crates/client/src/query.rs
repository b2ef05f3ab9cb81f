//! Per-request read options ([`QueryOptions`]) and the metadata every read returns
//! ([`QueryMeta`], parsed from the `X-Consul-*` response headers).

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::Error;

/// Options for a read (`GET`) request. `Default` is a plain, non-blocking, default-consistency read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Datacenter to query (`?dc=`); overrides [`Config::datacenter`](crate::Config::datacenter).
    pub datacenter: Option<String>,
    /// Blocking query: return once the result's index is greater than this (`?index=`). 0 = don't block.
    pub index: u64,
    /// Upper bound for a blocking query (`?wait=`), sent in milliseconds like the Go client.
    pub wait: Option<Duration>,
    /// Let any server answer from its local state (`?stale`).
    pub stale: bool,
    /// Make the leader confirm leadership before answering (`?consistent`).
    pub consistent: bool,
    /// Server-side filter expression (`?filter=`, go-bexpr syntax).
    pub filter: Option<String>,
    /// Sort by round-trip time from this node (`?near=`; `_agent` = the queried agent).
    pub near: Option<String>,
    /// Node metadata filters (`?node-meta=key:value`, repeatable).
    pub node_meta: Vec<(String, String)>,
    /// ACL token for this request only; overrides the client's token.
    pub token: Option<String>,
}

impl QueryOptions {
    /// The query-string pairs these options add. Presence-only flags get an empty value
    /// (`stale=`), which Consul treats the same as a bare `?stale`.
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        // `dc` and the token are added by `Client::request`, which also applies the
        // client-wide defaults for them.
        let mut params = Vec::new();
        if self.index > 0 {
            params.push(("index", self.index.to_string()));
        }
        if let Some(wait) = self.wait {
            params.push(("wait", format!("{}ms", wait.as_millis())));
        }
        if self.stale {
            params.push(("stale", String::new()));
        }
        if self.consistent {
            params.push(("consistent", String::new()));
        }
        if let Some(filter) = &self.filter {
            params.push(("filter", filter.clone()));
        }
        if let Some(near) = &self.near {
            params.push(("near", near.clone()));
        }
        for (key, value) in &self.node_meta {
            params.push(("node-meta", format!("{key}:{value}")));
        }
        params
    }
}

/// What the agent says about a read result, from the response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`: pass it back as [`QueryOptions::index`] to block for changes. 0 if absent.
    pub index: u64,
    /// `X-Consul-KnownLeader`: whether the answering server knew of a leader.
    pub known_leader: bool,
    /// `X-Consul-LastContact`: time since the answering server last heard from the leader.
    pub last_contact: Duration,
    /// `X-Consul-Effective-Consistency`: `leader`, `consistent` or `stale`, if sent.
    pub effective_consistency: Option<String>,
    /// `X-Consul-Default-ACL-Policy`: `allow` or `deny`, if sent.
    pub default_acl_policy: Option<String>,
    /// `X-Consul-Results-Filtered-By-ACLs`: some results were hidden by ACLs.
    pub results_filtered_by_acls: bool,
    /// `X-Consul-ContentHash`, sent by hash-blocking agent endpoints.
    pub content_hash: Option<String>,
}

impl QueryMeta {
    /// Parses the headers. Missing headers leave defaults (agent-local endpoints send
    /// none); present but malformed numeric/boolean headers are an error, because a
    /// garbled index would make a blocking-query loop spin or stall silently.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Error> {
        let text = |name: &'static str| -> Result<Option<String>, Error> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => {
                    v.to_str()
                        .map(|s| Some(s.trim().to_owned()))
                        .map_err(|_| Error::Header {
                            name,
                            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        })
                }
            }
        };
        let number = |name: &'static str| -> Result<u64, Error> {
            match text(name)? {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| Error::Header { name, value: v }),
            }
        };
        let boolean = |name: &'static str| -> Result<bool, Error> {
            match text(name)?.as_deref() {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(Error::Header {
                    name,
                    value: other.to_owned(),
                }),
            }
        };
        Ok(QueryMeta {
            index: number("X-Consul-Index")?,
            known_leader: boolean("X-Consul-KnownLeader")?,
            last_contact: Duration::from_millis(number("X-Consul-LastContact")?),
            effective_consistency: text("X-Consul-Effective-Consistency")?,
            default_acl_policy: text("X-Consul-Default-ACL-Policy")?,
            results_filtered_by_acls: boolean("X-Consul-Results-Filtered-By-ACLs")?,
            content_hash: text("X-Consul-ContentHash")?,
        })
    }
}
