//! Raft log entries.
//!
//! Wire form: `[format version: u8 = 2][tag: u16 BE][leader's wall clock, ms since the
//! Unix epoch: u64 BE][MessagePack body]`. Version 1 entries (no clock) still decode, with
//! a clock of 0. The clock is stamped once, by the proposing leader, so time-dependent
//! rules (lock-delay) apply identically on every server and on replay.
//! Tags are append-only: a number is never reused. Tag bit 0x8000 marks a command an
//! older server may ignore (Consul's `IgnoreUnknownTypeFlag` habit); an unknown tag
//! without it is a fatal decode error, because skipping it would fork the state.

use tribune_types::model::ops::WriteRequest;

/// Tags at or above this bit may be ignored by servers that do not know them.
pub const IGNORABLE: u16 = 0x8000;
const FORMAT_VERSION: u8 = 2;
/// Version, tag and clock stamp in front of a version-2 body.
const HEADER_LEN: usize = 11;
const FORMAT_V1: u8 = 1;

/// A command in the raft log.
// Commands are decoded once and applied by reference; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A client write (KV, catalog, config, CA).
    Request(WriteRequest),
    /// Drop KV tombstones at or below this index (leader GC).
    ReapTombstones {
        /// Highest index to reap.
        index: u64,
    },
    /// Replace the whole state with an operator's snapshot (`PUT /v1/snapshot`):
    /// the state store's own snapshot bytes, verified before proposing.
    Restore {
        /// The state snapshot.
        state: Vec<u8>,
    },
    /// A command from a newer server that this one may skip.
    Ignored {
        /// Its tag.
        tag: u16,
    },
}

/// An entry that cannot be decoded. Fatal when applying committed entries.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header.
    #[error("raft entry too short ({0} bytes)")]
    Truncated(usize),
    /// Written by a newer format.
    #[error("unsupported raft entry format version {0}")]
    Version(u8),
    /// A tag this server does not know and may not skip.
    #[error("unknown raft command tag {0}")]
    UnknownTag(u16),
    /// The body does not match the tag.
    #[error("malformed body for raft command tag {tag}")]
    Body {
        /// The tag.
        tag: u16,
        /// The decoder's complaint.
        #[source]
        source: rmp_serde::decode::Error,
    },
}

fn request_tag(req: &WriteRequest) -> u16 {
    match req {
        WriteRequest::KvSet { .. } => 1,
        WriteRequest::KvDelete { .. } => 2,
        WriteRequest::Register(_) => 3,
        WriteRequest::Deregister(_) => 4,
        WriteRequest::ConfigSet { .. } => 5,
        WriteRequest::ConfigDelete { .. } => 6,
        WriteRequest::CaSetRoots { .. } => 7,
        WriteRequest::SessionCreate(_) => 8,
        WriteRequest::SessionDestroy { .. } => 9,
        WriteRequest::Txn(_) => 10,
        WriteRequest::AutopilotSet { .. } => 11,
        WriteRequest::CaSetConfig { .. } => 12,
        WriteRequest::CoordinateBatchUpdate { .. } => TAG_COORDINATES,
        WriteRequest::QuerySet { .. } => 13,
        WriteRequest::QueryDelete { .. } => 14,
    }
}

/// The highest tag [`request_tag`] hands out: decoding accepts `1..=` this, so a
/// new request kind cannot be written without being readable back.
const MAX_REQUEST_TAG: u16 = 14;

const TAG_REAP_TOMBSTONES: u16 = 100 | IGNORABLE;
/// Ignorable, as Consul marks its coordinate batches: coordinates only steer
/// `?near=` sorting, so a server that skips them stays consistent for all else.
const TAG_COORDINATES: u16 = 102 | IGNORABLE;
/// Not ignorable: a server that skipped a restore would fork from its peers.
const TAG_RESTORE: u16 = 101;

/// A decoded raft log entry ([`Command::decode_entry`]).
// Lives for one apply on the stack; boxing the command would cost an
// allocation per raft entry to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// An operator's restore: the state's bytes, still in the entry.
    Restore(&'a [u8]),
    /// Any other command, with the leader's clock stamp.
    Command(Command, u64),
}

impl Command {
    /// Encodes for the raft log, stamped with the proposer's wall clock (`now_ms`).
    pub fn encode(&self, now_ms: u64) -> Vec<u8> {
        let tag = match self {
            Command::Request(req) => request_tag(req),
            Command::ReapTombstones { .. } => TAG_REAP_TOMBSTONES,
            Command::Restore { .. } => TAG_RESTORE,
            Command::Ignored { tag } => *tag,
        };
        // The body is written behind the header in one buffer sized up front: this
        // runs for every write the leader proposes.
        let mut out = Vec::with_capacity(HEADER_LEN + self.body_size_hint());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        // Serialising plain data structs into a Vec cannot fail.
        let _ = match self {
            Command::Request(req) => rmp_serde::encode::write_named(&mut out, req),
            Command::ReapTombstones { index } => rmp_serde::encode::write(&mut out, index),
            Command::Restore { state } => {
                out.extend_from_slice(state);
                Ok(())
            }
            Command::Ignored { .. } => Ok(()),
        };
        out
    }

    /// Roughly the encoded body's length: exact enough for KV sets (most of the
    /// log) to need no reallocation, a small guess for everything else.
    fn body_size_hint(&self) -> usize {
        match self {
            Command::Request(WriteRequest::KvSet { entry, .. }) => {
                entry.key.len() + entry.value.len() + 128
            }
            Command::Restore { state } => state.len(),
            _ => 256,
        }
    }

    /// Decodes a raft log entry, dropping its clock stamp.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        Self::decode_stamped(bytes).map(|(cmd, _)| cmd)
    }

    /// Decodes a raft log entry and its clock stamp (0 for version-1 entries).
    pub fn decode_stamped(bytes: &[u8]) -> Result<(Command, u64), DecodeError> {
        let (tag, now_ms, body) = Self::split(bytes)?;
        Self::decode_body(tag, body).map(|cmd| (cmd, now_ms))
    }

    /// Decodes a raft log entry as the state machine applies it: a
    /// [`Command::Restore`]'s state stays borrowed from the entry, since
    /// decoding would copy it, and it is as large as the whole state, on top
    /// of the state being replaced and the one replacing it.
    pub fn decode_entry(bytes: &[u8]) -> Result<Entry<'_>, DecodeError> {
        let (tag, now_ms, body) = Self::split(bytes)?;
        if tag == TAG_RESTORE {
            return Ok(Entry::Restore(body));
        }
        Self::decode_body(tag, body).map(|cmd| Entry::Command(cmd, now_ms))
    }

    /// An entry's tag, clock stamp and body.
    fn split(bytes: &[u8]) -> Result<(u16, u64, &[u8]), DecodeError> {
        if bytes.len() < 3 {
            return Err(DecodeError::Truncated(bytes.len()));
        }
        let tag = u16::from_be_bytes([bytes[1], bytes[2]]);
        match bytes[0] {
            FORMAT_V1 => Ok((tag, 0, &bytes[3..])),
            FORMAT_VERSION => {
                let clock: [u8; 8] = bytes
                    .get(3..HEADER_LEN)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(DecodeError::Truncated(bytes.len()))?;
                Ok((tag, u64::from_be_bytes(clock), &bytes[HEADER_LEN..]))
            }
            v => Err(DecodeError::Version(v)),
        }
    }

    fn decode_body(tag: u16, body: &[u8]) -> Result<Command, DecodeError> {
        let wrap = |source| DecodeError::Body { tag, source };
        match tag {
            1..=MAX_REQUEST_TAG | TAG_COORDINATES => {
                let req: WriteRequest = rmp_serde::from_slice(body).map_err(wrap)?;
                if request_tag(&req) != tag {
                    return Err(DecodeError::UnknownTag(tag));
                }
                Ok(Command::Request(req))
            }
            TAG_REAP_TOMBSTONES => Ok(Command::ReapTombstones {
                index: rmp_serde::from_slice(body).map_err(wrap)?,
            }),
            TAG_RESTORE => Ok(Command::Restore {
                state: body.to_vec(),
            }),
            t if t & IGNORABLE != 0 => Ok(Command::Ignored { tag: t }),
            t => Err(DecodeError::UnknownTag(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::ops::{KvSetMode, WriteRequest};
    use tribune_types::model::KvEntry;

    #[test]
    fn round_trip_and_unknown_tags() {
        let cmd = Command::Request(WriteRequest::KvSet {
            entry: KvEntry {
                key: "a".into(),
                value: b"v".to_vec(),
                flags: u64::MAX,
                ..Default::default()
            },
            mode: KvSetMode::Cas(0),
        });
        assert_eq!(
            Command::decode_stamped(&cmd.encode(77)).unwrap(),
            (cmd.clone(), 77)
        );
        // The log format: header, then the request as named msgpack.
        let Command::Request(req) = &cmd else {
            unreachable!()
        };
        let encoded = cmd.encode(77);
        assert_eq!(&encoded[..3], &[FORMAT_VERSION, 0, 1]);
        assert_eq!(&encoded[3..HEADER_LEN], &77u64.to_be_bytes());
        assert_eq!(
            &encoded[HEADER_LEN..],
            rmp_serde::to_vec_named(req).unwrap()
        );
        let autopilot = Command::Request(WriteRequest::AutopilotSet {
            config: Default::default(),
            cas: Some(3),
        });
        assert_eq!(
            Command::decode(&autopilot.encode(1)).unwrap(),
            autopilot,
            "every request tag decodes (MAX_REQUEST_TAG)"
        );
        let coords = Command::Request(WriteRequest::CoordinateBatchUpdate {
            updates: vec![tribune_types::model::coordinate::CoordinateEntry {
                node: "n1".into(),
                segment: String::new(),
                coord: Default::default(),
            }],
        });
        let encoded = coords.encode(1);
        assert_eq!(
            u16::from_be_bytes([encoded[1], encoded[2]]),
            TAG_COORDINATES
        );
        assert_eq!(Command::decode(&encoded).unwrap(), coords);
        let restore = Command::Restore {
            state: vec![1, 2, 3],
        };
        assert_eq!(Command::decode(&restore.encode(1)).unwrap(), restore);
        // The apply path borrows a restore's state instead of decoding a copy.
        assert_eq!(
            Command::decode_entry(&restore.encode(1)).unwrap(),
            Entry::Restore(&[1, 2, 3][..])
        );
        let reap = Command::ReapTombstones { index: 9 };
        assert_eq!(Command::decode(&reap.encode(1)).unwrap(), reap);
        assert_eq!(
            Command::decode_entry(&reap.encode(7)).unwrap(),
            Entry::Command(reap.clone(), 7)
        );
        assert!(Command::decode_entry(&[2, 0]).is_err());
        // Version-1 entries (before clock stamps) still decode, with a clock of 0.
        let mut v1 = vec![1, 0, 1];
        v1.extend_from_slice(&cmd.encode(5)[HEADER_LEN..]);
        assert_eq!(Command::decode_stamped(&v1).unwrap(), (cmd, 0));
        assert!(Command::decode(&[2, 0, 1, 0, 0]).is_err());
        assert!(matches!(
            Command::decode(&[1, 0, 200]),
            Err(DecodeError::UnknownTag(200))
        ));
        assert_eq!(
            Command::decode(&[1, 0x80, 7, 1, 2]).unwrap(),
            Command::Ignored { tag: 0x8007 }
        );
        assert!(Command::decode(&[1]).is_err());
        assert!(Command::decode(&[9, 0, 1]).is_err());
        assert!(Command::decode(&[1, 0, 1, 0xc1]).is_err());
    }
}
