//! Prepared queries (`/v1/query`, DNS `<name>.query.<domain>`): stored service
//! queries with health, tag and metadata filters, optionally templates that match
//! a family of names.
//!
//! The optional lists and maps are `Option` because Consul stores the client's JSON
//! as it came and gives it back: a `null` must come back `null` and an `[]` as
//! `[]` (the Go client's own test compares a read-back definition with
//! `reflect.DeepEqual`).

use crate::model::ops::HealthEntry;
use crate::model::RaftIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only template type Consul knows.
pub const TEMPLATE_NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// What Consul shows instead of a stored token to callers who may not see it.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// Consul's shape test for IDs (`uuid.ParseUUID` after a length check): 36
/// characters, hex with hyphens at 8, 13, 18 and 23. Case does not matter.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A stored prepared query.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PreparedQuery {
    /// UUID, chosen when the query is created.
    pub id: String,
    /// Name it is also found by (unique, case-insensitively); for a template, the
    /// prefix of the names it matches.
    pub name: String,
    /// Session the query lives and dies with (`""`: none).
    pub session: String,
    /// Token the query runs with (`""`: the caller's).
    pub token: String,
    /// Template settings (a template when `kind` is set).
    pub template: QueryTemplate,
    /// What to look up.
    pub service: ServiceQuery,
    /// DNS answer settings.
    pub dns: QueryDns,
    /// Indexes.
    pub raft: RaftIndex,
}

impl PreparedQuery {
    /// Whether this query is a template (matched by name prefix, rendered per lookup).
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// Consul's `parseQuery`: the rules a definition must meet on its own, checked
    /// in Consul's order. Those that need the state (names, session, template)
    /// are checked where the write is applied.
    pub fn check(&self) -> Result<(), InvalidQuery> {
        if self.name.is_empty() && !self.is_template() && self.session.is_empty() {
            return Err(InvalidQuery::NoSession);
        }
        if self.token == REDACTED_TOKEN {
            return Err(InvalidQuery::RedactedToken);
        }
        let svc = &self.service;
        if svc.service.is_empty() {
            return Err(InvalidQuery::NoService);
        }
        let f = &svc.failover;
        if f.nearest_n < 0 {
            return Err(InvalidQuery::NegativeNearestN(f.nearest_n));
        }
        let some = |v: Option<usize>| v.is_some_and(|n| n > 0);
        if (f.nearest_n != 0 || some(f.datacenters.as_ref().map(Vec::len)))
            && some(f.targets.as_ref().map(Vec::len))
        {
            return Err(InvalidQuery::TargetsWithNearest);
        }
        if !svc.sameness_group.is_empty() {
            return Err(InvalidQuery::SamenessGroup);
        }
        if let Some(meta) = &svc.node_meta {
            check_node_meta(meta)?;
        }
        check_ttl(&self.dns.ttl)
    }
}

/// A definition Consul's `parseQuery` refuses; the text is Consul's (behind
/// "Invalid prepared query: " where it is reported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuery {
    /// Neither a name, a template nor a session.
    #[error("Must be bound to a session")]
    NoSession,
    /// A definition read back (token hidden) and sent again.
    #[error("Bad Token '<hidden>', it looks like a query definition with a redacted token was submitted")]
    RedactedToken,
    /// `Service.Service` is empty.
    #[error("Must provide a Service name to query")]
    NoService,
    /// `Failover.NearestN` below 0.
    #[error("Bad NearestN '{0}', must be >= 0")]
    NegativeNearestN(i64),
    /// `Failover.Targets` next to `NearestN` or `Datacenters`.
    #[error("Targets cannot be populated with NearestN or Datacenters")]
    TargetsWithNearest,
    /// `Service.SamenessGroup` set.
    #[error("sameness-groups are an enterprise-only feature")]
    SamenessGroup,
    /// More than 64 `NodeMeta` pairs.
    #[error("Node metadata cannot contain more than 64 key/value pairs")]
    TooMuchNodeMeta,
    /// A `NodeMeta` pair Consul's `ValidateMetadata` refuses.
    #[error("Couldn't load metadata pair ('{key}', '{value}'): {problem}")]
    NodeMeta {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `DNS.TTL` is not a Go duration.
    #[error("Bad DNS TTL '{ttl}': {error}")]
    BadTtl {
        /// As given.
        ttl: String,
        /// Go's complaint.
        error: crate::DurationError,
    },
    /// `DNS.TTL` below 0 (Consul prints it in nanoseconds).
    #[error("DNS TTL '-{0}', must be >=0")]
    NegativeTtl(u128),
}

/// Consul's `ValidateNodeMetadata` with the `consul-` prefix allowed.
fn check_node_meta(meta: &BTreeMap<String, String>) -> Result<(), InvalidQuery> {
    if meta.len() > 64 {
        return Err(InvalidQuery::TooMuchNodeMeta);
    }
    for (k, v) in meta {
        let problem = if k.is_empty() {
            "Key cannot be blank"
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            "Key contains invalid characters"
        } else if k.len() > 128 {
            "Key is too long (limit: 128 characters)"
        } else if v.len() > 512 {
            "Value is too long (limit: 512 characters)"
        } else {
            continue;
        };
        return Err(InvalidQuery::NodeMeta {
            key: k.clone(),
            value: v.clone(),
            problem,
        });
    }
    Ok(())
}

/// `DNS.TTL` must be a non-negative Go duration (`time.ParseDuration`, which
/// takes no surrounding spaces).
fn check_ttl(ttl: &str) -> Result<(), InvalidQuery> {
    if ttl.is_empty() {
        return Ok(());
    }
    let bad = |error| InvalidQuery::BadTtl {
        ttl: ttl.to_owned(),
        error,
    };
    if ttl.trim() != ttl {
        return Err(bad(crate::DurationError::Invalid(ttl.to_owned())));
    }
    match ttl.strip_prefix('-') {
        Some(magnitude) => match crate::parse_go_duration(magnitude) {
            Ok(d) if d.is_zero() => Ok(()),
            Ok(d) => Err(InvalidQuery::NegativeTtl(d.as_nanos())),
            // Reported for the whole input, as Go does (our parser refuses a
            // negative input before looking at it, so ask about the rest).
            Err(e) => Err(bad(match e {
                crate::DurationError::UnknownUnit { unit, .. } => {
                    crate::DurationError::UnknownUnit {
                        unit,
                        input: ttl.to_owned(),
                    }
                }
                crate::DurationError::MissingUnit(_) => {
                    crate::DurationError::MissingUnit(ttl.to_owned())
                }
                _ => crate::DurationError::Invalid(ttl.to_owned()),
            })),
        },
        None => crate::parse_go_duration(ttl).map(drop).map_err(bad),
    }
}

/// `Template`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryTemplate {
    /// `Type`: `""` or `name_prefix_match`.
    pub kind: String,
    /// `Regexp` matched against the looked-up name; its groups are `${match(N)}`.
    pub regexp: String,
    /// `RemoveEmptyTags`: drop tags that rendered empty.
    pub remove_empty_tags: bool,
}

/// `Service`: the lookup and its filters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceQuery {
    /// `Service`: the service name (required).
    pub service: String,
    /// `SamenessGroup` (Enterprise only; refused when set).
    pub sameness_group: String,
    /// `Failover`.
    pub failover: QueryFailover,
    /// `OnlyPassing`: warning instances are dropped too, not only critical ones.
    pub only_passing: bool,
    /// `IgnoreCheckIDs`: checks that do not count for health.
    pub ignore_check_ids: Option<Vec<String>>,
    /// `Near`: sort by round-trip time from this node (`_agent`, `_ip`, a name).
    pub near: String,
    /// `Tags`: required tags, or excluded ones when prefixed with `!`.
    pub tags: Option<Vec<String>>,
    /// `NodeMeta`: required node metadata.
    pub node_meta: Option<BTreeMap<String, String>>,
    /// `ServiceMeta`: required service metadata.
    pub service_meta: Option<BTreeMap<String, String>>,
    /// `Connect`: the service's Connect-capable instances instead.
    pub connect: bool,
    /// `Peer`: a cluster peer to query (no peering here: such queries find nothing).
    pub peer: String,
}

/// `Failover`: other datacenters to try when the local one has no healthy instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryFailover {
    /// `NearestN`: how many of the nearest other datacenters to try.
    pub nearest_n: i64,
    /// `Datacenters`: datacenters to try, in order.
    pub datacenters: Option<Vec<String>>,
    /// `Targets`: peers or datacenters to try, in order.
    pub targets: Option<Vec<QueryTarget>>,
}

/// One `Failover.Targets` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryTarget {
    /// `Peer`.
    pub peer: String,
    /// `Datacenter`.
    pub datacenter: String,
}

/// `DNS`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryDns {
    /// `TTL` as the client gave it (a Go duration; `""`: the agent's service TTL).
    pub ttl: String,
}

/// Where a query is run from: what `_agent`, `_ip` and `${agent.segment}` mean.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QuerySource {
    /// The agent that received the request (`_agent`).
    pub agent_node: String,
    /// Its network segment (always `""` outside Consul Enterprise).
    pub agent_segment: String,
    /// The node to sort from (`?near=`, `_agent` already replaced), overriding the
    /// query's own `Near`.
    pub near: String,
    /// The client's address (`_ip` sorts from the node with that address).
    pub ip: String,
    /// Whether network coordinates may be used to sort (`disable_coordinates`
    /// off on the asking agent).
    pub use_coordinates: bool,
}

/// A query found and run ([`crate::model::ops::ReadRequest::QueryExecute`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryExecution {
    /// The service looked up (rendered, for a template).
    pub service: String,
    /// The instances left after filtering, shuffled or sorted by distance, limited.
    pub nodes: Vec<HealthEntry>,
    /// The query's DNS settings.
    pub dns: QueryDns,
    /// Datacenters tried after the local one (none exist to try here).
    pub failovers: u32,
}

/// How looking up a query by ID or name ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryOutcome<T> {
    /// Found: the result.
    Found(T),
    /// No query by that ID or name, and no template matching it.
    NotFound,
    /// The lookup itself is refused (Consul's error text).
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, service: &str) -> PreparedQuery {
        let mut q = PreparedQuery {
            name: name.into(),
            ..PreparedQuery::default()
        };
        q.service.service = service.into();
        q
    }

    fn text(q: &PreparedQuery) -> Result<(), String> {
        q.check().map_err(|e| e.to_string())
    }

    #[test]
    fn definitions_are_checked_in_consuls_order_with_its_words() {
        assert_eq!(
            text(&query("", "")),
            Err("Must be bound to a session".into())
        );
        let mut q = query("a", "");
        q.token = REDACTED_TOKEN.into();
        assert!(text(&q).is_err_and(|e| e.starts_with("Bad Token '<hidden>'")));
        q.token.clear();
        assert_eq!(text(&q), Err("Must provide a Service name to query".into()));
        let mut q = query("a", "redis");
        assert_eq!(text(&q), Ok(()));
        q.service.failover.nearest_n = -1;
        assert_eq!(text(&q), Err("Bad NearestN '-1', must be >= 0".into()));
        q.service.failover.nearest_n = 2;
        q.service.failover.targets = Some(vec![QueryTarget::default()]);
        assert_eq!(
            text(&q),
            Err("Targets cannot be populated with NearestN or Datacenters".into())
        );
        q.service.failover.nearest_n = 0;
        q.service.failover.datacenters = Some(vec![]);
        assert_eq!(text(&q), Ok(()));
        q.service.node_meta = Some([("bad key".to_owned(), "v".to_owned())].into());
        assert_eq!(
            text(&q),
            Err(
                "Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters"
                    .into()
            )
        );
        q.service.node_meta = Some([("consul-x".to_owned(), "v".to_owned())].into());
        assert_eq!(text(&q), Ok(()));
        for (ttl, want) in [
            (
                "two fortnights",
                "Bad DNS TTL 'two fortnights': time: invalid duration \"two fortnights\"",
            ),
            (
                "5x",
                "Bad DNS TTL '5x': time: unknown unit \"x\" in duration \"5x\"",
            ),
            (
                "-5x",
                "Bad DNS TTL '-5x': time: unknown unit \"x\" in duration \"-5x\"",
            ),
            ("5", "Bad DNS TTL '5': time: missing unit in duration \"5\""),
            (
                " 10s",
                "Bad DNS TTL ' 10s': time: invalid duration \" 10s\"",
            ),
            ("-3s", "DNS TTL '-3000000000', must be >=0"),
        ] {
            q.dns.ttl = ttl.into();
            assert_eq!(text(&q), Err(want.into()), "{ttl:?}");
        }
        for ttl in ["10s", "-0s", "1h2m"] {
            q.dns.ttl = ttl.into();
            assert_eq!(text(&q), Ok(()), "{ttl:?}");
        }
    }
}
