//! The gossip wire format: our own versioned MessagePack messages (not memberlist's;
//! Consul clients never speak gossip to us, and mixing Consul and Tribune agents in
//! one pool is not promised).
//!
//! A UDP packet is `[PLAIN_V1][msgpack array of bin]`, each `bin` one encoded
//! [`Message`]: the first is the packet's own message (ping, ack, …), the rest are
//! piggybacked broadcasts. Messages are separate blobs so that one we cannot decode
//! (an unknown variant from a newer peer) is skipped without losing the others, and
//! so a broadcast is encoded once and its size known before it is packed.
//!
//! A stream (TCP) frame is `[PLAIN_V1][msgpack StreamMsg]`; the shell puts a 4-byte
//! length in front. Encryption, when on, wraps either whole (see [`crate::keyring`]).
//! Structs are encoded with field names so fields can be added with `#[serde(default)]`.
//!
//! Parsing here is pure; reading bytes off sockets is the shell's job.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// First byte of every plaintext packet and stream frame (wire version 1).
pub const PLAIN_V1: u8 = 0x01;

/// Bytes reserved in front of the messages of a packet: the version byte and an
/// array header of up to 3 bytes (a packet never holds 65 536 messages).
pub const PACKET_HEADER_RESERVE: usize = 1 + 3;

/// Member tags, a string map as in Serf.
pub type Tags = BTreeMap<String, String>;

/// A message of the gossip protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Direct probe.
    Ping(Ping),
    /// Ask the receiver to probe `node` for us and relay the ack.
    IndirectPing(IndirectPing),
    /// Answer to a ping (direct or relayed).
    Ack(Ack),
    /// A relay could not reach the target in time (Lifeguard: tells the prober that
    /// the relay, and so the prober's own network, is healthy).
    Nack(Nack),
    /// A member is alive at an incarnation, with its address and tags.
    Alive(Alive),
    /// A member is suspected at an incarnation.
    Suspect(Suspect),
    /// A member is dead (`from != node`) or left (`from == node`).
    Dead(Dead),
    /// A Serf user event.
    UserEvent(UserEventMsg),
    /// Serf join intent: orders a member's (re)join after older leave intents.
    JoinIntent(JoinIntent),
    /// Serf leave intent, used by `force_leave` for another member.
    LeaveIntent(LeaveIntent),
}

/// Direct probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Sequence number echoed in the ack.
    pub seq: u32,
    /// Name of the member meant: a restarted process under another name at the
    /// same address must not answer for the old one.
    pub node: String,
}

/// Indirect probe request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndirectPing {
    /// The requester's sequence number, used in the relayed ack or nack.
    pub seq: u32,
    /// Target name.
    pub node: String,
    /// Target address.
    pub addr: SocketAddr,
    /// Whether the requester wants a nack when the target stays silent.
    pub nack: bool,
}

/// Probe answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The probe's sequence number.
    pub seq: u32,
    /// The responder's network coordinate (Serf's ping payload), on direct
    /// answers only: a relayed ack's round trip says nothing about the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coord: Option<tribune_types::model::coordinate::Coordinate>,
}

/// Negative answer from a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The requester's sequence number.
    pub seq: u32,
}

/// Alive announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    /// Incarnation; only a higher one changes what others believe.
    pub incarnation: u32,
    /// Member name.
    pub node: String,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

/// Suspicion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// Incarnation suspected.
    pub incarnation: u32,
    /// Suspected member.
    pub node: String,
    /// Who suspects it (counts as one Lifeguard confirmation).
    pub from: String,
}

/// Death or graceful leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dead {
    /// Incarnation declared dead.
    pub incarnation: u32,
    /// The member.
    pub node: String,
    /// Who declares it; equal to `node` for a graceful leave.
    pub from: String,
}

/// A user event as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEventMsg {
    /// Lamport time from the event clock.
    pub ltime: u64,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Whether receivers may coalesce it with newer events of the same name.
    #[serde(default)]
    pub coalesce: bool,
}

/// Join intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinIntent {
    /// Lamport time from the member clock.
    pub ltime: u64,
    /// The member.
    pub node: String,
}

/// Leave intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveIntent {
    /// Lamport time from the member clock.
    pub ltime: u64,
    /// The member.
    pub node: String,
    /// Forget the member at once instead of keeping a tombstone.
    #[serde(default)]
    pub prune: bool,
}

/// Membership state as exchanged in push/pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireState {
    /// Alive.
    Alive,
    /// Suspected.
    Suspect,
    /// Declared dead by someone else.
    Dead,
    /// Left gracefully.
    Left,
}

/// One member in a push/pull exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMember {
    /// Name.
    pub node: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Incarnation.
    pub incarnation: u32,
    /// State.
    pub state: WireState,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Lamport time of the newest join/leave intent seen for it.
    #[serde(default)]
    pub status_ltime: u64,
}

/// A full state exchange (memberlist push/pull plus Serf's local state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPull {
    /// Sender name.
    pub from: String,
    /// Set by a node that is explicitly joining (Serf `isJoin`).
    pub join: bool,
    /// Every member the sender knows, itself included.
    pub members: Vec<PushMember>,
    /// Sender's member clock.
    pub member_ltime: u64,
    /// Sender's event clock.
    pub event_ltime: u64,
    /// Sender's recent user events, so a missed event still arrives.
    #[serde(default)]
    pub events: Vec<UserEventMsg>,
}

/// A message on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMsg {
    /// Push/pull request or reply.
    PushPull(PushPull),
}

/// Why bytes from the network were not understood.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Zero-length input.
    #[error("empty packet")]
    Empty,
    /// A version byte we do not speak.
    #[error("unknown wire version {0:#04x}")]
    UnknownVersion(u8),
    /// Not valid MessagePack of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
}

/// Encode one message for a packet.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(msg)
}

/// Bytes the msgpack `bin` header adds in front of a blob of `len` bytes.
pub fn bin_overhead(len: usize) -> usize {
    if len < 256 {
        2
    } else if len < 65_536 {
        3
    } else {
        5
    }
}

/// Bytes `msg` occupies inside a packet.
pub fn packed_len(encoded: &[u8]) -> usize {
    bin_overhead(encoded.len()) + encoded.len()
}

/// Assemble a packet from encoded messages. The caller keeps the total within its
/// budget using [`PACKET_HEADER_RESERVE`] and [`packed_len`].
pub fn encode_packet<'a>(msgs: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(PLAIN_V1);
    let n = msgs.len();
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n < 65_536 {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    for m in msgs {
        let len = m.len();
        if len < 256 {
            out.push(0xc4);
            out.push(len as u8);
        } else if len < 65_536 {
            out.push(0xc5);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0xc6);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        out.extend_from_slice(m);
    }
    out
}

/// Split a packet into its messages. The outer error rejects the whole packet; an
/// inner error rejects one message only.
pub fn decode_packet(packet: &[u8]) -> Result<Vec<Result<Message, WireError>>, WireError> {
    let (&version, body) = packet.split_first().ok_or(WireError::Empty)?;
    if version != PLAIN_V1 {
        return Err(WireError::UnknownVersion(version));
    }
    let blobs: Vec<serde_bytes::ByteBuf> = rmp_serde::from_slice(body)?;
    Ok(blobs
        .into_iter()
        .map(|b| rmp_serde::from_slice::<Message>(&b).map_err(WireError::from))
        .collect())
}

/// Encode a stream frame (without the length prefix).
pub fn encode_stream(msg: &StreamMsg) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = vec![PLAIN_V1];
    out.extend(rmp_serde::to_vec_named(msg)?);
    Ok(out)
}

/// Decode a stream frame (without the length prefix).
pub fn decode_stream(frame: &[u8]) -> Result<StreamMsg, WireError> {
    let (&version, body) = frame.split_first().ok_or(WireError::Empty)?;
    if version != PLAIN_V1 {
        return Err(WireError::UnknownVersion(version));
    }
    Ok(rmp_serde::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(seq: u32) -> Message {
        Message::Ping(Ping {
            seq,
            node: "n1".into(),
        })
    }

    #[test]
    fn packet_round_trip_and_exact_size() {
        let big = Message::UserEvent(UserEventMsg {
            ltime: 7,
            name: "deploy".into(),
            payload: vec![0xab; 400],
            coalesce: false,
        });
        let msgs: Vec<Vec<u8>> = [ping(1), big.clone(), ping(2)]
            .iter()
            .map(|m| encode_message(m).unwrap())
            .collect();
        let packet = encode_packet(msgs.iter().map(Vec::as_slice));
        let expected: usize = 2 + msgs.iter().map(|m| packed_len(m)).sum::<usize>();
        assert_eq!(packet.len(), expected);
        let out: Vec<Message> = decode_packet(&packet)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, vec![ping(1), big, ping(2)]);
    }

    #[test]
    fn many_messages_use_array16() {
        let msgs: Vec<Vec<u8>> = (0..20).map(|i| encode_message(&ping(i)).unwrap()).collect();
        let packet = encode_packet(msgs.iter().map(Vec::as_slice));
        assert_eq!(decode_packet(&packet).unwrap().len(), 20);
    }

    #[test]
    fn an_unknown_message_does_not_spoil_the_packet() {
        let good = encode_message(&ping(9)).unwrap();
        // A newer peer's variant we do not know.
        let mut unknown = Vec::new();
        unknown.push(0x81); // fixmap of one
        unknown.extend_from_slice(&[0xa6]);
        unknown.extend_from_slice(b"Future");
        unknown.push(0xc0); // nil
        let packet = encode_packet([unknown.as_slice(), good.as_slice()].into_iter());
        let out = decode_packet(&packet).unwrap();
        assert!(out[0].is_err());
        assert_eq!(out[1].as_ref().unwrap(), &ping(9));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode_packet(&[]), Err(WireError::Empty)));
        assert!(matches!(
            decode_packet(&[0x7f, 1, 2]),
            Err(WireError::UnknownVersion(0x7f))
        ));
        assert!(decode_packet(&[PLAIN_V1, 0xdc, 0xff]).is_err());
        assert!(decode_packet(&[PLAIN_V1, 0x91, 0xc4, 0x09, 1]).is_err());
        assert!(decode_stream(&[PLAIN_V1, 0xff, 0x00]).is_err());
    }
}
