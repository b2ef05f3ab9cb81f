//! `rtt node1 [node2]`: the round trip between two nodes estimated from their
//! network coordinates (LAN, or WAN with `-wan` and `node.dc` names).

use tribune_client::{Coordinate, QueryOptions};
use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags};
use super::{help_text, parse, Ctx};

const HELP: &str = r#"Usage: tribune rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using the network
  coordinate model of the cluster.

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. These are node names as "members" shows
  them, not IP addresses.

  By default the two nodes are taken from the local datacenter and their LAN
  coordinates are used. With -wan the WAN coordinates are used, and the node
  names must be suffixed by a period and the datacenter (e.g. "myserver.dc1").
  LAN and WAN coordinates are not comparable."#;

/// `rtt [-wan] node1 [node2]`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("rtt").bool("wan", "Use WAN coordinates instead of LAN coordinates."),
    );
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() || p.args.len() > 2 {
        ctx.error("One or two node names must be specified");
        ctx.error("");
        ctx.error(&help_text(HELP, &flags));
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let wan = p.is_set("wan");
    let mut nodes = p.args.clone();
    if nodes.len() < 2 {
        match client.agent().self_().await {
            Ok(me) if wan => {
                nodes.push(format!("{}.{}", me.config.node_name, me.config.datacenter))
            }
            Ok(me) => nodes.push(me.config.node_name),
            Err(err) => {
                ctx.error(&format!("Unable to look up agent info: {err}"));
                return 1;
            }
        }
    }
    let found = if wan {
        wan_pair(&client, &nodes, ctx).await
    } else {
        lan_pair(&client, &nodes, ctx).await
    };
    let (a, b) = match found {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (None, _) => {
            ctx.error(&format!(
                "Could not find a coordinate for node \"{}\"",
                nodes[0]
            ));
            return 1;
        }
        (_, None) => {
            ctx.error(&format!(
                "Could not find a coordinate for node \"{}\"",
                nodes[1]
            ));
            return 1;
        }
    };
    ctx.info(format!(
        "Estimated {} <-> {} rtt: {:.3} ms (using {} coordinates)",
        nodes[0],
        nodes[1],
        a.distance_secs(&b) * 1000.0,
        if wan { "WAN" } else { "LAN" }
    ));
    0
}

type Pair = (Option<Coordinate>, Option<Coordinate>);

async fn lan_pair(
    client: &tribune_client::Client,
    nodes: &[String],
    ctx: &mut Ctx,
) -> Result<Pair, i32> {
    let (entries, _) = client
        .coordinate()
        .nodes(&QueryOptions::default())
        .await
        .map_err(|err| {
            ctx.error(&format!("Error getting coordinates: {err}"));
            1
        })?;
    // Node names compare case-insensitively, as in the catalog; only coordinates
    // of the same segment are comparable.
    let of = |name: &str| {
        entries
            .iter()
            .filter(|e| e.node.eq_ignore_ascii_case(name))
            .map(|e| (e.segment.clone(), e.coord.clone()))
            .collect::<Vec<_>>()
    };
    let (first, second) = (of(&nodes[0]), of(&nodes[1]));
    for (segment, a) in &first {
        if let Some((_, b)) = second.iter().find(|(s, _)| s == segment) {
            return Ok((Some(a.clone()), Some(b.clone())));
        }
    }
    Ok((
        first.into_iter().next().map(|(_, c)| c),
        second.into_iter().next().map(|(_, c)| c),
    ))
}

async fn wan_pair(
    client: &tribune_client::Client,
    nodes: &[String],
    ctx: &mut Ctx,
) -> Result<Pair, i32> {
    let split = |n: &str| -> Option<(String, String)> {
        let (node, dc) = n.split_once('.')?;
        (!dc.contains('.')).then(|| (node.to_owned(), dc.to_owned()))
    };
    let (Some((n1, dc1)), Some((n2, dc2))) = (split(&nodes[0]), split(&nodes[1])) else {
        ctx.error("Node names must be specified as <node name>.<datacenter> with -wan");
        return Err(1);
    };
    let maps = client.coordinate().datacenters().await.map_err(|err| {
        ctx.error(&format!("Error getting coordinates: {err}"));
        1
    })?;
    let find = |node: &str, dc: &str| {
        maps.iter()
            .filter(|m| m.datacenter == dc)
            .flat_map(|m| m.coordinates.iter().map(move |e| (m.area_id.as_str(), e)))
            .find(|(_, e)| e.node.eq_ignore_ascii_case(node))
            .map(|(area, e)| (area.to_owned(), e.coord.clone()))
    };
    match (find(&n1, &dc1), find(&n2, &dc2)) {
        (Some((area1, a)), Some((area2, b))) if area1 == area2 => Ok((Some(a), Some(b))),
        // Coordinates of different areas are not comparable: report as not found.
        _ => Ok((None, None)),
    }
}
