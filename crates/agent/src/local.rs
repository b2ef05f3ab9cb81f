//! Local services and checks, and the pure rules that change them.

use std::collections::BTreeMap;
use std::time::Duration;
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
    /// When an output-only change, held back by `check_update_interval`, is
    /// pushed to the catalog ([`LocalCheck::record`]).
    pub(crate) deferred_sync: Option<Instant>,
}

/// What [`LocalCheck::record`] did with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Nothing changed.
    Unchanged,
    /// The status changed: push the check now.
    Changed,
    /// Only the output changed: kept locally, pushed when
    /// [`LocalCheck::deferred_sync`] is due.
    Deferred,
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
            deferred_sync: None,
        }
    }

    /// Records a run's (or a TTL update's) status and output, as Consul's
    /// `UpdateCheck`: a status change is pushed at once, with the output; with
    /// `update_interval` set, a change of output alone is kept here and
    /// pushed once, between half and one and a half intervals later (Consul
    /// staggers it the same way), so output that changes on every run does
    /// not turn every run into a raft write.
    pub(crate) fn record(
        &mut self,
        status: HealthStatus,
        output: String,
        now: Instant,
        update_interval: Duration,
    ) -> Recorded {
        if self.check.status == status && self.check.output == output {
            return Recorded::Unchanged;
        }
        self.check.output = output;
        if self.check.status == status && !update_interval.is_zero() {
            if self.deferred_sync.is_none() {
                let stagger = update_interval.mul_f64(rand::random::<f64>());
                self.deferred_sync = Some(now + update_interval / 2 + stagger);
            }
            return Recorded::Deferred;
        }
        self.check.status = status;
        self.deferred_sync = None;
        Recorded::Changed
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
                    c.deferred_sync = None;
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
            .chain(self.checks.values().filter_map(|c| c.deferred_sync))
            .chain(reaps)
            .min()
    }

    /// The checks whose held-back output is due for the catalog at `now`
    /// (their deferral cleared).
    pub(crate) fn due_deferred(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (id, c) in self.checks.iter_mut() {
            if c.deferred_sync.is_some_and(|d| d <= now) {
                c.deferred_sync = None;
                due.push(id.clone());
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check_update_interval` with manual time: a status change is pushed
    /// at once, output alone is held back once for half to one and a half
    /// intervals and then handed over, and a status change in the meantime
    /// takes the held output with it.
    #[test]
    fn output_only_changes_are_deferred_with_manual_time() {
        let t0 = Instant::now();
        let every = Duration::from_secs(300);
        let def = CheckDefinition {
            id: "c".into(),
            name: "c".into(),
            ttl: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let mut local = Local::default();
        local
            .checks
            .insert("c".into(), LocalCheck::new("n", def, t0));
        let c = local.checks.get_mut("c").unwrap();
        assert_eq!(
            c.record(HealthStatus::Passing, "a".into(), t0, every),
            Recorded::Changed
        );
        assert_eq!(
            c.record(HealthStatus::Passing, "a".into(), t0, every),
            Recorded::Unchanged
        );
        assert_eq!(
            c.record(HealthStatus::Passing, "b".into(), t0, every),
            Recorded::Deferred
        );
        let due = c.deferred_sync.expect("held back");
        assert!(due >= t0 + every / 2 && due < t0 + every * 3 / 2, "{due:?}");
        // Another output change keeps the first deadline.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            c.record(HealthStatus::Passing, "c".into(), t1, every),
            Recorded::Deferred
        );
        assert_eq!(c.deferred_sync, Some(due));
        assert_eq!(c.check.output, "c");
        assert_eq!(local.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(local
            .due_deferred(due - Duration::from_millis(1))
            .is_empty());
        assert_eq!(local.due_deferred(due), ["c"]);
        assert_eq!(local.checks["c"].deferred_sync, None);

        // A status change goes at once and clears a pending deferral.
        let c = local.checks.get_mut("c").unwrap();
        c.record(HealthStatus::Passing, "d".into(), t1, every);
        assert!(c.deferred_sync.is_some());
        assert_eq!(
            c.record(HealthStatus::Warning, "d".into(), t1, every),
            Recorded::Changed
        );
        assert_eq!(c.deferred_sync, None);
        // With no interval, output alone is pushed at once.
        assert_eq!(
            c.record(HealthStatus::Warning, "e".into(), t1, Duration::ZERO),
            Recorded::Changed
        );
    }

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
