//! Response bodies in Consul's JSON shapes.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tribune_types::model::ops::{TxnError, TxnResult};
use tribune_types::model::{Check, KvEntry, Node, Service, ServiceAddress, Session, Weights};

fn opaque(json: &Option<String>) -> Option<Value> {
    json.as_deref().and_then(|s| serde_json::from_str(s).ok())
}

/// Consul's `KVPair`, serialised straight from the stored entry: every KV read
/// and transaction answers with these, and building an owned copy first cost a
/// key and a base64 string per entry. Fields in Consul's order; `Value` is `null`
/// when empty (Consul's quirk: empty values read back as null) and `Session` is
/// left out when no session holds the key.
#[derive(Debug)]
pub struct KvPair<'a>(pub &'a KvEntry);

impl Serialize for KvPair<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let e = self.0;
        let fields = if e.session.is_some() { 7 } else { 6 };
        let mut m = s.serialize_struct("KVPair", fields)?;
        m.serialize_field("LockIndex", &e.lock_index)?;
        m.serialize_field("Key", &e.key)?;
        m.serialize_field("Flags", &e.flags)?;
        m.serialize_field("Value", &(!e.value.is_empty()).then_some(Base64(&e.value)))?;
        if let Some(session) = &e.session {
            m.serialize_field("Session", &AsString(session))?;
        }
        m.serialize_field("CreateIndex", &e.raft.create_index)?;
        m.serialize_field("ModifyIndex", &e.raft.modify_index)?;
        m.end()
    }
}

/// `[KVPair, ...]` as compact JSON, written by hand: every KV read answers with
/// these, and serde_json scans a string for characters to escape as it writes
/// it, which a base64 value never has (2% of a `GET /v1/kv`'s CPU, the largest
/// user-space symbol of that path). Byte for byte what serialising
/// [`KvPair`]s gives; a test holds it so.
pub fn kv_pairs_json(entries: &[KvEntry]) -> Vec<u8> {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let values: usize = entries.iter().map(|e| e.value.len() * 4 / 3 + 4).sum();
    let mut out = Vec::with_capacity(2 + entries.len() * 160 + values);
    let mut num = itoa::Buffer::new();
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"LockIndex\":");
        out.extend_from_slice(num.format(e.lock_index).as_bytes());
        out.extend_from_slice(b",\"Key\":");
        // Keys are user text: escaped as serde_json escapes them.
        let _ = serde_json::to_writer(&mut out, &e.key);
        out.extend_from_slice(b",\"Flags\":");
        out.extend_from_slice(num.format(e.flags).as_bytes());
        if e.value.is_empty() {
            out.extend_from_slice(b",\"Value\":null");
        } else {
            out.extend_from_slice(b",\"Value\":\"");
            let start = out.len();
            out.resize(
                start + base64::encoded_len(e.value.len(), true).unwrap_or(0),
                0,
            );
            let written = b64.encode_slice(&e.value, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
        }
        if let Some(session) = &e.session {
            // A UUID: nothing to escape.
            out.extend_from_slice(b",\"Session\":\"");
            out.extend_from_slice(session.to_string().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"CreateIndex\":");
        out.extend_from_slice(num.format(e.raft.create_index).as_bytes());
        out.extend_from_slice(b",\"ModifyIndex\":");
        out.extend_from_slice(num.format(e.raft.modify_index).as_bytes());
        out.push(b'}');
    }
    out.push(b']');
    out
}

/// Bytes as a standard base64 JSON string, encoded while being written.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::display::Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

/// A value as the JSON string of its `Display`, without an intermediate `String`.
struct AsString<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for AsString<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// A catalog `Node`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeOut {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node.
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// TaggedAddresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Meta.
    pub meta: BTreeMap<String, String>,
    /// CreateIndex.
    pub create_index: u64,
    /// ModifyIndex.
    pub modify_index: u64,
}

impl From<&Node> for NodeOut {
    fn from(n: &Node) -> Self {
        NodeOut {
            id: n.id.clone(),
            node: n.node.to_string(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.raft.create_index,
            modify_index: n.raft.modify_index,
        }
    }
}

/// `{Address, Port}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddrOut {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

fn tagged(m: &BTreeMap<String, ServiceAddress>) -> Option<BTreeMap<String, AddrOut>> {
    (!m.is_empty()).then(|| {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    AddrOut {
                        address: v.address.clone(),
                        port: v.port,
                    },
                )
            })
            .collect()
    })
}

/// `{Passing, Warning}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsOut {
    /// Passing.
    pub passing: i32,
    /// Warning.
    pub warning: i32,
}

impl From<Weights> for WeightsOut {
    fn from(w: Weights) -> Self {
        WeightsOut {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// `AgentService` (agent endpoints, `Service` in health entries and catalog node).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceOut {
    /// Kind, omitted for typical services.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Meta.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Address.
    pub address: String,
    /// SocketPath.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// TaggedAddresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tagged_addresses: Option<BTreeMap<String, AddrOut>>,
    /// Weights.
    pub weights: WeightsOut,
    /// EnableTagOverride.
    pub enable_tag_override: bool,
    /// Proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    /// Connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Value>,
    /// Locality.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Value>,
    /// Datacenter (agent endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// ContentHash (agent endpoints, hash-based blocking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// CreateIndex (catalog views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_index: Option<u64>,
    /// ModifyIndex (catalog views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modify_index: Option<u64>,
}

impl AgentServiceOut {
    /// The catalog view of a service (with indexes).
    pub fn catalog(s: &Service) -> Self {
        let mut out = Self::agent(s);
        out.create_index = Some(s.raft.create_index);
        out.modify_index = Some(s.raft.modify_index);
        out
    }

    /// The agent view of a service (no indexes).
    pub fn agent(s: &Service) -> Self {
        AgentServiceOut {
            kind: s.kind.clone(),
            id: s.id.to_string(),
            service: s.service.clone(),
            tags: s.tags.clone(),
            meta: s.meta.clone(),
            port: s.port,
            address: s.address.clone(),
            socket_path: s.socket_path.clone(),
            tagged_addresses: tagged(&s.tagged_addresses),
            weights: s.weights.into(),
            enable_tag_override: s.enable_tag_override,
            // Respelled on the way out too: rows stored before input was
            // respelled keep the client's spelling.
            proxy: opaque(&s.proxy_json).map(crate::json_in::spell_proxy),
            connect: opaque(&s.connect_json),
            locality: opaque(&s.locality_json),
            datacenter: None,
            content_hash: None,
            create_index: None,
            modify_index: None,
        }
    }
}

/// `CatalogService` (`/v1/catalog/service/{name}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceOut {
    /// Node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node meta.
    pub node_meta: BTreeMap<String, String>,
    /// ServiceKind.
    pub service_kind: String,
    /// ServiceID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// ServiceName.
    pub service_name: String,
    /// ServiceTags.
    pub service_tags: Vec<String>,
    /// ServiceAddress.
    pub service_address: String,
    /// ServiceTaggedAddresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tagged_addresses: Option<BTreeMap<String, AddrOut>>,
    /// ServiceWeights.
    pub service_weights: WeightsOut,
    /// ServiceMeta.
    pub service_meta: BTreeMap<String, String>,
    /// ServicePort.
    pub service_port: u16,
    /// ServiceSocketPath.
    pub service_socket_path: String,
    /// ServiceEnableTagOverride.
    pub service_enable_tag_override: bool,
    /// ServiceProxy.
    pub service_proxy: Value,
    /// ServiceConnect.
    pub service_connect: Value,
    /// ServiceLocality.
    pub service_locality: Option<Value>,
    /// CreateIndex.
    pub create_index: u64,
    /// ModifyIndex.
    pub modify_index: u64,
}

impl CatalogServiceOut {
    /// Builds the row from a node and one of its services.
    pub fn new(n: &Node, s: &Service) -> Self {
        CatalogServiceOut {
            id: n.id.clone(),
            node: n.node.to_string(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            node_meta: n.meta.clone(),
            service_kind: s.kind.clone(),
            service_id: s.id.to_string(),
            service_name: s.service.clone(),
            service_tags: s.tags.clone(),
            service_address: s.address.clone(),
            service_tagged_addresses: tagged(&s.tagged_addresses),
            service_weights: s.weights.into(),
            service_meta: s.meta.clone(),
            service_port: s.port,
            service_socket_path: s.socket_path.clone(),
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: opaque(&s.proxy_json)
                .map(crate::json_in::spell_proxy)
                .unwrap_or_else(|| serde_json::json!({})),
            service_connect: opaque(&s.connect_json).unwrap_or_else(|| serde_json::json!({})),
            service_locality: opaque(&s.locality_json),
            create_index: s.raft.create_index,
            modify_index: s.raft.modify_index,
        }
    }
}

/// `HealthCheck`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheckOut {
    /// Node.
    pub node: String,
    /// CheckID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Notes.
    pub notes: String,
    /// Output.
    pub output: String,
    /// ServiceID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// ServiceName.
    pub service_name: String,
    /// ServiceTags.
    pub service_tags: Vec<String>,
    /// Type.
    pub r#type: String,
    /// Interval.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Timeout.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// ExposedPort.
    pub exposed_port: u16,
    /// Definition.
    pub definition: Value,
    /// CreateIndex.
    pub create_index: u64,
    /// ModifyIndex.
    pub modify_index: u64,
}

impl From<&Check> for HealthCheckOut {
    fn from(c: &Check) -> Self {
        HealthCheckOut {
            node: c.node.to_string(),
            check_id: c.check_id.to_string(),
            name: c.name.clone(),
            status: c.status.as_str().to_owned(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            r#type: c.check_type.clone(),
            interval: c.interval.clone(),
            timeout: c.timeout.clone(),
            exposed_port: 0,
            definition: opaque(&c.definition_json).unwrap_or_else(|| serde_json::json!({})),
            create_index: c.raft.create_index,
            modify_index: c.raft.modify_index,
        }
    }
}

/// `ServiceEntry` (`/v1/health/service/{name}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntryOut {
    /// Node.
    pub node: NodeOut,
    /// Service.
    pub service: AgentServiceOut,
    /// Checks.
    pub checks: Vec<HealthCheckOut>,
}

impl From<&tribune_types::model::ops::HealthEntry> for ServiceEntryOut {
    fn from(e: &tribune_types::model::ops::HealthEntry) -> Self {
        ServiceEntryOut {
            node: NodeOut::from(&e.node),
            service: AgentServiceOut::catalog(&e.service),
            checks: e.checks.iter().map(HealthCheckOut::from).collect(),
        }
    }
}

/// `{ID, Namespace}` of a session's service check.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheckOut {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace.
    pub namespace: String,
}

/// `Session` (`/v1/session/*`). The deprecated `Checks` (`omitempty` in Consul; the Go
/// client's tests expect it absent) and the Enterprise `Namespace` are never written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionOut {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Node.
    pub node: String,
    /// LockDelay in integer nanoseconds (Go's `time.Duration`).
    pub lock_delay: u64,
    /// `release` or `delete`.
    pub behavior: &'static str,
    /// TTL as the client gave it.
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// NodeChecks: always an array (`[]` when the session has none).
    pub node_checks: Vec<String>,
    /// ServiceChecks: `null` when empty.
    pub service_checks: Option<Vec<ServiceCheckOut>>,
    /// CreateIndex.
    pub create_index: u64,
    /// ModifyIndex.
    pub modify_index: u64,
}

impl From<&Session> for SessionOut {
    fn from(s: &Session) -> Self {
        SessionOut {
            id: s.id.to_string(),
            name: s.name.clone(),
            node: s.node.to_string(),
            lock_delay: u64::try_from(s.lock_delay.as_nanos()).unwrap_or(u64::MAX),
            behavior: s.behavior.as_str(),
            ttl: s.ttl.clone(),
            node_checks: s.node_checks.clone(),
            service_checks: (!s.service_checks.is_empty()).then(|| {
                s.service_checks
                    .iter()
                    .map(|c| ServiceCheckOut {
                        id: c.id.clone(),
                        namespace: c.namespace.clone(),
                    })
                    .collect()
            }),
            create_index: s.raft.create_index,
            modify_index: s.raft.modify_index,
        }
    }
}

/// One `/v1/txn` result: `{"KV": …}`, `{"Node": …}`, `{"Service": …}` (Consul's
/// `NodeService` shape) or `{"Check": …}`.
#[derive(Debug, Serialize)]
pub enum TxnResultOut<'a> {
    /// A KV entry.
    #[serde(rename = "KV")]
    Kv(KvPair<'a>),
    /// A node (as JSON: see [`nil_if_empty`]).
    Node(Value),
    /// A service instance (boxed: much larger than the other variants).
    Service(Box<AgentServiceOut>),
    /// A check (as JSON: see [`nil_if_empty`]).
    Check(Value),
}

/// Consul's transaction results are its Go structs marshalled as they are: a map or
/// slice that was never set is `null`, not `{}`/`[]`, and clients compare results
/// field by field (the Go client's own `TestAPI_ClientTxn` does).
fn nil_if_empty<T: Serialize>(row: T, keys: &[&str]) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        for key in keys {
            let empty = match obj.get(*key) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if empty {
                obj.insert((*key).to_owned(), Value::Null);
            }
        }
    }
    v
}

impl<'a> From<&'a TxnResult> for TxnResultOut<'a> {
    fn from(r: &'a TxnResult) -> Self {
        match r {
            TxnResult::Kv(e) => TxnResultOut::Kv(KvPair(e)),
            TxnResult::Node(n) => {
                TxnResultOut::Node(nil_if_empty(NodeOut::from(n), &["TaggedAddresses", "Meta"]))
            }
            TxnResult::Service(s) => TxnResultOut::Service(Box::new(AgentServiceOut::catalog(s))),
            TxnResult::Check(c) => {
                TxnResultOut::Check(nil_if_empty(HealthCheckOut::from(c), &["ServiceTags"]))
            }
        }
    }
}

/// `{OpIndex, What}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnErrorOut {
    /// Position of the failed operation.
    pub op_index: usize,
    /// Why it failed.
    pub what: String,
}

/// The `/v1/txn` answer: results when committed (200), errors when rolled back (409);
/// the other member is `null`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponseOut<'a> {
    /// Results.
    pub results: Option<Vec<TxnResultOut<'a>>>,
    /// Errors.
    pub errors: Option<Vec<TxnErrorOut>>,
}

impl<'a> TxnResponseOut<'a> {
    /// A committed transaction.
    pub fn committed(results: &'a [TxnResult]) -> Self {
        TxnResponseOut {
            results: Some(results.iter().map(TxnResultOut::from).collect()),
            errors: None,
        }
    }

    /// A rolled-back transaction.
    pub fn rolled_back(errors: &[TxnError]) -> Self {
        TxnResponseOut {
            results: None,
            errors: Some(
                errors
                    .iter()
                    .map(|e| TxnErrorOut {
                        op_index: e.op_index,
                        what: e.what.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::RaftIndex;
    use tribune_types::SessionId;

    #[test]
    fn kv_pairs_written_by_hand_equal_serde_json() {
        let keys = [
            "plain",
            "a/\"q\"\\b",
            "ü/日本",
            "ctl\u{1}\n\t",
            "<html>&",
            "",
        ];
        let mut entries = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            for len in [0usize, 1, 2, 3, 4, 256] {
                entries.push(KvEntry {
                    key: (*key).into(),
                    value: (0..len).map(|b| (b * 37 + i) as u8).collect(),
                    flags: if len == 2 { u64::MAX } else { len as u64 },
                    lock_index: i as u64,
                    session: (len % 2 == 1)
                        .then(|| SessionId(uuid::Uuid::from_u128(len as u128 + 7))),
                    raft: RaftIndex {
                        create_index: 1 + i as u64,
                        modify_index: u64::MAX - len as u64,
                    },
                });
            }
        }
        let serde =
            |e: &[KvEntry]| serde_json::to_vec(&e.iter().map(KvPair).collect::<Vec<_>>()).unwrap();
        for n in [0, 1, 2, entries.len()] {
            assert_eq!(
                String::from_utf8(kv_pairs_json(&entries[..n])).unwrap(),
                String::from_utf8(serde(&entries[..n])).unwrap()
            );
        }
    }

    #[test]
    fn a_kv_pair_is_consuls_json() {
        use base64::Engine;
        let base = KvEntry {
            key: "a/\"quoted\"/ü".into(),
            value: Vec::new(),
            flags: u64::MAX,
            lock_index: 3,
            session: None,
            raft: RaftIndex {
                create_index: 5,
                modify_index: 9,
            },
        };
        let with_value = KvEntry {
            value: (0..=255u8).collect(),
            session: Some(SessionId(uuid::Uuid::from_u128(0x1234))),
            ..base.clone()
        };
        let json = |e: &KvEntry| serde_json::to_string(&KvPair(e)).expect("json");
        assert_eq!(
            json(&base),
            r#"{"LockIndex":3,"Key":"a/\"quoted\"/ü","Flags":18446744073709551615,"Value":null,"CreateIndex":5,"ModifyIndex":9}"#
        );
        let value = base64::engine::general_purpose::STANDARD.encode(&with_value.value);
        assert_eq!(
            json(&with_value),
            format!(
                r#"{{"LockIndex":3,"Key":"a/\"quoted\"/ü","Flags":18446744073709551615,"Value":"{value}","Session":"00000000-0000-0000-0000-000000001234","CreateIndex":5,"ModifyIndex":9}}"#
            )
        );
    }
}
