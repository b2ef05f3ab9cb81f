//! Tests for the config loader: the Go test helper's JSON, HCL service files, config
//! directories, precedence, guide command lines and error messages.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;

fn load_args(args: &[&str]) -> Result<RuntimeConfig, ConfigError> {
    let parsed = agent_flags().parse(args).expect("flags parse");
    load(&parsed)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

/// Exactly what sdk/testutil's `json.Marshal(TestServerConfig)` writes by default (field
/// order of the Go struct, maps sorted), plus the `version` key newer helpers add.
fn testutil_json(data_dir: &str) -> String {
    format!(
        concat!(
            r#"{{"node_name":"node-3b1e4c1a-0f3e-4d53-9d5b-7a5b0c2d1e9f","#,
            r#""node_id":"3b1e4c1a-0f3e-4d53-9d5b-7a5b0c2d1e9f","#,
            r#""performance":{{"raft_multiplier":1}},"bootstrap":true,"server":true,"#,
            r#""data_dir":"{}","segments":null,"disable_update_check":true,"#,
            r#""log_level":"debug","bind_addr":"127.0.0.1","addresses":{{}},"#,
            r#""ports":{{"dns":21001,"http":21002,"https":21003,"serf_lan":21004,"#,
            r#""serf_wan":21005,"server":21006,"grpc":21007,"grpc_tls":21008}},"#,
            r#""acl":{{"tokens":{{}}}},"#,
            r#""connect":{{"ca_config":{{"cluster_id":"11111111-2222-3333-4444-555555555555"}},"enabled":true}},"#,
            r#""skip_leave_on_interrupt":true,"peering":{{"enabled":true}},"version":"1.20.0"}}"#
        ),
        data_dir
    )
}

#[test]
fn testutil_json_loads_verbatim() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let file = write(tmp.path(), "config.json", &testutil_json(s(&data)));
    let c = load_args(&["-config-file", s(&file)]).expect("testutil config loads");

    assert_eq!(c.node_name, "node-3b1e4c1a-0f3e-4d53-9d5b-7a5b0c2d1e9f");
    assert_eq!(
        c.node_id.as_deref(),
        Some("3b1e4c1a-0f3e-4d53-9d5b-7a5b0c2d1e9f")
    );
    assert!(c.server && c.bootstrap && !c.dev);
    assert_eq!(c.bootstrap_expect, 0);
    assert_eq!(c.raft_multiplier, 1);
    assert_eq!(c.raft.election_timeout, Duration::from_secs(1));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.bind_addr, ip("127.0.0.1"));
    assert_eq!(c.advertise_addr, Some(ip("127.0.0.1")));
    assert_eq!(c.data_dir.as_deref(), Some(data.as_path()));
    assert!(c.disable_update_check);
    assert!(c.skip_leave_on_interrupt);
    assert!(!c.leave_on_terminate);
    assert_eq!(c.ports.dns, Some(21001));
    assert_eq!(c.ports.http, Some(21002));
    assert_eq!(c.ports.https, Some(21003));
    assert_eq!(c.ports.serf_lan, Some(21004));
    assert_eq!(c.ports.serf_wan, Some(21005));
    assert_eq!(c.ports.server, Some(21006));
    assert_eq!(c.ports.grpc, Some(21007));
    assert_eq!(c.ports.grpc_tls, Some(21008));
    assert_eq!(c.addresses, Addresses::default());
    assert!(c.connect.enabled);
    assert_eq!(
        c.connect.cluster_id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert!(c.peering_enabled);
    assert!(!c.acl.enabled);
    assert_eq!(c.acl.tokens, AclTokens::default());
    assert_eq!(
        c.http_listeners(),
        vec![Listener::Tcp(SocketAddr::new(ip("127.0.0.1"), 21002))]
    );
    assert_eq!(
        c.dns_listeners(),
        vec![SocketAddr::new(ip("127.0.0.1"), 21001)]
    );
    assert_eq!(
        c.rpc_bind_addr(),
        Some(SocketAddr::new(ip("127.0.0.1"), 21006))
    );
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    assert!(c.ignored_keys.contains(&"version".to_owned()));
    assert_eq!(c.config_files, vec![file]);
}

#[test]
fn testutil_acl_and_tls_variant_maps_legacy_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("http.sock");
    let text = json!({
        "node_name": "acl-node",
        "bootstrap": true,
        "server": true,
        "data_dir": s(&tmp.path().join("data")),
        "segments": null,
        "addresses": {"http": format!("unix://{}", s(&sock))},
        "acl_datacenter": "DC1",
        "acl_default_policy": "deny",
        "acl": {"tokens": {"master": "root", "agent_master": "towel", "agent": "agent-tok"}},
        "ca_file": "/etc/ca.pem",
        "verify_incoming": true,
        "verify_outgoing": true,
        "verify_incoming_rpc": true,
        "node_meta": {"rack": "r1", "version": 2},
        "ports": {"proxy_min_port": 30000, "proxy_max_port": 30010},
        "enable_script_checks": true
    });
    let file = write(tmp.path(), "config.json", &text.to_string());
    let c = load_args(&["-config-file", s(&file)]).expect("loads");

    assert!(c.acl.enabled, "acl_datacenter switches ACLs on");
    assert_eq!(c.primary_datacenter, "dc1");
    assert_eq!(c.acl.default_policy, AclPolicy::Deny);
    assert_eq!(c.acl.down_policy, AclDownPolicy::ExtendCache);
    assert_eq!(c.acl.tokens.initial_management.as_deref(), Some("root"));
    assert_eq!(c.acl.tokens.agent_recovery.as_deref(), Some("towel"));
    assert_eq!(c.acl.tokens.agent.as_deref(), Some("agent-tok"));
    assert_eq!(
        c.tls.defaults.ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(
        c.tls.https.ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert!(c.tls.defaults.verify_incoming && c.tls.defaults.verify_outgoing);
    assert!(c.tls.internal_rpc.verify_incoming);
    assert!(
        !c.tls.grpc.verify_incoming,
        "legacy verify_incoming never covered gRPC"
    );
    assert_eq!(c.addresses.http, vec![ListenAddr::Unix(sock.clone())]);
    assert_eq!(c.http_listeners(), vec![Listener::Unix(sock)]);
    assert_eq!(c.node_meta.get("version").map(String::as_str), Some("2"));
    assert_eq!(c.ports.proxy_min_port, Some(30000));
    assert!(c.enable_script_checks && c.enable_local_script_checks);
    assert!(c.warnings.iter().any(|w| matches!(
        w,
        Warning::Deprecated {
            old: "acl.tokens.master",
            ..
        }
    )));
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
}

#[test]
fn hcl_services_and_checks_take_the_json_shape() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hcl = r#"
# A client agent with services, Consul-guide style.
datacenter = "east"
data_dir   = "/var/consul"
node_name  = "web-1"
ports {
  dns = -1
}
service {
  name = "web"
  port = 80
  tags = ["primary", "v1"]
  meta = { version = "1.2" }
  check {
    id       = "web-http"
    http     = "http://localhost:80/health"
    interval = "10s"
    args     = ["/bin/echo", "${HOME}"]
  }
}
services {
  name = "api"
  checks {
    ttl = "30s"
  }
}
services {
  name = "db"
  connect {
    sidecar_service {
      proxy {
        upstreams {
          destination_name = "cache"
          local_bind_port  = 9191
        }
      }
    }
  }
  checks = [
    { tcp = "localhost:5432", interval = "5s" },
    { ttl = "1m" }
  ]
}
check {
  id       = "mem"
  args     = ["/usr/local/bin/check_mem.py", "-limit", "256MB"]
  interval = "10s"
}
checks = [
  { id = "disk", name = "Disk", ttl = "30s" }
]
watches = [
  { type = "key", key = "foo/bar", args = ["/usr/bin/handler.sh"] }
]
"#;
    let file = write(tmp.path(), "agent.hcl", hcl);
    let c = load_args(&["-config-file", s(&file)]).expect("hcl loads");

    assert_eq!(c.datacenter, "east");
    assert_eq!(c.ports.dns, None);
    assert!(c.dns_listeners().is_empty());
    assert_eq!(
        c.services,
        vec![
            json!({"name": "api", "checks": [{"ttl": "30s"}]}),
            json!({
                "name": "db",
                "connect": {"sidecar_service": {"proxy": {"upstreams": [
                    {"destination_name": "cache", "local_bind_port": 9191}
                ]}}},
                "checks": [{"tcp": "localhost:5432", "interval": "5s"}, {"ttl": "1m"}]
            }),
            json!({
                "name": "web",
                "port": 80,
                "tags": ["primary", "v1"],
                "meta": {"version": "1.2"},
                "check": {
                    "id": "web-http",
                    "http": "http://localhost:80/health",
                    "interval": "10s",
                    "args": ["/bin/echo", "${HOME}"]
                }
            }),
        ]
    );
    assert_eq!(
        c.checks,
        vec![
            json!({"id": "disk", "name": "Disk", "ttl": "30s"}),
            json!({"id": "mem", "args": ["/usr/local/bin/check_mem.py", "-limit", "256MB"], "interval": "10s"}),
        ]
    );
    assert_eq!(
        c.watches,
        vec![json!({"type": "key", "key": "foo/bar", "args": ["/usr/bin/handler.sh"]})]
    );
}

#[test]
fn json_service_and_services_and_repeated_hcl_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = write(
        tmp.path(),
        "a.json",
        r#"{"service": {"name": "one", "port": 1}, "services": [{"name": "two"}], "check": {"id": "c1", "ttl": "10s"}}"#,
    );
    let b = write(
        tmp.path(),
        "b.hcl",
        "ports { http = 8600 }\nports { dns = 8601 }\nservice { name = \"three\" }\nservice { name = \"four\" }\n",
    );
    let c = load_args(&["-dev", "-config-file", s(&a), "-config-file", s(&b)]).expect("loads");
    let names: Vec<&str> = c
        .services
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    // Within a source, `service` comes after `services`, as Consul appends it.
    assert_eq!(names, ["two", "one", "three", "four"]);
    assert_eq!(c.checks, vec![json!({"id": "c1", "ttl": "10s"})]);
    assert_eq!(c.ports.http, Some(8600));
    assert_eq!(c.ports.dns, Some(8601));
}

#[test]
fn config_dir_loads_json_and_hcl_in_lexical_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("consul.d");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::create_dir(dir.join("00-subdir.json")).expect("mkdir sub");
    write(
        &dir,
        "10-base.json",
        r#"{"datacenter": "dc-a", "log_level": "warn", "retry_join": ["10.0.0.1"], "services": [{"name": "a"}], "node_meta": {"k1": "a", "k2": "a"}}"#,
    );
    write(
        &dir,
        "20-override.hcl",
        "datacenter = \"dc-b\"\nretry_join = [\"10.0.0.2\"]\nservice {\n  name = \"b\"\n}\nnode_meta {\n  k2 = \"b\"\n}\n",
    );
    write(&dir, "30-extra.json", r#"{"services": [{"name": "c"}]}"#);
    write(&dir, "README.md", "not config");
    let data = tmp.path().join("data");
    let c =
        load_args(&["-config-dir", s(&dir), "-data-dir", s(&data), "-node", "n"]).expect("loads");

    assert_eq!(c.datacenter, "dc-b");
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2"]);
    let names: Vec<&str> = c
        .services
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(c.node_meta.get("k1").map(String::as_str), Some("a"));
    assert_eq!(c.node_meta.get("k2").map(String::as_str), Some("b"));
    assert_eq!(
        c.config_files,
        vec![
            dir.join("10-base.json"),
            dir.join("20-override.hcl"),
            dir.join("30-extra.json")
        ]
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::SkippedFile { path } if path.ends_with("README.md"))));
}

#[test]
fn config_format_forces_the_parser() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "agent.conf",
        "server = true\nbootstrap_expect = 3\n",
    );
    let data = tmp.path().join("data");
    let c = load_args(&[
        "-config-format",
        "hcl",
        "-config-file",
        s(&file),
        "-data-dir",
        s(&data),
        "-node",
        "n",
    ])
    .expect("loads");
    assert!(c.server);
    assert_eq!(c.bootstrap_expect, 3);

    let err = load_args(&["-config-file", s(&file), "-data-dir", s(&data)]).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownExtension { .. }), "{err}");
    assert!(err.to_string().contains("agent.conf"), "{err}");

    let err = load_args(&["-config-format", "yaml", "-dev"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: -config-format must be either 'hcl' or 'json', got \"yaml\""
    );
}

#[test]
fn precedence_flags_over_files_over_dev_over_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "c.json",
        r#"{"log_level": "warn", "bind_addr": "127.0.0.2", "retry_join": ["file-a"], "node_name": "from-file", "ports": {"http": 9000}}"#,
    );
    let c = load_args(&[
        "-dev",
        "-bind",
        "127.0.0.3",
        "-retry-join",
        "flag-a",
        "-config-file",
        s(&file),
        "-http-port",
        "9100",
    ])
    .expect("loads");
    assert_eq!(c.bind_addr, ip("127.0.0.3"), "flag beats file");
    assert_eq!(c.ports.http, Some(9100), "flag beats file");
    assert_eq!(c.log_level, LogLevel::Warn, "file beats -dev");
    assert_eq!(c.node_name, "from-file");
    assert!(c.server && c.bootstrap && c.ui, "-dev beats defaults");
    assert_eq!(c.ports.grpc, Some(8502), "-dev gRPC port");
    assert_eq!(c.domain, "consul.", "defaults");
    assert_eq!(c.ports.dns, Some(8600), "defaults");
    // Flag lists come first, file lists are appended (Consul's flags.slices source).
    assert_eq!(c.retry_join, ["flag-a", "file-a"]);

    // Consul applies -hcl snippets after the flags.
    let c = load_args(&[
        "-dev",
        "-node",
        "flag-node",
        "-hcl",
        "node_name = \"hcl-node\"",
        "-hcl",
        "log_level = \"err\"",
    ])
    .expect("loads");
    assert_eq!(c.node_name, "hcl-node");
    assert_eq!(c.log_level, LogLevel::Error);
}

#[test]
fn dev_mode_defaults() {
    let c = load_args(&["-dev", "-node", "dev1"]).expect("loads");
    assert!(c.dev && c.server && c.bootstrap && c.ui && c.connect.enabled && c.enable_debug);
    assert_eq!(c.data_dir, None);
    assert_eq!(c.bind_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.raft_multiplier, 1);
    assert_eq!(c.raft.election_timeout, Duration::from_millis(52));
    assert_eq!(c.raft.heartbeat_timeout, Duration::from_millis(35));
    assert_eq!(c.raft.leader_lease_timeout, Duration::from_millis(20));
    assert_eq!(c.gossip_lan.probe_interval, Duration::from_millis(100));
    assert_eq!(c.gossip_lan.suspicion_mult, 3);
    assert_eq!(c.ports.grpc, Some(8502));
    assert_eq!(c.ports.grpc_tls, Some(8503));
    assert!(c.disable_keyring_file);
    assert_eq!(c.coordinate_update_period, Duration::from_millis(100));
}

#[test]
fn consul_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = load_args(&["-data-dir", s(tmp.path()), "-node", "client-1"]).expect("loads");
    assert!(!c.server && !c.bootstrap && !c.dev && !c.ui);
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.primary_datacenter, "dc1");
    assert_eq!(c.domain, "consul.");
    assert_eq!(c.bind_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.advertise_addr, None);
    assert_eq!(c.client_addrs, vec![ip("127.0.0.1")]);
    assert_eq!(
        (
            c.ports.dns,
            c.ports.http,
            c.ports.https,
            c.ports.grpc,
            c.ports.grpc_tls
        ),
        (Some(8600), Some(8500), None, None, None)
    );
    assert_eq!(
        (c.ports.serf_lan, c.ports.serf_wan, c.ports.server),
        (Some(8301), Some(8302), Some(8300))
    );
    assert_eq!(c.raft_multiplier, 5);
    assert_eq!(c.raft.election_timeout, Duration::from_secs(5));
    assert_eq!(c.rpc_hold_timeout, Duration::from_secs(7));
    assert_eq!(c.session_ttl_min, Duration::from_secs(10));
    assert_eq!(c.default_query_time, Duration::from_secs(300));
    assert_eq!(c.max_query_time, Duration::from_secs(600));
    assert_eq!(c.limits.kv_max_value_size, 524_288);
    assert_eq!(c.limits.txn_max_req_len, 524_288);
    assert_eq!(c.limits.http_max_conns_per_client, 200);
    assert_eq!(c.limits.rpc_rate, None);
    assert_eq!(c.raft_snapshot_threshold, 16384);
    assert_eq!(c.raft_snapshot_interval, Duration::from_secs(30));
    assert_eq!(c.raft_trailing_logs, 10240);
    assert_eq!(c.retry_interval, Duration::from_secs(30));
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(c.connect.enabled && c.peering_enabled);
    assert_eq!(c.acl.default_policy, AclPolicy::Allow);
    assert_eq!(c.acl.down_policy, AclDownPolicy::ExtendCache);
    assert!(c.leave_on_terminate && !c.skip_leave_on_interrupt);
    assert!(c.disable_remote_exec);
    assert!(c.dns_config.allow_stale);
    assert_eq!(c.dns_config.max_stale, Duration::from_secs(87600 * 3600));
    assert_eq!(c.dns_config.udp_answer_limit, 3);
    assert_eq!(c.dns_config.soa.refresh, 3600);
    assert_eq!(c.ui_content_path, "/ui/");
    assert!(c.services.is_empty() && c.checks.is_empty());
    assert!(c.unknown_keys.is_empty());
}

#[test]
fn ports_minus_one_disables() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "p.json",
        r#"{"ports": {"dns": -1, "http": 0, "https": 8501, "serf_wan": -1}}"#,
    );
    let c = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
    assert_eq!(c.ports.dns, None);
    assert_eq!(c.ports.http, None);
    assert_eq!(c.ports.https, Some(8501));
    assert_eq!(c.ports.serf_wan, None);
    assert!(c.dns_listeners().is_empty());
    assert!(c.http_listeners().is_empty());
    assert_eq!(c.serf_wan_bind_addr(), None);

    let c = load_args(&["-dev", "-dns-port", "-1", "-grpc-port=-1"]).expect("loads");
    assert_eq!(c.ports.dns, None);
    assert_eq!(c.ports.grpc, None);

    let c = load_args(&["-dev", "-hcl", "ports { dns = -1 }"]).expect("loads");
    assert_eq!(c.ports.dns, None);
}

#[test]
fn guide_command_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("consul-data");
    let data = s(&data);

    let line = format!("-server -bootstrap-expect 3 -node=server_01 -bind=192.168.1.129 -ui -data-dir={data} -client 0.0.0.0");
    let args: Vec<&str> = line.split(' ').collect();
    let c = load_args(&args).expect("guide line 1");
    assert!(c.server && c.ui && !c.bootstrap);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.node_name, "server_01");
    assert_eq!(c.bind_addr, ip("192.168.1.129"));
    assert_eq!(c.advertise_addr, Some(ip("192.168.1.129")));
    assert_eq!(c.client_addrs, vec![ip("0.0.0.0")]);
    assert_eq!(c.ports.grpc_tls, Some(8503));
    assert!(c
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::NodeNameNotDns { .. })));

    let line =
        format!("-data-dir={data} -node=app-node-01 -bind=192.168.10.20 -retry-join=192.168.10.10");
    let args: Vec<&str> = line.split(' ').collect();
    let c = load_args(&args).expect("guide line 2");
    assert!(!c.server);
    assert_eq!(c.retry_join, ["192.168.10.10"]);
    assert_eq!(c.ports.grpc_tls, None);

    let conf_dir = tmp.path().join("consul.d");
    std::fs::create_dir(&conf_dir).expect("mkdir");
    write(
        &conf_dir,
        "server.hcl",
        "encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n",
    );
    let line = format!(
        "-server -bootstrap-expect 2 -data-dir {data} -node=n1 -bind=10.0.0.5 -ui -config-dir {} -rejoin -join 10.0.0.6 -client 0.0.0.0",
        s(&conf_dir)
    );
    let args: Vec<&str> = line.split(' ').collect();
    let c = load_args(&args).expect("guide line 3");
    assert_eq!(c.bootstrap_expect, 2);
    assert!(c.rejoin_after_leave && c.ui);
    assert_eq!(c.retry_join, ["10.0.0.6"]);
    assert_eq!(c.start_join, ["10.0.0.6"]);
    assert!(c.encrypt.is_some());
    assert!(c.warnings.contains(&Warning::BootstrapExpectTwo));

    let c = load_args(&["-dev", "-client=0.0.0.0", "-ui"]).expect("guide line 4");
    assert!(c.dev && c.ui);
    assert!(!c.node_name.is_empty(), "defaults to the host name");
    assert_eq!(
        c.http_listeners(),
        vec![Listener::Tcp(SocketAddr::new(ip("0.0.0.0"), 8500))]
    );
}

#[test]
fn every_documented_agent_flag_is_accepted() {
    let set = agent_flags();
    for name in [
        "dev",
        "server",
        "bootstrap",
        "bootstrap-expect",
        "config-file",
        "config-dir",
        "config-format",
        "data-dir",
        "node",
        "node-id",
        "datacenter",
        "bind",
        "client",
        "advertise",
        "advertise-wan",
        "serf-lan-bind",
        "serf-wan-bind",
        "join",
        "retry-join",
        "join-wan",
        "retry-join-wan",
        "retry-interval",
        "retry-interval-wan",
        "retry-max",
        "retry-max-wan",
        "rejoin",
        "ui",
        "ui-dir",
        "ui-content-path",
        "log-level",
        "log-json",
        "log-file",
        "log-rotate-bytes",
        "log-rotate-duration",
        "log-rotate-max-files",
        "pid-file",
        "encrypt",
        "http-port",
        "https-port",
        "dns-port",
        "grpc-port",
        "grpc-tls-port",
        "serf-lan-port",
        "serf-wan-port",
        "server-port",
        "node-meta",
        "recursor",
        "domain",
        "alt-domain",
        "enable-script-checks",
        "enable-local-script-checks",
        "disable-host-node-id",
        "protocol",
        "raft-protocol",
        "segment",
        "partition",
        "syslog",
        "hcl",
        "default-query-time",
        "max-query-time",
        "primary-gateway",
        "non-voting-server",
        "read-replica",
        "auto-reload-config",
        "disable-keyring-file",
        "allow-write-http-from",
        "check_output_max_size",
        "serf-lan-allowed-cidrs",
        "serf-wan-allowed-cidrs",
    ] {
        assert!(set.kind(name).is_some(), "-{name} is not accepted");
    }
}

#[test]
fn many_flags_map_onto_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = load_args(&[
        "-data-dir",
        s(tmp.path()),
        "-node",
        "n-1",
        "-node-id",
        "3B1E4C1A-0F3E-4D53-9D5B-7A5B0C2D1E9F",
        "-node-meta",
        "rack:r1",
        "-node-meta",
        "url:http://x:1",
        "-datacenter",
        "DC9",
        "-advertise",
        "10.1.1.1",
        "-advertise-wan",
        "1.2.3.4",
        "-client",
        "127.0.0.1 ::1",
        "-serf-lan-bind",
        "10.1.1.2",
        "-recursor",
        "8.8.8.8",
        "-recursor",
        "1.1.1.1:53",
        "-recursor",
        "8.8.8.8",
        "-domain",
        "example",
        "-alt-domain",
        "alt.example.",
        "-retry-interval",
        "5s",
        "-retry-max",
        "7",
        "-default-query-time",
        "1m30s",
        "-max-query-time",
        "120000ms",
        "-log-json",
        "-pid-file",
        "/run/tribune.pid",
        "-enable-script-checks",
        "-enable-local-script-checks=false",
        "-syslog",
        "-ui-content-path",
        "console",
        "-https-port",
        "8501",
        "-serf-lan-port",
        "9301",
        "-server-port",
        "9300",
        "-encrypt",
        "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
    ])
    .expect("loads");
    assert_eq!(
        c.node_id.as_deref(),
        Some("3b1e4c1a-0f3e-4d53-9d5b-7a5b0c2d1e9f")
    );
    assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(
        c.node_meta.get("url").map(String::as_str),
        Some("http://x:1")
    );
    assert_eq!(c.datacenter, "dc9");
    assert_eq!(c.advertise_addr, Some(ip("10.1.1.1")));
    assert_eq!(c.advertise_addr_wan, Some(ip("1.2.3.4")));
    assert_eq!(c.client_addrs, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(
        c.serf_lan_bind_addr(),
        Some(SocketAddr::new(ip("10.1.1.2"), 9301))
    );
    assert_eq!(
        c.rpc_bind_addr(),
        Some(SocketAddr::new(ip("0.0.0.0"), 9300))
    );
    assert_eq!(c.recursors, ["8.8.8.8", "1.1.1.1:53"]);
    assert_eq!(c.domain, "example.");
    assert_eq!(c.alt_domain.as_deref(), Some("alt.example."));
    assert_eq!(c.retry_interval, Duration::from_secs(5));
    assert_eq!(c.retry_max, 7);
    assert_eq!(c.default_query_time, Duration::from_secs(90));
    assert_eq!(c.max_query_time, Duration::from_secs(120));
    assert!(c.log_json && c.enable_syslog);
    assert_eq!(c.pid_file.as_deref(), Some(Path::new("/run/tribune.pid")));
    assert!(c.enable_script_checks && !c.enable_local_script_checks);
    assert_eq!(c.ui_content_path, "/console/");
    assert_eq!(c.ports.https, Some(8501));
    assert_eq!(c.https_listeners().len(), 2);
}

#[test]
fn keys_match_case_insensitively_and_unknown_keys_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "c.json",
        r#"{"Datacenter": "DC2", "NODE_NAME": "x", "bogus": 1, "ports": {"HTTP": 8123, "nope": 2}, "telemetry": {"statsd_address": "127.0.0.1:8125"}}"#,
    );
    let c = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
    assert_eq!(c.datacenter, "dc2");
    assert_eq!(c.node_name, "x");
    assert_eq!(c.ports.http, Some(8123));
    assert_eq!(c.unknown_keys, ["bogus", "ports.nope"]);
    assert!(c.ignored_keys.contains(&"telemetry".to_owned()));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.to_string().contains("unknown config key \"ports.nope\"")));
}

#[test]
fn bootstrap_expect_one_is_bootstrap() {
    let c = load_args(&[
        "-server",
        "-bootstrap-expect=1",
        "-data-dir",
        "/nonexistent/tribune",
        "-node",
        "n",
    ])
    .expect("loads");
    assert!(c.bootstrap);
    assert_eq!(c.bootstrap_expect, 0);
    assert!(c.warnings.contains(&Warning::BootstrapExpectOne));
}

#[test]
fn start_join_and_legacy_ui_keys() {
    let c = load_args(&[
        "-dev",
        "-join",
        "10.0.0.1",
        "-hcl",
        "start_join = [\"10.0.0.2\"]\nui = false\nui_content_path = \"/dash\"",
    ])
    .expect("loads");
    assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(c.start_join, ["10.0.0.1", "10.0.0.2"]);
    assert!(!c.ui);
    assert_eq!(c.ui_content_path, "/dash/");
}

#[test]
fn hcl_heredoc_and_arithmetic() {
    let c = load_args(&[
        "-dev",
        "-hcl",
        "node_name = <<-EOT\n    heredoc-node\n    EOT\nraft_trailing_logs = 2 * 1000",
    ])
    .expect("loads");
    assert_eq!(c.node_name, "heredoc-node");
    assert_eq!(c.raft_trailing_logs, 2000);
}

fn err_of(args: &[&str]) -> String {
    match load_args(args) {
        Ok(_) => panic!("expected an error for {args:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn validation_errors_use_consul_wording() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = s(tmp.path());
    assert_eq!(
        err_of(&[
            "-server",
            "-bootstrap",
            "-bootstrap-expect",
            "3",
            "-data-dir",
            d,
            "-node",
            "n"
        ]),
        "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"
    );
    assert_eq!(
        err_of(&["-bootstrap", "-data-dir", d, "-node", "n"]),
        "'bootstrap = true' requires 'server = true'"
    );
    assert_eq!(
        err_of(&["-bootstrap-expect", "3", "-data-dir", d, "-node", "n"]),
        "'bootstrap_expect > 0' requires 'server = true'"
    );
    assert_eq!(
        err_of(&["-dev", "-bootstrap-expect", "3"]),
        "'bootstrap_expect > 0' not allowed in dev mode"
    );
    assert_eq!(err_of(&["-node", "n"]), "data_dir cannot be empty");
    assert_eq!(
        err_of(&["-dev", "-raft-protocol", "2"]),
        "raft_protocol version 2 is not supported by this version of Consul"
    );
    assert_eq!(
        err_of(&["-dev", "-hcl", "performance { raft_multiplier = 11 }"]),
        "performance.raft_multiplier cannot be 11. Must be between 1 and 10"
    );
    assert_eq!(
        err_of(&["-dev", "-datacenter", "dc 1"]),
        "datacenter can only contain lowercase alphanumeric, - or _ characters. received: \"dc 1\""
    );
    assert!(err_of(&["-dev", "-encrypt", "not-base64!"]).starts_with("encrypt has invalid key"));
    assert_eq!(
        err_of(&["-dev", "-advertise", "0.0.0.0"]),
        "Advertise address cannot be 0.0.0.0, :: or [::]"
    );
    assert_eq!(
        err_of(&["-dev", "-node-meta", "consul-x:1"]),
        "node_meta invalid: Key prefix 'consul-' is reserved for internal use: \"consul-x\""
    );
    assert_eq!(
        err_of(&["-dev", "-hcl", "acl { default_policy = \"maybe\" }"]),
        "Unsupported default ACL policy: maybe"
    );
    assert_eq!(
        err_of(&["-dev", "-log-level", "loud"]),
        "Invalid log level: loud. Valid log levels are: [TRACE DEBUG INFO WARN ERR]"
    );
    assert_eq!(
        err_of(&["-dev", "-server-port", "-1"]),
        "server-port must be greater than zero"
    );
    assert!(
        err_of(&["-ui", "-ui-dir", "/ui", "-data-dir", d, "-node", "n"])
            .starts_with("Both the ui_config.enabled")
    );

    let file = write(tmp.path(), "not-a-dir", "x");
    assert_eq!(
        err_of(&["-data-dir", s(&file), "-node", "n"]),
        format!("data_dir {:?} is not a directory", s(&file))
    );
}

#[test]
fn value_errors_name_the_source_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        err_of(&["-dev", "-bind", "999.1.1.1"]),
        "failed to parse flag -bind: bind_addr: invalid ip address: 999.1.1.1"
    );
    assert_eq!(
        err_of(&["-dev", "-http-port", "abc"]),
        "failed to parse flag -http-port: ports.http: expected an integer, found string \"abc\""
    );
    assert_eq!(
        err_of(&["-dev", "-http-port", "70000"]),
        "failed to parse flag -http-port: ports.http: invalid port: 70000"
    );
    assert!(err_of(&["-dev", "-bind", "{{ GetPrivateIP }}"]).contains("go-sockaddr template"));
    assert_eq!(
        err_of(&["-dev", "-client", "unix:///tmp/x.sock"]),
        "failed to parse flag -client: client_addr: cannot be a unix socket"
    );
    assert_eq!(
        err_of(&["-dev", "-bind", "10.0.0.1 10.0.0.2"]),
        "failed to parse flag -bind: bind_addr: multiple addresses found: 10.0.0.1 10.0.0.2"
    );
    assert!(err_of(&["-dev", "-retry-interval", "30"]).starts_with(
        "failed to parse flag -retry-interval: retry_interval: invalid duration \"30\""
    ));

    let bad_port = write(tmp.path(), "port.json", r#"{"ports": {"http": "eighty"}}"#);
    assert_eq!(
        err_of(&["-dev", "-config-file", s(&bad_port)]),
        format!(
            "failed to parse {}: ports.http: expected an integer, found string \"eighty\"",
            s(&bad_port)
        )
    );
    let bad_bool = write(tmp.path(), "bool.hcl", "server = \"yes\"\n");
    assert_eq!(
        err_of(&["-dev", "-config-file", s(&bad_bool)]),
        format!(
            "failed to parse {}: server: expected a boolean, found string \"yes\"",
            s(&bad_bool)
        )
    );
    let bad_dur = write(
        tmp.path(),
        "dur.json",
        r#"{"dns_config": {"service_ttl": {"web": "5 minutes"}}}"#,
    );
    assert!(err_of(&["-dev", "-config-file", s(&bad_dur)])
        .contains("dns_config.service_ttl.web: invalid duration"));
    let top = write(tmp.path(), "top.json", "[1, 2]");
    assert_eq!(
        err_of(&["-dev", "-config-file", s(&top)]),
        format!(
            "failed to parse {}: the top level must be an object, found a list",
            s(&top)
        )
    );
}

#[test]
fn file_errors_name_the_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing.json");
    let err = err_of(&["-dev", "-config-file", s(&missing)]);
    assert!(
        err.starts_with(&format!("config: Open failed on {}.", s(&missing))),
        "{err}"
    );

    let missing_dir = tmp.path().join("nodir");
    let err = err_of(&["-dev", "-config-dir", s(&missing_dir)]);
    assert!(err.contains(s(&missing_dir)), "{err}");

    let json = write(
        tmp.path(),
        "broken.json",
        "{\n  \"server\": true,\n  \"datacenter\": \n}\n",
    );
    let err = load_args(&["-dev", "-config-file", s(&json)]).unwrap_err();
    match &err {
        ConfigError::Json { line, origin, .. } => {
            assert_eq!(*line, 4);
            assert_eq!(origin, &Origin::File(json.clone()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("failed to parse {}: line 4", s(&json))),
        "{err}"
    );

    let hcl = write(
        tmp.path(),
        "broken.hcl",
        "server = true\nports {\n  dns = \n}\n",
    );
    let err = load_args(&["-dev", "-config-file", s(&hcl)]).unwrap_err();
    match &err {
        ConfigError::Hcl { line, .. } => assert!(*line >= 3, "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains(s(&hcl)), "{err}");

    let err = load_args(&["-dev", "-hcl", "node_name = var.name"]).unwrap_err();
    assert!(matches!(err, ConfigError::HclExpression { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("failed to parse -hcl snippet #1: node_name"),
        "{err}"
    );
}

#[test]
fn leave_defaults_follow_server_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = s(tmp.path());
    let client = load_args(&["-data-dir", d, "-node", "c"]).expect("client");
    assert!(client.leave_on_terminate && !client.skip_leave_on_interrupt);
    let server = load_args(&["-server", "-data-dir", d, "-node", "s"]).expect("server");
    assert!(!server.leave_on_terminate && server.skip_leave_on_interrupt);
    let explicit = load_args(&[
        "-server",
        "-data-dir",
        d,
        "-node",
        "s",
        "-hcl",
        "leave_on_terminate = true",
    ])
    .expect("explicit");
    assert!(explicit.leave_on_terminate);
}

#[test]
fn empty_files_and_null_values_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = write(tmp.path(), "empty.json", "  \n");
    let nulls = write(
        tmp.path(),
        "nulls.json",
        r#"{"node_name": null, "retry_join": null, "acl": {"tokens": null}}"#,
    );
    let c = load_args(&[
        "-dev",
        "-node",
        "kept",
        "-config-file",
        s(&empty),
        "-config-file",
        s(&nulls),
    ])
    .expect("loads");
    assert_eq!(c.node_name, "kept");
    assert!(c.retry_join.is_empty());
}

/// `enable_agent_tls_for_checks` is parsed (off by default), lends the internal-RPC
/// TLS files (legacy flat keys included) to checks, and a bad file is an error that
/// names it, for the agent to refuse to start with.
#[test]
fn agent_tls_for_checks_is_parsed_and_bad_files_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let off = load_args(&["-dev"]).expect("loads");
    assert!(!off.enable_agent_tls_for_checks);
    assert_eq!(off.check_tls_files(), None);
    assert!(matches!(crate::load_check_tls(&off), Ok(None)));

    let missing = tmp.path().join("missing-ca.pem");
    let garbage = write(tmp.path(), "key.pem", "-----BEGIN PRIVATE KEY-----\n!!\n");
    let text = json!({
        "enable_agent_tls_for_checks": true,
        "ca_file": s(&missing),
        "tls": {"defaults": {"cert_file": s(&garbage), "key_file": s(&garbage)}}
    });
    let file = write(tmp.path(), "tls.json", &text.to_string());
    let on = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
    assert!(on.enable_agent_tls_for_checks);
    assert!(on.unknown_keys.is_empty(), "{:?}", on.unknown_keys);
    let files = on.check_tls_files().expect("files lent to checks");
    assert_eq!(files.ca_file.as_deref(), Some(missing.as_path()));
    assert_eq!(files.key_file.as_deref(), Some(garbage.as_path()));
    let err = crate::load_check_tls(&on).expect_err("missing CA file");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );

    // The CA problem fixed (no CA: the system's trust store), the key is next.
    let text = json!({
        "enable_agent_tls_for_checks": true,
        "cert_file": s(&garbage),
        "key_file": s(&garbage)
    });
    let file = write(tmp.path(), "tls.json", &text.to_string());
    let on = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
    let err = crate::load_check_tls(&on).expect_err("invalid PEM");
    assert!(
        err.to_string()
            .starts_with(&format!("invalid PEM in {}: ", garbage.display())),
        "{err}"
    );
}

#[test]
fn allow_write_http_from_is_a_list_of_networks() {
    let cfg = load_args(&[
        "-dev",
        "-allow-write-http-from",
        "127.0.0.1/8",
        "-allow-write-http-from=fd00::/8",
    ])
    .expect("valid networks");
    let nets: Vec<String> = cfg
        .http_config
        .allow_write_http_from
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["127.0.0.0/8", "fd00::/8"]);
    let err = load_args(&["-dev", "-allow-write-http-from", "10.0.0.1"])
        .expect_err("no prefix length")
        .to_string();
    assert_eq!(err, "allow_write_http_from: invalid cidr: 10.0.0.1");
}

#[test]
fn response_headers_must_be_valid_http_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ok = write(
        tmp.path(),
        "ok.hcl",
        "http_config {\n  response_headers {\n    \"Access-Control-Allow-Origin\" = \"*\"\n  }\n}\n",
    );
    let cfg = load_args(&["-dev", "-config-file", s(&ok)]).expect("valid header");
    let headers: Vec<(&str, &str)> = cfg
        .http_config
        .response_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(headers, [("access-control-allow-origin", "*")]);
    let bad = write(
        tmp.path(),
        "bad.json",
        r#"{"http_config": {"response_headers": {"Bad Name": "x"}}}"#,
    );
    let err = load_args(&["-dev", "-config-file", s(&bad)])
        .expect_err("a space in a header name")
        .to_string();
    assert_eq!(
        err,
        "http_config.response_headers: invalid header \"Bad Name\": \"x\""
    );
}

/// `tls_cipher_suites` takes Consul's names, is refused with TLS 1.3 as the
/// minimum, and is not inherited by a section that allows TLS 1.3 only.
#[test]
fn tls_cipher_suites_are_checked_as_consul_checks_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let load = |name: &str, text: &str| {
        let file = write(tmp.path(), name, text);
        load_args(&["-dev", "-config-file", s(&file)])
    };
    let err = load(
        "bad.json",
        r#"{"tls": {"https": {"tls_cipher_suites": "TLS_RSA_WITH_AES_128_GCM_SHA256"}}}"#,
    )
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "tls.https.tls_cipher_suites: invalid TLS cipher suites: no matching Consul Agent TLS cipher suite found for TLS_RSA_WITH_AES_128_GCM_SHA256"
    );
    let err = load(
        "tls13.json",
        r#"{"tls": {"internal_rpc": {"tls_min_version": "TLSv1_3", "tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}}"#,
    )
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "tls.internal_rpc.tls_cipher_suites: TLS 1.3 cipher suites are not configurable"
    );
    let c = load(
        "inherit.json",
        r#"{"tls": {"defaults": {"tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
                    "https": {"tls_min_version": "TLSv1_3"}}}"#,
    )
    .expect("loads");
    assert_eq!(c.tls.https.tls_cipher_suites, None);
    assert_eq!(
        c.tls.internal_rpc.tls_cipher_suites.as_deref(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
}

/// `verify_server_hostname` alone turns TLS on for outgoing RPC, as in
/// Consul (CVE-2018-19653), in the `tls` block or as the legacy key.
#[test]
fn verify_server_hostname_implies_verify_outgoing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        (
            "new.json",
            r#"{"tls": {"internal_rpc": {"verify_server_hostname": true}}}"#,
        ),
        ("legacy.json", r#"{"verify_server_hostname": true}"#),
    ] {
        let file = write(tmp.path(), name, text);
        let c = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
        assert!(c.tls.internal_rpc.verify_outgoing, "{name}");
        assert!(!c.tls.https.verify_outgoing, "{name}: RPC only");
    }
}

/// Settings read but not acted on are named, so the agent can warn about
/// them; a plain configuration names none.
#[test]
fn settings_not_acted_on_are_named() {
    let plain = load_args(&["-dev"]).expect("dev");
    assert_eq!(plain.unapplied(), Vec::<String>::new());
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "tls.json",
        r#"{"tls": {"defaults": {"verify_incoming": true, "tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"}},
            "encrypt": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
            "encrypt_verify_incoming": false,
            "connect": {"ca_provider": "vault"},
            "log_file": "/var/log/consul/",
            "auto_reload_config": true}"#,
    );
    let cfg = load_args(&["-dev", "-config-file", s(&file)]).expect("loads");
    let warnings = cfg.unapplied();
    for needle in [
        "connect.ca_provider \"vault\" is not supported",
        "tls.internal_rpc.tls_cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA cannot be offered",
        "tls.https.tls_cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA cannot be offered",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(needle)),
            "{needle:?} not in {warnings:#?}"
        );
    }
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
}
