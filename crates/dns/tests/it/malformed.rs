//! Garbage in: a FORMERR or silence, and the server keeps answering.
//!
//! Silence is proven without waiting for it: a valid question sent after the garbage
//! on the same socket must be the first thing answered.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tribune_dns::DnsConfig;

#[tokio::test]
async fn short_datagrams_and_responses_are_dropped() {
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let socket = udp_client().await;

    // Shorter than a header.
    socket.send_to(b"hello", server.udp).await.unwrap();
    // A well-formed message with QR set: never answered (no reflection).
    let mut response = query(0x0bad, "web.service.consul.", RecordType::A, None);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    socket
        .send_to(&response.to_vec().unwrap(), server.udp)
        .await
        .unwrap();

    let good = query(0x600d, "web.service.consul.", RecordType::A, None);
    let reply = udp_raw(&socket, server.udp, &good.to_vec().unwrap()).await;
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, 0x600d, "the garbage got no answer");
    assert_eq!(reply.answers.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn undecodable_questions_get_formerr() {
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let socket = udp_client().await;

    // A header announcing one question, then a label running past the end.
    let mut truncated = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    truncated.extend_from_slice(&[7, b'c', b'o', b'n']);
    let reply = Message::from_vec(&udp_raw(&socket, server.udp, &truncated).await).unwrap();
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // A name longer than 255 bytes.
    let mut long = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    let reply = Message::from_vec(&udp_raw(&socket, server.udp, &long).await).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // A compression pointer looping on itself.
    let looping = [
        0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
    ];
    let reply = Message::from_vec(&udp_raw(&socket, server.udp, &looping).await).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // No question at all.
    let empty = [0x55, 0x66, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let reply = Message::from_vec(&udp_raw(&socket, server.udp, &empty).await).unwrap();
    assert_eq!(reply.metadata.id, 0x5566);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // Still serving.
    let (reply, _) = ask_udp(
        server.udp,
        &query(9, "web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.answers.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn unknown_types_and_opcodes() {
    let server = TestServer::start(DnsConfig::default(), catalog(0)).await;
    let (reply, _) = ask_udp(
        server.udp,
        &query(1, "web.service.consul.", RecordType::Unknown(65280), None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities.len(), 1);

    let mut update = query(2, "consul.", RecordType::SOA, None);
    update.metadata.op_code = hickory_proto::op::OpCode::Update;
    let (reply, _) = ask_udp(server.udp, &update).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    server.stop().await;
}
