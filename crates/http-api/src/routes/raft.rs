//! `/v1/operator/raft/*` and `/v1/operator/autopilot/*`, from Consul's
//! `agent/operator_endpoint.go`: the raft configuration, removing a peer,
//! moving leadership, autopilot's settings (replicated, with check-and-set) and
//! its health and state views; and `/v1/operator/usage`, the catalog counts.

use super::AppState;
use crate::error::ApiError;
use crate::json_in;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_types::model::operator::{
    AutopilotHealth, AutopilotSettings, OperatorReply, OperatorRequest, ServerHealth,
};
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteOutcome, WriteRequest};
use tribune_types::{format_go_duration, parse_go_duration};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(configuration))
        .route("/v1/operator/raft/peer", delete(remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(transfer_leader))
        .route(
            "/v1/operator/autopilot/configuration",
            get(get_autopilot).put(set_autopilot),
        )
        .route("/v1/operator/autopilot/health", get(health))
        .route("/v1/operator/autopilot/state", get(state))
        .route("/v1/operator/usage", get(usage))
}

async fn operator(st: &AppState, req: OperatorRequest) -> Result<OperatorReply, ApiError> {
    Ok(st.backend.operator(req).await?)
}

fn unexpected() -> ApiError {
    ApiError::from(crate::BackendError::Unavailable(
        "unexpected answer from the servers".into(),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServerOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    leader: bool,
    voter: bool,
    protocol_version: &'static str,
    last_index: u64,
}

async fn configuration(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let stale = p.has("stale");
    let OperatorReply::Raft(conf) =
        operator(&st, OperatorRequest::RaftConfiguration { stale }).await?
    else {
        return Err(unexpected());
    };
    let servers: Vec<RaftServerOut<'_>> = conf
        .servers
        .iter()
        .map(|s| RaftServerOut {
            id: &s.id,
            node: &s.node,
            address: &s.address,
            leader: s.leader,
            voter: s.voter,
            protocol_version: "3",
            last_index: s.last_index,
        })
        .collect();
    Ok(reply::json(
        &serde_json::json!({"Servers": servers, "Index": conf.index}),
        p.pretty(),
    ))
}

/// `GET /v1/operator/usage` (`?global` is accepted: there is one datacenter).
async fn usage(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let (result, meta) = st
        .backend
        .read(ReadRequest::Usage, p.query_options(st.config.query_times)?)
        .await?;
    let ReadResult::Usage(u) = result else {
        return Err(unexpected());
    };
    let dc = st.backend.agent_info().datacenter;
    let body = serde_json::json!({
        "Usage": {
            dc: {
                "Nodes": u.nodes,
                "Services": u.services,
                "ServiceInstances": u.service_instances,
                "ConnectServiceInstances": u.connect,
                "BillableServiceInstances": u.billable,
            }
        },
        "Index": meta.index,
        "LastContact": meta.last_contact.as_millis() as u64,
        "KnownLeader": meta.known_leader,
        "ResultsFilteredByACLs": false,
    });
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

async fn remove_peer(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let id = p.get("id").unwrap_or_default().to_owned();
    let address = p.get("address").unwrap_or_default().to_owned();
    if id.is_empty() && address.is_empty() {
        return Err(ApiError::bad(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    if !id.is_empty() && !address.is_empty() {
        return Err(ApiError::bad("Must specify only one of ?id or ?address"));
    }
    operator(&st, OperatorRequest::RemovePeer { id, address }).await?;
    Ok(StatusCode::OK.into_response())
}

async fn transfer_leader(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let id = p.get("id").unwrap_or_default().to_owned();
    operator(&st, OperatorRequest::TransferLeader { id }).await?;
    Ok(reply::json(
        &serde_json::json!({"Success": true}),
        p.pretty(),
    ))
}

/// Consul's `api.AutopilotConfiguration` JSON (durations as Go strings).
fn settings_json(s: &AutopilotSettings) -> Value {
    serde_json::json!({
        "CleanupDeadServers": s.cleanup_dead_servers,
        "LastContactThreshold": format_go_duration(s.last_contact_threshold),
        "MaxTrailingLogs": s.max_trailing_logs,
        "MinQuorum": s.min_quorum,
        "ServerStabilizationTime": format_go_duration(s.server_stabilization_time),
        "RedundancyZoneTag": s.redundancy_zone_tag,
        "DisableUpgradeMigration": s.disable_upgrade_migration,
        "UpgradeVersionTag": s.upgrade_version_tag,
        "CreateIndex": s.raft.create_index,
        "ModifyIndex": s.raft.modify_index,
    })
}

async fn get_autopilot(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let (result, meta) = st
        .backend
        .read(
            ReadRequest::AutopilotConfig,
            p.query_options(st.config.query_times)?,
        )
        .await?;
    let ReadResult::Autopilot(settings) = result else {
        return Err(unexpected());
    };
    Ok(reply::json_meta(
        &settings_json(&settings),
        &meta,
        p.pretty(),
    ))
}

/// The PUT body: keys match case-insensitively (canonical form); durations are
/// Go strings or nanosecond numbers, as `api.ReadableDuration` accepts.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AutopilotIn {
    #[serde(rename = "cleanupdeadservers")]
    cleanup_dead_servers: bool,
    #[serde(rename = "lastcontactthreshold")]
    last_contact_threshold: Option<Value>,
    #[serde(rename = "maxtrailinglogs")]
    max_trailing_logs: u64,
    #[serde(rename = "minquorum")]
    min_quorum: u32,
    #[serde(rename = "serverstabilizationtime")]
    server_stabilization_time: Option<Value>,
    #[serde(rename = "redundancyzonetag")]
    redundancy_zone_tag: String,
    #[serde(rename = "disableupgrademigration")]
    disable_upgrade_migration: bool,
    #[serde(rename = "upgradeversiontag")]
    upgrade_version_tag: String,
}

fn duration_in(v: Option<&Value>, field: &str) -> Result<Duration, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(Value::String(s)) => parse_go_duration(s)
            .map_err(|e| ApiError::bad(format!("Request decode failed: {field}: {e}"))),
        Some(Value::Number(n)) => Ok(Duration::from_nanos(
            n.as_f64().filter(|f| *f >= 0.0).unwrap_or(0.0) as u64,
        )),
        Some(_) => Err(ApiError::bad(format!(
            "Request decode failed: {field}: expected a duration"
        ))),
    }
}

async fn set_autopilot(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let input: AutopilotIn = json_in::decode(&body)?;
    let cas = p.u64("cas", "cas")?;
    let config = AutopilotSettings {
        cleanup_dead_servers: input.cleanup_dead_servers,
        last_contact_threshold: duration_in(
            input.last_contact_threshold.as_ref(),
            "LastContactThreshold",
        )?,
        max_trailing_logs: input.max_trailing_logs,
        min_quorum: input.min_quorum,
        server_stabilization_time: duration_in(
            input.server_stabilization_time.as_ref(),
            "ServerStabilizationTime",
        )?,
        redundancy_zone_tag: input.redundancy_zone_tag,
        disable_upgrade_migration: input.disable_upgrade_migration,
        upgrade_version_tag: input.upgrade_version_tag,
        raft: Default::default(),
    };
    let (outcome, _) = st
        .backend
        .write(WriteRequest::AutopilotSet { config, cas })
        .await?;
    Ok(reply::json(
        &matches!(outcome, WriteOutcome::Done),
        p.pretty(),
    ))
}

/// RFC 3339 of a Unix time in ms (Go's zero time when unknown).
fn rfc3339_ms(ms: u64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    tribune_types::utc::UtcDateTime::from_unix(ms / 1000).rfc3339()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServerHealthOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    serf_status: &'a str,
    version: &'a str,
    leader: bool,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    voter: bool,
    stable_since: String,
}

impl<'a> From<&'a ServerHealth> for ServerHealthOut<'a> {
    fn from(s: &'a ServerHealth) -> Self {
        ServerHealthOut {
            id: &s.id,
            name: &s.name,
            address: &s.address,
            serf_status: &s.serf_status,
            version: &s.version,
            leader: s.leader,
            last_contact: format_go_duration(s.last_contact),
            last_term: s.last_term,
            last_index: s.last_index,
            healthy: s.healthy,
            voter: s.voter,
            stable_since: rfc3339_ms(s.stable_since_ms),
        }
    }
}

async fn autopilot_health(st: &AppState) -> Result<AutopilotHealth, ApiError> {
    match operator(st, OperatorRequest::AutopilotHealth).await? {
        OperatorReply::Health(h) => Ok(h),
        _ => Err(unexpected()),
    }
}

/// Consul answers 429 while the cluster is unhealthy, with the same body.
fn health_status(h: &AutopilotHealth) -> StatusCode {
    if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    }
}

async fn health(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let h = autopilot_health(&st).await?;
    let servers: Vec<ServerHealthOut<'_>> = h.servers.iter().map(Into::into).collect();
    Ok(reply::json_status(
        health_status(&h),
        &serde_json::json!({
            "Healthy": h.healthy,
            "FailureTolerance": h.failure_tolerance,
            "Servers": servers,
        }),
        p.pretty(),
    ))
}

async fn state(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let h = autopilot_health(&st).await?;
    let mut servers = BTreeMap::new();
    for s in &h.servers {
        let status = if s.leader {
            "leader"
        } else if s.voter {
            "voter"
        } else {
            "non-voter"
        };
        servers.insert(
            s.id.clone(),
            serde_json::json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "NodeStatus": s.serf_status,
                "Version": s.version,
                "LastContact": format_go_duration(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "StableSince": rfc3339_ms(s.stable_since_ms),
                "ReadReplica": false,
                "Status": status,
                "Meta": {},
                "NodeType": "voter",
            }),
        );
    }
    let voters: Vec<&str> = h
        .servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.as_str())
        .collect();
    Ok(reply::json(
        &serde_json::json!({
            "Healthy": h.healthy,
            "FailureTolerance": h.failure_tolerance,
            "OptimisticFailureTolerance": h.failure_tolerance,
            "Servers": servers,
            "Leader": h.leader,
            "Voters": voters,
        }),
        p.pretty(),
    ))
}
