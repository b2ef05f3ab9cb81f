//! Bytes on sockets: the optional encryption layer, length-prefixed stream frames,
//! binding UDP and TCP on one port, and parsing join addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::error::GossipError;
use crate::keyring::{Keyring, SEALED_V1};

/// Largest stream frame accepted. A push/pull carries every member and up to
/// `event_buffer` user events, so this is generous; it only stops a peer from
/// making us allocate without bound.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Counters of what the transport dropped.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Sealed input no installed key opens.
    pub decrypt_failures: AtomicU64,
    /// Plaintext input while encryption is on (Consul `encrypt_verify_incoming`).
    pub plaintext_rejected: AtomicU64,
    /// Sealed input while encryption is off.
    pub sealed_rejected: AtomicU64,
    /// Stream exchanges that failed (connect, I/O, timeout, framing).
    pub stream_errors: AtomicU64,
}

/// Seal and open with the shared keyring, if any.
#[derive(Debug)]
pub struct Codec {
    keyring: RwLock<Option<Keyring>>,
    /// With a keyring, refuse plaintext input (`encrypt_verify_incoming`).
    verify_incoming: bool,
    /// With a keyring, seal output (`encrypt_verify_outgoing`).
    verify_outgoing: bool,
    /// Drop counters.
    pub counters: TransportCounters,
}

impl Codec {
    pub fn new(keyring: Option<Keyring>, verify_incoming: bool, verify_outgoing: bool) -> Self {
        Self {
            keyring: RwLock::new(keyring),
            verify_incoming,
            verify_outgoing,
            counters: TransportCounters::default(),
        }
    }

    pub fn keyring(&self) -> &RwLock<Option<Keyring>> {
        &self.keyring
    }

    /// Seal with the primary key when encryption is on (and not turned off
    /// for output during a rollout).
    pub fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
        match &*self.keyring.read() {
            Some(ring) if self.verify_outgoing => ring.seal(&plain),
            _ => plain,
        }
    }

    /// Open input; `None` (counted and logged) when it must be dropped.
    pub fn open(&self, data: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let sealed = data.first() == Some(&SEALED_V1);
        match (&*self.keyring.read(), sealed) {
            (Some(ring), true) => match ring.open(data) {
                Ok(plain) => Some(plain),
                Err(e) => {
                    self.counters
                        .decrypt_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%from, error = %e, "gossip: dropping message that failed to decrypt");
                    None
                }
            },
            // A rollout's first steps: nodes without the key still speak.
            (Some(_), false) if !self.verify_incoming => Some(data.to_vec()),
            (Some(_), false) => {
                self.counters
                    .plaintext_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%from, "gossip: dropping unencrypted message (encryption is on)");
                None
            }
            (None, true) => {
                self.counters
                    .sealed_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%from, "gossip: dropping encrypted message (encryption is off)");
                None
            }
            (None, false) => Some(data.to_vec()),
        }
    }
}

/// Why a stream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Took longer than the TCP timeout.
    #[error("timed out")]
    Timeout,
    /// A frame above [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The peer's frame could not be opened.
    #[error("reply could not be decrypted or was not of the expected kind")]
    Rejected,
}

pub async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>, StreamError> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(StreamError::TooLarge(len));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

pub async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> Result<(), StreamError> {
    let len = u32::try_from(frame.len()).map_err(|_| StreamError::TooLarge(frame.len()))?;
    stream.write_u32(len).await?;
    stream.write_all(frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Client side of a push/pull: send one frame, read one back, all within `timeout`.
pub async fn exchange(
    to: SocketAddr,
    request: Vec<u8>,
    codec: &Codec,
    timeout: Duration,
) -> Result<Vec<u8>, StreamError> {
    let work = async {
        let mut stream = TcpStream::connect(to).await?;
        write_frame(&mut stream, &codec.seal(request)).await?;
        let reply = read_frame(&mut stream).await?;
        codec.open(&reply, to).ok_or(StreamError::Rejected)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| StreamError::Timeout)?
}

/// Bind TCP and UDP on the same port. With port 0, retry until a port free for
/// both is found.
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), GossipError> {
    let attempts = if addr.port() == 0 { 10 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| GossipError::Bind {
                proto: "tcp",
                addr,
                source,
            })?;
        let port_addr = tcp.local_addr().map_err(|source| GossipError::Bind {
            proto: "tcp",
            addr,
            source,
        })?;
        match UdpSocket::bind(port_addr).await {
            Ok(udp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(GossipError::Bind {
                    proto: "udp",
                    addr: port_addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(GossipError::InvalidConfig {
        field: "bind",
        reason: "no port free for both UDP and TCP",
    }))
}

/// Parse a join address: `host:port`, `[v6]:port`, a bare IP or a bare host name
/// (which get `default_port`, memberlist's habit of assuming our own port).
pub async fn resolve(addr: &str, default_port: u16) -> Result<SocketAddr, GossipError> {
    let invalid = |source| GossipError::InvalidAddress {
        addr: addr.to_owned(),
        source,
    };
    let s = addr.trim();
    if s.is_empty() {
        return Err(invalid(None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let target = match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => s.to_owned(),
        Some(_) => return Err(invalid(None)),
        None => format!("{s}:{default_port}"),
    };
    let mut found = tokio::net::lookup_host(target)
        .await
        .map_err(|e| invalid(Some(e)))?;
    found.next().ok_or_else(|| invalid(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a node with the key sends, and what it takes, for each setting
    /// of the two verifications (memberlist's `GossipVerify*`).
    #[test]
    fn the_verifications_choose_what_is_sealed_and_what_is_taken() {
        let ring = Keyring::new(&crate::keyring::keygen()).unwrap();
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let plain = b"\x01hello".to_vec();
        let sealed = ring.seal(&plain);
        for (incoming, outgoing) in [(false, false), (false, true), (true, false), (true, true)] {
            let c = Codec::new(Some(ring.clone()), incoming, outgoing);
            let out = c.seal(plain.clone());
            assert_eq!(out == plain, !outgoing, "sealed out: {outgoing}");
            assert_eq!(
                c.open(&sealed, from),
                Some(plain.clone()),
                "sealed in is always taken"
            );
            assert_eq!(
                c.open(&plain, from).is_some(),
                !incoming,
                "plaintext in: {incoming}"
            );
        }
        // Without a key, nothing is sealed and sealed input is dropped.
        let bare = Codec::new(None, false, false);
        assert_eq!(bare.seal(plain.clone()), plain);
        assert_eq!(bare.open(&sealed, from), None);
    }

    #[tokio::test]
    async fn join_addresses() {
        let r = |s: &'static str| resolve(s, 8301);
        assert_eq!(
            r("10.0.0.1:7000").await.unwrap(),
            "10.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(
            r("10.0.0.1").await.unwrap(),
            "10.0.0.1:8301".parse().unwrap()
        );
        assert_eq!(r("::1").await.unwrap(), "[::1]:8301".parse().unwrap());
        assert_eq!(r("[::1]").await.unwrap(), "[::1]:8301".parse().unwrap());
        assert_eq!(r("[::1]:9").await.unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(r("localhost:9").await.unwrap().port(), 9);
        assert_eq!(r("localhost").await.unwrap().port(), 8301);
        assert!(r("").await.is_err());
        assert!(r("host:notaport").await.is_err());
    }
}
