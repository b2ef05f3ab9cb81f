//! `ContentHash` of `/v1/agent/service/{id}`: Consul hashes its `api.AgentService` reply
//! with `github.com/mitchellh/hashstructure` (v1, FNV-1 64) and prints it as `%x`.
//!
//! Clients only compare hashes for equality, but the Go client's own test suite
//! (`TestAPI_AgentService`) compares the whole reply, hash included, so we reproduce the
//! algorithm exactly for the fields a plain service has:
//!
//! * string: FNV-1 of its bytes; `int`/`bool`/`uint64`: FNV-1 of the little-endian
//!   `int64`/`int8`/`uint64`; a nil pointer or interface hashes like `int64(0)`;
//! * slice: `h = ordered(h, elem)` from 0; map: XOR of `ordered(key, value)` from 0;
//! * struct: hash of the type name, XOR `ordered(hash(field name), hash(value))` for every
//!   field not tagged `hash:"ignore"`, where `ordered(a, b)` is FNV-1 of `a ‖ b` (LE).
//!
//! `api.AgentService` fields hashed: Kind, ID, Service, Tags, Meta, Port, Address,
//! SocketPath, TaggedAddresses, Weights, EnableTagOverride, CreateIndex, ModifyIndex,
//! ContentHash (empty while hashing), Proxy, Connect, PeerName (Namespace, Partition,
//! Datacenter and Locality are `hash:"ignore"`). Proxy configurations are opaque JSON to
//! us, so they are hashed generically; that is deterministic and changes whenever the
//! rendered proxy changes, which is all a watcher needs.

use crate::dto::output::AgentServiceOut;
use serde_json::Value;

const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME: u64 = 1_099_511_628_211;

/// FNV-1 (multiply, then XOR), Go's `hash/fnv.New64`.
fn fnv1(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, b| h.wrapping_mul(FNV_PRIME) ^ u64::from(*b))
}

fn ordered(a: u64, b: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    fnv1(&buf)
}

/// A value as Go's reflection walk sees it.
enum Go<'a> {
    Str(&'a str),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Float(f64),
    /// A nil pointer or interface.
    Nil,
    Slice(Vec<Go<'a>>),
    Map(Vec<(Go<'a>, Go<'a>)>),
    Struct(&'static str, Vec<(&'static str, Go<'a>)>),
    /// A struct we only know as JSON: its name and its rendered fields.
    JsonStruct(&'static str, &'a Value),
}

fn hash(v: &Go<'_>) -> u64 {
    match v {
        Go::Str(s) => fnv1(s.as_bytes()),
        Go::Int(i) => fnv1(&i.to_le_bytes()),
        Go::Uint(u) => fnv1(&u.to_le_bytes()),
        Go::Bool(b) => fnv1(&[u8::from(*b)]),
        Go::Float(f) => fnv1(&f.to_le_bytes()),
        Go::Nil => fnv1(&0i64.to_le_bytes()),
        Go::Slice(items) => items.iter().fold(0, |h, item| ordered(h, hash(item))),
        Go::Map(entries) => entries
            .iter()
            .fold(0, |h, (k, v)| h ^ ordered(hash(k), hash(v))),
        Go::Struct(name, fields) => fields.iter().fold(fnv1(name.as_bytes()), |h, (k, v)| {
            h ^ ordered(fnv1(k.as_bytes()), hash(v))
        }),
        Go::JsonStruct(name, value) => match value {
            Value::Object(map) => map.iter().fold(fnv1(name.as_bytes()), |h, (k, v)| {
                h ^ ordered(fnv1(k.as_bytes()), hash(&json(v)))
            }),
            other => hash(&json(other)),
        },
    }
}

/// Generic JSON as Go would decode it into `interface{}` (numbers are float64).
fn json(v: &Value) -> Go<'_> {
    match v {
        Value::Null => Go::Nil,
        Value::Bool(b) => Go::Bool(*b),
        Value::Number(n) => Go::Float(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Go::Str(s),
        Value::Array(items) => Go::Slice(items.iter().map(json).collect()),
        Value::Object(map) => Go::Map(map.iter().map(|(k, v)| (Go::Str(k), json(v))).collect()),
    }
}

/// Consul's `ContentHash` of an agent service reply (computed before the hash is set).
pub(super) fn agent_service_hash(s: &AgentServiceOut) -> String {
    let tagged = match &s.tagged_addresses {
        None => Go::Map(Vec::new()),
        Some(m) => Go::Map(
            m.iter()
                .map(|(k, a)| {
                    (
                        Go::Str(k),
                        Go::Struct(
                            "ServiceAddress",
                            vec![
                                ("Address", Go::Str(&a.address)),
                                ("Port", Go::Int(i64::from(a.port))),
                            ],
                        ),
                    )
                })
                .collect(),
        ),
    };
    let connect = match &s.connect {
        None => Go::Nil,
        // The only Connect block Consul renders for an agent service is `{Native: true}`.
        Some(c) => Go::Struct(
            "AgentServiceConnect",
            vec![
                (
                    "Native",
                    Go::Bool(c.get("Native").and_then(Value::as_bool).unwrap_or(false)),
                ),
                ("SidecarService", Go::Nil),
            ],
        ),
    };
    let proxy = match &s.proxy {
        None => Go::Nil,
        Some(p) => Go::JsonStruct("AgentServiceConnectProxyConfig", p),
    };
    let value = Go::Struct(
        "AgentService",
        vec![
            ("Kind", Go::Str(&s.kind)),
            ("ID", Go::Str(&s.id)),
            ("Service", Go::Str(&s.service)),
            (
                "Tags",
                Go::Slice(s.tags.iter().map(|t| Go::Str(t)).collect()),
            ),
            (
                "Meta",
                Go::Map(
                    s.meta
                        .iter()
                        .map(|(k, v)| (Go::Str(k), Go::Str(v)))
                        .collect(),
                ),
            ),
            ("Port", Go::Int(i64::from(s.port))),
            ("Address", Go::Str(&s.address)),
            ("SocketPath", Go::Str(&s.socket_path)),
            ("TaggedAddresses", tagged),
            (
                "Weights",
                Go::Struct(
                    "AgentWeights",
                    vec![
                        ("Passing", Go::Int(i64::from(s.weights.passing))),
                        ("Warning", Go::Int(i64::from(s.weights.warning))),
                    ],
                ),
            ),
            ("EnableTagOverride", Go::Bool(s.enable_tag_override)),
            ("CreateIndex", Go::Uint(s.create_index.unwrap_or(0))),
            ("ModifyIndex", Go::Uint(s.modify_index.unwrap_or(0))),
            ("ContentHash", Go::Str("")),
            ("Proxy", proxy),
            ("Connect", connect),
            ("PeerName", Go::Str("")),
        ],
    );
    format!("{:x}", hash(&value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::Service;

    /// The value Consul's own `api/agent_test.go` (TestAPI_AgentService) expects for
    /// `{Name: "foo", Tags: ["bar", "baz"], Port: 8000}`.
    #[test]
    fn matches_consul_for_the_go_client_test_service() {
        let svc = Service {
            id: "foo".into(),
            service: "foo".into(),
            tags: vec!["bar".into(), "baz".into()],
            port: 8000,
            ..Default::default()
        };
        let mut out = AgentServiceOut::agent(&svc);
        out.datacenter = Some("dc1".into());
        assert_eq!(agent_service_hash(&out), "3e352f348d44f7eb");
    }

    #[test]
    fn any_visible_change_changes_the_hash() {
        let base = Service {
            id: "a".into(),
            service: "a".into(),
            ..Default::default()
        };
        let h0 = agent_service_hash(&AgentServiceOut::agent(&base));
        let mut moved = base.clone();
        moved.port = 1;
        assert_ne!(h0, agent_service_hash(&AgentServiceOut::agent(&moved)));
        let mut tagged = base.clone();
        tagged.meta.insert("k".into(), "v".into());
        assert_ne!(h0, agent_service_hash(&AgentServiceOut::agent(&tagged)));
        // Datacenter is `hash:"ignore"` in Consul.
        let mut out = AgentServiceOut::agent(&base);
        out.datacenter = Some("dc9".into());
        assert_eq!(h0, agent_service_hash(&out));
    }
}
