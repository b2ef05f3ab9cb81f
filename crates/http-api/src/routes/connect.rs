//! Connect CA roots: `/v1/connect/ca/roots` and `/v1/agent/connect/ca/roots`
//! (sdk/testutil waits for an active root before any test runs).

use super::{mismatch, AppState};
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tribune_types::model::ops::{ReadRequest, ReadResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/ca/roots", get(roots))
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
