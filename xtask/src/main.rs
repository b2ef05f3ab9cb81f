//! `cargo xtask …`: Tribune's automation.
//!
//! - `dev [agent flags…]`: install/check prerequisites, then run `tribune agent -dev`.
//! - `test`: prerequisites, build, the real-client suites (`compat`), then every
//!   `cargo test` in the workspace. This is the README's test command and what
//!   `.ci/run` calls.
//! - `tidy`: house rules (also run as a `#[test]`, see [`tidy`]).
//! - `compat go|py|all`: the Go `api` package's and py-consul's own test suites.
//! - `bench kv`: the KV benchmark against etcd, raw fdatasync and bare hyper;
//!   `bench cluster`: three servers against a three-member etcd, and leader
//!   failover over repeated `kill -9`;
//!   `bench locks`: lock hand-off, session churn, transactions and TTL renewals;
//!   `bench dns`: dnsperf against our DNS server and unbound on one pinned core;
//!   `bench gossip`: failure detection, broadcast spread, traffic and CPU
//!   starvation on the simulated gossip network (release build; see BENCHMARKS.md).
//! - `bench checks`: one client agent running an HTTP check per service (1,000 by
//!   default): its CPU and RSS, and how fast a failing target leaves
//!   `health/service?passing` (release build; see BENCHMARKS.md).
//! - `cluster up|status|down|kill|restart`: a real multi-node cluster on this
//!   machine, one loopback address per node (127.0.0.I), with Consul's default
//!   ports; `up [--servers N] [--clients M]` builds and starts it (see [`cluster`]).
//! - `prereqs`: install or check the system packages the build needs.

mod bench;
mod cluster;
mod compat;
mod prereqs;
mod tidy;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root. `cargo run` (which `cargo xtask` is) sets `CARGO_MANIFEST_DIR`
/// at run time too, and that is the one to trust: the compile-time value is baked into
/// the binary, and a target directory shared between clones (as `.ci/run` does) can
/// hand this clone an xtask built in another one.
pub(crate) fn project_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`, relative to the
/// workspace root when relative).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        Some(d) => project_root().join(d),
        None => project_root().join("target"),
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project_root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cargo test` for the default members, echoing its output, and closes with one
/// plain `tests: N passed, N failed` line over every test binary (cargo's own last line
/// is often an empty doc-test run, which says nothing about the suite).
fn cargo_test_with_summary() -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            println!("{line}");
            if let Some((p, f)) = parse_test_result(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let status = child.wait()?;
    println!("\ntests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// `(passed, failed)` from cargo's `test result: ok. 12 passed; 0 failed; ...` line.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| {
            let mut it = part.split_whitespace().rev();
            (it.next() == Some(word)).then(|| it.next()?.parse().ok())?
        })
    };
    Some((count("passed")?, count("failed")?))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("dev") => {
            prereqs::ensure()?;
            run(cargo()
                .args(["run", "--quiet", "-p", "tribune", "--", "agent", "-dev"])
                .args(rest))
        }
        Some("test") => {
            prereqs::ensure()?;
            run(cargo().args(["build", "-p", "tribune"]))?;
            // The real clients' suites first: their summaries are results, and the
            // closing lines of this command are cargo test's.
            compat::run(&["all".to_owned()])?;
            // The whole workspace: `benches` is not a default member (plain
            // `cargo build` skips it), but its unit tests cover the load
            // generator's own HTTP/1.1 client, whose figures BENCHMARKS.md reports.
            cargo_test_with_summary()
        }
        Some("compat") => compat::run(rest),
        Some("bench") => bench::run(rest),
        Some("cluster") => cluster::run(rest),
        Some("tidy") => {
            let problems = tidy::check(&project_root())?;
            for p in &problems {
                eprintln!("{p}");
            }
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                bail!("tidy: {} problem(s)", problems.len())
            }
        }
        Some("prereqs") => prereqs::ensure(),
        _ => {
            bail!("usage: cargo xtask <dev|test|tidy|compat go|py|all|bench kv|cluster|locks|dns|gossip|checks|cluster up|status|down|kill|restart|prereqs>")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_cargo_test_result_lines() {
        let line = "test result: FAILED. 12 passed; 3 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(super::parse_test_result(line), Some((12, 3)));
        assert_eq!(super::parse_test_result("running 3 tests"), None);
    }
}
