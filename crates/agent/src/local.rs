//! Local services and checks, and the pure rules that change them.

use std::collections::BTreeMap;
use tokio::time::Instant;
use tribune_types::model::{Check, CheckDefinition, Service};
use tribune_types::{format_go_duration, HealthStatus};

/// Check ID of node maintenance mode (Consul's `_node_maintenance`).
pub(crate) const NODE_MAINT: &str = "_node_maintenance";

/// Check ID of a service's maintenance mode.
pub(crate) fn service_maint_id(service_id: &str) -> String {
    format!("_service_maintenance:{service_id}")
}

/// A local check: its catalog record, its definition, and its TTL deadline.
#[derive(Debug, Clone)]
pub(crate) struct LocalCheck {
    pub(crate) check: Check,
    pub(crate) def: CheckDefinition,
    pub(crate) ttl_deadline: Option<Instant>,
    /// Since when the agent has seen the check critical (for
    /// `deregister_critical_service_after`); kept up to date by [`Local::reap`].
    pub(crate) critical_since: Option<Instant>,
}

/// Everything registered at this agent.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) checks: BTreeMap<String, LocalCheck>,
}

impl LocalCheck {
    /// A new local check from its definition on `node`.
    pub(crate) fn new(node: &str, def: CheckDefinition, now: Instant) -> Self {
        let check = Check {
            node: node.into(),
            check_id: def.id.clone(),
            name: def.name.clone(),
            // Consul starts checks critical unless told otherwise, so a service is not
            // advertised as healthy before anything proved it.
            status: def.status.unwrap_or(HealthStatus::Critical),
            notes: def.notes.clone(),
            output: String::new(),
            service_id: def.service_id.clone(),
            check_type: def.check_type().to_owned(),
            interval: def.interval.map(format_go_duration).unwrap_or_default(),
            timeout: def.timeout.map(format_go_duration).unwrap_or_default(),
            ..Default::default()
        };
        let ttl_deadline = def.ttl.map(|ttl| now + ttl);
        let critical_since = (check.status == HealthStatus::Critical).then_some(now);
        LocalCheck {
            check,
            def,
            ttl_deadline,
            critical_since,
        }
    }
}

impl Local {
    /// Checks bound to a service.
    pub(crate) fn service_checks(&self, service_id: &str) -> Vec<Check> {
        self.checks
            .values()
            .filter(|c| c.check.service_id == service_id)
            .map(|c| c.check.clone())
            .collect()
    }

    /// Node-level checks.
    pub(crate) fn node_checks(&self) -> Vec<Check> {
        self.service_checks("")
    }

    /// Expires TTL checks whose deadline passed; returns the IDs that changed.
    pub(crate) fn expire_ttls(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        for (id, c) in self.checks.iter_mut() {
            if let Some(deadline) = c.ttl_deadline {
                if deadline <= now {
                    c.ttl_deadline = None;
                    if c.check.status != HealthStatus::Critical {
                        changed.push(id.clone());
                    }
                    c.check.status = HealthStatus::Critical;
                    c.check.output = "TTL expired".into();
                }
            }
        }
        changed
    }

    /// Notes when checks turned critical (or stopped being critical) and returns the
    /// services to deregister: those with a check whose
    /// `deregister_critical_service_after` has passed while critical.
    pub(crate) fn reap(&mut self, now: Instant) -> Vec<String> {
        let mut reap = Vec::new();
        for c in self.checks.values_mut() {
            if c.check.status != HealthStatus::Critical {
                c.critical_since = None;
                continue;
            }
            let since = *c.critical_since.get_or_insert(now);
            if let Some(after) = c.def.deregister_critical_service_after {
                if !c.check.service_id.is_empty()
                    && since + after <= now
                    && !reap.contains(&c.check.service_id)
                {
                    reap.push(c.check.service_id.clone());
                }
            }
        }
        reap
    }

    /// The earliest pending TTL deadline or critical-service reaping deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let reaps = self.checks.values().filter_map(|c| {
            let after = c.def.deregister_critical_service_after?;
            Some(c.critical_since? + after)
        });
        self.checks
            .values()
            .filter_map(|c| c.ttl_deadline)
            .chain(reaps)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn critical_services_are_reaped_after_their_deadline_with_manual_time() {
        let t0 = Instant::now();
        let mut local = Local::default();
        local.services.insert("web".into(), Service::default());
        let def = CheckDefinition {
            id: "web-check".into(),
            name: "web-check".into(),
            service_id: "web".into(),
            ttl: Some(Duration::from_secs(600)),
            deregister_critical_service_after: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        local
            .checks
            .insert("web-check".into(), LocalCheck::new("n", def, t0));
        // Starts critical: reaped 60 s later unless it recovers.
        assert!(local.reap(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(local.next_deadline(), Some(t0 + Duration::from_secs(60)));
        // It passes for a while, then fails again at 100 s: the clock restarts.
        local.checks.get_mut("web-check").unwrap().check.status = HealthStatus::Passing;
        assert!(local.reap(t0 + Duration::from_secs(70)).is_empty());
        local.checks.get_mut("web-check").unwrap().check.status = HealthStatus::Critical;
        assert!(local.reap(t0 + Duration::from_secs(100)).is_empty());
        assert!(local.reap(t0 + Duration::from_secs(159)).is_empty());
        assert_eq!(
            local.reap(t0 + Duration::from_secs(160)),
            vec!["web".to_owned()]
        );
    }

    #[test]
    fn ttl_expiry_with_manual_time() {
        let t0 = Instant::now();
        let mut local = Local::default();
        let def = CheckDefinition {
            id: "c".into(),
            name: "c".into(),
            ttl: Some(Duration::from_secs(10)),
            status: Some(HealthStatus::Passing),
            ..Default::default()
        };
        local
            .checks
            .insert("c".into(), LocalCheck::new("n", def, t0));
        assert_eq!(local.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(local.expire_ttls(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            local.expire_ttls(t0 + Duration::from_secs(10)),
            vec!["c".to_owned()]
        );
        assert_eq!(local.checks["c"].check.status, HealthStatus::Critical);
        assert_eq!(local.checks["c"].check.output, "TTL expired");
        assert_eq!(local.next_deadline(), None);
    }
}
