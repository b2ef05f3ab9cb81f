//! Request bodies. Field names are the canonical lower-case form produced by
//! [`crate::json_in::normalize`], so `ServiceID`, `serviceid` and `service_id` all land
//! in the same field.

use super::{de_duration, de_null_default};
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_types::model::ops::Registration;
use tribune_types::model::{Check, CheckDefinition, Node, Service, ServiceAddress, Weights};
use tribune_types::HealthStatus;

/// `{Address, Port}` in tagged addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddrIn {
    /// Address.
    #[serde(rename = "address", deserialize_with = "de_null_default")]
    pub address: String,
    /// Port.
    #[serde(rename = "port", deserialize_with = "de_null_default")]
    pub port: u16,
}

/// `{Passing, Warning}`.
#[derive(Debug, Deserialize)]
pub struct WeightsIn {
    /// Passing.
    #[serde(rename = "passing", default)]
    pub passing: i32,
    /// Warning.
    #[serde(rename = "warning", default)]
    pub warning: i32,
}

/// A check definition (`/v1/agent/check/register`, a service's `Check`/`Checks`,
/// catalog `Definition`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CheckIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "checkid", deserialize_with = "de_null_default")]
    pub checkid: String,
    #[serde(rename = "name", deserialize_with = "de_null_default")]
    pub name: String,
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    pub node: String,
    #[serde(rename = "notes", deserialize_with = "de_null_default")]
    pub notes: String,
    #[serde(rename = "output", deserialize_with = "de_null_default")]
    pub output: String,
    #[serde(rename = "serviceid", deserialize_with = "de_null_default")]
    pub serviceid: String,
    #[serde(rename = "status", deserialize_with = "de_null_default")]
    pub status: String,
    #[serde(rename = "ttl", deserialize_with = "de_duration")]
    pub ttl: Option<Duration>,
    #[serde(rename = "interval", deserialize_with = "de_duration")]
    pub interval: Option<Duration>,
    #[serde(rename = "timeout", deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    #[serde(
        rename = "deregistercriticalserviceafter",
        deserialize_with = "de_duration"
    )]
    pub deregistercriticalserviceafter: Option<Duration>,
    #[serde(rename = "http", deserialize_with = "de_null_default")]
    pub http: String,
    #[serde(rename = "method", deserialize_with = "de_null_default")]
    pub method: String,
    #[serde(rename = "header", deserialize_with = "de_null_default")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(rename = "body", deserialize_with = "de_null_default")]
    pub body: String,
    #[serde(rename = "disableredirects", deserialize_with = "de_null_default")]
    pub disableredirects: bool,
    #[serde(rename = "tcp", deserialize_with = "de_null_default")]
    pub tcp: String,
    #[serde(rename = "udp", deserialize_with = "de_null_default")]
    pub udp: String,
    #[serde(rename = "grpc", deserialize_with = "de_null_default")]
    pub grpc: String,
    #[serde(rename = "grpcusetls", deserialize_with = "de_null_default")]
    pub grpcusetls: bool,
    #[serde(rename = "h2ping", deserialize_with = "de_null_default")]
    pub h2ping: String,
    /// Absent means Consul's default: TLS for an H2PING check
    /// (`CheckType.UnmarshalJSON` in `agent/structs/check_type.go`).
    #[serde(rename = "h2pingusetls", default)]
    pub h2pingusetls: Option<bool>,
    #[serde(rename = "args", deserialize_with = "de_null_default")]
    pub args: Vec<String>,
    #[serde(rename = "scriptargs", deserialize_with = "de_null_default")]
    pub scriptargs: Vec<String>,
    #[serde(rename = "aliasnode", deserialize_with = "de_null_default")]
    pub aliasnode: String,
    #[serde(rename = "aliasservice", deserialize_with = "de_null_default")]
    pub aliasservice: String,
    #[serde(rename = "dockercontainerid", deserialize_with = "de_null_default")]
    pub dockercontainerid: String,
    #[serde(rename = "shell", deserialize_with = "de_null_default")]
    pub shell: String,
    #[serde(rename = "osservice", deserialize_with = "de_null_default")]
    pub osservice: String,
    #[serde(rename = "tlsservername", deserialize_with = "de_null_default")]
    pub tlsservername: String,
    #[serde(rename = "tlsskipverify", deserialize_with = "de_null_default")]
    pub tlsskipverify: bool,
    #[serde(rename = "successbeforepassing", deserialize_with = "de_null_default")]
    pub successbeforepassing: u32,
    #[serde(rename = "failuresbeforewarning", deserialize_with = "de_null_default")]
    pub failuresbeforewarning: u32,
    #[serde(
        rename = "failuresbeforecritical",
        deserialize_with = "de_null_default"
    )]
    pub failuresbeforecritical: u32,
    #[serde(rename = "outputmaxsize", deserialize_with = "de_null_default")]
    pub outputmaxsize: u32,
    /// Catalog checks (`api.HealthCheck`) name their type; agent definitions do not.
    #[serde(rename = "type", deserialize_with = "de_null_default")]
    pub r#type: String,
    #[serde(rename = "servicename", deserialize_with = "de_null_default")]
    pub servicename: String,
    #[serde(rename = "servicetags", deserialize_with = "de_null_default")]
    pub servicetags: Vec<String>,
    /// The CAS index of a `/v1/txn` check operation.
    #[serde(rename = "modifyindex", deserialize_with = "de_null_default")]
    pub modifyindex: u64,
    /// Catalog registrations nest the runnable part here.
    #[serde(rename = "definition")]
    pub definition: Option<Box<CheckIn>>,
}

fn status_of(s: &str) -> Result<Option<HealthStatus>, ApiError> {
    match s {
        "" => Ok(None),
        "passing" | "warning" | "critical" => Ok(HealthStatus::parse(s).ok()),
        other => Err(ApiError::bad(format!("Invalid check status: \"{other}\""))),
    }
}

impl CheckIn {
    /// The runnable definition. `default_id` is used when neither ID nor Name is given.
    pub fn to_definition(&self, default_id: &str) -> Result<CheckDefinition, ApiError> {
        let id = [&self.id, &self.checkid, &self.name, &default_id.to_owned()]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_default();
        let name = if self.name.is_empty() {
            id.clone()
        } else {
            self.name.clone()
        };
        let mut args = self.args.clone();
        if args.is_empty() {
            args = self.scriptargs.clone();
        }
        let def = CheckDefinition {
            id: id.into(),
            name,
            service_id: self.serviceid.clone(),
            notes: self.notes.clone(),
            status: status_of(&self.status)?,
            ttl: self.ttl,
            interval: self.interval,
            timeout: self.timeout,
            deregister_critical_service_after: self.deregistercriticalserviceafter,
            http: self.http.clone(),
            method: self.method.clone(),
            header: self.header.clone(),
            body: self.body.clone(),
            disable_redirects: self.disableredirects,
            tcp: self.tcp.clone(),
            udp: self.udp.clone(),
            grpc: self.grpc.clone(),
            grpc_use_tls: self.grpcusetls,
            h2ping: self.h2ping.clone(),
            h2ping_use_tls: self.h2pingusetls.unwrap_or(!self.h2ping.is_empty()),
            args,
            alias_node: self.aliasnode.clone(),
            alias_service: self.aliasservice.clone(),
            docker_container_id: self.dockercontainerid.clone(),
            shell: self.shell.clone(),
            os_service: self.osservice.clone(),
            tls_server_name: self.tlsservername.clone(),
            tls_skip_verify: self.tlsskipverify,
            success_before_passing: self.successbeforepassing,
            failures_before_warning: self.failuresbeforewarning,
            failures_before_critical: self.failuresbeforecritical,
            output_max_size: if self.outputmaxsize == 0 {
                4096
            } else {
                self.outputmaxsize
            },
        };
        Ok(def)
    }

    /// Validates an agent check: exactly one way to run it (Consul's `CheckType.Validate`).
    pub fn validate_agent(def: &CheckDefinition) -> Result<(), ApiError> {
        if def.name.is_empty() {
            return Err(ApiError::bad("Missing check name"));
        }
        let t = def.check_type();
        if t.is_empty() {
            return Err(ApiError::bad(
                "Invalid check: TTL must be > 0 for TTL checks; or Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks; or AliasNode or AliasService must be set",
            ));
        }
        if !matches!(t, "ttl" | "alias") && def.interval.is_none_or(|i| i.is_zero()) {
            return Err(ApiError::bad(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks",
            ));
        }
        Ok(())
    }

    /// The catalog record for a check registered through `/v1/catalog/register`.
    pub fn to_catalog_check(&self) -> Result<Check, ApiError> {
        let status = status_of(&self.status)?.unwrap_or(HealthStatus::Critical);
        let id = if self.checkid.is_empty() {
            self.name.clone()
        } else {
            self.checkid.clone()
        };
        let def = self.definition.as_deref();
        let def_json = def.map(|d| {
            let mut m = serde_json::Map::new();
            if !d.http.is_empty() {
                m.insert("HTTP".into(), Value::String(d.http.clone()));
            }
            if !d.tcp.is_empty() {
                m.insert("TCP".into(), Value::String(d.tcp.clone()));
            }
            if !d.udp.is_empty() {
                m.insert("UDP".into(), Value::String(d.udp.clone()));
            }
            if !d.grpc.is_empty() {
                m.insert("GRPC".into(), Value::String(d.grpc.clone()));
            }
            if let Some(i) = d.interval {
                m.insert(
                    "Interval".into(),
                    Value::String(tribune_types::format_go_duration(i)),
                );
            }
            if let Some(t) = d.timeout {
                m.insert(
                    "Timeout".into(),
                    Value::String(tribune_types::format_go_duration(t)),
                );
            }
            if let Some(t) = d.deregistercriticalserviceafter {
                m.insert(
                    "DeregisterCriticalServiceAfter".into(),
                    Value::String(tribune_types::format_go_duration(t)),
                );
            }
            Value::Object(m).to_string()
        });
        Ok(Check {
            node: self.node.clone().into(),
            check_id: id.into(),
            name: self.name.clone(),
            status,
            notes: self.notes.clone(),
            output: self.output.clone(),
            service_id: self.serviceid.clone(),
            // An explicit `Type` wins (the Go client sends `udp`); otherwise it follows
            // from the definition, as Consul reports `tcp` for a bare TCP definition.
            check_type: if self.r#type.is_empty() {
                def.map(|d| {
                    if !d.http.is_empty() {
                        "http"
                    } else if !d.tcp.is_empty() {
                        "tcp"
                    } else if !d.udp.is_empty() {
                        "udp"
                    } else if !d.grpc.is_empty() {
                        "grpc"
                    } else {
                        ""
                    }
                })
                .unwrap_or("")
                .to_owned()
            } else {
                self.r#type.clone()
            },
            interval: def
                .and_then(|d| d.interval)
                .map(tribune_types::format_go_duration)
                .unwrap_or_default(),
            timeout: def
                .and_then(|d| d.timeout)
                .map(tribune_types::format_go_duration)
                .unwrap_or_default(),
            definition_json: def_json,
            ..Default::default()
        })
    }
}

/// A service body (`/v1/agent/service/register`, catalog `Service`, config files).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ServiceIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "name", deserialize_with = "de_null_default")]
    pub name: String,
    /// Catalog registrations name the service `Service`.
    #[serde(rename = "service", deserialize_with = "de_null_default")]
    pub service: String,
    #[serde(rename = "kind", deserialize_with = "de_null_default")]
    pub kind: String,
    #[serde(rename = "tags", deserialize_with = "de_null_default")]
    pub tags: Vec<String>,
    #[serde(rename = "address", deserialize_with = "de_null_default")]
    pub address: String,
    #[serde(rename = "taggedaddresses", deserialize_with = "de_null_default")]
    pub taggedaddresses: BTreeMap<String, AddrIn>,
    #[serde(rename = "meta", deserialize_with = "de_null_default")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "port", deserialize_with = "de_null_default")]
    pub port: u16,
    #[serde(rename = "socketpath", deserialize_with = "de_null_default")]
    pub socketpath: String,
    #[serde(rename = "weights")]
    pub weights: Option<WeightsIn>,
    #[serde(rename = "enabletagoverride", deserialize_with = "de_null_default")]
    pub enabletagoverride: bool,
    #[serde(rename = "proxy")]
    pub proxy: Option<Value>,
    #[serde(rename = "connect")]
    pub connect: Option<Value>,
    #[serde(rename = "locality")]
    pub locality: Option<Value>,
    #[serde(rename = "check")]
    pub check: Option<CheckIn>,
    #[serde(rename = "checks", deserialize_with = "de_null_default")]
    pub checks: Vec<CheckIn>,
    /// The CAS index of a `/v1/txn` service operation.
    #[serde(rename = "modifyindex", deserialize_with = "de_null_default")]
    pub modifyindex: u64,
}

/// Consul's limits on service metadata.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if meta.len() > 64 {
        return Err(ApiError::bad(
            "Node metadata cannot contain more than 64 key/value pairs",
        ));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(ApiError::bad("Key cannot be blank"));
        }
        if k.len() > 128 {
            return Err(ApiError::bad("Key is too long (limit: 128 characters)"));
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::bad(format!(
                "Key contains invalid characters: {k}"
            )));
        }
        if k.starts_with("consul-") && k != "consul-network-segment" && k != "consul-version" {
            return Err(ApiError::bad(
                "Key prefix 'consul-' is reserved for internal use",
            ));
        }
        if v.len() > 512 {
            return Err(ApiError::bad("Value is too long (limit: 512 characters)"));
        }
    }
    Ok(())
}

/// A top-level field of an opaque block, matched like Consul's decoder (any case,
/// with or without underscores).
fn field_ci<'a>(v: &'a Option<Value>, name: &str) -> Option<&'a Value> {
    v.as_ref()?
        .as_object()?
        .iter()
        .find(|(k, _)| crate::json_in::canonical(k) == name)
        .map(|(_, v)| v)
}

fn opaque(v: &Option<Value>) -> Option<String> {
    v.as_ref().filter(|v| !v.is_null()).map(Value::to_string)
}

impl ServiceIn {
    /// The service record (node left empty for the caller).
    pub fn to_service(&self) -> Result<Service, ApiError> {
        let name = self.effective_name();
        if name.is_empty() {
            return Err(ApiError::bad("Missing service name"));
        }
        validate_meta(&self.meta)
            .map_err(|e| ApiError::bad(format!("Invalid Service Meta: {e}")))?;
        let id = if self.id.is_empty() { name } else { &self.id };
        Ok(self.build(name, id))
    }

    /// The service of a `/v1/txn` service operation. Unlike a registration nothing is
    /// required or defaulted here (a `get` or `delete` names only the ID), as in
    /// Consul's `agent/txn_endpoint.go`; the state layer validates writes.
    /// `ModifyIndex` becomes the CAS index.
    pub fn to_txn_service(&self) -> Service {
        let mut s = self.build(self.effective_name(), &self.id);
        s.raft.modify_index = self.modifyindex;
        s
    }

    fn build(&self, name: &str, id: &str) -> Service {
        // The Go client's catalog `AgentService` carries a non-pointer `Weights`, so an
        // unset value arrives as {0, 0}: that means "default", as Consul treats it. The
        // agent endpoint validates explicit weights itself ("Invalid Weights").
        let weights = match &self.weights {
            Some(w) if w.passing != 0 || w.warning != 0 => Weights {
                passing: w.passing,
                warning: w.warning,
            },
            _ => Weights::default(),
        };
        Service {
            id: id.into(),
            service: name.to_owned(),
            kind: self.kind.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            tagged_addresses: self
                .taggedaddresses
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ServiceAddress {
                            address: v.address.clone(),
                            port: v.port,
                        },
                    )
                })
                .collect(),
            meta: self.meta.clone(),
            port: self.port,
            socket_path: self.socketpath.clone(),
            weights,
            enable_tag_override: self.enabletagoverride,
            proxy_json: opaque(&self.proxy.clone().map(crate::json_in::spell_proxy)),
            proxy_destination: field_ci(&self.proxy, "destinationservicename")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            connect_native: field_ci(&self.connect, "native")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            connect_json: opaque(&self.connect),
            locality_json: opaque(&self.locality),
            ..Default::default()
        }
    }

    /// The service's check definitions; unnamed ones get Consul's `service:<id>[:n]` IDs.
    pub fn check_definitions(&self, service_id: &str) -> Result<Vec<CheckDefinition>, ApiError> {
        let all: Vec<&CheckIn> = self.check.iter().chain(self.checks.iter()).collect();
        let many = all.len() > 1;
        let mut out = Vec::with_capacity(all.len());
        for (i, c) in all.into_iter().enumerate() {
            let default_id = if many {
                format!("service:{service_id}:{}", i + 1)
            } else {
                format!("service:{service_id}")
            };
            // Consul names an unnamed-ID service check `service:<id>[:n]` even when it has
            // a Name; only an explicit ID or CheckID overrides that.
            let mut def = c.to_definition(&default_id)?;
            if c.id.is_empty() && c.checkid.is_empty() {
                def.id = default_id.clone().into();
            }
            if c.name.is_empty() {
                def.name = format!("Service '{}' check", self.effective_name());
            }
            def.service_id = service_id.to_owned();
            CheckIn::validate_agent(&def)?;
            out.push(def);
        }
        Ok(out)
    }

    fn effective_name(&self) -> &str {
        if self.name.is_empty() {
            &self.service
        } else {
            &self.name
        }
    }
}

/// `PUT /v1/catalog/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CatalogRegisterIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    pub node: String,
    #[serde(rename = "address", deserialize_with = "de_null_default")]
    pub address: String,
    #[serde(rename = "datacenter", deserialize_with = "de_null_default")]
    pub datacenter: String,
    #[serde(rename = "taggedaddresses", deserialize_with = "de_null_default")]
    pub taggedaddresses: BTreeMap<String, String>,
    #[serde(rename = "nodemeta", deserialize_with = "de_null_default")]
    pub nodemeta: BTreeMap<String, String>,
    #[serde(rename = "service")]
    pub service: Option<ServiceIn>,
    #[serde(rename = "check")]
    pub check: Option<CheckIn>,
    #[serde(rename = "checks", deserialize_with = "de_null_default")]
    pub checks: Vec<CheckIn>,
    #[serde(rename = "skipnodeupdate", deserialize_with = "de_null_default")]
    pub skipnodeupdate: bool,
}

impl CatalogRegisterIn {
    /// Validates and converts to a registration in datacenter `dc`.
    pub fn to_registration(&self, dc: &str) -> Result<Registration, ApiError> {
        if self.node.is_empty() {
            return Err(ApiError::bad("Must provide node"));
        }
        if self.address.is_empty() && !self.skipnodeupdate {
            return Err(ApiError::bad(
                "Must provide address if SkipNodeUpdate is not set",
            ));
        }
        if !self.id.is_empty() && uuid::Uuid::parse_str(&self.id).is_err() {
            return Err(ApiError::bad(format!(
                "Invalid node ID: ID must be a valid UUID, \"{}\"",
                self.id
            )));
        }
        validate_meta(&self.nodemeta)
            .map_err(|e| ApiError::bad(format!("Invalid NodeMeta: {e}")))?;
        let service = match &self.service {
            Some(s) => Some(s.to_service()?),
            None => None,
        };
        let mut checks = Vec::new();
        for c in self.check.iter().chain(self.checks.iter()) {
            if !c.node.is_empty() && c.node != self.node {
                return Err(ApiError::bad(format!(
                    "Check node ({}) does not match registration node ({})",
                    c.node, self.node
                )));
            }
            let mut check = c.to_catalog_check()?;
            // A check without a service ID registered along with a service binds to it
            // only if it says so; Consul leaves it a node check otherwise.
            check.node = self.node.clone().into();
            checks.push(check);
        }
        Ok(Registration {
            node: Node {
                id: self.id.clone(),
                node: self.node.clone().into(),
                address: self.address.clone(),
                datacenter: if self.datacenter.is_empty() {
                    dc.to_owned()
                } else {
                    self.datacenter.clone()
                },
                tagged_addresses: self.taggedaddresses.clone(),
                meta: self.nodemeta.clone(),
                raft: Default::default(),
            },
            service,
            checks,
            skip_node_update: self.skipnodeupdate,
        })
    }
}

/// `PUT /v1/catalog/deregister`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CatalogDeregisterIn {
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    pub node: String,
    #[serde(rename = "datacenter", deserialize_with = "de_null_default")]
    pub datacenter: String,
    #[serde(rename = "serviceid", deserialize_with = "de_null_default")]
    pub serviceid: String,
    #[serde(rename = "checkid", deserialize_with = "de_null_default")]
    pub checkid: String,
}

/// A catalog node in `api.Node` shape (the `Node` of a `/v1/txn` node operation).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct NodeIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "node", deserialize_with = "de_null_default")]
    pub node: String,
    #[serde(rename = "address", deserialize_with = "de_null_default")]
    pub address: String,
    #[serde(rename = "datacenter", deserialize_with = "de_null_default")]
    pub datacenter: String,
    #[serde(rename = "taggedaddresses", deserialize_with = "de_null_default")]
    pub taggedaddresses: BTreeMap<String, String>,
    #[serde(rename = "meta", deserialize_with = "de_null_default")]
    pub meta: BTreeMap<String, String>,
    /// The CAS index.
    #[serde(rename = "modifyindex", deserialize_with = "de_null_default")]
    pub modifyindex: u64,
}

impl NodeIn {
    /// The node record; an empty datacenter becomes `dc`, the agent's (Consul's
    /// `txn_endpoint.go` does the same).
    pub fn to_node(&self, dc: &str) -> Node {
        Node {
            id: self.id.clone(),
            node: self.node.clone().into(),
            address: self.address.clone(),
            datacenter: if self.datacenter.is_empty() {
                dc.to_owned()
            } else {
                self.datacenter.clone()
            },
            tagged_addresses: self.taggedaddresses.clone(),
            meta: self.meta.clone(),
            raft: tribune_types::model::RaftIndex {
                create_index: 0,
                modify_index: self.modifyindex,
            },
        }
    }
}

/// The check a session is bound to when the body names none.
pub const SERF_CHECK_ID: &str = "serfHealth";

/// Consul's default session lock delay.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);

/// `{ID, Namespace}` of a session's service check.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ServiceCheckIn {
    #[serde(rename = "id", deserialize_with = "de_null_default")]
    pub id: String,
    #[serde(rename = "namespace", deserialize_with = "de_null_default")]
    pub namespace: String,
}

/// `PUT /v1/session/create`. Absent and `null` fields keep Consul's defaults, so for
/// the check lists presence itself is data: a `NodeChecks` (or legacy `Checks`) key,
/// even `[]` or `null`, replaces the default `serfHealth` (Consul's `FixupChecks`),
/// while `ServiceChecks` alone keeps it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct SessionCreateIn {
    #[serde(rename = "name", deserialize_with = "de_null_default")]
    pub name: String,
    /// `None` = the agent's node.
    #[serde(rename = "node")]
    pub node: Option<String>,
    /// `None` = [`DEFAULT_LOCK_DELAY`].
    #[serde(rename = "lockdelay", deserialize_with = "de_lock_delay")]
    pub lockdelay: Option<Duration>,
    #[serde(rename = "behavior", deserialize_with = "de_null_default")]
    pub behavior: String,
    #[serde(rename = "ttl", deserialize_with = "de_null_default")]
    pub ttl: String,
    /// `Some` when the key was sent at all.
    #[serde(rename = "nodechecks", deserialize_with = "de_present")]
    pub nodechecks: Option<Vec<String>>,
    /// Deprecated spelling of `NodeChecks` (`Some` when sent at all).
    #[serde(rename = "checks", deserialize_with = "de_present")]
    pub checks: Option<Vec<String>>,
    #[serde(rename = "servicechecks", deserialize_with = "de_null_default")]
    pub servicechecks: Vec<ServiceCheckIn>,
}

impl SessionCreateIn {
    /// The node checks: `serfHealth` unless a check list was sent; legacy `Checks`
    /// entries join `NodeChecks` (once each).
    pub fn node_checks(&self) -> Vec<String> {
        if self.nodechecks.is_none() && self.checks.is_none() {
            return vec![SERF_CHECK_ID.to_owned()];
        }
        let mut out: Vec<String> = Vec::new();
        for c in self.nodechecks.iter().chain(self.checks.iter()).flatten() {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    /// The lock delay, before the server's cap.
    pub fn lock_delay(&self) -> Duration {
        self.lockdelay.unwrap_or(DEFAULT_LOCK_DELAY)
    }
}

/// Marks a field as sent (`Some`) even when its value is `null`.
fn de_present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// Consul's `lockDelayMinThreshold` (`agent/session_endpoint.go`): a lock delay below
/// 1000 ns, whether sent as a number or as a duration string, is taken as seconds,
/// because clients send `15` meaning 15 s. Numbers are nanoseconds, truncated like
/// Go's `time.Duration(float64)`.
fn de_lock_delay<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error;
    let raw = match Option::<Value>::deserialize(d)? {
        None => return Ok(None),
        Some(Value::String(s)) => tribune_types::parse_go_duration(&s)
            .map_err(D::Error::custom)?
            .as_nanos(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f >= 0.0 => f as u128,
            _ => return Err(D::Error::custom(format!("invalid lock delay {n}"))),
        },
        Some(other) => {
            return Err(D::Error::custom(format!(
                "invalid lock delay {other}: want a duration string or nanoseconds"
            )))
        }
    };
    let nanos = u64::try_from(raw).unwrap_or(u64::MAX);
    Ok(Some(if nanos < 1000 {
        Duration::from_secs(nanos)
    } else {
        Duration::from_nanos(nanos)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(json: &str) -> CheckDefinition {
        crate::json_in::decode::<CheckIn>(json.as_bytes())
            .expect("decode")
            .to_definition("")
            .expect("definition")
    }

    #[test]
    fn tls_fields_reach_the_definition_and_h2ping_defaults_to_tls() {
        let d = definition(r#"{"Name":"a","H2PING":"x:1","Interval":"5s"}"#);
        assert!(d.h2ping_use_tls);
        let d = definition(r#"{"Name":"a","H2PING":"x:1","H2PingUseTLS":false}"#);
        assert!(!d.h2ping_use_tls);
        let d = definition(r#"{"name":"a","h2ping":"x:1","h2ping_use_tls":false}"#);
        assert!(!d.h2ping_use_tls);
        // Not an H2PING check: nothing to default.
        assert!(!definition(r#"{"Name":"a","TCP":"x:1"}"#).h2ping_use_tls);
        let d = definition(
            r#"{"Name":"a","GRPC":"x:1","grpc_use_tls":true,"tls_skip_verify":true,"TLSServerName":"svc.internal"}"#,
        );
        assert!(d.grpc_use_tls && d.tls_skip_verify);
        assert_eq!(d.tls_server_name, "svc.internal");
    }
}
