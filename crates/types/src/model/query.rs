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
