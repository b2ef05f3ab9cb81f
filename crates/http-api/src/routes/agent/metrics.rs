//! `GET /v1/agent/metrics`: the agent's gauges in Consul's JSON shape, or in the
//! Prometheus text format with `?format=prometheus` (or an OpenMetrics `Accept`).

use super::AppState;
use crate::error::ApiError;
use crate::params::Params;
use crate::reply;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// go-metrics' interval timestamp, `2006-01-02 15:04:05 +0000 UTC`, to the second.
fn timestamp() -> String {
    let t = tribune_types::utc::UtcDateTime::now();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Prometheus names: dots become underscores; the hostname segment go-metrics puts in
/// runtime gauge names (`consul.<host>.runtime.*`) is dropped, as Consul's Prometheus
/// sink does.
fn prometheus_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let parts: Vec<&str> = if parts.len() > 3 && parts[0] == "consul" && parts[2] == "runtime" {
        std::iter::once(parts[0])
            .chain(parts[2..].iter().copied())
            .collect()
    } else {
        parts
    };
    parts.join("_").replace('-', "_")
}

pub(super) async fn render(
    State(st): State<AppState>,
    p: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let gauges = st.backend.gauges();
    let wants_prometheus = p.get("format") == Some("prometheus")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_prometheus {
        let mut body = String::new();
        for g in &gauges {
            let name = prometheus_name(&g.name);
            body.push_str(&format!("# TYPE {name} gauge\n{name} {}\n", g.value));
        }
        let mut resp = body.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(resp);
    }
    let body = json!({
        "Timestamp": timestamp(),
        "Gauges": gauges.iter().map(|g| json!({"Name": g.name, "Value": g.value, "Labels": {}})).collect::<Vec<_>>(),
        "Points": [],
        "Counters": [],
        "Samples": [],
    });
    Ok(reply::json(&body, p.pretty()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape_and_prometheus_names() {
        let t = super::timestamp();
        assert_eq!(t.len(), "2006-01-02 15:04:05 +0000 UTC".len(), "{t}");
        assert!(t.ends_with(" +0000 UTC"));
        assert_eq!(
            super::prometheus_name("consul.myhost.runtime.alloc_bytes"),
            "consul_runtime_alloc_bytes"
        );
    }
}
