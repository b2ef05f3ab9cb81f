//! System packages the build needs, installed when missing (as root with apt) or
//! reported with the command to run.
//!
//! - `librocksdb-dev`: the `rocksdb` crate links Debian's RocksDB 7.8 through
//!   `ROCKSDB_LIB_DIR` (see ARCHITECTURE.md, "RocksDB") instead of a 30–40 minute
//!   C++ build.
//! - `libclang-dev`: `librocksdb-sys` generates its bindings with bindgen.
//! - `protobuf-compiler`: `protoc` for tonic-build (`/proto`) and raft-proto.
//! - `bind9-dnsutils`: the real `dig`, which the DNS golden tests query us with.
//! - `openssl`: makes the certificates the Go client's TLS test reads.

use anyhow::{bail, Result};
use std::process::Command;

const PACKAGES: &[&str] = &[
    "librocksdb-dev",
    "libclang-dev",
    "protobuf-compiler",
    "bind9-dnsutils",
    "openssl",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs (or asks for) whatever is missing.
pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing system packages: {}\ninstall them with: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    if !update.success() {
        bail!("apt-get update failed");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}
