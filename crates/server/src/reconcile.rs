//! The leader's view of gossip in the catalog (Consul's `leader.go` reconcile): an
//! alive member has a node entry with `serfHealth` passing, a failed one has
//! `serfHealth` critical (which invalidates the sessions bound to it), and a member
//! that left — or was reaped, so it is in the catalog with a `serfHealth` check but no
//! longer in gossip — is deregistered.
//!
//! The decisions are a pure function of the catalog rows and the member list
//! ([`plan`]), so they are unit-tested without a cluster; [`Server::reconcile`] applies
//! them through raft when this server leads. The agent calls it on every member event
//! and periodically, so a leader change or a missed event is corrected within one
//! interval.

use crate::server::Server;
use std::collections::BTreeMap;
use tribune_rpc::RpcError;
use tribune_types::model::ops::{
    Consistency, Deregistration, QueryOptions, ReadRequest, ReadResult, Registration, WriteRequest,
};
use tribune_types::model::{Check, Member, Node};
use tribune_types::HealthStatus;

/// `serfHealth`'s ID, name and outputs, as Consul writes them.
pub const SERF_CHECK_ID: &str = "serfHealth";
const SERF_CHECK_NAME: &str = "Serf Health Status";
const ALIVE_OUTPUT: &str = "Agent alive and reachable";
const FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// Gossip member statuses (Serf's numbering, as `/v1/agent/members` reports them).
const ALIVE: u8 = 1;
const LEFT: u8 = 3;
const FAILED: u8 = 4;

/// What the catalog knows of a node, for the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) node: Node,
    pub(crate) serf: Option<HealthStatus>,
    /// The port of the node's `consul` service, if it has one (servers do).
    pub(crate) consul_port: Option<u16>,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Register (or refresh) the node with `serfHealth` in this state, and for a
    /// server its `consul` service on this server RPC port.
    Register {
        node: Node,
        status: HealthStatus,
        consul_port: Option<u16>,
    },
    /// Remove the node and everything on it.
    Deregister { node: String },
}

/// The changes that make the catalog agree with `members`. `me` is the leader's own
/// node, which its own leader duty keeps registered. With `full`, catalog nodes that
/// have a `serfHealth` check but are not in gossip at all are deregistered (reaped).
pub(crate) fn plan(
    members: &[Member],
    known: &BTreeMap<String, Known>,
    datacenter: &str,
    me: &str,
    full: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for m in members {
        if m.name == me {
            continue;
        }
        // Members of another datacenter (a server's WAN view) are not ours to register.
        if m.tags.get("dc").is_some_and(|dc| dc != datacenter) {
            continue;
        }
        let existing = known.get(&m.name);
        match m.status {
            ALIVE => {
                // Consul's leader registers every server's `consul` service.
                let consul_port = (m.tags.get("role").map(String::as_str) == Some("consul"))
                    .then(|| m.tags.get("port").and_then(|p| p.parse().ok()))
                    .flatten();
                let up_to_date = existing.is_some_and(|k| {
                    k.node.address == m.addr
                        && k.serf == Some(HealthStatus::Passing)
                        && (consul_port.is_none() || k.consul_port == consul_port)
                });
                if !up_to_date {
                    // Keep what the member's own agent registered (meta, tagged
                    // addresses); gossip only knows the address and ID.
                    let mut node = existing.map(|k| k.node.clone()).unwrap_or_default();
                    node.node = m.name.clone().into();
                    node.address = m.addr.clone();
                    node.datacenter = datacenter.to_owned();
                    if let Some(id) = m.tags.get("id") {
                        node.id = id.clone();
                    }
                    actions.push(Action::Register {
                        node,
                        status: HealthStatus::Passing,
                        consul_port,
                    });
                }
            }
            FAILED => {
                if let Some(k) = existing.filter(|k| k.serf != Some(HealthStatus::Critical)) {
                    actions.push(Action::Register {
                        node: k.node.clone(),
                        status: HealthStatus::Critical,
                        consul_port: None,
                    });
                }
            }
            LEFT if existing.is_some() => {
                actions.push(Action::Deregister {
                    node: m.name.clone(),
                });
            }
            // Leaving: wait for left or failed.
            _ => {}
        }
    }
    if full {
        for (name, k) in known {
            let in_gossip = members.iter().any(|m| &m.name == name);
            if name != me && !in_gossip && k.serf.is_some() {
                actions.push(Action::Deregister { node: name.clone() });
            }
        }
    }
    actions
}

impl Server {
    /// Brings the catalog in line with the gossip `members` (see the module docs).
    /// Does nothing unless this server is the leader.
    pub async fn reconcile(&self, members: &[Member], full: bool) -> Result<usize, RpcError> {
        if !self.raft_status().is_leader {
            return Ok(0);
        }
        let known = self.known_nodes().await?;
        let actions = plan(
            members,
            &known,
            &self.config.datacenter,
            &self.config.node_name,
            full,
        );
        let n = actions.len();
        for a in actions {
            let req = match a {
                Action::Register {
                    node,
                    status,
                    consul_port,
                } => {
                    tracing::info!(node = %node.node.as_str(), status = status.as_str(), "reconciling member");
                    WriteRequest::Register(Registration {
                        node,
                        service: consul_port
                            .map(|port| crate::leader::consul_service(port, &self.config.version)),
                        checks: vec![Check {
                            check_id: SERF_CHECK_ID.into(),
                            name: SERF_CHECK_NAME.into(),
                            status,
                            output: if status == HealthStatus::Passing {
                                ALIVE_OUTPUT.into()
                            } else {
                                FAILED_OUTPUT.into()
                            },
                            check_type: "serf".into(),
                            ..Default::default()
                        }],
                        skip_node_update: false,
                    })
                }
                Action::Deregister { node } => {
                    tracing::info!(node = %node, "deregistering member that left");
                    WriteRequest::Deregister(Deregistration {
                        node: node.into(),
                        ..Default::default()
                    })
                }
            };
            self.propose(req).await?;
        }
        Ok(n)
    }

    async fn known_nodes(&self) -> Result<BTreeMap<String, Known>, RpcError> {
        let stale = QueryOptions {
            consistency: Consistency::Stale,
            ..Default::default()
        };
        let (nodes, _) = self
            .read_unlimited(ReadRequest::CatalogNodes, stale)
            .await?;
        let (checks, _) = self
            .read_unlimited(ReadRequest::HealthState { state: None }, stale)
            .await?;
        let (ReadResult::Nodes(nodes), ReadResult::Checks(checks)) = (nodes, checks) else {
            return Err(RpcError::Malformed("unexpected catalog read result".into()));
        };
        let mut known: BTreeMap<String, Known> = nodes
            .into_iter()
            .map(|n| {
                (
                    n.node.as_str().to_owned(),
                    Known {
                        node: n,
                        serf: None,
                        consul_port: None,
                    },
                )
            })
            .collect();
        let (servers, _) = self
            .read_unlimited(
                ReadRequest::CatalogService {
                    service: "consul".into(),
                },
                stale,
            )
            .await?;
        if let ReadResult::ServiceInstances(servers) = servers {
            for s in servers {
                if let Some(k) = known.get_mut(s.node.node.as_str()) {
                    k.consul_port = Some(s.service.port);
                }
            }
        }
        for c in checks {
            if c.check_id.as_str() == SERF_CHECK_ID {
                if let Some(k) = known.get_mut(c.node.as_str()) {
                    k.serf = Some(c.status);
                }
            }
        }
        Ok(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, status: u8) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
            port: 8301,
            tags: [
                ("dc".to_owned(), "dc1".to_owned()),
                ("id".to_owned(), format!("id-{name}")),
            ]
            .into_iter()
            .collect(),
            status,
        }
    }

    fn row(name: &str, addr: &str, serf: Option<HealthStatus>) -> (String, Known) {
        let mut node = Node {
            node: name.into(),
            address: addr.into(),
            ..Default::default()
        };
        node.meta.insert("rack".into(), "r1".into());
        (
            name.to_owned(),
            Known {
                node,
                serf,
                consul_port: None,
            },
        )
    }

    #[test]
    fn members_map_to_catalog_actions() {
        let members = vec![
            member("me", "10.0.0.1", ALIVE),
            member("new", "10.0.0.2", ALIVE),
            member("same", "10.0.0.3", ALIVE),
            member("moved", "10.0.0.9", ALIVE),
            member("down", "10.0.0.5", FAILED),
            member("gone", "10.0.0.6", LEFT),
            member("leaving", "10.0.0.7", 2),
            member("wan-peer", "10.9.0.1", ALIVE),
        ];
        let mut members = members;
        members[7].tags.insert("dc".into(), "dc2".into());
        // A server: registered with its `consul` service on its RPC port.
        members[1].tags.insert("role".into(), "consul".into());
        members[1].tags.insert("port".into(), "8300".into());
        let known: BTreeMap<String, Known> = [
            row("me", "10.0.0.1", Some(HealthStatus::Passing)),
            row("same", "10.0.0.3", Some(HealthStatus::Passing)),
            row("moved", "10.0.0.4", Some(HealthStatus::Passing)),
            row("down", "10.0.0.5", Some(HealthStatus::Passing)),
            row("gone", "10.0.0.6", Some(HealthStatus::Passing)),
            row("reaped", "10.0.0.8", Some(HealthStatus::Critical)),
            row("external", "10.1.0.1", None),
        ]
        .into_iter()
        .collect();
        let actions = plan(&members, &known, "dc1", "me", true);
        let summary: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Register {
                    node,
                    status,
                    consul_port,
                } => format!(
                    "reg {} {} {} {}{}",
                    node.node.as_str(),
                    node.address,
                    status.as_str(),
                    node.meta.get("rack").map_or("-", String::as_str),
                    consul_port.map_or(String::new(), |p| format!(" consul:{p}"))
                ),
                Action::Deregister { node } => format!("dereg {node}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "reg new 10.0.0.2 passing - consul:8300",
                "reg moved 10.0.0.9 passing r1",
                "reg down 10.0.0.5 critical r1",
                "dereg gone",
                "dereg reaped",
            ]
        );
        // Without `full`, nothing is reaped; a second pass over the result is quiet.
        assert_eq!(plan(&members, &known, "dc1", "me", false).len(), 4);
        let mut settled: BTreeMap<String, Known> = [
            row("new", "10.0.0.2", Some(HealthStatus::Passing)),
            row("down", "10.0.0.5", Some(HealthStatus::Critical)),
        ]
        .into_iter()
        .collect();
        let quiet = vec![members[1].clone(), member("down", "10.0.0.5", FAILED)];
        // A server whose `consul` service is missing is registered again.
        assert_eq!(plan(&quiet, &settled, "dc1", "me", true).len(), 1);
        settled.get_mut("new").unwrap().consul_port = Some(8300);
        assert!(plan(&quiet, &settled, "dc1", "me", true).is_empty());
    }
}
