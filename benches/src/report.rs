//! The results table, the KV benchmark's target ratios, and the JSON record of a
//! run. The table, the per-row JSON and the target line ([`TargetLine`]) serve
//! every benchmark; which targets there are is each benchmark's own.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::driver::{disturbed, Measured};

/// One measured workload.
pub struct Row {
    /// `disk`, `tribune`, `etcd`, `etcd-gw`, `hyper`.
    pub system: &'static str,
    /// Stable identifier used to find the row for the ratios.
    pub id: String,
    /// Human description.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// What was measured.
    pub m: Measured,
}

/// One interleaved round of the GET comparison.
pub struct Round {
    /// Tribune, 64-client GET ?stale.
    pub tribune: Measured,
    /// Bare hyper hello world, same clients.
    pub hyper: Measured,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.tribune.ops_per_sec() / self.hyper.ops_per_sec()
    }
}

/// The median of the finite values, if any.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Server CPU per request, in microseconds.
pub fn server_us_per_op(m: &Measured) -> Option<f64> {
    let ops = m.ops_per_sec();
    m.usage
        .server_cores
        .filter(|_| ops > 0.0)
        .map(|c| c / ops * 1e6)
}

fn opt(v: Option<f64>, scale: f64, prec: usize) -> String {
    v.map(|x| format!("{:.*}", prec, x * scale))
        .unwrap_or_else(|| "-".into())
}

/// The table, as Markdown (it reads fine in a terminal and pastes into BENCHMARKS.md).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| system | workload | clients | ops/s | p50 ms | p99 ms | errors | server CPU | server µs/op | hottest server thread | client CPU | other CPU | disk writes/s |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|\n");
    for r in rows {
        let u = &r.m.usage;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.system,
            r.workload,
            r.clients,
            r.m.ops_per_sec(),
            // No samples (a row that only measures CPU) has no latency.
            opt(Some(r.m.p50_us).filter(|v| v.is_finite()), 1e-3, 3),
            opt(Some(r.m.p99_us).filter(|v| v.is_finite()), 1e-3, 3),
            r.m.errors,
            opt(u.server_cores, 1.0, 2),
            opt(server_us_per_op(&r.m), 1.0, 0),
            u.hottest_thread
                .as_ref()
                .map(|(name, c)| format!("{} {c:.2}", short_thread(name)))
                .unwrap_or_else(|| "-".into()),
            opt(u.client_cores, 1.0, 2),
            opt(u.other_cores, 1.0, 2),
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
    /// Some input was measured while other processes took CPU: the verdict
    /// is not to be trusted.
    disturbed: bool,
}

fn targets(rows: &[Row], rounds: &[Round]) -> Vec<Target> {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    };
    let p50 = |id| find(rows, id).map(|m| m.p50_us);
    let tput = |id| find(rows, id).map(|m| m.ops_per_sec());
    let shaky = |ids: &[&str]| ids.iter().any(|id| find(rows, id).is_some_and(disturbed));
    let rounds_shaky = rounds
        .iter()
        .any(|r| disturbed(&r.tribune) || disturbed(&r.hyper));
    let put1 = ratio(p50("tribune-put-1"), p50("fsync-append"));
    let put1_http = ratio(p50("hyper-put-fsync"), p50("fsync-append"));
    let put1_floor = ratio(p50("tribune-put-1"), p50("hyper-put-fsync"));
    let put64 = ratio(tput("tribune-put-n"), tput("etcd-put-n"));
    let put64_gw = ratio(tput("tribune-put-n"), tput("etcd-gw-put-n"));
    let stale_single = ratio(tput("tribune-get-stale"), tput("hyper-get"));
    let stale_rounds = median(rounds.iter().map(Round::ratio).collect());
    // Per request of server CPU, independent of how the two cores were shared
    // with the client: hyper's µs/op over Tribune's.
    let cpu = |id| find(rows, id).and_then(server_us_per_op);
    let stale_cpu = ratio(cpu("hyper-get"), cpu("tribune-get-stale"));
    let mut out = vec![
        Target {
            name: "Tribune 1-client PUT p50 / one raw fdatasync (append) p50",
            ratio: put1,
            want: "<= 1.2",
            met: put1.map(|r| r <= 1.2),
            disturbed: shaky(&["tribune-put-1", "fsync-append"]),
        },
        Target {
            name: "  for reference: bare hyper PUT + fdatasync p50 / raw fdatasync p50",
            ratio: put1_http,
            want: "",
            met: None,
            disturbed: shaky(&["hyper-put-fsync", "fsync-append"]),
        },
        Target {
            name: "  for reference: Tribune 1-client PUT p50 / bare hyper PUT + fdatasync p50",
            ratio: put1_floor,
            want: "",
            met: None,
            disturbed: shaky(&["tribune-put-1", "hyper-put-fsync"]),
        },
        Target {
            name: "Tribune 64-client PUT ops/s / etcd 64-client Put ops/s (gRPC)",
            ratio: put64,
            want: ">= 2.0",
            met: put64.map(|r| r >= 2.0),
            disturbed: shaky(&["tribune-put-n", "etcd-put-n"]),
        },
        Target {
            name: "  for reference: / etcd via its JSON gateway",
            ratio: put64_gw,
            want: "",
            met: None,
            disturbed: shaky(&["tribune-put-n", "etcd-gw-put-n"]),
        },
    ];
    if rounds.is_empty() {
        out.push(Target {
            name: "Tribune 64-client GET ?stale ops/s / bare hyper ops/s",
            ratio: stale_single,
            want: ">= 0.7",
            met: stale_single.map(|r| r >= 0.7),
            disturbed: shaky(&["tribune-get-stale", "hyper-get"]),
        });
    } else {
        out.push(Target {
            name: "Tribune 64-client GET ?stale / bare hyper ops/s (median round)",
            ratio: stale_rounds,
            want: ">= 0.7",
            met: stale_rounds.map(|r| r >= 0.7),
            disturbed: rounds_shaky,
        });
        out.push(Target {
            name: "  for reference: the same from the table rows",
            ratio: stale_single,
            want: "",
            met: None,
            disturbed: shaky(&["tribune-get-stale", "hyper-get"]),
        });
    }
    out.push(Target {
        name: "  for reference: by server CPU per request (hyper / Tribune)",
        ratio: stale_cpu,
        want: "",
        met: None,
        disturbed: shaky(&["tribune-get-stale", "hyper-get"]),
    });
    out
}

/// The ratios the performance targets are stated in, with met / not met.
pub fn ratios(rows: &[Row], rounds: &[Round]) -> String {
    let mut out = String::new();
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "GET round {}: Tribune ?stale {:.0} ops/s ({} µs server CPU/op), bare hyper {:.0} ops/s ({} µs/op): {:.2}x",
            i + 1,
            r.tribune.ops_per_sec(),
            opt(server_us_per_op(&r.tribune), 1.0, 0),
            r.hyper.ops_per_sec(),
            opt(server_us_per_op(&r.hyper), 1.0, 0),
            r.ratio()
        );
    }
    for t in targets(rows, rounds) {
        let verdict = match (t.met, t.disturbed) {
            (Some(true), false) => "met",
            (Some(false), false) => "NOT met",
            (Some(_), true) => "(disturbed: no verdict)",
            (None, true) => "(disturbed)",
            (None, false) => "",
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

/// One target and its verdict, as the `locks` and `dns` benchmarks print them:
/// a measured figure against a goal, or a reference line under a target.
pub struct TargetLine {
    /// What is measured (indented two spaces for a reference line).
    pub name: String,
    /// The figure, in `unit`.
    pub measured: Option<f64>,
    /// `ms`, `cores`, `x` (a ratio), ...
    pub unit: &'static str,
    /// The goal, as printed (`< 5.125 ms`, `>= 1.0`).
    pub goal: String,
    /// Whether the goal is met; `None` when not measured.
    pub met: Option<bool>,
    /// Some input was measured while other processes took CPU: no verdict.
    pub disturbed: bool,
    /// A reference line under a target, with no verdict of its own.
    pub reference: bool,
}

impl TargetLine {
    /// A target met when `measured` is below `limit`.
    pub fn below(name: &str, measured: f64, unit: &'static str, limit: f64, goal: String) -> Self {
        TargetLine {
            name: name.into(),
            measured: Some(measured),
            unit,
            goal,
            met: Some(measured < limit),
            disturbed: false,
            reference: false,
        }
    }

    /// A figure printed under a target, with no verdict of its own.
    pub fn reference(name: &str, measured: Option<f64>, unit: &'static str) -> Self {
        TargetLine {
            name: name.into(),
            measured,
            unit,
            goal: String::new(),
            met: None,
            disturbed: false,
            reference: true,
        }
    }

    /// `met`, `NOT met`, or why there is no verdict.
    pub fn verdict(&self) -> &'static str {
        match (self.met, self.disturbed) {
            _ if self.reference => "",
            (Some(true), false) => "met",
            (Some(false), false) => "NOT met",
            (Some(_), true) => "(disturbed: no verdict)",
            (None, _) => "(not measured)",
        }
    }

    /// One line of the printed report.
    pub fn line(&self) -> String {
        format!(
            "{:<66} {:>10} {:<28} {}",
            self.name,
            self.measured
                .map_or_else(|| "-".into(), |v| format!("{v:.3} {}", self.unit)),
            self.goal,
            self.verdict()
        )
    }

    /// The JSON record.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name.trim(),
            "measured": self.measured,
            "unit": self.unit,
            "goal": self.goal,
            "met": if self.reference { None } else { self.met },
            "disturbed": self.disturbed,
        })
    }
}

/// Everything, as JSON (for `--json`).
pub fn to_json(rows: &[Row], rounds: &[Round], meta: Value) -> Value {
    let targets: Vec<Value> = targets(rows, rounds)
        .into_iter()
        .map(|t| json!({"name": t.name.trim(), "ratio": t.ratio, "want": t.want, "met": t.met, "disturbed": t.disturbed}))
        .collect();
    let rows = rows_json(rows);
    let rounds: Vec<Value> = rounds
        .iter()
        .map(|r| {
            json!({
                "tribune_stale_ops_per_sec": r.tribune.ops_per_sec(),
                "tribune_server_us_per_op": server_us_per_op(&r.tribune),
                "hyper_ops_per_sec": r.hyper.ops_per_sec(),
                "hyper_server_us_per_op": server_us_per_op(&r.hyper),
                "ratio": r.ratio(),
            })
        })
        .collect();
    json!({ "meta": meta, "rows": rows, "get_rounds": rounds, "targets": targets })
}

/// The rows, as JSON.
pub fn rows_json(rows: &[Row]) -> Vec<Value> {
    rows.iter()
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
                "server_us_per_op": server_us_per_op(&r.m),
                "client_cores": u.client_cores,
                "hottest_server_thread": u.hottest_thread.as_ref().map(|(n, c)| json!({"name": n, "cores": c})),
                "machine_busy": u.machine_busy,
                "other_cores": u.other_cores,
                "disk_writes_per_sec": u.disk_writes_per_sec,
                "disk_flushes_per_sec": u.disk_flushes_per_sec,
            })
        })
        .collect()
}
