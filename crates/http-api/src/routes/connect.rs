//! Connect CA roots: `/v1/connect/ca/roots` and `/v1/agent/connect/ca/roots`
//! (sdk/testutil waits for an active root before any test runs), and
//! `/v1/agent/connect/authorize`, decided by the intentions (module `intentions`),
//! and `/v1/agent/connect/ca/leaf/{service}`.

use super::{mismatch, AppState};
use crate::error::ApiError;
use crate::json_in::decode;
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
use tribune_types::model::ops::{QueryMeta, ReadRequest, ReadResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/authorize", post(authorize))
        .route("/v1/agent/connect/ca/leaf/{*service}", get(leaf))
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
    let opts = p.query_options()?;
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
    let (ixns, _) = super::intentions::load(&st, &p).await?;
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
