//! Encoding of raft-rs protobuf types with prost 0.11 (the version raft-proto is
//! generated with), plus validation of messages arriving from the network.
//!
//! raft-rs' generated getters panic on unknown enum values, so anything decoded
//! from outside must be checked here before raft-rs sees it.

use prost011::Message as _;
use raft::eraftpb::{EntryType, Message, MessageType};

use crate::error::InvalidMessage;

/// Encode any raft protobuf value.
pub(crate) fn encode<M: prost011::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Decode any raft protobuf value.
pub(crate) fn decode<M: prost011::Message + Default>(
    bytes: &[u8],
) -> Result<M, prost011::DecodeError> {
    M::decode(bytes)
}

/// Encode a raft message for the transport.
pub(crate) fn encode_message(msg: &Message) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Whether `value` is an entry type raft-rs knows.
pub(crate) fn valid_entry_type(value: i32) -> bool {
    EntryType::from_i32(value).is_some()
}

/// Decode a message from a peer and check that raft-rs can step it without
/// tripping over unknown enum values or local-only message types.
pub(crate) fn decode_message(
    bytes: &[u8],
    local_id: u64,
) -> Result<Message, crate::ConsensusError> {
    let msg: Message = decode(bytes)?;
    validate_message(&msg, local_id).map_err(crate::ConsensusError::InvalidMessage)?;
    Ok(msg)
}

fn validate_message(msg: &Message, local_id: u64) -> Result<(), InvalidMessage> {
    let Some(kind) = MessageType::from_i32(msg.msg_type) else {
        return Err(InvalidMessage::MessageType(msg.msg_type));
    };
    // These only make sense generated inside the local node; raft-rs rejects
    // some of them but not all (MsgHup from outside would start an election).
    if matches!(
        kind,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    ) {
        return Err(InvalidMessage::LocalMessage(msg.msg_type));
    }
    if msg.to != local_id {
        return Err(InvalidMessage::WrongRecipient {
            to: msg.to,
            local: local_id,
        });
    }
    for e in &msg.entries {
        if !valid_entry_type(e.entry_type) {
            return Err(InvalidMessage::EntryType(e.entry_type));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn msg(kind: MessageType, to: u64) -> Message {
        Message {
            msg_type: kind as i32,
            to,
            from: 2,
            term: 3,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let mut m = msg(MessageType::MsgAppend, 1);
        m.entries.push(Entry {
            index: 5,
            term: 3,
            data: b"hello".to_vec(),
            ..Default::default()
        });
        let decoded = decode_message(&encode_message(&m), 1).unwrap();
        assert_eq!(decoded, m);
    }

    #[test]
    fn rejects_bad_messages() {
        let local = encode_message(&msg(MessageType::MsgHup, 1));
        assert!(matches!(
            decode_message(&local, 1),
            Err(crate::ConsensusError::InvalidMessage(
                InvalidMessage::LocalMessage(_)
            ))
        ));
        let mut unknown = msg(MessageType::MsgAppend, 1);
        unknown.msg_type = 99;
        assert!(matches!(
            decode_message(&encode_message(&unknown), 1),
            Err(crate::ConsensusError::InvalidMessage(
                InvalidMessage::MessageType(99)
            ))
        ));
        let mut bad_entry = msg(MessageType::MsgAppend, 1);
        bad_entry.entries.push(Entry {
            entry_type: 42,
            ..Default::default()
        });
        assert!(matches!(
            decode_message(&encode_message(&bad_entry), 1),
            Err(crate::ConsensusError::InvalidMessage(
                InvalidMessage::EntryType(42)
            ))
        ));
        let elsewhere = encode_message(&msg(MessageType::MsgAppend, 7));
        assert!(decode_message(&elsewhere, 1).is_err());
        assert!(matches!(
            decode_message(&[0xff, 0xff, 0xff], 1),
            Err(crate::ConsensusError::DecodeMessage(_))
        ));
    }
}
