//! Operator requests on raft itself (`/v1/operator/raft/*`, autopilot health):
//! answered by the leader (followers forward them, see `ServerApi::operator`),
//! except a `?stale` configuration read, which any server answers from its own
//! view.

use crate::cluster::{raft_id, PeerServer};
use crate::server::Server;
use std::collections::HashMap;
use std::time::Duration;
use tribune_consensus::{MembershipChange, ProposeError};
use tribune_rpc::{RpcError, ServerApi};
use tribune_types::model::operator::{
    AutopilotSettings, OperatorReply, OperatorRequest, RaftConfiguration, RaftServer,
};
use tribune_types::model::ops::{ReadRequest, ReadResult, WriteRejected};

fn failed(msg: String) -> RpcError {
    RpcError::Rejected(WriteRejected::Failed(msg))
}

pub(crate) fn propose_err(e: ProposeError) -> RpcError {
    match e {
        ProposeError::NotLeader { .. } | ProposeError::Dropped => RpcError::NoLeader,
        ProposeError::Shutdown | ProposeError::Fatal => RpcError::ShuttingDown,
        other => failed(other.to_string()),
    }
}

impl Server {
    /// The autopilot settings in force: those an operator stored, or else the
    /// agent config's (Consul's defaults unless set).
    pub(crate) fn autopilot_settings(&self) -> AutopilotSettings {
        match self.state.read(&ReadRequest::AutopilotConfig, None).0 {
            ReadResult::Autopilot(settings) if settings.raft.modify_index > 0 => settings,
            _ => self.config.autopilot.clone(),
        }
    }

    /// Gossip's view of the other servers, by raft id.
    fn peers_by_id(&self) -> HashMap<u64, PeerServer> {
        self.peer_servers()
            .into_iter()
            .map(|s| (s.raft_id, s))
            .collect()
    }

    /// Node ID and name of raft member `id`, whom gossip shows as `peer`.
    pub(crate) fn identity(&self, id: u64, peer: Option<&PeerServer>) -> (String, String) {
        if id == self.raft.id() {
            return (self.config.node_id.clone(), self.config.node_name.clone());
        }
        match peer {
            Some(p) => (p.node_id.clone(), p.name.clone()),
            // Not (or no longer) in gossip: show the raft id so it can be removed.
            None => (id.to_string(), String::new()),
        }
    }

    /// The raft configuration as this server sees it.
    pub(crate) async fn raft_configuration(&self) -> RaftConfiguration {
        let status = self.raft.status();
        let progress: HashMap<u64, u64> = self
            .raft
            .progress()
            .await
            .into_iter()
            .map(|p| (p.id, p.matched))
            .collect();
        let peers = self.peers_by_id();
        let members = status
            .voters
            .iter()
            .map(|id| (*id, true))
            .chain(status.learners.iter().map(|id| (*id, false)));
        let servers = members
            .map(|(id, voter)| {
                let (node_id, node) = self.identity(id, peers.get(&id));
                RaftServer {
                    id: node_id,
                    node,
                    address: self.addr_of(id).unwrap_or_default(),
                    leader: status.leader_id == Some(id),
                    voter,
                    last_index: if id == status.id {
                        status.last_index
                    } else {
                        progress.get(&id).copied().unwrap_or(0)
                    },
                }
            })
            .collect();
        RaftConfiguration {
            servers,
            // Always 0, as Consul answers: hashicorp/raft's
            // `GetConfiguration` copies the latest configuration without its
            // index, so the future's `Index()` is 0 (py-consul's suite checks
            // it). The index is real in snapshot metadata
            // (`ConfigurationIndex`), which takes `membership_index`.
            index: 0,
        }
    }

    /// The raft member an operator named by node ID or by address.
    fn member_named(&self, id: &str, address: &str) -> Result<u64, RpcError> {
        let status = self.raft.status();
        let members: Vec<u64> = status
            .voters
            .iter()
            .chain(&status.learners)
            .copied()
            .collect();
        if !id.is_empty() {
            // A member gossip no longer knows is listed by its raft id.
            let wanted = id.parse::<u64>().ok().filter(|n| members.contains(n));
            return wanted
                .or_else(|| Some(raft_id(id)).filter(|n| members.contains(n)))
                .ok_or_else(|| {
                    failed(format!("id {id:?} was not found in the Raft configuration"))
                });
        }
        if address.is_empty() {
            return Err(RpcError::Rejected(WriteRejected::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into(),
            )));
        }
        members
            .into_iter()
            .find(|m| self.addr_of(*m).as_deref() == Some(address))
            .ok_or_else(|| {
                failed(format!(
                    "address {address:?} was not found in the Raft configuration"
                ))
            })
    }

    async fn remove_peer(&self, id: &str, address: &str) -> Result<(), RpcError> {
        let member = self.member_named(id, address)?;
        if member == self.raft.id() {
            // raft-rs lets a leader that removed itself go on leading a
            // configuration it is not in; Consul's leader steps down instead. Hand
            // leadership over first and let the new leader do the removal.
            self.transfer_leader("").await?;
            let leader = self.raft.status().leader_id.ok_or(RpcError::NoLeader)?;
            return crate::cluster::leader_client(self, leader)?
                .operator(OperatorRequest::RemovePeer {
                    id: self.config.node_id.clone(),
                    address: String::new(),
                })
                .await
                .map(|_| ());
        }
        tracing::info!(
            id,
            address,
            raft_id = member,
            "operator: removing raft peer"
        );
        self.removed
            .lock()
            .insert(member, std::time::Instant::now());
        self.raft
            .change_membership(MembershipChange::Remove(member))
            .await
            .map(|_| ())
            .map_err(propose_err)
    }

    /// Hands leadership to `id` (or to the most caught-up voter) and waits until
    /// it has moved, as Consul's transfer-leader does.
    async fn transfer_leader(&self, id: &str) -> Result<(), RpcError> {
        let status = self.raft.status();
        let target = if id.is_empty() {
            let progress = self.raft.progress().await;
            progress
                .iter()
                .filter(|p| p.voter && p.id != status.id)
                .max_by_key(|p| p.matched)
                .map(|p| p.id)
                .ok_or_else(|| failed("cannot find peer to transfer leadership to".into()))?
        } else {
            let t = self.member_named(id, "")?;
            if !status.voters.contains(&t) {
                return Err(failed(format!("server {id:?} is not a voter")));
            }
            t
        };
        if target == status.id {
            return Err(failed("cannot transfer leadership to itself".into()));
        }
        let mut watch = self.raft.subscribe();
        self.raft
            .transfer_leader(target)
            .await
            .map_err(propose_err)?;
        // raft gives up a transfer after an election timeout; wait a little longer.
        let moved = tokio::time::timeout(
            Duration::from_secs(5) * self.config.raft_multiplier.clamp(1, 10),
            watch.wait_for(|s| s.leader_id == Some(target)),
        )
        .await;
        match moved {
            Ok(Ok(_)) => Ok(()),
            _ => Err(failed("leadership transfer did not complete".into())),
        }
    }

    /// Signs a leaf with the active root of this server's replicated state.
    fn sign_leaf(&self, service: &str, public_key: &[u8]) -> Result<OperatorReply, RpcError> {
        if !self.config.connect_enabled {
            return Err(RpcError::Refused(crate::server::CONNECT_DISABLED.into()));
        }
        let ReadResult::CaRoots(roots) = self.state.read(&ReadRequest::CaRoots, None).0 else {
            return Err(RpcError::Malformed("ca roots read".into()));
        };
        let Some(root) = roots.iter().find(|r| r.active && !r.private_key.is_empty()) else {
            return Err(RpcError::Refused("Connect CA not initialized yet".into()));
        };
        // The applied index moves with every write, so each signing gets a newer
        // index than the last one did (blocking leaf queries rely on it).
        let index = self.raft.status().applied.max(1);
        let ttl = match self.state.read(&ReadRequest::CaConfig, None).0 {
            ReadResult::CaConfig(Some(c)) if c.leaf_cert_ttl_secs > 0 => {
                time::Duration::seconds(i64::try_from(c.leaf_cert_ttl_secs).unwrap_or(i64::MAX))
            }
            _ => crate::ca::LEAF_TTL,
        };
        crate::ca::sign_leaf(
            root,
            &self.config.datacenter,
            service,
            public_key,
            index,
            ttl,
        )
        .map(OperatorReply::Leaf)
        .map_err(|e| match e {
            crate::ca::CaError::PublicKey => {
                RpcError::Rejected(WriteRejected::BadRequest(e.to_string()))
            }
            other => RpcError::Transport(other.to_string()),
        })
    }

    /// Answers an operator request here.
    pub(crate) async fn operator_local(
        &self,
        req: OperatorRequest,
    ) -> Result<OperatorReply, RpcError> {
        match req {
            OperatorRequest::RaftConfiguration { .. } => {
                Ok(OperatorReply::Raft(self.raft_configuration().await))
            }
            OperatorRequest::RemovePeer { id, address } => {
                self.remove_peer(&id, &address).await?;
                Ok(OperatorReply::Done)
            }
            OperatorRequest::TransferLeader { id } => {
                self.transfer_leader(&id).await?;
                Ok(OperatorReply::Done)
            }
            OperatorRequest::SignLeaf {
                service,
                public_key,
            } => self.sign_leaf(&service, &public_key),
            OperatorRequest::AutopilotHealth => {
                // A new leader's autopilot has its first view within a round.
                let mut rx = self.health.subscribe();
                let first = tokio::time::timeout(Duration::from_secs(3), async {
                    rx.wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|h| h.clone())
                });
                match first.await {
                    Ok(Some(h)) => Ok(OperatorReply::Health(h)),
                    _ => Err(RpcError::NoLeader),
                }
            }
        }
    }
}
