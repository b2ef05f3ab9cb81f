//! Network coordinates on the agent side: this node's LAN coordinate (learnt by
//! gossip) is sent to the servers periodically, as Consul's `sendCoordinate` does,
//! and `/v1/coordinate/datacenters` is answered from the gossip pools.

use crate::agent::Agent;
use rand::Rng as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tribune_gossip::Gossip;
use tribune_http_api::DatacenterCoordinates;
use tribune_types::model::coordinate::CoordinateEntry;
use tribune_types::model::ops::WriteRequest;

/// How often agents report: often enough in small clusters (`min`), but no more
/// than `rate` reports a second across `members` agents (Consul's
/// `RateScaledInterval`).
pub(crate) fn report_interval(rate: f64, min: Duration, members: usize) -> Duration {
    if rate <= 0.0 {
        return min;
    }
    Duration::from_secs_f64(members as f64 / rate).max(min)
}

/// Reports this node's LAN coordinate to the servers until the agent is gone.
/// Each wait adds up to one more interval at random, so agents started together
/// spread out.
pub(crate) async fn report(agent: Weak<Agent>, lan: Arc<Gossip>) {
    // `disable_coordinates` is fixed for the pool's life: nothing to report, ever.
    if lan.coordinate().is_none() {
        return;
    }
    loop {
        let Some((rate, min)) = agent
            .upgrade()
            .map(|a| (a.cfg.coordinate_rate_target, a.cfg.coordinate_interval_min))
        else {
            return;
        };
        let interval = report_interval(rate, min, lan.members().len());
        let stagger = interval.mul_f64(rand::thread_rng().gen::<f64>());
        tokio::time::sleep(interval + stagger).await;
        let Some(a) = agent.upgrade() else { return };
        let Some(coord) = lan.coordinate() else {
            continue;
        };
        let update = WriteRequest::CoordinateBatchUpdate {
            updates: vec![CoordinateEntry {
                node: a.cfg.node_name.clone(),
                segment: String::new(),
                coord,
            }],
        };
        // Losing one report costs nothing: the next carries a newer coordinate.
        if let Err(e) = a.servers.write(update).await {
            tracing::debug!(error = %e, "sending this node's coordinate failed");
        }
    }
}

/// Servers' coordinates grouped by datacenter, as `/v1/coordinate/datacenters`
/// lists them: from the WAN pool (`area` "WAN", names `node.dc` shortened to
/// `node`) on a server, else from the LAN pool's servers.
pub(crate) fn datacenters(pool: &Gossip, wan: bool) -> Vec<DatacenterCoordinates> {
    let mine = pool.coordinate();
    let peers = pool.peer_coordinates();
    let mut by_dc: BTreeMap<String, Vec<CoordinateEntry>> = BTreeMap::new();
    for m in pool.members() {
        if m.tags.get("role").map(String::as_str) != Some("consul") || m.status != 1 {
            continue;
        }
        let dc = m.tags.get("dc").cloned().unwrap_or_default();
        let coord = if m.name == pool.name() {
            mine.clone()
        } else {
            peers.get(&m.name).cloned()
        };
        let Some(coord) = coord else { continue };
        let node = m
            .name
            .strip_suffix(&format!(".{dc}"))
            .filter(|_| wan)
            .unwrap_or(&m.name)
            .to_owned();
        by_dc.entry(dc).or_default().push(CoordinateEntry {
            node,
            segment: String::new(),
            coord,
        });
    }
    by_dc
        .into_iter()
        .map(|(datacenter, coordinates)| DatacenterCoordinates {
            datacenter,
            area_id: if wan { "WAN" } else { "LAN" }.into(),
            coordinates,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_rate_scaled_above_the_minimum() {
        let min = Duration::from_secs(15);
        assert_eq!(report_interval(64.0, min, 10), min);
        assert_eq!(report_interval(64.0, min, 6400), Duration::from_secs(100));
        assert_eq!(report_interval(0.0, min, 6400), min);
    }
}
