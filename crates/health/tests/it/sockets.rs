//! TCP and UDP checks against loopback sockets the tests open and close.

use crate::support::*;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tribune_types::HealthStatus::{Critical, Passing};

#[tokio::test]
async fn tcp_passes_while_listening_and_fails_once_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (runner, mut rx) = runner(false);
    let mut d = def("tcp");
    d.tcp = addr.to_string();
    runner.add(&d).expect("add");

    let r = wait_status(&mut rx, "tcp", Passing).await;
    assert_eq!(r.output, format!("TCP connect {addr}: Success"));

    drop(listener);
    let r = wait_status(&mut rx, "tcp", Critical).await;
    assert!(
        r.output.starts_with(&format!("dial tcp {addr}: ")) && r.output.contains("refused"),
        "{}",
        r.output
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn udp_silence_and_replies_pass_and_refusal_fails() {
    // A socket that never answers: the read times out, which Consul counts as passing.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    // A socket that echoes what it gets.
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let (sizes_tx, mut sizes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = sizes_tx.send(n);
            let _ = echo.send_to(b"pong", from).await;
        }
    });

    let (runner, mut rx) = runner(false);
    let mut quiet = def("udp-quiet");
    quiet.udp = silent_addr.to_string();
    quiet.timeout = Some(Duration::from_millis(100));
    let mut answering = def("udp-echo");
    answering.udp = echo_addr.to_string();
    runner.add(&quiet).expect("add");
    runner.add(&answering).expect("add");

    let r = next_for(&mut rx, "udp-echo").await;
    assert_eq!(r.status, Passing);
    assert_eq!(r.output, format!("UDP connect {echo_addr}: Success"));
    // Consul's probe datagram is empty.
    assert_eq!(sizes.recv().await, Some(0));

    let r = next_for(&mut rx, "udp-quiet").await;
    assert_eq!(r.status, Passing);
    assert_eq!(r.output, format!("UDP connect {silent_addr}: Success"));

    // Closing the socket makes the kernel answer with ICMP port unreachable.
    drop(silent);
    let r = wait_status(&mut rx, "udp-quiet", Critical).await;
    assert!(
        r.output.starts_with("read udp 127.0.0.1:") && r.output.contains("refused"),
        "{}",
        r.output
    );
    runner.shutdown().await;
}
