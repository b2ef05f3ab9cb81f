//! Gossip encryption: a keyring of AES keys (16, 24 or 32 bytes, base64 in config),
//! AES-GCM sealing of every packet and stream frame, and the keyring file.
//!
//! Sealed layout: `[SEALED_V1][12-byte random nonce][ciphertext + 16-byte tag]`, with
//! the version byte as associated data so it cannot be swapped. The primary key
//! (first in the list) seals; every installed key is tried to open, which is what
//! lets an operator rotate keys without a flag day: install everywhere, then use
//! everywhere, then remove the old one (Consul's `keyring -install/-use/-remove`).
//!
//! The keyring file is a JSON list of base64 keys, primary first — the shape of
//! Serf's `local.keyring`. Operations here are local to this node; the cluster-wide
//! fan-out Consul does with Serf queries is the agent's to build.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

use crate::error::GossipError;

/// First byte of a sealed packet or frame (AES-GCM, format version 1).
pub const SEALED_V1: u8 = 0x81;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

type Aes192Gcm = AesGcm<Aes192, U12>;

#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Self, GossipError> {
        // `new_from_slice` only fails on length, which is checked right here.
        let invalid = || GossipError::InvalidKey {
            reason: format!("key size must be 16, 24 or 32 bytes, got {}", key.len()),
        };
        Ok(match key.len() {
            16 => Cipher::A128(Box::new(
                Aes128Gcm::new_from_slice(key).map_err(|_| invalid())?,
            )),
            24 => Cipher::A192(Box::new(
                Aes192Gcm::new_from_slice(key).map_err(|_| invalid())?,
            )),
            32 => Cipher::A256(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|_| invalid())?,
            )),
            _ => return Err(invalid()),
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.encrypt(nonce, payload).ok(),
        }
    }

    fn open(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.decrypt(nonce, payload).ok(),
        }
    }
}

#[derive(Clone)]
struct Key {
    raw: Vec<u8>,
    cipher: Cipher,
}

impl Key {
    fn parse(b64: &str) -> Result<Self, GossipError> {
        let raw = STANDARD
            .decode(b64.trim())
            .map_err(|e| GossipError::InvalidKey {
                reason: format!("not base64: {e}"),
            })?;
        let cipher = Cipher::new(&raw)?;
        Ok(Key { raw, cipher })
    }

    fn b64(&self) -> String {
        STANDARD.encode(&self.raw)
    }
}

/// Why a sealed packet was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than the version, nonce and tag.
    #[error("sealed packet too short ({0} bytes)")]
    TooShort(usize),
    /// Not a sealed packet of a version we speak (e.g. plaintext).
    #[error("unknown encryption version {0:#04x}")]
    UnknownVersion(u8),
    /// No installed key authenticates it.
    #[error("no installed key decrypts the message")]
    NoKey,
}

/// The installed encryption keys; the first is the primary.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Keyring {
    /// A keyring with one base64 key as primary (Consul's `encrypt`).
    pub fn new(primary_b64: &str) -> Result<Self, GossipError> {
        Ok(Self {
            keys: vec![Key::parse(primary_b64)?],
        })
    }

    /// A keyring from base64 keys, the first being the primary. Duplicates are
    /// dropped; an empty list is an error.
    pub fn from_keys<S: AsRef<str>>(keys: &[S]) -> Result<Self, GossipError> {
        let mut ring = Self { keys: Vec::new() };
        for k in keys {
            ring.install(k.as_ref())?;
        }
        if ring.keys.is_empty() {
            return Err(GossipError::InvalidKey {
                reason: "keyring is empty".into(),
            });
        }
        Ok(ring)
    }

    fn position(&self, b64: &str) -> Result<Option<usize>, GossipError> {
        let key = Key::parse(b64)?;
        Ok(self.keys.iter().position(|k| k.raw == key.raw))
    }

    /// Add a key for decryption. Installing a present key does nothing.
    pub fn install(&mut self, b64: &str) -> Result<(), GossipError> {
        let key = Key::parse(b64)?;
        if !self.keys.iter().any(|k| k.raw == key.raw) {
            self.keys.push(key);
        }
        Ok(())
    }

    /// Make an installed key the primary.
    pub fn use_key(&mut self, b64: &str) -> Result<(), GossipError> {
        let i = self.position(b64)?.ok_or(GossipError::KeyNotInstalled)?;
        let key = self.keys.remove(i);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Remove a key that is not the primary.
    pub fn remove(&mut self, b64: &str) -> Result<(), GossipError> {
        match self.position(b64)? {
            Some(0) => Err(GossipError::RemovePrimaryKey),
            Some(i) => {
                self.keys.remove(i);
                Ok(())
            }
            None => Err(GossipError::KeyNotInstalled),
        }
    }

    /// All keys, base64, primary first.
    pub fn list(&self) -> Vec<String> {
        self.keys.iter().map(Key::b64).collect()
    }

    /// The primary key, base64.
    pub fn primary(&self) -> String {
        self.keys[0].b64()
    }

    /// Seal `plaintext` with the primary key and a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = [SEALED_V1];
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        // AES-GCM encryption only fails for inputs beyond 64 GiB; an empty result
        // then makes the receiver drop the frame rather than us panic.
        if let Some(ct) = self.keys[0].cipher.seal(&nonce, plaintext, &aad) {
            out.extend(ct);
        }
        out
    }

    /// Open a sealed packet with any installed key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&version, rest) = sealed.split_first().ok_or(OpenError::TooShort(0))?;
        if version != SEALED_V1 {
            return Err(OpenError::UnknownVersion(version));
        }
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError::TooShort(sealed.len()));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let aad = [SEALED_V1];
        self.keys
            .iter()
            .find_map(|k| k.cipher.open(nonce, ct, &aad))
            .ok_or(OpenError::NoKey)
    }

    /// Read a keyring file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, GossipError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(GossipError::KeyringFile {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let keys: Vec<String> =
            serde_json::from_str(&text).map_err(|e| GossipError::KeyringFileFormat {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Self::from_keys(&keys)
            .map(Some)
            .map_err(|e| GossipError::KeyringFileFormat {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Write the keyring file (write to a temporary file, then rename, so a crash
    /// never leaves half a keyring; mode 0600 as Serf writes it).
    pub fn save(&self, path: &Path) -> Result<(), GossipError> {
        let mut text =
            serde_json::to_string_pretty(&self.list()).unwrap_or_else(|_| String::from("[]"));
        text.push('\n');
        write_atomic(path, text.as_bytes(), true).map_err(|source| GossipError::KeyringFile {
            path: path.to_owned(),
            source,
        })
    }
}

/// A new random 32-byte key, base64 (`consul keygen`).
pub fn keygen() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    STANDARD.encode(key)
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, so that a crash
/// leaves the old file or the new one, never half of one; `private` makes it 0600 (a
/// keyring holds secrets). Creates the parent directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(len: usize, fill: u8) -> String {
        STANDARD.encode(vec![fill; len])
    }

    #[test]
    fn every_key_size_round_trips() {
        for len in [16, 24, 32] {
            let ring = Keyring::new(&key(len, 1)).unwrap();
            let sealed = ring.seal(b"hello");
            assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
            assert_eq!(ring.open(&sealed).unwrap(), b"hello");
        }
        assert!(matches!(
            Keyring::new(&key(20, 1)),
            Err(GossipError::InvalidKey { .. })
        ));
        assert!(matches!(
            Keyring::new("not base64!"),
            Err(GossipError::InvalidKey { .. })
        ));
        assert_eq!(STANDARD.decode(keygen()).unwrap().len(), 32);
        assert_ne!(keygen(), keygen());
    }

    #[test]
    fn wrong_key_tampering_and_garbage_are_rejected() {
        let a = Keyring::new(&key(32, 1)).unwrap();
        let b = Keyring::new(&key(32, 2)).unwrap();
        let sealed = a.seal(b"secret");
        assert_eq!(b.open(&sealed), Err(OpenError::NoKey));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(a.open(&flipped), Err(OpenError::NoKey));
        assert_eq!(a.open(&[]), Err(OpenError::TooShort(0)));
        assert_eq!(a.open(&[SEALED_V1, 1, 2]), Err(OpenError::TooShort(3)));
        assert_eq!(
            a.open(&[0x01, 0, 0, 0]),
            Err(OpenError::UnknownVersion(0x01))
        );
    }

    #[test]
    fn rotation_install_use_remove() {
        let (k1, k2) = (key(32, 1), key(16, 2));
        let mut old = Keyring::new(&k1).unwrap();
        let mut ring = old.clone();
        ring.install(&k2).unwrap();
        ring.install(&k2).unwrap();
        assert_eq!(ring.list(), vec![k1.clone(), k2.clone()]);
        assert!(matches!(
            ring.remove(&k1),
            Err(GossipError::RemovePrimaryKey)
        ));
        ring.use_key(&k2).unwrap();
        assert_eq!(ring.primary(), k2);
        // Sealed with the new primary: readable by a node that only installed it.
        old.install(&k2).unwrap();
        assert_eq!(old.open(&ring.seal(b"x")).unwrap(), b"x");
        ring.remove(&k1).unwrap();
        assert_eq!(ring.list(), vec![k2.clone()]);
        assert!(matches!(
            ring.use_key(&k1),
            Err(GossipError::KeyNotInstalled)
        ));
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serf").join("local.keyring");
        assert!(Keyring::load(&path).unwrap().is_none());
        let ring = Keyring::from_keys(&[key(32, 3), key(32, 4)]).unwrap();
        ring.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let list: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(list, ring.list());
        assert_eq!(Keyring::load(&path).unwrap().unwrap().list(), ring.list());
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(GossipError::KeyringFileFormat { .. })
        ));
    }
}
