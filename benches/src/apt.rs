//! Debian packages a benchmark needs besides Tribune (etcd for `kv`; dnsperf,
//! unbound and dig for `dns`): installed with apt-get when a binary is missing
//! and we are root, otherwise an error with the command to run. The benchmarks
//! compare against the versions Debian ships, so that a run on another machine
//! of the same kind measures the same programs.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Make sure every `(binary, package)` pair's binary exists, installing the
/// packages of the missing ones in one apt-get call.
pub fn ensure(wanted: &[(&Path, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| !bin.exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!("missing Debian packages: {list}; install them with: sudo apt-get install -y {list}");
    }
    println!("installing Debian's {list}");
    let apt = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .args(if args[0] == "install" {
                &missing[..]
            } else {
                &[]
            })
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success())
    };
    // A fresh machine may have no package lists yet: update only if needed.
    if !apt(&["install", "-y", "-qq"])? {
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq"])?;
    }
    for (bin, pkg) in wanted {
        if !bin.exists() {
            bail!("apt-get install -y {pkg} did not provide {}", bin.display());
        }
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
