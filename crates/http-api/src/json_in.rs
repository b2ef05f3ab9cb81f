//! Decoding request bodies the way Consul does: JSON keys match case-insensitively
//! (Go's `encoding/json`), and the agent endpoints also accept snake_case aliases
//! (`service_id`, `deregister_critical_service_after`, Consul's `lib.TranslateKeys`).
//!
//! We canonicalise every key to lower case without underscores before deserialising,
//! so input DTOs declare their fields in that form (`#[serde(rename = "serviceid")]`).
//! The keys of user-defined maps (`Meta`, `NodeMeta`, `Header`, `TaggedAddresses`, ...)
//! are data, not field names, and are left exactly as sent.

use crate::error::ApiError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Fields whose value is a map with user-chosen keys.
const USER_MAPS: &[&str] = &[
    "meta",
    "nodemeta",
    "servicemeta",
    "header",
    "taggedaddresses",
    "servicetaggedaddresses",
    "config",
    "envoyextensions",
];

/// Fields kept exactly as sent: opaque blocks stored as JSON text and echoed back, so
/// `Proxy.DestinationServiceName` must keep its spelling. Code that reads inside them
/// looks keys up with [`canonical`] comparison.
const RAW_FIELDS: &[&str] = &["proxy", "connect", "locality"];

/// A key's canonical form: lower case, without `_` and `-`.
pub fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The value under `name` in `obj`, comparing keys in [`canonical`] form, as
/// Consul's decoders match field names (case and `_`/`-` ignored). For code that
/// reads inside bodies kept as sent (raw fields, config entries, CA configs).
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let want = canonical(name);
    obj.iter()
        .find(|(k, _)| canonical(k) == want)
        .map(|(_, v)| v)
}

/// Canonicalises keys recursively (see the module docs).
pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let ck = canonical(&k);
                let v = if RAW_FIELDS.contains(&ck.as_str()) {
                    v
                } else if USER_MAPS.contains(&ck.as_str()) {
                    match v {
                        Value::Object(inner) => Value::Object(
                            inner
                                .into_iter()
                                .map(|(ik, iv)| (ik, normalize(iv)))
                                .collect(),
                        ),
                        other => normalize(other),
                    }
                } else {
                    normalize(v)
                };
                // Go's encoding/json keeps the last of several spellings of one field.
                out.insert(ck, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// Parses a request body into `T` after canonicalising keys. An empty body decodes as
/// `{}` only when `T` allows it; malformed JSON is Consul's 400 "Request decode failed".
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?
    };
    serde_json::from_value(normalize(value))
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))
}

/// One field of a block whose spelling [`spell_proxy`] restores.
struct Spelled {
    /// Consul's JSON name.
    name: &'static str,
    /// The fields of its value (of each element, for a list); `None` keeps the
    /// value as sent (scalars, and user data such as `Config`).
    fields: Option<&'static [Spelled]>,
}

const fn leaf(name: &'static str) -> Spelled {
    Spelled { name, fields: None }
}

const fn nested(name: &'static str, fields: &'static [Spelled]) -> Spelled {
    Spelled {
        name,
        fields: Some(fields),
    }
}

const MESH_GATEWAY: &[Spelled] = &[leaf("Mode")];

/// `structs.ConnectProxyConfig`, as Consul encodes it.
const PROXY: &[Spelled] = &[
    nested(
        "EnvoyExtensions",
        &[
            leaf("Name"),
            leaf("Required"),
            leaf("Arguments"),
            leaf("ConsulVersion"),
            leaf("EnvoyVersion"),
        ],
    ),
    leaf("DestinationServiceName"),
    leaf("DestinationServiceID"),
    leaf("LocalServiceAddress"),
    leaf("LocalServicePort"),
    leaf("LocalServiceSocketPath"),
    leaf("Mode"),
    nested(
        "TransparentProxy",
        &[leaf("OutboundListenerPort"), leaf("DialedDirectly")],
    ),
    leaf("MutualTLSMode"),
    leaf("Config"),
    nested(
        "Upstreams",
        &[
            leaf("DestinationType"),
            leaf("DestinationNamespace"),
            leaf("DestinationPartition"),
            leaf("DestinationPeer"),
            leaf("DestinationName"),
            leaf("Datacenter"),
            leaf("LocalBindAddress"),
            leaf("LocalBindPort"),
            leaf("LocalBindSocketPath"),
            leaf("LocalBindSocketMode"),
            leaf("Config"),
            nested("MeshGateway", MESH_GATEWAY),
            leaf("CentralConfig"),
        ],
    ),
    nested("MeshGateway", MESH_GATEWAY),
    nested(
        "Expose",
        &[
            leaf("Checks"),
            nested(
                "Paths",
                &[
                    leaf("ListenerPort"),
                    leaf("Path"),
                    leaf("LocalPathPort"),
                    leaf("Protocol"),
                    leaf("ParsedFromCheck"),
                ],
            ),
        ],
    ),
    nested(
        "AccessLogs",
        &[
            leaf("Enabled"),
            leaf("DisableListenerLogs"),
            leaf("Type"),
            leaf("Path"),
            leaf("JSONFormat"),
            leaf("TextFormat"),
        ],
    ),
];

/// A service's `Proxy` block with Consul's field names, however it was sent
/// (`destination_service_name` in a config file, `destinationServiceName` from
/// a client). Consul decodes the block into its struct and encodes it back, so
/// its answers always spell the fields its own way, and clients read them so.
/// `Proxy` is stored as sent otherwise (see [`RAW_FIELDS`]); keys Consul does
/// not know are kept as they are, as is everything under `Config`.
pub fn spell_proxy(proxy: Value) -> Value {
    spell(proxy, PROXY)
}

fn spell(value: Value, fields: &'static [Spelled]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let ck = canonical(&k);
                    match fields.iter().find(|f| canonical(f.name) == ck) {
                        Some(f) => {
                            let v = match f.fields {
                                Some(inner) => spell(v, inner),
                                None => v,
                            };
                            (f.name.to_owned(), v)
                        }
                        None => (k, v),
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| spell(v, fields)).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug)]
    struct Svc {
        #[serde(rename = "name")]
        name: String,
        #[serde(rename = "enabletagoverride", default)]
        eto: bool,
        #[serde(rename = "meta", default)]
        meta: BTreeMap<String, String>,
    }

    #[test]
    fn proxy_fields_take_consuls_spelling() {
        let v = spell_proxy(serde_json::json!({
            "destination_service_name": "web",
            "localserviceport": 80,
            "upstreams": [{"destination_name": "db", "local_bind_port": 9191,
                           "config": {"connect_timeout_ms": 5}, "mesh_gateway": {"mode": "local"}}],
            "expose": {"paths": [{"listener_port": 21500, "path": "/health"}]},
            "config": {"local_service_address": "x"},
            "custom": 1,
        }));
        assert_eq!(
            v,
            serde_json::json!({
                "DestinationServiceName": "web",
                "LocalServicePort": 80,
                "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191,
                               "Config": {"connect_timeout_ms": 5}, "MeshGateway": {"Mode": "local"}}],
                "Expose": {"Paths": [{"ListenerPort": 21500, "Path": "/health"}]},
                "Config": {"local_service_address": "x"},
                "custom": 1,
            })
        );
    }

    #[test]
    fn case_insensitive_and_snake_case() {
        let v = normalize(serde_json::json!({"Proxy": {"DestinationServiceName": "x"}}));
        assert_eq!(v["proxy"]["DestinationServiceName"], "x");
        for body in [
            r#"{"Name":"web","EnableTagOverride":true,"Meta":{"Foo_Bar":"x"}}"#,
            r#"{"NAME":"web","enable_tag_override":true,"meta":{"Foo_Bar":"x"}}"#,
            r#"{"name":"web","enabletagoverride":true,"META":{"Foo_Bar":"x"}}"#,
        ] {
            let s: Svc = decode(body.as_bytes()).unwrap();
            assert_eq!(s.name, "web");
            assert!(s.eto);
            assert_eq!(s.meta["Foo_Bar"], "x");
        }
        assert!(decode::<Svc>(b"{bad").is_err());
    }
}
