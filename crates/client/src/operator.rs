//! `/v1/operator`: the gossip keyring, the Raft peer set and Autopilot
//! (`api.Operator()` in the Go client).
//!
//! - Keyring: list, install, use and remove gossip encryption keys across the cluster.
//! - Raft: read the peer configuration, remove a stale peer, transfer leadership.
//! - Autopilot: read and (check-and-)set its configuration, read server health and
//!   the full autopilot state.
//!
//! Every response type is lenient (`#[serde(default)]`, `null` collections read as
//! empty): these are diagnostic endpoints, and an operator on a half-broken cluster
//! is better served by a partial answer than by a decode error.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::serde_util::null_default;
use crate::{Client, Error, QueryOptions};

/// One gossip pool's keys (`api.KeyringResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KeyringResponse {
    /// The WAN pool rather than a datacenter's LAN pool.
    #[serde(rename = "WAN")]
    pub wan: bool,
    /// The datacenter.
    pub datacenter: String,
    /// The network segment.
    pub segment: String,
    /// Member name → message, for members that reported a problem.
    pub messages: BTreeMap<String, String>,
    /// Base64 key → how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Base64 key → how many members encrypt with it.
    pub primary_keys: BTreeMap<String, usize>,
    /// Members in the pool.
    pub num_nodes: usize,
}

/// Options of a keyring operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringOptions {
    /// `?relay-factor` (0–5).
    pub relay_factor: u8,
    /// `?local-only` (list only): leave the WAN pool out.
    pub local_only: bool,
    /// ACL token for this request.
    pub token: Option<String>,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    #[serde(rename = "Key")]
    key: &'a str,
}

const KEYRING: &str = "/v1/operator/keyring";
const RAFT_CONFIGURATION: &str = "/v1/operator/raft/configuration";
const RAFT_PEER: &str = "/v1/operator/raft/peer";
const RAFT_TRANSFER_LEADER: &str = "/v1/operator/raft/transfer-leader";
const AUTOPILOT_CONFIGURATION: &str = "/v1/operator/autopilot/configuration";
const AUTOPILOT_HEALTH: &str = "/v1/operator/autopilot/health";
const AUTOPILOT_STATE: &str = "/v1/operator/autopilot/state";

/// Go's `api.ReadableDuration` on the wire: a duration string (`"200ms"`), though
/// Go also accepts a bare number of nanoseconds; written back as a string.
mod readable_duration {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&tribune_types::format_go_duration(*d))
    }

    /// `null` reads as zero, like Go's nil `*ReadableDuration`. A negative value
    /// (Go durations are signed) reads as zero too rather than failing the whole
    /// response: these are "time since" figures where below zero means "just now".
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(Duration::ZERO),
            Some(Value::String(text)) if text.trim_start().starts_with('-') => Ok(Duration::ZERO),
            Some(Value::String(text)) => tribune_types::parse_go_duration(&text)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration: {e}"))),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(nanos) if nanos.is_finite() => {
                    // `as` saturates: a negative count becomes 0, a huge one u64::MAX.
                    Ok(Duration::from_nanos(nanos as u64))
                }
                _ => Err(serde::de::Error::custom(format!("invalid duration {n}"))),
            },
            Some(other) => Err(serde::de::Error::custom(format!(
                "invalid duration {other}"
            ))),
        }
    }
}

/// One server in the Raft configuration (`api.RaftServer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RaftServer {
    /// The server's Raft ID (its node ID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Its node name, or `(unknown)` when the catalog does not know it.
    pub node: String,
    /// Its Raft address (`ip:port`).
    pub address: String,
    /// Whether it is the current leader.
    pub leader: bool,
    /// Raft protocol version (`"3"`); empty from very old servers.
    pub protocol_version: String,
    /// Whether it has a vote (false while staging, or for a non-voter).
    pub voter: bool,
    /// The last log index it has, as the leader sees it.
    pub last_index: u64,
}

/// The Raft peer set (`api.RaftConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// Every server in the configuration.
    #[serde(deserialize_with = "null_default")]
    pub servers: Vec<RaftServer>,
    /// Raft index of this configuration.
    pub index: u64,
}

/// `POST /v1/operator/raft/transfer-leader`'s answer (`api.TransferLeaderResponse`).
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TransferLeaderResponse {
    success: bool,
}

/// Autopilot's configuration (`api.AutopilotConfiguration`). Fields are in Go's
/// order, so the JSON written matches the Go client's byte for byte.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotConfiguration {
    /// Remove dead servers from the Raft peer set when new ones join.
    pub cleanup_dead_servers: bool,
    /// How long a server may go without leader contact before it is unhealthy.
    #[serde(with = "readable_duration")]
    pub last_contact_threshold: Duration,
    /// How many log entries a server may trail the leader by and stay healthy.
    pub max_trailing_logs: u64,
    /// Fewest servers autopilot keeps when pruning dead ones.
    pub min_quorum: u64,
    /// How long a new server must be healthy before it is promoted to voter.
    #[serde(with = "readable_duration")]
    pub server_stabilization_time: Duration,
    /// (Enterprise) node-meta key separating servers into redundancy zones.
    pub redundancy_zone_tag: String,
    /// (Enterprise) do not hold back new servers for upgrade migrations.
    pub disable_upgrade_migration: bool,
    /// (Enterprise) node-meta key carrying the version for upgrade migrations.
    pub upgrade_version_tag: String,
    /// Raft index of creation (read-only).
    pub create_index: u64,
    /// Raft index of the last change: the check-and-set token of
    /// [`Operator::autopilot_cas_configuration`].
    pub modify_index: u64,
}

/// One server's health as the leader sees it (`api.ServerHealth`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServerHealth {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Raft address.
    pub address: String,
    /// Its gossip status (`alive`, `failed`, `left`, ...).
    pub serf_status: String,
    /// Its Consul (Tribune) version.
    pub version: String,
    /// Whether it is the leader.
    pub leader: bool,
    /// Time since its last contact with the leader.
    #[serde(with = "readable_duration")]
    pub last_contact: Duration,
    /// Highest term in its log.
    pub last_term: u64,
    /// Highest index in its log.
    pub last_index: u64,
    /// Healthy under the current autopilot configuration.
    pub healthy: bool,
    /// Whether it has a vote.
    pub voter: bool,
    /// When `healthy` last changed (RFC 3339, as sent).
    pub stable_since: String,
}

/// The cluster's health (`api.OperatorHealthReply`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct OperatorHealthReply {
    /// Every server is healthy.
    pub healthy: bool,
    /// How many servers could fail without losing quorum.
    pub failure_tolerance: i64,
    /// Each server's health.
    #[serde(deserialize_with = "null_default")]
    pub servers: Vec<ServerHealth>,
}

/// The full autopilot state (`api.AutopilotState`). Fields are in Go's order and
/// keep its `omitempty`s, so `operator autopilot state -format=json` prints what
/// Consul prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotState {
    /// Every server is healthy.
    pub healthy: bool,
    /// How many voters could fail without losing quorum.
    pub failure_tolerance: i64,
    /// Failure tolerance counting healthy non-voters that could be promoted.
    pub optimistic_failure_tolerance: i64,
    /// Raft ID → that server's state.
    #[serde(deserialize_with = "null_default")]
    pub servers: BTreeMap<String, AutopilotServer>,
    /// The leader's Raft ID.
    pub leader: String,
    /// Raft IDs of the voters.
    #[serde(deserialize_with = "null_default")]
    pub voters: Vec<String>,
    /// (Enterprise) Raft IDs of read replicas.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub read_replicas: Vec<String>,
    /// (Enterprise) zone name → zone.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub redundancy_zones: BTreeMap<String, AutopilotZone>,
    /// (Enterprise) upgrade migration progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<AutopilotUpgrade>,
}

/// One server in [`AutopilotState`] (`api.AutopilotServer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotServer {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Raft address.
    pub address: String,
    /// Gossip status (`alive`, `failed`, ...).
    pub node_status: String,
    /// Its version.
    pub version: String,
    /// Time since its last contact with the leader.
    #[serde(with = "readable_duration")]
    pub last_contact: Duration,
    /// Highest term in its log.
    pub last_term: u64,
    /// Highest index in its log.
    pub last_index: u64,
    /// Healthy under the current autopilot configuration.
    pub healthy: bool,
    /// When `healthy` last changed (RFC 3339, as sent).
    pub stable_since: String,
    /// (Enterprise) its redundancy zone.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub redundancy_zone: String,
    /// (Enterprise) the version used for upgrade migrations.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub upgrade_version: String,
    /// (Enterprise) a read replica.
    pub read_replica: bool,
    /// `leader`, `voter`, `non-voter`, `staging` or `none` (text, so a new status
    /// does not fail the read).
    pub status: String,
    /// Its node metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// `voter`, `read-replica`, `zone-voter`, ...
    pub node_type: String,
}

/// (Enterprise) one redundancy zone (`api.AutopilotZone`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotZone {
    /// Raft IDs of the zone's servers.
    #[serde(deserialize_with = "null_default")]
    pub servers: Vec<String>,
    /// Raft IDs of the zone's voters.
    #[serde(deserialize_with = "null_default")]
    pub voters: Vec<String>,
    /// How many of the zone's servers could fail.
    pub failure_tolerance: i64,
}

/// (Enterprise) upgrade migration progress (`api.AutopilotUpgrade`, without the
/// per-zone breakdown).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotUpgrade {
    /// `idle`, `await-new-voters`, `promoting`, ...
    pub status: String,
    /// The version being upgraded to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_version: String,
    /// Voters already on the target version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub target_version_voters: Vec<String>,
    /// Non-voters on the target version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub target_version_non_voters: Vec<String>,
    /// Read replicas on the target version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub target_version_read_replicas: Vec<String>,
    /// Voters on another version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub other_version_voters: Vec<String>,
    /// Non-voters on another version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub other_version_non_voters: Vec<String>,
    /// Read replicas on another version.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub other_version_read_replicas: Vec<String>,
}

/// The `/v1/operator` endpoints. Obtained from [`Client::operator`].
#[derive(Clone, Copy, Debug)]
pub struct Operator<'a> {
    client: &'a Client,
}

impl<'a> Operator<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Operator { client }
    }

    fn keyring_request(&self, method: Method, opts: &KeyringOptions) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, KEYRING, None, opts.token.as_deref());
        if opts.relay_factor > 0 {
            req = req.query(&[("relay-factor", opts.relay_factor.to_string())]);
        }
        if opts.local_only {
            req = req.query(&[("local-only", "true")]);
        }
        req
    }

    /// `GET`: the keys of every pool.
    pub async fn keyring_list(&self, opts: &KeyringOptions) -> Result<Vec<KeyringResponse>, Error> {
        let resp = self
            .client
            .send(self.keyring_request(Method::GET, opts), false)
            .await?;
        let out: Option<Vec<KeyringResponse>> = Client::decode(resp, KEYRING).await?;
        Ok(out.unwrap_or_default())
    }

    async fn keyring_write(
        &self,
        method: Method,
        key: &str,
        opts: &KeyringOptions,
    ) -> Result<(), Error> {
        let req = self.keyring_request(method, opts).json(&KeyBody { key });
        self.client.write_unit(req).await
    }

    /// `POST`: installs a key everywhere.
    pub async fn keyring_install(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::POST, key, opts).await
    }

    /// `PUT`: makes an installed key the primary everywhere.
    pub async fn keyring_use(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::PUT, key, opts).await
    }

    /// `DELETE`: removes a key that is not the primary everywhere.
    pub async fn keyring_remove(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::DELETE, key, opts).await
    }

    /// `GET /v1/operator/raft/configuration`: the Raft peer set. Honours
    /// `opts.stale` (any server answers) and `opts.datacenter`.
    pub async fn raft_get_configuration(
        &self,
        opts: &QueryOptions,
    ) -> Result<RaftConfiguration, Error> {
        let (config, _) = self
            .client
            .get_json::<RaftConfiguration>(RAFT_CONFIGURATION, opts, &[])
            .await?;
        Ok(config)
    }

    /// `DELETE /v1/operator/raft/peer?id=`: removes a stale peer by Raft ID.
    pub async fn raft_remove_peer_by_id(&self, id: &str) -> Result<(), Error> {
        self.raft_remove_peer("id", id).await
    }

    /// `DELETE /v1/operator/raft/peer?address=`: removes a stale peer by its Raft
    /// address (`ip:port`).
    pub async fn raft_remove_peer_by_address(&self, address: &str) -> Result<(), Error> {
        self.raft_remove_peer("address", address).await
    }

    async fn raft_remove_peer(&self, key: &str, value: &str) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::DELETE, RAFT_PEER, None, None)
            .query(&[(key, value)]);
        self.client.write_unit(req).await
    }

    /// `POST /v1/operator/raft/transfer-leader`: hands leadership to the server with
    /// Raft ID `id`, or to one the leader picks when `id` is `None` or empty.
    /// Returns the server's `Success`.
    pub async fn raft_leader_transfer(
        &self,
        id: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<bool, Error> {
        let mut req = self
            .client
            .request(
                Method::POST,
                RAFT_TRANSFER_LEADER,
                opts.datacenter.as_deref(),
                opts.token.as_deref(),
            )
            .query(&opts.params());
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            req = req.query(&[("id", id)]);
        }
        let resp = self.client.send(req, false).await?;
        let out: TransferLeaderResponse = Client::decode(resp, RAFT_TRANSFER_LEADER).await?;
        Ok(out.success)
    }

    /// `GET /v1/operator/autopilot/configuration`.
    pub async fn autopilot_get_configuration(
        &self,
        opts: &QueryOptions,
    ) -> Result<AutopilotConfiguration, Error> {
        let (config, _) = self
            .client
            .get_json::<AutopilotConfiguration>(AUTOPILOT_CONFIGURATION, opts, &[])
            .await?;
        Ok(config)
    }

    /// `PUT /v1/operator/autopilot/configuration`: replaces the configuration
    /// unconditionally.
    pub async fn autopilot_set_configuration(
        &self,
        config: &AutopilotConfiguration,
    ) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, AUTOPILOT_CONFIGURATION, None, None)
            .json(config);
        self.client.write_unit(req).await
    }

    /// `PUT /v1/operator/autopilot/configuration?cas=<ModifyIndex>`: replaces the
    /// configuration only if it has not changed since `config` was read. `false`
    /// means someone else changed it first; read it again and retry.
    pub async fn autopilot_cas_configuration(
        &self,
        config: &AutopilotConfiguration,
    ) -> Result<bool, Error> {
        let req = self
            .client
            .request(Method::PUT, AUTOPILOT_CONFIGURATION, None, None)
            .query(&[("cas", config.modify_index.to_string())])
            .json(config);
        let resp = self.client.send(req, false).await?;
        let body = resp.text().await.map_err(Error::transport)?;
        // The Go client looks for "true" anywhere in the body rather than decoding
        // it; do the same, so a server adding whitespace or a newline is no error.
        Ok(body.contains("true"))
    }

    /// `GET /v1/operator/autopilot/health`. The agent answers 429 when the cluster
    /// is unhealthy, with the same JSON body; that is a result here, not an error
    /// (check [`OperatorHealthReply::healthy`]).
    pub async fn autopilot_server_health(
        &self,
        opts: &QueryOptions,
    ) -> Result<OperatorHealthReply, Error> {
        let req = self.client.query_request(AUTOPILOT_HEALTH, opts, &[]);
        match self.client.send(req, false).await {
            Ok(resp) => Client::decode(resp, AUTOPILOT_HEALTH).await,
            Err(Error::Status { code: 429, body }) => {
                serde_json::from_str(&body).map_err(|source| Error::Decode {
                    path: AUTOPILOT_HEALTH.to_owned(),
                    source,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/operator/autopilot/state`.
    pub async fn autopilot_state(&self, opts: &QueryOptions) -> Result<AutopilotState, Error> {
        let (state, _) = self
            .client
            .get_json::<AutopilotState>(AUTOPILOT_STATE, opts, &[])
            .await?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use axum::http::StatusCode;
    use axum::routing::{get, put};
    use axum::Router;

    /// Serves `router` on a free port and returns a client for it.
    async fn serve(router: Router) -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Client::new(Config {
            address: addr.to_string(),
            ..Config::default()
        })
        .unwrap()
    }

    const HEALTH: &str = r#"{"Healthy":false,"FailureTolerance":0,"Servers":[
        {"ID":"a","Name":"s1","Address":"127.0.0.1:8300","SerfStatus":"alive","Version":"1.20.0",
         "Leader":true,"LastContact":"0s","LastTerm":2,"LastIndex":40,"Healthy":true,"Voter":true,
         "StableSince":"2026-11-30T15:00:00Z"},
        {"ID":"b","Name":"s2","Address":"127.0.0.2:8300","SerfStatus":"failed","Version":"1.20.0",
         "Leader":false,"LastContact":"-1ns","LastTerm":2,"LastIndex":31,"Healthy":false,"Voter":true,
         "StableSince":"2026-11-30T15:01:00Z"}]}"#;

    #[test]
    fn raft_configuration_decodes_and_tolerates_nulls() {
        let config: RaftConfiguration = serde_json::from_str(
            r#"{"Servers":[{"ID":"id1","Node":"s1","Address":"127.0.0.1:8300","Leader":true,
                "Voter":true,"ProtocolVersion":"3","LastIndex":123}],"Index":45}"#,
        )
        .unwrap();
        assert_eq!(config.index, 45);
        assert_eq!(
            config.servers,
            [RaftServer {
                id: "id1".into(),
                node: "s1".into(),
                address: "127.0.0.1:8300".into(),
                leader: true,
                protocol_version: "3".into(),
                voter: true,
                last_index: 123,
            }]
        );
        let empty: RaftConfiguration = serde_json::from_str(r#"{"Servers":null}"#).unwrap();
        assert_eq!(empty, RaftConfiguration::default());
    }

    #[test]
    fn autopilot_configuration_round_trips_in_go_field_order() {
        let text = r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":4,"ModifyIndex":4}"#;
        let config: AutopilotConfiguration = serde_json::from_str(text).unwrap();
        assert_eq!(config.last_contact_threshold, Duration::from_millis(200));
        assert_eq!(config.server_stabilization_time, Duration::from_secs(10));
        assert_eq!(config.max_trailing_logs, 250);
        assert_eq!(serde_json::to_string(&config).unwrap(), text);
        // Go's ReadableDuration also reads bare nanoseconds, and nil as zero.
        let config: AutopilotConfiguration = serde_json::from_str(
            r#"{"LastContactThreshold":200000000,"ServerStabilizationTime":null}"#,
        )
        .unwrap();
        assert_eq!(config.last_contact_threshold, Duration::from_millis(200));
        assert_eq!(config.server_stabilization_time, Duration::ZERO);
        assert!(serde_json::from_str::<AutopilotConfiguration>(
            r#"{"LastContactThreshold":"soon"}"#
        )
        .is_err());
    }

    #[test]
    fn autopilot_state_is_lenient() {
        let state: AutopilotState = serde_json::from_str(
            r#"{"Healthy":true,"FailureTolerance":1,"OptimisticFailureTolerance":1,
                "Servers":{"a":{"ID":"a","Name":"s1","LastContact":"2ms","Status":"leader",
                "Meta":null,"Unknown":1}},"Leader":"a","Voters":["a"],"ReadReplicas":null}"#,
        )
        .unwrap();
        assert_eq!(state.servers["a"].last_contact, Duration::from_millis(2));
        assert_eq!(state.servers["a"].status, "leader");
        assert!(state.servers["a"].meta.is_empty());
        assert_eq!(state.upgrade, None);
        // Go's omitempty fields stay out when re-encoded.
        let json = serde_json::to_string(&state).unwrap();
        assert!(!json.contains("ReadReplicas") && !json.contains("Upgrade"));
        assert!(!json.contains("RedundancyZone\""));
    }

    #[tokio::test]
    async fn health_is_a_result_on_429_and_cas_reads_the_bool() {
        let client = serve(
            Router::new()
                .route(
                    AUTOPILOT_HEALTH,
                    get(|| async { (StatusCode::TOO_MANY_REQUESTS, HEALTH) }),
                )
                .route(
                    AUTOPILOT_CONFIGURATION,
                    put(|q: axum::extract::RawQuery, body: String| async move {
                        // Accept only the expected CAS index and body.
                        let ok =
                            q.0.as_deref() == Some("cas=7") && body.contains("\"ModifyIndex\":7");
                        if ok {
                            "true\n"
                        } else {
                            "false"
                        }
                    }),
                )
                .route(
                    RAFT_PEER,
                    axum::routing::delete(|| async {
                        (StatusCode::INTERNAL_SERVER_ERROR, "no such peer\n")
                    }),
                ),
        )
        .await;
        let op = client.operator();
        let health = op
            .autopilot_server_health(&QueryOptions::default())
            .await
            .unwrap();
        assert!(!health.healthy);
        assert_eq!(health.servers.len(), 2);
        assert_eq!(health.servers[1].last_contact, Duration::ZERO);
        assert_eq!(health.servers[1].serf_status, "failed");

        let mut config = AutopilotConfiguration {
            modify_index: 7,
            ..Default::default()
        };
        assert!(op.autopilot_cas_configuration(&config).await.unwrap());
        config.modify_index = 8;
        assert!(!op.autopilot_cas_configuration(&config).await.unwrap());

        let err = op.raft_remove_peer_by_id("x").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unexpected response code: 500 (no such peer)"
        );
    }
}
