//! `/v1/catalog/*`: register, deregister, datacenters, nodes, services, service/{name},
//! node/{node}, node-services/{node}.

use super::coordinate::sort_near;
use super::{apply_filter, bool_reply, mismatch, AppState};
use crate::dto::input::{CatalogDeregisterIn, CatalogRegisterIn};
use crate::dto::output::{AgentServiceOut, CatalogServiceOut, NodeOut};
use crate::error::ApiError;
use crate::json_in::decode;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tribune_types::model::ops::{Deregistration, ReadRequest, ReadResult, WriteRequest};
use tribune_types::model::{Node, Service};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{*name}", get(service))
        .route("/v1/catalog/connect/{*name}", get(connect))
        .route(
            "/v1/catalog/gateway-services/{*gateway}",
            get(gateway_services),
        )
        .route("/v1/catalog/node/{*node}", get(node))
        .route("/v1/catalog/node-services/{*node}", get(node_services))
}

async fn register(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let input: CatalogRegisterIn = decode(&body)?;
    st.check_body_dc(&input.datacenter)?;
    let reg = input.to_registration(&st.backend.agent_info().datacenter)?;
    st.backend.write(WriteRequest::Register(reg)).await?;
    Ok(bool_reply(true, p.pretty()))
}

async fn deregister(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let input: CatalogDeregisterIn = decode(&body)?;
    st.check_body_dc(&input.datacenter)?;
    if input.node.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    let d = Deregistration {
        node: input.node.into(),
        service_id: (!input.serviceid.is_empty()).then(|| input.serviceid.into()),
        check_id: (!input.checkid.is_empty()).then(|| input.checkid.into()),
    };
    st.backend.write(WriteRequest::Deregister(d)).await?;
    Ok(bool_reply(true, p.pretty()))
}

async fn datacenters(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    Ok(reply::json(
        &[st.backend.agent_info().datacenter],
        p.pretty(),
    ))
}

/// `?node-meta=k:v` (repeatable, all must match).
pub(super) fn node_meta_matches(p: &Params, node: &Node) -> bool {
    p.node_meta()
        .iter()
        .all(|(k, v)| node.meta.get(k).is_some_and(|nv| nv == v))
}

async fn nodes(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st.read(&p, ReadRequest::CatalogNodes).await?;
    let ReadResult::Nodes(mut nodes) = res else {
        return Err(mismatch("catalog nodes"));
    };
    nodes.retain(|n| node_meta_matches(&p, n));
    sort_near(&st, &p, &mut nodes, |n| n.node.as_str()).await?;
    let rows: Vec<NodeOut> = nodes.iter().map(NodeOut::from).collect();
    Ok(reply::json_meta(
        &apply_filter(rows, filter.as_ref())?,
        &meta,
        p.pretty(),
    ))
}

async fn services(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let needs_instances = filter.is_some() || !p.node_meta().is_empty();
    if !needs_instances {
        let (res, meta) = st.read(&p, ReadRequest::CatalogServices).await?;
        let ReadResult::Services(list) = res else {
            return Err(mismatch("catalog services"));
        };
        let map: Map<String, Value> = list.into_iter().map(|(k, v)| (k, json!(v))).collect();
        return Ok(reply::json_meta(&map, &meta, p.pretty()));
    }
    // Filtering by node metadata or `?filter=` works on service instances (Consul
    // filters `ServiceNode` rows), so gather every instance first.
    let (res, meta) = st.read(&p, ReadRequest::CatalogServices).await?;
    let ReadResult::Services(list) = res else {
        return Err(mismatch("catalog services"));
    };
    let stale = tribune_types::model::ops::QueryOptions {
        consistency: tribune_types::model::ops::Consistency::Stale,
        ..Default::default()
    };
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, _) in list {
        let (res, _) = st
            .backend
            .read(
                ReadRequest::CatalogService {
                    service: name.clone(),
                },
                stale,
            )
            .await?;
        let ReadResult::ServiceInstances(inst) = res else {
            return Err(mismatch("catalog service"));
        };
        let rows: Vec<CatalogServiceOut> = inst
            .iter()
            .filter(|i| node_meta_matches(&p, &i.node))
            .map(|i| CatalogServiceOut::new(&i.node, &i.service))
            .collect();
        for row in apply_filter(rows, filter.as_ref())? {
            let tags = map.entry(name.clone()).or_default();
            if let Some(Value::Array(ts)) = row.get("ServiceTags") {
                for t in ts.iter().filter_map(Value::as_str) {
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_owned());
                    }
                }
            }
        }
    }
    Ok(reply::json_meta(&map, &meta, p.pretty()))
}

/// `?tag=` (repeatable): an instance must carry every tag, compared without
/// regard to case as Consul's `serviceTagFilter` does.
pub(super) fn has_tags(p: &Params, s: &Service) -> bool {
    p.all("tag").iter().all(|t| s.has_tag(t))
}

/// `?peer=`: instances imported from a cluster peer. Tribune has no peerings, so a
/// named peer has no instances (Consul answers `[]` for an unknown peer too).
pub(super) fn from_peer(p: &Params) -> bool {
    p.get("peer").is_some_and(|peer| !peer.is_empty())
}

async fn service(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    service_rows(st, p, ReadRequest::CatalogService { service: name }).await
}

async fn connect(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    service_rows(st, p, ReadRequest::CatalogConnect { service: name }).await
}

async fn service_rows(st: AppState, p: Params, req: ReadRequest) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::ServiceInstances(mut inst) = res else {
        return Err(mismatch("catalog service"));
    };
    if from_peer(&p) {
        inst.clear();
    }
    inst.retain(|i| has_tags(&p, &i.service) && node_meta_matches(&p, &i.node));
    sort_near(&st, &p, &mut inst, |i| i.node.node.as_str()).await?;
    let rows: Vec<CatalogServiceOut> = inst
        .iter()
        .map(|i| CatalogServiceOut::new(&i.node, &i.service))
        .collect();
    Ok(reply::json_meta(
        &apply_filter(rows, filter.as_ref())?,
        &meta,
        p.pretty(),
    ))
}

/// `/v1/catalog/gateway-services/{gateway}`: the services a terminating or ingress
/// gateway routes to, from its config entry, with `*` expanded over the catalog.
async fn gateway_services(
    State(st): State<AppState>,
    Path(gateway): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let (res, meta) = st
        .read(&p, ReadRequest::GatewayServices { gateway })
        .await?;
    let ReadResult::GatewayServices(list) = res else {
        return Err(mismatch("gateway services"));
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|g| {
            let l = &g.link;
            json!({
                "Gateway": {"Name": g.gateway},
                "Service": {"Name": l.service},
                "GatewayKind": g.gateway_kind,
                "Port": l.port,
                "Protocol": l.protocol,
                "Hosts": if l.hosts.is_empty() { Value::Null } else { json!(l.hosts) },
                "CAFile": l.ca_file,
                "CertFile": l.cert_file,
                "KeyFile": l.key_file,
                "SNI": l.sni,
                "FromWildcard": g.from_wildcard,
                "CreateIndex": g.raft.create_index,
                "ModifyIndex": g.raft.modify_index,
            })
        })
        .collect();
    Ok(reply::json_meta(&rows, &meta, p.pretty()))
}

async fn node(
    State(st): State<AppState>,
    Path(node): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st
        .read(&p, ReadRequest::CatalogNode { node: node.into() })
        .await?;
    let ReadResult::NodeServices(found) = res else {
        return Err(mismatch("catalog node"));
    };
    // An unknown node is `null` with 200, as Consul answers.
    let Some((node, services)) = found else {
        return Ok(reply::json_meta(&Value::Null, &meta, p.pretty()));
    };
    let rows: Vec<AgentServiceOut> = services.iter().map(AgentServiceOut::catalog).collect();
    let mut map = Map::new();
    for row in apply_filter(rows, filter.as_ref())? {
        if let Some(id) = row.get("ID").and_then(Value::as_str) {
            map.insert(id.to_owned(), row.clone());
        }
    }
    let body = json!({"Node": NodeOut::from(&node), "Services": map});
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

async fn node_services(
    State(st): State<AppState>,
    Path(node): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st
        .read(&p, ReadRequest::CatalogNode { node: node.into() })
        .await?;
    let ReadResult::NodeServices(found) = res else {
        return Err(mismatch("catalog node-services"));
    };
    let Some((node, services)) = found else {
        return Ok(reply::json_meta(&Value::Null, &meta, p.pretty()));
    };
    let rows: Vec<AgentServiceOut> = services.iter().map(AgentServiceOut::catalog).collect();
    let body =
        json!({"Node": NodeOut::from(&node), "Services": apply_filter(rows, filter.as_ref())?});
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_ignore_case_and_need_every_tag() {
        let service = Service {
            tags: vec!["Primary".into(), "v1".into(), "Ärger".into()],
            ..Default::default()
        };
        let keeps = |query: &str| has_tags(&Params::parse(Some(query)), &service);
        assert!(keeps(""));
        assert!(keeps("tag=primary"));
        assert!(keeps("tag=PRIMARY&tag=V1"));
        assert!(!keeps("tag=primary&tag=v2"));
        assert!(!keeps("tag=prim"));
        assert!(keeps("tag=%C3%A4RGER"));
    }
}
