//! UDP checks, as Consul's `CheckUDP`: send an empty datagram on a connected socket
//! and wait for one byte back. A reply is passing; so is *silence until the timeout*,
//! because most UDP services do not answer an empty datagram. Only an error fails
//! the check — in practice `connection refused`, the ICMP port-unreachable the
//! kernel reports on a connected socket when nothing listens.
//!
//! Consul's read has no deadline at all (hashicorp/consul#22068: a silent service
//! leaves the check hanging, stuck at its last status); here the wait is bounded by
//! the check's timeout and expiry counts as the passing it was meant to be. Consul
//! also reports a *dial* timeout (a resolver that does not answer) as passing; that
//! quirk is kept.

use crate::status::Probe;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

pub(crate) async fn probe(addr: &str, timeout: Duration) -> Probe {
    let deadline = Instant::now() + timeout;
    let success = || Probe::passing(format!("UDP connect {addr}: Success"));
    let remote = match tokio::time::timeout_at(deadline, tokio::net::lookup_host(addr)).await {
        Err(_) => return success(),
        Ok(Err(e)) => return Probe::critical(format!("dial udp {addr}: {e}")),
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(a) => a,
            None => return Probe::critical(format!("dial udp {addr}: no such host")),
        },
    };
    let local: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return Probe::critical(format!("dial udp {addr}: {e}")),
    };
    if let Err(e) = socket.connect(remote).await {
        return Probe::critical(format!("dial udp {addr}: {e}"));
    }
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Consul writes its (empty) message with `fmt.Fprintf`, which still sends a
    // zero-length datagram.
    if let Err(e) = socket.send(&[]).await {
        return Probe::critical(format!("write udp {local}->{remote}: {e}"));
    }
    let mut byte = [0u8; 1];
    match tokio::time::timeout_at(deadline, socket.recv(&mut byte)).await {
        Ok(Ok(_)) | Err(_) => success(),
        Ok(Err(e)) => Probe::critical(format!("read udp {local}->{remote}: {e}")),
    }
}
