//! `/v1/acl/*` and `/v1/agent/token/*`, answered as a Consul agent with ACLs
//! disabled answers them: after the route's own method check (405 with `Allow`),
//! 401 "ACL support disabled", whatever the body or the names in the path.
//!
//! Tribune does not enforce ACLs yet, and the agent refuses to start with
//! `acl.enabled = true` (`bins/tribune/src/agent_cmd.rs`) rather than serve such
//! a configuration without them, so "disabled" is the truth. Clients learn it
//! the way they learn it from Consul: py-consul raises `ACLDisabled`, the Go
//! client returns the 401, instead of a 404 that reads as a missing endpoint.

use super::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

/// Consul's `aclDisabled` error.
pub(super) async fn disabled() -> Response {
    crate::reply::text(StatusCode::UNAUTHORIZED, "ACL support disabled")
}

/// GET, PUT and DELETE, as Consul's CRUD routes take.
fn crud() -> MethodRouter<AppState> {
    get(disabled).put(disabled).merge(delete(disabled))
}

pub(super) fn routes() -> Router<AppState> {
    // Consul's exact routes, with the methods its mux allows on each.
    let exact = [
        ("/v1/acl/bootstrap", put(disabled)),
        ("/v1/acl/login", post(disabled)),
        ("/v1/acl/logout", post(disabled)),
        ("/v1/acl/replication", get(disabled)),
        ("/v1/acl/policies", get(disabled)),
        ("/v1/acl/policy", put(disabled)),
        ("/v1/acl/roles", get(disabled)),
        ("/v1/acl/role", put(disabled)),
        ("/v1/acl/binding-rules", get(disabled)),
        ("/v1/acl/binding-rule", put(disabled)),
        ("/v1/acl/auth-methods", get(disabled)),
        ("/v1/acl/auth-method", put(disabled)),
        ("/v1/acl/tokens", get(disabled)),
        ("/v1/acl/token", put(disabled)),
        ("/v1/acl/token/self", get(disabled)),
        ("/v1/acl/templated-policies", get(disabled)),
    ];
    // Its prefix routes (a trailing `/` in Consul's mux): the rest of the path
    // is a name or an ID.
    let prefixed = [
        ("/v1/acl/policy/name", get(disabled)),
        ("/v1/acl/policy", crud()),
        ("/v1/acl/role/name", get(disabled)),
        ("/v1/acl/role", crud()),
        ("/v1/acl/binding-rule", crud()),
        ("/v1/acl/auth-method", crud()),
        ("/v1/acl/token", crud()),
        ("/v1/acl/templated-policy/name", get(disabled)),
        ("/v1/acl/templated-policy/preview", post(disabled)),
        ("/v1/agent/token", put(disabled)),
    ];
    let r = exact
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler));
    prefixed.into_iter().fold(r, |r, (prefix, handler)| {
        r.route(&format!("{prefix}/"), handler.clone())
            .route(&format!("{prefix}/{{*rest}}"), handler)
    })
}
