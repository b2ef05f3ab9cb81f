//! `GET /v1/agent/monitor?loglevel=info[&logjson]`: streams the agent's log lines at
//! or above the requested level until the client disconnects.

use super::AppState;
use crate::error::ApiError;
use crate::params::Params;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

/// Consul's level names (hclog), with `err` for error and `warning` for warn.
fn level(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Some(0),
        "debug" => Some(1),
        "" | "info" => Some(2),
        "warn" | "warning" => Some(3),
        "err" | "error" => Some(4),
        _ => None,
    }
}

pub(super) async fn stream(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let name = p.get("loglevel").unwrap_or("info");
    let Some(min) = level(name) else {
        return Err(ApiError::bad(format!("Unknown log level: {name}")));
    };
    let json = p.has("logjson");
    let rx = st.backend.monitor();
    let lines = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) if line.level >= min => {
                    let mut out = if json {
                        line.json.clone()
                    } else {
                        line.text.clone()
                    };
                    out.push('\n');
                    return Some((Ok::<_, std::convert::Infallible>(out), rx));
                }
                Ok(_) => {}
                // A slow reader misses lines rather than holding the agent back,
                // as Consul's monitor drops logs when its buffer is full.
                Err(RecvError::Lagged(n)) => {
                    let note = format!("[WARN] monitor: dropped {n} log lines\n");
                    return Some((Ok(note), rx));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(crate::reply::text(StatusCode::OK, Body::from_stream(lines)))
}
