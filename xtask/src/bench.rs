//! `cargo xtask bench kv|cluster|locks|dns|gossip|checks|snapshot [options]`: build Tribune
//! and the benchmark driver in release mode, then run one benchmark (`benches/`,
//! binary `tribune-benches`): `kv` (KV PUT/GET against etcd, raw fdatasync and bare
//! hyper), `cluster` (three servers against a three-member etcd, and leader
//! failover over repeated `kill -9`), `locks` (lock hand-off, sessions, transactions and renewal CPU against
//! raw fdatasync), `dns` (A and SRV queries with dnsperf against unbound on the
//! same pinned core; the driver installs Debian's dnsperf and unbound if missing),
//! `checks` (one client agent running 1,000 HTTP checks: its CPU and RSS, and
//! how fast a failing target leaves `health/service?passing`), `snapshot` (an
//! operator snapshot of a large state saved and restored: time and the server's
//! peak memory) or `gossip`
//! (failure detection, broadcast spread, traffic and CPU starvation
//! on the gossip crate's simulated network: it runs no server, so only the
//! driver is built and it gets no `--tribune` or `--data-root`).
//!
//! Options after the benchmark's name go to the driver (`--duration`, `--only`,
//! `--json`, ...; `cargo xtask bench kv --help` lists them). The data directories
//! and the raw fdatasync loop default to `<target>/bench-data`, on the
//! repository's disk: `/tmp` is a tmpfs on some machines, where fdatasync costs
//! nothing and every durable-write figure would be meaningless. Results and
//! their reading live in `BENCHMARKS.md`.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, project_root, run as run_cmd};

const USAGE: &str =
    "usage: cargo xtask bench kv|cluster|locks|dns|gossip|checks|snapshot [driver options; --help lists them]";

/// The benchmarks `tribune-benches` knows.
const BENCHMARKS: [&str; 7] = [
    "kv", "cluster", "locks", "dns", "gossip", "checks", "snapshot",
];

/// Those that run entirely in the driver's process, with no server to build.
const IN_PROCESS: [&str; 1] = ["gossip"];

/// Entry point: `args` are the words after `bench`.
pub fn run(args: &[String]) -> Result<()> {
    let Some((what, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    if !BENCHMARKS.contains(&what.as_str()) {
        bail!("unknown benchmark {what:?}\n{USAGE}");
    }
    crate::prereqs::ensure()?;
    let release = crate::target_dir().join("release");
    if IN_PROCESS.contains(&what.as_str()) {
        run_cmd(cargo().args(["build", "--release", "-p", "tribune-benches"]))?;
        return run_cmd(
            Command::new(release.join("tribune-benches"))
                .current_dir(project_root())
                .arg(what)
                .args(rest),
        );
    }
    // One cargo invocation for both: they share dependencies, and on a two-core
    // machine two builds in a row would only redo work.
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "tribune",
        "-p",
        "tribune-benches",
    ]))?;
    let mut driver = Command::new(release.join("tribune-benches"));
    driver.current_dir(project_root()).arg(what);
    if !rest.iter().any(|a| a == "--tribune") {
        driver.arg("--tribune").arg(release.join("tribune"));
    }
    if !rest.iter().any(|a| a == "--data-root") {
        let data = crate::target_dir().join("bench-data");
        std::fs::create_dir_all(&data)?;
        driver.arg("--data-root").arg(data);
    }
    driver.args(rest);
    run_cmd(&mut driver)
}
