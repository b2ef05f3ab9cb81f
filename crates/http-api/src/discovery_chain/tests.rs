//! The compiler against the chains Consul's own tests and documentation show.

use super::*;
use serde_json::json;

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fn entry(kind: &str, name: &str, body: Value) -> ConfigEntry {
    ConfigEntry {
        kind: kind.into(),
        name: name.into(),
        body_json: body.to_string(),
        ..ConfigEntry::default()
    }
}

fn chain(
    service: &str,
    dc: &str,
    overrides: Overrides,
    entries: &[ConfigEntry],
) -> Result<Value, ChainError> {
    let req = Request {
        service,
        datacenter: dc,
        trust_domain: TD,
        overrides,
    };
    let entries = Entries::new(entries)?;
    Ok(serde_json::to_value(compile(&req, &entries)?).unwrap_or_default())
}

#[test]
fn the_default_chain_is_consuls_byte_for_byte() {
    let c = chain("web", "dc1", Overrides::default(), &[]).unwrap();
    let want = format!(
        r#"{{"ServiceName":"web","Namespace":"default","Partition":"default","Datacenter":"dc1","Default":true,"Protocol":"tcp","StartNode":"resolver:web.default.default.dc1","Nodes":{{"resolver:web.default.default.dc1":{{"Type":"resolver","Name":"web.default.default.dc1","Resolver":{{"ConnectTimeout":"5s","Default":true,"Target":"web.default.default.dc1"}}}}}},"Targets":{{"web.default.default.dc1":{{"ConnectTimeout":"5s","ID":"web.default.default.dc1","Service":"web","Namespace":"default","Partition":"default","Datacenter":"dc1","MeshGateway":{{}},"Subset":{{}},"TransparentProxy":{{}},"SNI":"web.default.dc1.internal.{TD}","Name":"web.default.dc1.internal.{TD}"}}}},"AutoVirtualIPs":null,"ManualVirtualIPs":null}}"#
    );
    assert_eq!(c.to_string(), want);
    let dc2 = chain("web", "dc2", Overrides::default(), &[]).unwrap();
    assert_eq!(dc2["StartNode"], "resolver:web.default.default.dc2");
    assert_eq!(
        dc2["Targets"]["web.default.default.dc2"]["SNI"],
        format!("web.default.dc2.internal.{TD}")
    );
}

#[test]
fn a_resolver_and_overrides_as_in_the_go_clients_test() {
    let resolver = entry(
        "service-resolver",
        "web",
        json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "33s"}),
    );
    let c = chain(
        "web",
        "dc1",
        Overrides::default(),
        std::slice::from_ref(&resolver),
    )
    .unwrap();
    assert_eq!(c.get("Default"), None, "no longer the default chain");
    let node = &c["Nodes"]["resolver:web.default.default.dc1"]["Resolver"];
    assert_eq!(
        node,
        &json!({"ConnectTimeout": "33s", "Target": "web.default.default.dc1"})
    );
    assert_eq!(
        c["Targets"]["web.default.default.dc1"]["ConnectTimeout"],
        "33s"
    );

    let overrides = Overrides {
        connect_timeout: Duration::from_secs(22),
        protocol: "grpc".into(),
        mesh_gateway_mode: "local".into(),
    };
    let c = chain("web", "dc2", overrides, &[resolver]).unwrap();
    assert_eq!(c["CustomizationHash"], "98809527");
    assert_eq!(c["Protocol"], "grpc");
    let t = &c["Targets"]["web.default.default.dc2"];
    assert_eq!(
        (&t["ConnectTimeout"], &t["MeshGateway"]),
        (&json!("22s"), &json!({"Mode": "local"}))
    );

    // py-consul's POST: only the protocol; the chain stays the default one.
    let http = Overrides {
        protocol: "http".into(),
        ..Overrides::default()
    };
    let c = chain("web", "dc1", http, &[]).unwrap();
    assert_eq!(
        (&c["CustomizationHash"], &c["Protocol"], &c["Default"]),
        (&json!("1a47f6e1"), &json!("http"), &json!(true))
    );
    // The documentation's example hash.
    let docs = Overrides {
        connect_timeout: Duration::from_secs(7),
        protocol: "grpc".into(),
        mesh_gateway_mode: "remote".into(),
    };
    assert_eq!(
        chain("web", "dc1", docs, &[]).unwrap()["CustomizationHash"],
        "b94f529a"
    );
}

#[test]
fn failover_redirects_and_subsets() {
    let failover = entry(
        "service-resolver",
        "web",
        json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "33s",
               "Failover": {"*": {"Datacenters": ["dc2"]}}}),
    );
    let c = chain("web", "dc1", Overrides::default(), &[failover]).unwrap();
    assert_eq!(
        c["Nodes"]["resolver:web.default.default.dc1"]["Resolver"]["Failover"],
        json!({"Targets": ["web.default.default.dc2"]})
    );
    assert_eq!(
        c["Targets"]["web.default.default.dc2"]["ConnectTimeout"],
        "33s"
    );
    assert!(c["Nodes"].get("resolver:web.default.default.dc2").is_none());

    let subsets = entry(
        "service-resolver",
        "db",
        json!({"kind": "service-resolver", "name": "db", "default_subset": "v1",
               "subsets": {"v1": {"filter": "Service.Meta.version == v1", "only_passing": true}}}),
    );
    let redirect = entry(
        "service-resolver",
        "web",
        json!({"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "db"}}),
    );
    let c = chain(
        "web",
        "dc1",
        Overrides::default(),
        &[subsets.clone(), redirect],
    )
    .unwrap();
    assert_eq!(c["StartNode"], "resolver:v1.db.default.default.dc1");
    let t = &c["Targets"]["v1.db.default.default.dc1"];
    assert_eq!(
        t["Subset"],
        json!({"Filter": "Service.Meta.version == v1", "OnlyPassing": true})
    );
    assert_eq!(t["SNI"], format!("v1.db.default.dc1.internal.{TD}"));
    assert_eq!(
        c["Targets"].as_object().map(Map::len),
        Some(1),
        "the redirected-from target is not kept"
    );

    let loop_a = entry(
        "service-resolver",
        "a",
        json!({"Redirect": {"Service": "b"}}),
    );
    let loop_b = entry(
        "service-resolver",
        "b",
        json!({"Redirect": {"Service": "a"}}),
    );
    assert_eq!(
        chain("a", "dc1", Overrides::default(), &[loop_a, loop_b]).unwrap_err().to_string(),
        "detected circular resolver redirect: [a.default.default.dc1 -> b.default.default.dc1 -> a.default.default.dc1]"
    );
    let missing = entry("service-resolver", "db", json!({"DefaultSubset": "v9"}));
    assert_eq!(
        chain("db", "dc1", Overrides::default(), &[missing])
            .unwrap_err()
            .to_string(),
        "service \"db\" does not have a subset named \"v9\""
    );
}

#[test]
fn routers_and_splitters_need_http_and_nest() {
    let splitter =
        |name: &str, splits: Value| entry("service-splitter", name, json!({"Splits": splits}));
    let web = splitter(
        "web",
        json!([{"Weight": 90, "Service": "web-v2"}, {"Weight": 10}]),
    );
    let v2 = splitter(
        "web-v2",
        json!([{"Weight": 50, "Service": "a"}, {"Weight": 50, "Service": "b"}]),
    );
    let err = chain(
        "web",
        "dc1",
        Overrides::default(),
        &[web.clone(), v2.clone()],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "discovery chain \"web\" uses a protocol \"tcp\" that does not permit advanced routing or splitting behavior"
    );
    let http = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "http"}}),
    );
    let c = chain(
        "web",
        "dc1",
        Overrides::default(),
        &[web.clone(), v2.clone(), http.clone()],
    )
    .unwrap();
    assert_eq!(c["Protocol"], "http");
    assert_eq!(c["StartNode"], "splitter:web.default.default");
    let splits = c["Nodes"]["splitter:web.default.default"]["Splits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let got: Vec<(f64, &str)> = splits
        .iter()
        .map(|s| {
            (
                s["Weight"].as_f64().unwrap_or(0.0),
                s["NextNode"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (45.0, "resolver:a.default.default.dc1"),
            (45.0, "resolver:b.default.default.dc1"),
            (10.0, "resolver:web.default.default.dc1")
        ]
    );
    assert!(
        c["Nodes"].get("splitter:web-v2.default.default").is_none(),
        "flattened away"
    );
    // A protocol override that is not HTTP turns the splitters off.
    let tcp = Overrides {
        protocol: "tcp".into(),
        ..Overrides::default()
    };
    let c = chain("web", "dc1", tcp, &[web.clone(), v2, http.clone()]).unwrap();
    assert_eq!(
        (&c["StartNode"], &c["Protocol"]),
        (&json!("resolver:web.default.default.dc1"), &json!("tcp"))
    );

    let router = entry(
        "service-router",
        "web",
        json!({"Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]}),
    );
    let c = chain("web", "dc1", Overrides::default(), &[router, web, http]).unwrap();
    let routes = c["Nodes"]["router:web.default.default"]["Routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["NextNode"], "resolver:admin.default.default.dc1");
    assert_eq!(
        routes[1]["Definition"]["Match"],
        json!({"HTTP": {"PathPrefix": "/"}})
    );
    assert_eq!(routes[1]["NextNode"], "splitter:web.default.default");

    let a = splitter("a", json!([{"Weight": 100, "Service": "b"}]));
    let b = splitter("b", json!([{"Weight": 100, "Service": "a"}]));
    let http = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "http"}}),
    );
    assert!(chain("a", "dc1", Overrides::default(), &[a, b, http])
        .unwrap_err()
        .to_string()
        .starts_with("detected circular reference: [splitter:a.default.default -> "));
}

#[test]
fn writes_that_would_break_a_chain_are_refused() {
    let router = entry(
        "service-router",
        "web",
        json!({"Routes": [{"Match": {"HTTP": {"PathPrefix": "/a"}}, "Destination": {"Service": "a"}}]}),
    );
    // A router on a TCP service.
    assert_eq!(
        check_write(&router, &[], "dc1").unwrap_err().to_string(),
        "discovery chain \"web\" uses a protocol \"tcp\" that does not permit advanced routing or splitting behavior"
    );
    let http = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "http"}}),
    );
    assert_eq!(
        check_write(&router, std::slice::from_ref(&http), "dc1"),
        Ok(())
    );
    // Taking HTTP away from a service that has a router breaks its chain.
    let tcp = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "tcp"}}),
    );
    assert!(check_write(&tcp, &[http.clone(), router], "dc1").is_err());
    // A splitter's own rules.
    let split = |splits: Value| entry("service-splitter", "web", json!({"Splits": splits}));
    assert_eq!(
        check_write(&split(json!([])), std::slice::from_ref(&http), "dc1")
            .unwrap_err()
            .to_string(),
        "no splits configured"
    );
    assert_eq!(
        check_write(
            &split(json!([{"Weight": 60}, {"Weight": 30, "Service": "b"}])),
            std::slice::from_ref(&http),
            "dc1"
        )
        .unwrap_err()
        .to_string(),
        "the sum of all split weights must be 100, not 90.000000"
    );
    let ok = split(json!([{"Weight": 33.33}, {"Weight": 66.67, "Service": "b"}]));
    assert_eq!(check_write(&ok, &[http], "dc1"), Ok(()));
    // A redirect to a peer is stored, as Consul stores it.
    let peer = entry(
        "service-resolver",
        "p",
        json!({"Redirect": {"Peer": "other"}}),
    );
    assert_eq!(check_write(&peer, &[], "dc1"), Ok(()));
    // Other kinds are not chain entries.
    let other = entry("ingress-gateway", "gw", json!({}));
    assert_eq!(check_write(&other, &[], "dc1"), Ok(()));
}

#[test]
fn user_chosen_names_timeouts_weights_and_external_services() {
    // Subset and failover keys are names: kept as written, hyphens included.
    let resolver = entry(
        "service-resolver",
        "db",
        json!({"DefaultSubset": "canary-v2", "ConnectTimeout": "500ms",
               "Subsets": {"canary-v2": {"Filter": "x"}, "v1": {}},
               "Failover": {"canary-v2": {"Datacenters": ["dc2"]}}}),
    );
    let c = chain("db", "dc1", Overrides::default(), &[resolver]).unwrap();
    let node = &c["Nodes"]["resolver:canary-v2.db.default.default.dc1"]["Resolver"];
    assert_eq!(
        node["ConnectTimeout"], "500ms",
        "a sub-second timeout is kept"
    );
    assert_eq!(
        node["Failover"],
        json!({"Targets": ["canary-v2.db.default.default.dc2"]})
    );

    // Weights are written as Go writes a float32.
    let http = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "http"}}),
    );
    let split = entry(
        "service-splitter",
        "web",
        json!({"Splits": [{"Weight": 33.33, "Service": "a"}, {"Weight": 66.67, "Service": "b"}]}),
    );
    let c = chain("web", "dc1", Overrides::default(), &[split, http]).unwrap();
    let text = c.to_string();
    assert!(text.contains(r#""Weight":33.33,"#), "{text}");
    assert!(text.contains(r#""Weight":66.67,"#), "{text}");
    let whole = Split {
        definition: Value::Null,
        weight: 90.0,
        next_node: String::new(),
    };
    assert_eq!(
        serde_json::to_string(&whole).unwrap_or_default(),
        r#"{"Definition":null,"Weight":90,"NextNode":""}"#
    );
    // Consul rounds in float32: 33.335 is 33.34 there (33.33 in f64).
    assert_eq!(normalize_weight(33.335), 33.34);

    // An external service keeps its SNI and takes no mesh gateway override.
    let external = entry(
        "service-defaults",
        "ext",
        json!({"ExternalSNI": "ext.example.com"}),
    );
    let local = Overrides {
        mesh_gateway_mode: "local".into(),
        ..Overrides::default()
    };
    let c = chain("ext", "dc1", local, std::slice::from_ref(&external)).unwrap();
    let t = &c["Targets"]["ext.default.default.dc1"];
    assert_eq!(
        (&t["SNI"], &t["External"], &t["MeshGateway"]),
        (&json!("ext.example.com"), &json!(true), &json!({}))
    );
    assert_eq!(t["Name"], format!("ext.default.dc1.internal.{TD}"));
    assert!(c.get("CustomizationHash").is_none());
    let subsets = entry("service-resolver", "ext", json!({"Subsets": {"v1": {}}}));
    assert_eq!(
        chain("ext", "dc1", Overrides::default(), &[external, subsets])
            .unwrap_err()
            .to_string(),
        "service \"ext\" has an external SNI set; cannot define subsets for external services"
    );
    // Peers do not exist here: said so, not dropped.
    let peer = entry(
        "service-resolver",
        "p",
        json!({"Redirect": {"Peer": "other"}}),
    );
    assert!(matches!(
        chain("p", "dc1", Overrides::default(), &[peer]),
        Err(ChainError::Peering(_))
    ));
}

#[test]
fn cycles_are_named_from_the_start_and_layered_splitters_stay_bounded() {
    let http = entry(
        "proxy-defaults",
        "global",
        json!({"Config": {"protocol": "http"}}),
    );
    let split = |name: &str, to: &[&str]| {
        let w = 100.0 / to.len() as f64;
        let splits: Vec<Value> = to
            .iter()
            .map(|s| json!({"Weight": w, "Service": s}))
            .collect();
        entry("service-splitter", name, json!({ "Splits": splits }))
    };
    let entries = [
        split("web", &["a"]),
        split("a", &["b"]),
        split("b", &["a"]),
        http.clone(),
    ];
    assert_eq!(
        chain("web", "dc1", Overrides::default(), &entries).unwrap_err().to_string(),
        "detected circular reference: [splitter:web.default.default -> splitter:a.default.default -> splitter:b.default.default -> splitter:a.default.default]"
    );
    // Thirty layers of two splitters each splitting into both of the next layer:
    // 2^30 paths. Refused as too large instead of walked.
    let mut layered = vec![http];
    for i in 0..30 {
        let next = [format!("a{}", i + 1), format!("b{}", i + 1)];
        let next: Vec<&str> = next.iter().map(String::as_str).collect();
        layered.push(split(&format!("a{i}"), &next));
        layered.push(split(&format!("b{i}"), &next));
    }
    assert!(matches!(
        chain("a0", "dc1", Overrides::default(), &layered),
        Err(ChainError::TooLarge(_))
    ));
    let tcp = Overrides {
        protocol: "tcp".into(),
        ..Overrides::default()
    };
    // A non-HTTP override switches the splitters off, and says so in the hash.
    assert_eq!(
        chain("a0", "dc1", tcp, &layered).unwrap()["CustomizationHash"],
        "96f2c150"
    );
}
