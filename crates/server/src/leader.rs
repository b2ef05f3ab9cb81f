//! Leader duties: on gaining leadership, register this server in the catalog (node,
//! `serfHealth`, the `consul` service) and create the Connect CA root once; while
//! leading, reap KV tombstones older than the tombstone TTL and destroy TTL sessions
//! that were not renewed in time (timers re-armed in full on every new term).

use crate::ca;
use crate::server::Server;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tribune_state::Command;
use tribune_types::model::ops::{
    QueryOptions, ReadRequest, ReadResult, Registration, WriteRequest,
};
use tribune_types::model::{Check, Node, Service};
use tribune_types::HealthStatus;

/// How often the leader samples the raft index for tombstone GC (Consul: 30 s granularity).
const GC_GRANULARITY: Duration = Duration::from_secs(30);

pub(crate) fn spawn(server: Arc<Server>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(expire_sessions(server.clone(), shutdown.clone()));
    tokio::spawn(async move {
        let mut status = server.raft.subscribe();
        let mut established_term = 0u64;
        let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut gc = tokio::time::interval(GC_GRANULARITY);
        loop {
            let s = status.borrow().clone();
            if !s.is_leader {
                // Timers are leader state; the next leader re-arms them in full.
                server.session_timers.lock().clear();
                established_term = 0;
            }
            if s.is_leader && s.term != established_term {
                match establish(&server).await {
                    Ok(()) => established_term = s.term,
                    Err(e) => {
                        tracing::warn!(error = %e, "establishing leadership failed; will retry")
                    }
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                r = status.changed() => if r.is_err() { return },
                _ = gc.tick() => {
                    if s.is_leader {
                        reap_tombstones(&server, &mut samples).await;
                    } else {
                        samples.clear();
                    }
                    // Retry a failed establish on the next tick.
                    if s.is_leader && established_term != s.term {
                        continue;
                    }
                }
            }
        }
    });
}

/// The `consul` service every server has in the catalog, on its server RPC port.
pub(crate) fn consul_service(port: u16, version: &str) -> Service {
    let meta = [
        ("raft_version", "3"),
        ("serf_protocol_current", "2"),
        ("serf_protocol_min", "1"),
        ("serf_protocol_max", "5"),
        ("version", version),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Service {
        id: "consul".into(),
        service: "consul".into(),
        port,
        meta,
        ..Default::default()
    }
}

/// The node, `serfHealth` check and `consul` service of this server.
fn self_registration(server: &Server) -> Registration {
    let c = &server.config;
    Registration {
        node: Node::of_agent(
            &c.node_id,
            &c.node_name,
            &c.advertise_addr,
            &c.datacenter,
            &c.node_meta,
            &c.version,
        ),
        service: Some(consul_service(c.rpc_addr.port(), &c.version)),
        checks: vec![Check {
            check_id: "serfHealth".into(),
            name: "Serf Health Status".into(),
            status: HealthStatus::Passing,
            output: "Agent alive and reachable".into(),
            check_type: "serf".into(),
            ..Default::default()
        }],
        skip_node_update: false,
    }
}

async fn establish(server: &Arc<Server>) -> Result<(), tribune_rpc::RpcError> {
    server
        .propose(WriteRequest::Register(self_registration(server)))
        .await?;
    if server.config.connect_enabled {
        let opts = QueryOptions {
            consistency: tribune_types::model::ops::Consistency::Stale,
            ..Default::default()
        };
        let (roots, _) = server.read_unlimited(ReadRequest::CaRoots, opts).await?;
        if matches!(roots, ReadResult::CaRoots(ref r) if r.is_empty()) {
            let cluster_id = server
                .config
                .ca_cluster_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            match ca::generate_root(&cluster_id) {
                Ok(root) => {
                    server
                        .propose(WriteRequest::CaSetRoots { roots: vec![root] })
                        .await?;
                }
                Err(e) => tracing::error!(error = %e, "cannot create the Connect CA root"),
            }
        }
    }
    arm_session_timers(server).await?;
    // Like Consul's leader, store the agent config's autopilot settings the first
    // time a cluster has a leader; operators change them from then on.
    let stored = matches!(
        server.state.read(&ReadRequest::AutopilotConfig, None).0,
        ReadResult::Autopilot(ref a) if a.raft.modify_index > 0
    );
    if !stored {
        server
            .propose(WriteRequest::AutopilotSet {
                config: server.config.autopilot.clone(),
                cas: Some(0),
            })
            .await?;
    }
    // Member events seen while another server led (or none did) were not written
    // to the catalog: catch up from gossip's current view, as Consul's leader
    // does when it takes over.
    let members = server.members.lock().clone();
    if !members.is_empty() {
        server.reconcile(&members, false).await?;
    }
    tracing::info!(node = %server.config.node_name, "cluster leadership established");
    Ok(())
}

/// Starts a full `TTL × 2` timer for every TTL session (Consul's
/// `initializeSessionTimers`): whatever the previous leader knew of renewals is lost,
/// so each session gets the benefit of the doubt.
async fn arm_session_timers(server: &Arc<Server>) -> Result<(), tribune_rpc::RpcError> {
    let opts = QueryOptions {
        consistency: tribune_types::model::ops::Consistency::Stale,
        ..Default::default()
    };
    let (list, _) = server
        .read_unlimited(ReadRequest::SessionList, opts)
        .await?;
    let ReadResult::Sessions(sessions) = list else {
        return Ok(());
    };
    let now = std::time::Instant::now();
    let mut timers = server.session_timers.lock();
    timers.clear();
    for s in &sessions {
        if let Some(ttl) = s.ttl_duration() {
            timers.reset(s.id, ttl, now);
        }
    }
    let armed = timers.len();
    drop(timers);
    server.timers_changed.notify_one();
    if armed > 0 {
        tracing::info!(sessions = armed, "session TTL timers armed");
    }
    Ok(())
}

/// Destroys TTL sessions whose deadline passed. Runs for the server's life; the timer
/// set is empty while this server does not lead.
async fn expire_sessions(server: Arc<Server>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = server.session_timers.lock().next_deadline();
        let wait = async move {
            match next {
                Some(d) => tokio::time::sleep_until(Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = server.timers_changed.notified() => continue,
            _ = wait => {}
        }
        let now = std::time::Instant::now();
        let due = server.session_timers.lock().take_expired(now);
        for id in due {
            let (found, _) = server.state.read(&ReadRequest::SessionGet { id }, None);
            if matches!(found, ReadResult::Sessions(ref s) if s.is_empty()) {
                continue;
            }
            match server.propose(WriteRequest::SessionDestroy { id }).await {
                Ok(_) => tracing::info!(session = %id, "session TTL expired; invalidated"),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "invalidating expired session failed");
                    if server.raft.status().is_leader {
                        // Retry shortly rather than leave a dead session holding locks.
                        server
                            .session_timers
                            .lock()
                            .set_deadline(id, now + Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

/// Samples the applied index every tick; reaps tombstones whose sample is older than
/// the tombstone TTL (Consul's TombstoneGC, which also works in 30 s buckets).
async fn reap_tombstones(server: &Arc<Server>, samples: &mut VecDeque<(Instant, u64)>) {
    let now = Instant::now();
    samples.push_back((now, server.state.last_index()));
    let mut upto = None;
    while let Some((t, idx)) = samples.front() {
        if now.duration_since(*t) >= server.config.tombstone_ttl {
            upto = Some(*idx);
            samples.pop_front();
        } else {
            break;
        }
    }
    if let Some(index) = upto.filter(|i| server.state.has_tombstones_upto(*i)) {
        let cmd = Command::ReapTombstones { index };
        if let Err(e) = server
            .raft
            .propose(cmd.encode(crate::server::wall_ms()))
            .await
        {
            tracing::debug!(error = %e, "tombstone reap not proposed");
        }
    }
}
