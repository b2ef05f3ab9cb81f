//! unbound (Debian's) as the reference DNS server: authoritative answers for the
//! same records as Tribune's, from `local-data` in a `static` local zone, one
//! thread, in the foreground, on free loopback ports, with a generated config
//! and nothing from `/etc/unbound`.
//!
//! Only the iterator module is loaded (no validator, so no trust anchor and no
//! root key), remote control is off, and nothing is ever recursed: every
//! question in `consul.` is answered from memory or NXDOMAIN.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::procs::Proc;
use crate::sys::free_port;

/// Debian's unbound.
pub const UNBOUND: &str = "/usr/sbin/unbound";

/// A running unbound.
pub struct Unbound {
    /// The process (killed on drop).
    pub proc: Proc,
    /// Its port on 127.0.0.1, UDP and TCP.
    pub port: u16,
}

impl Unbound {
    /// Start unbound with its config and log in `dir`, serving the zone
    /// `zone` (`consul.`) from `local_data` (zone-file lines), pinned to CPU
    /// `cpu` when given. It answers as soon as the caller's readiness check
    /// passes; this only spawns it.
    pub fn start(
        dir: &Path,
        zone: &str,
        local_data: &[String],
        cpu: Option<usize>,
    ) -> Result<Unbound> {
        let port = free_port()?;
        let conf = dir.join("unbound.conf");
        std::fs::write(&conf, config(dir, port, zone, local_data))?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(UNBOUND);
                c
            }
            None => Command::new(UNBOUND),
        };
        cmd.arg("-d").arg("-c").arg(&conf);
        let proc = Proc::spawn("unbound", cmd, &dir.join("unbound.log"))?;
        Ok(Unbound { proc, port })
    }
}

/// The generated `unbound.conf`.
fn config(dir: &Path, port: u16, zone: &str, local_data: &[String]) -> String {
    let mut c = format!(
        r#"server:
    interface: 127.0.0.1
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    # One thread on one core, as Tribune gets.
    num-threads: 1
    # The default (10 per thread) makes dnsperf's extra TCP connections wait:
    # 16 connections gave under 1,000 queries/s in a trial.
    incoming-num-tcp: 256
    access-control: 127.0.0.0/8 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    # No DNSSEC validation, so no trust anchor or root key to read or update.
    module-config: "iterator"
    auto-trust-anchor-file: ""
    trust-anchor-file: ""
    local-zone: "{zone}" static
"#,
        dir = dir.display()
    );
    for line in local_data {
        let _ = writeln!(c, "    local-data: \"{line}\"");
    }
    c.push_str("remote-control:\n    control-enable: no\n");
    c
}
