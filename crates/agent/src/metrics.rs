//! The agent's gauges for `/v1/agent/metrics`, read when asked: process memory from
//! `/proc/self/statm`, the async runtime's task count, and local state sizes. Names
//! follow Consul's (go-metrics puts the hostname into gauge names).

use crate::agent::Agent;
use tribune_http_api::Gauge;

/// Bytes per page for `/proc/self/statm` (4 KiB on the platforms we build for).
const PAGE_SIZE: f64 = 4096.0;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// `(size, resident)` in bytes.
fn memory() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut parts = statm.split_whitespace().map(|p| p.parse::<f64>().ok());
    let size = parts.next()??;
    let resident = parts.next()??;
    Some((size * PAGE_SIZE, resident * PAGE_SIZE))
}

pub(crate) fn gauges(agent: &Agent) -> Vec<Gauge> {
    let host = hostname();
    let mut out = Vec::new();
    let mut push = |name: String, value: f64| out.push(Gauge { name, value });
    if let Some((size, resident)) = memory() {
        push(format!("consul.{host}.runtime.alloc_bytes"), resident);
        push(format!("consul.{host}.runtime.sys_bytes"), size);
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let m = handle.metrics();
        // Tasks play the role of goroutines.
        push(
            format!("consul.{host}.runtime.num_goroutines"),
            m.num_alive_tasks() as f64,
        );
    }
    let (services, checks, critical) = {
        let local = agent.local.lock();
        let critical = local
            .checks
            .values()
            .filter(|c| c.check.status == tribune_types::HealthStatus::Critical)
            .count();
        (local.services.len(), local.checks.len(), critical)
    };
    push("consul.agent.local.services".into(), services as f64);
    push("consul.agent.local.checks".into(), checks as f64);
    push("consul.agent.local.checks.critical".into(), critical as f64);
    out
}
