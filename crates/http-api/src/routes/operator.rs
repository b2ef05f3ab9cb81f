//! `/v1/operator/keyring`, from Consul's `agent/operator_endpoint.go`: list, install,
//! use and remove gossip encryption keys across the cluster.
//!
//! The agent answers one [`KeyringPool`] per gossip pool. A pool that failed does not
//! fail the others, but the request does: Consul then answers 500 with every pool's
//! error and every member's message, in `go-multierror`'s list format (a `GET`'s
//! listing is dropped in that case, as Consul's handler drops it).

use super::AppState;
use crate::backend::{KeyringOp, KeyringPool, KeyringRequest};
use crate::error::ApiError;
use crate::json_in;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/operator/keyring",
        get(keyring).post(keyring).put(keyring).delete(keyring),
    )
}

/// Consul's `KeyringResponse` JSON.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PoolOut<'a> {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: &'a str,
    segment: &'a str,
    messages: &'a BTreeMap<String, String>,
    keys: &'a BTreeMap<String, usize>,
    primary_keys: &'a BTreeMap<String, usize>,
    num_nodes: usize,
}

impl<'a> From<&'a KeyringPool> for PoolOut<'a> {
    fn from(p: &'a KeyringPool) -> Self {
        PoolOut {
            wan: p.wan,
            datacenter: &p.datacenter,
            segment: &p.segment,
            messages: &p.messages,
            keys: &p.keys,
            primary_keys: &p.primary_keys,
            num_nodes: p.num_nodes,
        }
    }
}

/// The request body (`{"Key": "..."}`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyIn {
    #[serde(rename = "key")]
    key: String,
}

/// Go's `strconv.Atoi` error text, for Consul's "Error parsing relay factor".
fn relay_factor(p: &Params) -> Result<u8, ApiError> {
    let Some(text) = p.get("relay-factor").filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let n: i64 = text.parse().map_err(|_| {
        ApiError::bad(format!(
            "Error parsing relay factor: strconv.Atoi: parsing {text:?}: invalid syntax"
        ))
    })?;
    // Consul's `ParseRelayFactor`.
    u8::try_from(n)
        .ok()
        .filter(|n| *n <= 5)
        .ok_or_else(|| ApiError::bad("Invalid relay-factor: Relay factor must be in range: [0, 5]"))
}

/// `?local-only`, read with Go's `strconv.ParseBool` (an empty value is "not set").
fn local_only(p: &Params, list: bool) -> Result<bool, ApiError> {
    let local = match p.get("local-only") {
        None | Some("") => return Ok(false),
        Some(v) => tribune_types::goflag::parse_go_bool(v).ok_or_else(|| {
            ApiError::bad(format!(
                "Error parsing local-only: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))
        })?,
    };
    if local && !list {
        return Err(ApiError::bad(
            "Invalid use of local-only: local-only can only be set for list requests",
        ));
    }
    Ok(local)
}

/// Go's `multierror` list format over Consul's `keyringErrorsOrNil`; `None` when no
/// pool failed.
fn errors_text(pools: &[KeyringPool]) -> Option<String> {
    let mut errs = Vec::new();
    for pool in pools.iter().filter(|p| !p.error.is_empty()) {
        let name = if pool.wan {
            "WAN".to_owned()
        } else {
            format!("{} (LAN)", pool.datacenter)
        };
        errs.push(format!("{name} error: {}", pool.error));
        errs.extend(
            pool.messages
                .iter()
                .map(|(node, msg)| format!("{node}: {msg}")),
        );
    }
    match errs.len() {
        0 => None,
        1 => Some(format!("1 error occurred:\n\t* {}\n\n", errs[0])),
        n => {
            let points: Vec<String> = errs.iter().map(|e| format!("* {e}")).collect();
            Some(format!(
                "{n} errors occurred:\n\t{}\n\n",
                points.join("\n\t")
            ))
        }
    }
}

async fn keyring(
    State(st): State<AppState>,
    method: Method,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let list = method == Method::GET;
    let key = if list {
        String::new()
    } else {
        json_in::decode::<KeyIn>(&body)?.key
    };
    let relay_factor = relay_factor(&p)?;
    let local_only = local_only(&p, list)?;
    let op = match method {
        Method::GET => KeyringOp::List,
        Method::POST => KeyringOp::Install(key),
        Method::PUT => KeyringOp::Use(key),
        _ => KeyringOp::Remove(key),
    };
    let pools = st
        .backend
        .keyring(KeyringRequest {
            op,
            relay_factor,
            local_only,
        })
        .await?;
    if let Some(text) = errors_text(&pools) {
        return Err(ApiError::Internal(text));
    }
    if !list {
        // Consul's handler returns no value for writes: 200 with an empty body.
        return Ok(().into_response());
    }
    let out: Vec<PoolOut<'_>> = pools.iter().map(PoolOut::from).collect();
    Ok(reply::json(&out, p.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_use_multierror_list_format() {
        let ok = KeyringPool {
            datacenter: "dc1".into(),
            wan: true,
            ..Default::default()
        };
        assert_eq!(errors_text(std::slice::from_ref(&ok)), None);
        let failed = KeyringPool {
            datacenter: "dc1".into(),
            error: "1/3 nodes reported failure".into(),
            messages: [(
                "c1".to_owned(),
                "Removing the primary key is not allowed".to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            errors_text(&[ok, failed]).unwrap(),
            "2 errors occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\t* c1: Removing the primary key is not allowed\n\n"
        );
        let one = KeyringPool {
            wan: true,
            error: "illegal base64 data at input byte 4".into(),
            ..Default::default()
        };
        assert_eq!(
            errors_text(&[one]).unwrap(),
            "1 error occurred:\n\t* WAN error: illegal base64 data at input byte 4\n\n"
        );
    }
}
