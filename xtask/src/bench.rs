//! `cargo xtask bench kv|locks|dns [options]`: build Tribune and the benchmark
//! driver in release mode, then run one benchmark (`benches/`, binary
//! `tribune-benches`): `kv` (KV PUT/GET against etcd, raw fdatasync and bare
//! hyper), `locks` (lock hand-off, sessions, transactions and renewal CPU against
//! raw fdatasync) or `dns` (A and SRV queries with dnsperf against unbound on the
//! same pinned core; the driver installs Debian's dnsperf and unbound if missing).
//!
//! Options after the benchmark's name go to the driver (`--duration`, `--only`,
//! `--json`, ...; `cargo xtask bench kv --help` lists them). The data directories
//! and the raw fdatasync loop default to `<target>/bench-data`, on the
//! repository's disk: `/tmp` is a tmpfs on some machines, where fdatasync costs
//! nothing and every durable-write figure would be meaningless. Results and
//! their reading live in `BENCHMARKS.md`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, project_root, run as run_cmd};

const USAGE: &str = "usage: cargo xtask bench kv|locks|dns [driver options; --help lists them]";

/// The benchmarks `tribune-benches` knows.
const BENCHMARKS: [&str; 3] = ["kv", "locks", "dns"];

/// Entry point: `args` are the words after `bench`.
pub fn run(args: &[String]) -> Result<()> {
    let Some((what, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    if !BENCHMARKS.contains(&what.as_str()) {
        bail!("unknown benchmark {what:?}\n{USAGE}");
    }
    crate::prereqs::ensure()?;
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
    let release = target_dir().join("release");
    let mut driver = Command::new(release.join("tribune-benches"));
    driver.current_dir(project_root()).arg(what);
    if !rest.iter().any(|a| a == "--tribune") {
        driver.arg("--tribune").arg(release.join("tribune"));
    }
    if !rest.iter().any(|a| a == "--data-root") {
        let data = target_dir().join("bench-data");
        std::fs::create_dir_all(&data)?;
        driver.arg("--data-root").arg(data);
    }
    driver.args(rest);
    run_cmd(&mut driver)
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                project_root().join(d)
            }
        }
        None => project_root().join("target"),
    }
}
