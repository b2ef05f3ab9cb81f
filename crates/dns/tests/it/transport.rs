//! UDP and TCP: the same answers, trimmed on UDP, complete on TCP.

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tribune_dns::DnsConfig;

#[tokio::test]
async fn udp_and_tcp_answer_the_same_question() {
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let q = query(0x1234, "Web.Service.Consul.", RecordType::A, None);
    for (reply, _) in [ask_udp(server.udp, &q).await, ask_tcp(server.tcp, &q).await] {
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.queries[0].name().to_ascii(), "Web.Service.Consul.");
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].name.to_ascii(), "Web.Service.Consul.");
        assert!(matches!(&reply.answers[0].data, RData::A(a) if a.0.to_string() == "10.0.0.1"));
    }
    let (reply, _) = ask_udp(
        server.udp,
        &query(7, "nope.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(reply.authorities[0].data, RData::SOA(_)));
    server.stop().await;
}

#[tokio::test]
async fn large_answers_are_trimmed_over_udp_and_complete_over_tcp() {
    let server = TestServer::start(DnsConfig::default(), catalog(120)).await;
    let q = query(1, "big.service.consul.", RecordType::SRV, None);

    let (udp, size) = ask_udp(server.udp, &q).await;
    assert!(size <= 512, "{size}");
    assert!(!udp.metadata.truncation, "Consul trims without TC");
    assert_eq!(udp.answers.len(), 3);
    assert_eq!(udp.additionals.len(), 3);

    let (tcp, size) = ask_tcp(server.tcp, &q).await;
    assert!(size > 512);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 120);
    assert_eq!(tcp.additionals.len(), 120);

    // With EDNS the advertised buffer is filled and the OPT record echoed.
    let (edns, size) = ask_udp(
        server.udp,
        &query(2, "big.service.consul.", RecordType::SRV, Some(1232)),
    )
    .await;
    assert!(size <= 1232, "{size}");
    assert!(edns.answers.len() > 3);
    assert_eq!(edns.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    server.stop().await;
}

#[tokio::test]
async fn one_tcp_connection_carries_several_questions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let mut stream = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    for id in 1..=3u16 {
        let bytes = query(id, "web.service.consul.", RecordType::A, None)
            .to_vec()
            .unwrap();
        let exchange = async {
            stream
                .write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&bytes).await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut reply).await.unwrap();
            reply
        };
        let reply = tokio::time::timeout(WAIT, exchange).await.unwrap();
        let reply = hickory_proto::op::Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, id);
        assert_eq!(reply.answers.len(), 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn bind_reports_ports_and_rejects_an_empty_list() {
    use std::sync::Arc;
    use tribune_dns::{DnsError, DnsServer, MemLookup};
    let server = DnsServer::bind(
        DnsConfig {
            bind: vec![
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            ..DnsConfig::default()
        },
        Arc::new(MemLookup::new("dc1")),
    )
    .await
    .unwrap();
    assert_eq!(server.udp_addrs().len(), 2);
    assert_eq!(server.tcp_addrs().len(), 2);
    assert!(server.udp_addrs().iter().all(|a| a.port() != 0));
    assert!(server.tcp_addrs().iter().all(|a| a.port() != 0));
    drop(server);

    let empty = DnsServer::bind(
        DnsConfig {
            bind: Vec::new(),
            ..DnsConfig::default()
        },
        Arc::new(MemLookup::new("dc1")),
    )
    .await;
    assert!(matches!(empty, Err(DnsError::NoListeners)));

    // A port already taken is a bind error naming the address.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = DnsServer::bind(
        DnsConfig {
            bind: vec![addr],
            ..DnsConfig::default()
        },
        Arc::new(MemLookup::new("dc1")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DnsError::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
}

/// A client that sends its question and closes its side of the connection (as some
/// stub resolvers do) still gets the answer, which the engine produces after the
/// read side has seen the end of the stream.
#[tokio::test]
async fn a_half_closed_tcp_connection_still_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let bytes = query(77, "web.service.consul.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        reply
    };
    let reply = tokio::time::timeout(WAIT, exchange).await.expect("in time");
    let len = usize::from(u16::from_be_bytes([reply[0], reply[1]]));
    assert_eq!(reply.len(), 2 + len, "one framed answer, then the close");
    let message = hickory_proto::op::Message::from_vec(&reply[2..]).unwrap();
    assert_eq!(message.metadata.id, 77);
    assert_eq!(message.answers.len(), 1);
    server.stop().await;
}
