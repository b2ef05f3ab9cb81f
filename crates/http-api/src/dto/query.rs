//! Prepared query bodies (`/v1/query`): the definition as clients send it and as
//! Consul gives it back, and the execute and explain answers.
//!
//! Consul's structs carry no JSON tags, so every field is always written, and
//! lists and maps that were never set are `null`: [`PreparedQueryOut`] writes the
//! `Option`s of the model as they were stored.

use super::de_null_default;
use super::output::ServiceEntryOut;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_types::model::ops::QueryMeta;
use tribune_types::model::query::{
    PreparedQuery, QueryDns, QueryExecution, QueryFailover, QueryTarget, QueryTemplate,
    ServiceQuery,
};

/// A definition as sent to `POST /v1/query` or `PUT /v1/query/{id}` (keys in
/// canonical form, see `json_in`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct PreparedQueryIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "name", deserialize_with = "de_null_default")]
    pub name: String,
    #[serde(rename = "session", deserialize_with = "de_null_default")]
    pub session: String,
    #[serde(rename = "token", deserialize_with = "de_null_default")]
    pub token: String,
    #[serde(rename = "template", deserialize_with = "de_null_default")]
    pub template: TemplateIn,
    #[serde(rename = "service", deserialize_with = "de_null_default")]
    pub service: ServiceQueryIn,
    #[serde(rename = "dns", deserialize_with = "de_null_default")]
    pub dns: DnsIn,
}

/// `Template`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct TemplateIn {
    #[serde(rename = "type", deserialize_with = "de_null_default")]
    pub kind: String,
    #[serde(rename = "regexp", deserialize_with = "de_null_default")]
    pub regexp: String,
    #[serde(rename = "removeemptytags", deserialize_with = "de_null_default")]
    pub remove_empty_tags: bool,
}

/// `Service`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ServiceQueryIn {
    #[serde(rename = "service", deserialize_with = "de_null_default")]
    pub service: String,
    #[serde(rename = "samenessgroup", deserialize_with = "de_null_default")]
    pub sameness_group: String,
    #[serde(rename = "failover", deserialize_with = "de_null_default")]
    pub failover: FailoverIn,
    #[serde(rename = "onlypassing", deserialize_with = "de_null_default")]
    pub only_passing: bool,
    #[serde(rename = "ignorecheckids")]
    pub ignore_check_ids: Option<Vec<String>>,
    #[serde(rename = "near", deserialize_with = "de_null_default")]
    pub near: String,
    #[serde(rename = "tags")]
    pub tags: Option<Vec<String>>,
    #[serde(rename = "nodemeta")]
    pub node_meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "servicemeta")]
    pub service_meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "connect", deserialize_with = "de_null_default")]
    pub connect: bool,
    /// `Peer` (`PeerName` in Consul 1.13–1.14 clients).
    #[serde(
        rename = "peer",
        alias = "peername",
        deserialize_with = "de_null_default"
    )]
    pub peer: String,
}

/// `Failover`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct FailoverIn {
    #[serde(rename = "nearestn", deserialize_with = "de_null_default")]
    pub nearest_n: i64,
    #[serde(rename = "datacenters")]
    pub datacenters: Option<Vec<String>>,
    #[serde(rename = "targets")]
    pub targets: Option<Vec<TargetIn>>,
}

/// One `Failover.Targets` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct TargetIn {
    #[serde(rename = "peer", deserialize_with = "de_null_default")]
    pub peer: String,
    #[serde(rename = "datacenter", deserialize_with = "de_null_default")]
    pub datacenter: String,
}

/// `DNS`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct DnsIn {
    #[serde(rename = "ttl", deserialize_with = "de_null_default")]
    pub ttl: String,
}

impl PreparedQueryIn {
    /// The model definition, under `id`.
    pub fn into_query(self, id: String) -> PreparedQuery {
        let s = self.service;
        PreparedQuery {
            id,
            name: self.name,
            session: self.session,
            token: self.token,
            template: QueryTemplate {
                kind: self.template.kind,
                regexp: self.template.regexp,
                remove_empty_tags: self.template.remove_empty_tags,
            },
            service: ServiceQuery {
                service: s.service,
                sameness_group: s.sameness_group,
                failover: QueryFailover {
                    nearest_n: s.failover.nearest_n,
                    datacenters: s.failover.datacenters,
                    targets: s.failover.targets.map(|ts| {
                        ts.into_iter()
                            .map(|t| QueryTarget {
                                peer: t.peer,
                                datacenter: t.datacenter,
                            })
                            .collect()
                    }),
                },
                only_passing: s.only_passing,
                ignore_check_ids: s.ignore_check_ids,
                near: s.near,
                tags: s.tags,
                node_meta: s.node_meta,
                service_meta: s.service_meta,
                connect: s.connect,
                peer: s.peer,
            },
            dns: QueryDns { ttl: self.dns.ttl },
            raft: Default::default(),
        }
    }
}

/// A stored definition as Consul writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct PreparedQueryOut<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub name: &'a str,
    pub session: &'a str,
    pub token: &'a str,
    pub template: TemplateOut<'a>,
    pub service: ServiceQueryOut<'a>,
    #[serde(rename = "DNS")]
    pub dns: DnsOut<'a>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `Template`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct TemplateOut<'a> {
    #[serde(rename = "Type")]
    pub kind: &'a str,
    pub regexp: &'a str,
    pub remove_empty_tags: bool,
}

/// `Service`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ServiceQueryOut<'a> {
    pub service: &'a str,
    pub sameness_group: &'a str,
    pub failover: FailoverOut<'a>,
    pub only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: &'a Option<Vec<String>>,
    pub near: &'a str,
    pub tags: &'a Option<Vec<String>>,
    pub node_meta: &'a Option<BTreeMap<String, String>>,
    pub service_meta: &'a Option<BTreeMap<String, String>>,
    pub connect: bool,
    pub peer: &'a str,
}

/// `Failover`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct FailoverOut<'a> {
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    pub datacenters: &'a Option<Vec<String>>,
    pub targets: Option<Vec<TargetOut<'a>>>,
}

/// One `Failover.Targets` entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct TargetOut<'a> {
    pub peer: &'a str,
    pub datacenter: &'a str,
}

/// `DNS`.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct DnsOut<'a> {
    #[serde(rename = "TTL")]
    pub ttl: &'a str,
}

impl<'a> PreparedQueryOut<'a> {
    /// `q` as Consul shows it. Consul hides a stored token (`<hidden>`) from
    /// callers without `acl:write`; with ACLs off, as here, everyone has it.
    pub fn new(q: &'a PreparedQuery) -> Self {
        let s = &q.service;
        PreparedQueryOut {
            id: &q.id,
            name: &q.name,
            session: &q.session,
            token: &q.token,
            template: TemplateOut {
                kind: &q.template.kind,
                regexp: &q.template.regexp,
                remove_empty_tags: q.template.remove_empty_tags,
            },
            service: ServiceQueryOut {
                service: &s.service,
                sameness_group: &s.sameness_group,
                failover: FailoverOut {
                    nearest_n: s.failover.nearest_n,
                    datacenters: &s.failover.datacenters,
                    targets: s.failover.targets.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| TargetOut {
                                peer: &t.peer,
                                datacenter: &t.datacenter,
                            })
                            .collect()
                    }),
                },
                only_passing: s.only_passing,
                ignore_check_ids: &s.ignore_check_ids,
                near: &s.near,
                tags: &s.tags,
                node_meta: &s.node_meta,
                service_meta: &s.service_meta,
                connect: s.connect,
                peer: &s.peer,
            },
            dns: DnsOut { ttl: &q.dns.ttl },
            create_index: q.raft.create_index,
            modify_index: q.raft.modify_index,
        }
    }
}

/// The `QueryMeta` fields Consul's execute and explain answers carry in their
/// body (its struct embeds them untagged).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct BodyMetaOut {
    pub index: u64,
    /// Nanoseconds, as Go writes a `time.Duration`.
    pub last_contact: u64,
    pub known_leader: bool,
    pub consistency_level: &'static str,
    pub not_modified: bool,
    pub backend: u8,
    #[serde(rename = "ResultsFilteredByACLs")]
    pub results_filtered_by_acls: bool,
}

impl BodyMetaOut {
    /// From the read's meta; execute and explain are not blocking queries, so
    /// their body's index is 0 (the header still says at least 1).
    pub fn new(meta: &QueryMeta) -> Self {
        BodyMetaOut {
            index: 0,
            last_contact: u64::try_from(
                meta.last_contact
                    .min(Duration::from_secs(1 << 30))
                    .as_nanos(),
            )
            .unwrap_or(u64::MAX),
            known_leader: meta.known_leader,
            consistency_level: meta.consistency.header_value(),
            not_modified: false,
            backend: 0,
            results_filtered_by_acls: false,
        }
    }
}

/// `GET /v1/query/{id-or-name}/execute`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ExecuteOut<'a> {
    pub service: &'a str,
    pub nodes: Vec<ServiceEntryOut>,
    #[serde(rename = "DNS")]
    pub dns: DnsOut<'a>,
    pub datacenter: &'a str,
    pub peer_name: &'a str,
    pub failovers: u32,
    #[serde(flatten)]
    pub meta: BodyMetaOut,
}

impl<'a> ExecuteOut<'a> {
    /// The answer for `run`, produced in `datacenter`.
    pub fn new(run: &'a QueryExecution, datacenter: &'a str, meta: &QueryMeta) -> Self {
        ExecuteOut {
            service: &run.service,
            nodes: run.nodes.iter().map(ServiceEntryOut::from).collect(),
            dns: DnsOut { ttl: &run.dns.ttl },
            datacenter,
            peer_name: "",
            failovers: run.failovers,
            meta: BodyMetaOut::new(meta),
        }
    }
}

/// `GET /v1/query/{id-or-name}/explain`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ExplainOut<'a> {
    pub query: PreparedQueryOut<'a>,
    #[serde(flatten)]
    pub meta: BodyMetaOut,
}
