//! Status thresholds: Consul's `StatusHandler` (`agent/checks/check.go`) as a pure
//! state machine.
//!
//! A probe's raw result is not published as is: `success_before_passing` holds back a
//! passing (or warning) result until that many consecutive successes, and
//! `failures_before_warning` / `failures_before_critical` hold back a critical one,
//! publishing it first as a warning and then as critical. [`StatusTracker::observe`]
//! takes one [`Probe`] and says what, if anything, to publish.

use tribune_types::model::CheckDefinition;
use tribune_types::HealthStatus;

/// The raw outcome of one probe run: the status the probe itself decided and the
/// output text Consul would show for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What the probe saw (`passing`, `warning` or `critical`; probes never report
    /// `maintenance`, and the tracker treats it as a failure if one did).
    pub status: HealthStatus,
    /// The check output (already truncated to the check's output limit).
    pub output: String,
}

impl Probe {
    /// A passing result.
    pub fn passing(output: impl Into<String>) -> Probe {
        Probe {
            status: HealthStatus::Passing,
            output: output.into(),
        }
    }

    /// A warning result.
    pub fn warning(output: impl Into<String>) -> Probe {
        Probe {
            status: HealthStatus::Warning,
            output: output.into(),
        }
    }

    /// A critical result.
    pub fn critical(output: impl Into<String>) -> Probe {
        Probe {
            status: HealthStatus::Critical,
            output: output.into(),
        }
    }
}

/// The thresholds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusPolicy {
    /// Consecutive successes (passing or warning) needed before one is published.
    pub success_before_passing: u32,
    /// Consecutive failures after which a failure is published as `warning`.
    pub failures_before_warning: u32,
    /// Consecutive failures after which a failure is published as `critical`.
    pub failures_before_critical: u32,
}

impl StatusPolicy {
    /// The policy of a check definition. `failures_before_warning` of 0 means "the same
    /// as `failures_before_critical`", as Consul's `agent.addCheck` defaults it, so an
    /// unset warning threshold never publishes an intermediate warning.
    pub fn from_definition(def: &CheckDefinition) -> StatusPolicy {
        let failures_before_warning = if def.failures_before_warning == 0 {
            def.failures_before_critical
        } else {
            def.failures_before_warning
        };
        StatusPolicy {
            success_before_passing: def.success_before_passing,
            failures_before_warning,
            failures_before_critical: def.failures_before_critical,
        }
    }
}

/// What to publish for a check: its new status and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Status to record.
    pub status: HealthStatus,
    /// Output to record.
    pub output: String,
}

/// Consecutive-success and consecutive-failure counters of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTracker {
    policy: StatusPolicy,
    successes: u32,
    failures: u32,
}

impl StatusTracker {
    /// A tracker whose counters start at their thresholds, as Consul's
    /// `NewStatusHandler` does, so the very first result is published whatever it is:
    /// a freshly registered check must not sit at its initial status for several
    /// intervals.
    pub fn new(policy: StatusPolicy) -> StatusTracker {
        StatusTracker {
            policy,
            successes: policy.success_before_passing,
            failures: policy.failures_before_critical,
        }
    }

    /// The policy this tracker applies.
    pub fn policy(&self) -> StatusPolicy {
        self.policy
    }

    /// Feeds one probe result; returns what to publish, or `None` while the counters
    /// hold the result back.
    ///
    /// Passing and warning both count as successes (Consul publishes a warning
    /// probe's own status once the success threshold is met). A failure is published
    /// as critical from `failures_before_critical` consecutive failures on, else as
    /// warning from `failures_before_warning` on, with the probe's output either way.
    pub fn observe(&mut self, probe: Probe) -> Option<Update> {
        match probe.status {
            HealthStatus::Passing | HealthStatus::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= self.policy.success_before_passing).then_some(Update {
                    status: probe.status,
                    output: probe.output,
                })
            }
            HealthStatus::Critical | HealthStatus::Maintenance => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= self.policy.failures_before_critical {
                    Some(Update {
                        status: HealthStatus::Critical,
                        output: probe.output,
                    })
                } else if self.failures >= self.policy.failures_before_warning {
                    Some(Update {
                        status: HealthStatus::Warning,
                        output: probe.output,
                    })
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Critical, Passing, Warning};

    fn policy(success: u32, warn: u32, crit: u32) -> StatusPolicy {
        StatusPolicy {
            success_before_passing: success,
            failures_before_warning: warn,
            failures_before_critical: crit,
        }
    }

    /// Feeds a sequence of raw statuses and returns what got published (`None` = held).
    fn run(policy: StatusPolicy, seq: &[HealthStatus]) -> Vec<Option<HealthStatus>> {
        let mut t = StatusTracker::new(policy);
        seq.iter()
            .enumerate()
            .map(|(i, s)| {
                t.observe(Probe {
                    status: *s,
                    output: format!("run {i}"),
                })
                .map(|u| {
                    assert_eq!(u.output, format!("run {i}"), "output is the probe's own");
                    u.status
                })
            })
            .collect()
    }

    #[test]
    fn zero_thresholds_publish_everything() {
        assert_eq!(
            run(policy(0, 0, 0), &[Passing, Critical, Warning, Critical]),
            vec![Some(Passing), Some(Critical), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn first_result_is_published_whatever_the_thresholds() {
        assert_eq!(run(policy(3, 3, 3), &[Critical]), vec![Some(Critical)]);
        assert_eq!(run(policy(3, 3, 3), &[Passing]), vec![Some(Passing)]);
    }

    #[test]
    fn success_before_passing_holds_back_recoveries() {
        assert_eq!(
            run(policy(2, 0, 0), &[Critical, Passing, Passing, Passing]),
            vec![Some(Critical), None, Some(Passing), Some(Passing)]
        );
        // A failure resets the success streak.
        assert_eq!(
            run(
                policy(2, 0, 0),
                &[Critical, Passing, Critical, Passing, Passing]
            ),
            vec![Some(Critical), None, Some(Critical), None, Some(Passing)]
        );
    }

    #[test]
    fn warning_counts_as_success_and_keeps_its_status() {
        assert_eq!(
            run(policy(2, 0, 0), &[Critical, Warning, Warning]),
            vec![Some(Critical), None, Some(Warning)]
        );
    }

    #[test]
    fn failures_go_through_warning_then_critical() {
        assert_eq!(
            run(
                policy(0, 1, 3),
                &[Passing, Critical, Critical, Critical, Critical]
            ),
            vec![
                Some(Passing),
                Some(Warning),
                Some(Warning),
                Some(Critical),
                Some(Critical)
            ]
        );
    }

    #[test]
    fn failures_before_critical_alone_holds_failures() {
        let p = StatusPolicy::from_definition(&CheckDefinition {
            failures_before_critical: 2,
            ..Default::default()
        });
        assert_eq!(
            p,
            policy(0, 2, 2),
            "warning threshold defaults to critical's"
        );
        assert_eq!(
            run(p, &[Passing, Critical, Critical, Passing]),
            vec![Some(Passing), None, Some(Critical), Some(Passing)]
        );
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        assert_eq!(
            run(
                policy(0, 2, 2),
                &[Passing, Critical, Passing, Critical, Critical]
            ),
            vec![Some(Passing), None, Some(Passing), None, Some(Critical)]
        );
    }

    #[test]
    fn maintenance_from_a_probe_counts_as_a_failure() {
        let mut t = StatusTracker::new(policy(0, 0, 0));
        let u = t.observe(Probe {
            status: HealthStatus::Maintenance,
            output: String::new(),
        });
        assert_eq!(u.map(|u| u.status), Some(Critical));
    }
}
