//! TCP checks, as Consul's `CheckTCP`: connect (trying every resolved address) within
//! the timeout, close at once. Passing output `TCP connect <addr>: Success`; a
//! failure's output is the dial error.

use crate::status::Probe;
use std::time::Duration;
use tokio::net::TcpStream;

pub(crate) async fn probe(addr: &str, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            drop(stream);
            Probe::passing(format!("TCP connect {addr}: Success"))
        }
        Ok(Err(e)) => Probe::critical(format!("dial tcp {addr}: {e}")),
        Err(_) => Probe::critical(format!("dial tcp {addr}: i/o timeout")),
    }
}
