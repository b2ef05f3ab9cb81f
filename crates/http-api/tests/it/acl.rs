//! The ACL endpoints answer as a Consul agent with ACLs disabled: 401 "ACL
//! support disabled" on each of Consul's routes and methods, 405 with `Allow`
//! on the others, and nothing reaches the backend.

use crate::support;
use reqwest::Method;

#[tokio::test]
async fn acl_routes_say_acls_are_disabled() {
    let (backend, base) = support::start().await;
    for (method, path) in [
        (Method::PUT, "/v1/acl/bootstrap"),
        (Method::POST, "/v1/acl/login"),
        (Method::POST, "/v1/acl/logout"),
        (Method::GET, "/v1/acl/replication"),
        (Method::GET, "/v1/acl/tokens?policy=x"),
        (Method::PUT, "/v1/acl/token"),
        (Method::GET, "/v1/acl/token/self"),
        (
            Method::GET,
            "/v1/acl/token/6a1253d2-1785-24fd-91c2-f8e78c745511",
        ),
        (
            Method::PUT,
            "/v1/acl/token/6a1253d2-1785-24fd-91c2-f8e78c745511/clone",
        ),
        (Method::DELETE, "/v1/acl/token/x"),
        (Method::GET, "/v1/acl/policies"),
        (Method::PUT, "/v1/acl/policy"),
        (Method::GET, "/v1/acl/policy/name/global-management"),
        (Method::DELETE, "/v1/acl/policy/x"),
        (Method::GET, "/v1/acl/roles"),
        (Method::GET, "/v1/acl/role/name/r"),
        (Method::PUT, "/v1/acl/role/x"),
        (Method::GET, "/v1/acl/binding-rules"),
        (Method::DELETE, "/v1/acl/binding-rule/x"),
        (Method::GET, "/v1/acl/auth-methods"),
        (Method::GET, "/v1/acl/auth-method/minikube"),
        (Method::GET, "/v1/acl/templated-policies"),
        (Method::GET, "/v1/acl/templated-policy/name/builtin/service"),
        (
            Method::POST,
            "/v1/acl/templated-policy/preview/builtin/service",
        ),
        (Method::PUT, "/v1/agent/token/default"),
    ] {
        let url = format!("{base}{path}");
        let (s, headers, b) = support::request(method.clone(), &url, Some("{not json")).await;
        assert_eq!(
            (s, b.as_str()),
            (401, "ACL support disabled"),
            "{method} {path}"
        );
        assert_eq!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("text/plain; charset=utf-8")
        );
    }
    // The method check comes first, as in Consul's mux.
    for (method, path, allow) in [
        (Method::GET, "/v1/acl/bootstrap", "OPTIONS,PUT"),
        (Method::PUT, "/v1/acl/policy/name/x", "OPTIONS,GET"),
        (Method::POST, "/v1/acl/token/x", "OPTIONS,GET,PUT,DELETE"),
    ] {
        let (s, headers, _) =
            support::request(method.clone(), &format!("{base}{path}"), None).await;
        assert_eq!(s, 405, "{method} {path}");
        let got = headers
            .get("allow")
            .map(|v| v.to_str().unwrap().replace(' ', ""));
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
    }
    assert_eq!(backend.state().writes.len(), 0);
}
