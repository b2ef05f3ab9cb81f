//! Service definition files: JSON and HCL, any key spelling.

use serde_json::json;
use tribune_client::service_def::{self, DefinitionError, Format};

#[test]
fn json_snake_case_definition() {
    let text = r#"{
        "service": {
            "name": "web", "id": "web-1", "port": "8080", "tags": ["v1"],
            "enable_tag_override": true, "socket_path": "",
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
            "weights": {"passing": 5, "warning": 2},
            "meta": {"Env": "prod"},
            "check": {"http": "http://localhost:8080/health", "interval": "10s"},
            "token": "svc-token"
        },
        "datacenter": "ignored"
    }"#;
    let defs = service_def::parse(text, Format::Json).unwrap();
    assert_eq!(defs.len(), 1);
    let d = &defs[0];
    assert_eq!(
        (d.name.as_str(), d.id.as_str(), d.port),
        ("web", "web-1", 8080)
    );
    assert!(d.enable_tag_override);
    assert_eq!(d.tagged_addresses["lan"].port, 80);
    assert_eq!(d.weights.as_ref().unwrap().passing, 5);
    // Metadata keys are user data and keep their case.
    assert_eq!(d.meta["Env"], "prod");
    assert_eq!(d.check.as_ref().unwrap()["interval"], "10s");
    assert_eq!(d.extra["token"], "svc-token");
    let wire = serde_json::to_value(d).unwrap();
    assert_eq!(wire["ID"], "web-1");
    assert_eq!(wire["EnableTagOverride"], true);
    assert_eq!(
        wire["TaggedAddresses"],
        json!({"lan": {"Address": "10.0.0.1", "Port": 80}})
    );
    assert_eq!(wire["token"], "svc-token");
    assert!(wire.get("SocketPath").is_none());
}

#[test]
fn json_services_list() {
    let text = r#"{"services": [{"Name": "a"}, {"NAME": "b", "Checks": {"TTL": "30s"}}]}"#;
    let defs = service_def::parse(text, Format::Json).unwrap();
    let names: Vec<_> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    // A lone check object under `checks` becomes a one-element list.
    assert_eq!(defs[1].checks.len(), 1);
}

#[test]
fn hcl_blocks() {
    let text = r#"
        service {
          name = "web"
          port = 8080
          tags = ["v1", "blue"]
          meta = { version = "2" }
          check {
            http     = "http://localhost:8080/health"
            interval = "10s"
          }
        }
        service {
          name = "db"
          port = 5432
        }
    "#;
    let defs = service_def::parse(text, Format::Hcl).unwrap();
    let names: Vec<_> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["web", "db"]);
    assert_eq!(defs[0].tags, ["v1", "blue"]);
    assert_eq!(defs[0].meta["version"], "2");
    assert_eq!(
        defs[0].check.as_ref().unwrap()["http"],
        "http://localhost:8080/health"
    );
    assert_eq!(defs[1].port, 5432);
}

#[test]
fn files_by_extension_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("web.hcl");
    std::fs::write(&hcl, "service {\n  name = \"web\"\n}\n").unwrap();
    let json = dir.path().join("web.conf");
    std::fs::write(&json, r#"{"service": {"name": "api"}}"#).unwrap();
    assert_eq!(service_def::read_file(&hcl).unwrap()[0].name, "web");
    assert_eq!(service_def::read_file(&json).unwrap()[0].name, "api");
    let err = service_def::read_file(&dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, DefinitionError::Io { .. }));
}

#[test]
fn bad_documents_are_errors() {
    let syntax = service_def::parse("{", Format::Json).unwrap_err();
    assert!(matches!(syntax, DefinitionError::Syntax { .. }));
    let syntax = service_def::parse("service {", Format::Hcl).unwrap_err();
    assert!(matches!(syntax, DefinitionError::Syntax { .. }));
    for text in [
        r#"{"datacenter": "dc1"}"#,
        "[1]",
        r#"{"service": "web"}"#,
        r#"{"service": {"port": "high"}}"#,
    ] {
        let err = service_def::parse(text, Format::Json).unwrap_err();
        assert!(
            matches!(err, DefinitionError::Invalid { .. }),
            "{text}: {err:?}"
        );
    }
}
