//! `tribune-benches`: workload benchmarks, normally started by `cargo xtask bench`.
//!
//! - `kv [options]`: the KV benchmark (raw fdatasync, Tribune, etcd, a bare hyper
//!   server), printed as a table with the ratios the performance targets are stated
//!   in. See `BENCHMARKS.md` at the repository root for what it measures and why.
//! - `cluster [options]`: three Tribune servers against a three-member etcd
//!   cluster (writes and `?consistent` reads at 1, 64, 512 clients) and the
//!   leader failover time over repeated `kill -9`; see `BENCHMARKS.md`.
//! - `locks [options]`: the coordination benchmark (lock hand-off, session churn,
//!   transactions, renewal CPU) against Tribune, with the raw fdatasync loop as
//!   the same-run reference; see `BENCHMARKS.md`.
//! - `dns [options]`: the DNS benchmark: dnsperf against Tribune's DNS server
//!   and against unbound serving the same records, both pinned to one core,
//!   with the target ratios; see `BENCHMARKS.md`.
//! - `gossip [options]`: the gossip benchmark on the simulated network (failure
//!   detection, broadcast spread, steady-state bytes, CPU starvation) with
//!   Consul's LAN timings; see `BENCHMARKS.md`.
//! - `checks [options]`: the health-check benchmark: one client agent running an
//!   HTTP check per service against a target in this process; the agent's CPU and
//!   RSS, and how fast a failing target leaves `health/service?passing`; see
//!   `BENCHMARKS.md`.
//! - `apply [options]`: the state store's cost per applied KV write (what every
//!   server's raft thread pays), without raft, disk or network.
//! - `snapshot [options]`: an operator snapshot of a large state saved and
//!   restored through one server's HTTP API: time, archive size, and the
//!   server's peak memory against its memory before.
//! - `hello-server --port P`: internal; the bare hyper HTTP/1.1 server that `kv`
//!   runs in its own process as the HTTP ceiling.
//! - `check-floor --target ADDR ...`: internal; the cheapest prober of the
//!   `checks` workload, which `checks` runs in its own process as the reference
//!   for the client agent's CPU.

mod apply;
mod apt;
mod checks;
mod cluster;
mod coord;
mod dns;
mod dnsclient;
mod dnsperf;
mod driver;
mod etcd;
mod fsync;
mod gossip;
mod hello;
mod http;
mod kv;
mod locks;
mod procs;
mod report;
mod snapshot;
mod sys;
mod tribune;
mod unbound;

use anyhow::{bail, Result};

// The same allocator as the Tribune binaries, so `apply` measures the state
// store as the servers run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("kv") => kv::run(&args[1..]),
        Some("apply") => apply::run(&args[1..]),
        Some("snapshot") => snapshot::run(&args[1..]),
        Some("locks") => locks::run(&args[1..]),
        Some("dns") => dns::run(&args[1..]),
        Some("gossip") => gossip::run(&args[1..]),
        Some("checks") => checks::run(&args[1..]),
        Some("cluster") => cluster::run(&args[1..]),
        Some("hello-server") => hello::main(&args[1..]),
        Some("check-floor") => checks::floor_main(&args[1..]),
        _ => {
            eprint!(
                "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                kv::USAGE,
                cluster::USAGE,
                locks::USAGE,
                dns::USAGE,
                gossip::USAGE,
                checks::USAGE,
                apply::USAGE,
                snapshot::USAGE
            );
            bail!("usage: tribune-benches kv|cluster|locks|dns|gossip|checks|apply|snapshot [options]")
        }
    }
}
