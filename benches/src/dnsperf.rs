//! dnsperf (Debian's, 2.10) as the DNS load generator, one run at a time.
//!
//! dnsperf prints its own queries per second, but only the average, minimum and
//! maximum latency; this version has no latency histogram. So every run is
//! verbose (`-v`): one line per answered query with its latency, written to a
//! file (parsing a pipe live would put our own process on the server's core)
//! and read back for the percentiles. The file is deleted right after, before
//! the kernel writes it back to the disk.
//!
//! dnsperf runs pinned to its own CPU with `taskset`; its CPU time counts as the
//! load generator's, measured over the middle of the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::driver::Measured;
use crate::procs::Proc;
use crate::sys::Sampler;

/// Debian's dnsperf.
pub const DNSPERF: &str = "/usr/bin/dnsperf";

/// One dnsperf run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The server's port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// TCP instead of UDP.
    pub tcp: bool,
    /// dnsperf's `-c`: UDP sockets, or TCP connections.
    pub clients: usize,
    /// dnsperf's `-Q`: a fixed offered load in queries per second; `None`
    /// saturates (dnsperf keeps its default 100 queries in flight).
    pub max_qps: Option<u32>,
    /// dnsperf's `-l`, in seconds.
    pub secs: f64,
    /// The CPU dnsperf is pinned to.
    pub cpu: Option<usize>,
}

/// What one run measured.
pub struct Outcome {
    /// Throughput (answered NOERROR queries over dnsperf's run time), latency
    /// percentiles from the per-query lines, errors (lost queries and other
    /// response codes) and resource use.
    pub m: Measured,
    /// dnsperf's average response size, in bytes.
    pub response_bytes: Option<f64>,
}

/// Run dnsperf once as `load` says, with the queries in `queries` (one
/// `name type` per line), its output in `out_dir`. `sampler` names the server
/// process(es); dnsperf is added to it as the client.
pub async fn run(
    load: &Load,
    queries: &Path,
    out_dir: &Path,
    sampler: &Sampler,
) -> Result<Outcome> {
    let out = out_dir.join(format!(
        "dnsperf-{}-{}.out",
        load.port,
        if load.tcp { "tcp" } else { "udp" }
    ));
    let mut cmd = match load.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(DNSPERF);
            c
        }
        None => Command::new(DNSPERF),
    };
    cmd.arg("-e") // EDNS0, so both servers may answer all five records over UDP
        .arg("-m")
        .arg(if load.tcp { "tcp" } else { "udp" })
        .arg("-s")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(load.port.to_string())
        .arg("-d")
        .arg(queries)
        .arg("-l")
        .arg(format!("{}", load.secs))
        .arg("-c")
        .arg(load.clients.to_string())
        .arg("-T")
        .arg("1")
        .arg("-v");
    if let Some(q) = load.max_qps {
        cmd.arg("-Q").arg(q.to_string());
    }
    let t0 = Instant::now();
    let mut proc = Proc::spawn("dnsperf", cmd, &out)?;
    let sampler = sampler.clone().with_clients(vec![proc.pid()]);
    // CPU is sampled over the middle of the run, while dnsperf is surely alive
    // (its pid is gone once it exits) and past its start-up.
    let margin = Duration::from_secs_f64((load.secs * 0.1).min(0.5));
    let secs = Duration::from_secs_f64(load.secs);
    tokio::time::sleep_until((t0 + margin).into()).await;
    let before = sampler.sample();
    tokio::time::sleep_until((t0 + secs - margin).into()).await;
    let after = sampler.sample();
    let usage = sampler.usage(&before, &after);
    // Queries still in flight at the end get dnsperf's 5 s timeout.
    let finished = proc.wait(Duration::from_secs(15)).await;
    let parsed = finished.and_then(|()| parse(&out));
    // The verbose file is tens of megabytes: gone before writeback reaches it.
    let _ = std::fs::remove_file(&out);
    let p = parsed?;
    Ok(Outcome {
        m: Measured::from_samples(p.samples, p.run_secs, p.errors, p.first_error, usage),
        response_bytes: p.response_bytes,
    })
}

/// dnsperf's output, parsed.
struct Parsed {
    /// Latencies of NOERROR answers, in nanoseconds.
    samples: Vec<u64>,
    /// Lost queries plus answers with another response code.
    errors: u64,
    first_error: Option<String>,
    run_secs: f64,
    response_bytes: Option<f64>,
}

fn parse(path: &PathBuf) -> Result<Parsed> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading dnsperf output {}", path.display()))?;
    parse_text(&text)
}

fn parse_text(text: &str) -> Result<Parsed> {
    let mut samples = Vec::with_capacity(1 << 20);
    let mut errors = 0;
    let mut first_error = None;
    let mut run_secs = None;
    let mut completed = None;
    let mut response_bytes = None;
    // The number right after a "Label:" of the statistics block.
    let after = |line: &str, label: &str| -> Option<f64> {
        line.trim()
            .strip_prefix(label)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("> ") {
            // `> NOERROR web.service.consul A 0.000481`
            let f: Vec<&str> = rest.split_whitespace().collect();
            let latency = f.last().and_then(|v| v.parse::<f64>().ok());
            match (f.first(), latency) {
                (Some(&"NOERROR"), Some(secs)) if f.len() == 4 => {
                    samples.push((secs * 1e9).round() as u64)
                }
                (Some(rcode), Some(_)) if f.len() == 4 => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{rcode} for {} {}", f[1], f[2]));
                }
                // Anything else (a timed-out query's line) is counted below,
                // from "Queries lost".
                _ => {}
            }
        } else if let Some(v) = after(line, "Queries lost:") {
            if v > 0.0 {
                errors += v as u64;
                first_error.get_or_insert_with(|| format!("{v} queries lost"));
            }
        } else if let Some(v) = after(line, "Queries completed:") {
            completed = Some(v as u64);
        } else if let Some(v) = after(line, "Run time (s):") {
            run_secs = Some(v);
        } else if let Some(sizes) = line.trim().strip_prefix("Average packet size:") {
            // `request 47, response 189`
            response_bytes = sizes
                .split_once("response")
                .and_then(|(_, v)| v.trim().parse().ok());
        }
    }
    let Some(run_secs) = run_secs.filter(|s| *s > 0.0) else {
        bail!("no \"Run time\" in dnsperf's output; it did not finish a run");
    };
    if completed.unwrap_or(0) > 0 && samples.is_empty() && errors == 0 {
        bail!("dnsperf answered queries but printed no per-query lines (does this version support -v?)");
    }
    Ok(Parsed {
        samples,
        errors,
        first_error,
        run_secs,
        response_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbose_output() {
        let text = "\
[Status] Testing complete (time limit)
> NOERROR web.service.consul A 0.000481
> NOERROR web.service.consul SRV 0.000102
> SERVFAIL web.service.consul SRV 0.000200

Statistics:

  Queries sent:         4
  Queries completed:    3 (75.00%)
  Queries lost:         1 (25.00%)

  Response codes:       NOERROR 2 (66.67%), SERVFAIL 1 (33.33%)
  Average packet size:  request 47, response 247
  Run time (s):         4.000099
  Queries per second:   0.749981
";
        let p = parse_text(text).unwrap();
        assert_eq!(p.samples, vec![481_000, 102_000]);
        assert_eq!(p.errors, 2);
        assert_eq!(
            p.first_error.as_deref(),
            Some("SERVFAIL for web.service.consul SRV")
        );
        assert_eq!(p.run_secs, 4.000099);
        assert_eq!(p.response_bytes, Some(247.0));
    }
}
