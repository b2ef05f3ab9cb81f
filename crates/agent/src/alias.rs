//! Alias checks: a check whose status mirrors another service's (or node's) health,
//! read with blocking queries from the servers so it follows changes at once.
//!
//! As in Consul's `alias.go`, the aliased node's own checks count too (a service on a
//! failed node is not healthy), and a missing service is critical.

use crate::agent::Agent;
use std::sync::Weak;
use std::time::Duration;
use tribune_health::alias::{service_not_found, summarize, AliasedCheck};
use tribune_types::model::ops::{QueryOptions, ReadRequest, ReadResult};
use tribune_types::model::CheckDefinition;

/// How long one blocking read waits before re-reading.
const WAIT: Duration = Duration::from_secs(300);
/// Pause after a failed read (no leader, server restarting).
const RETRY: Duration = Duration::from_secs(1);

/// Watches what `def` aliases and sets its status until the check is removed (the
/// task is aborted) or the agent is dropped.
pub(crate) async fn watch(agent: Weak<Agent>, def: CheckDefinition) {
    let id = def.id.as_str().to_owned();
    let mut index = 0;
    loop {
        let Some(a) = agent.upgrade() else { return };
        let node = if def.alias_node.is_empty() {
            a.cfg.node_name.clone()
        } else {
            def.alias_node.clone()
        };
        let opts = QueryOptions {
            min_index: index,
            max_wait: WAIT,
            ..Default::default()
        };
        // Hold the server handle, not the agent, across a five-minute blocking read.
        let servers = a.servers.clone();
        drop(a);
        let read = servers
            .read(
                ReadRequest::HealthNode {
                    node: node.clone().into(),
                },
                opts,
            )
            .await;
        let (checks, meta) = match read {
            Ok((ReadResult::Checks(checks), meta)) => (checks, meta),
            Ok(_) | Err(_) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // An index that went backwards (snapshot restore) restarts the watch.
        index = if meta.index < index { 0 } else { meta.index };
        let Some(a) = agent.upgrade() else { return };
        let relevant: Vec<AliasedCheck<'_>> = checks
            .iter()
            .filter(|c| {
                c.service_id.is_empty()
                    || def.alias_service.is_empty()
                    || c.service_id == def.alias_service
            })
            .map(|c| AliasedCheck {
                name: &c.name,
                status: c.status,
                output: &c.output,
            })
            .collect();
        let service_known = def.alias_service.is_empty()
            || checks.iter().any(|c| c.service_id == def.alias_service)
            || service_exists(&a, &node, &def.alias_service).await;
        let probe = if service_known {
            summarize(&relevant)
        } else {
            service_not_found(&def.alias_service, &node)
        };
        a.set_check_status(&id, probe.status, probe.output).await;
    }
}

/// Whether `service` is registered on `node` (a service with no checks shows up in no
/// health read).
async fn service_exists(agent: &Agent, node: &str, service: &str) -> bool {
    let req = ReadRequest::CatalogNode { node: node.into() };
    match agent.servers.read(req, QueryOptions::default()).await {
        Ok((ReadResult::NodeServices(Some((_, services))), _)) => {
            services.iter().any(|s| s.id.as_str() == service)
        }
        _ => false,
    }
}
