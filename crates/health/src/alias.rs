//! Alias checks: the health of another service instance or node, folded into one
//! status. Pure functions; the agent owns the watching (local state for a local
//! service, a blocking `Health.NodeChecks` query for `alias_node`), because only it
//! can see the catalog. Rules from Consul's `CheckAlias.processChecks`
//! (`agent/checks/alias.go`).

use crate::status::Probe;
use tribune_types::HealthStatus;

/// The folded status: any critical check makes it critical, else any warning makes
/// it warning, else passing (also with no checks at all). Maintenance counts as
/// critical: Consul stores the `_node_maintenance` / `_service_maintenance:<id>`
/// checks as critical, and that is what the alias sees.
pub fn aggregate(statuses: &[HealthStatus]) -> HealthStatus {
    let mut out = HealthStatus::Passing;
    for s in statuses {
        match s {
            HealthStatus::Critical | HealthStatus::Maintenance => return HealthStatus::Critical,
            HealthStatus::Warning => out = HealthStatus::Warning,
            HealthStatus::Passing => {}
        }
    }
    out
}

/// One check of the aliased service or node, as the agent found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasedCheck<'a> {
    /// The check's name (quoted in the alias output).
    pub name: &'a str,
    /// Its status.
    pub status: HealthStatus,
    /// Its output.
    pub output: &'a str,
}

/// The alias check's status and output for the aliased checks, with Consul's texts:
/// `No checks found.`, `All checks passing.`, or `Aliased check "<name>" failing:
/// <output>` naming the first critical check, else the last warning one.
pub fn summarize(checks: &[AliasedCheck<'_>]) -> Probe {
    let mut status = HealthStatus::Passing;
    let mut output = String::from("No checks found.");
    for c in checks {
        let folded = aggregate(&[c.status]);
        match folded {
            HealthStatus::Critical | HealthStatus::Warning => {
                status = folded;
                output = format!("Aliased check {:?} failing: {}", c.name, c.output);
                if folded == HealthStatus::Critical {
                    break;
                }
            }
            _ => {
                if status == HealthStatus::Passing {
                    output = String::from("All checks passing.");
                }
            }
        }
    }
    Probe { status, output }
}

/// The result when the aliased service does not exist on the node: critical,
/// `Service <id> could not be found on node <node>` (Consul leaves `<node>` empty for
/// a local alias).
pub fn service_not_found(service_id: &str, node: &str) -> Probe {
    Probe::critical(format!(
        "Service {service_id} could not be found on node {node}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Critical, Maintenance, Passing, Warning};

    #[test]
    fn aggregate_takes_the_worst() {
        assert_eq!(aggregate(&[]), Passing);
        assert_eq!(aggregate(&[Passing, Passing]), Passing);
        assert_eq!(aggregate(&[Passing, Warning, Passing]), Warning);
        assert_eq!(aggregate(&[Warning, Critical, Passing]), Critical);
        assert_eq!(aggregate(&[Passing, Maintenance]), Critical);
    }

    fn chk<'a>(name: &'a str, status: HealthStatus, output: &'a str) -> AliasedCheck<'a> {
        AliasedCheck {
            name,
            status,
            output,
        }
    }

    #[test]
    fn summarize_texts() {
        assert_eq!(summarize(&[]), Probe::passing("No checks found."));
        assert_eq!(
            summarize(&[chk("a", Passing, ""), chk("b", Passing, "")]),
            Probe::passing("All checks passing.")
        );
        assert_eq!(
            summarize(&[
                chk("a", Warning, "slow"),
                chk("b", Passing, ""),
                chk("c", Warning, "slower"),
            ]),
            Probe::warning("Aliased check \"c\" failing: slower")
        );
        assert_eq!(
            summarize(&[
                chk("a", Warning, "slow"),
                chk("b", Critical, "down"),
                chk("c", Critical, "also down"),
            ]),
            Probe::critical("Aliased check \"b\" failing: down")
        );
        assert_eq!(
            summarize(&[chk("_service_maintenance:web", Maintenance, "off")]),
            Probe::critical("Aliased check \"_service_maintenance:web\" failing: off")
        );
    }

    #[test]
    fn missing_service() {
        assert_eq!(
            service_not_found("web-1", "node-a"),
            Probe::critical("Service web-1 could not be found on node node-a")
        );
    }
}
