//! The results table, the target ratios, and the JSON record of a run.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::driver::Measured;

/// One measured workload.
pub struct Row {
    /// `disk`, `tribune`, `etcd`, `etcd-gw`, `hyper`.
    pub system: &'static str,
    /// Stable identifier used to find the row for the ratios.
    pub id: &'static str,
    /// Human description.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// What was measured.
    pub m: Measured,
}

fn opt(v: Option<f64>, scale: f64, prec: usize) -> String {
    v.map(|x| format!("{:.*}", prec, x * scale))
        .unwrap_or_else(|| "-".into())
}

/// The table, as Markdown (it reads fine in a terminal and pastes into BENCHMARKS.md).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| system | workload | clients | ops/s | p50 ms | p99 ms | errors | server CPU | hottest server thread | client CPU | machine busy | disk writes/s |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in rows {
        let u = &r.m.usage;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.0} |",
            r.system,
            r.workload,
            r.clients,
            r.m.ops_per_sec(),
            r.m.p50_us / 1e3,
            r.m.p99_us / 1e3,
            r.m.errors,
            opt(u.server_cores, 1.0, 2),
            u.hottest_thread
                .as_ref()
                .map(|(name, c)| format!("{} {c:.2}", short_thread(name)))
                .unwrap_or_else(|| "-".into()),
            opt(u.client_cores, 1.0, 2),
            opt(u.machine_busy, 100.0, 0) + "%",
            u.disk_writes_per_sec,
        );
    }
    out
}

/// Thread names without per-instance numeric suffixes (`raft-1776631004` → `raft`).
fn short_thread(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    }
}

fn find<'a>(rows: &'a [Row], id: &str) -> Option<&'a Measured> {
    rows.iter().find(|r| r.id == id).map(|r| &r.m)
}

/// One target: a measured ratio against its threshold.
struct Target {
    name: &'static str,
    ratio: Option<f64>,
    want: &'static str,
    met: Option<bool>,
}

fn targets(rows: &[Row]) -> Vec<Target> {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    };
    let p50 = |id| find(rows, id).map(|m| m.p50_us);
    let tput = |id| find(rows, id).map(|m| m.ops_per_sec());
    let put1 = ratio(p50("tribune-put-1"), p50("fsync-append"));
    let put64 = ratio(tput("tribune-put-n"), tput("etcd-put-n"));
    let put64_gw = ratio(tput("tribune-put-n"), tput("etcd-gw-put-n"));
    let stale = ratio(tput("tribune-get-stale"), tput("hyper-get"));
    vec![
        Target {
            name: "Tribune 1-client PUT p50 / one raw fdatasync (append) p50",
            ratio: put1,
            want: "<= 1.2",
            met: put1.map(|r| r <= 1.2),
        },
        Target {
            name: "Tribune 64-client PUT ops/s / etcd 64-client Put ops/s (gRPC)",
            ratio: put64,
            want: ">= 2.0",
            met: put64.map(|r| r >= 2.0),
        },
        Target {
            name: "  (for reference: / etcd via its JSON gateway)",
            ratio: put64_gw,
            want: "",
            met: None,
        },
        Target {
            name: "Tribune 64-client GET ?stale ops/s / bare hyper ops/s",
            ratio: stale,
            want: ">= 0.7",
            met: stale.map(|r| r >= 0.7),
        },
    ]
}

/// The ratios the performance targets are stated in, with met / not met.
pub fn ratios(rows: &[Row]) -> String {
    let mut out = String::new();
    for t in targets(rows) {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        let _ = writeln!(
            out,
            "{:<64} {:>7} {:>7}  {}",
            t.name,
            t.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            t.want,
            verdict
        );
    }
    // How well writes were batched: requests per block-device write (each synced
    // batch is at least one device write, so this bounds the batch size from below).
    for (id, label) in [("tribune-put-n", "Tribune"), ("etcd-put-n", "etcd (gRPC)")] {
        if let Some(m) = find(rows, id) {
            if m.usage.disk_writes_per_sec > 0.0 {
                let _ = writeln!(
                    out,
                    "{label}: {:.1} PUTs per disk write request at {} clients",
                    m.ops_per_sec() / m.usage.disk_writes_per_sec,
                    rows.iter().find(|r| r.id == id).map_or(0, |r| r.clients)
                );
            }
        }
    }
    out
}

/// Everything, as JSON (for `--json`).
pub fn to_json(rows: &[Row], meta: Value) -> Value {
    let targets: Vec<Value> = targets(rows)
        .into_iter()
        .map(|t| json!({"name": t.name.trim(), "ratio": t.ratio, "want": t.want, "met": t.met}))
        .collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let u = &r.m.usage;
            json!({
                "system": r.system,
                "id": r.id,
                "workload": r.workload,
                "clients": r.clients,
                "ops": r.m.ops,
                "secs": r.m.secs,
                "ops_per_sec": r.m.ops_per_sec(),
                "p50_us": r.m.p50_us,
                "p99_us": r.m.p99_us,
                "errors": r.m.errors,
                "first_error": r.m.first_error,
                "server_cores": u.server_cores,
                "client_cores": u.client_cores,
                "hottest_server_thread": u.hottest_thread.as_ref().map(|(n, c)| json!({"name": n, "cores": c})),
                "machine_busy": u.machine_busy,
                "disk_writes_per_sec": u.disk_writes_per_sec,
                "disk_flushes_per_sec": u.disk_flushes_per_sec,
            })
        })
        .collect();
    json!({ "meta": meta, "rows": rows, "targets": targets })
}
