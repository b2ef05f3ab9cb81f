//! One run of a check: the async probes, each bounded by the check's timeout and
//! each returning a [`Probe`] (status + Consul's output text), never an error —
//! every failure is a critical result with a message saying what went wrong.
//!
//! | probe | passing | output on success |
//! |---|---|---|
//! | HTTP | 2xx (429 warning) | `HTTP GET <url>: 200 OK Output: <body tail>` |
//! | TCP | connected | `TCP connect <addr>: Success` |
//! | UDP | a reply, or silence until the timeout | `UDP connect <addr>: Success` |
//! | gRPC | `SERVING` | `gRPC check <target>: success` |
//! | H2PING | PING acknowledged | `HTTP2 ping was successful` |
//! | script | exit 0 (1 warning) | the program's combined output |
//!
//! HTTPS, gRPC with `grpc_use_tls` and H2PING with `h2ping_use_tls` go over TLS
//! with the check's `tls_skip_verify` and `tls_server_name`, and with the agent's
//! own CAs and certificate when it lends them ([`AgentTls`]; module `tls`).
//!
//! Docker and OS-service checks need clients this build does not have and always
//! report critical with a message saying so.

mod grpc;
mod h2ping;
mod http;
mod script;
mod tcp;
mod tls;
mod udp;

pub use grpc::{HealthCheckRequest, HealthCheckResponse, ServingStatus, HEALTH_CHECK_PATH};
pub use tls::{AgentTls, AgentTlsError, AgentTlsFiles};

use crate::plan::ProbeSpec;
use crate::status::Probe;
use std::sync::Arc;
use std::time::Duration;

/// Runs one probe. `timeout` bounds the whole run (for scripts: the process is
/// killed when it expires); `output_max_size` bounds the captured output. TLS
/// checks verify against the system's trust store ([`run_with`] lends them the
/// agent's TLS).
///
/// Each call readies the probe afresh; the runner keeps a [`Prober`] per check
/// instead.
pub async fn run(spec: &ProbeSpec, timeout: Duration, output_max_size: usize) -> Probe {
    run_with(spec, None, timeout, output_max_size).await
}

/// [`run`], with the agent's TLS for TLS checks when `agent_tls` is given
/// (`enable_agent_tls_for_checks`).
pub async fn run_with(
    spec: &ProbeSpec,
    agent_tls: Option<&Arc<AgentTls>>,
    timeout: Duration,
    output_max_size: usize,
) -> Probe {
    let agent = agent_tls.map(|a| &**a);
    match spec {
        ProbeSpec::Http(h) => {
            http::Check::new(h.clone(), agent_tls.cloned())
                .run(timeout, output_max_size)
                .await
        }
        ProbeSpec::Tcp { addr } => tcp::probe(addr, timeout).await,
        ProbeSpec::Udp { addr } => udp::probe(addr, timeout).await,
        ProbeSpec::Grpc {
            target,
            use_tls,
            tls,
        } => grpc::probe(target, use_tls.then_some(tls), agent, timeout).await,
        ProbeSpec::H2Ping { addr, use_tls, tls } => {
            h2ping::probe(addr, use_tls.then_some(tls), agent, timeout).await
        }
        ProbeSpec::Script { args } => script::probe(args, timeout, output_max_size).await,
        ProbeSpec::Docker { container_id } => Probe::critical(format!(
            "Docker checks are not supported by this agent: it has no Docker client to run the script in container {container_id}"
        )),
        ProbeSpec::OsService { name } => Probe::critical(format!(
            "OS service checks are not supported by this agent: cannot query the state of service \"{name}\""
        )),
    }
}

/// One check's probe, readied once for all its runs: an HTTP check's request is
/// parsed and built here rather than on every run (module `http`). Other probes
/// have nothing worth keeping and run from their spec.
#[derive(Debug)]
pub(crate) enum Prober {
    /// Boxed: a readied request is several times the size of any other spec.
    Http(Box<http::Check>),
    Other {
        spec: ProbeSpec,
        agent_tls: Option<Arc<AgentTls>>,
    },
}

impl Prober {
    /// `agent_tls`: the agent's TLS for TLS checks, when it lends it.
    pub(crate) fn new(spec: &ProbeSpec, agent_tls: Option<Arc<AgentTls>>) -> Prober {
        match spec {
            ProbeSpec::Http(h) => Prober::Http(Box::new(http::Check::new(h.clone(), agent_tls))),
            other => Prober::Other {
                spec: other.clone(),
                agent_tls,
            },
        }
    }

    /// One run, as [`run_with`].
    pub(crate) async fn run(&self, timeout: Duration, output_max_size: usize) -> Probe {
        match self {
            Prober::Http(check) => check.run(timeout, output_max_size).await,
            Prober::Other { spec, agent_tls } => {
                run_with(spec, agent_tls.as_ref(), timeout, output_max_size).await
            }
        }
    }
}

/// An error and its sources, joined with `: ` (Go's wrapped-error style), skipping
/// a source whose text the previous level already included.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}
