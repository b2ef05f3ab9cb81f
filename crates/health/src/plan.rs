//! From a [`CheckDefinition`] to a [`Plan`]: which probe to run, how often, with
//! which timeout, thresholds and output limit. Pure: validation and Consul's defaults
//! live here, so the runner only executes.
//!
//! Defaults, from `agent/agent.go` `addCheck` and `agent/checks/*.go`:
//! - the interval is raised to `min_interval` (Consul's `checks.MinInterval`, 1 s)
//!   with a warning, because a sub-second script interval can fork-bomb a host;
//! - the timeout is the check's own when positive, else 30 s for scripts (and OS
//!   services) and 10 s for every network probe;
//! - the output limit is [`effective_max_size`];
//! - `failures_before_warning` of 0 follows `failures_before_critical`.

use crate::output::effective_max_size;
use crate::status::StatusPolicy;
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_types::model::CheckDefinition;
use tribune_types::CheckId;

/// Consul's `checks.MinInterval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of network probes (HTTP, TCP, UDP, gRPC, H2PING) without one of their own.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of script and OS-service checks without one of their own.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Agent-wide settings that shape every plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Whether script (`args`) and Docker checks may run. The agent decides the
    /// local-versus-remote distinction of `enable_local_script_checks` before calling
    /// the runner, because only it knows where a definition came from.
    pub enable_script_checks: bool,
    /// The agent's `check_output_max_size` (0 = 4096).
    pub check_output_max_size: usize,
    /// Shortest interval; shorter ones are raised to it. Consul's is 1 s; tests lower it.
    pub min_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            enable_script_checks: false,
            check_output_max_size: crate::output::DEFAULT_OUTPUT_MAX_SIZE,
            min_interval: MIN_INTERVAL,
        }
    }
}

/// An HTTP check's request. The default is an empty GET with no headers, following
/// redirects and verifying certificates, to fill in with at least `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpSpec {
    /// The URL as registered (also echoed in the output).
    pub url: String,
    /// Method; empty means `GET`.
    pub method: String,
    /// Request headers, several values per name allowed.
    pub header: BTreeMap<String, Vec<String>>,
    /// Request body (sent when non-empty).
    pub body: String,
    /// Return a 3xx response as is instead of following it.
    pub disable_redirects: bool,
    /// For `https://`: the name sent in SNI and the server's certificate must match
    /// instead of the URL's host (empty: the host); `Host` stays the URL's.
    pub tls_server_name: String,
    /// For `https://`: accept any certificate.
    pub tls_skip_verify: bool,
}

/// The TLS settings of a gRPC or H2PING check (Consul's `TLSServerName`,
/// `TLSSkipVerify`; only used when the check's `*_use_tls` is set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSpec {
    /// The name sent and verified instead of the target's host (empty: the host).
    pub server_name: String,
    /// Accept any certificate.
    pub skip_verify: bool,
}

/// What one run of a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSpec {
    /// An HTTP request: 2xx passing, 429 warning, anything else critical.
    Http(HttpSpec),
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// An empty UDP datagram to `host:port`; only an error (ICMP unreachable) fails.
    Udp {
        /// `host:port`.
        addr: String,
    },
    /// `grpc.health.v1.Health/Check` against `host:port[/service]`.
    Grpc {
        /// `host:port[/service]` as registered.
        target: String,
        /// `grpc_use_tls`.
        use_tls: bool,
        /// Certificate checks when `use_tls`.
        tls: TlsSpec,
    },
    /// An HTTP/2 PING to `host:port`, over TLS (offering `h2`) or over a
    /// prior-knowledge cleartext connection.
    H2Ping {
        /// `host:port`.
        addr: String,
        /// `h2ping_use_tls`.
        use_tls: bool,
        /// Certificate checks when `use_tls`.
        tls: TlsSpec,
    },
    /// A program run without a shell: exit 0 passing, 1 warning, else critical.
    Script {
        /// Program and arguments.
        args: Vec<String>,
    },
    /// A script inside a Docker container (always critical here: no Docker client).
    Docker {
        /// Container ID.
        container_id: String,
    },
    /// An OS service's state (always critical here: no systemd/SCM client).
    OsService {
        /// Service name.
        name: String,
    },
}

/// Everything the runner needs to run one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The check.
    pub id: CheckId,
    /// What each run does.
    pub probe: ProbeSpec,
    /// Time between run starts (already raised to the minimum).
    pub interval: Duration,
    /// Bound on one run.
    pub timeout: Duration,
    /// Thresholds.
    pub policy: StatusPolicy,
    /// Output limit in bytes.
    pub output_max_size: usize,
}

/// Why a definition cannot be run by the check runner. Messages are Consul's where
/// it has one, so the HTTP rim can return them as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A script or Docker check while script checks are disabled.
    #[error("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true")]
    ScriptsDisabled {
        /// The check.
        id: CheckId,
    },
    /// A TTL or alias check: the agent runs those itself.
    #[error("check {id:?} is a {kind} check, which the agent tracks itself, not the check runner")]
    NotActive {
        /// The check.
        id: CheckId,
        /// `ttl` or `alias`.
        kind: &'static str,
    },
    /// No type field set.
    #[error("Check type is not valid")]
    NoType {
        /// The check.
        id: CheckId,
    },
    /// An active check without a positive interval.
    #[error("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")]
    MissingInterval {
        /// The check.
        id: CheckId,
    },
    /// `failures_before_warning` above `failures_before_critical`.
    #[error("FailuresBeforeWarning can't be higher than FailuresBeforeCritical")]
    WarningAboveCritical {
        /// The check.
        id: CheckId,
    },
}

impl Plan {
    /// Plans a definition, or says why the runner cannot run it.
    pub fn from_definition(def: &CheckDefinition, limits: &Limits) -> Result<Plan, PlanError> {
        let id = def.id.clone();
        let kind = def.check_type();
        let (probe, default_timeout) = match kind {
            "ttl" | "alias" => return Err(PlanError::NotActive { id, kind }),
            "" => return Err(PlanError::NoType { id }),
            "http" => (
                ProbeSpec::Http(HttpSpec {
                    url: def.http.clone(),
                    method: def.method.clone(),
                    header: def.header.clone(),
                    body: def.body.clone(),
                    disable_redirects: def.disable_redirects,
                    tls_server_name: def.tls_server_name.clone(),
                    tls_skip_verify: def.tls_skip_verify,
                }),
                DEFAULT_NETWORK_TIMEOUT,
            ),
            "tcp" => (
                ProbeSpec::Tcp {
                    addr: def.tcp.clone(),
                },
                DEFAULT_NETWORK_TIMEOUT,
            ),
            "udp" => (
                ProbeSpec::Udp {
                    addr: def.udp.clone(),
                },
                DEFAULT_NETWORK_TIMEOUT,
            ),
            "grpc" => (
                ProbeSpec::Grpc {
                    target: def.grpc.clone(),
                    use_tls: def.grpc_use_tls,
                    tls: tls_spec(def),
                },
                DEFAULT_NETWORK_TIMEOUT,
            ),
            "h2ping" => (
                ProbeSpec::H2Ping {
                    addr: def.h2ping.clone(),
                    use_tls: def.h2ping_use_tls,
                    tls: tls_spec(def),
                },
                DEFAULT_NETWORK_TIMEOUT,
            ),
            "docker" => (
                ProbeSpec::Docker {
                    container_id: def.docker_container_id.clone(),
                },
                // Consul's Docker check has no timeout at all; ours answers at once.
                DEFAULT_SCRIPT_TIMEOUT,
            ),
            "script" => (
                ProbeSpec::Script {
                    args: def.args.clone(),
                },
                DEFAULT_SCRIPT_TIMEOUT,
            ),
            "os_service" => (
                ProbeSpec::OsService {
                    name: def.os_service.clone(),
                },
                DEFAULT_SCRIPT_TIMEOUT,
            ),
            _ => return Err(PlanError::NoType { id }),
        };
        // Consul's `IsScript` is "has args", and a Docker check has args too.
        let is_script = !def.args.is_empty();
        if is_script && !limits.enable_script_checks {
            return Err(PlanError::ScriptsDisabled { id });
        }
        let interval = match def.interval {
            Some(i) if !i.is_zero() => i,
            _ => return Err(PlanError::MissingInterval { id }),
        };
        if def.failures_before_warning > def.failures_before_critical {
            return Err(PlanError::WarningAboveCritical { id });
        }
        let interval = if interval < limits.min_interval {
            tracing::warn!(
                check = %id,
                minimum_interval = ?limits.min_interval,
                "check has interval below minimum"
            );
            limits.min_interval
        } else {
            interval
        };
        let timeout = match def.timeout {
            Some(t) if !t.is_zero() => t,
            _ => default_timeout,
        };
        Ok(Plan {
            id,
            probe,
            interval,
            timeout,
            policy: StatusPolicy::from_definition(def),
            output_max_size: effective_max_size(limits.check_output_max_size, def.output_max_size),
        })
    }
}

fn tls_spec(def: &CheckDefinition) -> TlsSpec {
    TlsSpec {
        server_name: def.tls_server_name.clone(),
        skip_verify: def.tls_skip_verify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    fn http(url: &str) -> CheckDefinition {
        CheckDefinition {
            id: "web".into(),
            http: url.into(),
            interval: secs(10),
            ..Default::default()
        }
    }

    #[test]
    fn http_defaults() {
        let plan = Plan::from_definition(&http("http://x/health"), &Limits::default()).unwrap();
        assert_eq!(plan.timeout, DEFAULT_NETWORK_TIMEOUT);
        assert_eq!(plan.interval, Duration::from_secs(10));
        assert_eq!(plan.output_max_size, 4096);
        assert!(matches!(plan.probe, ProbeSpec::Http(ref h) if h.url == "http://x/health"));
    }

    #[test]
    fn tls_settings_reach_grpc_and_h2ping() {
        let def = CheckDefinition {
            id: "g".into(),
            grpc: "127.0.0.1:1/svc".into(),
            grpc_use_tls: true,
            tls_server_name: "svc.internal".into(),
            tls_skip_verify: true,
            interval: secs(10),
            ..Default::default()
        };
        let tls = TlsSpec {
            server_name: "svc.internal".into(),
            skip_verify: true,
        };
        let plan = Plan::from_definition(&def, &Limits::default()).unwrap();
        assert_eq!(
            plan.probe,
            ProbeSpec::Grpc {
                target: "127.0.0.1:1/svc".into(),
                use_tls: true,
                tls: tls.clone(),
            }
        );
        let def = CheckDefinition {
            id: "h".into(),
            h2ping: "127.0.0.1:1".into(),
            h2ping_use_tls: true,
            grpc: String::new(),
            ..def
        };
        let plan = Plan::from_definition(&def, &Limits::default()).unwrap();
        assert_eq!(
            plan.probe,
            ProbeSpec::H2Ping {
                addr: "127.0.0.1:1".into(),
                use_tls: true,
                tls,
            }
        );
    }

    #[test]
    fn script_defaults_and_switch() {
        let def = CheckDefinition {
            id: "s".into(),
            args: vec!["true".into()],
            interval: secs(5),
            output_max_size: 100,
            ..Default::default()
        };
        let err = Plan::from_definition(&def, &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"
        );
        let limits = Limits {
            enable_script_checks: true,
            ..Limits::default()
        };
        let plan = Plan::from_definition(&def, &limits).unwrap();
        assert_eq!(plan.timeout, DEFAULT_SCRIPT_TIMEOUT);
        assert_eq!(plan.output_max_size, 100);
    }

    #[test]
    fn docker_checks_are_scripts_too() {
        let def = CheckDefinition {
            id: "d".into(),
            docker_container_id: "abc".into(),
            args: vec!["true".into()],
            interval: secs(5),
            ..Default::default()
        };
        assert!(matches!(
            Plan::from_definition(&def, &Limits::default()),
            Err(PlanError::ScriptsDisabled { .. })
        ));
    }

    #[test]
    fn ttl_and_alias_are_not_active() {
        let ttl = CheckDefinition {
            id: "t".into(),
            ttl: secs(30),
            ..Default::default()
        };
        assert!(matches!(
            Plan::from_definition(&ttl, &Limits::default()),
            Err(PlanError::NotActive { kind: "ttl", .. })
        ));
        let alias = CheckDefinition {
            id: "a".into(),
            alias_service: "web".into(),
            ..Default::default()
        };
        assert!(matches!(
            Plan::from_definition(&alias, &Limits::default()),
            Err(PlanError::NotActive { kind: "alias", .. })
        ));
        assert!(matches!(
            Plan::from_definition(&CheckDefinition::default(), &Limits::default()),
            Err(PlanError::NoType { .. })
        ));
    }

    #[test]
    fn interval_is_required_and_raised_to_the_minimum() {
        let mut def = http("http://x/");
        def.interval = None;
        assert!(matches!(
            Plan::from_definition(&def, &Limits::default()),
            Err(PlanError::MissingInterval { .. })
        ));
        def.interval = Some(Duration::ZERO);
        assert!(matches!(
            Plan::from_definition(&def, &Limits::default()),
            Err(PlanError::MissingInterval { .. })
        ));
        def.interval = Some(Duration::from_millis(100));
        let plan = Plan::from_definition(&def, &Limits::default()).unwrap();
        assert_eq!(plan.interval, MIN_INTERVAL);
    }

    #[test]
    fn own_timeout_and_thresholds() {
        let mut def = http("http://x/");
        def.timeout = Some(Duration::from_millis(1500));
        def.failures_before_critical = 3;
        def.success_before_passing = 2;
        let plan = Plan::from_definition(&def, &Limits::default()).unwrap();
        assert_eq!(plan.timeout, Duration::from_millis(1500));
        assert_eq!(
            plan.policy,
            StatusPolicy {
                success_before_passing: 2,
                failures_before_warning: 3,
                failures_before_critical: 3,
            }
        );
        def.failures_before_warning = 4;
        assert!(matches!(
            Plan::from_definition(&def, &Limits::default()),
            Err(PlanError::WarningAboveCritical { .. })
        ));
    }
}
