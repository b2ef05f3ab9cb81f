//! Catalog, agent and status endpoints against a fake agent.

mod common;

use common::{client, fake, Resp};
use tribune_client::{
    AgentServiceRegistration, MembersOptions, QueryOptions, ServiceAddress, ServiceRegisterOptions,
};

#[tokio::test]
async fn catalog_reads_tolerate_go_nulls() {
    let fake = fake(|req| match req.path.as_str() {
        "/v1/catalog/datacenters" => Resp::json(r#"["dc1","dc2"]"#),
        "/v1/catalog/nodes" => Resp::json(
            r#"[{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"n1","Address":"10.0.0.1",
                 "Datacenter":"dc1","TaggedAddresses":null,"Meta":{"os":"linux"},
                 "CreateIndex":3,"ModifyIndex":4}]"#,
        )
        .header("X-Consul-Index", "4"),
        "/v1/catalog/services" => Resp::json(r#"{"consul":[],"web":["v1","v2"],"db":null}"#),
        "/v1/catalog/service/web" => Resp::json(
            r#"[{"ID":"x","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1",
                 "ServiceID":"web-1","ServiceName":"web","ServiceTags":["v1"],"ServicePort":80,
                 "ServiceMeta":null,"ServiceWeights":{"Passing":1,"Warning":1},
                 "ServiceTaggedAddresses":{"lan":{"Address":"10.0.0.1","Port":80}},
                 "ServiceProxy":{"Mode":""},"CreateIndex":5,"ModifyIndex":6}]"#,
        ),
        "/v1/catalog/node/n1" => Resp::json(
            r#"{"Node":{"Node":"n1","Address":"10.0.0.1"},
                "Services":{"web-1":{"ID":"web-1","Service":"web","Tags":null,"Port":80}}}"#,
        ),
        "/v1/catalog/node/ghost" => Resp::json("null"),
        other => Resp::status(404, &format!("no route {other}")),
    })
    .await;
    let client = client(&fake.url());
    let catalog = client.catalog();
    assert_eq!(catalog.datacenters().await.unwrap(), ["dc1", "dc2"]);

    let opts = QueryOptions {
        filter: Some("Meta.os == \"linux\"".into()),
        near: Some("_agent".into()),
        node_meta: vec![("os".into(), "linux".into()), ("rack".into(), "r1".into())],
        ..Default::default()
    };
    let (nodes, meta) = catalog.nodes(&opts).await.unwrap();
    assert_eq!(meta.index, 4);
    assert_eq!(nodes[0].node, "n1");
    assert!(nodes[0].tagged_addresses.is_empty());
    assert_eq!(nodes[0].meta["os"], "linux");

    let (services, _) = catalog.services(&QueryOptions::default()).await.unwrap();
    assert_eq!(services["web"], ["v1", "v2"]);
    assert!(services["db"].is_empty());
    assert!(services["consul"].is_empty());

    let (instances, _) = catalog
        .service("web", &["v1", "blue"], &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(instances[0].service_id, "web-1");
    assert_eq!(instances[0].service_port, 80);
    assert_eq!(
        instances[0].service_tagged_addresses["lan"],
        ServiceAddress {
            address: "10.0.0.1".into(),
            port: 80
        }
    );

    let (node, _) = catalog.node("n1", &QueryOptions::default()).await.unwrap();
    let node = node.unwrap();
    assert_eq!(node.services["web-1"].service, "web");
    let (ghost, _) = catalog
        .node("ghost", &QueryOptions::default())
        .await
        .unwrap();
    assert!(ghost.is_none());

    let reqs = fake.requests();
    let nodes_req = &reqs[1];
    assert_eq!(
        nodes_req.param("filter").as_deref(),
        Some("Meta.os == \"linux\"")
    );
    assert_eq!(nodes_req.param("near").as_deref(), Some("_agent"));
    let metas: Vec<_> = nodes_req
        .params()
        .into_iter()
        .filter(|(k, _)| k == "node-meta")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(metas, ["os:linux", "rack:r1"]);
    let tags: Vec<_> = reqs[3]
        .params()
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tags, ["v1", "blue"]);
}

#[tokio::test]
async fn agent_endpoints() {
    let fake = fake(|req| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/agent/self") => Resp::json(
            r#"{"Config":{"Datacenter":"dc1","NodeName":"n1","NodeID":"abc","Server":true,"Version":"1.20.0"},
                "Member":{"Name":"n1","Addr":"127.0.0.1","Port":8301,"Tags":{"role":"consul"},"Status":1},
                "Stats":{"agent":{"checks":"0"},"raft":{"state":"Leader"}},
                "Meta":null,"DebugConfig":{"Anything":1}}"#,
        ),
        ("GET", "/v1/agent/members") => Resp::json(
            r#"[{"Name":"n1","Addr":"127.0.0.1","Port":8302,"Tags":{"role":"consul","dc":"dc1"},
                 "Status":1,"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2,
                 "DelegateMin":2,"DelegateMax":5,"DelegateCur":4}]"#,
        ),
        ("GET", "/v1/agent/services") => {
            Resp::json(r#"{"web":{"ID":"web","Service":"web","Port":80,"Weights":{"Passing":3,"Warning":1}}}"#)
        }
        ("GET", "/v1/agent/service/web") => {
            Resp::json(r#"{"ID":"web","Service":"web","ContentHash":"h1"}"#).header("X-Consul-ContentHash", "h1")
        }
        ("GET", _) => Resp::status(404, "unknown service ID"),
        ("PUT", _) => Resp::status(200, ""),
        _ => Resp::status(405, ""),
    })
    .await;
    let client = client(&fake.url());
    let agent = client.agent();

    let me = agent.self_().await.unwrap();
    assert_eq!(me.config.node_name, "n1");
    assert!(me.config.server);
    assert_eq!(me.stats["raft"]["state"], "Leader");
    assert_eq!(me.member.unwrap().status_name(), "alive");

    let members = agent
        .members(&MembersOptions {
            wan: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(members[0].port, 8302);
    assert_eq!(members[0].delegate_cur, 4);

    let services = agent.services(&QueryOptions::default()).await.unwrap();
    assert_eq!(services["web"].weights.passing, 3);
    let (web, meta) = agent
        .service("web", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(web.unwrap().content_hash.as_deref(), Some("h1"));
    assert_eq!(meta.content_hash.as_deref(), Some("h1"));
    let (missing, _) = agent
        .service("nope", &QueryOptions::default())
        .await
        .unwrap();
    assert!(missing.is_none());

    let registration = AgentServiceRegistration {
        name: "web".into(),
        port: 8080,
        tags: vec!["v1".into()],
        meta: [("env".to_owned(), "prod".to_owned())].into(),
        ..Default::default()
    };
    agent.service_register(&registration).await.unwrap();
    agent
        .service_register_opts(
            &registration,
            &ServiceRegisterOptions {
                replace_existing_checks: true,
            },
        )
        .await
        .unwrap();
    agent.service_deregister("batman/pg1").await.unwrap();
    agent.join("10.0.0.2:8301", false).await.unwrap();
    agent.join("10.0.0.3", true).await.unwrap();
    agent.leave().await.unwrap();
    agent.reload().await.unwrap();

    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    let body: serde_json::Value = serde_json::from_slice(&puts[0].body).unwrap();
    // Empty fields are omitted, as Go's `omitempty` does.
    assert_eq!(
        body,
        serde_json::json!({"Name":"web","Tags":["v1"],"Port":8080,"Meta":{"env":"prod"}})
    );
    assert_eq!(puts[0].path, "/v1/agent/service/register");
    assert_eq!(
        puts[1].param("replace-existing-checks").as_deref(),
        Some("true")
    );
    assert_eq!(puts[2].path, "/v1/agent/service/deregister/batman%2Fpg1");
    assert_eq!(puts[3].path, "/v1/agent/join/10.0.0.2:8301");
    assert_eq!(puts[3].param("wan"), None);
    assert_eq!(puts[4].param("wan").as_deref(), Some("1"));
    assert_eq!(puts[5].path, "/v1/agent/leave");
    assert_eq!(puts[6].path, "/v1/agent/reload");
    let members_req = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/agent/members")
        .unwrap();
    assert_eq!(members_req.param("wan").as_deref(), Some("1"));
}

#[tokio::test]
async fn agent_write_errors_carry_status_and_body() {
    let fake = fake(|_| Resp::status(400, "Missing service name")).await;
    let err = client(&fake.url())
        .agent()
        .service_register(&AgentServiceRegistration::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unexpected response code: 400 (Missing service name)"
    );
}

#[tokio::test]
async fn status_leader_and_peers() {
    let fake = fake(|req| match req.path.as_str() {
        "/v1/status/leader" => Resp::json(r#""127.0.0.1:8300""#),
        "/v1/status/peers" => Resp::json(r#"["127.0.0.1:8300","127.0.0.2:8300"]"#),
        _ => Resp::status(404, ""),
    })
    .await;
    let client = client(&fake.url());
    assert_eq!(client.status().leader().await.unwrap(), "127.0.0.1:8300");
    assert_eq!(client.status().peers().await.unwrap().len(), 2);

    // No leader: the empty string, not an error.
    let fake = common::fake(|_| Resp::json(r#""""#)).await;
    assert_eq!(
        common::client(&fake.url()).status().leader().await.unwrap(),
        ""
    );
}
