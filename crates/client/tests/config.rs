//! Addresses, environment variables, tokens and basic auth.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;
use common::{fake, Resp};
use tribune_client::{parse_address, BasicAuth, Client, Config, Endpoint, Error, QueryOptions};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn address_forms() {
    let http = |s: &str| match parse_address(s, false).unwrap() {
        Endpoint::Http { base_url } => base_url,
        other => panic!("{other:?}"),
    };
    assert_eq!(http("127.0.0.1:8500"), "http://127.0.0.1:8500");
    assert_eq!(http("http://localhost:8500"), "http://localhost:8500");
    assert_eq!(http("http://proxy:80/consul/"), "http://proxy:80/consul");
    assert_eq!(http("[::1]:8500"), "http://[::1]:8500");
    assert_eq!(
        parse_address("unix:///tmp/consul.sock", false).unwrap(),
        Endpoint::Unix {
            path: PathBuf::from("/tmp/consul.sock"),
            tls: false,
        }
    );
    assert_eq!(http("https://x:8501"), "https://x:8501");
    // CONSUL_HTTP_SSL makes every address HTTPS; Go never downgrades it.
    for addr in ["x:8500", "http://x:8500"] {
        assert_eq!(
            parse_address(addr, true).unwrap(),
            Endpoint::Http {
                base_url: "https://x:8500".into()
            }
        );
    }
    assert!(matches!(parse_address("ftp://x", false), Err(Error::UnknownScheme(s)) if s == "ftp"));
    assert!(matches!(
        parse_address("http://", false),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        parse_address("unix://", false),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        parse_address("bad host:1", false),
        Err(Error::InvalidAddress { .. })
    ));
}

#[test]
fn environment_variables() {
    let config = Config::from_lookup(env(&[]));
    assert_eq!(config, Config::default());
    assert_eq!(config.address, "127.0.0.1:8500");

    let config = Config::from_lookup(env(&[
        ("CONSUL_HTTP_ADDR", "http://10.0.0.1:8500"),
        ("CONSUL_HTTP_TOKEN", "tok"),
        ("CONSUL_HTTP_TOKEN_FILE", "/tmp/tokfile"),
        ("CONSUL_HTTP_AUTH", "user:pa:ss"),
        ("CONSUL_HTTP_SSL", "true"),
    ]));
    assert_eq!(config.address, "http://10.0.0.1:8500");
    assert_eq!(config.token.as_deref(), Some("tok"));
    assert_eq!(config.token_file, Some(PathBuf::from("/tmp/tokfile")));
    assert_eq!(
        config.http_auth,
        Some(BasicAuth {
            username: "user".into(),
            password: Some("pa:ss".into())
        })
    );
    assert!(config.tls);
    assert!(!config.tls_options.insecure_skip_verify);
    assert_eq!(
        parse_address(&config.address, config.tls).unwrap(),
        Endpoint::Http {
            base_url: "https://10.0.0.1:8500".into()
        }
    );
    let config = Config::from_lookup(env(&[
        ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ("CONSUL_CACERT", "/ca.pem"),
        ("CONSUL_CAPATH", "/cas"),
        ("CONSUL_CLIENT_CERT", "/c.pem"),
        ("CONSUL_CLIENT_KEY", "/k.pem"),
        ("CONSUL_TLS_SERVER_NAME", "consul.test"),
    ]));
    assert_eq!(
        config.tls_options,
        tribune_client::TlsOptions {
            ca_file: Some("/ca.pem".into()),
            ca_path: Some("/cas".into()),
            cert_file: Some("/c.pem".into()),
            key_file: Some("/k.pem".into()),
            server_name: Some("consul.test".into()),
            insecure_skip_verify: true,
        }
    );
    // Go skips verification unless the value parses as true.
    let config = Config::from_lookup(env(&[("CONSUL_HTTP_SSL_VERIFY", "maybe")]));
    assert!(config.tls_options.insecure_skip_verify);

    // Empty values count as unset.
    let config = Config::from_lookup(env(&[
        ("CONSUL_HTTP_ADDR", ""),
        ("CONSUL_HTTP_SSL", "nope"),
    ]));
    assert_eq!(config.address, "127.0.0.1:8500");
    assert!(!config.tls);
}

#[test]
fn token_file_wins_when_non_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  from-file\n").unwrap();
    let config = Config {
        token: Some("from-flag".into()),
        token_file: Some(file.clone()),
        ..Default::default()
    };
    assert_eq!(
        config.resolve_token().unwrap().as_deref(),
        Some("from-file")
    );
    std::fs::write(&file, "\n").unwrap();
    assert_eq!(
        config.resolve_token().unwrap().as_deref(),
        Some("from-flag")
    );
    let missing = Config {
        token_file: Some(dir.path().join("missing")),
        ..Default::default()
    };
    let err = Client::new(missing).unwrap_err();
    assert!(matches!(err, Error::TokenFile { .. }));
    assert!(err.to_string().starts_with("Error loading token file"));
}

#[tokio::test]
async fn basic_auth_and_path_prefix_are_sent() {
    let fake = fake(|_| Resp::json(r#""127.0.0.1:8300""#)).await;
    let client = Client::new(Config {
        address: format!("{}/prefix", fake.url()),
        http_auth: Some(BasicAuth::parse("admin:s3cret")),
        ..Default::default()
    })
    .unwrap();
    client.status().leader().await.unwrap();
    let req = fake.only_request();
    assert_eq!(req.path, "/prefix/v1/status/leader");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
    );
    assert_eq!(req.header("authorization"), Some(expected));
    // No token configured: no token header.
    assert_eq!(req.header("x-consul-token"), None);
}

#[tokio::test]
async fn per_request_overrides_beat_client_defaults() {
    let fake = fake(|_| Resp::json("[]")).await;
    let client = Client::new(Config {
        address: fake.url(),
        token: Some("default-token".into()),
        datacenter: Some("dc1".into()),
        ..Default::default()
    })
    .unwrap();
    let opts = QueryOptions {
        datacenter: Some("dc2".into()),
        token: Some("other".into()),
        consistent: true,
        ..Default::default()
    };
    client.catalog().nodes(&opts).await.unwrap();
    let req = fake.only_request();
    assert_eq!(req.param("dc").as_deref(), Some("dc2"));
    assert_eq!(req.header("x-consul-token").as_deref(), Some("other"));
    assert_eq!(req.param("consistent").as_deref(), Some(""));
    assert_eq!(req.params().iter().filter(|(k, _)| k == "dc").count(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_address() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let requests = common::fake_unix(&sock, |_| Resp::json(r#"["dc1"]"#)).await;
    let client = Client::new(Config {
        address: format!("unix://{}", sock.display()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(client.catalog().datacenters().await.unwrap(), ["dc1"]);
    assert_eq!(requests.lock().unwrap()[0].path, "/v1/catalog/datacenters");
}
