//! `/v1/session/*`: create, destroy, renew, info, node, list. Defaults and body quirks
//! follow Consul's `agent/session_endpoint.go`; the servers validate the rest (node
//! and checks exist, TTL range, lock-delay cap).

use super::{apply_filter, bool_reply, mismatch, AppState};
use crate::dto::input::SessionCreateIn;
use crate::dto::output::SessionOut;
use crate::error::ApiError;
use crate::json_in::normalize;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteRequest};
use tribune_types::model::{ServiceCheckRef, Session, SessionBehavior};
use tribune_types::SessionId;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/destroy/", put(missing_session))
        .route("/v1/session/destroy/{*id}", put(destroy))
        .route("/v1/session/renew/", put(missing_session))
        .route("/v1/session/renew/{*id}", put(renew))
        .route("/v1/session/info/", get(missing_session))
        .route("/v1/session/info/{*id}", get(info))
        .route("/v1/session/node/", get(missing_node))
        .route("/v1/session/node/{*node}", get(node))
        .route("/v1/session/list", get(list))
}

/// Parses a session ID the way Consul's UUID index does: exactly the 36-character
/// hyphenated form (the `uuid` crate alone would also take braced, URN and bare-hex
/// spellings that Consul rejects). The error is go-memdb's wording.
pub(super) fn parse_session_id(s: &str) -> Result<SessionId, &'static str> {
    if s.len() != 36 {
        return Err("uuid string is wrong length");
    }
    let hyphens_ok = s
        .char_indices()
        .all(|(i, c)| (c == '-') == matches!(i, 8 | 13 | 18 | 23));
    if !hyphens_ok {
        return Err("uuid is improperly formatted");
    }
    uuid::Uuid::parse_str(s)
        .map(SessionId)
        .map_err(|_| "uuid is improperly formatted")
}

/// The ID to look up. Consul 1.20 indexes sessions by their ID as a string, so a
/// malformed ID is simply not found (py-consul's tests rely on `info("1" * 36)` being
/// `None` and `renew` of it a 404). No session has the nil UUID, so asking for it gives
/// "not found" with the sessions table's index, as a blocking client expects.
fn session_id(s: &str) -> SessionId {
    parse_session_id(s).unwrap_or_default()
}

async fn missing_session() -> ApiError {
    ApiError::bad("Missing session")
}

async fn missing_node() -> ApiError {
    ApiError::bad("Missing node name")
}

/// The `{"ID": …}` answer of a create.
#[derive(Serialize)]
struct CreateOut {
    #[serde(rename = "ID")]
    id: String,
}

/// Decodes the optional create body: empty or `null` means every default.
fn decode_create(body: &[u8]) -> Result<SessionCreateIn, ApiError> {
    let decode_err = |e: serde_json::Error| ApiError::bad(format!("Request decode failed: {e}"));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SessionCreateIn::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(decode_err)?;
    if value.is_null() {
        return Ok(SessionCreateIn::default());
    }
    serde_json::from_value(normalize(value)).map_err(decode_err)
}

/// Consul's `Session.Apply` check; an unknown behavior is its 500, not a 400.
fn behavior(s: &str) -> Result<SessionBehavior, ApiError> {
    match s {
        "" | "release" => Ok(SessionBehavior::Release),
        "delete" => Ok(SessionBehavior::Delete),
        other => Err(ApiError::Internal(format!(
            "Invalid Behavior setting '{other}'"
        ))),
    }
}

async fn create(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    let input = decode_create(&body)?;
    let behavior = behavior(&input.behavior)?;
    let node = match &input.node {
        Some(n) => n.clone(),
        None => st.backend.agent_info().node_name,
    };
    // The ID is chosen here, before proposing, so that applying the raft entry is
    // deterministic on every server.
    let session = Session {
        id: SessionId(uuid::Uuid::new_v4()),
        name: input.name.clone(),
        node: node.into(),
        lock_delay: input.lock_delay(),
        behavior,
        ttl: input.ttl.clone(),
        node_checks: input.node_checks(),
        service_checks: input
            .servicechecks
            .iter()
            .map(|c| ServiceCheckRef {
                id: c.id.clone(),
                namespace: c.namespace.clone(),
            })
            .collect(),
        raft: Default::default(),
    };
    let id = session.id.to_string();
    st.backend
        .write(WriteRequest::SessionCreate(session))
        .await?;
    Ok(reply::json(&CreateOut { id }, p.pretty()))
}

async fn destroy(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    st.check_dc(&p)?;
    // A malformed ID names no session: destroying it is the same no-op as destroying
    // an unknown one.
    if let Ok(id) = parse_session_id(&id) {
        st.backend
            .write(WriteRequest::SessionDestroy { id })
            .await?;
    }
    Ok(bool_reply(true, p.pretty()))
}

async fn renew(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = session_id(&raw);
    let (res, meta) = st.read(&p, ReadRequest::SessionRenew { id }).await?;
    let ReadResult::Sessions(sessions) = res else {
        return Err(mismatch("session renew"));
    };
    // The Go client's `RenewPeriodic` stops on exactly this 404.
    if sessions.is_empty() {
        return Err(ApiError::NotFound(format!("Session id '{raw}' not found")));
    }
    let out: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

async fn info(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = session_id(&id);
    let (res, meta) = st.read(&p, ReadRequest::SessionGet { id }).await?;
    let ReadResult::Sessions(sessions) = res else {
        return Err(mismatch("session info"));
    };
    let out: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

async fn node(
    State(st): State<AppState>,
    Path(node): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let req = ReadRequest::SessionNode { node: node.into() };
    filtered_list(st, p, req, "session node").await
}

async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    filtered_list(st, p, ReadRequest::SessionList, "session list").await
}

async fn filtered_list(
    st: AppState,
    p: Params,
    req: ReadRequest,
    what: &str,
) -> Result<Response, ApiError> {
    let filter = p.filter()?;
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::Sessions(sessions) = res else {
        return Err(mismatch(what));
    };
    let rows: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    Ok(reply::json_meta(
        &apply_filter(rows, filter.as_ref())?,
        &meta,
        p.pretty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_parse_like_consul() {
        let good = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
        assert_eq!(
            parse_session_id(good).map(|s| s.to_string()).as_deref(),
            Ok(good)
        );
        assert_eq!(
            parse_session_id("ADF4238A-882B-9DDC-4A9D-5B6758E4159E").map(|s| s.to_string()),
            Ok(good.to_owned())
        );
        assert_eq!(parse_session_id("nope"), Err("uuid string is wrong length"));
        // Bare hex is a valid `uuid` spelling but not Consul's.
        assert_eq!(
            parse_session_id("adf4238a882b9ddc4a9d5b6758e4159e"),
            Err("uuid string is wrong length")
        );
        assert_eq!(
            parse_session_id("adf4238a-882b-9ddc-4a9d5-b6758e4159e"),
            Err("uuid is improperly formatted")
        );
        assert_eq!(
            parse_session_id("zdf4238a-882b-9ddc-4a9d-5b6758e4159e"),
            Err("uuid is improperly formatted")
        );
    }

    #[test]
    fn create_body_defaults_and_quirks() {
        let d = decode_create(b"").unwrap_or_default();
        assert_eq!(d.node_checks(), vec!["serfHealth"]);
        assert_eq!(d.lock_delay(), std::time::Duration::from_secs(15));
        let d = decode_create(b"null").unwrap_or_default();
        assert_eq!(d.node_checks(), vec!["serfHealth"]);

        let cases: &[(&str, u64)] = &[
            (r#"{"LockDelay":"15000ms"}"#, 15_000_000_000),
            (r#"{"LockDelay":15}"#, 15_000_000_000),
            (r#"{"lockdelay":"15s"}"#, 15_000_000_000),
            (r#"{"LockDelay":"5ns"}"#, 5_000_000_000),
            (r#"{"LockDelay":2000000000}"#, 2_000_000_000),
            (r#"{"LockDelay":0}"#, 0),
            (r#"{"LockDelay":null}"#, 15_000_000_000),
        ];
        for (body, want) in cases {
            let d = decode_create(body.as_bytes());
            assert_eq!(
                d.map(|d| d.lock_delay().as_nanos() as u64),
                Ok(*want),
                "{body}"
            );
        }
        for body in [r#"{"LockDelay":"15"}"#, r#"{"LockDelay":true}"#, "{bad"] {
            match decode_create(body.as_bytes()) {
                Err(ApiError::BadRequest(m)) => {
                    assert!(m.starts_with("Request decode failed: "), "{m}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }

        let checks = |body: &str| decode_create(body.as_bytes()).map(|d| d.node_checks());
        assert_eq!(checks(r#"{"NodeChecks":[]}"#), Ok(vec![]));
        assert_eq!(checks(r#"{"NodeChecks":null}"#), Ok(vec![]));
        assert_eq!(checks(r#"{"checks":["a"]}"#), Ok(vec!["a".to_owned()]));
        assert_eq!(
            checks(r#"{"NodeChecks":["a","b"],"Checks":["b","c"]}"#),
            Ok(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            checks(r#"{"ServiceChecks":[{"ID":"x","Namespace":""}]}"#),
            Ok(vec!["serfHealth".to_owned()])
        );
    }

    #[test]
    fn behaviors() {
        assert_eq!(behavior(""), Ok(SessionBehavior::Release));
        assert_eq!(behavior("release"), Ok(SessionBehavior::Release));
        assert_eq!(behavior("delete"), Ok(SessionBehavior::Delete));
        assert_eq!(
            behavior("explode"),
            Err(ApiError::Internal(
                "Invalid Behavior setting 'explode'".into()
            ))
        );
    }
}
