//! Connect CA roots: `/v1/connect/ca/roots` and `/v1/agent/connect/ca/roots`
//! (sdk/testutil waits for an active root before any test runs), and
//! `/v1/agent/connect/authorize`, decided by the intentions (module `intentions`),
//! and `/v1/agent/connect/ca/leaf/{service}`, and the CA configuration
//! (`/v1/connect/ca/configuration`) of the built-in `consul` provider: its TTLs
//! can change (new leaves follow `LeafCertTTL`); a new root key or certificate
//! (a CA rotation) is refused, since Tribune does not rotate CAs yet.

use super::{mismatch, AppState};
use crate::error::ApiError;
use crate::json_in::{decode, get_ci};
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use tribune_types::model::ops::{QueryMeta, QueryOptions, ReadRequest, ReadResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/authorize", post(authorize))
        .route("/v1/agent/connect/ca/leaf/{*service}", get(leaf))
        .route(
            "/v1/connect/ca/configuration",
            get(ca_config_get).put(ca_config_put),
        )
}

/// `GET /v1/agent/connect/ca/leaf/{service}`: the service's leaf certificate and
/// private key from the agent's leaf cache (blocking on `index` until it is
/// renewed).
async fn leaf(
    State(st): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let opts = p.query_options(st.config.query_times)?;
    let leaf = st
        .backend
        .connect_leaf(&service, opts.min_index, opts.max_wait)
        .await?;
    let i = &leaf.issued;
    let body = json!({
        "SerialNumber": i.serial_number,
        "CertPEM": i.cert_pem,
        "PrivateKeyPEM": leaf.private_key_pem,
        "Service": i.service,
        "ServiceURI": i.service_uri,
        "ValidAfter": i.valid_after,
        "ValidBefore": i.valid_before,
        "CreateIndex": i.index,
        "ModifyIndex": i.index,
    });
    let meta = QueryMeta {
        index: i.index,
        known_leader: true,
        ..QueryMeta::default()
    };
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

/// `POST /v1/agent/connect/authorize` (keys canonicalised by [`decode`]).
#[derive(Deserialize)]
struct AuthorizeIn {
    #[serde(rename = "target", default)]
    target: String,
    #[serde(rename = "clientcerturi", default)]
    client_cert_uri: String,
}

/// What a SPIFFE ID names, as far as authorization cares.
#[derive(Debug, PartialEq, Eq)]
enum SpiffeId {
    Service(String),
    /// An agent, mesh gateway or server identity: valid, but not a service.
    Other,
}

/// Consul's `ParseCertURIFromString` for the forms it knows:
/// `spiffe://<trust domain>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<service>` for
/// services, `/agent/…`, `/gateway/…` and a bare trust domain for the others.
fn parse_spiffe(uri: &str) -> Option<SpiffeId> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let parts = match parts.as_slice() {
        ["ap", _, tail @ ..] => tail,
        all => all,
    };
    match parts {
        ["ns", ns, "dc", dc, "svc", svc] if ![ns, dc, svc].iter().any(|s| s.is_empty()) => {
            Some(SpiffeId::Service((*svc).to_owned()))
        }
        [""] | ["agent", ..] | ["gateway", ..] => Some(SpiffeId::Other),
        _ => None,
    }
}

async fn authorize(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: AuthorizeIn = decode(&body)?;
    if input.target.is_empty() {
        return Err(ApiError::bad("Target service must be specified"));
    }
    let source = match parse_spiffe(&input.client_cert_uri) {
        Some(SpiffeId::Service(s)) => s,
        Some(SpiffeId::Other) => {
            return Err(ApiError::bad(
                "ClientCertURI not a valid Service identifier",
            ))
        }
        None => {
            return Err(ApiError::bad(
                "ClientCertURI not a valid Connect identifier",
            ))
        }
    };
    let (ixns, _) = super::intentions::load_for(&st, &p, &input.target).await?;
    let decision = super::intentions::decide(&ixns, &source, &input.target).map(|i| {
        let ixn = format!(
            "{} => {} (Precedence: {})",
            i.source,
            i.destination,
            i.precedence()
        );
        if i.is_l7() {
            // Consul treats L7 intentions as a deny for an L4 question.
            (false, format!("Matched L7 intention: {ixn}"))
        } else {
            (
                i.action() == "allow",
                format!("Matched L4 intention: {ixn}"),
            )
        }
    });
    // No intention matched: the default of an agent without ACLs is to allow.
    let (authorized, reason) =
        decision.unwrap_or((true, "Default behavior configured by ACLs".to_owned()));
    Ok(reply::json(
        &json!({"Authorized": authorized, "Reason": reason}),
        p.pretty(),
    ))
}

async fn roots(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let (res, meta) = st.read(&p, ReadRequest::CaRoots).await?;
    let ReadResult::CaRoots(roots) = res else {
        return Err(mismatch("ca roots"));
    };
    if p.get("pem") == Some("true") {
        let pem: String = roots.iter().map(|r| r.root_cert.clone()).collect();
        let mut resp = pem.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        reply::add_meta_headers(resp.headers_mut(), &meta);
        return Ok(resp);
    }
    let active = roots.iter().find(|r| r.active);
    let body = json!({
        "ActiveRootID": active.map(|r| r.id.clone()).unwrap_or_default(),
        "TrustDomain": roots.first().map(|r| r.trust_domain.clone()).unwrap_or_default(),
        "Roots": roots.iter().map(|r| json!({
            "ID": r.id,
            "Name": r.name,
            "SerialNumber": r.serial_number,
            "SigningKeyID": r.signing_key_id,
            "ExternalTrustDomain": r.trust_domain.trim_end_matches(".consul"),
            "NotBefore": r.not_before,
            "NotAfter": r.not_after,
            "RootCert": r.root_cert,
            "IntermediateCerts": [],
            "Active": r.active,
            "PrivateKeyType": "ec",
            "PrivateKeyBits": 256,
            "CreateIndex": r.raft.create_index,
            "ModifyIndex": r.raft.modify_index,
        })).collect::<Vec<_>>(),
    });
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

/// `LeafCertTTL`, `IntermediateCertTTL` and `RootCertTTL` when a configuration
/// leaves them out (Consul's defaults).
const CA_DEFAULTS: [(&str, &str); 3] = [
    ("LeafCertTTL", "72h"),
    ("IntermediateCertTTL", "8760h"),
    ("RootCertTTL", "87600h"),
];

/// `GET /v1/connect/ca/configuration`.
async fn ca_config_get(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let (res, meta) = st.read(&p, ReadRequest::CaConfig).await?;
    let ReadResult::CaConfig(config) = res else {
        return Err(mismatch("ca configuration"));
    };
    let body = match config {
        Some(c) => json!({
            "Provider": c.provider,
            "Config": serde_json::from_str::<serde_json::Value>(&c.config_json)
                .unwrap_or_else(|_| json!({})),
            "State": if c.state.is_empty() { serde_json::Value::Null } else { json!(c.state) },
            "ForceWithoutCrossSigning": c.force_without_cross_signing,
            "CreateIndex": c.raft.create_index,
            "ModifyIndex": c.raft.modify_index,
        }),
        None => {
            let config: serde_json::Map<String, serde_json::Value> = CA_DEFAULTS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            json!({
                "Provider": "consul",
                "Config": config,
                "State": null,
                "ForceWithoutCrossSigning": false,
                "CreateIndex": meta.index,
                "ModifyIndex": meta.index,
            })
        }
    };
    Ok(reply::json_meta(&body, &meta, p.pretty()))
}

/// A top-level key of `obj`, matched without regard to case.
/// A duration of a provider configuration: a Go duration string, or a number of
/// nanoseconds (the Go client sends `time.Duration` values as numbers).
fn ca_duration(
    config: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    default: &str,
) -> Result<std::time::Duration, ApiError> {
    let bad = |what: String| ApiError::Internal(format!("error parsing Consul CA config: {what}"));
    match get_ci(config, name) {
        None | Some(serde_json::Value::Null) => {
            Ok(tribune_types::parse_go_duration(default).unwrap_or_default())
        }
        Some(serde_json::Value::String(s)) => tribune_types::parse_go_duration(s)
            .map_err(|e| bad(format!("'{name}' expected a duration, got {s:?}: {e}"))),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(std::time::Duration::from_nanos)
            .ok_or_else(|| bad(format!("'{name}' expected a duration, got {n}"))),
        Some(other) => Err(bad(format!("'{name}' expected a duration, got {other}"))),
    }
}

/// `PUT /v1/connect/ca/configuration`.
async fn ca_config_put(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    use serde_json::Value;
    use tribune_types::format_go_duration;
    use tribune_types::model::ops::WriteRequest;
    st.check_dc(&p)?;
    let obj = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(ApiError::bad(
                "Request decode failed: expected a JSON object",
            ))
        }
        Err(e) => return Err(ApiError::bad(format!("Request decode failed: {e}"))),
    };
    let provider = get_ci(&obj, "Provider")
        .and_then(Value::as_str)
        .unwrap_or("");
    match provider {
        "consul" => {}
        "vault" | "aws-pca" => {
            return Err(ApiError::Internal(format!(
                "CA provider {provider:?} is not supported by Tribune; only \"consul\" is"
            )))
        }
        other => return Err(ApiError::Internal(format!("unknown CA provider {other:?}"))),
    }
    let config = match get_ci(&obj, "Config") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => {
            return Err(ApiError::bad(
                "Request decode failed: Config must be an object",
            ))
        }
    };
    let force = get_ci(&obj, "ForceWithoutCrossSigning")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // Consul's CommonCAProviderConfig.Validate and the consul provider's check.
    let [(_, leaf_default), (_, inter_default), (_, root_default)] = CA_DEFAULTS;
    let leaf = ca_duration(&config, "LeafCertTTL", leaf_default)?;
    let intermediate = ca_duration(&config, "IntermediateCertTTL", inter_default)?;
    let root = ca_duration(&config, "RootCertTTL", root_default)?;
    let hour = std::time::Duration::from_secs(3600);
    if root < intermediate {
        return Err(ApiError::Internal(format!(
            "root cert TTL is set and is not greater than intermediate cert ttl. root cert ttl: {}, intermediate cert ttl: {}",
            format_go_duration(root),
            format_go_duration(intermediate)
        )));
    }
    if leaf < hour {
        return Err(ApiError::Internal(
            "leaf cert TTL must be greater or equal than 1h0m0s".into(),
        ));
    }
    if leaf > hour * 8760 {
        return Err(ApiError::Internal(
            "leaf cert TTL must be less than 8760h0m0s".into(),
        ));
    }
    if intermediate < hour * 3 {
        return Err(ApiError::Internal(
            "Intermediate Cert TTL must be greater or equal than 3h".into(),
        ));
    }
    if intermediate < leaf * 3 {
        return Err(ApiError::Internal(format!(
            "Intermediate Cert TTL must be greater or equal than 3 * LeafCertTTL (>={}).",
            format_go_duration(leaf * 3)
        )));
    }
    let key_type = match get_ci(&config, "PrivateKeyType") {
        None | Some(Value::Null) => "ec",
        Some(v) => v.as_str().unwrap_or("?"),
    };
    let key_bits = match get_ci(&config, "PrivateKeyBits") {
        None | Some(Value::Null) => Some(256),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(v) => v.as_u64(),
    };
    match (key_type, key_bits) {
        ("ec", Some(224 | 256 | 384 | 521)) | ("rsa", Some(2048 | 4096)) => {}
        ("ec", _) => {
            return Err(ApiError::Internal(
                "EC key length must be one of (224, 256, 384, 521) bits".into(),
            ))
        }
        ("rsa", _) => {
            return Err(ApiError::Internal(
                "RSA key length must be 2048 or 4096 bits".into(),
            ))
        }
        _ => {
            return Err(ApiError::Internal(
                "private key type must be either 'ec' or 'rsa'".into(),
            ))
        }
    }

    // A different root key, certificate or key type would be a CA rotation. The
    // roots are read as they are now (default consistency, never blocking): the
    // PUT's own query string says nothing about this read.
    let (res, _) = st
        .backend
        .read(ReadRequest::CaRoots, QueryOptions::default())
        .await?;
    let ReadResult::CaRoots(roots) = res else {
        return Err(mismatch("ca roots"));
    };
    let active = roots.iter().find(|r| r.active);
    let text = |name: &str| get_ci(&config, name).and_then(Value::as_str).unwrap_or("");
    let key = text("PrivateKey");
    let cert = text("RootCert");
    let new_root = (!key.is_empty() && active.is_none_or(|r| r.private_key.trim() != key.trim()))
        || (!cert.is_empty() && active.is_none_or(|r| r.root_cert.trim() != cert.trim()));
    // The built-in CA's root is an EC P-256 key.
    let key_type_changes = (key_type, key_bits) != ("ec", Some(256));
    if new_root || key_type_changes {
        return Err(ApiError::Internal(
            "CA rotation is not supported by Tribune: the configuration may change its TTLs, \
             not the root's private key, certificate or key type"
                .into(),
        ));
    }

    // Consul's built-in provider keeps `test_state` as its provider state.
    let state = get_ci(&config, "test_state")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let config = tribune_types::model::CaConfig {
        provider: provider.to_owned(),
        config_json: Value::Object(config).to_string(),
        state,
        force_without_cross_signing: force,
        leaf_cert_ttl_secs: leaf.as_secs(),
        raft: Default::default(),
    };
    st.backend
        .write(WriteRequest::CaSetConfig { config, cas: None })
        .await?;
    Ok(axum::http::StatusCode::OK.into_response())
}
