//! `catalog datacenters|nodes|services`.

use std::collections::BTreeMap;

use tribune_client::{CatalogNode, QueryOptions};
use tribune_types::goflag::{FlagSet, Parsed};

use super::format::{columnize, map_to_kv, tabwrite};
use super::http::{client, client_flags, query, server_flags, tenancy_flags};
use super::{flag_error, group, map_flag, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("datacenters", "Lists all known datacenters"),
    ("nodes", "Lists all nodes in the given datacenter"),
    ("services", "Lists all registered services in a datacenter"),
];

const HELP: &str = r#"Usage: tribune catalog <subcommand> [options] [args]

  Subcommands for reading the catalog (the cluster-wide registry of nodes and
  services, not to be confused with a single agent's local state).

      $ tribune catalog datacenters
      $ tribune catalog nodes
      $ tribune catalog services

  Ask any subcommand for -help for its options."#;

/// `catalog ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(("datacenters", rest)) => datacenters(rest, ctx).await,
        Ok(("nodes", rest)) => nodes(rest, ctx).await,
        Ok((_, rest)) => services(rest, ctx).await,
        Err(code) => code,
    }
}

/// The catalog commands take no positional arguments.
fn no_args(p: &Parsed, ctx: &mut Ctx) -> Result<(), i32> {
    if p.args.is_empty() {
        Ok(())
    } else {
        ctx.error(&format!(
            "Too many arguments (expected 0, got {})",
            p.args.len()
        ));
        Err(1)
    }
}

const DC_HELP: &str = "Usage: tribune catalog datacenters [options]

  Lists every known datacenter, nearest (by median round-trip time from this
  datacenter's servers) first.";

async fn datacenters(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("catalog datacenters")));
    let p = match parse(&flags, args, DC_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = no_args(&p, ctx) {
        return code;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.catalog().datacenters().await {
        Ok(dcs) => {
            for dc in dcs {
                ctx.info(dc);
            }
            0
        }
        Err(err) => {
            ctx.error(&format!("Error listing datacenters: {err}"));
            1
        }
    }
}

const NODES_HELP: &str = r#"Usage: tribune catalog nodes [options]

  Lists the nodes registered in a datacenter (the agent's, by default).

      $ tribune catalog nodes
      $ tribune catalog nodes -detailed
      $ tribune catalog nodes -service=web
      $ tribune catalog nodes -node-meta="foo=bar"
      $ tribune catalog nodes -near=node-web"#;

fn nodes_flags() -> FlagSet {
    let flags = FlagSet::new("catalog nodes")
        .bool(
            "detailed",
            "Output detailed information about the nodes including their addresses and metadata.",
        )
        .value(
            "filter",
            "Filter expression (go-bexpr syntax) evaluated by the server.",
        )
        .value(
            "near",
            "Node name to sort the node list in ascending order based on estimated round-trip \
             time from that node. Passing \"_agent\" will use this agent's node for sorting.",
        )
        .multi(
            "node-meta",
            "Metadata to filter nodes with the given key=value pairs. May be repeated.",
        )
        .value(
            "service",
            "Service id or name to filter nodes. Only nodes providing the service are listed.",
        );
    server_flags(client_flags(flags))
}

/// Query options from `-stale`, `-filter`, `-near` and `-node-meta`.
fn catalog_query(p: &Parsed, node_meta: Vec<(String, String)>) -> QueryOptions {
    QueryOptions {
        filter: p.get("filter").map(str::to_owned),
        near: p.get("near").map(str::to_owned),
        node_meta,
        ..query(p)
    }
}

async fn nodes(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = nodes_flags();
    let p = match parse(&flags, args, NODES_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let node_meta = match map_flag(&p, "node-meta") {
        Ok(m) => m,
        Err(msg) => return flag_error(ctx, &flags, NODES_HELP, &msg),
    };
    if let Err(code) = no_args(&p, ctx) {
        return code;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = catalog_query(&p, node_meta);
    let nodes: Vec<CatalogNode> = match p.get("service") {
        Some(service) => match client.catalog().service(service, &[], &opts).await {
            Ok((instances, _)) => instances
                .into_iter()
                .map(|s| CatalogNode {
                    id: s.id,
                    node: s.node,
                    address: s.address,
                    datacenter: s.datacenter,
                    tagged_addresses: s.tagged_addresses,
                    meta: s.node_meta,
                    create_index: s.create_index,
                    modify_index: s.modify_index,
                })
                .collect(),
            Err(err) => {
                ctx.error(&format!("Error listing nodes for service: {err}"));
                return 1;
            }
        },
        None => match client.catalog().nodes(&opts).await {
            Ok((nodes, _)) => nodes,
            Err(err) => {
                ctx.error(&format!("Error listing nodes: {err}"));
                return 1;
            }
        },
    };
    if nodes.is_empty() {
        ctx.error("No nodes match the given query - try expanding your search.");
        return 0;
    }
    ctx.info(columnize(&node_rows(&nodes, p.is_set("detailed"))));
    0
}

fn node_rows(nodes: &[CatalogNode], detailed: bool) -> Vec<Vec<String>> {
    let header: &[&str] = if detailed {
        &["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    } else {
        &["Node", "ID", "Address", "DC"]
    };
    let mut rows = vec![header.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()];
    for n in nodes {
        if detailed {
            rows.push(vec![
                n.node.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                map_to_kv(&n.tagged_addresses, ", "),
                map_to_kv(&n.meta, ", "),
            ]);
        } else {
            // Only the ID's first group, as Consul shortens it.
            let id = match n.id.find('-') {
                Some(i) if i > 0 => n.id[..i].to_owned(),
                _ => n.id.clone(),
            };
            rows.push(vec![
                n.node.clone(),
                id,
                n.address.clone(),
                n.datacenter.clone(),
            ]);
        }
    }
    rows
}

const SERVICES_HELP: &str = r#"Usage: tribune catalog services [options]

  Lists the services registered in a datacenter (the agent's, by default).

      $ tribune catalog services
      $ tribune catalog services -tags
      $ tribune catalog services -node=web
      $ tribune catalog services -node-meta="foo=bar""#;

fn services_flags() -> FlagSet {
    let flags = FlagSet::new("catalog services")
        .value(
            "filter",
            "Filter expression (go-bexpr syntax) evaluated by the server.",
        )
        .value("node", "Node id or name for which to list services.")
        .multi(
            "node-meta",
            "Metadata to filter nodes with the given key=value pairs. If specified, only \
             services running on nodes matching the given metadata will be returned. May be repeated.",
        )
        .bool(
            "tags",
            "Display each service's tags as a comma-separated list beside each service entry.",
        );
    tenancy_flags(server_flags(client_flags(flags)))
}

async fn services(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = services_flags();
    let p = match parse(&flags, args, SERVICES_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let node_meta = match map_flag(&p, "node-meta") {
        Ok(m) => m,
        Err(msg) => return flag_error(ctx, &flags, SERVICES_HELP, &msg),
    };
    if let Err(code) = no_args(&p, ctx) {
        return code;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = QueryOptions {
        filter: p.get("filter").map(str::to_owned),
        node_meta,
        ..query(&p)
    };
    let services: BTreeMap<String, Vec<String>> = match p.get("node") {
        Some(node) => match client.catalog().node(node, &opts).await {
            Ok((node, _)) => {
                let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in node.map(|n| n.services).unwrap_or_default().into_values() {
                    services.entry(s.service).or_default().extend(s.tags);
                }
                services
            }
            Err(err) => {
                ctx.error(&format!("Error listing services for node: {err}"));
                return 1;
            }
        },
        None => match client.catalog().services(&opts).await {
            Ok((services, _)) => services,
            Err(err) => {
                ctx.error(&format!("Error listing services: {err}"));
                return 1;
            }
        },
    };
    if services.is_empty() {
        ctx.error("No services match the given query - try expanding your search.");
        return 0;
    }
    if p.is_set("tags") {
        let mut table = String::new();
        for (name, mut tags) in services {
            tags.sort();
            table.push_str(&format!("{name}\t{}\n", tags.join(",")));
        }
        ctx.info(tabwrite(&table, 6).trim());
    } else {
        for name in services.into_keys() {
            ctx.info(name);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    #[tokio::test]
    async fn datacenters_nodes_services() {
        let fake = fake(|req| match req.path() {
            "/v1/catalog/datacenters" => ok(r#"["dc1","dc2"]"#),
            "/v1/catalog/nodes" if req.query().contains("filter") => ok("[]"),
            "/v1/catalog/nodes" => ok(
                r#"[{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"node-1","Address":"10.0.0.1",
                     "Datacenter":"dc1","TaggedAddresses":{"wan":"1.2.3.4","lan":"10.0.0.1"},"Meta":{"os":"linux"}}]"#,
            ),
            "/v1/catalog/service/web" => ok(
                r#"[{"ID":"aaaa-bbbb","Node":"web-node","Address":"10.0.0.9","Datacenter":"dc1","ServiceName":"web"}]"#,
            ),
            "/v1/catalog/services" => ok(r#"{"consul":[],"web":["v2","v1"],"db":null}"#),
            "/v1/catalog/node/node-1" => ok(
                r#"{"Node":{"Node":"node-1"},"Services":{"a":{"Service":"web","Tags":["x"]},"b":{"Service":"web","Tags":["y"]}}}"#,
            ),
            "/v1/catalog/node/ghost" => ok("null"),
            _ => status(500, "boom"),
        })
        .await;
        let a = fake.addr.as_str();

        let r = run_at(a, "catalog", &["datacenters"], b"").await;
        assert_eq!(r.out, "dc1\ndc2\n");

        let r = run_at(a, "catalog", &["nodes"], b"").await;
        assert_eq!(
            r.out,
            "Node    ID        Address   DC\nnode-1  40e4a748  10.0.0.1  dc1\n"
        );
        let r = run_at(a, "catalog", &["nodes", "-detailed"], b"").await;
        assert_eq!(
            r.out,
            "Node    ID                                    Address   DC   TaggedAddresses            Meta\n\
             node-1  40e4a748-2192-161a-0510-9bf59fe950b5  10.0.0.1  dc1  lan=10.0.0.1, wan=1.2.3.4  os=linux\n"
        );
        let r = run_at(
            a,
            "catalog",
            &[
                "nodes",
                "-service=web",
                "-near=_agent",
                "-node-meta",
                "os=linux",
            ],
            b"",
        )
        .await;
        assert_eq!(
            r.out,
            "Node      ID    Address   DC\nweb-node  aaaa  10.0.0.9  dc1\n"
        );
        let r = run_at(a, "catalog", &["nodes", "-filter", "Meta.os == bsd"], b"").await;
        assert_eq!(
            (r.code, r.out.as_str(), r.err.as_str()),
            (
                0,
                "",
                "No nodes match the given query - try expanding your search.\n"
            )
        );

        let r = run_at(a, "catalog", &["services"], b"").await;
        assert_eq!(r.out, "consul\ndb\nweb\n");
        let r = run_at(a, "catalog", &["services", "-tags"], b"").await;
        // Go trims only the ends of the whole table, so inner lines keep their padding.
        assert_eq!(r.out, "consul      \ndb          \nweb         v1,v2\n");
        let r = run_at(a, "catalog", &["services", "-node=node-1", "-tags"], b"").await;
        assert_eq!(r.out, "web      x,y\n");
        let r = run_at(a, "catalog", &["services", "-node=ghost"], b"").await;
        assert_eq!(
            r.err,
            "No services match the given query - try expanding your search.\n"
        );

        let reqs = fake.requests();
        let svc = reqs
            .iter()
            .find(|r| r.path() == "/v1/catalog/service/web")
            .unwrap();
        assert_eq!(svc.query(), "near=_agent&node-meta=os%3Alinux");
    }

    #[tokio::test]
    async fn argument_and_server_errors() {
        let fake = fake(|_| status(500, "No path to datacenter")).await;
        let a = fake.addr.as_str();
        let r = run_at(a, "catalog", &["nodes", "extra"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Too many arguments (expected 0, got 1)\n")
        );
        let r = run_at(a, "catalog", &["nodes", "-node-meta", "novalue"], b"").await;
        assert_eq!(r.code, 1);
        assert!(r
            .err
            .starts_with("invalid value \"novalue\" for flag -node-meta: Missing \"=\""));
        let r = run_at(a, "catalog", &["nodes", "-datacenter", "dc9"], b"").await;
        assert_eq!(
            r.err,
            "Error listing nodes: Unexpected response code: 500 (No path to datacenter)\n"
        );
        assert_eq!(fake.requests()[0].query(), "dc=dc9");
        let r = run_at(a, "catalog", &["services"], b"").await;
        assert!(r.err.starts_with("Error listing services: "));
        let r = run_at(a, "catalog", &["datacenters"], b"").await;
        assert_eq!(r.code, 1);
        let r = run_at(a, "catalog", &["bogus"], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.out.contains("Subcommands:"));
    }
}
