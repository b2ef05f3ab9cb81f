//! The operator snapshot archive: what `GET /v1/snapshot` returns, `PUT
//! /v1/snapshot` restores and `tribune snapshot inspect` reads.
//!
//! Consul's archive is a gzipped tar of its own state; ours is a small framed
//! file, versioned and checksummed end to end so that a truncated download or a
//! flipped bit is refused before anything is restored:
//!
//! ```text
//! "TRIBSNAP"  version:u32  index:u64  term:u64  created_ms:u64  len:u64  state[len]  crc32:u32
//! ```
//!
//! All integers are big-endian; the CRC-32 covers every byte before it. `state`
//! is the state store's own snapshot (itself checksummed), restored as a whole.

/// First bytes of every archive.
pub const MAGIC: &[u8; 8] = b"TRIBSNAP";
/// Format version written by this build.
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 8 + 8;

/// A decoded archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Raft index the state was taken at.
    pub index: u64,
    /// Raft term of that index.
    pub term: u64,
    /// When it was taken, ms since the Unix epoch.
    pub created_ms: u64,
    /// The state store snapshot.
    pub state: Vec<u8>,
}

/// Why bytes are not a usable archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Shorter than header and checksum.
    #[error("snapshot is truncated: {0} bytes")]
    Truncated(usize),
    /// Not an archive at all.
    #[error("not a Tribune snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer format.
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    /// The length field disagrees with the size.
    #[error("snapshot is truncated or has trailing bytes: state of {declared} bytes declared, {actual} present")]
    Length {
        /// Declared state length.
        declared: u64,
        /// Bytes actually there.
        actual: u64,
    },
    /// The bytes were damaged.
    #[error("snapshot checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
}

impl Archive {
    /// Consul's snapshot ID form: `term-index-created_ms`.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.term, self.index, self.created_ms)
    }

    /// The archive's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.state.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&(self.state.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.state);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses and verifies an archive.
    pub fn decode(bytes: &[u8]) -> Result<Archive, ArchiveError> {
        if bytes.len() < HEADER + 4 {
            if bytes.len() >= 8 && &bytes[..8] != MAGIC {
                return Err(ArchiveError::BadMagic);
            }
            return Err(ArchiveError::Truncated(bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err(ArchiveError::BadMagic);
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[8..12]);
        let version = u32::from_be_bytes(v);
        if version != VERSION {
            return Err(ArchiveError::Version(version));
        }
        let declared = u64_at(36);
        let actual = (bytes.len() - HEADER - 4) as u64;
        if declared != actual {
            return Err(ArchiveError::Length { declared, actual });
        }
        let body_end = bytes.len() - 4;
        let mut c = [0u8; 4];
        c.copy_from_slice(&bytes[body_end..]);
        let stored = u32::from_be_bytes(c);
        let computed = crc32(&bytes[..body_end]);
        if stored != computed {
            return Err(ArchiveError::Checksum { stored, computed });
        }
        Ok(Archive {
            index: u64_at(12),
            term: u64_at(20),
            created_ms: u64_at(28),
            state: bytes[HEADER..body_end].to_vec(),
        })
    }
}

/// CRC-32 (IEEE), bitwise: archives are taken rarely, and this keeps the
/// types crate free of dependencies beyond serde.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        Archive {
            index: 42,
            term: 3,
            created_ms: 1_700_000_000_000,
            state: b"state bytes".to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        let a = sample();
        assert_eq!(Archive::decode(&a.encode()).unwrap(), a);
        assert_eq!(a.id(), "3-42-1700000000000");
        // The standard check value of CRC-32/IEEE.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn damaged_archives_are_refused() {
        let bytes = sample().encode();
        for cut in [0, 5, 30, bytes.len() - 1] {
            assert!(Archive::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[50] ^= 1;
        assert!(matches!(
            Archive::decode(&flipped),
            Err(ArchiveError::Checksum { .. })
        ));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(Archive::decode(&magic), Err(ArchiveError::BadMagic));
        let mut version = bytes;
        version[11] = 9;
        assert_eq!(Archive::decode(&version), Err(ArchiveError::Version(9)));
    }
}
