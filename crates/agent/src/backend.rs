//! The agent as the HTTP API's [`Backend`]: agent endpoints from local state, the rest
//! forwarded to the servers.

use crate::agent::{backend_err, Agent, AgentEvent};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use tribune_http_api::backend::LocalCheck as ApiLocalCheck;
use tribune_http_api::{AgentInfo, Backend, BackendError, ClusterStatus, ServiceRegistration};
use tribune_rpc::RpcError;
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::{CheckDefinition, Member, Service};
use tribune_types::HealthStatus;

impl Agent {
    fn member(&self) -> Member {
        let c = &self.cfg;
        // In a pool, the entry the others see is the one to report (clients compare
        // `/v1/agent/self`'s Member with `/v1/agent/members`).
        if let Some(me) = self
            .gossip_members(false)
            .and_then(|ms| ms.into_iter().find(|m| m.name == c.node_name))
        {
            return me;
        }
        let mut tags = BTreeMap::new();
        tags.insert(
            "role".into(),
            if c.server { "consul" } else { "node" }.into(),
        );
        tags.insert("dc".into(), c.datacenter.clone());
        tags.insert("id".into(), c.node_id.clone());
        tags.insert("build".into(), c.version.clone());
        tags.insert("vsn".into(), "2".into());
        tags.insert("vsn_min".into(), "2".into());
        tags.insert("vsn_max".into(), "3".into());
        tags.insert("segment".into(), String::new());
        if c.server {
            tags.insert(
                "port".into(),
                c.ports.get("server").copied().unwrap_or(8300).to_string(),
            );
            tags.insert("raft_vsn".into(), "3".into());
            if c.bootstrap {
                tags.insert("bootstrap".into(), "1".into());
            }
        }
        Member {
            name: c.node_name.clone(),
            addr: c.advertise_addr.clone(),
            port: c.ports.get("serf_lan").copied().unwrap_or(8301),
            tags,
            status: 1,
        }
    }
}

#[async_trait]
impl Backend for Agent {
    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), BackendError> {
        self.servers.read(req, opts).await.map_err(backend_err)
    }

    async fn read_cached(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), BackendError> {
        crate::cache::ReadCache::read(&self.read_cache, &self.servers, req, opts)
            .await
            .map_err(backend_err)
    }

    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), BackendError> {
        self.servers.write(req).await.map_err(backend_err)
    }

    async fn status(&self) -> Result<ClusterStatus, BackendError> {
        let s = self.servers.status().await.map_err(backend_err)?;
        Ok(ClusterStatus {
            leader: s.leader,
            peers: s.peers,
        })
    }

    async fn operator(
        &self,
        req: tribune_types::model::operator::OperatorRequest,
    ) -> Result<tribune_types::model::operator::OperatorReply, BackendError> {
        self.servers.operator(req).await.map_err(backend_err)
    }

    async fn snapshot_save(
        &self,
        stale: bool,
    ) -> Result<tribune_http_api::SnapshotDownload, BackendError> {
        let d = self
            .servers
            .snapshot_save(stale)
            .await
            .map_err(backend_err)?;
        Ok(tribune_http_api::SnapshotDownload {
            index: d.head.index,
            known_leader: d.head.known_leader,
            last_contact: std::time::Duration::from_millis(d.head.last_contact_ms),
            archive: d.archive.map(|piece| piece.map_err(backend_err)).boxed(),
        })
    }

    async fn snapshot_restore(
        &self,
        body: tribune_http_api::ArchiveBody,
    ) -> Result<(), BackendError> {
        // Upload errors travel as transport errors; the text survives.
        let archive = body
            .map(|piece| piece.map_err(|e| RpcError::Transport(e.to_string())))
            .boxed();
        self.servers
            .snapshot_restore(archive)
            .await
            .map_err(backend_err)
    }

    async fn connect_leaf(
        &self,
        service: &str,
        min_index: u64,
        max_wait: std::time::Duration,
    ) -> Result<tribune_http_api::LeafCert, BackendError> {
        self.leaf(service, min_index, max_wait).await
    }

    fn agent_info(&self) -> AgentInfo {
        let c = &self.cfg;
        AgentInfo {
            node_name: c.node_name.clone(),
            node_id: c.node_id.clone(),
            datacenter: c.datacenter.clone(),
            primary_datacenter: c.primary_datacenter.clone(),
            server: c.server,
            version: c.version.clone(),
            revision: c.revision.clone(),
            advertise_addr: c.advertise_addr.clone(),
            node_meta: c.node_meta.clone(),
            session_ttl_min: c.session_ttl_min,
            ports: c.ports.clone(),
            member: self.member(),
            debug_config: c.debug_config.clone(),
            disable_coordinates: c.disable_coordinates,
        }
    }

    fn members(&self, wan: bool) -> Vec<Member> {
        if let Some(members) = self.gossip_members(wan) {
            return members;
        }
        // Without gossip (unit tests) the pool is this agent alone; only servers are in
        // the WAN pool.
        if wan && !self.cfg.server {
            return Vec::new();
        }
        let mut m = self.member();
        if wan {
            m.name = format!("{}.{}", self.cfg.node_name, self.cfg.datacenter);
            m.port = self.cfg.ports.get("serf_wan").copied().unwrap_or(8302);
        }
        vec![m]
    }

    fn coordinate_datacenters(&self) -> Vec<tribune_http_api::DatacenterCoordinates> {
        match (self.pool(true), self.lan()) {
            (Some(wan), _) => crate::coordinates::datacenters(&wan, true),
            (None, Some(lan)) => crate::coordinates::datacenters(&lan, false),
            (None, None) => Vec::new(),
        }
    }

    fn local_services(&self) -> Vec<Service> {
        self.local.lock().services.values().cloned().collect()
    }

    fn local_checks(&self) -> Vec<ApiLocalCheck> {
        let local = self.local.lock();
        local
            .checks
            .values()
            .map(|c| {
                let mut check = c.check.clone();
                // A service's check carries the service's name and tags, as
                // Consul's `AddCheck` fills them in (and the catalog shows them).
                if let Some(s) = local.services.get(&check.service_id) {
                    check.service_name.clone_from(&s.service);
                    check.service_tags.clone_from(&s.tags);
                }
                ApiLocalCheck {
                    check,
                    definition: c.def.clone(),
                }
            })
            .collect()
    }

    async fn register_service(&self, reg: ServiceRegistration) -> Result<(), BackendError> {
        self.add_service(reg).await
    }

    async fn deregister_service(&self, id: &str) -> Result<(), BackendError> {
        self.remove_service(id).await
    }

    async fn register_check(&self, def: CheckDefinition) -> Result<(), BackendError> {
        self.add_check(def).await
    }

    async fn deregister_check(&self, id: &str) -> Result<(), BackendError> {
        self.remove_check(id).await
    }

    async fn update_ttl_check(
        &self,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> Result<(), BackendError> {
        self.update_ttl(id, status, output).await
    }

    async fn set_maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: String,
    ) -> Result<(), BackendError> {
        self.maintenance(service, enable, reason).await
    }

    async fn leave(&self) -> Result<(), BackendError> {
        // Consul answers only once the leave has propagated, so a client that asks the
        // other members right after sees this node `left` (the Go client's own test
        // does exactly that).
        self.servers.prepare_leave().await;
        for wan in [false, true] {
            if let Some(pool) = self.pool(wan) {
                pool.leave()
                    .await
                    .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            }
        }
        let (done, left) = tokio::sync::oneshot::channel();
        self.send_event(AgentEvent::Leave(done)).await?;
        // Dropped unanswered only if the process is stopping anyway.
        let _ = left.await;
        Ok(())
    }

    async fn reload(&self) -> Result<(), BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_event(AgentEvent::Reload(tx)).await?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BackendError::Unavailable(e)),
            Err(_) => Err(BackendError::Unavailable("agent is shutting down".into())),
        }
    }

    async fn join(&self, addr: &str, wan: bool) -> Result<(), BackendError> {
        let Some(pool) = self.pool(wan) else {
            return Err(BackendError::Unavailable(if wan {
                "Must be a server to join WAN cluster".into()
            } else {
                "this agent is not in a gossip pool".into()
            }));
        };
        match pool.join(&[addr.to_owned()]).await {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(BackendError::Unavailable(format!(
                "Error joining address '{addr}': no member could be contacted"
            ))),
            Err(e) => Err(BackendError::Unavailable(e.to_string())),
        }
    }

    async fn force_leave(&self, node: &str, prune: bool, wan: bool) -> Result<(), BackendError> {
        let Some(pool) = self.pool(wan) else {
            return Err(BackendError::Unavailable(format!(
                "agent: No node found with name '{node}'"
            )));
        };
        // Serf ignores a force-leave of a member that is alive (it would only rejoin),
        // this agent included, and reports success.
        if pool
            .members()
            .iter()
            .any(|m| m.name == node && m.status == 1)
        {
            return Ok(());
        }
        pool.force_leave(node, prune)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))
    }

    async fn fire_event(
        &self,
        event: tribune_http_api::UserEvent,
    ) -> Result<tribune_http_api::UserEvent, BackendError> {
        self.fire_user_event(event).await
    }

    fn events(&self) -> Vec<tribune_http_api::UserEvent> {
        self.kept_events()
    }

    fn event_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.event_tx.subscribe()
    }

    async fn keyring(
        &self,
        req: tribune_http_api::KeyringRequest,
    ) -> Result<Vec<tribune_http_api::KeyringPool>, BackendError> {
        self.keyring_operation(req).await
    }

    fn gauges(&self) -> Vec<tribune_http_api::Gauge> {
        crate::metrics::gauges(self)
    }

    fn monitor(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<tribune_http_api::LogLine>> {
        self.logs.subscribe()
    }

    fn local_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
