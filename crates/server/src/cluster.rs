//! The server as one member of a raft cluster: how raft messages reach peers,
//! how a cluster forms from gossip (`bootstrap_expect`), and how the leader keeps
//! the raft membership in line with the servers gossip sees (autopilot).
//!
//! - Peers are found through LAN gossip: a server's member carries `role=consul`,
//!   its node ID (`id`, from which its raft id is derived) and its server RPC
//!   port (`port`). [`Server::observe_members`] records their addresses for the
//!   raft transport and for forwarding.
//! - Formation: a server started with `bootstrap_expect = N` and no raft state
//!   waits until gossip shows N servers, asks each one for its raft peers, and
//!   only if none already belongs to a cluster bootstraps with all N as voters.
//!   Every founding server reaches the same decision with the same voters, so
//!   they agree on the first configuration without a leader; a server that finds
//!   an existing cluster instead waits for that cluster's leader to add it.
//! - Autopilot (leader only, once a second): an alive server missing from the
//!   configuration joins as a learner; a learner that has been caught up and in
//!   contact for `server_stabilization_time` is promoted to voter; a server that
//!   left gossip gracefully is removed; a failed one is removed when
//!   `cleanup_dead_servers` is on and enough voters remain (`min_quorum`).

use crate::server::Server;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tribune_consensus::{MembershipChange, RaftInbox, Transport};
use tribune_rpc::{GrpcClient, RaftFeedback, RaftLinks, ServerApi};
use tribune_types::model::operator::{AutopilotHealth, AutopilotSettings, ServerHealth};
use tribune_types::model::Member;

use crate::fsm::Fsm;

/// How long autopilot leaves a server an operator removed out of the
/// configuration (Consul's `reconcile_interval`).
const REMOVED_GRACE: Duration = Duration::from_secs(60);

/// Serf member statuses.
const ALIVE: u8 = 1;
const LEFT: u8 = 3;
const FAILED: u8 = 4;

/// A raft ID from the node ID: stable across restarts, non-zero, and computable
/// by every server from the gossip tag alone.
pub fn raft_id(node_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// The raft thread's transport: hands messages to the per-peer gRPC links.
pub(crate) struct GrpcTransport(pub(crate) Arc<RaftLinks>);

impl Transport for GrpcTransport {
    fn send(&mut self, to: u64, msg_bytes: Vec<u8>) {
        self.0.send(to, msg_bytes, false);
    }

    fn send_snapshot(&mut self, to: u64, msg_bytes: Vec<u8>) {
        self.0.send(to, msg_bytes, true);
    }
}

/// Tells raft what the links learned about peers.
pub(crate) struct Feedback(pub(crate) RaftInbox<Fsm>);

impl RaftFeedback for Feedback {
    fn unreachable(&self, peer: u64) {
        self.0.report_unreachable(peer);
    }

    fn snapshot_status(&self, peer: u64, delivered: bool) {
        self.0.report_snapshot(peer, delivered);
    }
}

/// A server of this datacenter as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerServer {
    pub(crate) raft_id: u64,
    pub(crate) name: String,
    pub(crate) node_id: String,
    /// Server RPC address, `ip:port`.
    pub(crate) rpc_addr: String,
    pub(crate) status: u8,
    /// Its `bootstrap_expect`, if it gossips one.
    pub(crate) expect: Option<u32>,
    /// The version it gossips (`build` tag).
    pub(crate) version: String,
}

/// The servers of `datacenter` among `members`.
pub(crate) fn servers_of(members: &[Member], datacenter: &str) -> Vec<PeerServer> {
    members
        .iter()
        .filter(|m| m.tags.get("role").map(String::as_str) == Some("consul"))
        .filter(|m| m.tags.get("dc").map(String::as_str) == Some(datacenter))
        .filter_map(|m| {
            let id = m.tags.get("id")?;
            let port = m.tags.get("port")?;
            Some(PeerServer {
                raft_id: raft_id(id),
                name: m.name.clone(),
                node_id: id.clone(),
                rpc_addr: format!("{}:{port}", m.addr),
                status: m.status,
                expect: m.tags.get("expect").and_then(|e| e.parse().ok()),
                version: m.tags.get("build").cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// Server RPC addresses (`ip:port`) of the alive servers of `datacenter`: where a
/// client agent sends its requests.
pub fn alive_server_addrs(members: &[Member], datacenter: &str) -> Vec<String> {
    servers_of(members, datacenter)
        .into_iter()
        .filter(|s| s.status == ALIVE)
        .map(|s| s.rpc_addr)
        .collect()
}

/// What the autopilot should do next, decided from the configuration, the
/// leader's replication progress and gossip; one change at a time, because raft
/// takes one membership change at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Change(MembershipChange),
    Nothing,
}

/// Inputs of one autopilot decision.
pub(crate) struct View<'a> {
    pub(crate) me: u64,
    pub(crate) voters: &'a [u64],
    pub(crate) learners: &'a [u64],
    pub(crate) commit: u64,
    /// Replication progress by raft id (leader's view).
    pub(crate) matched: &'a HashMap<u64, (u64, bool)>,
    pub(crate) servers: &'a [PeerServer],
    /// When each learner was first seen caught up and active.
    pub(crate) healthy_since: &'a HashMap<u64, Instant>,
    pub(crate) now: Instant,
    pub(crate) config: &'a AutopilotSettings,
}

/// Whether `id` is caught up with the leader and in contact.
pub(crate) fn healthy(view: &View<'_>, id: u64) -> bool {
    if id == view.me {
        return true;
    }
    view.matched.get(&id).is_some_and(|(matched, active)| {
        *active && matched.saturating_add(view.config.max_trailing_logs) >= view.commit
    })
}

/// The next membership change autopilot wants, if any.
pub(crate) fn next_step(view: &View<'_>) -> Step {
    let in_conf = |id: u64| view.voters.contains(&id) || view.learners.contains(&id);
    let by_id: BTreeMap<u64, &PeerServer> = view.servers.iter().map(|s| (s.raft_id, s)).collect();
    // Graceful leaves first: they shrink the quorum the others must reach.
    for id in view.voters.iter().chain(view.learners) {
        if *id != view.me && by_id.get(id).is_some_and(|s| s.status == LEFT) {
            return Step::Change(MembershipChange::Remove(*id));
        }
    }
    if view.config.cleanup_dead_servers {
        let failed: Vec<u64> = view
            .voters
            .iter()
            .copied()
            .filter(|id| *id != view.me && by_id.get(id).is_some_and(|s| s.status == FAILED))
            .collect();
        let remaining = view.voters.len() - failed.len();
        // Consul removes dead servers only while the healthy ones still form a
        // majority of the configuration, and never below min_quorum.
        let keeps_majority = remaining > view.voters.len() / 2;
        if let Some(id) = failed.first() {
            if keeps_majority && view.voters.len() > view.config.min_quorum as usize {
                return Step::Change(MembershipChange::Remove(*id));
            }
        }
        if let Some(id) = view
            .learners
            .iter()
            .find(|id| by_id.get(id).is_some_and(|s| s.status == FAILED))
        {
            return Step::Change(MembershipChange::Remove(*id));
        }
    }
    for s in view.servers {
        if s.status == ALIVE && s.raft_id != view.me && !in_conf(s.raft_id) {
            return Step::Change(MembershipChange::AddLearner(s.raft_id));
        }
    }
    for id in view.learners {
        let stable = view.healthy_since.get(id).is_some_and(|since| {
            view.now.saturating_duration_since(*since) >= view.config.server_stabilization_time
        });
        if stable && healthy(view, *id) && by_id.get(id).is_some_and(|s| s.status == ALIVE) {
            return Step::Change(MembershipChange::AddVoter(*id));
        }
    }
    Step::Nothing
}

impl Server {
    /// Records gossip's view of the servers: their addresses for raft and
    /// forwarding, and the member list for formation and autopilot.
    pub fn observe_members(&self, members: &[Member]) {
        for s in servers_of(members, &self.config.datacenter) {
            if s.raft_id != self.raft.id() {
                self.links.set_addr(s.raft_id, s.rpc_addr);
            }
        }
        *self.members.lock() = members.to_vec();
    }

    /// This datacenter's servers as gossip last showed them.
    pub(crate) fn peer_servers(&self) -> Vec<PeerServer> {
        servers_of(&self.members.lock(), &self.config.datacenter)
    }

    /// A client for forwarding to the server at `addr` (one connection each).
    pub(crate) fn peer_client(&self, addr: &str) -> Result<GrpcClient, tribune_rpc::RpcError> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = GrpcClient::dial(addr, &self.config.rpc_tls)?;
        clients.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// The server RPC address of raft member `id` (ours if it is us).
    pub(crate) fn addr_of(&self, id: u64) -> Option<String> {
        if id == self.raft.id() {
            Some(self.config.rpc_addr.to_string())
        } else {
            self.links.addr(id)
        }
    }

    /// One formation attempt; `true` once this server belongs to a cluster.
    async fn try_bootstrap(&self, expect: u32) -> bool {
        if !self.raft.status().voters.is_empty() {
            return true;
        }
        let me = self.raft.id();
        let servers: Vec<PeerServer> = self
            .peer_servers()
            .into_iter()
            .filter(|s| s.status == ALIVE)
            .collect();
        if servers.len() < expect as usize {
            return false;
        }
        if let Some(s) = servers
            .iter()
            .find(|s| s.expect.is_some_and(|e| e != expect))
        {
            tracing::error!(server = %s.name, "servers disagree on bootstrap_expect; not bootstrapping");
            return false;
        }
        for s in servers.iter().filter(|s| s.raft_id != me) {
            let status = match self.peer_client(&s.rpc_addr) {
                Ok(c) => c.status().await,
                Err(e) => Err(e),
            };
            match status {
                Ok(st) if !st.peers.is_empty() => {
                    tracing::info!(server = %s.name, "found an existing raft cluster; waiting to be added to it");
                    return false;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(server = %s.name, error = %e, "cannot ask server for its raft peers yet");
                    return false;
                }
            }
        }
        let mut voters: Vec<u64> = servers.iter().map(|s| s.raft_id).collect();
        voters.push(me);
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        match self.raft.bootstrap(voters).await {
            Ok(()) => {
                tracing::info!(servers = ?names, "found expected number of servers; bootstrapped the raft cluster");
                true
            }
            Err(tribune_consensus::ConsensusError::AlreadyBootstrapped) => true,
            Err(e) => {
                tracing::warn!(error = %e, "raft bootstrap failed");
                false
            }
        }
    }
}

/// Formation: tries to bootstrap every half second until this server belongs to
/// a cluster (its own bootstrap, or a leader adding it).
pub(crate) fn spawn_formation(server: Arc<Server>, expect: u32, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.wait_for(|v| *v) => return,
                _ = tick.tick() => {}
            }
            if server.try_bootstrap(expect).await {
                return;
            }
        }
    });
}

/// Serf status names, as autopilot health shows them.
fn serf_status(status: u8) -> &'static str {
    match status {
        ALIVE => "alive",
        2 => "leaving",
        LEFT => "left",
        FAILED => "failed",
        _ => "none",
    }
}

/// Autopilot's health of every raft member, from one view.
fn health_of(
    server: &Server,
    view: &View<'_>,
    term: u64,
    last_index: u64,
    active_at: &HashMap<u64, Instant>,
    stable_since: &HashMap<u64, std::time::SystemTime>,
) -> AutopilotHealth {
    let by_id: HashMap<u64, &PeerServer> = view.servers.iter().map(|s| (s.raft_id, s)).collect();
    let mut servers = Vec::new();
    for (id, voter) in view
        .voters
        .iter()
        .map(|id| (*id, true))
        .chain(view.learners.iter().map(|id| (*id, false)))
    {
        let me = id == view.me;
        let peer = by_id.get(&id);
        let alive = me || peer.is_some_and(|p| p.status == ALIVE);
        let since_ms = |t: &std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let (node_id, name) = server.identity(id, peer.copied());
        servers.push(ServerHealth {
            id: node_id,
            name,
            address: server.addr_of(id).unwrap_or_default(),
            serf_status: if me {
                "alive"
            } else {
                peer.map_or("none", |p| serf_status(p.status))
            }
            .to_owned(),
            version: if me {
                server.config.version.clone()
            } else {
                peer.map(|p| p.version.clone()).unwrap_or_default()
            },
            leader: me,
            last_contact: if me {
                Duration::ZERO
            } else {
                active_at
                    .get(&id)
                    .map_or(Duration::ZERO, |t| view.now.saturating_duration_since(*t))
            },
            last_term: term,
            last_index: if me {
                last_index
            } else {
                view.matched.get(&id).map_or(0, |(m, _)| *m)
            },
            healthy: alive && healthy(view, id),
            voter,
            stable_since_ms: stable_since.get(&id).map_or(0, since_ms),
        });
    }
    let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
    let quorum = view.voters.len() / 2 + 1;
    AutopilotHealth {
        healthy: servers.iter().all(|s| s.healthy),
        failure_tolerance: healthy_voters.saturating_sub(quorum) as u32,
        servers,
        leader: server.config.node_id.clone(),
    }
}

/// Autopilot: while this server leads, once a second, it records every member's
/// health and makes at most one membership change.
pub(crate) fn spawn_autopilot(server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // When each member was last seen active, and since when it is healthy.
        let mut active_at: HashMap<u64, Instant> = HashMap::new();
        let mut healthy_since: HashMap<u64, Instant> = HashMap::new();
        let mut stable_since: HashMap<u64, std::time::SystemTime> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|v| *v) => return,
                _ = tick.tick() => {}
            }
            let status = server.raft.status();
            if !status.is_leader {
                active_at.clear();
                healthy_since.clear();
                stable_since.clear();
                server.health.send_replace(None);
                continue;
            }
            let matched: HashMap<u64, (u64, bool)> = server
                .raft
                .progress()
                .await
                .into_iter()
                .map(|p| (p.id, (p.matched, p.recent_active)))
                .collect();
            // Consul's leader adds alive servers back on its reconcile pass (every
            // 60 s), so a server an operator just removed stays out that long.
            let servers: Vec<PeerServer> = {
                let mut removed = server.removed.lock();
                removed.retain(|_, at| at.elapsed() < REMOVED_GRACE);
                server
                    .peer_servers()
                    .into_iter()
                    .filter(|s| !removed.contains_key(&s.raft_id))
                    .collect()
            };
            let settings = server.autopilot_settings();
            let now = Instant::now();
            for (id, (_, active)) in &matched {
                if *active {
                    active_at.insert(*id, now);
                }
            }
            let mut view = View {
                me: status.id,
                voters: &status.voters,
                learners: &status.learners,
                commit: status.commit,
                matched: &matched,
                servers: &servers,
                healthy_since: &HashMap::new(),
                now,
                config: &settings,
            };
            // A member's stabilization clock starts when it is first healthy and
            // restarts whenever it is not.
            let healthy_now: Vec<u64> = status
                .voters
                .iter()
                .chain(&status.learners)
                .copied()
                .filter(|id| healthy(&view, *id))
                .collect();
            healthy_since.retain(|id, _| healthy_now.contains(id));
            stable_since.retain(|id, _| healthy_now.contains(id));
            for id in healthy_now {
                healthy_since.entry(id).or_insert(now);
                stable_since
                    .entry(id)
                    .or_insert_with(std::time::SystemTime::now);
            }
            view.healthy_since = &healthy_since;
            let health = health_of(
                &server,
                &view,
                status.term,
                status.last_index,
                &active_at,
                &stable_since,
            );
            server.health.send_replace(Some(health));
            if let Step::Change(change) = next_step(&view) {
                tracing::info!(?change, "autopilot: changing raft membership");
                if let Err(e) = server.raft.change_membership(change).await {
                    tracing::warn!(?change, error = %e, "autopilot: membership change failed");
                }
            }
        }
    });
}

/// A client for the leader's server RPC, to forward a call there.
pub(crate) fn leader_client(
    server: &Server,
    leader: u64,
) -> Result<GrpcClient, tribune_rpc::RpcError> {
    let addr = server
        .addr_of(leader)
        .ok_or(tribune_rpc::RpcError::NoLeader)?;
    server.peer_client(&addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u64, status: u8) -> PeerServer {
        PeerServer {
            raft_id: id,
            name: format!("s{id}"),
            node_id: String::new(),
            rpc_addr: format!("127.0.0.{id}:8300"),
            status,
            expect: None,
            version: String::new(),
        }
    }

    struct Fixture {
        voters: Vec<u64>,
        learners: Vec<u64>,
        matched: HashMap<u64, (u64, bool)>,
        servers: Vec<PeerServer>,
        since: HashMap<u64, Instant>,
        config: AutopilotSettings,
        now: Instant,
    }

    impl Fixture {
        fn new(voters: &[u64], learners: &[u64], servers: Vec<PeerServer>) -> Self {
            let matched = voters
                .iter()
                .chain(learners)
                .map(|id| (*id, (100, true)))
                .collect();
            Fixture {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                matched,
                servers,
                since: HashMap::new(),
                config: AutopilotSettings::default(),
                now: Instant::now(),
            }
        }

        fn step(&self) -> Step {
            next_step(&View {
                me: 1,
                voters: &self.voters,
                learners: &self.learners,
                commit: 100,
                matched: &self.matched,
                servers: &self.servers,
                healthy_since: &self.since,
                now: self.now,
                config: &self.config,
            })
        }
    }

    #[test]
    fn new_servers_join_as_learners_and_are_promoted_once_stable() {
        let mut f = Fixture::new(
            &[1, 2, 3],
            &[],
            vec![
                server(1, ALIVE),
                server(2, ALIVE),
                server(3, ALIVE),
                server(4, ALIVE),
            ],
        );
        assert_eq!(f.step(), Step::Change(MembershipChange::AddLearner(4)));
        // The leader never adds itself (it may have been removed by an operator).
        let mut alone = Fixture::new(
            &[2, 3],
            &[],
            vec![server(1, ALIVE), server(2, ALIVE), server(3, ALIVE)],
        );
        alone.since.clear();
        assert_eq!(alone.step(), Step::Nothing);
        f.learners = vec![4];
        f.matched.insert(4, (100, true));
        assert_eq!(f.step(), Step::Nothing, "not stable yet");
        f.since.insert(4, f.now - Duration::from_secs(11));
        assert_eq!(f.step(), Step::Change(MembershipChange::AddVoter(4)));
        // Further behind than max_trailing_logs: not promoted however long it
        // has been there.
        f.config.max_trailing_logs = 50;
        f.matched.insert(4, (10, true));
        assert_eq!(f.step(), Step::Nothing);
    }

    #[test]
    fn left_servers_are_removed_and_dead_ones_only_with_a_majority_left() {
        let mut f = Fixture::new(
            &[1, 2, 3],
            &[],
            vec![server(1, ALIVE), server(2, LEFT), server(3, ALIVE)],
        );
        assert_eq!(f.step(), Step::Change(MembershipChange::Remove(2)));
        f.servers = vec![server(1, ALIVE), server(2, FAILED), server(3, ALIVE)];
        assert_eq!(f.step(), Step::Change(MembershipChange::Remove(2)));
        f.config.cleanup_dead_servers = false;
        assert_eq!(f.step(), Step::Nothing);
        f.config.cleanup_dead_servers = true;
        f.config.min_quorum = 3;
        assert_eq!(f.step(), Step::Nothing, "min_quorum keeps it");
        f.config.min_quorum = 0;
        // Two of three dead: removing them would leave a minority deciding alone.
        f.servers = vec![server(1, ALIVE), server(2, FAILED), server(3, FAILED)];
        assert_eq!(f.step(), Step::Nothing);
        // The leader never removes itself.
        f.servers = vec![server(1, LEFT), server(2, ALIVE), server(3, ALIVE)];
        assert_eq!(f.step(), Step::Nothing);
    }

    #[test]
    fn raft_ids_are_stable_and_nonzero() {
        assert_eq!(raft_id("a"), raft_id("a"));
        assert_ne!(raft_id("a"), raft_id("b"));
        assert_ne!(raft_id(""), 0);
    }
}
