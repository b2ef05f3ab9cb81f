//! Anti-entropy: push local changes to the catalog, and periodically reconcile the
//! catalog's view of this node with local state (Consul's `agent/ae` + `local.State`).

use crate::agent::Agent;
use tribune_types::model::ops::{
    Consistency, Deregistration, QueryOptions, ReadRequest, ReadResult, Registration, WriteRequest,
};
use tribune_types::model::{Check, Service};

/// The catalog owns these on a server node (the leader registers them).
fn leader_owned_service(id: &str) -> bool {
    id == "consul"
}

fn leader_owned_check(id: &str) -> bool {
    id == "serfHealth"
}

/// Whether two services differ in anything the agent controls.
fn service_differs(a: &Service, b: &Service) -> bool {
    let mut a = a.clone();
    a.raft = b.raft;
    a.node = b.node.clone();
    a != *b
}

/// Whether the local check `a` differs from the catalog's `b` in anything the
/// agent controls; the output not counted while a change of it alone is held
/// back (`check_update_interval`), as Consul's `updateSyncState` does.
fn check_differs(a: &Check, b: &Check, output_deferred: bool) -> bool {
    let mut a = a.clone();
    if output_deferred {
        a.output = b.output.clone();
    }
    a.raft = b.raft;
    a.node = b.node.clone();
    a.service_name = b.service_name.clone();
    a.service_tags = b.service_tags.clone();
    a != *b
}

impl Agent {
    async fn push(&self, req: WriteRequest) -> bool {
        match self.servers.write(req).await {
            Ok(_) => true,
            Err(e) => {
                // The periodic full sync retries; the local registration stands.
                tracing::warn!(error = %e, "anti-entropy sync failed; will retry");
                false
            }
        }
    }

    /// Pushes one service and its checks.
    async fn sync_service_locked(&self, id: &str) -> bool {
        let (svc, checks) = {
            let local = self.local.lock();
            (local.services.get(id).cloned(), local.service_checks(id))
        };
        let Some(svc) = svc else { return true };
        let synced = self
            .push(WriteRequest::Register(Registration {
                node: self.node(),
                service: Some(svc),
                checks,
                skip_node_update: true,
            }))
            .await;
        if synced {
            tracing::info!(service = id, "Synced service");
        }
        synced
    }

    /// Pushes one check (with its service, so a service check never precedes it).
    async fn sync_check_locked(&self, id: &str) -> bool {
        let (check, svc) = {
            let local = self.local.lock();
            let Some(c) = local.checks.get(id) else {
                return true;
            };
            let svc = local.services.get(&c.check.service_id).cloned();
            (c.check.clone(), svc)
        };
        let synced = self
            .push(WriteRequest::Register(Registration {
                node: self.node(),
                service: svc,
                checks: vec![check],
                skip_node_update: true,
            }))
            .await;
        if synced {
            tracing::info!(check = id, "Synced check");
        }
        synced
    }

    async fn sync_service_removed_locked(&self, id: &str) -> bool {
        self.push(WriteRequest::Deregister(Deregistration {
            node: self.cfg.node_name.clone().into(),
            service_id: Some(id.into()),
            check_id: None,
        }))
        .await
    }

    async fn sync_check_removed_locked(&self, id: &str) -> bool {
        self.push(WriteRequest::Deregister(Deregistration {
            node: self.cfg.node_name.clone().into(),
            service_id: None,
            check_id: Some(id.into()),
        }))
        .await
    }

    /// Pushes one service and its checks. Every push takes `sync_lock` from the moment
    /// it copies local state until its write completes, so pushes land in the order of
    /// the local changes they carry (a stale copy can never overwrite a newer one).
    pub(crate) async fn sync_service(&self, id: &str) {
        let _order = self.sync_lock.lock().await;
        self.sync_service_locked(id).await;
    }

    /// Pushes one check (see [`Agent::sync_service`] for ordering).
    pub(crate) async fn sync_check(&self, id: &str) {
        let _order = self.sync_lock.lock().await;
        self.sync_check_locked(id).await;
    }

    /// Removes a service from the catalog (see [`Agent::sync_service`] for ordering).
    pub(crate) async fn sync_service_removed(&self, id: &str) {
        let _order = self.sync_lock.lock().await;
        self.sync_service_removed_locked(id).await;
    }

    /// Removes a check from the catalog (see [`Agent::sync_service`] for ordering).
    pub(crate) async fn sync_check_removed(&self, id: &str) {
        let _order = self.sync_lock.lock().await;
        self.sync_check_removed_locked(id).await;
    }

    /// Reconciles the catalog's view of this node with local state: registers what is
    /// missing or different, deregisters what the agent does not know.
    /// Returns whether the catalog was read and every push succeeded.
    pub(crate) async fn full_sync(&self) -> bool {
        // One push sequence at a time: see `sync_lock`.
        let _order = self.sync_lock.lock().await;
        let mut ok = true;
        let stale = QueryOptions {
            consistency: Consistency::Stale,
            ..Default::default()
        };
        let node = self.cfg.node_name.clone();
        let catalog_services = match self
            .servers
            .read(
                ReadRequest::CatalogNode {
                    node: node.clone().into(),
                },
                stale,
            )
            .await
        {
            Ok((ReadResult::NodeServices(found), _)) => found.map(|(_, s)| s).unwrap_or_default(),
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "anti-entropy: catalog unavailable");
                return false;
            }
        };
        let catalog_checks = match self
            .servers
            .read(ReadRequest::HealthNode { node: node.into() }, stale)
            .await
        {
            Ok((ReadResult::Checks(c), _)) => c,
            _ => return false,
        };
        let (services, checks, deferred) = {
            let local = self.local.lock();
            (
                local.services.clone(),
                local
                    .checks
                    .iter()
                    .map(|(k, v)| (k.clone(), v.check.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                local
                    .checks
                    .iter()
                    .filter(|(_, v)| v.deferred_sync.is_some())
                    .map(|(k, _)| k.clone())
                    .collect::<std::collections::BTreeSet<_>>(),
            )
        };
        for s in &catalog_services {
            let id = s.id.as_str();
            if !leader_owned_service(id) && !services.contains_key(id) {
                ok &= self.sync_service_removed_locked(id).await;
            }
        }
        for c in &catalog_checks {
            let id = c.check_id.as_str();
            if !leader_owned_check(id) && !checks.contains_key(id) {
                ok &= self.sync_check_removed_locked(id).await;
            }
        }
        // With EnableTagOverride the catalog owns the tags: adopt them locally instead
        // of overwriting them (Consul's anti-entropy does the same).
        let mut services = services;
        for (id, svc) in services.iter_mut() {
            if !svc.enable_tag_override {
                continue;
            }
            if let Some(cs) = catalog_services.iter().find(|s| s.id.as_str() == id) {
                if cs.tags != svc.tags {
                    svc.tags = cs.tags.clone();
                    if let Some(local) = self.local.lock().services.get_mut(id) {
                        local.tags = cs.tags.clone();
                    }
                }
            }
        }
        for (id, svc) in &services {
            let stale = catalog_services
                .iter()
                .find(|s| s.id.as_str() == id)
                .is_none_or(|s| service_differs(svc, s));
            if stale {
                ok &= self.sync_service_locked(id).await;
            }
        }
        let node_checks_stale = checks.iter().any(|(id, c)| {
            catalog_checks
                .iter()
                .find(|cc| cc.check_id.as_str() == id)
                .is_none_or(|cc| check_differs(c, cc, deferred.contains(id)))
        });
        if node_checks_stale {
            let node_checks = self.local.lock().node_checks();
            if !node_checks.is_empty() {
                ok &= self
                    .push(WriteRequest::Register(Registration {
                        node: self.node(),
                        service: None,
                        checks: node_checks,
                        skip_node_update: true,
                    }))
                    .await;
            }
            for (id, c) in &checks {
                if !c.service_id.is_empty() {
                    ok &= self.sync_check_locked(id).await;
                }
            }
        }
        ok
    }
}
