//! Names outside the domain: relayed from fake upstreams, or REFUSED.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tribune_dns::{DnsConfig, RecursorStrategy};

/// How a fake upstream answers.
#[derive(Clone, Copy)]
enum Upstream {
    /// The A record `addr` for whatever was asked.
    Answer(Ipv4Addr),
    /// SERVFAIL.
    Fail,
    /// Over UDP a truncated empty reply; over TCP the A record.
    TruncatedOverUdp(Ipv4Addr),
}

fn reply_to(request: &[u8], how: Upstream, tcp: bool) -> Vec<u8> {
    let request = Message::from_vec(request).unwrap();
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(request.queries.clone());
    let question = request.queries[0].name().clone();
    let answer = |ip| Record::from_rdata(question.clone(), 300, RData::A(A(ip)));
    match how {
        Upstream::Answer(ip) => {
            reply.add_answer(answer(ip));
        }
        Upstream::Fail => reply.metadata.response_code = ResponseCode::ServFail,
        Upstream::TruncatedOverUdp(ip) if tcp => {
            reply.add_answer(answer(ip));
        }
        Upstream::TruncatedOverUdp(_) => reply.metadata.truncation = true,
    }
    reply.to_vec().unwrap()
}

/// A fake upstream on UDP and TCP of one loopback port, until dropped.
struct FakeUpstream {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn fake_upstream(how: Upstream) -> FakeUpstream {
    // TCP must share the UDP port; retry with another port if it is taken.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let reply = reply_to(&buf[..n], how, false);
            let _ = udp.send_to(&reply, from).await;
        }
    });
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            let reply = reply_to(&request, how, true);
            let _ = stream
                .write_all(&u16::try_from(reply.len()).unwrap().to_be_bytes())
                .await;
            let _ = stream.write_all(&reply).await;
        }
    });
    FakeUpstream {
        addr,
        tasks: vec![udp_task, tcp_task],
    }
}

fn with_recursors(recursors: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        recursors,
        recursor_timeout: Duration::from_secs(5),
        ..DnsConfig::default()
    }
}

fn a_of(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn out_of_zone_names_are_relayed_with_our_id() {
    let upstream = fake_upstream(Upstream::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let server = TestServer::start(with_recursors(vec![upstream.addr]), catalog(0)).await;

    let q = query(0x4321, "www.Example.org.", RecordType::A, None);
    let (reply, _) = ask_udp(server.udp, &q).await;
    assert_eq!(reply.metadata.id, 0x4321);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.recursion_available);
    assert_eq!(a_of(&reply), ["192.0.2.1"]);
    assert_eq!(reply.answers[0].ttl, 300);

    // With EDNS the OPT record comes back too.
    let (reply, _) = ask_udp(
        server.udp,
        &query(5, "www.example.org.", RecordType::A, Some(1232)),
    )
    .await;
    assert_eq!(reply.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    // In-zone answers say recursion is available.
    let (reply, _) = ask_udp(
        server.udp,
        &query(6, "web.service.consul.", RecordType::A, None),
    )
    .await;
    assert!(reply.metadata.recursion_available);
    assert!(reply.metadata.authoritative);

    // An unknown reverse name goes upstream too.
    let (reply, _) = ask_udp(
        server.udp,
        &query(8, "8.8.8.8.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(a_of(&reply), ["192.0.2.1"]);
    server.stop().await;
}

#[tokio::test]
async fn failing_recursors_are_skipped_then_servfail() {
    let failing = fake_upstream(Upstream::Fail).await;
    let good = fake_upstream(Upstream::Answer(Ipv4Addr::new(192, 0, 2, 2))).await;
    let server = TestServer::start(with_recursors(vec![failing.addr, good.addr]), catalog(0)).await;
    let (reply, _) = ask_udp(
        server.udp,
        &query(1, "www.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(a_of(&reply), ["192.0.2.2"]);
    server.stop().await;

    let server = TestServer::start(
        DnsConfig {
            recursor_strategy: RecursorStrategy::Random,
            ..with_recursors(vec![failing.addr])
        },
        catalog(0),
    )
    .await;
    let (reply, _) = ask_udp(
        server.udp,
        &query(2, "www.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.id, 2);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.metadata.recursion_available);
    server.stop().await;
}

#[tokio::test]
async fn truncated_upstream_replies_are_retried_over_tcp_for_tcp_clients() {
    let upstream = fake_upstream(Upstream::TruncatedOverUdp(Ipv4Addr::new(192, 0, 2, 3))).await;
    let server = TestServer::start(with_recursors(vec![upstream.addr]), catalog(0)).await;
    let q = query(3, "big.example.org.", RecordType::A, None);

    // A UDP client gets the truncated reply, to retry over TCP itself.
    let (reply, _) = ask_udp(server.udp, &q).await;
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());

    let (reply, _) = ask_tcp(server.tcp, &q).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(a_of(&reply), ["192.0.2.3"]);
    server.stop().await;
}

#[tokio::test]
async fn without_recursors_out_of_zone_is_refused() {
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let (reply, _) = ask_udp(
        server.udp,
        &query(4, "www.example.org.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.id, 4);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
    server.stop().await;
}
